"""``load_stage`` end to end on the real driver: every third-party root file, generated stages, dedup, eviction,
warm reloads, time, purposes, progress and every error case.

Meshes are verified by reading the GPU buffers back and comparing them with an *independent* triangulation written
here from the same pxr attributes (plain per-face fans; faces found concave are compared by area instead).
Placements are verified against an independent traversal (``Usd.TraverseInstanceProxies`` for native instancing,
``UsdGeom.PointInstancer.ComputeInstanceTransformsAtTime`` with prototype transforms applied by hand) and
``UsdGeom.XformCache``. The ``device`` fixture fails a test on validation messages or resources leaked at close.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time as _time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, Vt

from vixen_assets import load_stage
from vixen_assets.errors import BudgetExceededError, FormatError
from vixen_assets.testing import assets_dir, finish_test_device, open_test_device

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PURPOSES = ("default", "render")


# ---------------------------------------------------------------------------------------------------------------
# The root files listed in SOURCES.md (every one is tested; none is skipped on its own)
# ---------------------------------------------------------------------------------------------------------------
def _root_files() -> list[str]:
    base = assets_dir()
    if base is None:
        return ["<assets absent>"]  # the vixen_assets_dir fixture skips (or fails under CI)
    text = (base / "usd" / "SOURCES.md").read_text()
    table = text.split("## Root files", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| file")]
    total = re.search(r"Total: (\d+) root files", text)
    assert total and int(total.group(1)) == len(rows), "SOURCES.md root table parsed incompletely"
    return rows


ROOT_FILES = _root_files()


def _generator():
    spec = importlib.util.spec_from_file_location("generate_scene", REPO / "samples" / "generate_scene.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


# ---------------------------------------------------------------------------------------------------------------
# Independent reference: time, traversal, placements
# ---------------------------------------------------------------------------------------------------------------
def start_time(stage: Usd.Stage) -> Usd.TimeCode:
    """What usdview opens on: the start time code when the root layer authors a time range, else the default."""
    if any(stage.HasAuthoredMetadata(k) for k in ("startTimeCode", "endTimeCode", "startFrame", "endFrame")):
        return Usd.TimeCode(stage.GetStartTimeCode())
    return Usd.TimeCode.Default()


def _get(attr: Usd.Attribute, time: Usd.TimeCode) -> Any:
    value = attr.Get(time)
    if value is None and time.IsDefault() and attr.GetNumTimeSamples():
        value = attr.Get(Usd.TimeCode.EarliestTime())
    return value


def _drawn(prim: Usd.Prim, time: Usd.TimeCode, purposes: tuple[str, ...]) -> bool:
    if not prim.IsA(UsdGeom.Imageable):
        return True
    img = UsdGeom.Imageable(prim)
    return img.ComputeVisibility(time) != UsdGeom.Tokens.invisible and img.ComputePurpose() in purposes


def _meshes_below(root: Usd.Prim, time: Usd.TimeCode, purposes: tuple[str, ...]) -> list[Usd.Prim]:
    out = []
    it = iter(Usd.PrimRange(root, Usd.TraverseInstanceProxies(Usd.PrimDefaultPredicate)))
    for prim in it:
        if not _drawn(prim, time, purposes):
            it.PruneChildren()
            continue
        if prim.IsA(UsdGeom.PointInstancer) and prim != root:
            it.PruneChildren()  # nested instancers are not in the test files
            continue
        if prim.IsA(UsdGeom.Mesh):
            out.append(prim)
    return out


def expected_placements(stage: Usd.Stage, time: Usd.TimeCode,
                        purposes: tuple[str, ...] = DEFAULT_PURPOSES) -> dict[str, tuple[Usd.Prim, np.ndarray]]:
    """``{label: (mesh prim, world matrix for column vectors)}`` for every mesh drawn, computed without the walker.

    Plain prims and instance proxies are labelled with their path; point-instancer entries with
    ``<instancer>[i]<path below the prototype root>``."""
    xfc = UsdGeom.XformCache(time)
    out: dict[str, tuple[Usd.Prim, np.ndarray]] = {}
    it = iter(Usd.PrimRange(stage.GetPseudoRoot(), Usd.TraverseInstanceProxies(Usd.PrimDefaultPredicate)))
    for prim in it:
        if not _drawn(prim, time, purposes):
            it.PruneChildren()
            continue
        if prim.IsA(UsdGeom.PointInstancer):
            it.PruneChildren()
            out.update(_instancer_placements(stage, prim, xfc, time, purposes))
        elif prim.IsA(UsdGeom.Mesh):
            out[str(prim.GetPath())] = (prim, np.array(xfc.GetLocalToWorldTransform(prim)).T)
    return out


def _instancer_placements(stage, prim, xfc, time, purposes):
    pi = UsdGeom.PointInstancer(prim)
    path = str(prim.GetPath())
    xforms = pi.ComputeInstanceTransformsAtTime(time, time, UsdGeom.PointInstancer.ExcludeProtoXform,
                                                UsdGeom.PointInstancer.IgnoreMask)
    mask = list(pi.ComputeMaskAtTime(time))
    indices = list(pi.GetProtoIndicesAttr().Get(time))
    pi_world = xfc.GetLocalToWorldTransform(prim)
    protos = []
    for target in pi.GetPrototypesRel().GetTargets():
        root = stage.GetPrimAtPath(target)
        root_local = xfc.GetLocalTransformation(root)[0]
        items = []
        for mesh in _meshes_below(root, time, purposes):
            rel = xfc.ComputeRelativeTransform(mesh, root)[0] * root_local if mesh != root else root_local
            items.append((mesh, rel, str(mesh.GetPath())[len(str(root.GetPath())):]))
        protos.append(items)
    out = {}
    for i, (proto, xf) in enumerate(zip(indices, xforms)):
        if mask and not mask[i]:
            continue
        for mesh, rel, sub in protos[proto]:
            out[f"{path}[{i}]{sub}"] = (mesh, np.array(rel * xf * pi_world).T)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Independent reference: per-corner attributes and fan triangulation
# ---------------------------------------------------------------------------------------------------------------
def _vec3(value) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.dtype.kind != "f":
        return None
    return arr.astype(np.float32)


def _flattened(pv: UsdGeom.Primvar, time: Usd.TimeCode) -> Any:
    """Index-expanded primvar values (sampled-only primvars read at their first sample for the default time)."""
    if time.IsDefault() and pv.GetAttr().Get(time) is None and pv.GetAttr().GetNumTimeSamples():
        time = Usd.TimeCode.EarliestTime()
    return pv.ComputeFlattened(time)


def _per_corner(values: np.ndarray, interp: str, face_of_corner: np.ndarray, fvi: np.ndarray) -> np.ndarray:
    if interp == "constant":
        return np.repeat(values[:1], len(fvi), axis=0)
    if interp == "uniform":
        return values[face_of_corner]
    if interp in ("vertex", "varying"):
        return values[fvi]
    assert interp == "faceVarying", interp
    return values


class RefMesh:
    """A mesh prim's arrays as pxr gives them and the per-corner key of each triangle corner."""

    def __init__(self, prim: Usd.Prim, time: Usd.TimeCode) -> None:
        mesh = UsdGeom.Mesh(prim)
        self.prim = prim
        self.points = np.asarray(_get(mesh.GetPointsAttr(), time), dtype=np.float32).reshape(-1, 3)
        self.counts = np.asarray(_get(mesh.GetFaceVertexCountsAttr(), time), dtype=np.int64)
        self.fvi = np.asarray(_get(mesh.GetFaceVertexIndicesAttr(), time), dtype=np.int64)
        holes = _get(mesh.GetHoleIndicesAttr(), time)
        self.holes = set(int(h) for h in holes) if holes is not None else set()
        self.left_handed = mesh.GetOrientationAttr().Get() == UsdGeom.Tokens.leftHanded
        self.face_start = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        face_of_corner = np.repeat(np.arange(len(self.counts)), self.counts)
        api = UsdGeom.PrimvarsAPI(prim)
        self.normals = None  # per corner; primvars:normals wins over normals, values not 3-vectors are ignored
        pvn = api.GetPrimvar("normals")
        candidates = []
        if pvn and pvn.HasAuthoredValue():
            candidates.append((_flattened(pvn, time), pvn.GetInterpolation()))
        if mesh.GetNormalsAttr().HasAuthoredValue():
            candidates.append((_get(mesh.GetNormalsAttr(), time), mesh.GetNormalsInterpolation()))
        for value, interp in candidates:
            arr = _vec3(value)
            if arr is not None:
                self.normals = _per_corner(arr, str(interp), face_of_corner, self.fvi)
                break
        self.st = None
        pv = api.GetPrimvar("st")
        if pv and pv.HasAuthoredValue():
            flat = _flattened(pv, time)
            arr = np.asarray(flat, dtype=np.float32).reshape(len(flat), -1)
            self.st = _per_corner(arr, str(pv.GetInterpolation()), face_of_corner, self.fvi)
        self.subsets = [s for s in UsdGeom.Subset.GetAllGeomSubsets(mesh)
                        if s.GetElementTypeAttr().Get() == UsdGeom.Tokens.face
                        and (s.GetFamilyNameAttr().Get() or "") in ("materialBind", "")]

    @property
    def triangle_count(self) -> int:
        return int(sum(int(c) - 2 for f, c in enumerate(self.counts) if f not in self.holes))

    def corner_key(self, c: int) -> tuple:
        key = tuple(self.points[self.fvi[c]].tolist())
        if self.normals is not None:
            key += tuple(self.normals[c].tolist())
        if self.st is not None:
            key += tuple(self.st[c, :2].tolist())
        return key

    def face_concave(self, f: int) -> bool:
        """A fan from the first corner is wrong when some fan triangle winds against the face's Newell normal."""
        n, s = int(self.counts[f]), int(self.face_start[f])
        if n == 3:
            return False
        p = self.points[self.fvi[s:s + n]].astype(np.float64)
        newell = np.cross(p, np.roll(p, -1, axis=0)).sum(axis=0)
        fan = np.cross(p[1:-1] - p[0], p[2:] - p[0]) @ newell
        return bool((fan < -1e-6 * float(newell @ newell)).any())

    def _face_points(self, f: int) -> np.ndarray:
        n, s = int(self.counts[f]), int(self.face_start[f])
        return self.points[self.fvi[s:s + n]].astype(np.float64)

    def _newell(self, f: int) -> np.ndarray:
        p = self._face_points(f)
        return np.cross(p, np.roll(p, -1, axis=0)).sum(axis=0)

    def self_intersecting(self, f: int) -> bool:
        """True when two non-adjacent edges of the face, projected onto its Newell plane, cross (a bow tie)."""
        p = self._face_points(f)
        nrm = self._newell(f)
        axis = int(np.argmax(np.abs(nrm)))
        q = np.delete(p, axis, axis=1)
        n = len(q)

        def orient(a, b, c):
            return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

        for i in range(n):
            for j in range(i + 2, n):
                if i == 0 and j == n - 1:
                    continue
                a, b, c, d = q[i], q[(i + 1) % n], q[j], q[(j + 1) % n]
                if orient(a, b, c) * orient(a, b, d) < 0 and orient(c, d, a) * orient(c, d, b) < 0:
                    return True
        return False

    def projected_area(self, tri: tuple, f: int) -> float:
        """Signed area of ``tri`` projected onto face ``f``'s plane (positive when it winds like the face)."""
        nrm = self._newell(f)
        a, b, c = (np.array(v[:3], dtype=np.float64) for v in tri)
        sign = -1.0 if self.left_handed else 1.0
        return sign * 0.5 * float(np.cross(b - a, c - a) @ nrm) / float(np.linalg.norm(nrm))

    def face_area(self, f: int) -> float:
        n, s = int(self.counts[f]), int(self.face_start[f])
        p = self.points[self.fvi[s:s + n]].astype(np.float64)
        return 0.5 * float(np.linalg.norm(np.cross(p, np.roll(p, -1, axis=0)).sum(axis=0)))

    def fan(self, faces) -> Counter:
        out: Counter = Counter()
        for f in faces:
            if f in self.holes:
                continue
            n, s = int(self.counts[f]), int(self.face_start[f])
            for k in range(1, n - 1):
                tri = (s, s + k, s + k + 1) if not self.left_handed else (s, s + k + 1, s + k)
                out[canonical(tuple(self.corner_key(c) for c in tri))] += 1
        return out


