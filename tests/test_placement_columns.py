"""Placements handled as columns: point instancers walked as one batch (nested under instances and inside other
instancers' prototypes too), scene bounds / triangle counts in whole-array passes, and the TLAS helpers that take
every transform as one array.

Placements are checked against an independent reference: each point's matrix recomputed here with ``Gf`` from
``ComputeInstanceTransformsAtTime`` and ``UsdGeom.XformCache``, one placement at a time; bounds against the
per-instance corner loop.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pxr import Gf, Sdf, Usd, UsdGeom, Vt

from vixen_assets import load_stage
from vixen_assets import scene as scene_module
from vixen_assets.accel.scene_tlas import instance_transforms, record_world, records_world
from vixen_assets.errors import VixenWarning
from vixen_assets.scene import Instance, Scene


def _cube(stage: Any, path: str, size: float) -> None:
    mesh = UsdGeom.Mesh.Define(stage, path)
    mesh.CreatePointsAttr([(x * size, y * size, z * size) for x in (0, 1) for y in (0, 1) for z in (0, 1)])
    mesh.CreateFaceVertexCountsAttr([4] * 6)
    mesh.CreateFaceVertexIndicesAttr([0, 1, 3, 2, 4, 6, 7, 5, 0, 4, 5, 1, 2, 3, 7, 6, 0, 2, 6, 4, 1, 5, 7, 3])


def _instancer(stage: Any, path: str, protos: list[str], count: int, seed: int) -> UsdGeom.PointInstancer:
    rng = np.random.default_rng(seed)
    pi = UsdGeom.PointInstancer.Define(stage, path)
    pi.CreatePrototypesRel().SetTargets([Sdf.Path(p) for p in protos])
    pi.CreateProtoIndicesAttr(rng.integers(0, len(protos), count).tolist())
    pi.CreatePositionsAttr(Vt.Vec3fArray([Gf.Vec3f(*v) for v in rng.normal(size=(count, 3)).tolist()]))
    pi.CreateScalesAttr(Vt.Vec3fArray([Gf.Vec3f(*v) for v in (1 + rng.random((count, 3))).tolist()]))
    return pi


def _nested_stage(path: Path) -> Path:
    """A top-level instancer (a mesh, a two-mesh group and an inner instancer as prototypes, two points hidden) and
    an instanceable asset holding another instancer, placed three times."""
    stage = Usd.Stage.CreateNew(str(path))
    protos = stage.OverridePrim("/Protos")
    assert protos
    _cube(stage, "/Protos/a", 1.0)
    UsdGeom.Xform.Define(stage, "/Protos/grp")
    _cube(stage, "/Protos/grp/c1", 0.5)
    _cube(stage, "/Protos/grp/c2", 0.25)
    UsdGeom.XformCommonAPI(stage.GetPrimAtPath("/Protos/grp/c2")).SetTranslate((1, 2, 3))
    inner = UsdGeom.Xform.Define(stage, "/Protos/inner")
    UsdGeom.XformCommonAPI(inner).SetRotate((10, 20, 30))
    _instancer(stage, "/Protos/inner/pi", ["/Protos/a", "/Protos/grp"], 5, 1)
    top = _instancer(stage, "/World/pi", ["/Protos/a", "/Protos/grp", "/Protos/inner"], 12, 2)
    top.CreateIdsAttr(list(range(12)))
    top.CreateInvisibleIdsAttr([1, 4])
    UsdGeom.XformCommonAPI(top).SetTranslate((0, 10, 0))
    UsdGeom.Xform.Define(stage, "/Asset")
    _instancer(stage, "/Asset/pi", ["/Protos/grp", "/Protos/inner"], 4, 3)
    for i in range(3):
        holder = UsdGeom.Xform.Define(stage, f"/World/inst{i}")
        holder.GetPrim().GetReferences().AddInternalReference("/Asset")
        holder.GetPrim().SetInstanceable(True)
        UsdGeom.XformCommonAPI(holder).SetTranslate((5.0 * i, 0, 0))
    stage.GetRootLayer().Save()
    return path


def _expected(stage: Any) -> dict[str, np.ndarray]:
    """Every mesh placement of the nested stage by label, as a column-vector float64 world matrix, one at a time."""
    time = Usd.TimeCode.Default()
    xfc = UsdGeom.XformCache(time)
    out: dict[str, np.ndarray] = {}

    def expand(pi_prim: Any, label: str, parent: Gf.Matrix4d) -> None:
        pi = UsdGeom.PointInstancer(pi_prim)
        xforms = pi.ComputeInstanceTransformsAtTime(time, time, UsdGeom.PointInstancer.IncludeProtoXform,
                                                    UsdGeom.PointInstancer.IgnoreMask)
        mask = pi.ComputeMaskAtTime(time)
        targets = pi.GetPrototypesRel().GetTargets()
        local = xfc.GetLocalTransformation(pi_prim)[0]
        for i, (index, xf) in enumerate(zip(pi.GetProtoIndicesAttr().Get(), xforms)):
            if mask and not mask[i]:
                continue
            root = stage.GetPrimAtPath(targets[index])
            world = xf * local * parent
            for prim in Usd.PrimRange(root, Usd.PrimIsActive & Usd.PrimIsLoaded & ~Usd.PrimIsAbstract):
                sub = f"{label}[{i}]{str(prim.GetPath())[len(str(root.GetPath())):]}"
                if prim.IsA(UsdGeom.PointInstancer):
                    rel = xfc.ComputeRelativeTransform(prim.GetParent(), root)[0] if prim != root else Gf.Matrix4d(1)
                    expand(prim, sub, rel * world if prim != root else world)
                elif prim.IsA(UsdGeom.Mesh):
                    out[sub] = np.array(xfc.ComputeRelativeTransform(prim, root)[0] * world).T

    expand(stage.GetPrimAtPath("/World/pi"), "/World/pi", Gf.Matrix4d(1))
    for i in range(3):
        holder = stage.GetPrimAtPath(f"/World/inst{i}")
        expand(stage.GetPrimAtPath("/Asset/pi"), f"/World/inst{i}/pi", xfc.GetLocalToWorldTransform(holder))
    return out


def test_nested_point_instancers_match_a_placement_by_placement_reference(device: Any, tmp_path: Path) -> None:
    path = _nested_stage(tmp_path / "nested.usda")
    expected = _expected(Usd.Stage.Open(str(path)))
    with load_stage(path, device) as scene:
        got = {i.prim_path: i.transform for i in scene.instances if i.prim_path.startswith("/World/")}
        assert not scene.warnings
        assert sorted(got) == sorted(expected)
        for label, matrix in expected.items():
            np.testing.assert_allclose(got[label], matrix, rtol=1e-5, atol=1e-5, err_msg=label)
        # points are placed in order, each point's prototype items together
        labels = [i.prim_path for i in scene.instances if i.prim_path.startswith("/World/pi[")]
        points = [int(label.split("[", 2)[1].split("]")[0]) for label in labels]
        assert points == sorted(points) and 1 not in points and 4 not in points
        assert scene.stats.instances == len(scene.instances)
        assert scene.stats.triangles == sum(i.mesh.triangle_count for i in scene.instances)
        # a warm reload gives the same placements
        with load_stage(path, device) as again:
            assert again.stats.warm
            assert [i.prim_path for i in again.instances] == [i.prim_path for i in scene.instances]
            assert all(np.array_equal(a.transform, b.transform) for a, b in zip(again.instances, scene.instances))


class _Box:
    """An entry with bounds and triangles (what ``Scene.bounds`` and ``triangle_count`` read)."""

    def __init__(self, lo: Any, hi: Any, triangles: int) -> None:
        self.bounds = (np.asarray(lo, np.float32), np.asarray(hi, np.float32))
        self.triangle_count = triangles


def _reference_bounds(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for inst in scene.instances:
        b = getattr(inst.mesh, "bounds", None)
        if b is None:
            continue
        mn, mx = np.asarray(b[0], np.float64), np.asarray(b[1], np.float64)
        corners = np.array([[x, y, z, 1.0] for x in (mn[0], mx[0]) for y in (mn[1], mx[1]) for z in (mn[2], mx[2])])
        w = corners @ inst.transform.astype(np.float64).T
        if np.isfinite(w).all():
            lo, hi = np.minimum(lo, w[:, :3].min(axis=0)), np.maximum(hi, w[:, :3].max(axis=0))
    return lo.astype(np.float32), hi.astype(np.float32)


def test_scene_bounds_and_triangles_in_chunks(device: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    boxes = [_Box(rng.normal(size=3) - 1, rng.normal(size=3) + 1, t) for t in (12, 7, 1)]
    scene = Scene(device, "columns")
    for k in range(11):
        m = np.eye(4, dtype=np.float32)
        m[:3, :3] = rng.normal(size=(3, 3))
        m[:3, 3] = rng.normal(size=3) * 10
        scene.instances.append(Instance(boxes[k % 3], m, f"/i{k}"))
    scene.instances.append(Instance(object(), np.eye(4, dtype=np.float32), "/no-bounds"))  # no bounds: left out
    bad = np.eye(4, dtype=np.float32)
    bad[0, 3] = np.inf
    scene.instances.append(Instance(boxes[0], bad, "/bad"))
    monkeypatch.setattr(scene_module, "_BOUNDS_CHUNK", 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lo, hi = scene.bounds
    assert [str(w.message) for w in caught if issubclass(w.category, VixenWarning)] == [
        "instance /bad: its bounds are not finite and are left out of the scene bounds"]
    ref_lo, ref_hi = _reference_bounds(scene)
    np.testing.assert_allclose(lo, ref_lo, rtol=1e-6)
    np.testing.assert_allclose(hi, ref_hi, rtol=1e-6)
    assert scene.triangle_count == 4 * 12 + 4 * 7 + 3 * 1 + 12
    empty = Scene(device, "empty")
    assert [b.tolist() for b in empty.bounds] == [[0, 0, 0], [0, 0, 0]] and empty.triangle_count == 0


def test_records_world_takes_the_transforms_as_one_array() -> None:
    rng = np.random.default_rng(3)
    insts = [Instance(None, rng.normal(size=(4, 4)).astype(np.float32), f"/i{k}") for k in range(5)]
    transforms = instance_transforms(insts)
    assert transforms.shape == (5, 4, 4) and transforms.dtype == np.float32
    assert all(np.array_equal(t, i.transform) for t, i in zip(transforms, insts))
    record_instance = np.array([0, 2, 2, 4], np.int32)
    local = rng.normal(size=(4, 4, 4)).astype(np.float32)
    world = records_world(transforms, record_instance, local)
    for k, r in enumerate(record_instance):
        np.testing.assert_allclose(world[k], insts[r].transform @ local[k], rtol=1e-5, atol=1e-5)
    assert np.array_equal(record_world(insts, record_instance, local), world)
    assert records_world(transforms, np.zeros(0, np.int32), np.zeros((0, 4, 4), np.float32)).shape == (0, 4, 4)
    assert instance_transforms([]).shape == (0, 4, 4)


def test_update_transforms_copies_once_and_never_aliases_the_input(device: Any, tmp_path: Path) -> None:
    path = _nested_stage(tmp_path / "nested.usda")
    with load_stage(path, device, warm=False) as scene:
        new = np.stack([i.transform for i in scene.instances]) * 2
        scene.update_transforms(new)
        assert all(np.array_equal(i.transform, t) for i, t in zip(scene.instances, new))
        new[:] = 0
        assert not np.array_equal(scene.instances[0].transform, new[0])
        scene.instances[0].transform[0, 0] = 42.0  # one instance's matrix is its own
        assert scene.instances[1].transform[0, 0] != 42.0 or new.shape[0] == 1
