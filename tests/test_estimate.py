"""``vixen_assets.estimate``: GPU bytes from headers and counts, never below what the loaders allocate."""

from __future__ import annotations

from pathlib import Path

from test_ktx2 import build_ktx2
from test_vox import _size, _vox, _xyzi
from vixen_assets import estimate, load_stage, load_texture, load_vox

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "scenes" / "small_scene.usda"


def test_stage_estimate_covers_the_loaded_meshes(vixen_device) -> None:
    est = estimate(SAMPLE)
    assert est.counts["meshes"] == 9 and est.counts["triangles"] > 0
    scene = load_stage(str(SAMPLE), vixen_device)
    with scene:
        measured = sum(m.nbytes for m in scene.meshes)
    assert 0 < measured <= est.meshes
    assert est.total == est.meshes + est.textures + est.voxels + est.accel


def test_ktx2_estimate_is_the_level_sizes(tmp_path: Path, vixen_device) -> None:
    path = tmp_path / "t.ktx2"
    path.write_bytes(build_ktx2([bytes(64), bytes(16), bytes(4)], width=4, height=4))
    est = estimate(path)
    assert est.textures == 64 + 16 + 4
    tex = load_texture(path, vixen_device)
    assert tex.levels == 3


def test_vox_estimate_from_chunk_headers(tmp_path: Path, vixen_device) -> None:
    path = tmp_path / "v.vox"
    voxels = [(x, y, 0, 1) for x in range(4) for y in range(4)]
    path.write_bytes(_vox(_size(16, 16, 16), _xyzi(voxels)))
    est = estimate(path)
    assert est.counts["voxels"] == 16
    scene = load_vox(path, vixen_device)
    with scene:
        used = sum(int(view.size) for view in scene.buffers.values())
    assert 0 < used <= est.voxels