def canonical(tri: tuple) -> tuple:
    """Rotate a triangle's corners so the smallest comes first, keeping the winding."""
    i = min(range(3), key=lambda k: tri[k])
    return tri[i:] + tri[:i]


# ---------------------------------------------------------------------------------------------------------------
# GPU readback
# ---------------------------------------------------------------------------------------------------------------
class GpuData:
    """A ``GpuMesh`` read back from the GPU and decoded with its layout."""

    def __init__(self, device: Any, mesh: Any) -> None:
        vb, ib = mesh.vertex_buffer, mesh.index_buffer
        itemsize = np.dtype(mesh.index_dtype).itemsize
        assert mesh.vertex_offset == vb.offset, "vertex_offset must be the buffer's offset in its VkBuffer"
        assert mesh.first_index == ib.offset // itemsize, "first_index must count indices from the VkBuffer's start"
        assert ib.offset % itemsize == 0
        assert mesh.index_count == 3 * mesh.triangle_count
        raw_v = device.read_buffer(vb, mesh.vertex_count * mesh.stride) if mesh.vertex_count else np.zeros(0, np.uint8)
        raw_i = device.read_buffer(ib, mesh.index_count * itemsize) if mesh.index_count else np.zeros(0, np.uint8)
        assert mesh.stride % 4 == 0
        self.floats = raw_v.view(np.float32).reshape(mesh.vertex_count, mesh.stride // 4)
        self.indices = raw_i.view(mesh.index_dtype).astype(np.int64)
        self.layout = mesh.layout
        if mesh.vertex_count:
            assert self.indices.max(initial=0) < mesh.vertex_count
        if mesh.vertex_count <= 65535:
            assert np.dtype(mesh.index_dtype) == np.uint16
        else:
            assert np.dtype(mesh.index_dtype) == np.uint32

    def attr(self, name: str, n: int) -> np.ndarray:
        offset, fmt, stride = self.layout[name]
        assert offset % 4 == 0 and fmt.startswith("R32")
        return self.floats[:, offset // 4: offset // 4 + n]

    def triangles(self, with_normals: bool, with_st: bool, index_range: tuple[int, int] | None = None) -> list[tuple]:
        cols = [self.attr("position", 3)]
        if with_normals:
            cols.append(self.attr("normal", 3))
        if with_st:
            cols.append(self.attr("st", 2))
        table = np.concatenate(cols, axis=1).tolist()
        idx = self.indices if index_range is None else self.indices[index_range[0]: index_range[0] + index_range[1]]
        tris = idx.reshape(-1, 3).tolist()
        return [canonical(tuple(tuple(table[v]) for v in t)) for t in tris]


def verify_mesh(device: Any, prim: Usd.Prim, mesh: Any, time: Usd.TimeCode) -> RefMesh:
    """Read ``mesh`` back and compare it with the independent triangulation of ``prim`` (one prim it came from)."""
    assert prim and prim.IsA(UsdGeom.Mesh), mesh.prim_path
    ref = RefMesh(prim, time)
    gpu = GpuData(device, mesh)
    assert set(mesh.layout) >= {"position", "normal", "st"}
    assert mesh.layout["position"][0] == 0
    # positions and bounds
    pos = gpu.attr("position", 3)
    used = np.unique(gpu.indices)
    if len(ref.points):
        np.testing.assert_array_equal(mesh.bounds[0], ref.points.min(axis=0))
        np.testing.assert_array_equal(mesh.bounds[1], ref.points.max(axis=0))
        assert np.all(pos[used] >= ref.points.min(axis=0)) and np.all(pos[used] <= ref.points.max(axis=0))
    assert mesh.triangle_count == ref.triangle_count, mesh.prim_path
    # normals are always present: authored ones are compared per corner below, computed ones must be unit length
    normals = gpu.attr("normal", 3)[used]
    assert np.isfinite(normals).all()
    if ref.normals is None and len(used):
        lengths = np.linalg.norm(normals, axis=1)
        assert np.mean(np.abs(lengths - 1) < 1e-3) > 0.99, f"{mesh.prim_path}: computed normals not unit length"
    with_n, with_st = ref.normals is not None, ref.st is not None
    if not with_st:
        assert np.all(gpu.attr("st", 2)[used] == 0), "a mesh without st has zero st"
    got = Counter(gpu.triangles(with_n, with_st))
    faces = [f for f in range(len(ref.counts)) if f not in ref.holes]
    concave = [f for f in faces if ref.face_concave(f)]
    if not concave:
        assert got == ref.fan(faces), f"{mesh.prim_path}: GPU triangles differ from the fan triangulation"
    else:  # ear clipping may pick other diagonals: convex faces exactly, concave ones face by face
        convex = ref.fan([f for f in faces if f not in set(concave)])
        assert not convex - got, f"{mesh.prim_path}: triangles of convex faces missing"
        rest = list((got - convex).elements())
        assert len(rest) == sum(int(ref.counts[f]) - 2 for f in concave)
        for f in concave:
            keys = {ref.corner_key(c) for c in range(int(ref.face_start[f]), int(ref.face_start[f] + ref.counts[f]))}
            mine = [t for t in rest if set(t) <= keys]
            assert len(mine) >= int(ref.counts[f]) - 2, f"{mesh.prim_path}: face {f} lacks triangles"
            if not ref.self_intersecting(f):  # a simple polygon: the triangles tile it exactly
                area = sum(ref.projected_area(t, f) for t in mine[: int(ref.counts[f]) - 2])
                assert area == pytest.approx(ref.face_area(f), rel=1e-4, abs=1e-9), f"{mesh.prim_path}: face {f}"
    # submeshes: contiguous ranges covering every index; GeomSubset ranges hold exactly that subset's faces
    first = 0
    for sub in mesh.submeshes:
        assert sub.first_index == first and sub.index_count % 3 == 0
        first += sub.index_count
    assert first == mesh.index_count
    if ref.subsets and not concave:
        by_name = {s.GetPrim().GetName(): s for s in ref.subsets}
        claimed: set[int] = set()
        for sub in mesh.submeshes:
            tris = Counter(gpu.triangles(with_n, with_st, (sub.first_index, sub.index_count)))
            if sub.name:
                subset = by_name[sub.name]
                sub_faces = [int(f) for f in _get(subset.GetIndicesAttr(), time) if int(f) not in claimed]
                claimed.update(sub_faces)
                mat = UsdShade.MaterialBindingAPI(subset.GetPrim()).ComputeBoundMaterial()[0]
                assert _same_material(sub.material_path, str(mat.GetPath()) if mat else None), sub
            else:
                sub_faces = [f for f in faces if f not in claimed]
            assert tris == ref.fan(sub_faces), f"{mesh.prim_path}: submesh {sub.name!r} has the wrong triangles"
    return ref


def _same_material(got: str | None, want: str | None) -> bool:
    """Equal paths, or a material inside an instance prototype (``/__Prototype_N/...``, numbered per stage) seen
    from one of its instance proxies."""
    if got == want or got is None or want is None:
        return got == want
    return got.startswith("/__Prototype_") and want.endswith("/" + got.split("/", 2)[2])


def box_bounds(lo: np.ndarray, hi: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    w = corners @ m.T
    return w[:, :3].min(axis=0), w[:, :3].max(axis=0)


def assert_close_matrix(got: np.ndarray, want: np.ndarray, what: str) -> None:
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-5, atol=1e-5 * scale, err_msg=what)


def verify_scene(device: Any, scene: Any, stage: Usd.Stage, time: Usd.TimeCode,
                 purposes: tuple[str, ...] = DEFAULT_PURPOSES,
                 skipped: tuple[str, ...] = ()) -> dict[str, tuple[Usd.Prim, np.ndarray]]:
    """Every placement, transform, mesh and the bounds of ``scene`` against the independent reference
    (``skipped``: labels of bad prims the load skipped with a warning)."""
    expected = expected_placements(stage, time, purposes)
    for label in skipped:
        expected.pop(label, None)
    got = {i.prim_path: i for i in scene.instances}
    assert len(got) == len(scene.instances), "instance labels must be unique"
    assert sorted(got) == sorted(expected)
    assert scene.stats.instances == len(scene.instances)
    assert len({id(m) for m in scene.meshes}) == len(scene.meshes)
    assert {id(i.mesh) for i in scene.instances} == {id(m) for m in scene.meshes}
    prim_of = {}
    for inst in scene.instances:  # one prim per unique mesh (prototype paths differ between stages: use labels)
        prim_of.setdefault(id(inst.mesh), (inst.mesh, expected[inst.prim_path][0]))
    for mesh, prim in prim_of.values():
        verify_mesh(device, prim, mesh, time)
    refs: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for label, (prim, world) in expected.items():
        inst = got[label]
        assert inst.transform.dtype == np.float32 and inst.transform.shape == (4, 4)
        assert_close_matrix(inst.transform, world, label)
        key = str(prim.GetPath())
        if key not in refs:
            mesh = UsdGeom.Mesh(prim)
            pts = np.asarray(_get(mesh.GetPointsAttr(), time), dtype=np.float32).reshape(-1, 3)
            counts = np.asarray(_get(mesh.GetFaceVertexCountsAttr(), time), dtype=np.int64)
            holes = _get(mesh.GetHoleIndicesAttr(), time)
            drawn = np.ones(len(counts), dtype=bool)
            if holes is not None and len(holes):
                drawn[np.asarray(holes, dtype=np.int64)] = False
            refs[key] = (pts.min(axis=0), pts.max(axis=0), int((counts[drawn] - 2).sum()))
        plo, phi, ntri = refs[key]
        assert inst.mesh.triangle_count == ntri, label
        np.testing.assert_array_equal(inst.mesh.bounds[0], plo)
        np.testing.assert_array_equal(inst.mesh.bounds[1], phi)
        blo, bhi = box_bounds(plo.astype(np.float64), phi.astype(np.float64), world)
        lo, hi = np.minimum(lo, blo), np.maximum(hi, bhi)
    assert scene.triangle_count == sum(i.mesh.triangle_count for i in scene.instances)
    slo, shi = scene.bounds
    if expected:
        scale = max(1.0, float(np.abs(np.concatenate([lo, hi])).max()))
        np.testing.assert_allclose(slo, lo, rtol=1e-5, atol=1e-5 * scale)
        np.testing.assert_allclose(shi, hi, rtol=1e-5, atol=1e-5 * scale)
    else:
        assert not scene.instances and not scene.meshes
    return expected


# ---------------------------------------------------------------------------------------------------------------
# Every root file of SOURCES.md
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rel", ROOT_FILES)
def test_root_file_loads_and_matches_pxr(device, vixen_assets_dir, rel):
    path = vixen_assets_dir / "usd" / rel
    assert path.is_file(), f"{rel} is listed in SOURCES.md but missing"
    stage = Usd.Stage.Open(str(path), Usd.Stage.LoadAll)
    time = start_time(stage)
    with load_stage(path, device) as scene:
        # only composition problems (e.g. Rook's .mtlx without the usdMtlx plugin) and texture files missing upstream
        # (GeomSubsets' texture.ptx, "unresolved" in SOURCES.md) may warn; no prim is skipped
        assert [w for w in scene.warnings if "composition error" not in w and "cannot resolve texture" not in w] == []
        expected = verify_scene(device, scene, stage, time)
        assert scene.stats.prims_visited > 0
        assert scene.stats.unique_meshes == len(scene.meshes)
        assert scene.stats.meshes == len(expected)
    assert scene.released


def test_root_table_counts(vixen_assets_dir):
    """The mesh counts of SOURCES.md ("meshes" and "+inst") agree with this file's traversal."""
    text = (vixen_assets_dir / "usd" / "SOURCES.md").read_text().split("## Every file", 1)[0]
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) < 6 or cells[0] not in ROOT_FILES:
            continue
        stage = Usd.Stage.Open(str(vixen_assets_dir / "usd" / cells[0]), Usd.Stage.LoadAll)
        plain = sum(1 for p in stage.TraverseAll() if p.IsA(UsdGeom.Mesh))
        every = Usd.TraverseInstanceProxies(Usd.PrimAllPrimsPredicate)
        proxies = sum(1 for p in Usd.PrimRange.Stage(stage, every) if p.IsA(UsdGeom.Mesh))
        assert (plain, proxies) == (int(cells[3]), int(cells[4])), cells[0]


def test_native_instancing_counts_and_bounds(device, vixen_assets_dir):
    path = vixen_assets_dir / "usd" / "openusd/testUsdImagingGLHighlight/instance.usda"
    stage = Usd.Stage.Open(str(path))
    time = start_time(stage)
    proxies = [p for p in stage.Traverse(Usd.TraverseInstanceProxies())
               if p.IsA(UsdGeom.Mesh) and p.IsInstanceProxy() and _drawn(p, time, DEFAULT_PURPOSES)]
    plain = [p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh) and _drawn(p, time, DEFAULT_PURPOSES)]
    with load_stage(path, device) as scene:
        assert len(scene.instances) == len(proxies) + len(plain) == 10
        # every placement (two levels of nested instancing and one plain reference) shares one cube's data
        assert len(scene.meshes) == 1 and scene.stats.bytes_uploaded == scene.meshes[0].nbytes
        verify_scene(device, scene, stage, time)


