"""The production-shaped benchmark scene (``samples/generate_chess.py``: assets with geometry, look and payload
layers, referenced and payloaded into sets, native instancing, GeomSubsets, faceVarying UVs) against an
independent pxr traversal with instance proxies: counts, every instance transform, every mesh (read back and
compared with the independent triangulation of ``test_load_stage``) and the bounds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from pxr import Usd, UsdGeom

from test_load_stage import DEFAULT_PURPOSES, start_time, verify_scene
from vixen_assets import load_stage

REPO = Path(__file__).resolve().parent.parent


def _chess():
    spec = importlib.util.spec_from_file_location("generate_chess", REPO / "samples" / "generate_chess.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHESS = _chess()


@pytest.fixture(scope="module")
def chess_scene(tmp_path_factory) -> Path:
    return CHESS.generate_chess(tmp_path_factory.mktemp("chess"), sets=2, detail=0.25, columns=2)


def test_layers_are_production_shaped(chess_scene):
    stage = Usd.Stage.Open(str(chess_scene), Usd.Stage.LoadAll)
    used = {Path(layer.realPath).name for layer in stage.GetUsedLayers() if layer.realPath}
    for piece in (*CHESS.PROFILES, "board"):
        assert {f"{piece}.usda", f"{piece}_payload.usda", f"{piece}_geo.usdc", f"{piece}_look.usda"} <= used
    assert not stage.GetCompositionErrors()
    # pawns, rooks, knights and bishops share one prototype each
    assert len(stage.GetPrototypes()) == len(CHESS.INSTANCEABLE)
    # unloaded, the payloads hide every mesh
    bare = Usd.Stage.Open(str(chess_scene), Usd.Stage.LoadNone)
    assert not [p for p in bare.Traverse(Usd.TraverseInstanceProxies()) if p.IsA(UsdGeom.Mesh)]


def test_loads_with_counts_transforms_and_bounds_of_an_independent_traversal(device, chess_scene):
    stage = Usd.Stage.Open(str(chess_scene), Usd.Stage.LoadAll)
    time = start_time(stage)
    meshes = [p for p in stage.Traverse(Usd.TraverseInstanceProxies()) if p.IsA(UsdGeom.Mesh)]
    proxies = sum(1 for p in meshes if p.IsInstanceProxy())
    triangles = sum(int((np.asarray(UsdGeom.Mesh(p).GetFaceVertexCountsAttr().Get()) - 2).sum()) for p in meshes)
    assert len(meshes) == 2 * 33 and proxies == 2 * 28
    with load_stage(chess_scene, device) as scene:
        assert len(scene.instances) == len(meshes)
        assert scene.triangle_count == triangles
        # every instanceable piece kind has one prototype, so all its placements share one GPU mesh
        for piece in CHESS.INSTANCEABLE:
            shared = {id(i.mesh) for i in scene.instances if f"_{piece}_" in i.prim_path}
            assert len(shared) == 1, piece
        assert len(scene.meshes) < len(meshes)
        assert {s.name for m in scene.meshes for s in m.submeshes} >= {"base", "top", "white", "black"}
        verify_scene(device, scene, stage, time, DEFAULT_PURPOSES)
