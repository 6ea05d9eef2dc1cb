"""A batch of meshes concatenated into single arrays, with the per-mesh offsets that segment them.

Points, faces and corners (entries of ``faceVertexIndices``) of all meshes are laid end to end; ``local_index``
holds every corner's point within its mesh (the authored ``faceVertexIndices``), ``point_index`` the same as a
*global* index into the concatenated points. Per-mesh ranges are recovered with the
``*_start``/``n_*`` arrays, and :func:`ranges` turns a set of meshes into the concatenated index ranges of their
points, faces or corners without a Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vixen_assets.geometry.mesh_source import MeshSource

__all__ = ["Batch", "build_batch", "ranges", "exclusive_cumsum"]


def exclusive_cumsum(a: np.ndarray) -> np.ndarray:
    """``[0, a0, a0+a1, ...]`` without the total, as intp."""
    out = np.zeros(len(a), dtype=np.intp)
    if len(a) > 1:
        np.cumsum(a[:-1], out=out[1:])
    return out


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for each start ``s`` and length ``n``, vectorized."""
    lengths = np.asarray(lengths, dtype=np.intp)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.intp)
    offsets = np.repeat(np.asarray(starts, dtype=np.intp) - exclusive_cumsum(lengths), lengths)
    offsets += np.arange(total, dtype=np.intp)
    return offsets


@dataclass
class Batch:
    """Concatenated topology of ``sources`` (see the module docstring)."""

    sources: Sequence[MeshSource]
    n_points: np.ndarray
    n_faces: np.ndarray
    n_corners: np.ndarray
    point_start: np.ndarray
    face_start: np.ndarray
    corner_start: np.ndarray
    points: np.ndarray
    counts: np.ndarray
    local_index: np.ndarray
    point_index: np.ndarray
    _corner_face: np.ndarray | None = field(default=None, repr=False)

    @property
    def count(self) -> int:
        """Number of meshes in the batch."""
        return len(self.sources)

    @property
    def total_points(self) -> int:
        """Points over all meshes."""
        return len(self.points)

    @property
    def total_corners(self) -> int:
        """Face corners over all meshes."""
        return len(self.point_index)

    def corner_face(self) -> np.ndarray:
        """The (global) face of every corner, computed once."""
        if self._corner_face is None:
            self._corner_face = np.repeat(np.arange(len(self.counts), dtype=np.intp), self.counts)
        return self._corner_face

    def point_ranges(self, meshes: np.ndarray) -> np.ndarray:
        """Indices into the concatenated points of every point of ``meshes``."""
        return ranges(self.point_start[meshes], self.n_points[meshes])

    def face_ranges(self, meshes: np.ndarray) -> np.ndarray:
        """Indices into the concatenated faces of every face of ``meshes``."""
        return ranges(self.face_start[meshes], self.n_faces[meshes])

    def corner_ranges(self, meshes: np.ndarray) -> np.ndarray:
        """Indices into the concatenated corners of every corner of ``meshes``."""
        return ranges(self.corner_start[meshes], self.n_corners[meshes])


def build_batch(sources: Sequence[MeshSource]) -> Batch:
    """Concatenate the topology of ``sources`` (already validated)."""
    m = len(sources)
    n_points = np.fromiter((len(s.points) for s in sources), dtype=np.intp, count=m)
    n_faces = np.fromiter((len(s.face_vertex_counts) for s in sources), dtype=np.intp, count=m)
    n_corners = np.fromiter((len(s.face_vertex_indices) for s in sources), dtype=np.intp, count=m)
    point_start = exclusive_cumsum(n_points)
    if m == 1:
        src = sources[0]
        points = src.points
        counts = src.face_vertex_counts
        local_index = src.face_vertex_indices.astype(np.int32, copy=False)
        point_index = local_index.astype(np.intp)
    else:
        points = np.concatenate([s.points for s in sources])
        counts = np.concatenate([s.face_vertex_counts for s in sources])
        local_index = np.concatenate([s.face_vertex_indices for s in sources], dtype=np.int32, casting="same_kind")
        point_index = np.repeat(point_start, n_corners)
        point_index += local_index
    return Batch(
        sources=sources,
        n_points=n_points,
        n_faces=n_faces,
        n_corners=n_corners,
        point_start=point_start,
        face_start=exclusive_cumsum(n_faces),
        corner_start=exclusive_cumsum(n_corners),
        points=points,
        counts=counts,
        local_index=local_index,
        point_index=point_index,
    )
