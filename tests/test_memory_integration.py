"""The twelve integration tests of the original C++ design (``test_budget_manager_integration.cpp``), on the real
driver with validation on: every allocation goes ``Device.create_buffer`` -> ``BudgetedAllocator`` ->
``BudgetManager`` -> ``Suballocator`` -> ``vkAllocateMemory``.

Small budgets are made with ``budget_fraction = wanted_bytes / heap size``; devices a test opens itself are closed
with :func:`vixen_assets.testing.finish_test_device`, which fails the test on validation messages or leaks.
The pure-logic halves of these tests (no GPU) are in ``test_budget.py``.
"""

from __future__ import annotations

import functools
import logging
import random
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from vixen_assets.device import list_devices, select_device
from vixen_assets.errors import BudgetExceededError, DeviceClosedError, OutOfDeviceMemoryError, StagingTimeoutError
from vixen_assets.memory.buffers import ARENA_MAX
from vixen_assets.testing import assert_no_validation_problems, finish_test_device, open_test_device
from vixen_assets.vk import FaultInjector

KiB = 1 << 10
MiB = 1 << 20
LOGGER = "vixen_assets.memory"


# ---------------------------------------------------------------- helpers


@functools.cache
def heap_size() -> int:
    """Size of the primary (largest device-local) heap of the device the tests open."""
    infos = list_devices()
    info = infos[select_device(infos, None)]
    local = [h for h in info.heaps if h.device_local] or list(info.heaps)
    return max(h.size for h in local)


def fraction(nbytes: int) -> float:
    """The ``budget_fraction`` / ``warning_fraction`` whose floor times the heap size is exactly ``nbytes``."""
    return (nbytes + 0.5) / heap_size()


