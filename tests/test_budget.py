"""Tests of :mod:`vixen_assets.memory.budget`: the per-device budget as pure logic (no GPU).

The names of the twelve integration tests of the original C++ design appear here as their pure-logic halves;
the Vulkan-backed versions live with the device tests.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import threading
import time

import pytest

from vixen_assets.errors import BudgetExceededError, DeviceClosedError, StagingTimeoutError, VixenError
from vixen_assets.memory.budget import (
    DEFAULT_STAGING_CAP,
    BudgetEvent,
    BudgetManager,
    HeapBudgetInput,
)

GiB = 1 << 30
MiB = 1 << 20
LOGGER = "vixen_assets.memory"


def discrete_gpu(**kw: object) -> BudgetManager:
    """8 GiB VRAM, 16 GiB host heap, a 256 MiB device-local BAR heap (a typical AMD layout)."""
    heaps = [HeapBudgetInput(8 * GiB, True), HeapBudgetInput(16 * GiB, False), HeapBudgetInput(256 * MiB, True)]
    return BudgetManager(heaps, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- limits


def test_limits_and_fractions() -> None:
    b = discrete_gpu()
    assert b.primary_heap == 0 and b.host_heap == 1
    assert b.limit == int(0.9 * 8 * GiB)
    assert b.warning_threshold == int(0.8 * 8 * GiB)
    assert b.limits == (int(0.9 * 8 * GiB), int(0.9 * 16 * GiB), int(0.9 * 256 * MiB))
    assert b.warning_thresholds[2] == int(0.8 * 256 * MiB)
    assert b.used == 0 and b.peak == 0 and b.available() == b.limit

    c = discrete_gpu(budget_fraction=0.5, warning_fraction=0.25)
    assert c.limit == 4 * GiB and c.warning_threshold == 2 * GiB

    # the primary heap is the largest device-local one, wherever it sits
    d = BudgetManager([HeapBudgetInput(256 * MiB), HeapBudgetInput(4 * GiB, False), HeapBudgetInput(2 * GiB)])
    assert d.primary_heap == 2 and d.limit == int(0.9 * 2 * GiB)
    assert BudgetManager([1000]).limit == 900  # a bare int is a device-local heap

    with pytest.raises(ValueError, match="budget_fraction"):
        BudgetManager([GiB], budget_fraction=1.5)
    with pytest.raises(ValueError, match="overflow"):
        BudgetManager([GiB], overflow="swap")
    with pytest.raises(ValueError, match="at least one heap"):
        BudgetManager([])


def test_ext_memory_budget_smaller_wins() -> None:
    heaps = [HeapBudgetInput(8 * GiB, True, budget_bytes=4 * GiB), HeapBudgetInput(16 * GiB, False, 32 * GiB)]
    b = BudgetManager(heaps)
    assert b.limit == 4 * GiB  # the driver's budget, smaller than 90% of the heap
    # the warning keeps its 80/90 ratio to the lowered limit, so it still comes before the limit
    assert b.warning_threshold == int(0.8 * 8 * GiB * (4 * GiB / int(0.9 * 8 * GiB)))
    assert b.warning_threshold < b.limit
    assert b.limits[1] == int(0.9 * 16 * GiB)  # a larger extension budget does not raise the limit

    b.update_heap_budgets([2 * GiB, None])  # budgets move while other processes use the GPU
    assert b.limit == 2 * GiB and b.limits[1] == int(0.9 * 16 * GiB)
    b.update_heap_budgets([None, None])
    assert b.limit == int(0.9 * 8 * GiB) and b.warning_threshold == int(0.8 * 8 * GiB)
    with pytest.raises(ValueError, match="expected 2"):
        b.update_heap_budgets([None])


def test_lowered_extension_budget_warns_when_already_past_it() -> None:
    b = BudgetManager([HeapBudgetInput(1000, True, None)])
    events: list[BudgetEvent] = []
    b.add_warning_callback(events.append)
    b.reserve(500, category="mesh")
    b.update_heap_budgets([600])  # another process took VRAM: limit 600, threshold 800 * 600/900 = 533
    assert b.limit == 600 and b.warning_threshold == 533 and events == []
    b.update_heap_budgets([540])  # threshold 480: usage 500 is past it now
    assert [e.used for e in events] == [500] and events[0].threshold == 480
    b.update_heap_budgets([530])
    assert len(events) == 1  # still the same crossing
    with pytest.raises(BudgetExceededError):
        b.reserve(31, category="mesh")


def test_BudgetLimitDetection() -> None:
    b = BudgetManager([1000])
    assert b.reserve(600, category="mesh") == 0
    assert b.available() == 300
    b.reserve(300, category="mesh")  # exactly at the limit is fine
    assert b.used == 900 == b.limit and b.available() == 0
    with pytest.raises(BudgetExceededError):
        b.reserve(1, category="mesh")
    b.release(300, category="mesh")
    assert b.available() == 300


def test_AllocationFailureOnBudgetExceeded() -> None:
    b = BudgetManager([1000], name="gpu0")
    b.reserve(800, heap=0, category="texture")
    with pytest.raises(BudgetExceededError) as info:
        b.reserve(200, heap=0, category="mesh")
    err = info.value
    assert isinstance(err, MemoryError) and isinstance(err, VixenError)
    assert (err.requested, err.used, err.limit, err.who, err.heap) == (200, 800, 900, "mesh", 0)
    msg = str(err)
    assert "200" in msg and "800" in msg and "900" in msg and "'mesh'" in msg and "heap 0" in msg
    # nothing was charged by the failed attempt
    assert b.used == 800 and b.stats()["categories"].get("mesh") is None
    assert b.stats()["rejections"] == 1
    with pytest.raises(ValueError, match="heap 7"):
        b.reserve(1, heap=7, category="mesh")


def test_release_mismatch_is_an_error() -> None:
    b = discrete_gpu()
    b.reserve(100, category="mesh")
    with pytest.raises(ValueError, match="double release"):
        b.release(200, category="mesh")
    with pytest.raises(ValueError, match="double release"):
        b.release(100, category="texture")
    with pytest.raises(ValueError, match="double release"):
        b.release(100, heap=2, category="mesh")
    b.release(100, category="mesh")
    with pytest.raises(ValueError, match="double release"):
        b.release(100, category="mesh")
    assert b.used == 0


def test_ZeroBudgetHandling() -> None:
    for b in (BudgetManager([8 * GiB], budget_fraction=0.0), BudgetManager([0])):
        assert b.limit == 0 and b.staging_quota == 0
        for n in (0, 1, GiB):
            with pytest.raises(BudgetExceededError, match="0-byte limit") as info:
                b.reserve(n, category="mesh")
            assert info.value.limit == 0
        with pytest.raises(BudgetExceededError):
            b.acquire_staging(1)
        with pytest.raises(BudgetExceededError):
            b.acquire_staging(0)
        assert b.used == 0 and b.stats()["allocation_count"] == 0


# ---------------------------------------------------------------- isolation and stats


def test_MultiDeviceBudgetIsolation() -> None:
    a = BudgetManager([4 * GiB], name="gpu0")
    b = BudgetManager([8 * GiB], name="gpu1")
    a.reserve(3 * GiB, category="mesh")
    assert b.used == 0 and b.available() == b.limit
    with pytest.raises(BudgetExceededError):
        a.reserve(GiB, category="mesh")
    b.reserve(GiB, category="mesh")  # the other device is unaffected
    seen: list[BudgetEvent] = []
    a.add_warning_callback(seen.append)
    b.reserve(5 * GiB, category="mesh")  # crosses gpu1's threshold, not gpu0's callbacks
    assert seen == []


def test_MultiDeviceStatsIsolation() -> None:
    a = BudgetManager([GiB])
    b = BudgetManager([GiB])
    a.reserve(10, category="mesh")
    a.acquire_staging(5)
    b.add_stats_provider("blocks", lambda: {"count": 3})
    sa, sb = a.stats(), b.stats()
    assert sa["used"] == 15 and sb["used"] == 0
    assert sb["categories"] == {} and "blocks" not in sa and sb["blocks"] == {"count": 3}
    a.reset_stats()
    assert b.stats()["total_allocations"] == 0 and a.stats()["total_allocations"] == 0
    assert a.stats()["peak"] == 15


def test_StatsTrackingThroughChain() -> None:
    b = discrete_gpu(name="gpu0")
    blocks = {"count": 0, "bytes": 0, "allocated_total": 0}
    b.add_stats_provider("blocks", lambda: dict(blocks))
    for _ in range(3):  # what the block allocator does: reserve, vkAllocateMemory, count the block
        b.reserve(256 * MiB, heap=0, category="mesh")
        blocks["count"] += 1
        blocks["bytes"] += 256 * MiB
    b.reserve(64 * MiB, heap=1, category="readback")
    b.release(256 * MiB, heap=0, category="mesh")
    b.acquire_staging(8 * MiB)
    s = b.stats()
    json.dumps(s)  # JSON-serialisable
    assert s["used"] == 512 * MiB + 8 * MiB and s["peak"] == 768 * MiB + 0
    assert s["limit"] == b.limit and s["warning_threshold"] == b.warning_threshold
    assert s["allocation_count"] == 4 and s["total_allocations"] == 5
    assert s["total_used"] == 512 * MiB + 64 * MiB + 8 * MiB
    assert s["categories"]["mesh"] == {"bytes": 512 * MiB, "peak": 768 * MiB, "count": 2, "total_count": 3}
    assert s["categories"]["staging"] == {"bytes": 8 * MiB, "peak": 8 * MiB, "count": 1, "total_count": 1}
    assert s["heaps"][1]["used"] == 64 * MiB and s["heaps"][1]["device_local"] is False
    assert s["staging"]["used"] == 8 * MiB and s["staging"]["quota"] == b.staging_quota
    assert s["blocks"] == {"count": 3, "bytes": 768 * MiB, "allocated_total": 0}
    assert s["overflow"] == "error" and s["overflow_allocations"] == 0 and s["overflow_bytes"] == 0
    with pytest.raises(ValueError, match="already used"):
        b.add_stats_provider("blocks", dict)
    with pytest.raises(ValueError, match="already used"):
        b.add_stats_provider("heaps", dict)
    b.remove_stats_provider("blocks")
    assert "blocks" not in b.stats()


def test_StatsResetPropagation() -> None:
    b = discrete_gpu()
    resets: list[str] = []
    b.add_stats_provider("blocks", lambda: {"peak": 9}, reset=lambda: resets.append("blocks"))
    b.add_stats_provider("tracker", lambda: {}, reset=lambda: resets.append("tracker"))
    b.reserve(GiB, category="texture")
    b.reserve(GiB, category="texture")
    b.release(GiB, category="texture")
    b.acquire_staging(MiB)
    b.release_staging(MiB)
    assert b.peak == 2 * GiB + 0
    b.reset_stats()
    s = b.stats()
    assert resets == ["blocks", "tracker"]
    assert b.used == GiB and b.peak == GiB  # current use stays; peaks drop to it
    assert s["categories"]["texture"] == {"bytes": GiB, "peak": GiB, "count": 1, "total_count": 0}
    assert s["total_allocations"] == 0 and s["allocation_count"] == 1
    assert s["staging"]["peak"] == 0 and s["staging"]["acquisitions"] == 0
    assert s["rejections"] == 0 and s["warnings"] == 0


# ---------------------------------------------------------------- warnings


def test_WarningThresholdDetection(caplog: pytest.LogCaptureFixture) -> None:
    b = BudgetManager([1000], name="gpu0")  # limit 900, threshold 800
    events: list[BudgetEvent] = []
    fn = b.add_warning_callback(events.append)
    b.reserve(700, category="mesh")
    assert events == []
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        b.reserve(100, category="mesh")  # 800: crosses
    assert events == [BudgetEvent(heap=0, used=800, threshold=800, limit=900)]
    assert any("warning threshold" in r.getMessage() and r.name == LOGGER for r in caplog.records)
    b.reserve(50, category="mesh")  # still above: no second notification
    b.release(50, category="mesh")
    b.release(100, category="mesh")  # 700: below, re-armed
    assert len(events) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        b.reserve(150, category="mesh")  # crosses again
    assert len(events) == 2 and events[1].used == 850
    assert len([r for r in caplog.records if "warning threshold" in r.getMessage()]) == 1
    b.remove_warning_callback(fn)
    b.release(150, category="mesh")
    b.reserve(150, category="mesh")
    assert len(events) == 2
    with pytest.raises(ValueError):
        b.remove_warning_callback(fn)


def test_warning_callback_may_release_and_may_fail(caplog: pytest.LogCaptureFixture) -> None:
    b = BudgetManager([1000])
    order: list[str] = []

    def evict(event: BudgetEvent) -> None:  # a cache evicting on the warning re-enters the budget: no deadlock
        b.release(100, category="cache")
        order.append("evict")

    def broken(event: BudgetEvent) -> None:
        raise RuntimeError("boom")

    b.add_warning_callback(broken)
    b.add_warning_callback(evict)
    b.reserve(100, category="cache")
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        b.reserve(750, category="mesh")
    assert order == ["evict"] and b.used == 750
    assert any("raised" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- staging


def test_StagingQuotaManagement() -> None:
    small = BudgetManager([GiB])  # 10% of the limit is below 256 MiB
    assert small.staging_quota == int(0.9 * GiB) // 10
    big = BudgetManager([16 * GiB])
    assert big.staging_quota == DEFAULT_STAGING_CAP == 256 * MiB
    assert BudgetManager([16 * GiB], staging_quota=MiB).staging_quota == MiB

    big.acquire_staging(100 * MiB)
    big.acquire_staging(156 * MiB)  # exactly the quota
    assert big.staging_used == 256 * MiB
    assert big.used == 256 * MiB  # staging counts in the device budget
    assert big.stats()["categories"]["staging"]["bytes"] == 256 * MiB
    big.release_staging(100 * MiB)
    big.release_staging(156 * MiB)
    assert big.staging_used == 0 and big.used == 0
    with pytest.raises(ValueError, match="double release"):
        big.release_staging(1)


def test_staging_wait_released_by_another_thread() -> None:
    b = BudgetManager([GiB], staging_quota=100)
    b.acquire_staging(80)
    got = threading.Event()

    def waiter() -> None:
        b.acquire_staging(50, timeout=10)
        got.set()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.1)
    assert not got.is_set() and b.stats()["staging"]["waiting"] == 1
    b.release_staging(80)
    t.join(5)
    assert got.is_set() and b.staging_used == 50
    s = b.stats()["staging"]
    assert s["waits"] == 1 and s["waiting"] == 0 and s["peak"] == 80


def test_staging_waiters_are_served_in_order() -> None:
    b = BudgetManager([GiB], staging_quota=100)
    b.acquire_staging(100)
    order: list[int] = []

    def waiter(n: int) -> None:
        b.acquire_staging(n, timeout=10)
        order.append(n)

    big = threading.Thread(target=waiter, args=(90,))
    big.start()
    while b.stats()["staging"]["waiting"] < 1:
        time.sleep(0.005)
    small = threading.Thread(target=waiter, args=(5,))
    small.start()
    while b.stats()["staging"]["waiting"] < 2:
        time.sleep(0.005)
    b.release_staging(100)
    big.join(5)
    small.join(5)
    assert order == [90, 5]  # the big request is not starved by the small one behind it


def test_StagingQuotaExceeded() -> None:
    b = BudgetManager([GiB], staging_quota=100, staging_timeout_s=0.05)
    b.acquire_staging(60)
    t0 = time.monotonic()
    with pytest.raises(StagingTimeoutError) as info:
        b.acquire_staging(50, who="texture uploader")
    assert time.monotonic() - t0 >= 0.04
    msg = str(info.value)
    assert "50 bytes" in msg and "60 of the 100-byte staging quota" in msg and "'texture uploader'" in msg
    assert "release_staging" in msg and isinstance(info.value, TimeoutError)
    with pytest.raises(StagingTimeoutError, match="waited 0.01 s"):
        b.acquire_staging(50, timeout=0.01)
    assert b.stats()["staging"]["timeouts"] == 2 and b.staging_used == 60
    # a request larger than the whole quota could never be granted: fail at once, naming the quota
    with pytest.raises(BudgetExceededError, match="staging quota"):
        b.acquire_staging(101)
    # the device budget is a hard limit even for staging
    d = BudgetManager([1000], staging_quota=500)
    d.reserve(800, category="mesh")
    with pytest.raises(BudgetExceededError, match="'staging'"):
        d.acquire_staging(200)
    assert d.staging_used == 0


def test_BudgetManagerLifetimeBinding() -> None:
    b = BudgetManager([GiB], staging_quota=10)
    b.reserve(100, category="mesh")
    b.acquire_staging(10)
    failures: list[BaseException] = []

    def waiter() -> None:
        try:
            b.acquire_staging(5, timeout=10)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion below
            failures.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    while b.stats()["staging"]["waiting"] < 1:
        time.sleep(0.005)
    b.close()
    t.join(5)
    assert len(failures) == 1 and isinstance(failures[0], DeviceClosedError)
    with pytest.raises(DeviceClosedError):
        b.reserve(1, category="mesh")
    b.release(100, category="mesh")  # late destroy() after close still balances the books
    b.release_staging(10)
    b.close()  # twice is fine
    assert b.closed and b.used == 0


# ---------------------------------------------------------------- overflow


def test_overflow_host_mode(caplog: pytest.LogCaptureFixture) -> None:
    heaps = [HeapBudgetInput(1000, True), HeapBudgetInput(10_000, False)]
    b = BudgetManager(heaps, overflow="host")
    assert b.reserve(900, heap=0, category="mesh") == 0
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert b.reserve(100, heap=0, category="mesh") == 1  # placed in host memory
        assert b.reserve(50, heap=0, category="mesh") == 1
    warnings = [r for r in caplog.records if "host memory" in r.getMessage()]
    assert len(warnings) == 1  # one warning per episode, the rest counted
    s = b.stats()
    assert s["overflow"] == "host" and s["overflow_allocations"] == 2 and s["overflow_bytes"] == 150
    assert b.used == 900 and b.heap_used(1) == 150
    b.release(100, heap=1, category="mesh")
    b.release(50, heap=1, category="mesh")
    # the host heap has a limit too
    b.reserve(8900, heap=1, category="readback")
    with pytest.raises(BudgetExceededError) as info:
        b.reserve(200, heap=0, category="mesh")
    assert info.value.heap == 0
    # back below the device threshold: the next overflow warns again
    b.release(900, heap=0, category="mesh")
    b.release(8900, heap=1, category="readback")
    b.reserve(900, heap=0, category="mesh")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        b.reserve(1, heap=0, category="mesh")
    assert len([r for r in caplog.records if "host memory" in r.getMessage()]) == 1
    b.reset_stats()
    assert b.stats()["overflow_allocations"] == 0


def test_overflow_needs_a_host_heap() -> None:
    unified = BudgetManager([HeapBudgetInput(1000, True)], overflow="host")  # e.g. lavapipe: one device-local heap
    assert unified.host_heap is None
    unified.reserve(900, category="mesh")
    with pytest.raises(BudgetExceededError):
        unified.reserve(1, category="mesh")
    strict = BudgetManager([HeapBudgetInput(1000, True), HeapBudgetInput(10_000, False)])
    strict.reserve(900, category="mesh")
    with pytest.raises(BudgetExceededError):
        strict.reserve(1, category="mesh")  # default mode is a hard error


# ---------------------------------------------------------------- threads


def test_ConcurrentAllocationThreadSafety() -> None:
    b = discrete_gpu(staging_quota=4 * MiB, staging_timeout_s=20)
    limit = b.limit
    n_threads, n_ops = 8, 3000
    events: list[BudgetEvent] = []
    b.add_warning_callback(events.append)
    errors: list[BaseException] = []
    rejected = [0] * n_threads
    start = threading.Barrier(n_threads)

    def worker(k: int) -> None:
        rng = random.Random(k)
        held: list[tuple[int, str]] = []
        staged: list[int] = []
        try:
            start.wait()
            for i in range(n_ops):
                r = rng.random()
                if r < 0.45 or not held:
                    n = rng.randrange(1, 256) * MiB
                    cat = f"cat{rng.randrange(4)}"
                    try:
                        b.reserve(n, heap=0, category=cat)
                    except BudgetExceededError:
                        rejected[k] += 1
                    else:
                        held.append((n, cat))
                elif r < 0.55:
                    n = rng.randrange(1, 1024) * 1024
                    if staged:  # never wait for staging while holding some (hold-and-wait deadlocks any quota)
                        b.release_staging(staged.pop())
                    try:
                        b.acquire_staging(n)
                    except BudgetExceededError:  # the device budget is hard for staging too
                        rejected[k] += 1
                    else:
                        staged.append(n)
                else:
                    n, cat = held.pop(rng.randrange(len(held)))
                    b.release(n, heap=0, category=cat)
                assert b.used <= limit
            for n, cat in held:
                b.release(n, heap=0, category=cat)
            for n in staged:
                b.release_staging(n)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so that races would show
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    s = b.stats()
    assert b.used == 0 and b.staging_used == 0 and s["allocation_count"] == 0
    assert all(c["bytes"] == 0 and c["count"] == 0 for c in s["categories"].values())
    assert 0 < b.peak <= limit
    assert s["rejections"] == sum(rejected) > 0  # the budget was really contended
    assert sum(c["total_count"] for c in s["categories"].values()) == s["total_allocations"]
    assert len(events) == s["warnings"] >= 1


def test_limit_bytes_and_warning_share_of_the_limit() -> None:
    """What ``Device`` builds from ``BudgetOptions``: a byte cap on device-local heaps and a warning threshold that is
    a share of the limit in force (never equal to it, whatever caps the limit)."""
    heaps = [HeapBudgetInput(8 * GiB, True), HeapBudgetInput(4 * GiB, False)]
    b = BudgetManager(heaps, budget_fraction=0.9, warning_share=0.8, limit_bytes=GiB)
    assert b.limits == (GiB, int(0.9 * 4 * GiB))  # the byte cap applies to device-local heaps only
    assert b.warning_thresholds == (int(0.8 * GiB), int(0.8 * int(0.9 * 4 * GiB)))
    tight = BudgetManager([HeapBudgetInput(8 * GiB, True, GiB // 2)], budget_fraction=0.9, warning_share=0.5,
                          limit_bytes=GiB)
    assert tight.limit == GiB // 2 and tight.warning_threshold == GiB // 4  # the EXT budget is tighter still
    legacy = BudgetManager([8 * GiB], budget_fraction=0.5, warning_fraction=0.8)  # the older spelling: heap share
    assert legacy.warning_threshold == legacy.limit == 4 * GiB
