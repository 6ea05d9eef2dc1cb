"""``create_images``: several images checked, charged, created, suballocated and bound (one ``vkBindImageMemory2``)
in one pass, all or nothing; the texture cacher builds its batches through it, and ``load_textures`` prepares small
files on the calling thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from vixen_assets import BudgetOptions, load_texture, load_textures
from vixen_assets.cachers import texture_batch
from vixen_assets.errors import BudgetExceededError, ConfigError, FormatError, OutOfDeviceMemoryError
from vixen_assets.memory.images import Image, ImageSpec, create_images, image_bytes
from vixen_assets.testing import finish_test_device, open_test_device
from vixen_assets.vk import FaultInjector

R8G8B8A8_UNORM, BC7_SRGB = 37, 146


def state(dev: Any) -> tuple[Any, ...]:
    """Live suballocations, budget and live objects (an emptied block may stay for reuse: not counted)."""
    c = dev.context.tracker.counts()
    pool = dev.uploader.pool.stats_dict()
    counts = {k: v["count"] for k, v in dev.context.registry.counts().items()}
    counts["Buffer"] = counts.get("Buffer", 0) - pool["buffers"]
    return (c.suballocations - c.subfrees - pool["buffers"], dev.budget.used - pool["pooled_bytes"],
            sorted(counts.items()))


def test_create_images_makes_what_image_makes(device: Any) -> None:
    specs = [ImageSpec("a", R8G8B8A8_UNORM, 64, 32, levels=3), ImageSpec("b", BC7_SRGB, 256, 256, levels=9),
             ImageSpec("c", R8G8B8A8_UNORM, 16, 16, layers=2), ImageSpec("d", R8G8B8A8_UNORM, 8, 8, faces=6)]
    faults = FaultInjector()
    device.context.logical.faults = faults
    try:
        images = create_images(device.context, specs)
        assert faults.images == len(specs)
    finally:
        device.context.logical.faults = None
    try:
        for spec, img in zip(specs, images):
            one = Image(device.context, name="one", vk_format=spec.vk_format, width=spec.width, height=spec.height,
                        levels=spec.levels, layers=spec.layers, faces=spec.faces)
            assert (img.name, img.layers, img.levels, img.nbytes) == (spec.name, one.layers, one.levels, one.nbytes)
            assert img.alive and img.nbytes >= image_bytes(spec.vk_format, spec.width, spec.height,
                                                           levels=spec.levels, layers=spec.layers * spec.faces)
            one.destroy()
        # the batch's images hold distinct, non-overlapping ranges
        ranges = sorted((id(i.allocation.block), i.allocation.offset, i.allocation.offset + i.nbytes) for i in images)
        for (b1, _s1, e1), (b2, s2, _e2) in zip(ranges, ranges[1:]):
            assert b1 != b2 or e1 <= s2
    finally:
        for img in images:
            img.destroy()


def test_a_bad_image_in_a_batch_is_refused_before_any_vulkan_call(device: Any) -> None:
    before = state(device)
    faults = FaultInjector()
    device.context.logical.faults = faults
    try:
        with pytest.raises(ConfigError) as err:
            create_images(device.context, [ImageSpec("ok", R8G8B8A8_UNORM, 64, 64),
                                           ImageSpec("cube?", R8G8B8A8_UNORM, 64, 32, faces=6),
                                           ImageSpec("ok2", R8G8B8A8_UNORM, 64, 64)])
        assert "'cube?'" in str(err.value) and faults.images == 0
    finally:
        device.context.logical.faults = None
    assert state(device) == before


def test_a_batch_over_the_budget_is_refused_before_vkCreateImage() -> None:
    dev = open_test_device(budget=BudgetOptions(limit_bytes=8 << 20, staging_quota=0))
    try:
        faults = FaultInjector()
        dev.context.logical.faults = faults
        with pytest.raises(BudgetExceededError):  # three 4 MiB images: each fits, the batch does not
            create_images(dev.context, [ImageSpec(f"i{k}", R8G8B8A8_UNORM, 1024, 1024) for k in range(3)])
        assert faults.images == 0 and dev.budget.used == 0
        dev.context.logical.faults = None
    finally:
        finish_test_device(dev)


def test_a_batch_failing_midway_leaves_nothing() -> None:
    """vkAllocateMemory fails for a later image of the batch (after every vkCreateImage): the images created are
    destroyed and the ranges already suballocated freed."""
    dev = open_test_device()
    try:
        before = state(dev)
        faults = FaultInjector(fail_allocation_at=2)
        dev.context.logical.faults = faults
        specs = [ImageSpec("small", R8G8B8A8_UNORM, 64, 64)] + [
            ImageSpec(f"big{k}", R8G8B8A8_UNORM, 2048, 2048) for k in range(3)]  # 16 MiB: a block each
        with pytest.raises(OutOfDeviceMemoryError):
            create_images(dev.context, specs)
        assert faults.images == len(specs) and faults.injected == 1
        dev.context.logical.faults = None
        assert state(dev) == before
        images = create_images(dev.context, specs)  # the device is fine: the same batch goes through now
        assert [i.name for i in images] == [s.name for s in specs]
        for img in images:
            img.destroy()
    finally:
        finish_test_device(dev)


def test_small_files_prepared_inline_and_large_on_workers_give_load_texture_results(
        device: Any, vixen_assets_dir: Path, tmp_path: Path) -> None:
    """A batch mixing KTX2 files under and over ``INLINE_BYTES`` (the calling thread and the workers) and a PNG (a
    worker) returns, in order, what ``load_texture`` returns; a failing small file still names itself and leaves
    nothing of the batch."""
    root = vixen_assets_dir / "ktx2"
    files = [root / n for n in ("texturearray_bc3_unorm.ktx2", "output_3D_zstd.ktx2", "bevy_tony_mc_mapface.ktx2",
                                "color_grid_ZLIB_9.ktx2", "magnum_rgba-cubemap.ktx2")]
    png = tmp_path / "p.png"
    PILImage.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 4), dtype=np.uint8), "RGBA").save(png)
    files.insert(2, png)
    assert [texture_batch._small_file(str(p)) for p in files] == [False, True, False, False, True, True]
    texs = load_textures(files, device, workers=2)
    try:
        for p, t in zip(files, texs):
            with load_texture(p, device) as one:
                assert one is t  # the same cached entry: same content key, same image
    finally:
        for t in texs:
            t.release()
    data = (root / "output_3D_zstd.ktx2").read_bytes()
    bad = tmp_path / "cut.ktx2"
    bad.write_bytes(data[:-100])
    assert texture_batch._small_file(str(bad))
    before = state(device)
    with pytest.raises(FormatError) as err:
        load_textures([files[1], files[0], bad, files[4]], device, workers=2)
    assert "cut.ktx2" in str(err.value)
    device.wait_idle()
    device.context.lifetime.collect()
    assert state(device) == before