@pytest.mark.parametrize("rel, instances", [
    ("openusd/testUsdImagingGLPointInstancer/pi_basic.usda", 4),
    # 471 teapots placed by the 494 instanceable references outside the instancers, plus 529 points of the 23
    # point instancers (each prototype is one instanceable teapot): 1000 in all
    ("usd-wg-intent-vfx/scenes/teapotScene_layout.usd", 1000),
])
def test_point_instancer_counts_and_bounds(device, vixen_assets_dir, rel, instances):
    path = vixen_assets_dir / "usd" / rel
    stage = Usd.Stage.Open(str(path), Usd.Stage.LoadAll)
    time = start_time(stage)
    points = 0
    for prim in stage.Traverse(Usd.TraverseInstanceProxies()):
        if prim.IsA(UsdGeom.PointInstancer):
            pi = UsdGeom.PointInstancer(prim)
            per_proto = [len(_meshes_below(stage.GetPrimAtPath(t), time, DEFAULT_PURPOSES))
                         for t in pi.GetPrototypesRel().GetTargets()]
            points += sum(per_proto[i] for i in pi.GetProtoIndicesAttr().Get(time))
    it = iter(Usd.PrimRange(stage.GetPseudoRoot(), Usd.TraverseInstanceProxies()))
    outside = 0
    for prim in it:
        if prim.IsA(UsdGeom.PointInstancer):
            it.PruneChildren()
        elif prim.IsA(UsdGeom.Mesh):
            outside += 1
    assert outside + points == instances
    with load_stage(path, device) as scene:
        assert len(scene.instances) == instances
        verify_scene(device, scene, stage, time)


