"""Acceleration structures and ``trace_rays`` checked against an independent numpy ray/triangle intersection.

The reference reads what is on the GPU back (each mesh's vertex and index buffers, decoded through ``mesh.layout``
and ``mesh.index_dtype``), places it with the instances' transforms and intersects every ray with every triangle
by Moller-Trumbore in float64, vectorized over rays x triangles. To keep that affordable the triangles of each
instance are grouped into Morton-ordered clusters of 128 whose padded bounds cull rays first (a conservative slab
test: it can only add work, never drop a pair).

``trace_rays`` must give the same hit/miss, instance and primitive, and ``t`` within 1e-4 relative, on every ray
except those whose answer is genuinely ambiguous in float32: rays whose two closest hits are within 1e-5
(relative) of each other (ties), and rays passing within 1e-5 x scene size of a triangle edge, a box edge or the
``t_max`` end at or before their closest hit (grazes). Those are excluded and counted, never accepted by loosening
the tolerances; the counts are printed at the end of the module and must stay a small share of the rays.
"""

from __future__ import annotations

import importlib.util
import os
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from vixen_assets.accel import AccelStats, Tlas, accel_cacher, build_aabb_blas, build_blases
from vixen_assets.accel import geometries_for_mesh as _geometries_for_mesh
from vixen_assets.errors import BudgetExceededError, OutOfDeviceMemoryError, VixenError
from vixen_assets.memory.group import AllocationGroup
from vixen_assets.testing import finish_test_device, open_test_device
from vixen_assets.trace import trace_backends, trace_rays
from vixen_assets.accel import TlasMap
from vixen_assets.scene import Instance
from vixen_assets.usd.walker import load_stage
from vixen_assets.vk import accel as vka
from vixen_assets.vk.faults import FaultInjector

REPO = Path(__file__).resolve().parent.parent

TIE_REL = 1e-5        # two closest hits closer than this (relative t): a tie, excluded
GRAZE_REL = 1e-5      # within this x scene size of an edge / box edge / t_max: a graze, excluded
T_REL = 1e-4          # t must agree within this (relative)
MAX_EXCLUDED = 0.02   # at most this share of the rays may be excluded
CLUSTER = 128
N_RAYS = 4096
BACKENDS = ["ray_query", "pipeline"]  # trace_rays backends; every comparison below runs on each

USD_SCENES = {
    "teapot": "usd/usd-wg/_common/teapot.usda",
    "sedan": "usd/usd-wg-USD_Mini_Car_Kit/assets/vehicles/sedan/asset/sedanFullAsset.usda",
    "instancing": "usd/openusd/testUsdImagingGLHighlight/instance.usda",
    "pointinstancer": "usd/openusd/testUsdImagingGLPointInstancer/pi_basic.usda",
    "subsets": "usd/openusd/testUsdImagingGLGeomSubsets/testUsdImagingGLGeomSubsets.usda",
}

_REPORT: list[str] = []


class _ExclusionReport:
    """Writes how many rays each comparison excluded (ties, grazes) into pytest's terminal summary."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if _REPORT:
            terminalreporter.section("trace_rays vs numpy Moller-Trumbore (ambiguous rays excluded, never tolerated)")
            for line in _REPORT:
                terminalreporter.write_line(line)
        terminalreporter.config.pluginmanager.unregister(self)


@pytest.fixture(scope="module", autouse=True)
def _exclusion_report(request: pytest.FixtureRequest) -> None:
    """Register the terminal-summary writer once per session."""
    pm = request.config.pluginmanager
    if not pm.has_plugin("vixen-accel-exclusions"):
        pm.register(_ExclusionReport(), "vixen-accel-exclusions")


# ---------------------------------------------------------------------------------------------- reading the GPU


def mesh_triangles(device: Any, mesh: Any) -> np.ndarray:
    """(T, 3, 3) float64 object-space triangles read back from the mesh's GPU buffers, in GPU triangle order."""
    off, fmt, stride = mesh.layout["position"]
    assert fmt == "R32G32B32_SFLOAT", fmt
    n = mesh.vertex_count
    raw = np.asarray(device.read_buffer(mesh.vertex_buffer), dtype=np.uint8)[: n * stride]
    pos = raw.reshape(n, stride)[:, off:off + 12].copy().view("<f4").reshape(n, 3)
    isz = np.dtype(mesh.index_dtype).itemsize
    idx = np.asarray(device.read_buffer(mesh.index_buffer, mesh.index_count * isz), dtype=np.uint8)
    idx = idx.view(mesh.index_dtype).astype(np.int64)
    assert idx.max(initial=0) < n, "index out of the vertex range"
    return pos[idx.reshape(-1, 3)].astype(np.float64)


def world_triangles(device: Any, scene: Any, transforms: np.ndarray | None = None) -> list[tuple[int, np.ndarray]]:
    """``(instance index, (T, 3, 3) world-space triangles)`` for every mesh instance of ``scene``."""
    cache: dict[int, np.ndarray] = {}
    out = []
    for i, inst in enumerate(scene.instances):
        mesh = inst.mesh
        if not hasattr(mesh, "index_buffer"):
            continue
        if id(mesh) not in cache:
            cache[id(mesh)] = mesh_triangles(device, mesh)
        m = inst.transform if transforms is None else transforms[i]
        m = np.asarray(m, np.float32).astype(np.float64)  # the GPU gets the float32 matrix
        out.append((i, cache[id(mesh)] @ m[:3, :3].T + m[:3, 3]))
    return out


# ---------------------------------------------------------------------------------------------- the reference


def _part1by2(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64) & np.uint64(0x3FF)
    for shift, mask in ((16, 0x30000FF), (8, 0x300F00F), (4, 0x30C30C3), (2, 0x9249249)):
        x = (x | (x << np.uint64(shift))) & np.uint64(mask)
    return x


