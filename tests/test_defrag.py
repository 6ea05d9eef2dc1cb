"""Tests of :mod:`vixen_assets.memory.defrag` (``Device.defragment()``) and
:mod:`vixen_assets.memory.binding_table`: a fragmented set of blocks is compacted with GPU copies, contents survive
byte for byte, moved buffers' generations go up by exactly one, and a binding table rewrites only their slots.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from vixen_assets.errors import DeviceClosedError
from vixen_assets.memory.binding_table import Binding, BindingTable
from vixen_assets.memory.buffers import USAGE_NAMES
from vixen_assets.testing import finish_test_device, open_test_device
from vixen_assets.vk import resources as vkr
from vixen_assets.vk.commands import one_shot
from vixen_assets.vk.enums import Access, PipelineStage

KiB = 1 << 10
MiB = 1 << 20


@pytest.fixture
def small_blocks() -> Iterator[Any]:
    """A validated device with 1 MiB memory blocks and no pre-warmed staging buffers."""
    dev = open_test_device(block_size=1 * MiB, staging_quota=0)
    try:
        yield dev
    finally:
        finish_test_device(dev)


def where(buf: Any) -> tuple[int, int, int, int]:
    """(block id, memory offset, handle as int, offset in handle)."""
    return (buf.allocation.block.id, buf.memory_offset, int(vkr.ffi.cast("uintptr_t", buf.handle)), buf.offset)


def fragment(dev: Any, n: int = 60, seed: int = 11) -> tuple[list[Any], dict[str, np.ndarray]]:
    """Create ``n`` host-visible buffers of 16-200 KiB (arena ranges and buffers with their own ``VkBuffer``), fill
    each with distinct random bytes, destroy two thirds of them scattered; return the survivors and their bytes."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    bufs = []
    for i in range(n):
        size = rng.randint(16 * KiB, 200 * KiB)
        # "uniform_texel" is outside the arena's usage: those buffers get their own VkBuffer
        usage = "storage|device_address" if i % 3 else "uniform_texel|storage"
        buf = dev.create_buffer(size, usage, strategy="host_visible", name=f"frag{i}")
        bufs.append(buf)
    data = {}
    for buf in bufs:
        data[buf.name] = nrng.integers(0, 256, buf.size, dtype=np.uint8)
        buf.mapped[:] = data[buf.name]
    doomed = set(rng.sample(range(n), k=2 * n // 3))
    survivors = []
    for i, buf in enumerate(bufs):
        if i in doomed:
            buf.destroy()
        else:
            survivors.append(buf)
    return survivors, {b.name: data[b.name] for b in survivors}


def test_defragment_compacts_and_keeps_contents(small_blocks: Any) -> None:
    dev = small_blocks
    survivors, data = fragment(dev)
    assert any(b._owned_handle for b in survivors) and any(not b._owned_handle for b in survivors)
    before_blocks = len(dev.context.suballocator.all_blocks())
    assert before_blocks >= 4
    used_before = dev.budget.used
    gen = {b.name: b.generation for b in survivors}
    place = {b.name: where(b) for b in survivors}
    frag_before = dev.budget.stats()["allocator"]["fragmentation"]

    with dev.phase("defrag") as phase:
        result = dev.defragment()

    blocks_after = dev.context.suballocator.all_blocks()
    # fewer blocks, and the result's numbers agree with what happened
    assert result.blocks_before == before_blocks
    assert result.blocks_after == len(blocks_after) < before_blocks
    assert result.blocks_before - result.blocks_freed == result.blocks_after
    assert result.fragmentation_before == pytest.approx(frag_before)
    assert 0.0 <= result.fragmentation_after <= result.fragmentation_before
    assert phase.allocate_memory == 0 and phase.free_memory == result.blocks_freed

    moved = [b for b in survivors if where(b) != place[b.name]]
    unmoved = [b for b in survivors if where(b) == place[b.name]]
    assert result.moved == len(moved) > 0
    assert result.bytes_moved == sum(b.nbytes for b in moved)
    for b in moved:
        assert b.generation == gen[b.name] + 1, f"{b!r} moved: its generation goes up by exactly one"
        assert b.allocation.block.id != place[b.name][0] or b.memory_offset != place[b.name][1]
    for b in unmoved:
        assert b.generation == gen[b.name]

    # every survivor's bytes are identical, read through the mapping at its new place
    for b in survivors:
        assert b.alive and b.mapped is not None
        assert np.array_equal(b.mapped, data[b.name]), f"{b!r} lost its contents in the move"
    # nothing else changed: same budget, no overlap, every block's ranges tile it
    assert dev.budget.used == used_before
    spans: dict[int, list[tuple[int, int]]] = {}
    for b in survivors:
        spans.setdefault(b.allocation.block.id, []).append((b.memory_offset, b.memory_offset + b.nbytes))
        if b._owned_handle:
            _s, req_align, _bits = vkr.buffer_requirements(dev.context.logical, b.handle)
            assert b.memory_offset % req_align == 0, f"{b!r} bound at a misaligned offset"
        else:
            assert b.offset % dev.context.buffers.arena_alignment == 0
            if b.usage & USAGE_NAMES["device_address"]:
                assert b.device_address == b.allocation.block.payload[1] + b.offset
    for ranges in spans.values():
        ranges.sort()
        assert all(e0 <= s1 for (_s0, e0), (s1, _e1) in zip(ranges, ranges[1:]))
    for block in blocks_after:
        block.tlsf.check()

    # the moved buffers work on the GPU: copy every survivor into one buffer and compare
    total = sum(b.size for b in survivors)
    dst = dev.create_buffer(total, "storage", strategy="host_visible", name="gather")
    try:
        with one_shot(dev.context.logical, dev.context.command_pool, dev.context.logical.queue) as cmd:
            pos = 0
            for b in survivors:
                regions = vkr.copy_regions(1)
                regions[0] = (b.offset, dst.offset + pos, b.size)
                vkr.cmd_copy_buffer(cmd, b.handle, dst.handle, regions)
                pos += b.size
            vkr.cmd_memory_barrier(cmd, src_stage=PipelineStage.TRANSFER, dst_stage=PipelineStage.HOST,
                                   src_access=Access.TRANSFER_WRITE, dst_access=Access.HOST_READ)
        expected = np.concatenate([data[b.name] for b in survivors])
        assert np.array_equal(dst.mapped, expected)
    finally:
        dst.destroy()

    # a second pass has nothing (or little) left to do and never makes things worse
    again = dev.defragment()
    assert again.blocks_after <= result.blocks_after
    for b in survivors:
        assert np.array_equal(b.mapped, data[b.name])
        b.destroy()


def test_defragment_with_nothing_to_do(small_blocks: Any) -> None:
    dev = small_blocks
    bufs = [dev.create_buffer(64 * KiB, "storage", name=f"tight{i}") for i in range(4)]
    try:
        gens = [b.generation for b in bufs]
        result = dev.defragment()
        assert result.moved == 0 and result.bytes_moved == 0 and result.blocks_freed == 0
        assert result.blocks_after == result.blocks_before == 1
        assert [b.generation for b in bufs] == gens
    finally:
        for b in bufs:
            b.destroy()


def test_binding_table_rebinds_only_moved_buffers(small_blocks: Any) -> None:
    dev = small_blocks
    survivors, data = fragment(dev, n=45, seed=5)
    table = BindingTable("scene")
    for i, b in enumerate(survivors):
        table.set(("set0", i), b)
    assert table.stale() == table.slots(), "never-written slots are stale"
    writes: list[tuple[Any, Any]] = []
    assert table.update(lambda slot, buf: writes.append((slot, buf))) == table.slots()
    assert len(writes) == len(survivors) and table.stale() == []
    assert table.binding(("set0", 0)) == Binding(survivors[0], survivors[0].generation, survivors[0].offset)

    before = {b.name: where(b) for b in survivors}
    result = dev.defragment()
    moved_slots = [("set0", i) for i, b in enumerate(survivors) if where(b) != before[b.name]]
    assert len(moved_slots) == result.moved > 0
    assert table.stale() == moved_slots

    writes.clear()
    written = table.update(lambda slot, buf: writes.append((slot, buf)))
    assert written == moved_slots and [s for s, _b in writes] == moved_slots
    for slot, buf in writes:
        assert table[slot] is buf and table.binding(slot).generation == buf.generation
        assert table.binding(slot).offset == buf.offset
    assert table.stale() == [] and table.update(lambda s, b: pytest.fail("nothing is stale")) == []

    # data updates do not make a slot stale; a destroyed buffer is dead, not stale
    survivors[0].mapped[:16] = 0
    assert table.stale() == []
    survivors[1].destroy()
    assert table.dead() == [("set0", 1)] and ("set0", 1) not in table.stale()
    with pytest.raises(DeviceClosedError):
        table.mark_bound(("set0", 1))
    table.remove(("set0", 1))
    assert ("set0", 1) not in table and len(table) == len(survivors) - 1
    for b in survivors:
        b.destroy()


def test_binding_table_without_a_device() -> None:
    class Res:
        def __init__(self) -> None:
            self.generation, self.offset, self.alive = 1, 0, True

    a, b = Res(), Res()
    table = BindingTable()
    table.set(0, a)
    table.set("b", b)
    assert table.stale() == [0, "b"] and "2 stale" in repr(table)
    table.mark_bound(0)
    assert table.stale() == ["b"]

    def flaky(slot: Any, _res: Any) -> None:
        raise RuntimeError(f"descriptor write for {slot!r} failed")

    with pytest.raises(RuntimeError):
        table.update(flaky)
    assert table.stale() == ["b"], "a failed write leaves the slot stale"
    assert table.update(lambda s, r: None) == ["b"]
    a.generation, a.offset = 2, 256  # moved
    assert table.stale() == [0]
    table.set(0, a)  # re-assigning the same buffer keeps its record
    assert table.stale() == [0]
    c = Res()
    table.set(0, c)  # a different buffer must be written
    assert table.binding(0) == Binding(c, 0, -1) and not table.binding(0).written
    with pytest.raises(KeyError):
        table.mark_bound("missing")


def test_defragment_honours_the_alignment_of_own_buffers(small_blocks: Any) -> None:
    """A buffer at offset 0 of its block must not be moved to an offset its ``VkBuffer`` cannot be bound at."""
    dev = small_blocks
    x1 = dev.create_buffer(500_016, "uniform_texel", strategy="host_visible", name="x1")
    x2 = dev.create_buffer(400_016, "uniform_texel", strategy="host_visible", name="x2")
    x3 = dev.create_buffer(148_000, "uniform_texel", strategy="host_visible", name="x3")
    y = dev.create_buffer(300_000, "uniform_texel", strategy="host_visible", name="y")
    assert x1.allocation.block is x2.allocation.block is x3.allocation.block is not y.allocation.block
    assert y.memory_offset == 0
    payload = np.random.default_rng(1).integers(0, 256, y.size, dtype=np.uint8)
    y.mapped[:] = payload
    x2.destroy()  # leaves a hole that starts right after x1: 16-byte aligned, not 64
    try:
        result = dev.defragment()
        # compaction: x3 slides down into x2's hole, y leaves its block for the tail of the first one
        assert result.moved == 2 and result.blocks_after == result.blocks_before - 1
        assert x3.generation == 2 and x1.generation == 1
        _s, req_align, _bits = vkr.buffer_requirements(dev.context.logical, y.handle)
        assert y.memory_offset % req_align == 0, f"moved to offset {y.memory_offset}, alignment {req_align}"
        assert y.generation == 2 and np.array_equal(y.mapped, payload)
    finally:
        for b in (x1, x3, y):
            b.destroy()