# ---------------------------------------------------------------------------------------------------------------
# Generated stages
# ---------------------------------------------------------------------------------------------------------------
def _author_mesh(stage: Usd.Stage, path: str, *, offset=(0.0, 0.0, 0.0), n: int = 6, normals: str = "vertex",
                 st_seams: bool = False) -> UsdGeom.Mesh:
    """A ``n`` x ``n`` quad grid with faceVarying st (with ``st_seams`` each face has its own unit square, so
    every shared point splits) and ``vertex`` or ``faceVarying`` normals."""
    u, v = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="xy")
    pts = np.stack([u / n, v / n, 0.1 * np.sin(u + v)], -1).reshape(-1, 3).astype(np.float32)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="xy")
    a = (j * (n + 1) + i).ravel()
    quads = np.stack([a, a + 1, a + n + 2, a + n + 1], 1).astype(np.int32)
    mesh = UsdGeom.Mesh.Define(stage, path)
    mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(pts))
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(quads), 4, np.int32)))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(quads.ravel()))
    tilt = np.float32([0.1, 0.2, 1.0]) / np.float32(np.linalg.norm([0.1, 0.2, 1.0]))
    if normals == "vertex":
        mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(np.tile(tilt, (len(pts), 1))))
        mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    else:
        fv = np.tile(np.float32([0, 0, 1]), (quads.size, 1))
        fv[::4] = tilt
        mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(fv))
        mesh.SetNormalsInterpolation(UsdGeom.Tokens.faceVarying)
    st = UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.faceVarying)
    if st_seams:
        st.Set(Vt.Vec2fArray.FromNumpy(np.tile(np.float32([[0, 0], [1, 0], [1, 1], [0, 1]]), (len(quads), 1))))
    else:
        st.Set(Vt.Vec2fArray.FromNumpy(np.ascontiguousarray(pts[quads.ravel(), :2])))
    if any(offset):
        mesh.AddTranslateOp().Set(Gf.Vec3d(*offset))
    return mesh


