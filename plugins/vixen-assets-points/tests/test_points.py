"""Tests of the points plugin, written the way a third-party plugin tests itself.

- ``vixen_device`` comes from vixen-assets' pytest plugin (``vixen_assets.testing``, loaded automatically once
  vixen-assets is installed): a device on the real Vulkan driver with validation on; a validation message or a
  resource still alive at the end fails the test.
- Each test builds its own plugin manager with only the built-ins and this plugin (``load_entrypoints=False``, so
  other installed plugins cannot interfere), and passes it to ``load_stage``.
- Stages are written with pxr into ``tmp_path``; expected values are computed from the same pxr attributes with
  numpy and compared with the bytes read back from the GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pxr import Usd, UsdGeom, Vt

import vixen_assets
import vixen_assets.plugins
import vixen_assets_points
from vixen_assets_points import GpuPoints


@pytest.fixture
def pm() -> Iterator[Any]:
    """A fresh plugin manager with the built-in cachers and this plugin; unregistered again in ``finally``."""
    manager = vixen_assets.plugins.get_plugin_manager(load_entrypoints=False)
    manager.register(vixen_assets_points)
    try:
        yield manager
    finally:
        manager.unregister(vixen_assets_points)


def add_points(stage: Any, path: str, points: list[tuple[float, float, float]], widths: list[float] | None = None,
               interpolation: str | None = None) -> Any:
    """Define a ``Points`` prim with ``points`` and optional ``widths``."""
    prim = UsdGeom.Points.Define(stage, path)
    prim.CreatePointsAttr(Vt.Vec3fArray(points))
    if widths is not None:
        prim.CreateWidthsAttr(Vt.FloatArray(widths))
    if interpolation is not None:
        prim.SetWidthsInterpolation(interpolation)
    return prim


def expected_buffer(prim: Any) -> np.ndarray:
    """The interleaved x, y, z, width rows the plugin should upload, computed from pxr."""
    geom = UsdGeom.Points(prim)
    pts = np.asarray(geom.GetPointsAttr().Get(), np.float32)
    w = geom.GetWidthsAttr().Get()
    widths = np.ones(len(pts), np.float32) if w is None else np.asarray(w, np.float32)
    if widths.shape[0] == 1:
        widths = np.repeat(widths, len(pts))
    return np.column_stack([pts, widths]).astype(np.float32)


def gpu_rows(device: Any, entry: GpuPoints) -> np.ndarray:
    """Read an entry's buffer back as (count, 4) float32 rows."""
    raw = device.read_buffer(entry.buffer, entry.count * vixen_assets_points.STRIDE)
    return np.asarray(raw).view(np.float32).reshape(entry.count, 4)


def points_instances(scene: Any) -> list[Any]:
    """The scene's instances that this plugin made."""
    return [i for i in scene.instances if i.kind == "points"]


def test_points_and_vertex_widths_read_back(vixen_device: Any, pm: Any, tmp_path: Path) -> None:
    path = tmp_path / "cloud.usda"
    stage = Usd.Stage.CreateNew(str(path))
    prim = add_points(stage, "/World/Cloud", [(0, 0, 0), (1, 2, 3), (-4, 5.5, 6)], [0.1, 0.2, 0.3]).GetPrim()
    UsdGeom.Xformable(stage.GetPrimAtPath("/World/Cloud")).AddTranslateOp().Set((10, 0, 0))
    stage.Save()

    with vixen_assets.load_stage(path, vixen_device, plugin_manager=pm) as scene:
        assert scene.warnings == []
        [inst] = points_instances(scene)
        entry = inst.mesh
        assert isinstance(entry, GpuPoints)
        assert inst.prim_path == "/World/Cloud"
        assert entry.count == 3
        assert entry.triangle_count == 0
        assert entry.layout == {"position": (0, "float32x3", 16), "width": (12, "float32", 16)}
        assert entry.nbytes >= 3 * 16
        np.testing.assert_array_equal(gpu_rows(vixen_device, entry), expected_buffer(prim))
        np.testing.assert_array_equal(entry.bounds[0], np.array([-4, 0, 0], np.float32))
        np.testing.assert_array_equal(entry.bounds[1], np.array([1, 5.5, 6], np.float32))
        np.testing.assert_allclose(inst.transform[:3, 3], [10, 0, 0])
        # the buffer is charged to the cacher's budget category
        assert vixen_device.budget.stats()["categories"]["points"]["bytes"] >= entry.nbytes


@pytest.mark.parametrize("widths, interpolation, expected", [
    (None, None, [1.0, 1.0]),                         # unauthored: the default width
    ([0.5], UsdGeom.Tokens.constant, [0.5, 0.5]),     # constant: one value for every point
    ([0.25, 0.75], UsdGeom.Tokens.varying, [0.25, 0.75]),
])
def test_widths_are_expanded_per_point(vixen_device: Any, pm: Any, tmp_path: Path, widths: list[float] | None,
                                       interpolation: str | None, expected: list[float]) -> None:
    path = tmp_path / "widths.usda"
    stage = Usd.Stage.CreateNew(str(path))
    prim = add_points(stage, "/P", [(1, 1, 1), (2, 2, 2)], widths, interpolation).GetPrim()
    stage.Save()
    with vixen_assets.load_stage(path, vixen_device, plugin_manager=pm) as scene:
        [inst] = points_instances(scene)
        rows = gpu_rows(vixen_device, inst.mesh)
        np.testing.assert_array_equal(rows[:, 3], np.array(expected, np.float32))
        np.testing.assert_array_equal(rows, expected_buffer(prim))


