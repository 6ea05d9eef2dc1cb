"""One geometry placed many times with its own copy of its materials (the chess scene's queens and kings, an asset
referenced per set): prepared once across the chunks of a batch, validated once, and its entries share one pair of
GPU buffers, with the bytes of preparing and uploading every copy on its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pxr import Usd, UsdGeom, Vt

from test_mesh_bytes import SCENES, _scene_digests
from vixen_assets import load_stage


def test_chunks_reuse_geometries_of_earlier_chunks_with_the_same_bytes(device, tmp_path, monkeypatch):
    from vixen_assets.geometry import prepare

    monkeypatch.setattr(prepare, "CHUNK_CORNERS", 1 << 12)  # many chunks, each holding copies of earlier ones
    path = Path(SCENES["chess"](tmp_path))
    prepared: list[int] = []
    chunk = prepare._prepare_chunk

    def counting(sources, *args):
        prepared.append(len(sources))
        return chunk(sources, *args)

    monkeypatch.setattr(prepare, "_prepare_chunk", counting)
    got = _scene_digests(device, path)
    reused = sum(prepared)
    device.cachers["mesh"].evict()
    deduplicated = prepare._prepare_deduplicated
    monkeypatch.setattr(prepare, "_prepare_deduplicated",
                        lambda sources, attrs, layout, validate, shared=None: deduplicated(sources, attrs, layout,
                                                                                         validate))
    prepared.clear()
    want = _scene_digests(device, path)
    assert got == want
    assert reused < sum(prepared)  # fewer meshes prepared, same bytes


def test_entries_of_one_geometry_share_buffers_until_the_last_goes(device, tmp_path):
    path = Path(SCENES["chess"](tmp_path))
    with load_stage(path, device) as scene:
        by_buffer: dict[int, list] = {}
        for mesh in scene.meshes:
            by_buffer.setdefault(id(mesh.vertex_buffer), []).append(mesh)
        shared = [ms for ms in by_buffer.values() if len(ms) > 1]
        assert shared, "the sets' queens and kings share their buffers"
        first, second = shared[0][:2]
        assert first.key != second.key and first.index_buffer is second.index_buffer
        want = device.read_buffer(second.vertex_buffer, second.vertex_count * second.stride).tobytes()
    cacher = device.cachers["mesh"]
    assert cacher.discard([first.key]) == 1  # the other entry keeps the buffers alive
    got = device.read_buffer(second.vertex_buffer, second.vertex_count * second.stride).tobytes()
    assert got == want
    cacher.evict()  # the last one destroys them (the device fixture fails on any leak)


def test_a_bad_geometry_placed_twice_is_reported_for_each_prim(device, tmp_path):
    path = tmp_path / "bad.usda"
    stage = Usd.Stage.CreateNew(str(path))
    for name in ("twinA", "twinB", "good"):
        mesh = UsdGeom.Mesh.Define(stage, f"/{name}")
        mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(np.eye(3, dtype=np.float32)))
        mesh.CreateFaceVertexCountsAttr([3])
        mesh.CreateFaceVertexIndicesAttr([0, 1, 2] if name == "good" else [0, 1, 7])
    stage.Save()
    with load_stage(path, device) as scene:
        assert [i.prim_path for i in scene.instances] == ["/good"]
        assert [sum(f"/{n}" in w for w in scene.warnings) for n in ("twinA", "twinB")] == [1, 1]


def test_shared_buffers_are_counted_once(device, tmp_path):
    """Entries that share one geometry's buffers: the load reports the bytes uploaded once, not per entry."""
    from vixen_assets import load_stage
    from pxr import Usd, UsdGeom, UsdShade

    path = str(tmp_path / "twins.usda")
    stage = Usd.Stage.CreateNew(path)
    pts = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]
    for i in range(2):
        mesh = UsdGeom.Mesh.Define(stage, f"/M{i}")
        mesh.CreatePointsAttr(pts)
        mesh.CreateFaceVertexCountsAttr([4])
        mesh.CreateFaceVertexIndicesAttr([0, 1, 2, 3])
        mat = UsdShade.Material.Define(stage, f"/Mat{i}")
        UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(mat)
    stage.GetRootLayer().Save()
    scene = load_stage(path, device)
    try:
        buffers = {id(m.vertex_buffer) for m in scene.meshes} | {id(m.index_buffer) for m in scene.meshes}
        assert len(scene.meshes) == 2 and len(buffers) == 2  # two entries (two materials), one pair of buffers
        assert scene.stats.bytes_uploaded == scene.meshes[0].nbytes == scene.meshes[1].nbytes > 0
    finally:
        scene.release()