def _write_asset(path: Path) -> None:
    stage = Usd.Stage.CreateNew(str(path))
    root = UsdGeom.Xform.Define(stage, "/Asset")
    stage.SetDefaultPrim(root.GetPrim())
    _author_mesh(stage, "/Asset/geo")
    stage.GetRootLayer().Save()


def _dedup_stage(tmp_path: Path, mode: str, count: int = 100) -> Path:
    out = tmp_path / f"dedup_{mode}.usda"
    stage = Usd.Stage.CreateNew(str(out))
    UsdGeom.Xform.Define(stage, "/World")
    if mode == "copies":
        for k in range(count):
            _author_mesh(stage, f"/World/copy_{k}", offset=(2.0 * k, 0.0, 0.0))
    else:
        _write_asset(tmp_path / "asset.usda")
        for k in range(count):
            prim = stage.DefinePrim(f"/World/inst_{k}", "Xform")
            prim.GetReferences().AddReference("./asset.usda")
            prim.SetInstanceable(True)
            UsdGeom.Xformable(prim).AddTranslateOp().Set(Gf.Vec3d(0.0, 2.0 * k, 0.0))
    stage.GetRootLayer().Save()
    return out


@pytest.mark.parametrize("mode", ["copies", "instanceable"])
def test_identical_mesh_100_times_uploads_once(device, tmp_path, mode):
    path = _dedup_stage(tmp_path, mode)
    stage = Usd.Stage.Open(str(path))
    with load_stage(path, device) as scene:
        assert len(scene.instances) == 100
        assert len(scene.meshes) == 1
        mesh = scene.meshes[0]
        cats = device.budget.stats()["categories"]
        assert cats["mesh"]["bytes"] == mesh.nbytes
        assert cats["mesh"]["count"] == 2  # one vertex and one index buffer
        assert scene.stats.bytes_uploaded == mesh.nbytes
        assert scene.stats.unique_meshes == 1 and scene.stats.meshes == 100
        cacher = device.cachers["mesh"]
        assert (cacher.stats.misses, cacher.stats.entries) == (1, 1)
        assert cacher.refcount(mesh.key) >= 1
        verify_scene(device, scene, stage, Usd.TimeCode.Default())
    assert device.cachers["mesh"].refcount(mesh.key) == 0  # released, still cached


def _generated(tmp_path: Path, name: str, **kwargs) -> Path:
    out = tmp_path / name
    GEN.generate_scene(out, **kwargs)
    return out


def test_eviction_under_a_small_budget(tmp_path):
    scenes = [_generated(tmp_path, f"evict_{k}.usdc", meshes=12, triangles=30_000, seed=k) for k in range(5)]
    # measure one scene's bytes on a roomy device first
    probe = open_test_device()
    try:
        with load_stage(scenes[0], probe) as s:
            one = s.stats.bytes_uploaded
    finally:
        finish_test_device(probe)
    assert one > 0
    heap = max(h.size for h in probe.info.heaps if h.device_local)
    limit = int(2.6 * one)  # roughly two scenes (plus staging)
    dev = open_test_device(budget_fraction=limit / heap, warning_fraction=1.4 * one / heap)
    try:
        cacher_bytes = []
        for k, path in enumerate(scenes * 2):
            scene = load_stage(path, dev, warm=False)
            try:
                assert scene.stats.instances == 12
                if k == 4:
                    verify_scene(dev, scene, Usd.Stage.Open(str(path)), Usd.TimeCode.Default())
            finally:
                scene.release()
            cacher_bytes.append(dev.cachers["mesh"].stats.bytes)
        stats = dev.cachers["mesh"].stats
        assert stats.evictions > 0
        assert stats.evicted_bytes > 0
        assert max(cacher_bytes) <= dev.budget.limit
        assert dev.budget.stats()["rejections"] == 0
        assert dev.budget.peak <= dev.budget.limit
    except BudgetExceededError as exc:  # pragma: no cover - the failure this test guards against
        pytest.fail(f"eviction did not make room: {exc}")
    finally:
        finish_test_device(dev)


@pytest.mark.parametrize("how", ["fraction", "budget-mb"])
def test_eviction_with_default_thresholds(tmp_path, how):
    """No warning threshold of the test's own: the default ``warning_fraction`` of the limit the user chose (by a
    heap fraction, or ``--budget-mb``'s byte limit) makes released scenes evict before the next load is refused."""
    from vixen_assets import BudgetOptions
    from vixen_assets.cli.load import budget_options

    scenes = [_generated(tmp_path, f"dflt_{k}.usdc", meshes=12, triangles=30_000, seed=100 + 7 * k) for k in range(6)]
    probe = open_test_device()
    try:
        with load_stage(scenes[0], probe) as s:
            one = s.stats.bytes_uploaded
        heap = max(h.size for h in probe.info.heaps if h.device_local)
    finally:
        finish_test_device(probe)
    limit = int(2.4 * one) + (256 << 10)  # about two scenes plus the staging pool
    if how == "fraction":
        budget = BudgetOptions(fraction=limit / heap)
    else:
        budget = budget_options(limit / (1 << 20))  # what `vixen-assets load --budget-mb` builds
    assert budget.warning_fraction == 0.8  # the default: nothing set by the test
    dev = open_test_device(budget=budget)
    try:
        assert dev.budget.warning_threshold < dev.budget.limit
        evicted = 0
        for path in scenes * 2:
            with load_stage(path, dev, warm=False) as scene:
                assert scene.stats.instances == 12
                if scene.stats.cache_hits == 0:  # everything built: what was uploaded is every mesh, evictions apart
                    # (meshes of one geometry share one pair of buffers: those bytes are uploaded once)
                    distinct = {id(m.vertex_buffer): m.nbytes for m in scene.meshes}
                    assert scene.stats.bytes_uploaded == sum(distinct.values()) > 0
                evicted += scene.stats.bytes_evicted
        stats = dev.cachers["mesh"].stats
        assert evicted == stats.evicted_bytes
        assert stats.evictions > 0 and stats.evicted_bytes > 0
        assert dev.budget.stats()["rejections"] == 0
        assert dev.budget.peak <= dev.budget.limit
    finally:
        finish_test_device(dev)


def test_warm_reload_is_fast_and_identical(device, tmp_path):
    path = _generated(tmp_path, "warm.usdc", meshes=150, triangles=120_000, instances=300, mode="instanceable")
    t0 = _time.perf_counter()
    first = load_stage(path, device)
    cold = _time.perf_counter() - t0
    try:
        assert not first.stats.warm
        t0 = _time.perf_counter()
        second = load_stage(path, device)
        warm = _time.perf_counter() - t0
        with second:
            assert second.stats.warm
            assert len(second.instances) == len(first.instances) == 450
            for a, b in zip(first.instances, second.instances):
                assert a.prim_path == b.prim_path and a.material == b.material
                assert a.mesh is b.mesh
                np.testing.assert_array_equal(a.transform, b.transform)
            assert {id(m) for m in second.meshes} == {id(m) for m in first.meshes}
            assert second.triangle_count == first.triangle_count
            assert warm < 0.25 * cold, f"warm reload took {warm:.3f}s against {cold:.3f}s cold"
    finally:
        first.release()
    # the cache outlives both scenes: a third load after releasing everything is warm too
    with load_stage(path, device) as third:
        assert third.stats.warm and len(third.instances) == 450
    # a changed file is read again
    os.utime(path, ns=(_time.time_ns(), _time.time_ns() + 10**9))
    with load_stage(path, device) as fourth:
        assert not fourth.stats.warm and len(fourth.instances) == 450
        assert fourth.stats.cache_hits > 0 and fourth.stats.cache_misses == 0


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------
def _load_good_scene(device: Any) -> None:
    with load_stage(REPO / "samples" / "scenes" / "small_scene.usda", device) as scene:
        assert len(scene.instances) > 0 and not scene.warnings


