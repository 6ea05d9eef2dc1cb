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
    ``i``). Only the remaining *seam* corners (a few percent on real meshes: UV seams, hard edges) are deduplicated
    with ``np.unique`` over a void view of ``(point, attribute bytes)`` rows, and each distinct combination becomes
    a vertex appended after the mesh's points. This finds the same unique (point, attributes) combinations as a
    full ``np.unique`` over all corners, without sorting millions of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vixen_assets.geometry.batch import Batch, exclusive_cumsum
from vixen_assets.geometry.mesh_source import PrimvarData

__all__ = ["Flattened", "VertexMap", "flatten_attribute", "split_vertices", "CLASS_OF"]

ABSENT, CONSTANT, VERTEX, UNIFORM, FACE_VARYING = range(5)
CLASS_OF = {"constant": CONSTANT, "vertex": VERTEX, "varying": VERTEX, "uniform": UNIFORM, "faceVarying": FACE_VARYING}


@dataclass
class Flattened:
    """One attribute over a batch: ``point_values`` ``(P, k)``, ``corner_values`` ``(C + 1, k)`` or None (the last
    row is zeros, for unused points), and ``split_meshes``: the meshes whose attribute is per corner or per face."""

    components: int
    point_values: np.ndarray
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


def _expanded(pvs: list[PrimvarData], k: int, owners=None, field: str = "") -> np.ndarray:
    """Index-expanded elements of ``pvs``, concatenated; index ranges are checked in one vectorized pass and a bad
    one raises the owning source's :class:`FormatError` (``owners[i]`` owns ``pvs[i]``)."""
    elems = [_elements(pv, k) for pv in pvs]
    data = elems[0] if len(elems) == 1 else np.concatenate(elems)
    indexed = [i for i, pv in enumerate(pvs) if pv.indices is not None]
    if not indexed:
        return data
    n_elem = np.fromiter((len(el) for el in elems), dtype=np.intp, count=len(elems))
    elem_start = exclusive_cumsum(n_elem)
    n_idx = np.fromiter((len(pv.indices) if pv.indices is not None else len(el) for pv, el in zip(pvs, elems)),
                        dtype=np.intp, count=len(pvs))
    parts = [pv.indices if pv.indices is not None else np.arange(len(el), dtype=np.int32)
             for pv, el in zip(pvs, elems)]
    local = parts[0] if len(parts) == 1 else np.concatenate(parts)
    has = n_idx > 0
    if has.any():
        starts = exclusive_cumsum(n_idx)[has]
        lo = np.minimum.reduceat(local, starts)
        hi = np.maximum.reduceat(local, starts)
        bad = np.flatnonzero((lo < 0) | (hi >= n_elem[has]))
        if len(bad):
            i = int(np.flatnonzero(has)[bad[0]])
            idx = pvs[i].indices
            pos = int(np.flatnonzero((idx < 0) | (idx >= n_elem[i]))[0])
            message = f"index {int(idx[pos])} at position {pos} is out of range for {int(n_elem[i])} values"
            if owners is not None:
                raise owners[i].error(message, field + ":indices")
            raise IndexError(message)
    glob = local.astype(np.intp)
    glob += np.repeat(elem_start, n_idx)
    return np.take(data, glob, axis=0)


def _first_element(pv: PrimvarData, k: int) -> np.ndarray:
    el = _elements(pv, k)
    i = int(pv.indices[0]) if pv.indices is not None and len(pv.indices) else 0
    return el[i] if len(el) else np.zeros(k, np.float32)


def flatten_attribute(batch: Batch, per_mesh: list[PrimvarData | None], k: int, field: str = "") -> Flattened:
    """Flatten one attribute (``per_mesh[i]`` for mesh ``i``, None when absent) to ``k`` float32 components.

    ``point_values`` rows of meshes whose attribute is ``faceVarying``/``uniform`` are left zero here; the caller
    fills them from each point's representative corner once the vertex split is known. ``field`` names the
    attribute in errors (``primvars:st``).
    """
    src = batch.sources

    def expand(meshes):
        if len(meshes) == m:
            return _expanded(per_mesh, k, src, field)
        return _expanded([per_mesh[i] for i in meshes], k, [src[i] for i in meshes], field)

    m = batch.count
    cls = np.fromiter(
        (CLASS_OF[pv.interpolation] if pv is not None else ABSENT for pv in per_mesh), dtype=np.int8, count=m
    )
    n_p = batch.total_points
    vert = np.flatnonzero(cls == VERTEX)
    if len(vert) == m:
        point_values = expand(vert)
    else:
        point_values = np.zeros((n_p, k), dtype=np.float32)
        if len(vert):
            point_values[batch.point_ranges(vert)] = expand(vert)
        const = np.flatnonzero(cls == CONSTANT)
        if len(const):
            values = np.stack([_first_element(per_mesh[i], k) for i in const])
            point_values[batch.point_ranges(const)] = np.repeat(values, batch.n_points[const], axis=0)
    split = np.flatnonzero(cls >= UNIFORM)
    corner_values = None
    if len(split):
        n_c = batch.total_corners
        fv = np.flatnonzero(cls == FACE_VARYING)
        uni = np.flatnonzero(cls == UNIFORM)
        if len(fv) == m:
            corner_values = np.empty((n_c + 1, k), dtype=np.float32)
            corner_values[:n_c] = expand(fv)
            corner_values[n_c] = 0
        else:
            corner_values = np.zeros((n_c + 1, k), dtype=np.float32)
            if len(fv):
                corner_values[batch.corner_ranges(fv)] = expand(fv)
        if len(uni):
            face_data = expand(uni)
            sel = batch.corner_ranges(uni)
            data_start = exclusive_cumsum(batch.n_faces[uni])
            local = batch.corner_face()[sel] - np.repeat(batch.face_start[uni] - data_start, batch.n_corners[uni])
            corner_values[sel] = np.take(face_data, local, axis=0)
    return Flattened(k, point_values, corner_values, split)


