"""Tests of :mod:`vixen_assets.estimate`: the GPU bytes from headers and counts, checked against real loads (never
above what the load takes; equal where nothing splits), and fast on files that inflate to GiBs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from vixen_assets import load_stage, load_texture, load_vox
from vixen_assets.errors import FormatError, UnsupportedFormatError
from vixen_assets.estimate import estimate
from vixen_assets.testing import missing_asset

from test_bombs import GiB, R8G8B8A8_UNORM, RGBA8_DFD, _ktx2, _zstd_zeros  # noqa: I001 - a sibling test module
from test_load_stage import GEN


def test_stage_estimate_matches_the_loaded_meshes(device: Any, tmp_path: Path) -> None:
    path = tmp_path / "est.usdc"
    GEN.generate_scene(path, meshes=8, triangles=20_000, seed=3)
    est = estimate(path, device)
    with load_stage(path, device) as scene:
        real = sum(m.nbytes for m in scene.meshes)
        assert est.kind == "stage" and len(est.items) == len(scene.meshes)
        assert 0 < est.gpu_bytes <= real <= 1.5 * est.gpu_bytes, (est.gpu_bytes, real)
    assert estimate(Path(path)).gpu_bytes == est.gpu_bytes


def test_texture_estimates(device: Any, tmp_path: Path) -> None:
    px = np.random.default_rng(0).integers(0, 256, (64, 32, 4), np.uint8)
    png = tmp_path / "t.png"
    PILImage.fromarray(px, "RGBA").save(png)
    est = estimate(png, device)
    with load_texture(png, device) as tex:
        assert est.gpu_bytes == 64 * 32 * 4 <= tex.nbytes
    ktx = tmp_path / "big.ktx2"
    ktx.write_bytes(_ktx2(_zstd_zeros(GiB), vk_format=R8G8B8A8_UNORM, width=16384, height=16384, scheme=2,
                          uncompressed=GiB, dfd=RGBA8_DFD))
    t0 = time.perf_counter()
    est = estimate(ktx, device)
    assert est.gpu_bytes == GiB and time.perf_counter() - t0 < 0.5  # from the header, nothing inflated


def test_vox_estimate_is_a_lower_bound(device: Any, vixen_assets_dir: Path) -> None:
    files = sorted((vixen_assets_dir / "vox").rglob("*.vox"))[:4]
    if not files:
        missing_asset(f"no .vox files under {vixen_assets_dir / 'vox'}")
    for f in files:
        est = estimate(f, device)
        with load_vox(f, device) as scene:
            assert 0 < est.gpu_bytes <= scene.entry.nbytes, (f.name, est.gpu_bytes, scene.entry.nbytes)


def test_estimate_errors(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="not found"):
        estimate(tmp_path / "missing.ktx2")
    (tmp_path / "x.bin").write_bytes(b"1234")
    with pytest.raises(UnsupportedFormatError):
        estimate(tmp_path / "x.bin")
    (tmp_path / "bad.ktx2").write_bytes(b"not a ktx2 file at all" * 4)
    with pytest.raises(FormatError):
        estimate(tmp_path / "bad.ktx2")