def test_missing_file_raises_format_error(device, tmp_path):
    path = tmp_path / "nope" / "missing.usda"
    with pytest.raises(FormatError) as info:
        load_stage(path, device)
    assert str(path) in str(info.value)
    _load_good_scene(device)


@pytest.mark.parametrize("name, data", [
    ("garbage.usda", b"\x00\xff\xfe this is not usd \x01\x02" * 20),
    ("syntax.usda", b"#usda 1.0\ndef Mesh \"m\" {{{ int[] faceVertexCounts = [3\n"),
    ("garbage.usdc", b"PXR-USDC" + bytes(range(256)) * 4),
    ("garbage.usd", os.urandom(512)),
])
def test_unopenable_stage_raises_format_error(device, tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(FormatError) as info:
        load_stage(path, device)
    assert str(path) in str(info.value)
    _load_good_scene(device)


_GOOD = """
    def Mesh "good"
    {
        int[] faceVertexCounts = [3]
        int[] faceVertexIndices = [0, 1, 2]
        point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
    }
"""

BAD_PRIMS = {
    "points_int": ("""
    def Mesh "bad"
    {
        int[] faceVertexCounts = [3]
        int[] faceVertexIndices = [0, 1, 2]
        int[] points = [0, 1, 2]
    }""", "/World/bad", "points"),
    "points_2d": ("""
    def Mesh "bad"
    {
        int[] faceVertexCounts = [3]
        int[] faceVertexIndices = [0, 1, 2]
        float2[] points = [(0, 0), (1, 0), (0, 1)]
    }""", "/World/bad", "points"),
    "index_out_of_range": ("""
    def Mesh "bad"
    {
        int[] faceVertexCounts = [3]
        int[] faceVertexIndices = [0, 1, 7]
        point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
    }""", "/World/bad", "out of range"),
    "counts_mismatch": ("""
    def Mesh "bad"
    {
        int[] faceVertexCounts = [3, 3]
        int[] faceVertexIndices = [0, 1, 2, 0]
        point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
    }""", "/World/bad", "faceVertexCounts"),
    "primvar_size": ("""
    def Mesh "bad"
    {
        int[] faceVertexCounts = [3]
        int[] faceVertexIndices = [0, 1, 2]
        point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
        texCoord2f[] primvars:st = [(0, 0), (1, 0)] (interpolation = "faceVarying")
    }""", "/World/bad", "primvars:st"),
    "normals_size": ("""
    def Mesh "bad"
    {
        int[] faceVertexCounts = [3]
        int[] faceVertexIndices = [0, 1, 2]
        point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
        normal3f[] normals = [(0, 0, 1)] (interpolation = "vertex")
    }""", "/World/bad", "normals"),
    "unresolvable_reference": ("""
    def Xform "bad" (references = @./does_not_exist.usda@</Asset>)
    {
    }""", "/World/bad", "does_not_exist.usda"),
}


def _bad_stage(tmp_path: Path, case: str) -> Path:
    body, _, _ = BAD_PRIMS[case]
    path = tmp_path / f"bad_{case}.usda"
    path.write_text(f"#usda 1.0\ndef Xform \"World\"\n{{{_GOOD}{body}\n}}\n")
    return path


@pytest.mark.parametrize("case", sorted(BAD_PRIMS))
def test_bad_prim_is_skipped_with_a_warning(device, tmp_path, case):
    path = _bad_stage(tmp_path, case)
    _, prim_path, problem = BAD_PRIMS[case]
    with load_stage(path, device) as scene:
        assert [i.prim_path for i in scene.instances] == ["/World/good"]
        assert len(scene.warnings) == 1, scene.warnings
        warning = scene.warnings[0]
        assert str(path) in warning and prim_path in warning and problem in warning, warning
        verify_scene(device, scene, Usd.Stage.Open(str(path)), Usd.TimeCode.Default(), skipped=(prim_path,))
    _load_good_scene(device)


@pytest.mark.parametrize("case", sorted(BAD_PRIMS))
def test_bad_prim_strict_raises(device, tmp_path, case):
    path = _bad_stage(tmp_path, case)
    _, prim_path, problem = BAD_PRIMS[case]
    used = device.budget.used
    with pytest.raises(FormatError) as info:
        load_stage(path, device, strict=True)
    msg = str(info.value)
    assert str(path) in msg and prim_path in msg and problem in msg, msg
    assert info.value.prim_path == prim_path
    assert device.budget.used == used  # nothing left behind
    _load_good_scene(device)


def test_bad_prim_in_an_instanced_asset_warns_once(device, tmp_path):
    asset = tmp_path / "asset_bad.usda"
    asset.write_text("#usda 1.0\n(defaultPrim = \"Asset\")\ndef Xform \"Asset\"\n{"
                     + _GOOD + BAD_PRIMS["index_out_of_range"][0] + "\n}\n")
    stage = Usd.Stage.CreateNew(str(tmp_path / "many.usda"))
    for k in range(20):
        prim = stage.DefinePrim(f"/World/i{k}", "Xform")
        prim.GetReferences().AddReference("./asset_bad.usda")
        prim.SetInstanceable(True)
    stage.GetRootLayer().Save()
    with load_stage(tmp_path / "many.usda", device) as scene:
        assert len(scene.instances) == 20 and len(scene.meshes) == 1
        assert len(scene.warnings) == 1
        assert str(asset) in scene.warnings[0] and "/bad" in scene.warnings[0]


# ---------------------------------------------------------------------------------------------------------------
# Time, purposes, visibility
# ---------------------------------------------------------------------------------------------------------------
def _timed_stage(path: Path, *, time_range: bool | str) -> Path:
    stage = Usd.Stage.CreateNew(str(path))
    if time_range == "legacy":  # startFrame/endFrame, as older files (pi_basic.usda) author them
        stage.SetMetadata("startFrame", 10.0)
        stage.SetMetadata("endFrame", 20.0)
    elif time_range:
        stage.SetStartTimeCode(10)
        stage.SetEndTimeCode(20)
    xf = UsdGeom.Xform.Define(stage, "/World/Mover")
    op = xf.AddTranslateOp()
    op.Set(Gf.Vec3d(5, 0, 0))  # default value
    op.Set(Gf.Vec3d(1, 0, 0), Usd.TimeCode(10))
    op.Set(Gf.Vec3d(2, 0, 0), Usd.TimeCode(20))
    _author_mesh(stage, "/World/Mover/geo", n=2)
    stage.GetRootLayer().Save()
    return path


@pytest.mark.parametrize("time_range, time, x", [
    (True, None, 1.0),    # the start time code
    (False, None, 5.0),   # no time range: the default value
    ("legacy", None, 1.0),  # startFrame: the start too
    (True, 20, 2.0),
    (True, 15.0, 1.5),
    (True, Usd.TimeCode.Default(), 5.0),
])
def test_time_sampling(device, tmp_path, time_range, time, x):
    path = _timed_stage(tmp_path / "timed.usda", time_range=time_range)
    with load_stage(path, device, time=time) as scene:
        (inst,) = scene.instances
        np.testing.assert_allclose(inst.transform[:3, 3], [x, 0, 0])
        stage = Usd.Stage.Open(str(path))
        tc = start_time(stage) if time is None else (time if isinstance(time, Usd.TimeCode) else Usd.TimeCode(time))
        verify_scene(device, scene, stage, tc)


def test_time_none_reads_the_only_time_sample(device, vixen_assets_dir):
    """animatedTop authors startTimeCode 48 and every mesh attribute only as a sample at 48."""
    path = vixen_assets_dir / "usd" / "openusd/animatedTop/top.geom.usd"
    stage = Usd.Stage.Open(str(path))
    assert start_time(stage) == Usd.TimeCode(48)
    mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/Top/mesh_0"))
    assert mesh.GetPointsAttr().Get() is None and mesh.GetPointsAttr().Get(48) is not None
    with load_stage(path, device) as scene:
        (inst,) = scene.instances
        verify_mesh(device, stage.GetPrimAtPath("/Top/mesh_0"), inst.mesh, Usd.TimeCode(48))
        with load_stage(path, device, time=48) as again:
            assert again.instances[0].mesh is inst.mesh


def _purpose_stage(path: Path) -> Path:
    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.Xform.Define(stage, "/World")
    _author_mesh(stage, "/World/plain", n=1)
    _author_mesh(stage, "/World/render", n=2).CreatePurposeAttr(UsdGeom.Tokens.render)
    guide = UsdGeom.Xform.Define(stage, "/World/guides")
    guide.CreatePurposeAttr(UsdGeom.Tokens.guide)
    _author_mesh(stage, "/World/guides/g", n=3)
    _author_mesh(stage, "/World/proxy", n=4).CreatePurposeAttr(UsdGeom.Tokens.proxy)
    hidden = UsdGeom.Xform.Define(stage, "/World/hidden")
    hidden.CreateVisibilityAttr(UsdGeom.Tokens.invisible)
    _author_mesh(stage, "/World/hidden/h", n=5)
    _author_mesh(stage, "/World/hidden_mesh", n=6).CreateVisibilityAttr(UsdGeom.Tokens.invisible)
    stage.GetRootLayer().Save()
    return path


@pytest.mark.parametrize("purposes, want", [
    (("default", "render"), ["/World/plain", "/World/render"]),
    (("default", "render", "guide"), ["/World/guides/g", "/World/plain", "/World/render"]),
    (("default", "proxy"), ["/World/plain", "/World/proxy"]),
])
def test_purposes_and_visibility(device, tmp_path, purposes, want):
    path = _purpose_stage(tmp_path / "purposes.usda")
    kwargs = {} if purposes == DEFAULT_PURPOSES else {"purposes": purposes}
    with load_stage(path, device, **kwargs) as scene:
        assert sorted(i.prim_path for i in scene.instances) == want
        verify_scene(device, scene, Usd.Stage.Open(str(path)), Usd.TimeCode.Default(), purposes)


def test_vertex_normals_beside_facevarying_normals_across_st_seams(device, tmp_path):
    """One batch: a mesh with vertex normals whose faceVarying st splits its points, and a mesh with faceVarying
    normals. The split-off vertices of the first must keep their point's normal (they once got zeros)."""
    stage = Usd.Stage.CreateNew(str(tmp_path / "seams.usda"))
    _author_mesh(stage, "/World/vertex_normals", n=3, normals="vertex", st_seams=True)
    _author_mesh(stage, "/World/facevarying_normals", n=2, normals="faceVarying", offset=(3.0, 0.0, 0.0))
    stage.GetRootLayer().Save()
    with load_stage(tmp_path / "seams.usda", device) as scene:
        assert len(scene.meshes) == 2
        mesh = next(i.mesh for i in scene.instances if i.prim_path == "/World/vertex_normals")
        assert mesh.vertex_count == 4 * 9  # every face has its own st square: 4 vertices per quad
        normals = GpuData(device, mesh).attr("normal", 3)
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, rtol=1e-6)
        verify_scene(device, scene, stage, Usd.TimeCode.Default())


