"""Up axis and units: ``Scene.up_axis``/``Scene.meters_per_unit`` from the stage, ``load_stage(up_axis=,
meters_per_unit=)`` converting the whole scene, and references that author another ``metersPerUnit``.

World positions are checked by reading the vertices back from the GPU and applying each instance's transform,
against positions computed here by hand from the authored numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pxr import Gf, Sdf, Usd, UsdGeom

from vixen_assets import load_stage
from vixen_assets.errors import ConfigError
from vixen_assets.usd.frame import frame_matrix

# a tetrahedron whose points are not symmetric under any axis swap
POINTS = np.array([[0, 0, 0], [2, 0, 0], [0, 3, 0], [0, 0, 5]], np.float32)
FACES = [3, 3, 3, 3]
INDICES = [0, 2, 1, 0, 1, 3, 0, 3, 2, 1, 2, 3]


def _mesh(stage: Any, path: str, translate: tuple[float, float, float]) -> None:
    xf = UsdGeom.Xform.Define(stage, path)
    xf.AddTranslateOp().Set(Gf.Vec3d(*translate))
    mesh = UsdGeom.Mesh.Define(stage, path + "/geo")
    mesh.CreatePointsAttr(POINTS.tolist())
    mesh.CreateFaceVertexCountsAttr(FACES)
    mesh.CreateFaceVertexIndicesAttr(INDICES)


def _stage(path: Path, up: str, mpu: float) -> Path:
    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, up)
    UsdGeom.SetStageMetersPerUnit(stage, mpu)
    _mesh(stage, "/World/a", (1.0, 2.0, 3.0))
    stage.GetRootLayer().Save()
    return path


def _world_points(device: Any, scene: Any) -> np.ndarray:
    """Every instance's vertices read back from the GPU, in world space, concatenated in instance order."""
    out = []
    for inst in scene.instances:
        m = inst.mesh
        raw = device.read_buffer(m.vertex_buffer, m.vertex_count * m.stride).view(np.float32)
        pos = raw.reshape(m.vertex_count, m.stride // 4)[:, :3].astype(np.float64)
        out.append(pos @ inst.transform[:3, :3].T.astype(np.float64) + inst.transform[:3, 3])
    return np.concatenate(out)


def _unique_rows(a: np.ndarray) -> np.ndarray:
    return np.unique(np.round(a, 4), axis=0)


@pytest.mark.parametrize("up", ["Y", "Z"])
def test_scene_reports_the_stage_frame(device: Any, tmp_path: Path, up: str) -> None:
    path = _stage(tmp_path / f"{up}.usda", up, 0.5)
    with load_stage(path, device) as scene:
        assert scene.up_axis == up
        assert scene.meters_per_unit == 0.5
        got = _unique_rows(_world_points(device, scene))
        assert np.allclose(got, _unique_rows(POINTS + [1.0, 2.0, 3.0]), atol=1e-4)
        assert scene.summary()["up_axis"] == up


def test_y_up_to_z_up_rotates_points_bounds_and_tlas(device: Any, tmp_path: Path) -> None:
    path = _stage(tmp_path / "y.usda", "Y", 0.01)
    want = POINTS.astype(np.float64) + [1.0, 2.0, 3.0]
    want = np.stack([want[:, 0], -want[:, 2], want[:, 1]], axis=1)  # (x, y, z) -> (x, -z, y)
    with load_stage(path, device, up_axis="Z", acceleration_structures=True) as scene:
        assert scene.up_axis == "Z" and scene.meters_per_unit == 0.01
        assert np.allclose(_unique_rows(_world_points(device, scene)), _unique_rows(want), atol=1e-4)
        lo, hi = scene.bounds
        assert np.allclose(lo, want.min(axis=0), atol=1e-5) and np.allclose(hi, want.max(axis=0), atol=1e-5)
        # the TLAS places the instance where the converted transform says: the converted tetrahedron is
        # (1,-3,2) (3,-3,2) (1,-3,5) (1,-8,2); a ray straight down -Z (the new down) hits its top face
        from vixen_assets.trace import trace_rays

        hits = trace_rays(scene, np.array([[1.2, -3.5, 20.0]], np.float32), np.array([[0.0, 0.0, -1.0]], np.float32))
        assert bool(hits["hit"][0])
        t = float(hits["t"][0])
        a, b, c = np.array([1, -3, 5.0]), np.array([3, -3, 2.0]), np.array([1, -8, 2.0])
        n = np.cross(b - a, c - a)
        z = a[2] - (n[0] * (1.2 - a[0]) + n[1] * (-3.5 - a[1])) / n[2]
        assert abs(t - (20.0 - z)) < 1e-3


def test_z_up_to_y_up_and_units(device: Any, tmp_path: Path) -> None:
    path = _stage(tmp_path / "z.usda", "Z", 1.0)
    want = (POINTS.astype(np.float64) + [1.0, 2.0, 3.0]) * 100.0  # meters -> centimeters
    want = np.stack([want[:, 0], want[:, 2], -want[:, 1]], axis=1)  # (x, y, z) -> (x, z, -y)
    with load_stage(path, device, up_axis="y", meters_per_unit=0.01) as scene:
        assert scene.up_axis == "Y" and scene.meters_per_unit == 0.01
        assert np.allclose(_unique_rows(_world_points(device, scene)), _unique_rows(want), atol=1e-3)
    # the same file again, warm, in its own frame: the remembered walk must not carry the other conversion
    with load_stage(path, device) as scene:
        assert scene.up_axis == "Z" and scene.meters_per_unit == 1.0
        assert np.allclose(_unique_rows(_world_points(device, scene)), _unique_rows(POINTS + [1.0, 2.0, 3.0]),
                           atol=1e-4)
    with load_stage(path, device, up_axis="Y", meters_per_unit=0.01) as scene:
        assert scene.stats.warm
        assert np.allclose(_unique_rows(_world_points(device, scene)), _unique_rows(want), atol=1e-3)


def test_reference_with_other_units_is_scaled_into_the_stage_unit(device: Any, tmp_path: Path) -> None:
    # the referenced asset is authored in meters; the shot in centimeters places it at x=50 cm
    asset = Usd.Stage.CreateNew(str(tmp_path / "asset_m.usda"))
    UsdGeom.SetStageMetersPerUnit(asset, 1.0)
    UsdGeom.SetStageUpAxis(asset, "Y")
    _mesh(asset, "/Asset", (0.0, 1.0, 0.0))  # the asset's own root moves it up 1 m... (as the asset authors it)
    asset.SetDefaultPrim(asset.GetPrimAtPath("/Asset"))
    asset.GetRootLayer().Save()
    shot = Usd.Stage.CreateNew(str(tmp_path / "shot_cm.usda"))
    UsdGeom.SetStageMetersPerUnit(shot, 0.01)
    UsdGeom.SetStageUpAxis(shot, "Y")
    prop = UsdGeom.Xform.Define(shot, "/World/prop")
    prop.GetPrim().GetReferences().AddReference("./asset_m.usda")
    # the shot overrides the placement in its own unit (centimeters)
    prop.GetPrim().GetAttribute("xformOp:translate").Set(Gf.Vec3d(50.0, 0.0, 0.0))
    _mesh(shot, "/World/local", (0.0, 0.0, 0.0))  # a mesh of the shot itself stays as authored
    shot.GetRootLayer().Save()
    with load_stage(tmp_path / "shot_cm.usda", device) as scene:
        assert scene.meters_per_unit == 0.01
        by_path = {i.prim_path: i for i in scene.instances}
        prop_world = _world_points(device, _only(scene, by_path["/World/prop/geo"]))
        assert np.allclose(_unique_rows(prop_world), _unique_rows(POINTS * 100.0 + [50.0, 0.0, 0.0]), atol=1e-3)
        local_world = _world_points(device, _only(scene, by_path["/World/local/geo"]))
        assert np.allclose(_unique_rows(local_world), _unique_rows(POINTS), atol=1e-4)
    # the same shot converted to meters: the prop comes out in meters as the asset authored it, moved 0.5 m
    with load_stage(tmp_path / "shot_cm.usda", device, meters_per_unit=1.0) as scene:
        by_path = {i.prim_path: i for i in scene.instances}
        prop_world = _world_points(device, _only(scene, by_path["/World/prop/geo"]))
        assert np.allclose(_unique_rows(prop_world), _unique_rows(POINTS + [0.5, 0.0, 0.0]), atol=1e-5)


class _Only:
    def __init__(self, inst: Any) -> None:
        self.instances = [inst]


def _only(scene: Any, inst: Any) -> Any:
    return _Only(inst)


def test_bad_frame_arguments_are_config_errors(device: Any, tmp_path: Path) -> None:
    path = _stage(tmp_path / "y.usda", "Y", 0.01)
    with pytest.raises(ConfigError, match="up_axis"):
        load_stage(path, device, up_axis="X")
    with pytest.raises(ConfigError, match="meters_per_unit"):
        load_stage(path, device, meters_per_unit=0.0)


def test_frame_matrix_round_trip() -> None:
    m = frame_matrix("Y", 0.01, "Z", 1.0) @ frame_matrix("Z", 1.0, "Y", 0.01)
    assert np.allclose(m, np.eye(4))
    assert np.allclose(frame_matrix("Y", 1, "Z", 1)[:3, :3] @ [0, 1, 0], [0, 0, 1])
    assert np.allclose(frame_matrix("Z", 1, "Y", 1)[:3, :3] @ [0, 0, 1], [0, 1, 0])
