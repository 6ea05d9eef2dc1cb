"""Compaction, images, slabs and incremental passes of ``Device.defragment()`` (issue 17).

Every test fragments small (1 MiB) blocks, defragments, and reads every survivor back byte for byte; moved objects'
``generation`` goes up, their handles and device addresses are the ones Vulkan reports for the new placement.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from vixen_assets.errors import DeviceLostError
from vixen_assets.formats.vkformat import format_info
from vixen_assets.memory.binding_table import BindingTable
from vixen_assets.memory.images import LAYOUT_SHADER_READ
from vixen_assets.testing import finish_test_device, open_test_device
from vixen_assets.transfer.image_regions import level_copies
from vixen_assets.vk import resources as vkr
from vixen_assets.vk.faults import FaultInjector

KiB = 1 << 10
MiB = 1 << 20
RGBA8 = 37  # VK_FORMAT_R8G8B8A8_UNORM


@pytest.fixture
def dev() -> Iterator[Any]:
    """A validated device with 1 MiB blocks."""
    d = open_test_device(block_size=1 * MiB)
    try:
        yield d
    finally:
        finish_test_device(d)


def upload_image(dev: Any, img: Any, rng: np.random.Generator) -> list[np.ndarray]:
    """Fill every level of ``img`` with random texels; return them per level."""
    info = format_info(RGBA8)
    levels, parts, copies, off = [], [], [], 0
    for lv in range(img.levels):
        w, h = max(1, img.width >> lv), max(1, img.height >> lv)
        px = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        levels.append(px)
        parts.append(px.reshape(-1))
        copies += level_copies(info, w, h, 1, level=lv, base_layer=0, layer_count=1, buffer_offset=off,
                               max_bytes=1 << 30)
        off += px.nbytes
    dev.uploader.enqueue_image(img, np.concatenate(parts), copies)
    dev.flush().wait()
    return levels


def fragmented_world(dev: Any, seed: int = 3) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """Buffers (arena ranges, own handles, 1-4 KiB slab buffers, device-address ones) and images interleaved in
    1 MiB blocks, half destroyed; return (buffers, images, expected contents by name)."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    bufs, imgs = [], []
    for i in range(48):
        if i % 6 == 5:
            img = dev.create_image(64, 64, vk_format=RGBA8, levels=2, name=f"img{i}", category="textures")
            imgs.append(img)
            continue
        size = rng.choice([1 * KiB, 3 * KiB, rng.randint(16 * KiB, 150 * KiB)])
        usage = ("uniform_texel|storage" if i % 4 == 0 else "storage|device_address")
        bufs.append(dev.create_buffer(size, usage, strategy="host_visible", name=f"buf{i}", category="meshes"))
    data: dict[str, Any] = {}
    for b in bufs:
        data[b.name] = nrng.integers(0, 256, b.size, dtype=np.uint8)
        b.mapped[:] = data[b.name]
    for img in imgs:
        data[img.name] = upload_image(dev, img, nrng)
    doomed_b = set(rng.sample(range(len(bufs)), k=len(bufs) // 2))
    doomed_i = set(rng.sample(range(len(imgs)), k=len(imgs) // 2))
    for i, b in enumerate(bufs):
        if i in doomed_b:
            b.destroy()
    for i, img in enumerate(imgs):
        if i in doomed_i:
            img.destroy()
    bufs = [b for i, b in enumerate(bufs) if i not in doomed_b]
    imgs = [m for i, m in enumerate(imgs) if i not in doomed_i]
    return bufs, imgs, {k: v for k, v in data.items() if k in {x.name for x in bufs + imgs}}


def check_contents(dev: Any, bufs: list[Any], imgs: list[Any], data: dict[str, Any]) -> None:
    for b in bufs:
        assert np.array_equal(b.mapped, data[b.name]), b.name
        assert np.array_equal(np.asarray(dev.read_buffer(b)).view(np.uint8).reshape(-1), data[b.name]), b.name
    for img in imgs:
        for lv, px in enumerate(data[img.name]):
            np.testing.assert_array_equal(dev.read_image(img, lv), px, err_msg=f"{img.name} level {lv}")


def check_addresses(dev: Any, bufs: list[Any]) -> None:
    """Every device address is what Vulkan reports for the buffer's current handle plus its offset."""
    for b in bufs:
        if b.device_address:
            assert b.device_address == vkr.device_address(dev.context.logical, b.handle) + b.offset, b.name


def destroy_all(bufs: list[Any], imgs: list[Any]) -> None:
    for x in bufs + imgs:
        x.destroy()


def test_full_pass_compacts_buffers_images_and_slabs(dev: Any) -> None:
    bufs, imgs, data = fragmented_world(dev)
    try:
        assert any(b.allocation.slab is not None for b in bufs), "the world should hold slab buffers"
        gen_b = {b.name: (b.generation, b.memory_offset, b.allocation.block.id) for b in bufs}
        gen_i = {m.name: (m.generation, m.handle, m.allocation.offset, m.allocation.block.id) for m in imgs}
        table = BindingTable()
        for i, b in enumerate(bufs):
            table.set(i, b)
            table.mark_bound(i)
        held_before = sum(x.size for x in dev.context.suballocator.all_blocks())
        result = dev.defragment()
        assert result.moved > 0 and result.images_moved > 0 and not result.remaining
        assert result.held_after < held_before and result.held_after == sum(
            x.size for x in dev.context.suballocator.all_blocks())
        assert result.blocks_after < result.blocks_before
        for b in bufs:
            g, off, blk = gen_b[b.name]
            moved = (off, blk) != (b.memory_offset, b.allocation.block.id)
            assert b.generation == g + (1 if moved else 0), b.name
        for m in imgs:
            g, handle, off, blk = gen_i[m.name]
            moved = (off, blk) != (m.allocation.offset, m.allocation.block.id)
            assert m.generation == g + (1 if moved else 0) and (m.handle != handle) == moved, m.name
            assert m.layout == LAYOUT_SHADER_READ  # the layout it had before the move
        assert any(b.allocation.slab is not None and b.generation > 1 for b in bufs), "a slab moved whole"
        assert sorted(table.stale()) == sorted(i for i, b in enumerate(bufs) if b.generation > 1)
        check_contents(dev, bufs, imgs, data)
        check_addresses(dev, bufs)
        for blk in dev.context.suballocator.all_blocks():
            blk.tlsf.check()
        again = dev.defragment()
        assert again.moved == 0 and again.bytes_moved == 0  # nothing left to gain
        check_contents(dev, bufs, imgs, data)
    finally:
        destroy_all(bufs, imgs)


def test_images_pinned_when_asked(dev: Any) -> None:
    bufs, imgs, data = fragmented_world(dev, seed=5)
    try:
        where = {m.name: (m.allocation.block.id, m.allocation.offset, m.generation) for m in imgs}
        result = dev.defragment(images=False)
        assert result.images_moved == 0
        assert all(where[m.name] == (m.allocation.block.id, m.allocation.offset, m.generation) for m in imgs)
        check_contents(dev, bufs, imgs, data)
        imgs[0].movable = False  # one image pinned on its own (a view of it lives somewhere)
        result = dev.defragment()
        assert result.images_moved == len(imgs) - 1 > 0
        assert where[imgs[0].name] == (imgs[0].allocation.block.id, imgs[0].allocation.offset, imgs[0].generation)
        check_contents(dev, bufs, imgs, data)
    finally:
        destroy_all(bufs, imgs)


def test_incremental_passes_respect_max_bytes_and_converge(dev: Any) -> None:
    bufs, imgs, data = fragmented_world(dev, seed=7)
    try:
        limit = 96 * KiB
        passes = []
        for _ in range(200):
            r = dev.defragment(max_bytes=limit)
            passes.append(r)
            assert r.bytes_moved <= limit
            check_addresses(dev, bufs)
            if not r.moved:
                break
        assert len(passes) > 2 and passes[-1].moved == 0
        assert sum(p.bytes_moved for p in passes) > limit
        check_contents(dev, bufs, imgs, data)
        full = dev.defragment()  # incremental passes reached what a full pass reaches (or better)
        assert full.blocks_after == passes[-1].blocks_after
    finally:
        destroy_all(bufs, imgs)


def test_incremental_passes_with_a_time_limit_converge(dev: Any) -> None:
    bufs, imgs, data = fragmented_world(dev, seed=9)
    try:
        dev.context.suballocator.defrag_copy_rate = 64 * KiB / 0.001  # as if copies ran at 64 KiB per ms
        total = 0
        for _ in range(200):
            r = dev.defragment(max_ms=1.0)
            # half of 1 ms at 64 KiB/ms for the copies: at most 32 KiB, or the one move every pass may make
            assert r.bytes_moved <= 32 * KiB or r.copies == 1, r
            total += r.moved
            if not r.moved and not r.remaining:
                break
        assert total > 0
        check_contents(dev, bufs, imgs, data)
    finally:
        destroy_all(bufs, imgs)


def test_a_failed_pass_moves_nothing(dev: Any) -> None:
    bufs, imgs, data = fragmented_world(dev, seed=11)
    try:
        where = {x.name: (x.allocation.block.id, x.allocation.offset, x.generation) for x in bufs + imgs}
        handles = {m.name: m.handle for m in imgs}
        dev.context.suballocator.trim_slabs()  # a pass first gives idle slabs back: not a move
        ranges = {b.id: b.tlsf.used_ranges() for b in dev.context.suballocator.all_blocks()}
        dev.context.logical.faults = FaultInjector(device_lost_at_submit=1)
        with pytest.raises(DeviceLostError):
            dev.defragment()
        dev.context.logical.faults = None
        assert all(where[x.name] == (x.allocation.block.id, x.allocation.offset, x.generation) for x in bufs + imgs)
        assert all(handles[m.name] == m.handle for m in imgs)
        for blk in dev.context.suballocator.all_blocks():
            blk.tlsf.check()
        assert {b.id: b.tlsf.used_ranges() for b in dev.context.suballocator.all_blocks()} == ranges
        check_contents(dev, bufs, imgs, data)
        assert dev.defragment().moved > 0  # and the device still defragments afterwards
        check_contents(dev, bufs, imgs, data)
    finally:
        destroy_all(bufs, imgs)


def test_a_buffer_slides_down_over_its_own_range() -> None:
    """A hole smaller than the buffer above it: the buffer slides down in chunks of the shift, overlapping itself."""
    dev = open_test_device(block_size=1 * MiB, staging_quota=0)
    try:
        x = dev.create_buffer(100 * KiB, "uniform_texel", strategy="host_visible", name="x")
        y = dev.create_buffer(400 * KiB, "uniform_texel|storage", strategy="host_visible", name="y")
        z = dev.create_buffer(64 * KiB, "uniform_texel", strategy="host_visible", name="z")
        assert x.allocation.block is y.allocation.block is z.allocation.block
        payload = np.random.default_rng(5).integers(0, 256, y.size, dtype=np.uint8)
        y.mapped[:] = payload
        old = y.memory_offset
        x.destroy()
        r = dev.defragment()
        assert r.slides >= 1 and not r.remaining
        assert y.memory_offset < old < y.memory_offset + y.size  # it overlapped its old range
        assert y.generation == 2 and np.array_equal(y.mapped, payload)
        y.allocation.block.tlsf.check()
        for b in (y, z):
            b.destroy()
    finally:
        finish_test_device(dev)


def test_acceleration_structure_storage_stays(dev: Any) -> None:
    """A buffer holding an acceleration structure never moves (its VkAccelerationStructure names the VkBuffer)."""
    if not dev.features.get("acceleration_structure"):
        pytest.skip("no VK_KHR_acceleration_structure")
    # all three in the same (device-local) memory type: on a discrete GPU host-visible memory is another heap
    x = dev.create_buffer(300 * KiB, "uniform_texel|device_address", name="x")
    acc = dev.create_buffer(200 * KiB, "accel_storage|device_address", name="as", category="accel")
    assert acc.allocation.block is x.allocation.block and acc.memory_offset > 0  # it would slide into x's place
    other = dev.create_buffer(200 * KiB, "uniform_texel", name="other")
    try:
        place = (acc.allocation.block.id, acc.memory_offset, acc.handle, acc.generation)
        x.destroy()
        dev.defragment()
        assert (acc.allocation.block.id, acc.memory_offset, acc.handle, acc.generation) == place
    finally:
        acc.destroy()
        other.destroy()
