"""Primvar flattening and vertex splitting over a whole batch.

Flattening
    Each attribute becomes up to two arrays over the batch: ``point_values`` (one row per point: ``vertex`` and
    ``varying`` values, ``constant`` values broadcast, computed normals) and ``corner_values`` (one row per corner,
    only when some mesh has the attribute ``faceVarying`` or ``uniform``; other meshes' rows stay zero). Indexed
    primvars are expanded with one ``np.take`` over the concatenated values of all meshes.

Vertex splitting
    A ``faceVarying`` or ``uniform`` attribute can give one point different values on different faces, so such a
    point needs several vertices. Every point first gets a representative corner; a corner whose split attributes
    are bit-equal to its representative's uses the point's own vertex (vertex ``i < N`` of a mesh is its point
    ``i``). Only the remaining *seam* corners (a few percent on real meshes: UV seams, hard edges) are deduplicated:
    ``np.unique`` over one uint64 per ``(point, attribute bits)`` row (point in the high bits, a hash of the bits
    in the low ones), verified row by row, with the exact ``np.unique`` over a void view of the rows as the
    fallback should two different rows ever share a key. Each distinct combination becomes a vertex appended after
    the mesh's points. This finds the same unique (point, attributes) combinations as a full ``np.unique`` over all
    corners, without sorting millions of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vixen_assets.geometry.batch import Batch, exclusive_cumsum
from vixen_assets.geometry.mesh_source import PrimvarData

__all__ = [
    "Flattened",
    "VertexMap",
    "flatten_attribute",
    "split_vertices",
    "representative_corners",
    "zeros",
    "CLASS_OF",
]

ABSENT, CONSTANT, VERTEX, UNIFORM, FACE_VARYING = range(5)
CLASS_OF = {"constant": CONSTANT, "vertex": VERTEX, "varying": VERTEX, "uniform": UNIFORM, "faceVarying": FACE_VARYING}


@dataclass
class Flattened:
    """One attribute over a batch: ``point_values`` ``(P, k)`` (None until filled when every mesh has the attribute
    per corner or per face), ``corner_values`` ``(C + 1, k)`` or None (the last row is zeros, for unused points),
    and ``split_meshes``: the meshes whose attribute is per corner or per face."""

    components: int
    point_values: np.ndarray | None
    corner_values: np.ndarray | None
    split_meshes: np.ndarray


def _fit(elements: np.ndarray, k: int) -> np.ndarray:
    if elements.shape[1] == k:
        return elements
    out = np.zeros((len(elements), k), dtype=np.float32)
    n = min(k, elements.shape[1])
    out[:, :n] = elements[:, :n]
    return out


def _elements(pv: PrimvarData, k: int) -> np.ndarray:
    v = pv.values
    if pv.element_size == 1 and v.dtype == np.float32 and v.ndim == 2 and v.shape[1] == k:
        return v
    return _fit(pv.elements(), k)


def zeros(shape: int | tuple[int, ...], dtype: "np.typing.DTypeLike" = np.float32) -> np.ndarray:
    """``np.zeros`` through malloc + memset: reuses heap memory where calloc of a large block maps fresh pages
    (page faults cost ~0.4 ms/MB on the VMs measured)."""
    out = np.empty(shape, dtype=dtype)
    out.fill(0)
    return out


def _expand_into(pvs: list[PrimvarData], k: int, owners, field: str, out: np.ndarray | None = None) -> np.ndarray:
    """Index-expanded elements of ``pvs``, concatenated (into ``out`` when given). Index ranges are checked in one
    vectorized pass; a bad one raises the owning source's :class:`FormatError` (``owners[i]`` owns ``pvs[i]``)."""
    elems = [_elements(pv, k) for pv in pvs]
    if all(pv.indices is None for pv in pvs):
        if out is None:
            return elems[0] if len(elems) == 1 else np.concatenate(elems)
        if len(elems) == 1:
            out[...] = elems[0]
        else:
            np.concatenate(elems, out=out)
        return out
    data = elems[0] if len(elems) == 1 else np.concatenate(elems)
    n_elem = np.fromiter((len(el) for el in elems), dtype=np.intp, count=len(elems))
    n_idx = np.fromiter((len(pv.indices) if pv.indices is not None else len(el) for pv, el in zip(pvs, elems)),
                        dtype=np.intp, count=len(pvs))
    parts = [pv.indices if pv.indices is not None else np.arange(len(el), dtype=np.int32)
             for pv, el in zip(pvs, elems)]
    glob = parts[0].astype(np.intp) if len(parts) == 1 else np.concatenate(parts, dtype=np.intp, casting="same_kind")
    has = n_idx > 0
    if has.any():
        starts = exclusive_cumsum(n_idx)[has]
        lo = np.minimum.reduceat(glob, starts)
        hi = np.maximum.reduceat(glob, starts)
        bad = np.flatnonzero((lo < 0) | (hi >= n_elem[has]))
        if len(bad):
            i = int(np.flatnonzero(has)[bad[0]])
            idx = pvs[i].indices
            pos = int(np.flatnonzero((idx < 0) | (idx >= n_elem[i]))[0])
            raise owners[i].error(
                f"index {int(idx[pos])} at position {pos} is out of range for {int(n_elem[i])} values",
                field + ":indices",
            )
    if len(parts) > 1:
        glob += np.repeat(exclusive_cumsum(n_elem), n_idx)
    # the indices are checked, so mode="clip" only skips numpy's own check and the buffered copy it implies
    return np.take(data, glob, axis=0, out=out, mode="clip")


