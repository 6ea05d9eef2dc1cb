"""Every loaded mesh stays byte-identical: vertex and index bytes (read back from the GPU), index type, layout,
submeshes and bounds of every placement of a set of generated scenes, against digests recorded with the loader
before the load-speed work (issue 16, commit 1810b16 of ``main``).

The scenes cover what the fast paths touch: mixed triangles/quads/concave polygons, all-triangle and all-quad
meshes, ``leftHanded`` winding, holes, ``st`` as vertex/faceVarying/uniform/constant/indexed primvars, authored and
computed normals, GeomSubsets, a mesh past 65,535 vertices (uint32 indices), native instancing, a point instancer
and the chess scene (payloads, references, instancing). Points of the hand-authored stage are multiples of 1/64 so
that its input is exact on every machine; the generated scenes also pin a digest of their *input* arrays, so a
generator that writes different data on another machine fails with that message instead of a loader diff.

``VIXEN_RECORD_MESH_DIGESTS=1`` rewrites ``tests/data/mesh_digests.json`` (only ever from the loader being pinned).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pxr import Sdf, Usd, UsdGeom, Vt

from test_load_stage import GEN
from test_production_scene import CHESS
from vixen_assets import load_stage

DIGESTS = Path(__file__).resolve().parent / "data" / "mesh_digests.json"
RECORD = os.environ.get("VIXEN_RECORD_MESH_DIGESTS") == "1"


def _grid(n: int, *, quads: bool = True, z_wave: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u, v = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="xy")
    z = ((u * 7 + v * 3) % 5) if z_wave else np.zeros_like(u)
    pts = np.stack([u, v, z], -1).reshape(-1, 3).astype(np.float32) / 64.0
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="xy")
    a = (j * (n + 1) + i).ravel()
    q = np.stack([a, a + 1, a + n + 2, a + n + 1], 1)
    if quads:
        return pts, np.full(len(q), 4, np.int32), q.ravel().astype(np.int32)
    t = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]], 1).reshape(-1, 3)
    return pts, np.full(len(t), 3, np.int32), t.ravel().astype(np.int32)


def _mesh(stage: Usd.Stage, path: str, pts, counts, idx, **kw: Any) -> UsdGeom.Mesh:
    mesh = UsdGeom.Mesh.Define(stage, path)
    mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(pts, np.float32)))
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.ascontiguousarray(counts, np.int32)))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(np.ascontiguousarray(idx, np.int32)))
    api = UsdGeom.PrimvarsAPI(mesh)
    interp = kw.get("st")
    if interp:
        n = {"vertex": len(pts), "faceVarying": len(idx), "uniform": len(counts), "constant": 1}[interp]
        st = (np.arange(2 * n, dtype=np.float32).reshape(n, 2) % 17) / 16.0
        pv = api.CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, interp)
        if kw.get("indexed"):
            pv.Set(Vt.Vec2fArray.FromNumpy(st[:3]))
            pv.SetIndices(Vt.IntArray.FromNumpy((np.arange(n) % 3).astype(np.int32)))
        else:
            pv.Set(Vt.Vec2fArray.FromNumpy(st))
    if kw.get("normals"):
        nrm = np.zeros((len(pts) if kw["normals"] == "vertex" else len(idx), 3), np.float32)
        nrm[:, 2] = 1.0
        nrm[::3, 0] = 0.5
        mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(nrm))
        mesh.SetNormalsInterpolation(kw["normals"])
    if kw.get("left"):
        mesh.CreateOrientationAttr(UsdGeom.Tokens.leftHanded)
    if kw.get("holes") is not None:
        mesh.CreateHoleIndicesAttr(Vt.IntArray.FromNumpy(np.asarray(kw["holes"], np.int32)))
    if kw.get("subset") is not None:
        UsdGeom.Subset.CreateGeomSubset(mesh, "part", UsdGeom.Tokens.face,
                                        Vt.IntArray.FromNumpy(np.asarray(kw["subset"], np.int32)), "materialBind")
    return mesh


def _edge_stage(path: Path) -> Path:
    stage = Usd.Stage.CreateNew(str(path))
    tri = _grid(12, quads=False)
    quad = _grid(12)
    _mesh(stage, "/W/tri_fv", *tri, st="faceVarying", normals="faceVarying")
    _mesh(stage, "/W/tri_plain", *tri)
    _mesh(stage, "/W/quad_vertex", *quad, st="vertex", normals="vertex")
    _mesh(stage, "/W/quad_uniform", *quad, st="uniform", subset=np.arange(0, 144, 3))
    _mesh(stage, "/W/quad_constant", *quad, st="constant", left=True)
    _mesh(stage, "/W/quad_indexed_left", *quad, st="faceVarying", indexed=True, left=True, holes=[0, 5, 77])
    _mesh(stage, "/W/tri_left_holes", *tri, st="faceVarying", left=True, holes=[1, 2, 200])
    _mesh(stage, "/W/flat_quads", *_grid(9, z_wave=False), st="faceVarying", subset=[8, 9, 10])
    big = _grid(270)  # 73,441 points: uint32 indices
    _mesh(stage, "/W/big", *big, st="faceVarying")
    # polygons: a convex pentagon, a dart quad (concave), an L hexagon, beside a triangle and a quad
    poly_pts = np.array([[0, 0, 0], [4, 0, 0], [5, 3, 0], [2, 5, 0], [-1, 3, 0],  # pentagon
                         [10, 0, 0], [14, 0, 0], [11, 1, 0], [10, 4, 0],  # dart
                         [20, 0, 0], [22, 0, 0], [22, 1, 0], [21, 1, 0], [21, 2, 0], [20, 2, 0],  # L
                         [30, 0, 0], [31, 0, 0], [30, 1, 0], [31, 1, 0]], np.float32) / 8.0
    counts = [5, 4, 6, 3, 4]
    idx = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 15, 16, 18, 17]
    _mesh(stage, "/W/polygons", poly_pts, counts, idx, st="faceVarying")
    _mesh(stage, "/W/polygons_left", poly_pts, counts, idx, st="uniform", left=True)
    stage.GetRootLayer().Save()
    return path


def _input_digest(path: Path) -> str:
    """Digest of every mesh's authored arrays (composed, with instance proxies), in path order."""
    stage = Usd.Stage.Open(str(path), Usd.Stage.LoadAll)
    h = hashlib.sha256()
    for prim in stage.Traverse(Usd.TraverseInstanceProxies()):
        if not prim.IsA(UsdGeom.Mesh):
            continue
        h.update(str(prim.GetPath()).encode())
        for attr in prim.GetAttributes():
            value = attr.Get()
            if attr.GetTypeName().isArray and value is not None:
                h.update(attr.GetName().encode())
                h.update(np.ascontiguousarray(np.asarray(value)).tobytes())
    return h.hexdigest()


