"""Smooth vertex normals computed for a whole batch at once.

A point's normal is the normalized sum of the Newell normals of the faces around it. A Newell normal is twice the
face's area times its unit normal, so the sum is area-weighted and a concave or non-planar polygon counts once,
whatever its triangulation. Faces of ``leftHanded`` meshes contribute their negated normal (the caller flips them
before), so normals point to the side the surface's front faces.

The accumulation is three ``np.add.at`` scatters (one per component) over the corners of the meshes that need
computed normals; numpy's ``ufunc.at`` fast path for 1-D float arrays measured faster than ``np.bincount``
(13 ms against 20 ms for 2M corners) and ~20x faster than ``np.add.at`` on an ``(N, 3)`` array.
"""

from __future__ import annotations

import numpy as np

__all__ = ["smooth_normals", "normalize_rows"]


def normalize_rows(v: np.ndarray) -> np.ndarray:
    """Normalize ``(N, 3)`` rows in place; rows of zero length stay zero. Returns ``v``."""
    length = np.sqrt(np.einsum("ij,ij->i", v, v))
    np.divide(v, length[:, None], out=v, where=length[:, None] > 0)
    return v


def smooth_normals(
    face_normals: np.ndarray,
    corner_face: np.ndarray,
    point_index: np.ndarray,
    n_points: int,
    corners: np.ndarray | None = None,
) -> np.ndarray:
    """Area-weighted smooth normals per point.

    :param face_normals: ``(3, F)`` Newell normals of every face of the batch (x, y, z rows)
    :param corner_face: the face of every corner (length ``C``)
    :param point_index: the point of every corner (length ``C``)
    :param n_points: number of points of the batch
    :param corners: when given, only these corners contribute (the corners of meshes without authored normals)
    :returns: ``(n_points, 3)`` float32 unit normals; points touched by no (non-degenerate) face get zeros
    """
    if corners is not None:
        corner_face = corner_face[corners]
        point_index = point_index[corners]
    acc = np.empty((3, n_points), dtype=np.float32)
    acc.fill(0)
    for k in range(3):
        np.add.at(acc[k], point_index, np.take(face_normals[k], corner_face))
    # normalize on the x/y/z rows (contiguous), then interleave once
    length = np.einsum("ij,ij->j", acc, acc)
    np.sqrt(length, out=length)
    np.divide(1.0, length, out=length, where=length > 0)
    acc *= length
    return np.ascontiguousarray(acc.T)