def test_identical_points_are_uploaded_once(vixen_device: Any, pm: Any, tmp_path: Path) -> None:
    path = tmp_path / "twins.usda"
    stage = Usd.Stage.CreateNew(str(path))
    for name in ("A", "B"):
        add_points(stage, f"/World/{name}", [(0, 1, 2), (3, 4, 5)], [0.5, 0.5])
    add_points(stage, "/World/Other", [(9, 9, 9)], [2.0])
    stage.Save()

    with vixen_assets.load_stage(path, vixen_device, plugin_manager=pm) as scene:
        insts = {i.prim_path: i for i in points_instances(scene)}
        assert set(insts) == {"/World/A", "/World/B", "/World/Other"}
        assert insts["/World/A"].mesh is insts["/World/B"].mesh  # one entry, one buffer
        assert insts["/World/Other"].mesh is not insts["/World/A"].mesh
        assert len(scene.entries) == 2
        cacher = vixen_device.cachers["points"]
        assert cacher.stats.misses == 2
        assert len(cacher) == 2
        assert cacher.refcount(insts["/World/A"].mesh.key) == 2
        assert scene.stats.cache_misses == 2
        assert scene.stats.bytes_uploaded == 2 * 16 + 1 * 16
        # the plugin's vixen_stage_loaded hook summarised the point sets
        assert scene.plugin_data["points"] == {"prims": 3, "unique": 2, "points": 5, "bytes": 3 * 16}
    # released: still cached (evictable), no longer referenced
    assert cacher.refcount(insts["/World/A"].mesh.key) == 0


@pytest.mark.parametrize("body, field", [
    # points authored with the wrong type
    ("double3[] points = [(0, 0, 0)]", "points"),
    # two widths for three points with vertex interpolation
    ("point3f[] points = [(0, 0, 0), (1, 1, 1), (2, 2, 2)]\n    float[] widths = [1, 2]", "widths"),
    # constant interpolation with more than one value
    ('point3f[] points = [(0, 0, 0)]\n    float[] widths = [1, 2] (interpolation = "constant")', "widths"),
])
def test_bad_prim_is_skipped_with_a_warning(vixen_device: Any, pm: Any, tmp_path: Path, body: str,
                                            field: str) -> None:
    path = tmp_path / "bad.usda"
    path.write_text(f'#usda 1.0\n\ndef Points "Bad"\n{{\n    {body}\n}}\n\n'
                    'def Points "Good"\n{\n    point3f[] points = [(1, 2, 3)]\n}\n')

    with vixen_assets.load_stage(path, vixen_device, plugin_manager=pm) as scene:
        assert [i.prim_path for i in points_instances(scene)] == ["/Good"]
        [warning] = scene.warnings
        assert "/Bad" in warning
        assert str(path) in warning
        assert repr(field) in warning

    # strict mode raises instead; nothing is leaked (the fixture checks at close)
    with pytest.raises(vixen_assets.errors.FormatError) as info:
        vixen_assets.load_stage(path, vixen_device, plugin_manager=pm, strict=True, warm=False)
    assert info.value.prim_path == "/Bad"
    assert info.value.field == field


def test_registered_for_points_prims(pm: Any) -> None:
    registry = vixen_assets.plugins.cacher_registry(pm)
    reg = registry.for_prim_type("Points")
    assert reg is not None
    assert reg.cacher is vixen_assets_points.PointsCacher
    assert reg.plugin == pm.get_name(vixen_assets_points)
    assert pm.vixen_failures == []


def test_in_memory_stage(vixen_device: Any, pm: Any) -> None:
    stage = Usd.Stage.CreateInMemory()
    add_points(stage, "/P", [(0, 0, 0), (1, 0, 0)], [3.0], UsdGeom.Tokens.constant)
    with vixen_assets.load_stage(stage, vixen_device, plugin_manager=pm) as scene:
        [inst] = points_instances(scene)
        np.testing.assert_array_equal(gpu_rows(vixen_device, inst.mesh)[:, 3], [3.0, 3.0])


def test_warm_reload_reuses_the_cached_entry(vixen_device: Any, pm: Any, tmp_path: Path) -> None:
    path = tmp_path / "warm.usda"
    stage = Usd.Stage.CreateNew(str(path))
    add_points(stage, "/P", [(0, 0, 0), (1, 1, 1)], [0.5, 0.5])
    stage.Save()
    with vixen_assets.load_stage(path, vixen_device, plugin_manager=pm) as cold:
        [first] = points_instances(cold)
    with vixen_assets.load_stage(path, vixen_device, plugin_manager=pm) as warm:
        assert warm.stats.warm
        [again] = points_instances(warm)
        assert again.mesh is first.mesh  # the same GPU entry, nothing uploaded again
        assert vixen_device.cachers["points"].stats.misses == 1


def test_widths_rule_through_validate(tmp_path: Path) -> None:
    """The plugin's ``points.widths`` rule runs in the validation workers (loaded through the entry point)."""
    good, bad = tmp_path / "good.usda", tmp_path / "bad.usda"
    for path, widths in ((good, [0.1, 0.2]), (bad, [0.1, -1.0])):
        stage = Usd.Stage.CreateNew(str(path))
        add_points(stage, "/pts", [(0, 0, 0), (1, 0, 0)], widths, "vertex")
        stage.Save()
    report = vixen_assets.validate([tmp_path], rules=["points.widths"], workers=1,
                                   plugins=("vixen_assets_points",))
    by = {Path(a.uri).name: a for a in report.assets}
    assert by["good.usda"].issues == []
    assert [(i.code, i.pointer) for i in by["bad.usda"].issues] == [("points.widths", "/pts.widths")]