def _stable(material: str | None) -> str | None:
    """Prototype paths (``/__Prototype_3``) are numbered in no fixed order between stage opens."""
    return None if material is None else re.sub(r"/__Prototype_\d+", "/__Prototype_", material)


def _mesh_digest(device: Any, mesh: Any) -> str:
    h = hashlib.sha256()
    itemsize = np.dtype(mesh.index_dtype).itemsize
    if mesh.vertex_count:
        h.update(device.read_buffer(mesh.vertex_buffer, mesh.vertex_count * mesh.stride).tobytes())
    h.update(b"|")
    if mesh.index_count:
        h.update(device.read_buffer(mesh.index_buffer, mesh.index_count * itemsize).tobytes())
    meta = [np.dtype(mesh.index_dtype).str, mesh.vertex_count, mesh.index_count, mesh.triangle_count, mesh.stride,
            sorted((k, list(v)) for k, v in mesh.layout.items()),
            [[s.name, s.first_index, s.index_count, _stable(s.material_path)] for s in mesh.submeshes],
            np.asarray(mesh.bounds[0], np.float32).tobytes().hex(),
            np.asarray(mesh.bounds[1], np.float32).tobytes().hex()]
    h.update(json.dumps(meta).encode())
    return h.hexdigest()[:32]


def _scene_digests(device: Any, path: Path) -> dict[str, str]:
    with load_stage(path, device) as scene:
        memo: dict[int, str] = {}
        out = {}
        for inst in scene.instances:
            if id(inst.mesh) not in memo:
                memo[id(inst.mesh)] = _mesh_digest(device, inst.mesh)
            out[inst.prim_path] = memo[id(inst.mesh)]
        return out


def _generated(folder: Path, name: str, **kwargs: Any) -> Path:
    GEN.generate_scene(folder / name, **kwargs)
    return folder / name


SCENES = {
    "generated_mixed": lambda d: _generated(d, "mixed.usdc", meshes=30, triangles=40_000, seed=3),
    "point_instancer": lambda d: _generated(d, "pi.usdc", meshes=6, triangles=6_000, instances=40,
                                            mode="pointinstancer", seed=4),
    "instanceable": lambda d: _generated(d, "inst.usda", meshes=6, triangles=3_000, instances=12,
                                         mode="instanceable", seed=5),
    "edge_cases": lambda d: _edge_stage(d / "edge.usda"),
    "chess": lambda d: CHESS.generate_chess(d / "chess", sets=2, detail=0.25, columns=2),
}


@pytest.mark.parametrize("name", sorted(SCENES))
def test_every_mesh_is_byte_identical_to_the_pinned_loader(device, tmp_path, name):
    path = Path(SCENES[name](tmp_path))
    got = {"input": _input_digest(path), "meshes": _scene_digests(device, path)}
    recorded = json.loads(DIGESTS.read_text()) if DIGESTS.exists() else {}
    if RECORD:
        recorded[name] = got
        DIGESTS.parent.mkdir(exist_ok=True)
        DIGESTS.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
        return
    want = recorded[name]
    assert got["input"] == want["input"], (f"the generator wrote different input for {name!r} on this machine "
                                           "(not a loader difference): re-record the digests with the pinned loader")
    assert sorted(got["meshes"]) == sorted(want["meshes"])
    diff = [label for label in want["meshes"] if got["meshes"][label] != want["meshes"][label]]
    assert not diff, f"{len(diff)} of {len(want['meshes'])} placed meshes changed bytes, e.g. {diff[:5]}"


