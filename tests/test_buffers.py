"""Tests of :mod:`vixen_assets.memory.buffers` through ``Device.create_buffer``: arenas, own handles, device
addresses, mapped memory, reference counting, destruction, reprs, the leak report, allocation groups, fault
injection, a forced large ``bufferImageGranularity``, and a property-based test of random create/destroy sequences.

Everything runs on the real driver with validation on (the ``device`` fixture, or devices opened with
:func:`vixen_assets.testing.open_test_device` and finished with :func:`~vixen_assets.testing.finish_test_device`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vixen_assets.device import list_devices, select_device
from vixen_assets.errors import BudgetExceededError, DeviceClosedError, OutOfDeviceMemoryError, VixenError
from vixen_assets.memory.blocks import SLAB_BYTES
from vixen_assets.memory.buffers import ARENA_MAX, TRANSFER, USAGE_NAMES, parse_usage
from vixen_assets.memory.tlsf import KIND_LINEAR, KIND_OPTIMAL
from vixen_assets.testing import assert_no_validation_problems, finish_test_device, open_test_device
from vixen_assets.vk import FaultInjector
from vixen_assets.vk import resources as vkr
from vixen_assets.vk.commands import one_shot
from vixen_assets.vk.enums import Access, PipelineStage

KiB = 1 << 10
MiB = 1 << 20
VERTEX, INDEX, STORAGE, UNIFORM_TEXEL, DEVICE_ADDRESS = (USAGE_NAMES[n] for n in ("vertex", "index", "storage",
                                                                                  "uniform_texel", "device_address"))


@pytest.fixture
def bare_device() -> Iterator[Any]:
    """A validated device with a zero staging quota: the uploader pre-warms nothing, so no block exists yet."""
    dev = open_test_device(staging_quota=0)
    try:
        yield dev
    finally:
        finish_test_device(dev)


def budget_fraction_for(nbytes: int) -> float:
    """The ``budget_fraction`` that gives the primary heap a limit of exactly ``nbytes``."""
    infos = list_devices()
    heaps = infos[select_device(infos, None)].heaps
    size = max(h.size for h in heaps if h.device_local)
    return (nbytes + 0.5) / size


def spans_disjoint(buffers: list[Any]) -> None:
    """``[memory_offset, memory_offset + nbytes)`` of live buffers never overlap within one ``VkDeviceMemory``."""
    by_block: dict[int, list[tuple[int, int, str]]] = {}
    for b in buffers:
        assert b.memory is b.allocation.block.memory
        by_block.setdefault(b.allocation.block.id, []).append((b.memory_offset, b.memory_offset + b.nbytes, b.name))
    for spans in by_block.values():
        spans.sort()
        for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
            assert e0 <= s1, f"{n0!r} [{s0}, {e0}) overlaps {n1!r} [{s1}, {e1})"


# ---------------------------------------------------------------- creation and placement


def test_create_buffer_int_and_named_usage(device: Any) -> None:
    a = device.create_buffer(1 * KiB, VERTEX | INDEX, name="ints")
    b = device.create_buffer(1 * KiB, "vertex|index", name="names")
    c = device.create_buffer(1 * KiB, ["vertex", "INDEX"], name="list")
    d = device.create_buffer(1 * KiB, "vertex, index", name="commas")
    try:
        for buf in (a, b, c, d):
            assert buf.usage == VERTEX | INDEX | TRANSFER, "transfer src/dst are always added"
            assert buf.size == 1 * KiB and buf.nbytes == 1 * KiB and buf.alive
            assert buf.generation == 1 and buf.category == "default"
        assert parse_usage("storage|device_address") == STORAGE | DEVICE_ADDRESS
        with pytest.raises(VixenError, match="unknown buffer usage 'vertexx'.*known: transfer_src"):
            device.create_buffer(16, "vertexx")
        with pytest.raises(VixenError, match="size must be > 0"):
            device.create_buffer(0, "vertex", name="empty")
        with pytest.raises(VixenError, match="unknown strategy 'fastest'"):
            device.create_buffer(16, "vertex", strategy="fastest")
    finally:
        for buf in (a, b, c, d):
            buf.destroy()


def test_arena_buffers_share_a_handle_at_aligned_offsets(device: Any) -> None:
    limits = device.info.limits
    align = max(limits["min_storage_buffer_offset_alignment"], limits["min_uniform_buffer_offset_alignment"])
    sizes = [1, 100, 1 * KiB, 4 * KiB + 3, 64 * KiB, ARENA_MAX]
    bufs = [device.create_buffer(n, "storage|vertex", name=f"arena{i}") for i, n in enumerate(sizes)]
    try:
        handles = {int(vkr.ffi.cast("uintptr_t", b.handle)) for b in bufs}
        assert len(handles) == 1, "small buffers are ranges of one shared VkBuffer"
        offsets = [b.offset for b in bufs]
        assert len(set(offsets)) == len(bufs)
        for b in bufs:
            assert b.offset % align == 0 and b.offset % device.context.buffers.arena_alignment == 0
            assert b.offset == b.memory_offset, "the arena VkBuffer is bound at offset 0 of its block"
            assert b.offset + b.size <= b.allocation.block.size
            assert b.allocation.block.payload[0] == b.handle
        spans_disjoint(bufs)
    finally:
        for b in bufs:
            b.destroy()


def test_large_or_special_buffers_own_their_handle(device: Any) -> None:
    arena = device.create_buffer(4 * KiB, "vertex", name="arena")
    big = [device.create_buffer(n, "vertex", name=f"big{i}") for i, n in enumerate((ARENA_MAX + 1, 1 * MiB, 3 * MiB))]
    texel = device.create_buffer(4 * KiB, "uniform_texel", name="texel")  # usage outside the arena's
    aligned = device.create_buffer(4 * KiB, "storage", name="aligned", alignment=4 * KiB)
    dedicated = device.create_buffer(8 * KiB, "storage", name="dedicated", dedicated=True)
    own = big + [texel, aligned, dedicated]
    try:
        handles = {int(vkr.ffi.cast("uintptr_t", b.handle)) for b in own + [arena]}
        assert len(handles) == len(own) + 1
        for b in own:
            assert b.offset == 0
            _size, req_align, _bits = vkr.buffer_requirements(device.context.logical, b.handle)
            assert b.memory_offset % req_align == 0
            assert b.nbytes >= b.size
        assert aligned.memory_offset % (4 * KiB) == 0
        assert dedicated.allocation.block.dedicated and dedicated.memory_offset == 0
        assert dedicated.allocation.block.size == dedicated.nbytes
        spans_disjoint(own + [arena])
    finally:
        for b in own + [arena]:
            b.destroy()


def test_device_address_filled_when_asked(device: Any) -> None:
    if not device.context.logical.buffer_device_address:
        pytest.fail("the test device lacks bufferDeviceAddress")
    small = [device.create_buffer(n, "storage|device_address", name=f"s{i}") for i, n in enumerate((64, 4 * KiB, 96))]
    large = [device.create_buffer(n, "storage|device_address", name=f"l{i}") for i, n in enumerate((1 * MiB, 2 * MiB))]
    plain = [device.create_buffer(64, "storage", name="plain-small"), device.create_buffer(1 * MiB, "storage",
                                                                                           name="plain-large")]
    try:
        addressed = small + large
        addrs = [b.device_address for b in addressed]
        assert all(addrs) and len(set(addrs)) == len(addrs)
        for b in small:  # arena: the arena buffer's address plus the range's offset
            base = b.allocation.block.payload[1]
            assert base and b.device_address == base + b.offset
        for b in large:
            assert b.device_address == vkr.device_address(device.context.logical, b.handle)
            assert b.allocation.block.device_address, "memory allocated with VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT"
        # the address ranges of distinct buffers never overlap
        spans = sorted((b.device_address, b.device_address + b.size) for b in addressed)
        for (s0, e0), (s1, _e1) in zip(spans, spans[1:]):
            assert e0 <= s1
        assert [b.device_address for b in plain] == [0, 0]
    finally:
        for b in small + large + plain:
            b.destroy()


def test_mapped_writes_land_in_the_reported_ranges_and_reach_the_gpu(device: Any) -> None:
    rng = np.random.default_rng(7)
    a = device.create_buffer(3000, "storage", strategy="host_visible", name="a")
    b = device.create_buffer(5000, "storage", strategy="host_visible", name="b")
    big = device.create_buffer(1 * MiB, "storage", strategy="host_visible", name="big")
    dst = device.create_buffer(1 * MiB, "storage", strategy="host_cached", name="dst")
    bufs = [a, b, big, dst]
    try:
        payload = {buf.name: rng.integers(0, 256, buf.size, dtype=np.uint8) for buf in bufs[:3]}
        for buf in bufs[:3]:
            assert buf.host_visible and buf.mapped is not None and buf.mapped.shape == (buf.size,)
            buf.mapped[:] = payload[buf.name]
        # the bytes sit exactly in the buffer's range of its block's mapping, and neighbours are untouched
        for buf in bufs[:3]:
            block = buf.allocation.block
            assert np.array_equal(block.mapped[buf.memory_offset:buf.memory_offset + buf.size], payload[buf.name])
            assert np.array_equal(buf.mapped, payload[buf.name])
        # the memory report lists each buffer's range as used
        report = device.memory_report()
        used = {(blk["id"], o): s for blk in report["blocks"] for o, s in blk["used_ranges"]}
        for buf in bufs:
            assert used[(buf.allocation.block.id, buf.memory_offset)] == buf.nbytes
        # the GPU sees the host's writes: copy a, b and big into dst and read dst through its mapping
        with one_shot(device.context.logical, device.context.command_pool, device.context.logical.queue) as cmd:
            pos = 0
            for buf in bufs[:3]:
                regions = vkr.copy_regions(1)
                regions[0] = (buf.offset, dst.offset + pos, buf.size if buf is not big else 64 * KiB)
                vkr.cmd_copy_buffer(cmd, buf.handle, dst.handle, regions)
                pos += buf.size
            vkr.cmd_memory_barrier(cmd, src_stage=PipelineStage.TRANSFER, dst_stage=PipelineStage.HOST,
                                   src_access=Access.TRANSFER_WRITE, dst_access=Access.HOST_READ)
        got = dst.mapped
        assert np.array_equal(got[:3000], payload["a"])
        assert np.array_equal(got[3000:8000], payload["b"])
        assert np.array_equal(got[8000:8000 + 64 * KiB], payload["big"][:64 * KiB])
    finally:
        for buf in bufs:
            buf.destroy()


# ---------------------------------------------------------------- lifetime of one buffer


def test_acquire_release_refcounting(device: Any) -> None:
    base = device.budget.used
    buf = device.create_buffer(4 * KiB, "vertex", name="shared")
    assert buf.refcount == 1
    assert buf.acquire() is buf and buf.refcount == 2
    buf.acquire()
    buf.release()
    buf.release()
    assert buf.alive and buf.refcount == 1 and device.budget.used == base + 4 * KiB
    buf.release()  # the last reference destroys it
    assert not buf.alive and device.budget.used == base
    assert buf not in device.context.registry.live()
    with pytest.raises(DeviceClosedError):
        buf.acquire()


def test_destroy_twice_is_safe_and_use_after_destroy_raises(device: Any) -> None:
    base = device.budget.used
    for size in (4 * KiB, 1 * MiB):
        buf = device.create_buffer(size, "storage", name=f"gone-{size}")
        buf.destroy()
        buf.destroy()
        assert device.budget.used == base and not buf.alive
        for attr in ("handle", "offset", "memory", "mapped"):
            with pytest.raises(DeviceClosedError, match=f"gone-{size}"):
                getattr(buf, attr)
    with device.create_buffer(64, "storage", name="scoped") as scoped:
        assert scoped.alive
    assert not scoped.alive and device.budget.used == base


def test_repr_reads_like_the_style_guide(device: Any) -> None:
    buf = device.create_buffer(4 * MiB, "vertex", name="mesh-arena-0")
    small = device.create_buffer(1536, "vertex", name="tiny")
    try:
        assert repr(buf) == '<Buffer "mesh-arena-0" 4.0 MiB gen=1>'
        assert repr(small) == '<Buffer "tiny" 1.5 KiB gen=1>'
    finally:
        buf.destroy()
        small.destroy()
    assert repr(buf) == '<Buffer "mesh-arena-0" 4.0 MiB gen=1 destroyed>'


def test_leak_report_at_close_names_the_buffer() -> None:
    dev = open_test_device()
    try:
        dev.create_buffer(2 * MiB, "vertex", name="leaky-mesh")
        leaked_small = dev.create_buffer(256, "storage", name="leaky-small")
        kept = dev.create_buffer(64, "storage", name="tidy")
        kept.destroy()
        leaked = next(b for b in dev.context.registry.live() if b.name == "leaky-mesh")
        report = dev.close_report()
        assert len(report) == 2
        assert any("leaky-mesh" in line and str(2 * MiB) in line for line in report)
        assert any("leaky-small" in line for line in report)
        assert not any("tidy" in line or "staging" in line for line in report)
        for buf in (leaked, leaked_small):
            assert not buf.alive
            with pytest.raises(DeviceClosedError):
                _ = buf.handle
        assert dev.close_report() == report, "close_report() after close returns the same report"
        assert dev.budget.used == 0 and dev.context.suballocator.all_blocks() == []
        assert_no_validation_problems(dev)
    finally:
        if not dev.closed:
            finish_test_device(dev)


# ---------------------------------------------------------------- groups and failures


def test_allocation_group_rolls_back_on_exception_and_keeps_on_success(device: Any) -> None:
    base_used = device.budget.used
    base_live = device.context.registry.live()
    with pytest.raises(RuntimeError, match="cacher failed"):
        with device.allocation_group() as group:
            made = [group.create_buffer(4 * KiB, "vertex", name="g-v"),
                    group.create_buffer(2 * MiB, "storage", name="g-big"),
                    group.create_buffer(64, "index", name="g-i")]
            assert device.budget.used > base_used
            raise RuntimeError("cacher failed")
    assert not any(b.alive for b in made) and not group.committed and group.buffers == []
    assert device.budget.used == base_used and device.context.registry.live() == base_live

    with device.allocation_group() as group:
        kept = [group.create_buffer(4 * KiB, "vertex", name="k-v"), group.create_buffer(1 * MiB, "storage", name="k-b")]
    try:
        assert group.committed and all(b.alive for b in kept) and group.buffers == kept
        assert device.budget.used == base_used + sum(b.nbytes for b in kept)
    finally:
        for b in kept:
            b.destroy()


def test_allocation_group_rolls_back_on_budget_failure() -> None:
    dev = open_test_device(staging_quota=0, budget_fraction=budget_fraction_for(4 * MiB))
    try:
        assert dev.budget.limit == 4 * MiB
        with pytest.raises(BudgetExceededError, match="'meshes'"):
            with dev.allocation_group() as group:
                first = group.create_buffer(8 * KiB, "vertex", name="before-failure", category="meshes")
                second = group.create_buffer(1 * MiB, "storage", name="before-failure-2", category="meshes")
                group.create_buffer(3 * MiB, "storage", name="too-big", category="meshes")
        assert not first.alive and not second.alive
        assert dev.budget.used == 0 and len(dev.context.registry) == 0
    finally:
        finish_test_device(dev)


def test_fault_in_the_middle_of_a_group_leaves_nothing(bare_device: Any) -> None:
    dev = bare_device
    assert dev.context.suballocator.all_blocks() == [] and len(dev.context.registry) == 0
    base_used = dev.budget.used
    dev.context.logical.faults = injector = FaultInjector(fail_allocation_at=2)
    try:
        with pytest.raises(OutOfDeviceMemoryError, match="VK_ERROR_OUT_OF_DEVICE_MEMORY"):
            with dev.allocation_group() as group:
                small = group.create_buffer(4 * KiB, "vertex", name="first")  # allocation 1: the arena block
                assert small.alive
                group.create_buffer(2 * MiB, "storage", name="second")  # allocation 2: a general block: fails
    finally:
        dev.context.logical.faults = None
    assert injector.injected == 1 and injector.allocations == 2
    assert not small.alive
    assert dev.budget.used == base_used and len(dev.context.registry) == 0
    stats = dev.budget.stats()
    assert all(c["bytes"] == 0 and c["count"] == 0 for c in stats["categories"].values())
    assert dev.context.suballocator.idle()  # no live range: at most an idle size-class slab kept for reuse
    dev.context.suballocator.trim()
    assert all(b.tlsf.is_empty for b in dev.context.suballocator.all_blocks())
    # and the device is fine afterwards
    with dev.create_buffer(2 * MiB, "storage", name="after") as buf:
        assert buf.alive


# ---------------------------------------------------------------- bufferImageGranularity


def _time_small_allocations(dev: Any, n: int = 2000) -> float:
    rng = np.random.default_rng(3)
    sizes = rng.integers(16, 8 * KiB, n).tolist()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        bufs = [dev.create_buffer(s, VERTEX) for s in sizes]
        best = min(best, time.perf_counter() - t0)
        for b in bufs:
            b.destroy()
    return best


def test_forced_large_buffer_image_granularity() -> None:
    fine = open_test_device(staging_quota=0)
    coarse = open_test_device(staging_quota=0, buffer_image_granularity=4096)
    try:
        assert coarse.context.suballocator.granularity == 4096
        # buffers still work and stay tightly packed (buffers are linear: granularity does not pad them)
        bufs = [coarse.create_buffer(100, "vertex", name=f"b{i}") for i in range(8)]
        assert all(b.allocation.block.tlsf.buffer_image_granularity == 4096 for b in bufs)
        assert max(b.offset for b in bufs) < 4096
        for b in bufs:
            b.destroy()

        # optimal-tiling (image) ranges mixed with linear ones never share a 4096-byte page
        allocator, t = coarse.context.allocator, 0
        allocs = []
        for i in range(60):
            kind = KIND_OPTIMAL if i % 3 == 0 else KIND_LINEAR
            size = 100 + 997 * (i % 7)
            allocs.append((kind, allocator.allocate(size, 16, t, category="images" if kind else "linear", kind=kind)))
        try:
            pages = {KIND_LINEAR: set(), KIND_OPTIMAL: set()}
            for kind, a in allocs:
                if kind == KIND_OPTIMAL:
                    assert a.offset % 4096 == 0
                first, last = a.offset // 4096, (a.offset + a.size - 1) // 4096
                pages[kind].update((a.block.id, p) for p in range(first, last + 1))
            assert not pages[KIND_LINEAR] & pages[KIND_OPTIMAL]
        finally:
            for _kind, a in allocs:
                allocator.free(a)
        assert coarse.budget.used == 0

        # allocation cost stays flat: a complexity guard, not a benchmark
        t_fine = _time_small_allocations(fine)
        t_coarse = _time_small_allocations(coarse)
        assert t_coarse < 3 * t_fine, f"granularity 4096: {t_coarse:.3f} s vs {t_fine:.3f} s at 64"
    finally:
        finish_test_device(coarse)
        finish_test_device(fine)


# ---------------------------------------------------------------- property-based


_sizes = st.one_of(st.integers(1, 4 * KiB), st.integers(4 * KiB + 1, ARENA_MAX), st.integers(ARENA_MAX + 1, 3 * MiB))
_create = st.tuples(st.just("create"), _sizes, st.sampled_from([VERTEX, "storage", "storage|device_address",
                                                                 "uniform_texel", "index"]),
                    st.sampled_from(["device_local", "host_visible", "auto"]), st.booleans())
_destroy = st.tuples(st.just("destroy"), st.integers(0, 1 << 16))
_ops = st.lists(st.one_of(_create, _create, _destroy), min_size=1, max_size=40)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_random_create_destroy_sequences_keep_the_invariants(device: Any, ops: list[tuple]) -> None:
    budget = device.budget
    heaps = range(len(device.info.heaps))
    base_used = [budget.heap_used(h) for h in heaps]
    baseline = device.context.registry.live()
    live: list[Any] = []

    def check() -> None:
        everyone = live + baseline
        spans_disjoint(everyone)
        for b in live:
            if b._owned_handle:
                _s, req_align, _bits = vkr.buffer_requirements(device.context.logical, b.handle)
                assert b.memory_offset % req_align == 0
            else:
                assert b.memory_offset % device.context.buffers.arena_alignment == 0 and b.offset == b.memory_offset
            assert b.nbytes >= b.size
            # charged to the heap its memory lives in (on a discrete GPU host_visible lands in the host heap)
            block = b.allocation.block
            assert b.allocation.heap == block.heap == device.info.memory_types[block.type_index].heap
        # every heap's budget grows by exactly the live buffers placed in it (one heap on unified memory)
        for h in heaps:
            placed = sum(b.nbytes for b in live if b.allocation.heap == h)
            assert budget.heap_used(h) == base_used[h] + placed, f"heap {h}"
        assert budget.used == budget.heap_used(budget.primary_heap)
        # every byte of every block is accounted for: live TLSF allocations + size-class slabs + free ranges tile
        # the block, and each slab's live slots are exactly the live buffers inside it
        per_block: dict[int, int] = {}
        in_slabs: dict[tuple[int, int], dict[int, int]] = {}
        for b in everyone:
            slab = b.allocation.slab
            if slab is None:
                per_block[b.allocation.block.id] = per_block.get(b.allocation.block.id, 0) + b.nbytes
            else:
                assert b.nbytes <= slab.cls and slab.base <= b.memory_offset < slab.base + SLAB_BYTES
                in_slabs.setdefault((slab.block.id, slab.base), {})[b.memory_offset] = b.nbytes
        slabs = {k: v for pool in device.context.suballocator.pools() for k, v in pool.slab_index.items()}
        for (block_id, _base), slab in slabs.items():
            per_block[block_id] = per_block.get(block_id, 0) + SLAB_BYTES
        for key, slab in slabs.items():
            assert slab.sizes == in_slabs.get(key, {}) and slab.used == len(slab.sizes)
        for block in device.context.suballocator.all_blocks():
            block.tlsf.check()
            assert block.tlsf.used_bytes == per_block.get(block.id, 0)

    try:
        for i, op in enumerate(ops):
            if op[0] == "create":
                _, size, usage, strategy, named = op
                live.append(device.create_buffer(size, usage, strategy=strategy, name=f"p{i}" if named else ""))
            elif live:
                live.pop(op[1] % len(live)).destroy()
            check()
    finally:
        for b in live:
            b.destroy()
    assert [budget.heap_used(h) for h in heaps] == base_used and device.context.registry.live() == baseline