def test_small_sample_scene(device):
    path = REPO / "samples" / "scenes" / "small_scene.usda"
    stage = Usd.Stage.Open(str(path))
    with load_stage(path, device) as scene:
        labels = {i.prim_path for i in scene.instances}
        assert "/World/Guide" not in labels and "/World/Hidden" not in labels
        verify_scene(device, scene, stage, start_time(stage))
    with load_stage(path, device, purposes=("default", "render", "guide")) as scene:
        assert "/World/Guide" in {i.prim_path for i in scene.instances}


def test_point_instancer_masks(device, tmp_path):
    """invisibleIds and inactiveIds both hide points (UsdGeomPointInstancer.ComputeMaskAtTime)."""
    stage = Usd.Stage.CreateNew(str(tmp_path / "masked.usda"))
    pi = UsdGeom.PointInstancer.Define(stage, "/World/PI")
    proto = UsdGeom.Xform.Define(stage, "/World/PI/Prototypes/p")
    proto.AddTranslateOp().Set(Gf.Vec3d(0, 0, 3))
    _author_mesh(stage, "/World/PI/Prototypes/p/geo", n=1)
    pi.CreatePrototypesRel().SetTargets([proto.GetPath()])
    pi.CreateProtoIndicesAttr([0] * 5)
    pi.CreatePositionsAttr([Gf.Vec3f(k, 0, 0) for k in range(5)])
    pi.CreateIdsAttr([10, 11, 12, 13, 14])
    pi.InvisId(11, Usd.TimeCode.Default())
    pi.DeactivateId(13)
    stage.GetRootLayer().Save()
    with load_stage(tmp_path / "masked.usda", device) as scene:
        assert not scene.warnings
        assert sorted(i.prim_path for i in scene.instances) == [
            "/World/PI[0]/geo", "/World/PI[2]/geo", "/World/PI[4]/geo"]
        verify_scene(device, scene, stage, Usd.TimeCode.Default())


# ---------------------------------------------------------------------------------------------------------------
# Progress, release, context manager
# ---------------------------------------------------------------------------------------------------------------
def test_progress_reports_increasing_done(device, tmp_path):
    path = _generated(tmp_path, "many.usdc", meshes=600, triangles=12_000)
    calls: list[tuple[str, int, int]] = []
    with load_stage(path, device, progress=lambda phase, done, total: calls.append((phase, done, total))) as scene:
        assert len(scene.instances) == 600
    phases: dict[str, list[tuple[int, int]]] = {}
    for phase, done, total in calls:
        phases.setdefault(phase, []).append((done, total))
    assert {"walk", "read", "build", "upload"} <= set(phases)
    for phase, seq in phases.items():
        dones = [d for d, _ in seq]
        assert dones == sorted(dones), f"{phase}: done went down: {dones}"
        assert all(0 <= d <= t for d, t in seq if t), (phase, seq)
        assert seq[-1][0] == seq[-1][1], f"{phase} did not finish"
    assert len(phases["read"]) >= 3  # reported during the read, not only at its end
    assert phases["read"][-1] == (600, 600)