def _first_element(pv: PrimvarData, k: int) -> np.ndarray:
    el = _elements(pv, k)
    i = int(pv.indices[0]) if pv.indices is not None and len(pv.indices) else 0
    return el[i] if len(el) else np.zeros(k, np.float32)


def _split_rows(data: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    out, start = [], 0
    for n in lengths:
        out.append(data[start : start + n])
        start += n
    return out


def flatten_attribute(
    batch: Batch,
    per_mesh: list[PrimvarData | None],
    k: int,
    field: str = "",
    fallback: np.ndarray | None = None,
) -> Flattened:
    """Flatten one attribute (``per_mesh[i]`` for mesh ``i``, None when absent) to ``k`` float32 components.

    Each result array is built by one ``np.concatenate`` of per-mesh pieces (authored arrays used as they are,
    index-expanded arrays from one vectorized ``np.take`` per interpolation, broadcast constants, slices of a shared
    zero block), so mixed batches cost no scatter passes. ``point_values`` rows of meshes whose attribute is
    ``faceVarying``/``uniform`` are zeros here; the caller fills them from each point's representative corner once
    the vertex split is known. Meshes without the attribute get zeros, or their rows of ``fallback`` (``(P, k)``)
    when given. ``field`` names the attribute in errors (``primvars:st``).
    """
    sources = batch.sources
    m = batch.count
    cls = [CLASS_OF[pv.interpolation] if pv is not None else ABSENT for pv in per_mesh]
    n_points = batch.n_points.tolist()
    n_corners = batch.n_corners.tolist()
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(cls):
        groups.setdefault(c, []).append(i)

    def expanded(c: int) -> dict[int, np.ndarray]:
        """Index-expanded values per mesh of class ``c``: authored arrays when not indexed, else slices of one
        vectorized expansion over the class."""
        meshes = groups.get(c, [])
        out = {i: _elements(per_mesh[i], k) for i in meshes if per_mesh[i].indices is None}
        indexed = [i for i in meshes if per_mesh[i].indices is not None]
        if indexed:
            data = _expand_into([per_mesh[i] for i in indexed], k, [sources[i] for i in indexed], field)
            out.update(zip(indexed, _split_rows(data, [len(per_mesh[i].indices) for i in indexed])))
        return out

    longest = max(max(n_points, default=0), max(n_corners, default=0))
    zero = np.zeros((longest, k), dtype=np.float32) if set(groups) - {VERTEX, CONSTANT} else None
    split = np.asarray(sorted(groups.get(UNIFORM, []) + groups.get(FACE_VARYING, [])), dtype=np.intp)
    point_values = None  # all meshes per corner/face: the caller takes every point's row from its corner
    if len(split) < m:
        vertex = expanded(VERTEX)
        point_pieces = []
        for i, c in enumerate(cls):
            n = n_points[i]
            if c == VERTEX:
                point_pieces.append(vertex[i])
            elif c == CONSTANT:
                point_pieces.append(np.broadcast_to(_first_element(per_mesh[i], k), (n, k)))
            elif c == ABSENT and fallback is not None:
                start = int(batch.point_start[i])
                point_pieces.append(fallback[start : start + n])
            else:
                point_pieces.append(zero[:n])
        point_values = point_pieces[0] if m == 1 and cls[0] == VERTEX else np.concatenate(point_pieces)
    corner_values = None
    if len(split):
        n_c = batch.total_corners
        face_varying = expanded(FACE_VARYING)
        uniform = {}
        if UNIFORM in groups:
            uni = np.asarray(groups[UNIFORM], dtype=np.intp)
            face_data = _expand_into([per_mesh[i] for i in uni], k, [sources[i] for i in uni], field)
            data_start = exclusive_cumsum(batch.n_faces[uni])
            local = batch.corner_face()[batch.corner_ranges(uni)]
            local -= np.repeat(batch.face_start[uni] - data_start, batch.n_corners[uni])
            data = np.take(face_data, local, axis=0)
            uniform = dict(zip(uni.tolist(), _split_rows(data, [n_corners[i] for i in uni.tolist()])))
        corner_pieces = []
        for i, c in enumerate(cls):
            if c == FACE_VARYING:
                corner_pieces.append(face_varying[i])
            elif c == UNIFORM:
                corner_pieces.append(uniform[i])
            else:
                corner_pieces.append(zero[: n_corners[i]])
        corner_values = np.empty((n_c + 1, k), dtype=np.float32)
        np.concatenate(corner_pieces, out=corner_values[:n_c])
        corner_values[n_c] = 0
    return Flattened(k, point_values, corner_values, split)


@dataclass
class VertexMap:
    """How corners map to output vertices.

    ``corner_vertex`` is every corner's vertex, local to its mesh (int32); ``n_vertices`` the vertex count per
    mesh and ``vertex_start`` each mesh's first vertex in the batch; ``vertex_point`` the source point of every
    vertex (None when no vertex was split: vertex == point); ``seam_vertex`` and ``seam_corner`` the split-off
    vertices and a corner holding their attribute values; ``rep_corner`` each point's representative corner
    (``C`` for an unused point, the zero row of ``corner_values``).
    """

    corner_vertex: np.ndarray
    n_vertices: np.ndarray
    vertex_start: np.ndarray
    vertex_point: np.ndarray | None
    seam_vertex: np.ndarray
    seam_corner: np.ndarray
    rep_corner: np.ndarray | None


def representative_corners(batch: Batch) -> np.ndarray:
    """One corner per point (any corner that uses it); ``C`` for unused points."""
    n_c = batch.total_corners
    rep = np.full(batch.total_points, n_c, dtype=np.intp)
    rep[batch.point_index] = np.arange(n_c, dtype=np.intp)
    return rep


def _key_words(column: np.ndarray, n: int, rows: np.ndarray | None = None) -> list[np.ndarray]:
    """Bit patterns of one split attribute's first ``n`` rows (or of ``rows``) as contiguous 1-D words: 2 floats
    are one uint64 view (no copy), 1 float one uint32 view, others are copied per column (separate 1-D arrays
    compare and gather several times faster than ``(n, k)`` rows)."""
    c = column[:n] if rows is None else np.take(column, rows, axis=0)
    if c.shape[1] == 2:
        return [c.view(np.uint64).reshape(-1)]
    if c.shape[1] == 1:
        return [c.view(np.uint32).reshape(-1)]
    bits = c.view(np.uint32)
    return [np.ascontiguousarray(bits[:, j]) for j in range(bits.shape[1])]


def _differs_on(column: np.ndarray, rows: np.ndarray, rep_rows: np.ndarray) -> np.ndarray:
    """Whether ``column`` at corners ``rows`` differs bitwise from the same column at ``rep_rows``."""
    out = None
    for w, r in zip(_key_words(column, 0, rows), _key_words(column, 0, rep_rows)):
        d = w != r
        out = d if out is None else out | d
    return out


_MIX1 = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)


