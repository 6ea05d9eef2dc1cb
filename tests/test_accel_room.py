"""The acceleration-structure room (``vixen_assets.accel``) and the neutral ``Scene``: old import paths still work,
a TLAS build or refit is ONE queue submission on both instance paths (mapped and staged) and traces right, voxel
scenes are neutral scenes, ``scene.extra`` is a deprecated view of the typed fields."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vixen_assets
from vixen_assets import accel
from vixen_assets.accel.scene_tlas import TlasMap
from vixen_assets.cachers.voxel import VoxelSceneCacher, VoxelSource
from vixen_assets.errors import VixenDeprecationWarning
from vixen_assets.scene import Instance, Scene
from vixen_assets.trace import trace_backends, trace_rays
from vixen_assets.vk.faults import FaultInjector


def test_old_import_paths_name_the_moved_objects() -> None:
    from vixen_assets.cachers import accel as old
    from vixen_assets.usd import scene as old_scene

    assert old.Tlas is accel.Tlas and old.build_blases is accel.build_blases
    assert old.accel_cacher is accel.accel_cacher and old.AccelStats is accel.AccelStats
    assert old._geometries_for_mesh is accel.geometries_for_mesh
    assert old_scene.Scene is Scene is vixen_assets.Scene and old_scene.Instance is Instance
    assert old_scene.TlasMap is TlasMap and vixen_assets.usd.Scene is Scene
    import vixen_assets.cachers.voxel as voxel

    with pytest.warns(VixenDeprecationWarning, match="accel.voxel_blas"):
        assert voxel.VoxelAABBCacher is accel.VoxelAABBCacher


def test_voxel_scene_is_a_neutral_scene() -> None:
    assert issubclass(vixen_assets.VoxelScene, Scene)
    assert Scene.__module__ == "vixen_assets.scene"
    assert vixen_assets.VoxelScene.__mro__[1] is Scene


class _Boxes:
    """A procedural entry: one AABB BLAS placed once (the ``tlas_items`` protocol)."""

    triangle_count = 0

    def __init__(self, blas: Any, address: int) -> None:
        self.blas, self.address = blas, address
        self.bounds = (np.zeros(3, np.float32), np.ones(3, np.float32))

    def tlas_items(self, scene: Any) -> list[tuple[Any, int, np.ndarray]]:
        return [(self.blas, self.address, np.eye(4, dtype=np.float32))]


def _translate(x: float, y: float, z: float) -> np.ndarray:
    m = np.eye(4, dtype=np.float32)
    m[:3, 3] = (x, y, z)
    return m


def _hits_of(scene: Scene, centres: list[tuple[float, float, float]]) -> np.ndarray:
    """Shoot one ray down -z onto the middle of each unit box at ``centres`` with every trace backend the device has
    (they must agree); True where it hits at t == 4."""
    o = np.array([(x + 0.5, y + 0.5, 5.0) for x, y, _z in centres], np.float32)
    d = np.tile(np.array([0, 0, -1], np.float32), (len(o), 1))
    hits = []
    for backend in trace_backends(scene.device):
        res = trace_rays(scene, o, d, backend=backend)
        assert np.allclose(res["t"][res["hit"]], 4.0, atol=1e-4), backend
        hits.append(res["hit"])
    assert hits and all(np.array_equal(h, hits[0]) for h in hits)
    return hits[0]


@pytest.mark.parametrize("staged", [False, True], ids=["mapped", "staged"])
def test_tlas_build_and_refit_are_one_submission_each(device: Any, staged: bool) -> None:
    have = trace_backends(device)  # NVIDIA's driver traces through the ray-tracing pipeline (no ray queries)
    if not have:
        if os.environ.get("CI"):
            pytest.fail(f"{device.name} cannot run trace_rays under CI")
        pytest.skip(f"{device.name} cannot run trace_rays (neither ray queries nor ray-tracing pipelines)")
    box = np.array([[0, 0, 0, 1, 1, 1]], np.float32)
    buf = device.create_and_upload("box", box, "accel_input|device_address|storage")
    blas = accel.build_aabb_blas(device, buf, 1)
    scene = Scene(device, "boxes")
    try:
        scene.instances.append(Instance(_Boxes(blas, buf.device_address), _translate(5, 0, 0), "/box", kind="aabbs"))
        counter = FaultInjector()
        device.context.logical.faults = counter
        try:
            scene.build_acceleration_structures(stage_instances=staged)
            assert scene.tlas is not None and (scene.tlas.staging_buffer is not None) == staged
            assert staged or scene.tlas.instance_buffer.mapped is not None
            assert counter.submits == 1, "TLAS build: instance records and build in one submission"
            counter.submits = 0
            scene.update_transforms(_translate(0, 5, 0)[None])
            assert counter.submits == 1, "TLAS refit: one submission"
        finally:
            device.context.logical.faults = None
        hits = _hits_of(scene, [(0, 5, 0), (5, 0, 0)])
        assert hits.tolist() == [True, False]  # the box moved with the refit
        scene.tlas.rebuild(_translate(5, 0, 0)[None])
        assert _hits_of(scene, [(0, 5, 0), (5, 0, 0)]).tolist() == [False, True]
    finally:
        scene.release()
        blas.destroy()
        buf.destroy()


def test_scene_extra_is_a_deprecated_view_of_typed_fields(device: Any) -> None:
    scene = Scene(device, "x")
    with scene:
        scene.entries.append("entry")
        with pytest.warns(VixenDeprecationWarning, match="plugin_data"):
            extra = scene.extra
        assert extra["entries"] == ["entry"]
        extra["mine"] = 3
        assert scene.plugin_data == {"mine": 3} and set(extra) == {"entries", "mine"}
    assert scene.released


def test_voxel_scene_lists_its_entry(device: Any) -> None:
    """A ``VoxelScene`` keeps its cached entry in the typed ``entries`` field (not ``extra["entries"]``)."""
    grid = np.zeros((2, 2, 2), np.int64)
    grid[0, 0, 0] = 1
    cacher = VoxelSceneCacher.for_device(device)
    src = VoxelSource.from_dense(grid, path="dense")
    entry = cacher.get(src)
    scene = vixen_assets.VoxelScene(device, "dense", entry)
    scene.hold(cacher, cacher.key_for(src))
    with scene:
        assert scene.entries == [entry] and isinstance(scene, Scene)
        assert scene.instances[0].kind == "voxel" and scene.voxel_count == 1
    assert cacher.refcount(cacher.key_for(src)) == 0


def test_no_vulkan_hex_above_the_transfer_layer() -> None:
    """cachers/, accel/, usd/, cli/, vt/ and the loaders name their Vulkan values (``vk/enums.py``); the only hex left is
    data (hash constants, palettes), none of it near a stage, access, layout or usage."""
    pkg = Path(vixen_assets.__file__).parent
    hexnum = re.compile(r"\b0x[0-9A-Fa-f]+\b")
    vulkan_word = re.compile(r"stage|access|layout|usage|barrier|VK_", re.I)
    files = [p for d in ("cachers", "accel", "usd", "cli", "vt") for p in (pkg / d).glob("*.py")]
    files += [pkg / f for f in ("scene.py", "trace.py", "voxels.py", "textures.py")]
    offenders = [f"{p.name}:{i}: {line.strip()}" for p in files
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if hexnum.search(line.split("#", 1)[0]) and vulkan_word.search(line)]
    assert not offenders, "\n".join(offenders)