def test_release_twice_and_context_manager(device):
    path = REPO / "samples" / "scenes" / "small_scene.usda"
    scene = load_stage(path, device)
    cacher = device.cachers["mesh"]
    refs = {m.key: cacher.refcount(m.key) for m in scene.meshes}
    assert refs and all(n >= 1 for n in refs.values())
    scene.release()
    scene.release()
    assert scene.released and all(cacher.refcount(k) == 0 for k in refs)
    with load_stage(path, device) as again:
        assert not again.released and {k: cacher.refcount(k) for k in refs} == refs
    assert again.released and all(cacher.refcount(k) == 0 for k in refs)
    again.release()
    with pytest.raises(RuntimeError):
        with load_stage(path, device) as third:
            raise RuntimeError("boom")
    assert third.released


def test_open_stage_object_is_accepted(device, vixen_assets_dir):
    stage = Usd.Stage.Open(str(vixen_assets_dir / "usd" / "usd-wg/_common/teapot.usda"))
    with load_stage(stage, device) as scene:
        assert not scene.stats.warm and len(scene.instances) == 1
        verify_scene(device, scene, stage, start_time(stage))


# ---------------------------------------------------------------- hardening (issue 19)

HARDENING_STAGE = """#usda 1.0
def Mesh "Empty"
{
    int[] faceVertexCounts = []
    int[] faceVertexIndices = []
    point3f[] points = [(0, 0, 0)]
}
def Mesh "NoAttributes"
{
}
def Mesh "Tri"
{
    int[] faceVertexCounts = [3]
    int[] faceVertexIndices = [0, 1, 2]
    point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
}
"""
NAN_POINTS = """
def Mesh "NanPoints"
{
    int[] faceVertexCounts = [3]
    int[] faceVertexIndices = [0, 1, 2]
    point3f[] points = [(0, 0, 0), (nan, 0, 0), (0, 5, 0)]
}
"""
INF_NORMALS = """
def Mesh "InfNormals"
{
    int[] faceVertexCounts = [3]
    int[] faceVertexIndices = [0, 1, 2]
    point3f[] points = [(0, 0, 0), (9, 0, 0), (0, 9, 0)]
    normal3f[] normals = [(0, 0, 1), (inf, 0, 1), (0, 0, 1)] (interpolation = "vertex")
}
"""


@pytest.mark.parametrize("strict", [False, True])
def test_meshes_without_faces_are_skipped_by_every_cacher(device, tmp_path, strict):
    """A legal mesh with no faces (common in real files) is skipped with a warning naming it, even under strict, by
    the mesh cacher and the acceleration-structure cacher; the rest of the stage loads and traces."""
    from vixen_assets import trace_rays

    path = tmp_path / "empty_meshes.usda"
    path.write_text(HARDENING_STAGE)
    with load_stage(path, device, acceleration_structures=True, strict=strict) as scene:
        assert [i.prim_path for i in scene.instances] == ["/Tri"]
        for prim in ("/Empty", "/NoAttributes"):
            assert any(prim in w and "no faces" in w and "faceVertexCounts" in w for w in scene.warnings), \
                scene.warnings
        if device.features.get("ray_query"):
            hits = trace_rays(scene, [[0.2, 0.2, 1.0], [5.0, 5.0, 1.0]], [[0, 0, -1], [0, 0, -1]])
            assert hits["hit"].tolist() == [True, False]


def test_non_finite_points_and_normals(device, tmp_path):
    """NaN/inf points or normals: the mesh is skipped with a warning naming prim and field; FormatError under
    strict; the scene bounds are those of the good meshes (never NaN, never silently zeros)."""
    for extra, prim, fld in ((NAN_POINTS, "/NanPoints", "points"), (INF_NORMALS, "/InfNormals", "normals")):
        path = tmp_path / f"{fld}.usda"
        path.write_text(HARDENING_STAGE + extra)
        with load_stage(path, device) as scene:
            assert [i.prim_path for i in scene.instances] == ["/Tri"]
            bad = [w for w in scene.warnings if prim in w]
            assert len(bad) == 1 and f"field {fld!r}" in bad[0] and "not finite" in bad[0], scene.warnings
            lo, hi = scene.bounds
            assert lo.tolist() == [0, 0, 0] and hi.tolist() == [1, 1, 0]
        with pytest.raises(FormatError) as info:
            load_stage(path, device, strict=True)
        assert info.value.prim_path == prim and info.value.field == fld
        assert not device.cachers["mesh"].stats.failed_builds


def test_usd_open_errors_keep_usds_reason(device, tmp_path):
    """USD's own first line of reason, without C++ namespaces, functions or source files."""
    ok = tmp_path / "ok.usdc"
    stage = Usd.Stage.CreateNew(str(ok))
    UsdGeom.Mesh.Define(stage, "/M")
    stage.GetRootLayer().Save()
    data = ok.read_bytes()
    truncated = tmp_path / "truncated.usdc"
    truncated.write_bytes(data[: len(data) // 2])
    parse = tmp_path / "parse.usda"
    parse.write_text('#usda 1.0\ndef Mesh "A" {\n  int[] x = [1, 2\n}\n')
    garbage = tmp_path / "garbage.usd"
    garbage.write_bytes(b"\x00\x01garbage" * 10)
    cases = ((truncated, "table of contents at offset"), (parse, "parse error"), (garbage, "Failed to open layer"))
    for path, reason in cases:
        with pytest.raises(FormatError) as info:
            load_stage(path, device)
        msg = str(info.value)
        assert str(path) in msg and reason in msg, msg
        for internal in ("pxrInternal", "pxrReserved", ".cpp", ".h :", "Error in '"):
            assert internal not in msg, msg
        assert "\n" not in msg
    with pytest.raises(FormatError, match="directory"):
        load_stage(tmp_path, device)


def test_point_instancer_prototypes_beneath_an_over(device: Any, tmp_path: Path) -> None:
    """Prototypes kept beneath an ``over`` (so that a plain traversal does not draw them, as the PointInstancer
    documentation recommends and Blender's USD exporter writes) are instanced; the over itself is not drawn."""
    path = tmp_path / "over_protos.usda"
    path.write_text('''#usda 1.0
def PointInstancer "pi"
{
    point3f[] positions = [(0, 0, 0), (5, 0, 0), (0, 7, 0)]
    int[] protoIndices = [0, 0, 0]
    rel prototypes = </pi/Prototypes/tri>

    over "Prototypes"
    {
        def Mesh "tri"
        {
            int[] faceVertexCounts = [3]
            int[] faceVertexIndices = [0, 1, 2]
            point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
        }
    }
}
''')
    with load_stage(path, device) as scene:
        assert not scene.warnings
        assert sorted(i.prim_path for i in scene.instances) == ["/pi[0]", "/pi[1]", "/pi[2]"]
        offsets = sorted(tuple(np.round(i.transform[:3, 3], 5)) for i in scene.instances)
        assert offsets == [(0, 0, 0), (0, 7, 0), (5, 0, 0)]
        assert scene.triangle_count == 3


def test_load_pauses_the_garbage_collector_and_restores_it(device, tmp_path):
    import gc

    path = tmp_path / "gc.usda"
    GEN.generate_scene(path, meshes=2, triangles=200)
    seen = []
    try:
        for enabled in (True, False):
            gc.enable() if enabled else gc.disable()
            with load_stage(path, device, progress=lambda *a: seen.append(gc.isenabled())):
                pass
            assert gc.isenabled() is enabled
        gc.enable()
        with pytest.raises(FormatError):
            load_stage(tmp_path / "missing.usda", device)
        assert gc.isenabled()
    finally:
        gc.enable()
    assert seen and not any(seen)  # paused while loading