def _unique_rows(points: np.ndarray, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First occurrence and inverse of the unique ``(point, words)`` rows, ordered by point.

    Each row becomes one uint64 key, the point in the high 32 bits and a hash of the words in the low 32 (sorting
    1-D integers is several times faster than a void view); a collision (two different rows of one point with the
    same key) is detected by comparing every row with its group's first row, and then the exact void-view
    ``np.unique`` is used instead.
    """
    if len(points) and int(points.max()) >= 1 << 32:
        return _unique_rows_exact(points, words)
    h = np.full(len(points), _MIX1, dtype=np.uint64)
    for j in range(words.shape[1]):
        h ^= words[:, j].astype(np.uint64)
        h *= _MIX2
        h ^= h >> np.uint64(31)
    # order by point first (the high bits), then by a hash of the attribute bits only, so the uniques come out
    # grouped by point (and so by mesh) in an order that does not depend on where the mesh sits in the batch
    order_key = (points.astype(np.uint64) << np.uint64(32)) | (h >> np.uint64(32))
    _, first, inverse = np.unique(order_key, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    rep = first[inverse]
    if np.array_equal(points[rep], points) and np.array_equal(words[rep], words):
        return first, inverse
    return _unique_rows_exact(points, words)


def _unique_rows_exact(points: np.ndarray, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.empty((len(points), 1 + words.shape[1]), dtype=np.uint64)
    rows[:, 0] = points.astype(">u8").view(np.uint64)  # big-endian: byte order sorts by point first
    rows[:, 1:] = words.astype(np.uint64)
    void = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).ravel()
    _, first, inverse = np.unique(void, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def split_vertices(
    batch: Batch, columns: list[np.ndarray], rep: np.ndarray, corner_sets: list[np.ndarray | None] | None = None
) -> VertexMap:
    """Split points whose corners disagree on the ``columns`` (corner_values of the split attributes).

    :param batch: the batch
    :param columns: ``(C + 1, k)`` corner values of every attribute that is faceVarying or uniform somewhere
    :param rep: :func:`representative_corners` of the batch
    :param corner_sets: per column, the corners that can differ (those of the meshes where it is per corner or per
        face), or None for all corners; the others hold zeros and are skipped
    """
    n_c = batch.total_corners
    gidx = batch.point_index
    rep_of_corner = np.take(rep, gidx)
    differs = np.zeros(n_c, dtype=bool)
    for column, rows in zip(columns, corner_sets or [None] * len(columns)):
        if rows is None:
            for w in _key_words(column, n_c):
                differs |= w != np.take(w, rep_of_corner)
        else:
            differs[rows] |= _differs_on(column, rows, np.take(rep_of_corner, rows))
    del rep_of_corner
    seam = np.flatnonzero(differs)
    m = batch.count
    if len(seam) == 0:
        return VertexMap(batch.local_index, batch.n_points, batch.point_start, None, np.zeros(0, np.intp),
                         np.zeros(0, np.intp), rep)
    seam_points = gidx[seam]
    words = [w for column in columns for w in _key_words(column, n_c, seam)]
    first, inverse = _unique_rows(seam_points, np.stack(words, axis=1))
    u_points = seam_points[first]
    u_corner = seam[first]
    # Meshes without points can share a start with the next mesh; searchsorted(right) picks the last one, which
    # is the mesh that owns the point.
    u_mesh = np.searchsorted(batch.point_start, u_points, side="right") - 1
    n_seams = np.bincount(u_mesh, minlength=m)
    seams_before = exclusive_cumsum(n_seams)
    # local vertex of a seam: after the mesh's points, in order of the unique rows
    seam_local = np.arange(len(first), dtype=np.intp) - seams_before[u_mesh] + batch.n_points[u_mesh]
    corner_vertex = batch.local_index.copy()
    corner_vertex[seam] = seam_local[inverse]
    n_vertices = batch.n_points + n_seams
    vertex_start = batch.point_start + seams_before
    n_v = int(n_vertices.sum())
    vertex_point = np.empty(n_v, dtype=np.intp)
    point_vid = np.arange(batch.total_points, dtype=np.intp)
    point_vid += np.repeat(seams_before, batch.n_points)
    vertex_point[point_vid] = np.arange(batch.total_points, dtype=np.intp)
    seam_vid = vertex_start[u_mesh] + seam_local
    vertex_point[seam_vid] = u_points
    return VertexMap(corner_vertex, n_vertices, vertex_start, vertex_point, seam_vid, u_corner, rep)