@dataclass
class VertexMap:
    """How corners map to output vertices.

    ``corner_vertex`` is every corner's global vertex; ``n_vertices`` the vertex count per mesh; ``vertex_point``
    the source point of every vertex (None when no vertex was split: vertex == point); ``seam_vertex`` and
    ``seam_corner`` the split-off vertices and a corner holding their attribute values; ``rep_corner`` each point's
    representative corner (``C`` for an unused point, the zero row of ``corner_values``).
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


def _key_words(columns: list[np.ndarray], n: int) -> list[np.ndarray]:
    """Bit patterns of the split attributes' first ``n`` rows, one contiguous uint32 array per component
    (separate 1-D arrays compare and gather several times faster than ``(n, k)`` rows)."""
    words = []
    for c in columns:
        bits = c[:n].view(np.uint32)
        words.extend(np.ascontiguousarray(bits[:, j]) for j in range(bits.shape[1]))
    return words


_MIX1 = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)


def _unique_rows(points: np.ndarray, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First occurrence and inverse of the unique ``(point, words)`` rows, ordered by point.

    The rows are hashed to one uint64 (sorted ``np.unique`` of 1-D integers is several times faster than over a
    void view); a collision is detected by comparing every row with its group's first row, and then the exact
    void-view ``np.unique`` is used instead.
    """
    h = points.astype(np.uint64) * _MIX1
    for j in range(words.shape[1]):
        h ^= words[:, j].astype(np.uint64)
        h *= _MIX2
        h ^= h >> np.uint64(31)
    # order by point first (the high bits), hash second, so the uniques come out grouped by point and mesh
    order_key = (points.astype(np.uint64) << np.uint64(32)) | (h >> np.uint64(32))
    _, first, inverse = np.unique(order_key, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    rep = first[inverse]
    if np.array_equal(points[rep], points) and np.array_equal(words[rep], words):
        return first, inverse
    rows = np.empty((len(points), 1 + words.shape[1]), dtype=np.uint64)
    rows[:, 0] = points.astype(">u8").view(np.uint64)  # big-endian: byte order sorts by point first
    rows[:, 1:] = words.astype(np.uint64)
    void = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).ravel()
    _, first, inverse = np.unique(void, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def split_vertices(batch: Batch, columns: list[np.ndarray], rep: np.ndarray) -> VertexMap:
    """Split points whose corners disagree on the ``columns`` (corner_values of the split attributes).

    :param batch: the batch
    :param columns: ``(C + 1, k)`` corner values of every attribute that is faceVarying or uniform somewhere
    :param rep: :func:`representative_corners` of the batch
    """
    n_c = batch.total_corners
    gidx = batch.point_index
    words = _key_words(columns, n_c)
    rep_of_corner = np.take(rep, gidx)
    differs = words[0] != np.take(words[0], rep_of_corner)
    for w in words[1:]:
        differs |= w != np.take(w, rep_of_corner)
    seam = np.flatnonzero(differs)
    m = batch.count
    if len(seam) == 0:
        return VertexMap(gidx, batch.n_points.copy(), batch.point_start.copy(), None, np.zeros(0, np.intp),
                         np.zeros(0, np.intp), rep)
    seam_points = gidx[seam]
    first, inverse = _unique_rows(seam_points, np.stack([w[seam] for w in words], axis=1))
    u_points = seam_points[first]
    u_corner = seam[first]
    u_mesh = np.searchsorted(batch.point_start, u_points, side="right") - 1
    # Meshes without points can share a start with the next mesh; searchsorted(right) picks the last one, which
    # is the mesh that owns the point.
    n_seams = np.bincount(u_mesh, minlength=m)
    seams_before = exclusive_cumsum(n_seams)
    point_end = batch.point_start + batch.n_points
    seam_vid = point_end[u_mesh] + np.arange(len(first), dtype=np.intp)
    corner_vertex = gidx + np.repeat(seams_before, batch.n_corners)
    corner_vertex[seam] = seam_vid[inverse]
    n_vertices = batch.n_points + n_seams
    vertex_start = batch.point_start + seams_before
    n_v = int(n_vertices.sum())
    vertex_point = np.empty(n_v, dtype=np.intp)
    point_vid = np.arange(batch.total_points, dtype=np.intp) + np.repeat(seams_before, batch.n_points)
    vertex_point[point_vid] = np.arange(batch.total_points, dtype=np.intp)
    vertex_point[seam_vid] = u_points
    return VertexMap(corner_vertex, n_vertices, vertex_start, vertex_point, seam_vid, u_corner, rep)
