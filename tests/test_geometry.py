"""Tests of vixen_assets.geometry: reading UsdGeom.Mesh prims and preparing them for the GPU.

Triangulation is checked against an independent per-face reference written here with plain Python loops (fan
for convex faces, a simple O(n^3) ear clipper for the rest). Triangles are compared as multisets of vertex tuples
rotated so the smallest vertex comes first (winding kept), so split vertices compare by their values.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pxr import Sdf, Usd, UsdGeom, UsdShade, Vt

from vixen_assets.errors import FormatError
from vixen_assets.geometry.mesh_source import MeshSource, PrimvarData, SubsetSource, validate_sources
from vixen_assets.geometry.packing import PreparedMesh
from vixen_assets.geometry.prepare import prepare_meshes
from vixen_assets.geometry.triangulate import triangulate_polygon
from vixen_assets.geometry.usd_mesh import read_mesh_source
from vixen_assets.testing import missing_asset

REPO = Path(__file__).resolve().parent.parent
SMALL_SCENE = REPO / "samples" / "scenes" / "small_scene.usda"


def shared_usd_dir() -> Path:
    base = os.environ.get("VIXEN_SHARED_ASSETS")
    return Path(base) / "usd" if base else REPO.parent / "shared" / "assets" / "usd"


# --------------------------------------------------------------------------------------------------------------------
# Independent reference
# --------------------------------------------------------------------------------------------------------------------


def newell(poly):
    nx = ny = nz = 0.0
    n = len(poly)
    for i in range(n):
        x0, y0, z0 = poly[i]
        x1, y1, z1 = poly[(i + 1) % n]
        nx += (y0 - y1) * (z0 + z1)
        ny += (z0 - z1) * (x0 + x1)
        nz += (x0 - x1) * (y0 + y1)
    return nx, ny, nz


def sub(a, b):
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def is_convex(poly, normal) -> bool:
    n = len(poly)
    scale = dot(normal, normal)
    for i in range(n):
        c = cross(sub(poly[i], poly[i - 1]), sub(poly[(i + 1) % n], poly[i]))
        if dot(c, normal) < -1e-7 * scale:
            return False
    return True


def project_ccw(poly, normal):
    """Drop the dominant axis of the normal; order the remaining two so the polygon winds counter-clockwise."""
    ax = max(range(3), key=lambda k: abs(normal[k]))
    u, v = {0: (1, 2), 1: (2, 0), 2: (0, 1)}[ax]
    if normal[ax] < 0:
        u, v = v, u
    return [(p[u], p[v]) for p in poly]


def orient2(a, b, c):
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def ref_ear_clip(pts2):
    idx = list(range(len(pts2)))
    tris = []
    while len(idx) > 3:
        for k in range(len(idx)):
            a, b, c = idx[k - 1], idx[k], idx[(k + 1) % len(idx)]
            if orient2(pts2[a], pts2[b], pts2[c]) <= 0:
                continue
            blocked = False
            for p in idx:
                if p in (a, b, c):
                    continue
                q = pts2[p]
                if orient2(pts2[a], pts2[b], q) >= 0 and orient2(pts2[b], pts2[c], q) >= 0 and orient2(
                    pts2[c], pts2[a], q
                ) >= 0:
                    blocked = True
                    break
            if not blocked:
                tris.append((a, b, c))
                idx.pop(k)
                break
        else:  # degenerate: fan the rest
            tris.extend((idx[0], idx[i], idx[i + 1]) for i in range(1, len(idx) - 1))
            return tris
    tris.append(tuple(idx))
    return tris


def ref_face_triangles(poly):
    """Local corner triples of one face and whether the fan was used."""
    normal = newell(poly)
    n = len(poly)
    if n == 3 or is_convex(poly, normal):
        return [(0, i, i + 1) for i in range(1, n - 1)], True
    return ref_ear_clip(project_ccw(poly, normal)), False


def ref_corner_values(src: MeshSource, pv: PrimvarData | None, width: int):
    """Per-corner values of a primvar by plain loops (zeros when absent), as tuples of float32."""
    n_corners = len(src.face_vertex_indices)
    if pv is None:
        return [(0.0,) * width] * n_corners
    vals = np.asarray(pv.values, dtype=np.float32)
    vals = vals.reshape(len(vals) // pv.element_size, -1) if len(vals) else vals

    def elem(i):
        if pv.indices is not None:
            i = int(pv.indices[i])
        row = [float(x) for x in vals[i][:width]]
        return tuple(row + [0.0] * (width - len(row)))

    out = []
    corner = 0
    for f, count in enumerate(src.face_vertex_counts):
        for _ in range(count):
            point = int(src.face_vertex_indices[corner])
            interp = pv.interpolation
            if interp == "constant":
                out.append(elem(0))
            elif interp == "uniform":
                out.append(elem(f))
            elif interp in ("vertex", "varying"):
                out.append(elem(point))
            else:
                out.append(elem(corner))
            corner += 1
    return out


def rotate_min(tri):
    k = min(range(3), key=lambda i: tri[i])
    return tri[k:] + tri[:k]


def tri_area(p0, p1, p2):
    c = cross(sub(p1, p0), sub(p2, p0))
    return 0.5 * math.sqrt(dot(c, c))


def reference(src: MeshSource, attrs=("st",)):
    """(convex triangles Counter, concave face areas total, concave triangle count) of the reference."""
    pts = [tuple(float(x) for x in p) for p in src.points]
    corner_vals = [ref_corner_values(src, src.primvars.get(a), 2 if a == "st" else 3) for a in attrs]
    holes = set() if src.hole_indices is None else {int(h) for h in src.hole_indices}
    convex = Counter()
    concave_area = 0.0
    concave_tris = 0
    start = 0
    for f, count in enumerate(src.face_vertex_counts):
        corners = list(range(start, start + count))
        start += count
        if f in holes:
            continue
        poly = [pts[int(src.face_vertex_indices[c])] for c in corners]
        local, fan = ref_face_triangles(poly)
        for a, b, c in local:
            tri = [corners[a], corners[b], corners[c]]
            if src.left_handed:
                tri = [tri[0], tri[2], tri[1]]
            verts = tuple((pts[int(src.face_vertex_indices[c])],) + tuple(cv[c] for cv in corner_vals) for c in tri)
            if fan:
                convex[rotate_min(verts)] += 1
            else:
                concave_area += tri_area(*(v[0] for v in verts))
                concave_tris += 1
    return convex, concave_area, concave_tris


def prepared_triangles(pm: PreparedMesh, attrs=("st",)):
    verts = pm.vertices
    pos = [tuple(float(x) for x in p) for p in verts["position"]]
    cols = [[tuple(float(x) for x in np.atleast_1d(v)) for v in verts[a]] for a in attrs]
    out = []
    for a, b, c in pm.triangles().tolist():
        out.append(rotate_min(tuple((pos[i],) + tuple(col[i] for col in cols) for i in (a, b, c))))
    return out


def assert_matches_reference(src: MeshSource, pm: PreparedMesh, attrs=("st",)):
    convex, concave_area, concave_tris = reference(src, attrs)
    got = Counter(prepared_triangles(pm, attrs))
    missing = convex - got
    assert not missing, f"{src.prim_path}: {sum(missing.values())} reference triangles missing: {next(iter(missing))}"
    rest = got - convex
    assert sum(rest.values()) == concave_tris, src.prim_path
    rest_area = sum(tri_area(*(v[0] for v in tri)) * k for tri, k in rest.items())
    assert rest_area == pytest.approx(concave_area, rel=1e-4, abs=1e-9), src.prim_path
    assert pm.triangle_count == sum(convex.values()) + concave_tris
    assert pm.index_count == 3 * pm.triangle_count == len(pm.indices)


def ref_smooth_normals(src: MeshSource):
    """Area-weighted smooth normals by loops; hole faces do not contribute."""
    pts = [tuple(float(x) for x in p) for p in src.points]
    acc = [[0.0, 0.0, 0.0] for _ in pts]
    holes = set() if src.hole_indices is None else {int(h) for h in src.hole_indices}
    start = 0
    for f, count in enumerate(src.face_vertex_counts):
        ids = [int(i) for i in src.face_vertex_indices[start : start + count]]
        start += count
        if f in holes:
            continue
        n = newell([pts[i] for i in ids])
        if src.left_handed:
            n = (-n[0], -n[1], -n[2])
        for i in ids:
            for k in range(3):
                acc[i][k] += n[k]
    out = []
    for a in acc:
        length = math.sqrt(dot(a, a))
        out.append(tuple(x / length for x in a) if length else (0.0, 0.0, 0.0))
    return out


# --------------------------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------------------------


def mesh(points, counts, indices, **kw) -> MeshSource:
    return MeshSource(
        points=np.asarray(points, dtype=np.float32).reshape(-1, 3),
        face_vertex_counts=np.asarray(counts, dtype=np.int32),
        face_vertex_indices=np.asarray(indices, dtype=np.int32),
        prim_path=kw.pop("prim_path", "/Test"),
        layer_path=kw.pop("layer_path", "test.usda"),
        **kw,
    )


def random_rotation(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def star(n_tips, r_out=1.0, r_in=0.4, phase=0.3):
    ang = np.arange(2 * n_tips) / (2 * n_tips) * 2 * math.pi + phase
    rad = np.where(np.arange(2 * n_tips) % 2 == 0, r_out, r_in)
    return np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)


def random_soup(rng, n_faces, concave_every=0, max_n=8, with_st=True):
    """Faces with their own points: convex polygons (random angles on a circle), and every ``concave_every``-th
    face a star, each placed with a random rotation and offset."""
    pts, counts, idx, st_vals = [], [], [], []
    start = 0
    for f in range(n_faces):
        if concave_every and f % concave_every == concave_every - 1:
            poly2 = star(int(rng.integers(3, 7)), 1.0, float(rng.uniform(0.2, 0.6)), float(rng.uniform(0, 6)))
        else:
            n = int(rng.integers(3, max_n + 1))
            ang = np.sort(rng.uniform(0, 2 * math.pi, n))
            poly2 = np.stack([np.cos(ang), np.sin(ang)], 1)
        n = len(poly2)
        p3 = np.concatenate([poly2, np.zeros((n, 1))], 1) @ random_rotation(rng).T + rng.uniform(-10, 10, 3)
        pts.append(p3)
        counts.append(n)
        idx.extend(range(start, start + n))
        st_vals.append(rng.uniform(0, 1, (n, 2)))
        start += n
    primvars = {}
    if with_st:
        primvars["st"] = PrimvarData(np.concatenate(st_vals).astype(np.float32), "faceVarying")
    return mesh(np.concatenate(pts), counts, idx, primvars=primvars)


def grid(nx, ny, *, quads=True):
    xs, ys = np.meshgrid(np.arange(nx + 1, dtype=np.float32), np.arange(ny + 1, dtype=np.float32))
    pts = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size, np.float32)], 1)
    i, j = np.meshgrid(np.arange(nx), np.arange(ny))
    a = (j * (nx + 1) + i).ravel()
    q = np.stack([a, a + 1, a + nx + 2, a + nx + 1], 1)
    if quads:
        return mesh(pts, np.full(len(q), 4), q.ravel())
    t = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]], 1).reshape(-1, 3)
    return mesh(pts, np.full(len(t), 3), t.ravel())


def polygon_mesh(poly2, left_handed=False):
    poly2 = np.asarray(poly2, dtype=np.float64)
    pts = np.concatenate([poly2, np.zeros((len(poly2), 1))], 1)
    return mesh(pts, [len(pts)], range(len(pts)), left_handed=left_handed)


def shoelace(poly2):
    x, y = np.asarray(poly2, dtype=np.float64).T
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def point_in_polygon(p, poly2):
    x, y = p
    inside = False
    n = len(poly2)
    for i in range(n):
        (x0, y0), (x1, y1) = poly2[i], poly2[(i + 1) % n]
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


# --------------------------------------------------------------------------------------------------------------------
# Triangulation
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_random_meshes_match_reference(seed):
    rng = np.random.default_rng(seed)
    sources = [random_soup(rng, int(rng.integers(1, 60)), concave_every=int(rng.integers(0, 5))) for _ in range(7)]
    sources.append(grid(5, 4))
    sources.append(grid(3, 3, quads=False))
    for pm, src in zip(prepare_meshes(sources), sources):
        assert_matches_reference(src, pm)


def test_batch_equals_one_by_one():
    rng = np.random.default_rng(11)
    seamy = grid(6, 5)  # faceVarying st drawn from 4 values: most points get several vertices
    seamy.primvars["st"] = PrimvarData(rng.integers(0, 2, (120, 2)).astype(np.float32), "faceVarying")
    sources = [random_soup(rng, 20, concave_every=3) for _ in range(5)] + [grid(4, 4), seamy]
    sources.insert(2, seamy)
    together = prepare_meshes(sources)
    for src, pm in zip(sources, together):
        alone = prepare_meshes([src])[0]
        assert np.array_equal(alone.vertices, pm.vertices)
        assert np.array_equal(alone.indices, pm.indices)
        assert alone.content_hash == pm.content_hash


def test_small_chunks_give_the_same_result(monkeypatch):
    from vixen_assets.geometry import prepare as prepare_module

    rng = np.random.default_rng(5)
    sources = [random_soup(rng, 30, concave_every=4) for _ in range(12)]
    expected = prepare_meshes(sources)
    monkeypatch.setattr(prepare_module, "CHUNK_CORNERS", 64)
    for a, b in zip(expected, prepare_meshes(sources)):
        assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.indices, b.indices)


L_SHAPE = [(0, 0), (2, 0), (2, 1), (1, 1), (1, 2), (0, 2)]
# The L rotated so that corner 0 is the reflex corner: a fan from corner 0 covers area outside the polygon.
L_REFLEX_FIRST = L_SHAPE[3:] + L_SHAPE[:3]


@pytest.mark.parametrize(
    "poly2",
    [
        L_SHAPE,
        L_REFLEX_FIRST,
        star(5).tolist(),
        star(7, 1, 0.2, 0.0).tolist(),
        [(0, 0), (2, 0), (0.5, 0.5), (0, 2)],
        [(0.5, 0.5), (0, 2), (0, 0), (2, 0)],
    ],
    ids=["L", "L-reflex-first", "star5", "star7", "dart-quad", "dart-quad-reflex-first"],
)
def test_concave_polygon_area_and_containment(poly2):
    poly2 = [tuple(map(float, p)) for p in poly2]
    pm = prepare_meshes([polygon_mesh(poly2)], attributes=("position",))[0]
    pos = pm.vertices["position"][:, :2].astype(np.float64)
    tris = pm.triangles()
    assert len(tris) == len(poly2) - 2
    total = 0.0
    for a, b, c in tris:
        area = shoelace(pos[[a, b, c]])
        assert area > 0, "triangle winds against the polygon"
        total += area
        centroid = pos[[a, b, c]].mean(0)
        assert point_in_polygon(centroid, poly2), "triangle outside the polygon"
        for u, v in ((a, b), (b, c), (c, a)):
            mid = (pos[u] + pos[v]) / 2
            on_edge = any(
                abs(orient2(poly2[i], poly2[(i + 1) % len(poly2)], mid)) < 1e-6 for i in range(len(poly2))
            )
            assert on_edge or point_in_polygon(mid, poly2), "triangle edge leaves the polygon"
    assert total == pytest.approx(shoelace(poly2), rel=1e-6)


def test_concave_polygon_in_3d_and_batch():
    rng = np.random.default_rng(3)
    rot = random_rotation(rng)
    poly2 = np.asarray(L_REFLEX_FIRST, dtype=np.float64)
    pts = np.concatenate([poly2, np.zeros((6, 1))], 1) @ rot.T + [5, -2, 1]
    src = mesh(pts, [6], range(6))
    pm = prepare_meshes([grid(2, 2), src])[1]
    p = pm.vertices["position"].astype(np.float64)
    normal = rot @ [0, 0, 1]
    area = sum(0.5 * np.dot(np.cross(p[b] - p[a], p[c] - p[a]), normal) for a, b, c in pm.triangles())
    assert area == pytest.approx(shoelace(poly2), rel=1e-5)
    assert_matches_reference(src, pm, attrs=())


def test_left_handed_flips_winding_and_normals():
    src = grid(3, 2)
    flipped = grid(3, 2)
    flipped.left_handed = True
    a, b = prepare_meshes([src, flipped])
    assert_matches_reference(flipped, b, attrs=())
    ta = {rotate_min(tuple(t)) for t in a.triangles().tolist()}
    tb = {rotate_min((t[0], t[2], t[1])) for t in b.triangles().tolist()}
    assert ta == tb
    assert np.allclose(a.vertices["normal"], [0, 0, 1])
    assert np.allclose(b.vertices["normal"], [0, 0, -1])


def test_holes_are_dropped():
    src = grid(3, 3)
    src.hole_indices = np.array([0, 4], dtype=np.int32)
    pm = prepare_meshes([src])[0]
    assert pm.triangle_count == 2 * (9 - 2)
    assert_matches_reference(src, pm, attrs=())
    empty = mesh(np.zeros((0, 3)), [], [])
    out = prepare_meshes([empty, src, empty, grid(1, 1), empty])
    assert [p.triangle_count for p in out] == [0, 14, 0, 2, 0]
    assert_matches_reference(src, out[1], attrs=())


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(3, 24),
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["convex", "star"]),
)
def test_property_triangulation_preserves_area(n, seed, kind):
    rng = np.random.default_rng(seed)
    ang = np.sort(rng.uniform(0, 2 * math.pi, n))
    gaps = np.diff(np.concatenate([ang, [ang[0] + 2 * math.pi]]))
    if len(np.unique(ang)) < n or (kind == "star" and gaps.max() >= math.pi * 0.95):
        return  # a star needs the origin inside its kernel to be a simple polygon
    rad = np.ones(n) if kind == "convex" else rng.uniform(0.2, 1.0, n)
    poly2 = np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
    area = shoelace(poly2)
    if area < 1e-3:
        return
    rot = random_rotation(rng)
    pts = np.concatenate([poly2, np.zeros((n, 1))], 1) @ rot.T
    pm = prepare_meshes([mesh(pts, [n], range(n))], attributes=("position",))[0]
    p = pm.vertices["position"].astype(np.float64)
    normal = rot @ [0, 0, 1]
    signed = [0.5 * np.dot(np.cross(p[b] - p[a], p[c] - p[a]), normal) for a, b, c in pm.triangles()]
    assert len(signed) == n - 2
    assert sum(signed) == pytest.approx(area, rel=1e-4)
    assert min(signed) > -1e-5 * area
    # the polygon function itself, straight on the 2-D points
    local = triangulate_polygon(np.concatenate([poly2, np.zeros((n, 1))], 1))
    assert sum(shoelace(poly2[list(t)]) for t in local) == pytest.approx(area, rel=1e-6)


def test_empty_and_degenerate_meshes_in_a_batch():
    empty = mesh(np.zeros((0, 3)), [], [])
    points_only = mesh([(0, 0, 0), (1, 2, 3)], [], [])
    unused = grid(2, 2)
    unused.points = np.concatenate([unused.points, np.float32([[9, 9, 9]])])
    unused.primvars["st"] = PrimvarData(np.arange(2 * 16, dtype=np.float32).reshape(16, 2), "faceVarying")
    tris_only = grid(2, 1, quads=False)
    sources = [empty, unused, points_only, tris_only, empty]
    out = prepare_meshes(sources)
    assert [pm.triangle_count for pm in out] == [0, 8, 0, 4, 0]
    assert out[0].vertex_count == 0 and out[0].submeshes == [] and len(out[0].indices) == 0
    assert out[2].vertex_count == 2 and out[2].bounds[1].tolist() == [1, 2, 3]
    assert out[1].vertex_count >= 10 and out[1].vertices["position"][9].tolist() == [9, 9, 9]
    for src, pm in zip(sources, out):
        assert_matches_reference(src, pm)
    assert [p.triangle_count for p in prepare_meshes([tris_only])] == [4]


def test_everything_at_once():
    rng = np.random.default_rng(12)
    src = random_soup(rng, 30, concave_every=4)
    src.left_handed = True
    src.hole_indices = np.array([2, 3, 17], np.int32)
    src.primvars["tint"] = PrimvarData(rng.uniform(0, 1, (30, 3)).astype(np.float32), "uniform")
    src.subsets = [SubsetSource("odd", np.arange(1, 30, 2, dtype=np.int32), "/M/odd")]
    pm = prepare_meshes([grid(2, 2), src], attributes=("position", "normal", "st", "tint"))[1]
    assert_matches_reference(src, pm, attrs=("st", "tint"))
    odd = sum(int(c) - 2 for f, c in enumerate(src.face_vertex_counts) if f % 2 and f not in (3, 17))
    assert pm.submeshes[0].index_count == 3 * odd and pm.submeshes[1].name == ""


# --------------------------------------------------------------------------------------------------------------------
# Normals
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("left_handed", [False, True])
def test_computed_normals_match_loop(left_handed):
    rng = np.random.default_rng(2)
    nx, ny = 6, 5
    src = grid(nx, ny)
    src.points[:, 2] = rng.uniform(-0.3, 0.3, len(src.points)).astype(np.float32)
    src.left_handed = left_handed
    other = random_soup(rng, 10, concave_every=3, with_st=False)
    pms = prepare_meshes([other, src])
    for s, pm in zip((other, src), pms):
        assert pm.vertex_count == len(s.points)  # nothing faceVarying: vertex i is point i
        expected = np.array(ref_smooth_normals(s))
        assert np.allclose(pm.vertices["normal"], expected, atol=1e-5)


def test_authored_normals_all_interpolations():
    src = grid(2, 1)  # 2 quads, 6 points, 8 corners
    cases = {
        "constant": np.array([[0, 1, 0]], np.float32),
        "uniform": np.array([[1, 0, 0], [0, 1, 0]], np.float32),
        "vertex": np.tile(np.float32([0, 0, 1]), (6, 1)) * np.arange(1, 7, dtype=np.float32)[:, None],
        "faceVarying": np.arange(24, dtype=np.float32).reshape(8, 3),
    }
    for interp, normals in cases.items():
        src.normals, src.normals_interpolation = normals, interp
        pm = prepare_meshes([src], attributes=("position", "normal"))[0]
        convex, _, _ = reference_with(src, "normal", src.normals_primvar())
        assert Counter(prepared_triangles(pm, ("normal",))) == convex, interp


def reference_with(src, name, pv):
    tmp = MeshSource(src.points, src.face_vertex_counts, src.face_vertex_indices, primvars={name: pv},
                     left_handed=src.left_handed)
    return reference(tmp, (name,))


# --------------------------------------------------------------------------------------------------------------------
# Primvars and vertex splitting
# --------------------------------------------------------------------------------------------------------------------


def two_quads():
    # the layout of usd-wg's primvar_interpolation.usda: two quads sharing the edge (2, 3)
    pts = [(-1, 0, 0), (-1, 1, 0), (0, 1, 0), (0, 0, 0), (1, 1, 0), (1, 0, 0)]
    return mesh(pts, [4, 4], [3, 2, 1, 0, 5, 4, 2, 3])


@pytest.mark.parametrize(
    "interp,values,indices,vertices",
    [
        ("constant", [[1, 0.3, 0.3]], None, 6),
        ("uniform", [[1, 0.3, 0.3], [0.3, 0.3, 1]], None, 8),
        ("uniform", [[1, 0, 0], [0, 0, 1]], [1, 1], 6),  # indexed, both faces the same value: no split
        ("vertex", [[i / 6, 0, 1] for i in range(6)], None, 6),
        ("varying", [[i / 6, 1, 0] for i in range(6)], None, 6),
        ("faceVarying", [[i / 8, 0, 0] for i in range(8)], None, 8),
        ("faceVarying", [[0, 0, 0], [1, 1, 1]], [0, 0, 0, 0, 0, 0, 1, 1], 8),  # indexed: split only the shared edge
        ("faceVarying", [[0.5, 0.5, 0.5]], [0] * 8, 6),  # all corners equal: no split
    ],
)
def test_primvar_interpolations(interp, values, indices, vertices):
    src = two_quads()
    pv = PrimvarData(
        np.asarray(values, np.float32), interp, None if indices is None else np.asarray(indices, np.int32)
    )
    src.primvars["displayColor"] = pv
    pm = prepare_meshes([src], attributes=("position", "normal", "displayColor"))[0]
    assert pm.layout["displayColor"] == (24, "R32G32B32_SFLOAT", 36)  # no st requested: packed after the normal
    convex, _, _ = reference(src, ("displayColor",))
    assert Counter(prepared_triangles(pm, ("displayColor",))) == convex
    assert pm.vertex_count == vertices
    # the first N vertices are the points, in order
    assert np.array_equal(pm.vertices["position"][:6], src.points)


def test_split_vertices_are_unique_and_minimal():
    rng = np.random.default_rng(9)
    src = grid(12, 9)
    n_corners = len(src.face_vertex_indices)
    uv_index = rng.integers(0, 5, n_corners).astype(np.int32)
    src.primvars["st"] = PrimvarData(rng.uniform(0, 1, (5, 2)).astype(np.float32), "faceVarying", uv_index)
    pm = prepare_meshes([src])[0]
    combos = {(int(p), int(u)) for p, u in zip(src.face_vertex_indices, uv_index)}
    assert pm.vertex_count == len(combos)
    rows = {tuple(r) for r in pm.vertices.view(np.uint8).reshape(pm.vertex_count, -1).tolist()}
    assert len(rows) == pm.vertex_count
    assert_matches_reference(src, pm)


def test_seam_dedupe_hash_path_equals_exact_path():
    from vixen_assets.geometry.primvars import _unique_rows, _unique_rows_exact

    rng = np.random.default_rng(0)
    points = np.sort(rng.integers(0, 60, 3000))
    words = rng.integers(0, 3, (3000, 3)).astype(np.uint64)
    for first, inverse in (_unique_rows(points, words), _unique_rows_exact(points, words)):
        rows = [(int(p), *map(int, w)) for p, w in zip(points[first], words[first])]
        assert len(set(rows)) == len(rows)
        assert np.array_equal(points[first][inverse], points) and np.array_equal(words[first][inverse], words)
        assert np.all(np.diff(points[first]) >= 0)  # grouped by point, so by mesh
    assert len(_unique_rows(points, words)[0]) == len(_unique_rows_exact(points, words)[0])


def test_mixed_batch_of_interpolations_and_missing_primvars():
    rng = np.random.default_rng(4)
    sources = []
    for interp in ("faceVarying", None, "vertex", "uniform", "constant"):
        s = random_soup(rng, 12, with_st=False)
        count = {"faceVarying": len(s.face_vertex_indices), "vertex": len(s.points), "uniform": 12,
                 "constant": 1}.get(interp)
        if interp:
            s.primvars["st"] = PrimvarData(rng.uniform(0, 1, (count, 2)).astype(np.float32), interp)
        if interp == "uniform":
            s.normals = rng.normal(size=(len(s.face_vertex_indices), 3)).astype(np.float32)
            s.normals_interpolation = "faceVarying"
        sources.append(s)
    for src, pm in zip(sources, prepare_meshes(sources)):
        assert_matches_reference(src, pm)
        assert pm.layout == {"position": (0, "R32G32B32_SFLOAT", 32), "normal": (12, "R32G32B32_SFLOAT", 32),
                             "st": (24, "R32G32_SFLOAT", 32)}
        if src.normals is not None:
            convex, _, _ = reference_with(src, "normal", src.normals_primvar())
            assert Counter(prepared_triangles(pm, ("normal",))) == convex


def test_seams_of_one_attribute_keep_per_point_values_of_another():
    # mesh a: faceVarying st (seams) and computed normals; mesh b: faceVarying normals, so "normal" has corner
    # values in the batch, which must not leak into a's seam vertices
    rng = np.random.default_rng(6)
    a = grid(4, 3)
    a.points[:, 2] = rng.uniform(-0.2, 0.2, len(a.points)).astype(np.float32)
    a.primvars["st"] = PrimvarData(rng.uniform(0, 1, (len(a.face_vertex_indices), 2)).astype(np.float32),
                                   "faceVarying")
    b = grid(2, 2)
    b.normals = np.tile(np.float32([0, 1, 0]), (len(b.face_vertex_indices), 1))
    b.normals_interpolation = "faceVarying"
    pa, pb = prepare_meshes([a, b])
    assert pa.vertex_count > len(a.points)
    check_computed_normals(a, pa)
    assert np.allclose(pb.vertices["normal"], [0, 1, 0])


def test_element_size_and_scalar_primvar():
    src = two_quads()
    src.primvars["weights"] = PrimvarData(np.arange(12, dtype=np.float32), "vertex", element_size=2)
    src.primvars["opacity"] = PrimvarData(np.array([0.25], np.float32), "constant")
    pm = prepare_meshes([src], attributes=("position", "weights", "opacity"))[0]
    assert pm.layout["weights"] == (12, "R32G32_SFLOAT", 24)
    assert pm.layout["opacity"] == (20, "R32_SFLOAT", 24)
    assert np.array_equal(pm.vertices["weights"], np.arange(12, dtype=np.float32).reshape(6, 2))
    assert np.all(pm.vertices["opacity"] == 0.25)


def test_vertex_layout_is_interleaved_32_bytes():
    pm = prepare_meshes([grid(1, 1)])[0]
    assert pm.stride == 32 and pm.vertices.dtype.itemsize == 32
    assert pm.vertices.dtype.fields["position"][1] == 0
    assert pm.vertices.dtype.fields["normal"][1] == 12
    assert pm.vertices.dtype.fields["st"][1] == 24
    raw = np.frombuffer(pm.vertices.tobytes(), np.float32).reshape(-1, 8)
    assert np.array_equal(raw[:, :3], pm.vertices["position"])
    assert pm.bounds[0].tolist() == [0, 0, 0] and pm.bounds[1].tolist() == [1, 1, 0]


# --------------------------------------------------------------------------------------------------------------------
# Index dtype and submeshes
# --------------------------------------------------------------------------------------------------------------------


def strip(n_points):
    pts = np.zeros((n_points, 3), np.float32)
    pts[:, 0] = np.arange(n_points) // 2
    pts[:, 1] = np.arange(n_points) % 2
    i = np.arange(n_points - 2)
    tris = np.stack([i, i + 1, i + 2], 1)
    tris[1::2] = tris[1::2][:, [0, 2, 1]]
    return mesh(pts, np.full(len(tris), 3), tris.ravel())


def test_index_dtype_uint16_up_to_65535_vertices():
    small, large = prepare_meshes([strip(65535), strip(65536)])
    assert small.index_dtype == np.uint16 and small.indices.dtype == np.uint16 and small.vertex_count == 65535
    assert large.index_dtype == np.uint32 and large.indices.dtype == np.uint32 and large.vertex_count == 65536
    assert int(small.indices.max()) == 65534 and int(large.indices.max()) == 65535


def test_subsets_are_contiguous_ranges():
    rng = np.random.default_rng(1)
    src = random_soup(rng, 40, concave_every=5)
    counts = src.face_vertex_counts
    a = np.array([1, 3, 5, 7, 30, 31], np.int32)
    b = np.array([0, 8, 9, 39, 3], np.int32)  # face 3 is in both: the first subset keeps it
    src.subsets = [SubsetSource("A", a, "/Looks/A"), SubsetSource("B", b, "/Looks/B"),
                   SubsetSource("empty", np.zeros(0, np.int32), None)]
    src.material_path = "/Looks/Default"
    pm = prepare_meshes([src])[0]
    names = [s.name for s in pm.submeshes]
    assert names == ["A", "B", "empty", ""]
    in_a = set(a.tolist())
    in_b = set(b.tolist()) - in_a
    rest = set(range(40)) - in_a - in_b
    expect = [sum(int(counts[f]) - 2 for f in group) for group in (in_a, in_b, set(), rest)]
    assert [s.index_count // 3 for s in pm.submeshes] == expect
    first = 0
    for s in pm.submeshes:
        assert s.first_index == first
        first += s.index_count
    assert first == pm.index_count
    assert [s.material_path for s in pm.submeshes] == ["/Looks/A", "/Looks/B", None, "/Looks/Default"]
    # each range holds exactly the triangles of its faces
    tri_sets = []
    for s in pm.submeshes:
        part = PreparedMesh(pm.vertices, pm.indices[s.first_index : s.first_index + s.index_count], pm.index_dtype,
                            pm.vertex_count, s.index_count, pm.layout, [], pm.bounds, s.index_count // 3, "")
        tri_sets.append(Counter(prepared_triangles(part)))
    for faces, got in zip((in_a, in_b, set(), rest), tri_sets):
        sub_src = random_subset(src, sorted(faces))
        convex, _, concave_tris = reference(sub_src)
        assert not (convex - got) and sum((got - convex).values()) == concave_tris


def random_subset(src, faces):
    starts = np.concatenate([[0], np.cumsum(src.face_vertex_counts)])
    idx = np.concatenate([src.face_vertex_indices[starts[f] : starts[f + 1]] for f in faces]) if faces else []
    st_vals = src.primvars["st"].values
    st_rows = np.concatenate([st_vals[starts[f] : starts[f + 1]] for f in faces]) if faces else np.zeros((0, 2))
    return mesh(src.points, src.face_vertex_counts[faces], idx,
                primvars={"st": PrimvarData(np.asarray(st_rows, np.float32), "faceVarying")})


def test_unsorted_subsets_in_a_big_batch_use_radix_order():
    rng = np.random.default_rng(8)
    src = grid(60, 60)
    faces = rng.permutation(3600)
    src.subsets = [SubsetSource(f"s{i}", np.sort(faces[i::7]).astype(np.int32), f"/M{i}") for i in range(7)]
    pm = prepare_meshes([grid(2, 2), src])[1]
    assert [s.index_count for s in pm.submeshes] == [6 * len(faces[i::7]) for i in range(7)]
    assert_matches_reference(src, pm, attrs=())


# --------------------------------------------------------------------------------------------------------------------
# Content hash
# --------------------------------------------------------------------------------------------------------------------


def test_content_hash():
    a, b = grid(3, 3), grid(3, 3)
    b.prim_path, b.layer_path = "/Other", "other.usda"
    assert a.content_hash() == b.content_hash()
    c = grid(3, 3)
    c.points[0, 0] += 1
    assert c.content_hash() != a.content_hash()
    d = grid(3, 3)
    d.left_handed = True
    assert d.content_hash() != a.content_hash()
    assert a.content_hash(("position",)) != a.content_hash()
    e = grid(3, 3)
    e.subsets = [SubsetSource("s", np.array([0], np.int32), "/M")]
    assert e.content_hash() != a.content_hash()
    pm = prepare_meshes([grid(3, 3)])[0]
    assert pm.content_hash == a.content_hash()


def test_geometry_hash_ignores_only_material_bindings():
    a, b = grid(3, 3), grid(3, 3)
    a.subsets = [SubsetSource("s", np.array([0, 2], np.int32), "/A/Looks/wood")]
    b.subsets = [SubsetSource("s", np.array([0, 2], np.int32), "/B/Looks/wood")]
    a.material_path, b.material_path = "/A/Looks/felt", "/B/Looks/felt"
    assert a.geometry_hash() == b.geometry_hash() and a.content_hash() != b.content_hash()
    c = grid(3, 3)
    c.subsets = [SubsetSource("s", np.array([0, 1], np.int32), "/A/Looks/wood")]
    c.material_path = a.material_path
    assert c.geometry_hash() != a.geometry_hash()
    d = grid(3, 3)
    d.subsets = [SubsetSource("t", np.array([0, 2], np.int32), "/A/Looks/wood")]
    assert d.geometry_hash() != a.geometry_hash()
    assert a.geometry_hash(("position",)) != a.geometry_hash()


# --------------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------------

GOOD_QUAD = dict(points=[(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)], counts=[4], indices=[0, 1, 2, 3])


def bad_sources():
    def m(**over):
        kw = dict(GOOD_QUAD)
        kw.update(over)
        return mesh(kw.pop("points"), kw.pop("counts"), kw.pop("indices"), prim_path="/Bad", **kw)

    wrong_shape = m()
    wrong_shape.points = np.zeros((4, 2), np.float32)
    wrong_dtype = m()
    wrong_dtype.points = np.zeros((4, 3), np.float64)
    st_size = m(primvars={"st": PrimvarData(np.zeros((3, 2), np.float32), "faceVarying")})
    st_index = m(primvars={"st": PrimvarData(np.zeros((2, 2), np.float32), "vertex", np.array([0, 1, 2, 0], np.int32))})
    normals = m()
    normals.normals, normals.normals_interpolation = np.zeros((5, 3), np.float32), "vertex"
    subset = m(subsets=[SubsetSource("part", np.array([0, 1], np.int32), None, "/Bad/part")])
    return {
        "points-shape": (wrong_shape, "points", "/Bad"),
        "points-dtype": (wrong_dtype, "points", "/Bad"),
        "index-out-of-range": (m(indices=[0, 1, 2, 4]), "faceVertexIndices", "/Bad"),
        "negative-index": (m(indices=[0, -1, 2, 3]), "faceVertexIndices", "/Bad"),
        "counts-sum": (m(counts=[3]), "faceVertexCounts", "/Bad"),
        "count-below-3": (m(counts=[2, 2]), "faceVertexCounts", "/Bad"),
        "negative-count": (m(counts=[-1, 5]), "faceVertexCounts", "/Bad"),
        "primvar-size": (st_size, "primvars:st", "/Bad"),
        "primvar-index": (st_index, "primvars:st:indices", "/Bad"),
        "normals-size": (normals, "normals", "/Bad"),
        "subset-index": (subset, "indices", "/Bad/part"),
        "hole-index": (m(hole_indices=np.array([3], np.int32)), "holeIndices", "/Bad"),
    }


@pytest.mark.parametrize("case", list(bad_sources()))
def test_bad_sources_raise_format_error(case):
    src, field, prim = bad_sources()[case]
    for call in (lambda: validate_sources([src]), lambda: prepare_meshes([grid(1, 1), src])):
        with pytest.raises(FormatError) as info:
            call()
        err = info.value
        assert err.field == field and err.prim_path == prim and err.path == "test.usda"
        assert prim in str(err) and field in str(err) and "test.usda" in str(err)


def write_usda(tmp_path, body: str) -> Path:
    path = tmp_path / "bad.usda"
    path.write_text("#usda 1.0\n" + body)
    return path


USD_ERRORS = {
    "points-type": ("float2[] points = [(0, 0), (1, 0), (1, 1), (0, 1)]", "points"),
    "index-range": ("int[] faceVertexIndices = [0, 1, 2, 9]", "faceVertexIndices"),
    "counts-sum": ("int[] faceVertexCounts = [3]", "faceVertexCounts"),
    "count-below-3": ("int[] faceVertexCounts = [2, 2]", "faceVertexCounts"),
    "st-size": ('texCoord2f[] primvars:st = [(0, 0), (1, 0)] (interpolation = "faceVarying")', "primvars:st"),
    "st-type": ('string[] primvars:st = ["a"] (interpolation = "constant")', "primvars:st"),
}


@pytest.mark.parametrize("case", list(USD_ERRORS))
def test_usd_errors_name_file_prim_and_field(tmp_path, case):
    override, field = USD_ERRORS[case]
    lines = {
        "points": "point3f[] points = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]",
        "faceVertexCounts": "int[] faceVertexCounts = [4]",
        "faceVertexIndices": "int[] faceVertexIndices = [0, 1, 2, 3]",
    }
    key = override.split("=")[0].split()[-1]
    lines[key] = override
    body = 'def Xform "World" {\n def Mesh "Bad" {\n' + "\n".join(lines.values()) + "\n }\n}\n"
    path = write_usda(tmp_path, body)
    stage = Usd.Stage.Open(str(path))
    with pytest.raises(FormatError) as info:
        read_mesh_source(stage.GetPrimAtPath("/World/Bad"), Usd.TimeCode.Default())
    err = info.value
    assert err.field == field and err.prim_path == "/World/Bad"
    assert Path(err.path) == path
    assert str(path) in str(err) and "/World/Bad" in str(err)


def test_usd_subset_error_names_subset(tmp_path):
    body = """def Mesh "M" {
    point3f[] points = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]
    int[] faceVertexCounts = [4]
    int[] faceVertexIndices = [0, 1, 2, 3]
    def GeomSubset "part" {
        uniform token elementType = "face"
        uniform token familyName = "materialBind"
        int[] indices = [0, 5]
    }
}
"""
    stage = Usd.Stage.Open(str(write_usda(tmp_path, body)))
    with pytest.raises(FormatError) as info:
        read_mesh_source(stage.GetPrimAtPath("/M"), Usd.TimeCode.Default())
    assert info.value.prim_path == "/M/part" and info.value.field == "indices"


# --------------------------------------------------------------------------------------------------------------------
# Reading USD
# --------------------------------------------------------------------------------------------------------------------


def test_read_mesh_source_small_scene():
    stage = Usd.Stage.Open(str(SMALL_SCENE))
    prims = [p for p in stage.Traverse(Usd.TraverseInstanceProxies(Usd.PrimAllPrimsPredicate)) if p.IsA(UsdGeom.Mesh)]
    sources = [read_mesh_source(p, Usd.TimeCode.Default()) for p in prims]
    assert all(Path(s.layer_path) == SMALL_SCENE for s in sources)
    with_subsets = [s for s in sources if s.subsets]
    assert with_subsets and all(s.subsets[0].material_path.startswith("/World/Looks/") for s in with_subsets)
    assert all(s.material_path and s.material_path.startswith("/World/Looks/") for s in sources)
    assert {s.primvars["st"].interpolation for s in sources} == {"faceVarying"}
    assert any(s.primvars["st"].indices is not None for s in sources)
    assert any(s.normals is None for s in sources) and any(s.normals is not None for s in sources)
    for src, pm in zip(sources, prepare_meshes(sources)):
        assert_matches_reference(src, pm)
        assert [s.name for s in pm.submeshes][-1:] == [""] or not src.subsets


def test_read_primvar_interpolation_sample():
    path = shared_usd_dir() / "usd-wg-docs" / "PrimvarInterpolation" / "primvar_interpolation.usda"
    if not path.exists():
        missing_asset(f"shared USD assets not found at {path.parent}")
    stage = Usd.Stage.Open(str(path))
    attrs = ("position", "normal", "displayColor")
    for prim in stage.Traverse():
        if not prim.IsA(UsdGeom.Mesh):
            continue
        src = read_mesh_source(prim, primvars=("displayColor",))
        assert src.primvars["displayColor"].interpolation == prim.GetName().split("_")[0]
        pm = prepare_meshes([src], attributes=attrs)[0]
        convex, _, _ = reference(src, ("displayColor",))
        assert Counter(prepared_triangles(pm, ("displayColor",))) == convex


def test_time_samples_only_and_time_codes(tmp_path):
    stage = Usd.Stage.CreateNew(str(tmp_path / "anim.usda"))
    m = UsdGeom.Mesh.Define(stage, "/M")
    m.CreateFaceVertexCountsAttr([3])
    m.CreateFaceVertexIndicesAttr([0, 1, 2])
    pts = m.CreatePointsAttr()
    pts.Set([(0, 0, 0), (1, 0, 0), (0, 1, 0)], Usd.TimeCode(1))
    pts.Set([(0, 0, 0), (2, 0, 0), (0, 2, 0)], Usd.TimeCode(2))
    assert read_mesh_source(m.GetPrim(), Usd.TimeCode.Default()).points[1, 0] == 1  # earliest sample
    assert read_mesh_source(m.GetPrim(), Usd.TimeCode(2)).points[1, 0] == 2
    assert read_mesh_source(m.GetPrim(), 1.5).points[1, 0] == 1.5


def test_primvars_normals_win_and_bad_normals_are_ignored(tmp_path, caplog):
    stage = Usd.Stage.CreateNew(str(tmp_path / "n.usda"))
    m = UsdGeom.Mesh.Define(stage, "/M")
    m.CreatePointsAttr([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)])
    m.CreateFaceVertexCountsAttr([4])
    m.CreateFaceVertexIndicesAttr([0, 1, 2, 3])
    m.CreateNormalsAttr([(0, 0, -1)] * 4)
    pv = UsdGeom.PrimvarsAPI(m).CreatePrimvar("normals", Sdf.ValueTypeNames.Normal3fArray, UsdGeom.Tokens.faceVarying)
    pv.Set([(0, 0, 1), (0, 1, 0)])
    pv.SetIndices(Vt.IntArray([0, 0, 1, 1]))
    src = read_mesh_source(m.GetPrim())
    assert src.normals_interpolation == "faceVarying"
    assert src.normals.tolist() == [[0, 0, 1], [0, 0, 1], [0, 1, 0], [0, 1, 0]]
    # normals authored with a wrong type, as in usd-wg's normalsTypes.usda
    body = """def Mesh "M2" {
    point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
    int[] faceVertexCounts = [3]
    int[] faceVertexIndices = [0, 1, 2]
    int[] normals = [1, 2, 3]
}
"""
    stage2 = Usd.Stage.Open(str(write_usda(tmp_path, body)))
    src2 = read_mesh_source(stage2.GetPrimAtPath("/M2"))
    assert src2.normals is None
    assert "ignoring normals" in caplog.text
    pm = prepare_meshes([src2])[0]
    assert np.allclose(pm.vertices["normal"], [0, 0, 1])


def all_shared_meshes():
    root = shared_usd_dir()
    if not root.exists():
        return root, []
    files = sorted(p for p in root.rglob("*") if p.suffix in (".usd", ".usda", ".usdc", ".usdz"))
    return root, files


@pytest.mark.assets
def test_every_mesh_in_shared_usd_assets_matches_reference():
    root, files = all_shared_meshes()
    if not files:
        missing_asset(f"shared USD assets not found at {root} (set VIXEN_SHARED_ASSETS); see its SOURCES.md")
    assert (root / "SOURCES.md").exists()
    checked = 0
    with_normals = 0
    seen = set()
    for path in files:
        stage = Usd.Stage.Open(str(path))
        sources = []
        for prim in stage.Traverse(Usd.TraverseInstanceProxies(Usd.PrimAllPrimsPredicate)):
            if not prim.IsA(UsdGeom.Mesh):
                continue
            src = read_mesh_source(prim, Usd.TimeCode.Default(), primvars=("st",))
            key = geometry_key(src)  # instances of one asset differ only in material paths: test each once
            if key in seen:
                continue
            seen.add(key)
            assert src.layer_path
            sources.append(src)
        for src, pm in zip(sources, prepare_meshes(sources)):
            assert_matches_reference(src, pm)
            checked += 1
            if src.normals is not None:
                with_normals += 1
                convex, _, _ = reference_with(src, "normal", src.normals_primvar())
                got = Counter(prepared_triangles(pm, ("normal",)))
                assert not (convex - got), src.prim_path
            else:
                check_computed_normals(src, pm)
    assert checked >= 30 and with_normals >= 3


def geometry_key(src: MeshSource) -> bytes:
    import hashlib

    h = hashlib.sha256()
    for a in (src.points, src.face_vertex_counts, src.face_vertex_indices, src.normals, src.hole_indices):
        h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
    pv = src.primvars.get("st")
    if pv is not None:
        h.update(np.ascontiguousarray(pv.values).tobytes() + pv.interpolation.encode())
        h.update(b"-" if pv.indices is None else pv.indices.tobytes())
    h.update(bytes([src.left_handed]))
    return h.digest()


def check_computed_normals(src, pm):
    """Every used vertex's normal is the reference normal of a point at its position."""
    ref = ref_smooth_normals(src)
    by_pos: dict[tuple, list] = {}
    for p, n in zip(src.points.tolist(), ref):
        by_pos.setdefault(tuple(p), []).append(n)
    positions = pm.vertices["position"].tolist()
    normals = pm.vertices["normal"].tolist()
    for i in set(pm.indices.tolist()):
        n = normals[i]
        assert any(max(abs(a - b) for a, b in zip(n, r)) < 1e-4 for r in by_pos[tuple(positions[i])]), (
            src.prim_path,
            i,
        )