def small_device(limit: int, *, warning: int | None = None, block_size: int | None = 1 * MiB, staging_quota: int = 0,
                 **kwargs: Any) -> Any:
    """A validated device whose primary-heap budget is exactly ``limit`` bytes, with small memory blocks.

    The staging quota defaults to 0 so that the uploader's staging pool pre-warms nothing and the budget starts
    empty; tests of staging pass a quota (and account for what the pool pre-warms: ``budget.staging_used``).
    """
    kwargs.setdefault("warning_fraction", fraction(warning if warning is not None else limit * 8 // 10))
    dev = open_test_device(budget_fraction=fraction(limit), block_size=block_size, staging_quota=staging_quota,
                           **kwargs)
    if dev.budget.limit != limit:
        dev.close()
        pytest.fail(f"budget limit {dev.budget.limit} != {limit}: is the heap's VK_EXT_memory_budget that small?")
    return dev


@pytest.fixture
def opened() -> Iterator[list[Any]]:
    """Devices appended to this list are finished (validation + leak check) at the end of the test."""
    devices: list[Any] = []
    try:
        yield devices
    finally:
        errors = []
        for dev in devices:
            try:
                finish_test_device(dev)
            except BaseException as exc:  # finish every device, then report the first failure
                errors.append(exc)
        if errors:
            raise errors[0]


def destroy_all(buffers: list[Any]) -> None:
    while buffers:
        buffers.pop().destroy()


def check_report_ranges(report: dict[str, Any]) -> None:
    """Every block of a memory report: used ranges never overlap, and used + free ranges tile the block."""
    for block in report["blocks"]:
        ranges = sorted([(o, s, "used") for o, s in block["used_ranges"]] +
                        [(o, s, "free") for o, s in block["free_ranges"]])
        pos = 0
        for off, size, kind in ranges:
            assert off == pos, f"block #{block['id']}: {kind} range at {off} but previous range ends at {pos}"
            assert size > 0
            pos = off + size
        assert pos == block["size"], f"block #{block['id']}: ranges end at {pos}, block is {block['size']} bytes"
        assert sum(s for _o, s in block["used_ranges"]) == block["used"]
        assert block["used"] + block["free"] == block["size"]


def assert_disjoint(buffers: list[Any]) -> None:
    """Live buffers' ``[memory_offset, memory_offset + nbytes)`` ranges never overlap within one block."""
    by_block: dict[int, list[tuple[int, int, str]]] = {}
    for b in buffers:
        a = b.allocation
        by_block.setdefault(a.block.id, []).append((a.offset, a.offset + a.size, b.name))
    for block_id, spans in by_block.items():
        spans.sort()
        for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
            assert e0 <= s1, f"block #{block_id}: {n0!r} [{s0}, {e0}) overlaps {n1!r} [{s1}, {e1})"


# ---------------------------------------------------------------- 1


def test_MultiDeviceBudgetIsolation(opened: list[Any]) -> None:
    a = small_device(8 * MiB, staging_quota=128 * KiB)
    opened.append(a)
    b = small_device(16 * MiB)
    opened.append(b)
    assert a.budget is not b.budget
    assert (a.budget.limit, b.budget.limit) == (8 * MiB, 16 * MiB)
    assert (a.budget.staging_quota, b.budget.staging_quota) == (128 * KiB, 0)

    a_bufs: list[Any] = []
    b_bufs: list[Any] = []
    try:
        # fill device a to its limit: 256 KiB arena buffers tile the 1 MiB blocks exactly
        for i in range(32):
            a_bufs.append(a.create_buffer(256 * KiB, "storage", name=f"a{i}"))
        assert a.budget.used == 8 * MiB and a.budget.available() == 0
        assert b.budget.used == 0 and b.budget.available() == 16 * MiB
        with pytest.raises(BudgetExceededError):
            a.create_buffer(256 * KiB, "storage", name="a-over")
        # the same request on the other device succeeds: nothing is shared
        b_bufs.append(b.create_buffer(256 * KiB, "storage", name="b0"))
        assert b.budget.used == 256 * KiB and a.budget.used == 8 * MiB
        assert a.budget.stats()["rejections"] == 1 and b.budget.stats()["rejections"] == 0
        # freeing on a does not move b's numbers, and vice versa
        destroy_all(a_bufs)
        assert a.budget.used == 0 and b.budget.used == 256 * KiB
        assert a.budget.peak == 8 * MiB and b.budget.peak == 256 * KiB
        # staging on a is a's alone
        a.budget.acquire_staging(128 * KiB)
        assert a.budget.staging_used == 128 * KiB and b.budget.staging_used == 0
        assert b.budget.stats()["categories"].keys() == {"default"}
        a.budget.release_staging(128 * KiB)
        # closing a closes a's budget only
        finish_test_device(opened.pop(0))
        assert a.budget.closed and not b.budget.closed
        b_bufs.append(b.create_buffer(1 * MiB, "vertex", name="b1"))
        assert b.budget.used == 256 * KiB + 1 * MiB
    finally:
        destroy_all(a_bufs)
        destroy_all(b_bufs)


# ---------------------------------------------------------------- 2


def test_StatsTrackingThroughChain(device: Any) -> None:
    # the device starts with the uploader's pre-warmed staging buffers: everything below is measured from there
    base = device.budget.stats()
    base_live = base["live_objects"].get("Buffer", {"count": 0, "bytes": 0})
    base_pools = {(p["memory_type"], p["purpose"], p["device_address"]): p for p in base["allocator"]["pools"]}
    bufs: list[Any] = []
    try:
        with device.phase("chain") as phase:
            for i in range(10):
                bufs.append(device.create_buffer(4 * KiB, "vertex|index", name=f"mesh{i}", category="meshes"))
            big = device.create_buffer(2 * MiB, "storage|device_address", name="texels", category="textures")
            bufs.append(big)
        peak = check_stats_through_chain(device, base, base_live, base_pools, bufs, big, phase)
    finally:  # a failed check must not leak the buffers (the leak report would hide the real failure)
        destroy_all(bufs)
    after = device.budget.stats()
    assert after["used"] == base["used"]
    assert after["peak"] == peak, "the peak survives frees"
    assert after["categories"]["meshes"] == {"bytes": 0, "peak": 40 * KiB, "count": 0, "total_count": 10}
    assert after["categories"]["textures"]["count"] == 0
    assert after["live_objects"].get("Buffer", {"count": 0}) == base["live_objects"].get("Buffer", {"count": 0})
    subfrees = sum(p["subfrees"] for p in after["allocator"]["pools"])
    assert subfrees == sum(p["subfrees"] for p in base_pools.values()) + 11
    assert sum(p["used"] for p in after["allocator"]["pools"]) == base["total_used"]


def check_stats_through_chain(device: Any, base: dict[str, Any], base_live: dict[str, int],
                              base_pools: dict[tuple[Any, ...], dict[str, Any]], bufs: list[Any], big: Any,
                              phase: Any) -> int:
    """The checks of :func:`test_StatsTrackingThroughChain` while its 11 buffers live; returns the peak."""
    live = sum(b.nbytes for b in bufs)
    stats = device.budget.stats()

    # budget layer: all 11 are device-local, charged to the primary heap
    assert {b.allocation.heap for b in bufs} == {device.budget.primary_heap}
    assert stats["used"] == base["used"] + live
    assert stats["peak"] == stats["used"]
    assert stats["allocation_count"] == base["allocation_count"] + 11
    assert stats["total_allocations"] == base["total_allocations"] + 11
    assert stats["categories"]["meshes"] == {"bytes": 40 * KiB, "peak": 40 * KiB, "count": 10, "total_count": 10}
    assert stats["categories"]["textures"]["bytes"] == big.nbytes >= 2 * MiB
    assert stats["categories"]["staging"] == base["categories"]["staging"], "other categories are untouched"
    assert device.budget.used == stats["used"] and device.budget.peak == stats["peak"]

    # suballocator layer (a stats provider of the budget)
    alloc = stats["allocator"]
    blocks = device.context.suballocator.all_blocks()
    assert alloc["blocks"] == len(blocks) == base["allocator"]["blocks"] + phase.allocate_memory
    assert alloc["block_bytes"] == sum(b.size for b in blocks) == base["allocator"]["block_bytes"] + phase.allocated_bytes
    assert sum(p["suballocations"] for p in alloc["pools"]) == sum(p["suballocations"] for p in base_pools.values()) + 11
    # every budgeted byte, on every heap, sits in a block
    assert sum(p["used"] for p in alloc["pools"]) == stats["total_used"], "every budgeted byte sits in a block"
    pools = {(p["memory_type"], p["purpose"], p["device_address"]): p for p in alloc["pools"]}
    # the arena pool the meshes went into: on a discrete GPU there are several (the staging pool's small tiers are
    # host_visible arena buffers in a host memory type), so it is found from the buffers, not by purpose alone
    arenas = {b.allocation.block.pool_key for b in bufs[:10]}
    assert len(arenas) == 1
    arena = next(iter(arenas))
    assert arena[1] == "arena" and not any(b._owned_handle for b in bufs[:10])
    own = (big.allocation.block.type_index, "general", True)
    assert big.allocation.block.pool_key == own
    assert pools[arena]["used"] - base_pools.get(arena, {"used": 0})["used"] == 40 * KiB
    assert pools[own]["used"] - base_pools.get(own, {"used": 0})["used"] == big.nbytes

    # tracker and registry
    assert phase.suballocations == 11 and phase.subfrees == 0
    new_arenas = pools[arena]["blocks"] - base_pools.get(arena, {"blocks": 0})["blocks"]
    assert phase.buffers_created == 1 + new_arenas, "one VkBuffer for the big buffer, one per new arena block"
    assert stats["live_objects"]["Buffer"] == {"count": base_live["count"] + 11, "bytes": base_live["bytes"] + live}

    # the memory report agrees with the stats, byte for byte
    report = device.memory_report()
    assert report["categories"] == stats["categories"]
    assert report["budget"]["used"] == stats["used"]
    assert sum(b["used"] for b in report["blocks"]) == stats["total_used"]
    check_report_ranges(report)
    assert report["calls"]["chain"]["suballocations"] == 11
    return int(stats["peak"])


# ---------------------------------------------------------------- 3


def test_StagingQuotaManagement(device: Any, opened: list[Any]) -> None:
    # the default quota: the smaller of 256 MiB and 10% of the limit
    assert device.budget.staging_quota == min(256 * MiB, device.budget.limit // 10)

    dev = small_device(32 * MiB, staging_quota=8 * MiB)
    opened.append(dev)
    budget = dev.budget
    assert budget.staging_quota == 8 * MiB
    pooled = budget.staging_used  # what the uploader's staging pool pre-warmed (it is part of the quota)
    assert pooled == dev.uploader.pool.pooled_bytes and budget.used == pooled
    room = 8 * MiB - pooled
    budget.reset_stats()

    budget.acquire_staging(3 * MiB, who="uploader")
    budget.acquire_staging(room - 3 * MiB, who="uploader")
    assert budget.staging_used == 8 * MiB
    # staging is a part of the device budget, charged under the "staging" category
    assert budget.used == 8 * MiB
    stats = budget.stats()
    assert stats["categories"]["staging"]["bytes"] == 8 * MiB
    assert stats["staging"] == {"quota": 8 * MiB, "used": 8 * MiB, "peak": 8 * MiB, "acquisitions": 2, "waits": 0,
                                "timeouts": 0, "waiting": 0}
    budget.release_staging(3 * MiB)
    assert budget.staging_used == 5 * MiB and budget.used == 5 * MiB
    budget.acquire_staging(3 * MiB)  # fits again: no wait
    assert budget.stats()["staging"]["waits"] == 0

    # a request larger than the whole quota can never be granted: a clear error, no waiting
    t0 = time.monotonic()
    with pytest.raises(BudgetExceededError, match="staging quota"):
        budget.acquire_staging(8 * MiB + 1)
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(ValueError, match="double release"):
        budget.release_staging(9 * MiB)

    # buffers and staging share the device budget: with the budget exhausted, staging fails hard (no waiting)
    budget.release_staging(room)
    assert budget.staging_used == pooled
    big = dev.create_buffer(28 * MiB, "storage", name="resident")
    try:
        t0 = time.monotonic()
        with pytest.raises(BudgetExceededError) as info:
            budget.acquire_staging(6 * MiB, timeout=5.0)
        assert time.monotonic() - t0 < 1.0, "a device-budget failure must not wait like a quota shortage"
        assert info.value.requested == 6 * MiB and info.value.limit == 32 * MiB and info.value.who == "staging"
        budget.acquire_staging(4 * MiB - pooled)
        assert budget.used == 32 * MiB
        budget.release_staging(4 * MiB - pooled)
    finally:
        big.destroy()
    assert budget.used == pooled and budget.staging_used == pooled
    assert budget.stats()["staging"]["peak"] == 8 * MiB


# ---------------------------------------------------------------- 4


def test_BudgetLimitDetection(opened: list[Any]) -> None:
    dev = small_device(8 * MiB, warning=6 * MiB)
    opened.append(dev)
    budget = dev.budget
    assert budget.available() == 8 * MiB and budget.warning_threshold == 6 * MiB
    bufs: list[Any] = []
    try:
        for i in range(32):
            bufs.append(dev.create_buffer(256 * KiB, "storage", name=f"b{i}"))
            used = (i + 1) * 256 * KiB
            assert budget.used == used <= budget.limit
            assert budget.available() == budget.limit - used
            near = used >= budget.warning_threshold
            assert (budget.stats()["warnings"] == 1) == near, f"near-budget state wrong at {used} bytes"
        assert budget.available() == 0
        # the blocks never exceed the limit either
        assert dev.context.suballocator.heap_block_bytes(budget.primary_heap) == budget.limit
        # over budget: any further byte is refused
        for size in (16, 4 * KiB, 256 * KiB, 2 * MiB):
            with pytest.raises(BudgetExceededError):
                dev.create_buffer(size, "storage", name="over")
        assert budget.used == budget.limit and len(dev.context.registry) == 32
        assert dev.memory_report()["budget"]["used"] == budget.limit
        # one freed: room again, and reused without a new vkAllocateMemory
        bufs.pop().destroy()
        assert budget.available() == 256 * KiB
        with dev.phase("refill") as phase:
            bufs.append(dev.create_buffer(256 * KiB, "storage", name="refill"))
        assert phase.allocate_memory == 0 and budget.available() == 0
    finally:
        destroy_all(bufs)
    assert budget.used == 0


def test_SmallBudgetDefaultBlockSize(opened: list[Any]) -> None:
    """With the default block size, a small budget still holds arena and own-handle buffers side by side: blocks
    are sized from the budget limit (VMA's heap/8 rule applied to the limit), not from the heap alone."""
    dev = small_device(64 * MiB, block_size=None)
    opened.append(dev)
    bufs: list[Any] = []
    try:
        bufs.append(dev.create_buffer(256 * KiB, "storage", name="arena"))
        bufs.append(dev.create_buffer(1 * MiB, "vertex", name="own"))
        bufs.append(dev.create_buffer(600 * KiB, "storage|device_address", name="own-bda"))
        assert dev.budget.used == sum(b.nbytes for b in bufs)
        assert dev.context.suballocator.heap_block_bytes(dev.budget.primary_heap) <= 64 * MiB // 2
        # filling up ends in a clear BudgetExceededError, with most of the budget in use and no block over it
        while True:
            try:
                bufs.append(dev.create_buffer(2 * MiB, "vertex", name=f"fill{len(bufs)}"))
            except BudgetExceededError:
                break
        assert dev.budget.used >= 64 * MiB // 2
        assert dev.context.suballocator.heap_block_bytes(dev.budget.primary_heap) <= 64 * MiB
    finally:
        destroy_all(bufs)


# ---------------------------------------------------------------- 5


def test_AllocationFailureOnBudgetExceeded(opened: list[Any]) -> None:
    dev = small_device(4 * MiB)
    opened.append(dev)
    budget = dev.budget
    first = dev.create_buffer(3 * MiB, "storage", name="first", category="meshes")
    bufs = [first]
    try:
        before = (budget.used, len(dev.context.registry), dev.context.tracker.counts().allocate_memory)
        with dev.phase("refused") as phase:
            with pytest.raises(BudgetExceededError) as info:
                dev.create_buffer(2 * MiB, "storage", name="second", category="meshes")
        err = info.value
        assert isinstance(err, MemoryError)
        assert (err.requested, err.used, err.limit, err.who) == (2 * MiB, 3 * MiB, 4 * MiB, "meshes")
        for text in (str(2 * MiB), str(3 * MiB), str(4 * MiB), "'meshes'"):
            assert text in str(err), f"{text} missing from {err}"
        # raised before any vkAllocateMemory, and nothing changed
        assert phase.allocate_memory == 0 and phase.suballocations == 0
        assert (budget.used, len(dev.context.registry), dev.context.tracker.counts().allocate_memory) == before
        assert budget.stats()["rejections"] == 1

        # what fits still works
        bufs.append(dev.create_buffer(1 * MiB, "storage", name="third"))
        assert budget.used == 4 * MiB
        bufs.pop().destroy()

        # a driver failure (injected VK_ERROR_OUT_OF_DEVICE_MEMORY) under the budget gives the reservation back
        dev.context.logical.faults = FaultInjector(fail_allocation_at=1)
        try:
            with pytest.raises(OutOfDeviceMemoryError):
                dev.create_buffer(256 * KiB, "storage", name="injected")
        finally:
            dev.context.logical.faults = None
        assert budget.used == 3 * MiB and len(dev.context.registry) == 1
        assert budget.stats()["categories"]["default"]["count"] == 0
        bufs.append(dev.create_buffer(256 * KiB, "storage", name="after-fault"))
        assert budget.used == 3 * MiB + 256 * KiB
    finally:
        destroy_all(bufs)
    assert budget.used == 0


# ---------------------------------------------------------------- 6


def test_WarningThresholdDetection(opened: list[Any], caplog: pytest.LogCaptureFixture) -> None:
    dev = small_device(8 * MiB, warning=6 * MiB)
    opened.append(dev)
    budget = dev.budget
    events: list[Any] = []
    budget.add_warning_callback(events.append)

    def broken(_event: Any) -> None:
        raise RuntimeError("a broken eviction callback")

    budget.add_warning_callback(broken)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    bufs: list[Any] = []
    try:
        for i in range(23):  # 5.75 MiB: just under the threshold
            bufs.append(dev.create_buffer(256 * KiB, "storage", name=f"b{i}"))
        assert events == [] and "warning threshold" not in caplog.text
        bufs.append(dev.create_buffer(256 * KiB, "storage", name="crossing"))  # 6 MiB: crosses (>=)
        assert len(events) == 1
        ev = events[0]
        assert (ev.heap, ev.used, ev.threshold, ev.limit) == (budget.primary_heap, 6 * MiB, 6 * MiB, 8 * MiB)
        assert "crossed the warning threshold" in caplog.text
        assert "a broken eviction callback" in caplog.text, "a raising callback is logged, not propagated"
        for i in range(4):  # still above: no new notification
            bufs.append(dev.create_buffer(256 * KiB, "storage", name=f"above{i}"))
        assert len(events) == 1
        for _ in range(8):  # back to 5 MiB: re-armed
            bufs.pop().destroy()
        assert budget.used == 5 * MiB and len(events) == 1
        for i in range(4):  # 6 MiB again: a second crossing
            bufs.append(dev.create_buffer(256 * KiB, "storage", name=f"again{i}"))
        assert len(events) == 2 and events[1].used == 6 * MiB
        assert budget.stats()["warnings"] == 2
        budget.remove_warning_callback(events.append)
        budget.remove_warning_callback(broken)
        destroy_all(bufs)
        bufs.extend(dev.create_buffer(256 * KiB, "storage", name=f"c{i}") for i in range(24))
        assert len(events) == 2 and budget.stats()["warnings"] == 3
    finally:
        destroy_all(bufs)


# ---------------------------------------------------------------- 7


def test_StatsResetPropagation(device: Any) -> None:
    budget = device.budget
    base = budget.stats()
    base_subs = sum(p["suballocations"] for p in base["allocator"]["pools"])
    bufs = [device.create_buffer(64 * KiB, "vertex", name=f"v{i}", category="meshes") for i in range(8)]
    bufs.append(device.create_buffer(1 * MiB, "storage", name="big", category="textures"))
    budget.acquire_staging(1 * MiB)
    budget.release_staging(1 * MiB)
    with pytest.raises(BudgetExceededError):
        budget.acquire_staging(budget.staging_quota + 1)
    for _ in range(4):
        bufs.pop(0).destroy()
    live = sum(b.nbytes for b in bufs)
    before = budget.stats()
    assert before["peak"] > before["used"] == base["used"] + live
    assert before["used"] == base["used"] + live
    assert before["rejections"] == 1 and before["staging"]["acquisitions"] == base["staging"]["acquisitions"] + 1
    assert before["categories"]["meshes"]["total_count"] == 8
    assert sum(p["suballocations"] for p in before["allocator"]["pools"]) == base_subs + 9
    assert sum(p["block_allocations"] for p in before["allocator"]["pools"]) >= 1

    budget.reset_stats()
    after = budget.stats()
    # counters and peaks reset through every layer ...
    assert after["peak"] == after["used"] and after["heaps"][after["primary_heap"]]["peak"] == after["used"]
    assert after["rejections"] == 0 and after["warnings"] == 0
    assert after["staging"]["peak"] == after["staging"]["used"] and after["staging"]["acquisitions"] == 0
    for name, cat in after["categories"].items():
        assert cat["peak"] == cat["bytes"] and cat["total_count"] == 0, name
    for pool in after["allocator"]["pools"]:
        assert pool["suballocations"] == pool["subfrees"] == pool["block_allocations"] == pool["block_frees"] == 0
        assert pool["peak_blocks"] == pool["blocks"]
    # ... while what is in use stays counted
    assert after["used"] == before["used"] == base["used"] + live
    assert after["allocation_count"] == before["allocation_count"]
    assert after["categories"]["meshes"]["bytes"] == 4 * 64 * KiB and after["categories"]["meshes"]["count"] == 4
    assert after["allocator"]["blocks"] == before["allocator"]["blocks"]
    assert after["live_objects"] == before["live_objects"]

    # counting resumes from zero
    bufs.append(device.create_buffer(4 * KiB, "vertex", name="new", category="meshes"))
    again = budget.stats()
    assert sum(p["suballocations"] for p in again["allocator"]["pools"]) == 1
    assert again["categories"]["meshes"]["total_count"] == 1
    assert again["peak"] == again["used"] == base["used"] + live + 4 * KiB
    destroy_all(bufs)


# ---------------------------------------------------------------- 8


def test_ConcurrentAllocationThreadSafety(device: Any) -> None:
    threads_n, rounds, ops_per_round = 8, 5, 120  # 4800 create/destroy operations
    budget = device.budget
    base_used = budget.used
    base_counts = device.context.tracker.counts()
    baseline = device.context.registry.live()  # the uploader's staging buffers
    sizes = [16, 100, 1 * KiB, 4 * KiB, 33 * KiB, 64 * KiB, 200 * KiB, ARENA_MAX]
    big_sizes = [ARENA_MAX + 1, 700 * KiB, 1 * MiB, 3 * MiB]
    barrier = threading.Barrier(threads_n + 1, timeout=120)
    live: list[list[Any]] = [[] for _ in range(threads_n)]
    created = [0] * threads_n
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        rng = random.Random(1000 + t)
        mine = live[t]
        try:
            for r in range(rounds):
                for i in range(ops_per_round):
                    if mine and (len(mine) >= 24 or rng.random() < 0.45):
                        mine.pop(rng.randrange(len(mine))).destroy()
                    else:
                        size = rng.choice(big_sizes) if rng.random() < 0.08 else rng.choice(sizes)
                        usage = rng.choice([0x80, "storage", "vertex|index", "uniform|device_address"])
                        mine.append(device.create_buffer(size, usage, name=f"t{t}-{r}-{i}", category=f"thread{t % 4}"))
                        created[t] += 1
                barrier.wait()  # the main thread checks a consistent snapshot
                barrier.wait()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(t,), name=f"alloc-{t}") for t in range(threads_n)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the threads finely (the default 5 ms lets each run whole rounds alone)
    for th in threads:
        th.start()
    try:
        for _r in range(rounds):
            barrier.wait()
            ours = [b for mine in live for b in mine]
            everyone = ours + baseline
            assert len(everyone) == len(device.context.registry)
            assert budget.used == base_used + sum(b.nbytes for b in ours)
            assert_disjoint(everyone)
            report = device.memory_report()
            check_report_ranges(report)
            used = {(blk["id"], o, s) for blk in report["blocks"] for o, s in blk["used_ranges"]}
            for b in everyone:
                a = b.allocation
                assert (a.block.id, a.offset, a.size) in used, f"{b!r} missing from the memory report"
                assert b.memory is a.block.memory
            assert len(used) == len(everyone)
            barrier.wait()
    except threading.BrokenBarrierError:
        pass
    finally:
        if not barrier.broken and errors:
            barrier.abort()
        for th in threads:
            th.join(120)
        sys.setswitchinterval(switch)
    if errors:
        raise errors[0]

    for mine in live:
        destroy_all(mine)
    assert sum(created) >= threads_n * rounds * ops_per_round // 2
    assert budget.used == base_used
    assert device.context.registry.live() == baseline
    stats = budget.stats()
    for t in range(4):
        cat = stats["categories"][f"thread{t}"]
        assert cat["bytes"] == 0 and cat["count"] == 0
    assert sum(stats["categories"][f"thread{t}"]["total_count"] for t in range(4)) == sum(created)
    counts = device.context.tracker.counts()
    assert counts.suballocations - base_counts.suballocations == sum(created)
    assert counts.subfrees - base_counts.subfrees == sum(created)
    assert sum(blk["used"] for blk in device.memory_report()["blocks"]) == base_used


def test_ConcurrentReportWhileAllocating(device: Any) -> None:
    """``memory_report()`` taken by one thread while others allocate is always self-consistent."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[Any] = []
        try:
            while not stop.is_set():
                if mine and rng.random() < 0.5:
                    mine.pop(rng.randrange(len(mine))).destroy()
                else:
                    mine.append(device.create_buffer(rng.choice([64, 4 * KiB, 48 * KiB]), "storage"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            destroy_all(mine)

    baseline = len(device.context.registry)
    threads = [threading.Thread(target=churn, args=(s,)) for s in range(4)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a report must not see half an allocation
    try:
        for th in threads:
            th.start()
        deadline = time.monotonic() + 1.5
        reports = 0
        while time.monotonic() < deadline or reports < 50:
            check_report_ranges(device.memory_report())
            reports += 1
    finally:
        stop.set()
        for th in threads:
            th.join(60)
        sys.setswitchinterval(switch)
    if errors:
        raise errors[0]
    assert len(device.context.registry) == baseline


# ---------------------------------------------------------------- 9


def test_MultiDeviceStatsIsolation(opened: list[Any]) -> None:
    a = small_device(16 * MiB)
    opened.append(a)
    b = small_device(16 * MiB)
    opened.append(b)
    a_bufs = [a.create_buffer(64 * KiB, "vertex", name=f"mesh{i}", category="meshes") for i in range(3)]
    b_bufs = [b.create_buffer(128 * KiB, "storage", name=f"tex{i}", category="textures") for i in range(2)]
    b_bufs.append(b.create_buffer(2 * MiB, "storage", name="big", category="textures"))
    try:
        sa, sb = a.budget.stats(), b.budget.stats()
        assert set(sa["categories"]) == {"meshes"} and set(sb["categories"]) == {"textures"}
        assert sa["used"] == 3 * 64 * KiB and sb["used"] == 2 * 128 * KiB + 2 * MiB
        assert sa["allocation_count"] == 3 and sb["allocation_count"] == 3
        assert sa["allocator"]["blocks"] == 1 and sb["allocator"]["blocks"] == 2
        assert sa["live_objects"]["Buffer"]["count"] == 3 and sb["live_objects"]["Buffer"]["count"] == 3
        assert a.context.tracker.counts().suballocations == 3 and b.context.tracker.counts().suballocations == 3
        assert a.context.tracker.counts().allocate_memory == 1 and b.context.tracker.counts().allocate_memory == 2

        # the reports name disjoint blocks and each adds up to its own device's budget
        ra, rb = a.memory_report(), b.memory_report()
        assert {blk["id"] for blk in ra["blocks"]}.isdisjoint(blk["id"] for blk in rb["blocks"])
        assert sum(blk["used"] for blk in ra["blocks"]) == sa["used"]
        assert sum(blk["used"] for blk in rb["blocks"]) == sb["used"]

        # resetting one device's stats leaves the other's alone
        a_bufs.pop().destroy()
        b_bufs.pop().destroy()
        a.budget.reset_stats()
        sa, sb = a.budget.stats(), b.budget.stats()
        assert sa["peak"] == sa["used"] == 2 * 64 * KiB
        assert sb["peak"] == 2 * 128 * KiB + 2 * MiB > sb["used"]
        assert sum(p["suballocations"] for p in sa["allocator"]["pools"]) == 0
        assert sum(p["suballocations"] for p in sb["allocator"]["pools"]) == 3
        assert sb["categories"]["textures"]["total_count"] == 3

        # a phase on one device does not count the other's calls
        with a.phase("setup") as pa:
            a_bufs.append(a.create_buffer(4 * KiB, "vertex", name="a-in-phase", category="meshes"))
            b_bufs.append(b.create_buffer(4 * KiB, "vertex", name="b-outside", category="textures"))
        assert pa.suballocations == 1
        assert b.context.tracker.counts("setup").suballocations == 0
    finally:
        destroy_all(a_bufs)
        destroy_all(b_bufs)


# ---------------------------------------------------------------- 10


def test_StagingQuotaExceeded(opened: list[Any]) -> None:
    dev = small_device(64 * MiB, staging_quota=4 * MiB, staging_timeout_s=10.0)
    opened.append(dev)
    budget = dev.budget
    pooled = budget.staging_used  # pre-warmed by the uploader's staging pool
    room = 4 * MiB - pooled
    assert room >= 3 * MiB
    budget.acquire_staging(room, who="holder")

    # 1. beyond the quota, the request waits until another thread gives staging memory back
    released = threading.Event()

    def release_later() -> None:
        time.sleep(0.3)
        released.set()
        budget.release_staging(3 * MiB)

    th = threading.Thread(target=release_later)
    t0 = time.monotonic()
    th.start()
    budget.acquire_staging(2 * MiB, who="waiter")  # blocks, never fails
    waited = time.monotonic() - t0
    th.join()
    assert released.is_set() and waited >= 0.25
    assert budget.staging_used == 3 * MiB and budget.stats()["staging"]["waits"] == 1

    # 2. with a short timeout and nobody releasing, a clear StagingTimeoutError
    t0 = time.monotonic()
    with pytest.raises(StagingTimeoutError) as info:
        budget.acquire_staging(2 * MiB, timeout=0.2, who="impatient")
    assert 0.15 <= time.monotonic() - t0 < 5.0
    msg = str(info.value)
    for text in ("staging quota exhausted", str(2 * MiB), str(4 * MiB), "'impatient'", "staging_quota"):
        assert text in msg, f"{text!r} missing from {msg!r}"
    assert isinstance(info.value, TimeoutError)
    assert budget.staging_used == 3 * MiB and budget.stats()["staging"]["timeouts"] == 1
    budget.release_staging(room - 3 * MiB + 2 * MiB)
    assert budget.staging_used == pooled

    # 3. many threads contending for the quota: all succeed when memory comes back in time
    errors: list[BaseException] = []
    granted = []
    peak_seen = [0]
    lock = threading.Lock()

    def contender(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(15):
                n = rng.choice([512 * KiB, 1 * MiB, 2 * MiB, room])
                budget.acquire_staging(n, timeout=10.0, who=f"c{seed}")
                with lock:
                    peak_seen[0] = max(peak_seen[0], budget.staging_used)
                    granted.append(n)
                time.sleep(rng.random() * 0.002)
                budget.release_staging(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=contender, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(granted) == 8 * 15
    assert peak_seen[0] <= budget.staging_quota
    assert budget.staging_used == pooled and budget.used == pooled
    assert budget.stats()["staging"]["peak"] <= 4 * MiB


# ---------------------------------------------------------------- 11


def test_BudgetManagerLifetimeBinding() -> None:
    dev = small_device(16 * MiB, staging_quota=2 * MiB)
    try:
        kept = dev.create_buffer(256 * KiB, "storage", name="kept-arena")
        own = dev.create_buffer(2 * MiB, "vertex", name="kept-own")
        freed = dev.create_buffer(4 * KiB, "storage", name="freed")
        freed.destroy()
        dev.budget.acquire_staging(1 * MiB)
        assert dev.budget.used > 0 and not dev.budget.closed
        budget, tracker, sub = dev.budget, dev.context.tracker, dev.context.suballocator

        leaks = dev.close_report()
        # the budget's life ends with its device: closed, everything freed, nothing left charged to buffers
        assert budget.closed and dev.closed
        assert len(leaks) == 2 and any("kept-arena" in s for s in leaks) and any("kept-own" in s for s in leaks)
        assert budget.stats()["categories"]["default"]["bytes"] == 0
        assert budget.used == budget.staging_used == 1 * MiB  # only the staging bytes nobody returned
        budget.release_staging(1 * MiB)  # releases stay allowed after close
        assert budget.used == 0
        assert sub.all_blocks() == [] and len(dev.context.registry) == 0
        counts = tracker.counts()
        assert counts.allocate_memory == counts.free_memory > 0
        assert counts.buffers_created == counts.buffers_destroyed

        # any later use raises DeviceClosedError
        for buf in (kept, own):
            assert not buf.alive
            with pytest.raises(DeviceClosedError):
                _ = buf.handle
            with pytest.raises(DeviceClosedError):
                _ = buf.mapped
            buf.destroy()  # still safe
        with pytest.raises(DeviceClosedError):
            dev.create_buffer(16, "storage")
        with pytest.raises(DeviceClosedError):
            budget.reserve(16, category="late")
        with pytest.raises(DeviceClosedError):
            budget.acquire_staging(16)
        assert_no_validation_problems(dev)
    finally:
        if not dev.closed:
            finish_test_device(dev)


def test_BudgetClosedWakesStagingWaiters() -> None:
    """A thread waiting for staging memory when the device closes gets ``DeviceClosedError``, not a hang."""
    dev = small_device(16 * MiB, staging_quota=128 * KiB)  # too small for the pool to pre-warm anything
    dev.budget.acquire_staging(128 * KiB)
    outcome: list[BaseException] = []

    def waiter() -> None:
        try:
            dev.budget.acquire_staging(64 * KiB, timeout=30.0)
        except BaseException as exc:
            outcome.append(exc)

    th = threading.Thread(target=waiter)
    th.start()
    while not dev.budget.stats()["staging"]["waiting"]:
        time.sleep(0.005)
    try:
        dev.close()
        th.join(10)
        assert not th.is_alive() and len(outcome) == 1 and isinstance(outcome[0], DeviceClosedError)
    finally:
        finish_test_device(dev)


# ---------------------------------------------------------------- 12


def test_ZeroBudgetHandling(opened: list[Any]) -> None:
    dev = open_test_device(budget_fraction=0.0)
    opened.append(dev)
    budget = dev.budget
    assert budget.limit == 0 and budget.staging_quota == 0 and budget.available() == 0
    cases = [
        (1, 0x80, "device_local", False),
        (1 * KiB, "vertex|index", "host_visible", False),
        (256 * KiB, "storage|device_address", "auto", False),
        (ARENA_MAX + 1, "storage", "device_local", False),
        (4 * MiB, 0x20, "host_cached", False),
        (64, "uniform", "device_local", True),
    ]
    dev.context.logical.faults = calls = FaultInjector()  # counts every vkAllocateMemory at the Vulkan layer, fails none
    with dev.phase("zero") as phase:
        for i, (size, usage, strategy, dedicated) in enumerate(cases):
            category = f"cat{i}"
            with pytest.raises(BudgetExceededError) as info:
                dev.create_buffer(size, usage, strategy=strategy, name=f"z{i}", category=category,
                                  dedicated=dedicated)
            err = info.value
            assert err.requested >= size and err.used == 0 and err.limit == 0 and err.who == category
            msg = str(err)
            for text in (f"requested {err.requested} bytes", "0 bytes used", "0-byte limit", repr(category)):
                assert text in msg, f"{text!r} missing from {msg!r}"
        with pytest.raises(BudgetExceededError):
            budget.acquire_staging(1)
    dev.context.logical.faults = None
    # nothing reached vkAllocateMemory, ever
    assert calls.allocations == 0
    assert phase.allocate_memory == 0 and phase.suballocations == 0
    assert dev.context.tracker.counts().allocate_memory == 0
    assert dev.context.suballocator.all_blocks() == [] and len(dev.context.registry) == 0
    assert budget.used == 0 and budget.stats()["rejections"] == len(cases) + 1
    assert all(c["count"] == 0 for c in budget.stats()["categories"].values())