def moller_trumbore(o: np.ndarray, d: np.ndarray, v0: np.ndarray, e1: np.ndarray, e2: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Moller-Trumbore for rays (R, 3) x triangles (K, 3): ``(det, u, v, t)``, each (R, K); u, v, t are 0 where the
    ray is parallel to the plane (det == 0)."""
    pvec = np.cross(d[:, None, :], e2[None, :, :])
    det = np.einsum("kj,rkj->rk", e1, pvec)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(det != 0, 1.0 / det, 0.0)
    tvec = o[:, None, :] - v0[None, :, :]
    u = np.einsum("rkj,rkj->rk", tvec, pvec) * inv
    qvec = np.cross(tvec, e1[None, :, :])
    v = np.einsum("rj,rkj->rk", d, qvec) * inv
    t = np.einsum("kj,rkj->rk", e2, qvec) * inv
    return det, u, v, t


class TriangleSet:
    """One instance's world triangles in Morton-ordered clusters with bounds padded by the graze distance."""

    def __init__(self, instance: int, tris: np.ndarray, pad: float) -> None:
        self.instance = instance
        c = tris.mean(axis=1)
        lo, hi = c.min(0), c.max(0)
        q = ((c - lo) / np.maximum(hi - lo, 1e-300) * 1023).astype(np.int64)
        code = _part1by2(q[:, 0]) | (_part1by2(q[:, 1]) << np.uint64(1)) | (_part1by2(q[:, 2]) << np.uint64(2))
        order = np.argsort(code, kind="stable")
        tris = tris[order]
        self.prims = order  # GPU triangle index of each sorted triangle
        self.v0 = tris[:, 0]
        self.e1 = tris[:, 1] - self.v0
        self.e2 = tris[:, 2] - self.v0
        nn = np.linalg.norm(np.cross(self.e1, self.e2), axis=1)  # twice the area
        self.nn = nn
        # distance of a point to each edge = its barycentric coordinate x the height over that edge
        self.hu = nn / np.maximum(np.linalg.norm(self.e2, axis=1), 1e-300)
        self.hv = nn / np.maximum(np.linalg.norm(self.e1, axis=1), 1e-300)
        self.hw = nn / np.maximum(np.linalg.norm(tris[:, 2] - tris[:, 1], axis=1), 1e-300)
        self.ranges = [(s, min(s + CLUSTER, len(tris))) for s in range(0, len(tris), CLUSTER)]
        self.lo = np.array([tris[s:e].reshape(-1, 3).min(0) for s, e in self.ranges]) - pad
        self.hi = np.array([tris[s:e].reshape(-1, 3).max(0) for s, e in self.ranges]) + pad

    def chunks(self) -> Any:
        """``(cluster bounds lo, hi, intersect(rows, o, d, dn, geps) -> (t, margin, prims))`` per cluster."""
        for ci, (s, e) in enumerate(self.ranges):
            def intersect(o: np.ndarray, d: np.ndarray, dn: np.ndarray, s: int = s, e: int = e) -> Any:
                det, u, v, t = moller_trumbore(o, d, self.v0[s:e], self.e1[s:e], self.e2[s:e])
                ok = np.abs(det) > 1e-12 * dn[:, None] * self.nn[None, s:e]  # not parallel to the plane
                w = 1.0 - u - v
                margin = np.minimum(np.minimum(u * self.hu[s:e], v * self.hv[s:e]), w * self.hw[s:e])
                return np.where(ok, t, np.nan), np.where(ok, margin, -np.inf), self.prims[s:e]
            yield self.lo[ci], self.hi[ci], intersect


class BoxSet:
    """The boxes (N, 6: min xyz, max xyz) of one procedural instance, intersected in object space."""

    def __init__(self, instance: int, boxes: np.ndarray, transform: np.ndarray, pad: float) -> None:
        self.instance = instance
        self.boxes = np.asarray(boxes, np.float64)
        self.m = np.asarray(transform, np.float32).astype(np.float64)
        self.inv = np.linalg.inv(self.m)
        pts = np.stack([np.stack([self.boxes[:, 3 * (k & 1)], self.boxes[:, 1 + 3 * (k >> 1 & 1)],
                                  self.boxes[:, 2 + 3 * (k >> 2 & 1)]], axis=1) for k in range(8)], axis=1)
        world = pts @ self.m[:3, :3].T + self.m[:3, 3]
        self.lo = world.reshape(-1, 3).min(0)[None] - pad
        self.hi = world.reshape(-1, 3).max(0)[None] + pad

    def chunks(self) -> Any:
        """One chunk: all boxes."""
        def intersect(o: np.ndarray, d: np.ndarray, dn: np.ndarray) -> Any:
            oo = o @ self.inv[:3, :3].T + self.inv[:3, 3]
            dd = d @ self.inv[:3, :3].T
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = 1.0 / dd
                t0 = (self.boxes[None, :, :3] - oo[:, None, :]) * inv[:, None, :]
                t1 = (self.boxes[None, :, 3:] - oo[:, None, :]) * inv[:, None, :]
            tn = np.minimum(t0, t1).max(axis=2)
            tf = np.maximum(t0, t1).min(axis=2)
            # "margin": how far (world length along the ray) the ray runs inside the box; < 0: passes outside
            margin = (tf - tn) * dn[:, None]
            return tn, margin, np.arange(len(self.boxes))
        yield self.lo[0], self.hi[0], intersect


def _slab(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Rays (R,) that may touch the box [lo, hi] (conservative)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t0 = (lo - o) * inv
        t1 = (hi - o) * inv
        tn = np.nanmax(np.minimum(t0, t1), axis=1)
        tf = np.nanmin(np.maximum(t0, t1), axis=1)
    return (tn <= tf + 1e-9 * np.abs(tf) + 1e-300) & (tf >= 0)


def reference_trace(sets: list[Any], o: np.ndarray, d: np.ndarray, t_min: float, t_max: np.ndarray,
                    scale: float) -> dict[str, np.ndarray]:
    """Closest hits of rays ``o + t d`` (``t_min <= t <= t_max``) over triangle and box sets, with ambiguity flags."""
    n = len(o)
    o = np.asarray(o, np.float64)
    d = np.asarray(d, np.float64)
    t_max = np.broadcast_to(np.asarray(t_max, np.float64), (n,))
    dn = np.linalg.norm(d, axis=1)
    best = np.full(n, np.inf)
    second = np.full(n, np.inf)
    inst = np.full(n, -1, np.int64)
    prim = np.full(n, -1, np.int64)
    graze_t = np.full(n, np.inf)
    geps = GRAZE_REL * scale
    for ts in sets:
        for lo, hi, intersect in ts.chunks():
            rows = np.nonzero(_slab(o, d, lo, hi))[0]
            if not len(rows):
                continue
            t, margin, prims = intersect(o[rows], d[rows], dn[rows])
            tmax = t_max[rows, None]
            in_t = (t >= t_min) & (t <= tmax)
            tt = np.where(in_t & (margin >= 0), t, np.inf)
            # a graze: the ray passes within geps of an edge, inside or out: the hit could go either way
            graze = (np.abs(margin) < geps) & (t >= t_min) & (t <= tmax * (1 + TIE_REL))
            # or the candidate hit lies at the t_max end of the ray
            graze |= (margin >= -geps) & np.isfinite(tmax) & (np.abs(t - tmax) <= TIE_REL * tmax)
            graze_t[rows] = np.minimum(graze_t[rows], np.where(graze, t, np.inf).min(axis=1))
            two = np.sort(tt, axis=1)[:, :2] if tt.shape[1] > 1 else np.pad(tt, ((0, 0), (0, 1)),
                                                                           constant_values=np.inf)
            closer = two[:, 0] < best[rows]
            merged = np.sort(np.stack([best[rows], second[rows], two[:, 0], two[:, 1]], axis=1), axis=1)
            best[rows], second[rows] = merged[:, 0], merged[:, 1]
            r = rows[closer]
            inst[r] = ts.instance
            prim[r] = prims[np.argmin(tt[closer], axis=1)]
    hit = np.isfinite(best)
    with np.errstate(invalid="ignore"):
        tie = hit & (second - best <= TIE_REL * best)
    limit = np.where(hit, best, t_max)
    graze = np.isfinite(graze_t) & (graze_t <= limit * (1 + TIE_REL))
    return {"hit": hit, "t": np.where(hit, best, 0.0), "instance": np.where(hit, inst, -1),
            "primitive": np.where(hit, prim, -1), "tie": tie, "graze": graze & ~tie}


def triangle_sets(geoms: list[tuple[int, np.ndarray]], scale: float) -> list[TriangleSet]:
    """Cluster every instance's triangles."""
    return [TriangleSet(i, tris, 2 * GRAZE_REL * scale) for i, tris in geoms if len(tris)]


def bounds_of(geoms: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """World bounds of the triangles."""
    pts = np.concatenate([t.reshape(-1, 3) for _i, t in geoms])
    return pts.min(0), pts.max(0)


def random_rays(lo: np.ndarray, hi: np.ndarray, n: int, seed: int, *, misses: int = 128, limited: int = 256
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rays from random points of a sphere around the bounds aimed at random points inside them (directions of
    random length), ``misses`` aimed straight away from the sphere (cannot hit), ``limited`` with a finite t_max."""
    rng = np.random.default_rng(seed)
    c = (lo + hi) / 2
    radius = 0.5 * float(np.linalg.norm(hi - lo)) * 1.25 + 1e-3
    u = rng.normal(size=(n, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    o = c + radius * u
    target = lo + rng.random((n, 3)) * (hi - lo)
    d = target - o
    d[:misses] = u[:misses]
    d *= rng.uniform(0.25, 4.0, (n, 1))
    t_max = np.full(n, np.inf)
    sel = slice(misses, misses + limited)
    t_max[sel] = rng.uniform(0.3, 1.3, limited) * np.linalg.norm(target[sel] - o[sel], axis=1) / np.linalg.norm(
        d[sel], axis=1)
    return o.astype(np.float32), d.astype(np.float32), t_max.astype(np.float32)


def compare(label: str, gpu: dict[str, np.ndarray], ref: dict[str, np.ndarray], *, guaranteed_misses: int = 0,
            key: str = "instance") -> np.ndarray:
    """Assert ``gpu`` matches ``ref`` on every unambiguous ray; record the exclusions; return the kept mask.
    ``key``: the GPU answer compared with the reference's owner labels (``instance``, or ``record``)."""
    gpu = dict(gpu, instance=gpu[key])
    n = len(ref["hit"])
    excluded = ref["tie"] | ref["graze"]
    keep = ~excluded
    if guaranteed_misses:
        assert not ref["hit"][:guaranteed_misses].any(), "reference hit a ray that cannot hit"
        assert not gpu["hit"][:guaranteed_misses].any(), "trace_rays hit a ray aimed away from the scene"
    bad_hit = np.nonzero(keep & (gpu["hit"] != ref["hit"]))[0]
    both = keep & gpu["hit"] & ref["hit"]
    bad_inst = np.nonzero(both & (gpu["instance"] != ref["instance"]))[0]
    bad_prim = np.nonzero(both & (gpu["primitive"] != ref["primitive"]))[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(gpu["t"].astype(np.float64) - ref["t"]) / np.abs(ref["t"])
    bad_t = np.nonzero(both & ~(rel <= T_REL))[0]
    differ_excluded = int((excluded & ((gpu["hit"] != ref["hit"]) | (gpu["primitive"] != ref["primitive"]))).sum())
    worst = float(rel[both].max()) if both.any() else 0.0
    _REPORT.append(f"{label}: {n} rays, {int(ref['hit'].sum())} hits, excluded {int(ref['tie'].sum())} ties + "
                   f"{int(ref['graze'].sum())} grazes ({differ_excluded} of them answered differently), "
                   f"worst t error {worst:.1e}")

    def show(idx: np.ndarray) -> str:
        return "; ".join(f"ray {k}: gpu hit={gpu['hit'][k]} t={gpu['t'][k]:.7g} inst={gpu['instance'][k]} "
                         f"prim={gpu['primitive'][k]} / ref hit={ref['hit'][k]} t={ref['t'][k]:.7g} "
                         f"inst={ref['instance'][k]} prim={ref['primitive'][k]}" for k in idx[:5])

    assert not len(bad_hit), f"{label}: {len(bad_hit)} hit/miss mismatches: {show(bad_hit)}"
    assert not len(bad_inst), f"{label}: {len(bad_inst)} instance mismatches: {show(bad_inst)}"
    assert not len(bad_prim), f"{label}: {len(bad_prim)} primitive mismatches: {show(bad_prim)}"
    assert not len(bad_t), f"{label}: {len(bad_t)} t mismatches (worst {worst:.2e}): {show(bad_t)}"
    assert excluded.sum() <= MAX_EXCLUDED * n, f"{label}: {int(excluded.sum())} of {n} rays excluded as ambiguous"
    return keep


def can_trace(device: Any, backend: str = "auto") -> bool:
    """Whether ``trace_rays(backend=...)`` can run here; a device without it fails under CI (whose lavapipe has both
    ray queries and ray-tracing pipelines)."""
    have = trace_backends(device)
    if have and (backend == "auto" or backend in have):
        return True
    if os.environ.get("CI"):
        pytest.fail(f"{device.name} cannot run trace_rays(backend={backend!r}) (has: {have})")
    return False


def need_backend(device: Any, backend: str = "auto") -> None:
    """Skip (fail under CI) where the device cannot trace with ``backend``."""
    if not can_trace(device, backend):
        pytest.skip(f"{device.name} cannot run trace_rays(backend={backend!r})")


def check_scene(label: str, device: Any, scene: Any, *, seed: int = 0, n: int = N_RAYS, tracer: Any = None,
                transforms: np.ndarray | None = None, extra_sets: list[Any] = (), rays: Any = None,
                key: str = "instance", backend: str = "auto") -> dict:
    """Trace random rays through ``scene`` on the GPU (with ``backend``) and against the reference; assert they
    agree."""
    need_backend(device, backend)
    if backend != "auto":
        label = f"{label} [{backend}]"
    geoms = world_triangles(device, scene, transforms)
    lo, hi = bounds_of(geoms) if geoms else (None, None)
    for s in extra_sets:
        lo = s.lo[0] if lo is None else np.minimum(lo, s.lo[0])
        hi = s.hi[0] if hi is None else np.maximum(hi, s.hi[0])
    scale = float(np.linalg.norm(hi - lo))
    o, d, t_max = random_rays(lo, hi, n, seed) if rays is None else rays
    gpu = trace_rays(tracer or scene, o, d, t_max=t_max, backend=backend)
    assert gpu["hit"].dtype == bool and gpu["t"].dtype == np.float32
    assert gpu["instance"].dtype == np.int32 and gpu["primitive"].dtype == np.int32
    ref = reference_trace(triangle_sets(geoms, scale) + list(extra_sets), o, d, 0.0, t_max, scale)
    assert ref["hit"].sum() > n // 10, f"{label}: too few rays hit ({ref['hit'].sum()}) for a useful check"
    keep = compare(label, gpu, ref, guaranteed_misses=128 if rays is None else 0, key=key)
    return {"gpu": gpu, "ref": ref, "keep": keep, "rays": (o, d, t_max), "scale": scale}


def mesh_tracer(device: Any, scene: Any, tlas: Any) -> SimpleNamespace:
    """A scene-like object tracing ``scene``'s mesh instances through ``tlas`` (one TLAS record per instance, as
    ``Scene.build_acceleration_structures`` lays them out)."""
    records = [(i, None, 0, np.eye(4, dtype=np.float32),
                [s.first_index // 3 for s in inst.mesh.submeshes if s.index_count >= 3] or [0])
               for i, inst in enumerate(scene.instances)]
    local = np.stack([r[3] for r in records])
    return SimpleNamespace(device=device, instances=scene.instances, tlas=tlas, tlas_map=TlasMap.build(records, local))


# ---------------------------------------------------------------------------------------------- scenes


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_scene", REPO / "samples" / "generate_scene.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_soup(path: Path, triangles: int, seed: int) -> None:
    """A triangle soup with one vertex per corner (so > 65535 vertices: uint32 indices), quads among the
    triangles, two materialBind GeomSubsets (the GPU index order differs from the authored faces) and a
    non-uniformly scaled, rotated second reference."""
    from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, Vt

    rng = np.random.default_rng(seed)
    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    world = UsdGeom.Xform.Define(stage, "/World")
    stage.SetDefaultPrim(world.GetPrim())
    nquads = triangles // 10
    ntris = triangles - 2 * nquads
    centers = rng.uniform(-1, 1, (ntris + nquads, 3))
    tri_pts = centers[:ntris, None, :] + rng.normal(scale=0.06, size=(ntris, 3, 3))
    # planar convex quads: a random rectangle
    a = rng.normal(size=(nquads, 3))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = np.cross(a, rng.normal(size=(nquads, 3)))
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    s = rng.uniform(0.02, 0.08, (nquads, 2))
    q = centers[ntris:, None, :] + np.stack([-a * s[:, :1] - b * s[:, 1:], a * s[:, :1] - b * s[:, 1:],
                                             a * s[:, :1] + b * s[:, 1:], -a * s[:, :1] + b * s[:, 1:]], axis=1)
    points = np.concatenate([tri_pts.reshape(-1, 3), q.reshape(-1, 3)]).astype(np.float32)
    counts = np.concatenate([np.full(ntris, 3), np.full(nquads, 4)]).astype(np.int32)
    UsdGeom.Xform.Define(stage, "/World/Soup")
    mesh = UsdGeom.Mesh.Define(stage, "/World/Soup/geo")
    mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(points))
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(counts))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(np.arange(len(points), dtype=np.int32)))
    mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    looks = []
    for k in range(2):
        mat = UsdShade.Material.Define(stage, f"/World/Looks/m{k}")
        looks.append(mat)
    faces = rng.permutation(len(counts))
    for k, part in enumerate((faces[: len(faces) // 3], faces[len(faces) // 3: 2 * len(faces) // 3])):
        sub = UsdGeom.Subset.CreateGeomSubset(mesh, f"part{k}", UsdGeom.Tokens.face,
                                              Vt.IntArray.FromNumpy(np.sort(part).astype(np.int32)),
                                              UsdShade.Tokens.materialBind)
        UsdShade.MaterialBindingAPI.Apply(sub.GetPrim()).Bind(looks[k])
    other = stage.DefinePrim("/World/Copy", "Xform")
    other.GetReferences().AddInternalReference(Sdf.Path("/World/Soup"))
    xf = UsdGeom.Xformable(other)
    xf.AddTranslateOp().Set(Gf.Vec3d(2.5, 0.3, -0.2))
    xf.AddRotateXYZOp().Set(Gf.Vec3f(20, 35, 50))
    xf.AddScaleOp().Set(Gf.Vec3f(1.5, 0.6, 1.1))
    stage.GetRootLayer().Save()


GENERATED = {
    "gen-xform": dict(meshes=6, instances=6, triangles=6000, mode="xform", seed=1),
    "gen-instanceable": dict(meshes=4, instances=16, triangles=3000, mode="instanceable", seed=2),
    "gen-pointinstancer": dict(meshes=3, instances=20, triangles=2400, mode="pointinstancer", seed=3),
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The generated scenes (samples/generate_scene.py, plus the uint32 soup), written once per module."""
    root = tmp_path_factory.mktemp("accel_scenes")
    gen = _generator()
    out = {}
    for name, kw in GENERATED.items():
        path = root / f"{name}.usda"
        gen.generate_scene(path, **kw)
        out[name] = path
    out["gen-soup-uint32"] = root / "soup.usda"
    write_soup(out["gen-soup-uint32"], 25_000, seed=4)
    out["small-sample"] = REPO / "samples" / "scenes" / "small_scene.usda"
    return out


# ---------------------------------------------------------------------------------------------- tests: tracing


@pytest.mark.assets
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(USD_SCENES))
def test_trace_rays_matches_reference_usd_assets(device: Any, vixen_assets_dir: Path, name: str, backend: str) -> None:
    """Third-party USD scenes: ``trace_rays`` agrees with the numpy reference on thousands of random rays."""
    path = vixen_assets_dir / USD_SCENES[name]
    with load_stage(path, device, acceleration_structures=True) as scene:
        assert scene.tlas is not None and scene.tlas.count == len(scene.instances)
        assert scene.instances, "no instances loaded"
        check_scene(name, device, scene, seed=zlib.crc32(name.encode()) % 1000, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(GENERATED) + ["gen-soup-uint32", "small-sample"])
def test_trace_rays_matches_reference_generated(device: Any, generated: dict[str, Path], name: str,
                                                backend: str) -> None:
    """Generated scenes (plain references, native instancing, point instancer, uint32 soup with subsets)."""
    with load_stage(generated[name], device) as scene:
        assert scene.tlas is None
        if name == "gen-soup-uint32":
            assert {np.dtype(i.mesh.index_dtype) for i in scene.instances} == {np.dtype(np.uint32)}
            assert len(scene.instances[0].mesh.submeshes) == 3
        if name != "gen-xform" and name != "small-sample":
            assert len({id(i.mesh) for i in scene.instances}) < len(scene.instances), "expected shared meshes"
        check_scene(name, device, scene, seed=17, backend=backend)  # builds the structures on demand
        assert scene.tlas is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_trace_rays_edge_cases(device: Any, generated: dict[str, Path], backend: str) -> None:
    """No rays, t_min beyond every hit, mismatched shapes."""
    need_backend(device, backend)
    with load_stage(generated["gen-xform"], device, acceleration_structures=True) as scene:
        empty = trace_rays(scene, np.zeros((0, 3)), np.zeros((0, 3)), backend=backend)
        assert all(len(v) == 0 for v in empty.values())
        lo, hi = scene.bounds
        o, d, _ = random_rays(lo, hi, 256, 5, misses=0, limited=0)
        far = trace_rays(scene, o, d, t_min=1e6, backend=backend)
        assert not far["hit"].any() and (far["instance"] == -1).all() and (far["primitive"] == -1).all()
        with pytest.raises(VixenError):
            trace_rays(scene, np.zeros((3, 3)), np.zeros((2, 3)), backend=backend)


@pytest.mark.parametrize("name", ["gen-pointinstancer", "gen-soup-uint32"])
def test_trace_backends_agree(device: Any, generated: dict[str, Path], name: str) -> None:
    """The ray-query and the ray-tracing-pipeline backends agree with each other (and each with the reference) on the
    same rays: hit/miss, instance, primitive and record exactly on every unambiguous ray, t within 1e-6."""
    for backend in BACKENDS:
        need_backend(device, backend)
    with load_stage(generated[name], device) as scene:
        res = {b: check_scene(f"{name} (both backends)", device, scene, seed=31, backend=b) for b in BACKENDS}
        a, b = (res[k]["gpu"] for k in BACKENDS)
        keep = res[BACKENDS[0]]["keep"]
        for k in ("hit", "instance", "primitive", "record"):
            np.testing.assert_array_equal(a[k][keep], b[k][keep], err_msg=k)
        np.testing.assert_allclose(a["t"][keep], b["t"][keep], rtol=1e-6)


# ---------------------------------------------------------------------------------------------- compaction


@pytest.mark.parametrize("stage_instances", [None, True], ids=["auto", "staged"])
def test_compaction_never_grows_memory(device: Any, generated: dict[str, Path], stage_instances: bool | None) -> None:
    """Each compacted BLAS is no larger than its original; the originals are gone; uncompacted builds trace the same.
    ``staged`` forces the TLAS's staged instance path (the default on discrete GPUs) on unified memory too."""
    traced = can_trace(device)
    with load_stage(generated["gen-xform"], device) as scene:
        cacher = accel_cacher(device)
        stats = cacher.accel_stats
        scene.build_acceleration_structures(compact=True, stage_instances=stage_instances)
        meshes = {id(i.mesh): i.mesh for i in scene.instances}
        assert stats.blas_built == len(meshes) == len(stats.per_blas)
        assert stats.triangles == sum(m.triangle_count for m in meshes.values())
        for before, after in stats.per_blas:
            assert 0 < after <= before
        assert stats.bytes_after_compaction <= stats.bytes_before_compaction
        assert stats.bytes_after_compaction == sum(a for _b, a in stats.per_blas)
        assert stats.bytes_before_compaction == sum(b for b, _a in stats.per_blas)
        # originals and the compact copies that were actually made coexist (a BLAS that would not shrink is kept)
        copied = sum(a for b, a in stats.per_blas if a < b)
        assert stats.transient_peak_bytes >= stats.bytes_before_compaction + copied
        # only the compact copies are alive, and the budget holds exactly them + the TLAS, its instance records and,
        # on the staged path (discrete GPUs), the persistent staging buffer those records are written through
        blases = [o for o in device.live_resources() if getattr(o, "kind", None) == vka.BLAS]
        assert sorted(b.nbytes for b in blases) == sorted(a for _b, a in stats.per_blas)
        tlas = scene.tlas
        staging = tlas.staging_buffer
        assert (staging is not None) == (stage_instances or tlas.instance_buffer.mapped is None)
        expected = [b.buffer for b in blases] + [tlas.structure.buffer, tlas.instance_buffer]
        expected += [staging] if staging is not None else []
        charged = [o for o in device.live_resources() if getattr(o, "category", None) == "accel"]
        assert sorted(map(id, charged)) == sorted(map(id, expected)), "every live 'accel' buffer is one of these"
        accel_bytes = device.budget.stats()["categories"]["accel"]["bytes"]
        assert accel_bytes == sum(b.nbytes for b in expected)
        lo, hi = scene.bounds
        rays = random_rays(lo, hi, 2048, 9)
        compacted = trace_rays(scene, *rays[:2], t_max=rays[2]) if traced else None
    saved = stats.bytes_before_compaction - stats.bytes_after_compaction
    path = "staged" if stage_instances else "auto"
    _REPORT.append(f"compaction on {device.name} [{path} TLAS instances]: {stats.bytes_before_compaction} -> "
                   f"{stats.bytes_after_compaction} "
                   f"bytes ({100 * saved / stats.bytes_before_compaction:.1f}% saved), "
                   f"transient peak {stats.transient_peak_bytes}")
    # the same scene without compaction: different cache key, no per-BLAS records, the originals' sizes, same answers
    compact_ids = {id(o) for o in device.live_resources() if getattr(o, "kind", None) == vka.BLAS}
    with load_stage(generated["gen-xform"], device) as scene:
        n_before = len(stats.per_blas)
        scene.build_acceleration_structures(compact=False)
        assert len(stats.per_blas) == n_before
        plain = trace_rays(scene, *rays[:2], t_max=rays[2]) if traced else None
        uncompacted = sorted(o.nbytes for o in device.live_resources()
                             if getattr(o, "kind", None) == vka.BLAS and id(o) not in compact_ids)
    assert uncompacted == sorted(b for b, _a in stats.per_blas)
    if traced:
        for k in ("hit", "instance", "primitive"):
            np.testing.assert_array_equal(plain[k], compacted[k])
        np.testing.assert_allclose(plain["t"], compacted["t"], rtol=1e-6)
    accel_cacher(device).compact = True


# ---------------------------------------------------------------------------------------------- refit


def _random_transforms(n: int, rng: np.random.Generator, spread: float) -> np.ndarray:
    out = np.zeros((n, 4, 4), np.float32)
    for i in range(n):
        q = rng.normal(size=4)
        w, x, y, z = q / np.linalg.norm(q)
        r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        out[i, :3, :3] = r * rng.uniform(0.5, 1.5, 3)[None, :]  # rotation x non-uniform scale
        out[i, :3, 3] = rng.uniform(-spread, spread, 3)
        out[i, 3, 3] = 1
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_refit_matches_rebuild(device: Any, generated: dict[str, Path], backend: str) -> None:
    """After ``update_transforms`` (a refit) the answers equal a full rebuild's, a fresh TLAS's and the reference."""
    with load_stage(generated["gen-instanceable"], device, acceleration_structures=True) as scene:
        tlas = scene.tlas
        original = np.stack([i.transform for i in scene.instances])
        first = check_scene("refit: before", device, scene, seed=21, backend=backend)
        lo, hi = scene.bounds
        new = _random_transforms(len(scene.instances), np.random.default_rng(5), float(np.abs(hi - lo).max()) / 3)
        scene.update_transforms(new)
        assert scene.tlas is tlas
        refit = check_scene("refit: after update_transforms", device, scene, seed=22, backend=backend)
        moved = (refit["gpu"]["hit"] != first["gpu"]["hit"]).mean()
        assert moved > 0.05, "the new transforms barely changed anything; the test would prove nothing"
        rays = refit["rays"]
        tlas.rebuild(new)
        rebuilt = trace_rays(scene, *rays[:2], t_max=rays[2], backend=backend)
        cacher = accel_cacher(device)
        meshes = [i.mesh for i in scene.instances]
        keys = [cacher.key_for(m) for m in meshes]
        blases = cacher.get_many(meshes, keys)
        try:
            fresh_tlas = Tlas(device, blases, new, name="fresh")
            try:
                fresh = trace_rays(mesh_tracer(device, scene, fresh_tlas), *rays[:2], t_max=rays[2], backend=backend)
            finally:
                fresh_tlas.destroy()
        finally:
            for k in keys:
                cacher.release(k)
        keep = refit["keep"]
        for other in (rebuilt, fresh):
            for k in ("hit", "instance", "primitive"):
                np.testing.assert_array_equal(refit["gpu"][k][keep], other[k][keep])
            np.testing.assert_allclose(refit["gpu"]["t"], other["t"], rtol=1e-6)
        # and back: refitting to the original transforms gives the original answers
        scene.update_transforms(original)
        back = trace_rays(scene, *first["rays"][:2], t_max=first["rays"][2], backend=backend)
        for k in ("hit", "instance", "primitive"):
            np.testing.assert_array_equal(back[k][first["keep"]], first["gpu"][k][first["keep"]])


# ---------------------------------------------------------------------------------------------- batches


def test_scratch_budget_splits_batches(device: Any, generated: dict[str, Path]) -> None:
    """A scratch budget smaller than the whole build splits it into batches; the result traces correctly; a budget
    below one BLAS's scratch need is a clean error."""
    with load_stage(generated["gen-xform"], device) as scene:
        meshes = list({id(i.mesh): i.mesh for i in scene.instances}.values())
        items = [(m.prim_path, _geometries_for_mesh(m)) for m in meshes]
        flags = vka.BUILD_PREFER_FAST_TRACE | vka.BUILD_ALLOW_COMPACTION
        need = [vka.BuildInfo(vka.BLAS, g, flags=flags).sizes(device.context.logical)[1] for _n, g in items]
        live = {id(o) for o in device.live_resources()}
        used = device.budget.used
        with pytest.raises(VixenError, match="scratch"):
            with device.allocation_group() as group:
                build_blases(device, items, group, scratch_budget=min(need) - 1)
        assert {id(o) for o in device.live_resources()} == live and device.budget.used == used
        stats = AccelStats()
        budget = max(need) + 256
        with device.allocation_group() as group:
            blases = build_blases(device, items, group, stats=stats, scratch_budget=budget)
        try:
            assert stats.batches >= 2 and stats.blas_built == len(meshes)
            assert stats.scratch_bytes <= budget
            by_mesh = {id(m): b for m, b in zip(meshes, blases)}
            tlas = Tlas(device, [by_mesh[id(i.mesh)] for i in scene.instances],
                        np.stack([i.transform for i in scene.instances]))
            try:
                if can_trace(device):
                    check_scene("several scratch batches", device, scene, seed=31, n=2048,
                                tracer=mesh_tracer(device, scene, tlas))
            finally:
                tlas.destroy()
        finally:
            for b in blases:
                b.destroy()


# ---------------------------------------------------------------------------------------------- failures


def _live_ids(device: Any) -> set[int]:
    return {id(o) for o in device.live_resources()}


def test_allocation_failure_mid_batch_leaks_nothing(generated: dict[str, Path], tmp_path: Path) -> None:
    """The Nth vkAllocateMemory of a BLAS batch (then of a TLAS build) fails, for N = 1, 2, ... until the build
    succeeds: each failure is a clean OutOfDeviceMemoryError, the budget and the live objects are back where they
    were, and structures built before still trace correctly."""
    # small memory blocks: most buffers of the build get their own vkAllocateMemory, so every step is reachable
    device = open_test_device(block_size=1 << 16)
    try:
        with load_stage(generated["gen-pointinstancer"], device, acceleration_structures=True) as before, \
                load_stage(generated["gen-xform"], device) as scene:
            traced = can_trace(device)
            kept = check_scene("fault injection: built before", device, before, seed=41, n=2048) if traced else None
            cacher = accel_cacher(device)
            meshes = list({id(i.mesh): i.mesh for i in scene.instances}.values())
            keys = [cacher.key_for(m) for m in meshes]

            def assert_clean(stage: str, live: set[int], used: int, entries: int) -> None:
                device.context.lifetime.collect()
                now = _live_ids(device)
                assert now == live, f"{stage}: {len(now - live)} objects leaked, {len(live - now)} destroyed"
                assert device.budget.used == used, f"{stage}: budget {device.budget.used} != {used}"
                assert len(cacher) == entries
                if kept is not None:
                    again = trace_rays(before, *kept["rays"][:2], t_max=kept["rays"][2])
                    for k in ("hit", "instance", "primitive"):
                        np.testing.assert_array_equal(again[k], kept["gpu"][k])

            failures = {"blas": 0, "tlas": 0}
            blases: list[Any] = []
            rng = np.random.default_rng(43)
            big = _random_transforms(1500, rng, 20.0)  # a TLAS big enough to need memory blocks of its own
            for stage in ("blas", "tlas"):
                live, used, entries = _live_ids(device), device.budget.used, len(cacher)
                for n in range(1, 200):
                    faults = FaultInjector(fail_allocation_at=n)
                    device.context.logical.faults = faults
                    try:
                        if stage == "blas":
                            blases = cacher.get_many(meshes, keys)
                        else:
                            tlas = Tlas(device, [blases[k % len(blases)] for k in range(len(big))], big, name="big")
                    except OutOfDeviceMemoryError as exc:
                        assert faults.injected == 1 and isinstance(exc, VixenError)
                        failures[stage] += 1
                        assert_clean(f"{stage} allocation {n}", live, used, entries)
                        continue
                    finally:
                        device.context.logical.faults = None
                    assert faults.injected == 0, f"{stage}: the injected failure at allocation {n} was swallowed"
                    break
                else:
                    pytest.fail(f"{stage} build never succeeded")
            tlas.destroy()
            for k in keys:  # the scene takes its own references below
                cacher.release(k)
            assert failures["blas"] >= 3 and failures["tlas"] >= 2, failures
            _REPORT.append(f"fault injection: BLAS batch failed cleanly at allocations 1..{failures['blas']}, "
                           f"a 1500-instance TLAS at 1..{failures['tlas']}, then both built")
            if traced:
                check_scene("fault injection: built after the failures", device, scene, seed=42, n=2048)
            else:
                scene.build_acceleration_structures()
    finally:
        finish_test_device(device)


def test_budget_too_small_for_blas(device: Any, generated: dict[str, Path]) -> None:
    """A budget that cannot take the BLASes: BudgetExceededError, nothing leaked, earlier structures intact."""
    with load_stage(generated["gen-pointinstancer"], device, acceleration_structures=True) as before, \
            load_stage(generated["gen-soup-uint32"], device) as scene:
        traced = can_trace(device)
        kept = check_scene("budget: built before", device, before, seed=51, n=1024) if traced else None
        cacher = accel_cacher(device)
        live, used, entries = _live_ids(device), device.budget.used, len(cacher)
        original = [h["budget_bytes"] for h in device.budget.stats()["heaps"]]
        tight = list(original)
        tight[device.budget.primary_heap] = used + (64 << 10)
        device.budget.update_heap_budgets(tight)
        try:
            with pytest.raises(BudgetExceededError):
                scene.build_acceleration_structures()
        finally:
            device.budget.update_heap_budgets(original)
        device.context.lifetime.collect()
        assert _live_ids(device) == live and device.budget.used == used and len(cacher) == entries
        assert scene.tlas is None
        if traced:
            again = trace_rays(before, *kept["rays"][:2], t_max=kept["rays"][2])
            for k in ("hit", "instance", "primitive"):
                np.testing.assert_array_equal(again[k], kept["gpu"][k])
            check_scene("budget: built once the budget allows", device, scene, seed=52, n=2048)
        else:
            scene.build_acceleration_structures()


# ---------------------------------------------------------------------------------------------- AABBs


class Boxes:
    """A procedural entry for a scene instance: one AABB BLAS placed twice (the ``tlas_items`` protocol)."""

    triangle_count = 0

    def __init__(self, blas: Any, address: int, boxes: np.ndarray, placements: list[np.ndarray]) -> None:
        self.blas, self.address, self.placements = blas, address, placements
        self.bounds = (boxes[:, :3].min(0), boxes[:, 3:].max(0))

    def tlas_items(self, scene: Any) -> list[tuple[Any, int, np.ndarray]]:
        """``(blas, aabb address, local transform)`` per placement."""
        return [(self.blas, self.address, m) for m in self.placements]


@pytest.mark.parametrize("backend", BACKENDS)
def test_aabb_blas_hits_expected_boxes(device: Any, vixen_assets_dir: Path, backend: str) -> None:
    """Boxes built with ``build_aabb_blas``, placed twice (one placement rotated and non-uniformly scaled) under a
    scaled parent instance beside triangle instances in one scene: every ray reports exactly the expected box (or
    triangle), TLAS record, instance and t."""
    rng = np.random.default_rng(61)
    cells = np.stack(np.meshgrid(np.arange(4), np.arange(4), np.arange(2), indexing="ij"), -1).reshape(-1, 3)
    lo = cells + rng.uniform(0.05, 0.3, cells.shape)
    hi = cells + 1 - rng.uniform(0.05, 0.3, cells.shape)
    boxes = np.concatenate([lo, hi], axis=1).astype(np.float32)
    buf = device.create_and_upload("boxes", boxes, "accel_input|device_address|storage")
    blas = build_aabb_blas(device, buf, len(boxes))
    try:
        assert blas.kind == vka.BLAS and blas.alive
        with load_stage(vixen_assets_dir / USD_SCENES["pointinstancer"], device) as scene:
            placed = np.eye(4, dtype=np.float32)
            placed[:3, 3] = (-6, -2, -1)
            turned = _random_transforms(1, rng, 1.0)[0]
            turned[:3, 3] += (8, 8, 0)
            parent = np.diag([1.2, 1.2, 0.8, 1.0]).astype(np.float32)
            parent[:3, 3] = (0.5, 0, 0.25)
            first = len(scene.instances)
            scene.instances.append(Instance(mesh=Boxes(blas, buf.device_address, boxes, [placed, turned]),
                                            transform=parent, prim_path="/boxes", kind="aabbs"))
            scene.build_acceleration_structures()
            assert scene.tlas.count == first + 2
            sets = [BoxSet(first + k, boxes, parent.astype(np.float64) @ m.astype(np.float64), 1e-3)
                    for k, m in enumerate((placed, turned))]
            # records: one per mesh instance (in order), then the two box placements
            res = check_scene("aabb boxes + triangles (by TLAS record)", device, scene, seed=62, extra_sets=sets,
                              key="record", backend=backend)
            gpu, keep = res["gpu"], res["keep"]
            hit = gpu["hit"]
            np.testing.assert_array_equal(gpu["instance"][hit], scene.tlas_map.instance[gpu["record"][hit]])
            box_hits = keep & hit & (gpu["record"] >= first)
            assert box_hits.sum() > 500 and (keep & hit & (gpu["record"] < first)).sum() > 100
            assert (gpu["instance"][box_hits] == first).all()
            assert len(np.unique(gpu["primitive"][box_hits])) > len(boxes) // 2
    finally:
        blas.destroy()
        buf.destroy()