# --------------------------------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------------------------------


def test_bundled_small_scene_has_the_advertised_features():
    assert SMALL_SCENE.stat().st_size < 200 * 1024
    stage = Usd.Stage.Open(str(SMALL_SCENE))
    prims = list(stage.Traverse(Usd.TraverseInstanceProxies(Usd.PrimAllPrimsPredicate)))
    assert any(p.IsA(UsdGeom.PointInstancer) for p in prims)
    assert any(p.IsInstance() for p in prims)
    imageable = [UsdGeom.Imageable(p) for p in prims if p.IsA(UsdGeom.Imageable)]
    assert any(i.ComputeVisibility() == UsdGeom.Tokens.invisible for i in imageable)
    assert any(i.GetPurposeAttr().Get() == UsdGeom.Tokens.guide for i in imageable)
    assert any(UsdGeom.Xformable(p).TransformMightBeTimeVarying() for p in prims if p.IsA(UsdGeom.Xformable))
    subsets = [p for p in prims if p.IsA(UsdGeom.Subset)]
    assert subsets and all(UsdShade.MaterialBindingAPI(s).ComputeBoundMaterial()[0] for s in subsets)


def load_generator():
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_scene", REPO / "samples" / "generate_scene.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generate_scene_cli_is_deterministic(tmp_path):
    outs = [tmp_path / "a.usda", tmp_path / "b.usda"]
    for out in outs:
        cmd = [sys.executable, str(REPO / "samples" / "generate_scene.py"), "--meshes", "4", "--instances", "3",
               "--triangles", "800", "--mode", "instanceable", "--seed", "3", "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "wrote" in proc.stdout
    assert outs[0].read_text() == outs[1].read_text()


@pytest.mark.parametrize("mode", ["xform", "instanceable", "pointinstancer"])
def test_generate_scene_modes(tmp_path, mode):
    out = tmp_path / f"scene_{mode}.usdc"
    load_generator().generate_scene(out, meshes=7, instances=5, triangles=3000, mode=mode, seed=3)
    stage = Usd.Stage.Open(str(out))
    prims = [p for p in stage.Traverse(Usd.TraverseInstanceProxies()) if p.IsA(UsdGeom.Mesh)]
    sources = [read_mesh_source(p) for p in prims]
    expected = 7 + (5 if mode != "pointinstancer" else 7)
    assert len(sources) == expected
    assert any(s.normals is None for s in sources) and any(s.subsets for s in sources)
    counts = np.concatenate([s.face_vertex_counts for s in sources])
    assert {3, 4} <= set(counts.tolist()) and counts.max() >= 6  # triangles, quads and the concave polygons
    for src, pm in zip(sources, prepare_meshes(sources)):
        assert_matches_reference(src, pm)
    if mode == "instanceable":
        assert any(p.IsInstance() for p in stage.Traverse())
    if mode == "pointinstancer":
        assert any(p.IsA(UsdGeom.PointInstancer) for p in stage.Traverse())
    assert sum(int((s.face_vertex_counts - 2).sum()) for s in sources[:7]) == pytest.approx(3000, rel=0.35)


def test_bench_prepare_quick(tmp_path):
    scene = tmp_path / "bench.usdc"
    load_generator().generate_scene(scene, meshes=30, triangles=6000, seed=1)
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_prepare.py"), "--quick", "--scene", str(scene),
           "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    import json

    result = json.loads(out.read_text())
    assert result["quick"] and result["meshes"] == 30 and result["triangles"] > 0
    assert {r["what"].split(" ")[0] for r in result["rows"]} >= {"pxr", "read_mesh_source(validate=False)",
                                                                   "prepare_meshes"}
    assert "x the pxr floor" in proc.stdout