@pytest.mark.parametrize("chunk", ["default", "small"])
@pytest.mark.parametrize("name", sorted(SCENES))
def test_pipelined_preparation_gives_the_same_bytes(device, tmp_path, monkeypatch, name, chunk):
    """With cores to spare, meshes are prepared on a worker while the next batch is read (``geometry/pipeline.py``)
    and chunks on several threads: default chunks give the pinned bytes; small chunks (so that reading and
    preparing overlap on these small scenes) the bytes of the same chunks on one thread. The pipeline's results
    are really used."""
    from vixen_assets.geometry import pipeline, prepare

    monkeypatch.setattr(prepare, "PREPARE_THREADS", 2)
    if chunk == "small":
        monkeypatch.setattr(prepare, "CHUNK_CORNERS", 1 << 14)
    used = []
    take = pipeline.PreparePipeline.take

    def spy(self, sources, attributes):
        got = take(self, sources, attributes)
        used.append(got is not None)
        return got

    monkeypatch.setattr(pipeline.PreparePipeline, "take", spy)
    path = Path(SCENES[name](tmp_path))
    got = _scene_digests(device, path)
    assert used == [True]
    if chunk == "default":
        want = json.loads(DIGESTS.read_text())[name]["meshes"]
    else:
        device.cachers["mesh"].evict()
        monkeypatch.setattr(prepare, "PREPARE_THREADS", 1)  # the same chunks on one thread, no pipeline
        want = _scene_digests(device, path)
        assert used == [True]
    assert got == want


@pytest.mark.parametrize("name", ["generated_mixed", "chess"])
def test_chunks_on_several_threads_give_the_bytes_of_one_thread(device, tmp_path, monkeypatch, name):
    """Many chunks prepared on three threads give the bytes the same chunks give on one thread.

    (A mesh's seam vertices are ordered by the split attributes of its whole chunk, so the bytes are compared for
    the same chunk boundaries; the default boundaries are pinned by the test above.)"""
    from vixen_assets.geometry import prepare

    monkeypatch.setattr(prepare, "CHUNK_CORNERS", 1 << 12)
    path = Path(SCENES[name](tmp_path))
    got = {}
    for threads in (1, 3):
        monkeypatch.setattr(prepare, "PREPARE_THREADS", threads)
        assert prepare.prepare_threads() == threads
        got[threads] = _scene_digests(device, path)
        device.cachers["mesh"].evict()  # the second load prepares again
    assert got[1] == got[3]


def test_prepare_threads_from_the_environment(monkeypatch):
    from vixen_assets.errors import ConfigError
    from vixen_assets.geometry import prepare

    monkeypatch.setattr(prepare, "PREPARE_THREADS", None)
    monkeypatch.setenv("VIXEN_PREPARE_THREADS", "5")
    assert prepare.prepare_threads() == 5
    monkeypatch.setenv("VIXEN_PREPARE_THREADS", "many")
    with pytest.raises(ConfigError, match="VIXEN_PREPARE_THREADS"):
        prepare.prepare_threads()
    monkeypatch.delenv("VIXEN_PREPARE_THREADS")
    assert prepare.prepare_threads() == (1 if (os.cpu_count() or 1) < 4 else min(8, os.cpu_count() - 2))


def test_a_pipeline_left_by_a_failed_load_is_replaced(device, tmp_path, monkeypatch):
    """A load that read (and fed the pipeline) but never built leaves a pipeline behind: the next load replaces it
    and still gets its own prepared meshes; device close stops it."""
    from vixen_assets.cachers import LoadContext
    from vixen_assets.geometry import pipeline, prepare
    from vixen_assets.geometry.usd_mesh import read_mesh_sources

    monkeypatch.setattr(prepare, "PREPARE_THREADS", 2)
    path = Path(SCENES["edge_cases"](tmp_path))
    _scene_digests(device, path)  # creates the mesh cacher
    cacher = device.cachers["mesh"]
    cacher.evict()
    stage = Usd.Stage.Open(str(path))
    stale = read_mesh_sources([p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)])
    cacher.prepare_ahead(stale, LoadContext())
    left = cacher._pipeline[1]
    used = []
    take = pipeline.PreparePipeline.take
    monkeypatch.setattr(pipeline.PreparePipeline, "take",
                        lambda self, s, a: used.append(self is not left) or take(self, s, a))
    got = _scene_digests(device, Path(SCENES["generated_mixed"](tmp_path)))
    assert used == [True] and left._closed
    assert got == json.loads(DIGESTS.read_text())["generated_mixed"]["meshes"]
    cacher.prepare_ahead(stale, LoadContext())
    cacher.clear()
    assert cacher._pipeline is None
