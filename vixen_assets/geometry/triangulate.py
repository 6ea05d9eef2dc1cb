"""Vectorized polygon triangulation over a whole batch of faces.

Every face is first fan-triangulated from its first corner: face ``f`` with ``n`` corners starting at corner ``s``
gives triangles ``(s, s+k, s+k+1)`` for ``k = 1 .. n-2`` (the order UsdImaging uses). The cross products of the fan
triangles sum to the face's Newell normal ``N`` (twice its area, pointing along the right-hand winding).

A fan is correct exactly when every fan triangle of a simple polygon winds the same way as the polygon: a fan
triangle with ``cross . N < -1e-6 |N|^2`` means the first corner cannot see the whole polygon (the face is concave
there). Only such faces (rare: an L shape, a star, a dart quad) go to the per-face slow path, ear clipping of the
polygon projected onto the plane of its Newell normal; the result replaces the face's ``n-2`` fan triangles in place,
so triangle counts and offsets never change.

Everything here works in *corner* indices (positions in the concatenated ``faceVertexIndices``), so faceVarying
data and vertex splitting can follow the triangles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vixen_assets.geometry.batch import exclusive_cumsum, ranges

__all__ = ["Triangulation", "ear_clip", "triangulate", "triangulate_polygon", "CONCAVE_TOLERANCE"]

#: A fan triangle whose signed area is below ``-CONCAVE_TOLERANCE`` times its face's area marks the face concave.
CONCAVE_TOLERANCE = 1e-6


@dataclass
class Triangulation:
    """Triangles of a batch of faces, in corner indices.

    ``corners`` is ``(T, 3)`` (corner indices, right-hand winding); ``tri_count`` the triangles of each face and
    ``face_tri_start`` its first triangle; ``face_normals`` the ``(3, F)`` float32 area-weighted Newell normal of
    each face (x, y and z rows; length = twice the area), None when not asked for and not needed;
    ``concave`` the faces that were ear-clipped.
    """

    corners: np.ndarray
    tri_count: np.ndarray
    face_tri_start: np.ndarray
    face_normals: np.ndarray | None
    concave: np.ndarray

    def face(self) -> np.ndarray:
        """The face of every triangle (computed on demand)."""
        return np.repeat(np.arange(len(self.tri_count), dtype=np.intp), self.tri_count)


def _cross(a: list[np.ndarray], b: list[np.ndarray], out: np.ndarray) -> np.ndarray:
    """``out[k] = (a x b)[k]`` for x/y/z row arrays, with one temporary."""
    tmp = np.empty_like(out[0])
    for k, (i, j) in enumerate(((1, 2), (2, 0), (0, 1))):
        np.multiply(a[i], b[j], out=out[k])
        np.multiply(a[j], b[i], out=tmp)
        out[k] -= tmp
    return out


def triangulate(
    points: np.ndarray, point_index: np.ndarray, counts: np.ndarray, *, face_normals: bool = True
) -> Triangulation:
    """Triangulate all faces at once.

    :param points: ``(P, 3)`` float32 points of the batch
    :param point_index: the point of every corner (``faceVertexIndices`` made global), length ``C``
    :param counts: vertices per face (all >= 3, summing to ``C``)
    :param face_normals: compute face normals even when every face is a triangle (they are computed anyway
        for polygons, which need them for the concavity test); when False they may come back as None
    :returns: the :class:`Triangulation`
    """
    n_faces = len(counts)
    ntri = counts.astype(np.intp)
    ntri -= 2
    corner_start = exclusive_cumsum(counts)
    tri_start = exclusive_cumsum(ntri)
    n_tris = int(ntri.sum()) if n_faces else 0
    if n_tris == 0:
        return Triangulation(np.zeros((0, 3), np.intp), ntri, tri_start, np.zeros((3, n_faces), np.float32),
                             np.zeros(0, np.intp))
    all_tris = n_tris == n_faces
    if all_tris and not face_normals:  # nothing to test or compute: the corners are consecutive
        return Triangulation(np.arange(3 * n_tris, dtype=np.intp).reshape(n_tris, 3), ntri, tri_start, None,
                             np.zeros(0, np.intp))
    if all_tris:  # every face is a triangle: corners are consecutive
        c0 = np.arange(0, 3 * n_tris, 3, dtype=np.intp)
        c1 = c0 + 1
    else:
        tri_face = np.repeat(np.arange(n_faces, dtype=np.intp), ntri)
        c0 = np.take(corner_start, tri_face)
        # corner 1 of triangle t in face f is corner_start[f] + (t - tri_start[f]) + 1
        c1 = np.take(corner_start - tri_start + 1, tri_face)
        c1 += np.arange(n_tris, dtype=np.intp)
        del tri_face
    c2 = c1 + 1
    # Fan triangle cross products on separate x/y/z rows (measured 2x faster than (T, 3) rows).
    xyz = np.ascontiguousarray(points.T)
    i0, i1, i2 = np.take(point_index, c0), np.take(point_index, c1), np.take(point_index, c2)
    p0 = [np.take(xyz[k], i0) for k in range(3)]
    a = [np.take(xyz[k], i1) for k in range(3)]
    b = [np.take(xyz[k], i2) for k in range(3)]
    del i0, i1, i2
    for k in range(3):
        a[k] -= p0[k]
        b[k] -= p0[k]
    del p0
    cross = _cross(a, b, np.empty((3, n_tris), dtype=np.float32))
    del a, b
    corners = np.empty((n_tris, 3), dtype=np.intp)
    corners[:, 0], corners[:, 1], corners[:, 2] = c0, c1, c2
    del c0, c1, c2
    if all_tris:
        return Triangulation(corners, ntri, tri_start, cross, np.zeros(0, np.intp))

    # Face normals: the first fan triangle, plus the second for quads, plus a reduceat over the rest for larger
    # polygons (np.add.reduceat costs ~8 ns per segment, 25x a plain add, so it is kept off the common case).
    # Row by row: fancy indexing along axis 1 of a (3, N) array measured several times slower.
    face_n = [np.take(c, tri_start) for c in cross]
    candidates = []
    quads = np.flatnonzero(ntri == 2)
    if len(quads):
        second_tri = tri_start[quads] + 1
        second = [np.take(c, second_tri) for c in cross]
        first = [np.take(f, quads) for f in face_n]
        # A quad's fan is wrong only if its two triangles face apart: those few are checked exactly below.
        dot01 = first[0] * second[0]
        dot01 += first[1] * second[1]
        dot01 += first[2] * second[2]
        candidates.append(quads[dot01 < 0])
        for k in range(3):
            first[k] += second[k]
            face_n[k][quads] = first[k]
    big = np.flatnonzero(ntri > 2)
    if len(big):
        sel = ranges(tri_start[big], ntri[big])
        seg = exclusive_cumsum(ntri[big])
        for k in range(3):
            face_n[k][big] = np.add.reduceat(cross[k][sel], seg)
        candidates.append(big)
    face_normals = np.stack(face_n)
    # Concavity: a fan triangle winding against its face's normal.
    cand = np.concatenate(candidates) if candidates else np.zeros(0, np.intp)
    concave = np.zeros(0, np.intp)
    if len(cand):
        sel = ranges(tri_start[cand], ntri[cand])
        tf = np.repeat(cand, ntri[cand])
        fn = [np.take(f, tf) for f in face_n]
        cs = [np.take(c, sel) for c in cross]
        d = cs[0] * fn[0] + cs[1] * fn[1] + cs[2] * fn[2]
        limit = fn[0] * fn[0] + fn[1] * fn[1] + fn[2] * fn[2]
        limit *= -CONCAVE_TOLERANCE
        bad = np.flatnonzero(d < limit)
        if len(bad):
            concave = np.unique(tf[bad])
    for f in concave.tolist():
        s, n = int(corner_start[f]), int(counts[f])
        local = triangulate_polygon(points[point_index[s : s + n]], face_normals[:, f])
        t0 = int(tri_start[f])
        corners[t0 : t0 + n - 2] = local + s
    return Triangulation(corners, ntri, tri_start, face_normals, concave)


def triangulate_polygon(poly: np.ndarray, normal: np.ndarray | None = None) -> np.ndarray:
    """Triangulate one (possibly concave) polygon by ear clipping on its best-fit plane.

    :param poly: ``(n, 3)`` corner positions in winding order
    :param normal: the polygon's Newell normal (computed when None); its direction decides the winding
    :returns: ``(n - 2, 3)`` local corner indices, wound like the polygon
    """
    pts = np.asarray(poly, dtype=np.float64).tolist()  # plain floats: faster than numpy for small polygons
    n = len(pts)
    if normal is None:
        nx = ny = nz = 0.0
        for i in range(n):
            (x0, y0, z0), (x1, y1, z1) = pts[i], pts[(i + 1) % n]
            nx += y0 * z1 - z0 * y1
            ny += z0 * x1 - x0 * z1
            nz += x0 * y1 - y0 * x1
    else:
        nx, ny, nz = (float(v) for v in normal)
    length = math.sqrt(nx * nx + ny * ny + nz * nz)
    if length == 0.0 or not math.isfinite(length):
        return np.stack([np.zeros(n - 2, np.intp), np.arange(1, n - 1), np.arange(2, n)], axis=1)
    wx, wy, wz = nx / length, ny / length, nz / length
    # Orthonormal basis (u, v, w), right-handed, so the projected polygon winds counter-clockwise.
    ax, ay, az = (1.0, 0.0, 0.0) if abs(wx) < 0.9 else (0.0, 1.0, 0.0)
    ux, uy, uz = ay * wz - az * wy, az * wx - ax * wz, ax * wy - ay * wx
    ul = math.sqrt(ux * ux + uy * uy + uz * uz)
    ux, uy, uz = ux / ul, uy / ul, uz / ul
    vx, vy, vz = wy * uz - wz * uy, wz * ux - wx * uz, wx * uy - wy * ux
    cx = sum(p[0] for p in pts) / n
    cy = sum(p[1] for p in pts) / n
    cz = sum(p[2] for p in pts) / n
    xs = [(p[0] - cx) * ux + (p[1] - cy) * uy + (p[2] - cz) * uz for p in pts]
    ys = [(p[0] - cx) * vx + (p[1] - cy) * vy + (p[2] - cz) * vz for p in pts]
    return np.asarray(ear_clip(xs, ys), dtype=np.intp).reshape(-1, 3)


def ear_clip(xs: Sequence[float], ys: Sequence[float]) -> list[tuple[int, int, int]]:
    """Ear-clip a simple counter-clockwise 2-D polygon (``xs[i], ys[i]``) into ``n - 2`` counter-clockwise
    triangles of local indices.

    Degenerate or self-intersecting input still yields ``n - 2`` triangles (a convex corner, or any corner, is
    clipped when no proper ear exists), so the caller's triangle count never changes.
    """
    n = len(xs)
    if n < 3:
        return []
    xs = [float(x) for x in xs]
    ys = [float(y) for y in ys]
    span = max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0
    eps = 1e-12 * span * span
    prev = [(i - 1) % n for i in range(n)]
    nxt = [(i + 1) % n for i in range(n)]
    alive = n

    def cross(a: int, b: int, c: int) -> float:
        return (xs[b] - xs[a]) * (ys[c] - ys[a]) - (ys[b] - ys[a]) * (xs[c] - xs[a])

    def is_ear(b: int) -> bool:
        a, c = prev[b], nxt[b]
        if cross(a, b, c) <= eps:
            return False
        ax, ay, bx, by, cx, cy = xs[a], ys[a], xs[b], ys[b], xs[c], ys[c]
        j = nxt[c]
        while j != a:
            px, py = xs[j], ys[j]
            # only vertices that are not corners of the candidate (duplicates included) can block it
            if not ((px == ax and py == ay) or (px == bx and py == by) or (px == cx and py == cy)):
                if (
                    (bx - ax) * (py - ay) - (by - ay) * (px - ax) >= -eps
                    and (cx - bx) * (py - by) - (cy - by) * (px - bx) >= -eps
                    and (ax - cx) * (py - cy) - (ay - cy) * (px - cx) >= -eps
                ):
                    return False
            j = nxt[j]
        return True

    out: list[tuple[int, int, int]] = []
    i = 0
    misses = 0
    while alive > 3:
        if is_ear(i):
            a, c = prev[i], nxt[i]
            out.append((a, i, c))
            nxt[a], prev[c] = c, a
            alive -= 1
            i = a  # the neighbours may have become ears
            misses = 0
            continue
        i = nxt[i]
        misses += 1
        if misses >= alive:  # no proper ear: clip the most convex corner (degenerate or self-intersecting input)
            best, best_val, j = i, -math.inf, i
            for _ in range(alive):
                val = cross(prev[j], j, nxt[j])
                if val > best_val:
                    best, best_val = j, val
                j = nxt[j]
            a, c = prev[best], nxt[best]
            out.append((a, best, c))
            nxt[a], prev[c] = c, a
            alive -= 1
            i = a
            misses = 0
    out.append((prev[i], i, nxt[i]))
    return out
