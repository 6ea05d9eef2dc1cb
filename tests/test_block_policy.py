"""The block policy of :mod:`vixen_assets.memory.blocks` (issue 17) on the real device, through the public API.

Large requests get their own exactly-sized block; the rest share pool blocks fitted to them (32 MiB); where
``vkAllocateMemory`` is costly (forced here with ``assume_allocate_us``: lavapipe's calls are cheap) freed large
blocks are kept as spares, capped, reused by requests they fit within 1/8, and released under budget pressure or by
``trim()``. A short form of the issue-17 churn trace keeps held memory within the issue's bounds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import pytest

from vixen_assets.memory.blocks import DEDICATED_MIN, POOL_BLOCK_FACTOR, SPARE_SHARE
from vixen_assets.memory.options import BudgetOptions
from vixen_assets.testing import finish_test_device, open_test_device

KiB = 1 << 10
MiB = 1 << 20
STORAGE = 0x20


@pytest.fixture
def dev() -> Iterator[Any]:
    """A validated device with the default block policy (no ``block_size=``), no pre-warmed staging."""
    d = open_test_device(staging_quota=0)
    try:
        yield d
    finally:
        finish_test_device(d)


def held(dev: Any) -> int:
    return sum(b["size"] for b in dev.memory_report()["blocks"])


def test_large_requests_get_exact_blocks_and_the_rest_share_fitted_blocks(dev: Any) -> None:
    sub = dev.context.suballocator
    sub.assume_allocate_us = 20.0  # cheap, as lavapipe measures
    big = dev.create_buffer(DEDICATED_MIN, STORAGE, name="big")
    mid = dev.create_buffer(DEDICATED_MIN - 64 * KiB, STORAGE, name="mid")
    mid2 = dev.create_buffer(1 * MiB, STORAGE, name="mid2")
    try:
        assert big.allocation.block.dedicated and big.allocation.block.size == big.nbytes
        assert not mid.allocation.block.dedicated
        assert mid.allocation.block.size == POOL_BLOCK_FACTOR * DEDICATED_MIN
        assert mid2.allocation.block is mid.allocation.block  # the fullest block with room
        before = held(dev)
        with dev.phase("free-big") as phase:
            big.destroy()
        assert phase.free_memory == 1 and held(dev) == before - big.nbytes  # no spare on a cheap heap
    finally:
        for b in (big, mid, mid2):
            b.destroy()


def test_spare_blocks_on_a_costly_heap(dev: Any) -> None:
    sub = dev.context.suballocator
    sub.assume_allocate_us = 2000.0  # an H200's vkAllocateMemory
    keep = [dev.create_buffer(64 * MiB, STORAGE, name=f"keep{i}") for i in range(7)]  # 448 MiB held: room for a spare
    a = dev.create_buffer(12 * MiB, STORAGE, name="a")
    try:
        block = a.allocation.block
        with dev.phase("spare") as phase:
            a.destroy()
            b = dev.create_buffer(11 * MiB, STORAGE, name="b")  # 12 MiB <= 11 MiB * 9/8: reuses the spare
        assert phase.allocate_memory == 0 and phase.free_memory == 0 and b.allocation.block is block
        with dev.phase("no-fit") as phase:
            b.destroy()
            c = dev.create_buffer(10 * MiB, STORAGE, name="c")  # 12 MiB > 10 MiB * 9/8: a new exact block
            d = dev.create_buffer(13 * MiB, STORAGE, name="d")  # larger than the spare
        assert phase.allocate_memory == 2 and c.allocation.block.size == c.nbytes
        assert any(block in p.spares for p in sub.pools())
        c.destroy()
        d.destroy()
        spares = [s for p in sub.pools() for s in p.spares]
        assert spares and SPARE_SHARE * sum(s.size for s in spares) <= sub.heap_block_bytes(block.heap)  # the cap
        assert sub.trim() >= len(spares) and not any(p.spares for p in sub.pools())
    finally:
        for x in keep:
            x.destroy()


def test_spares_give_way_under_budget_pressure() -> None:
    dev = open_test_device(budget=BudgetOptions(limit_bytes=512 * MiB, staging_quota=0))
    try:
        sub = dev.context.suballocator
        sub.assume_allocate_us = 2000.0
        keep = [dev.create_buffer(64 * MiB, STORAGE, name=f"keep{i}") for i in range(7)]
        a = dev.create_buffer(12 * MiB, STORAGE, name="a")
        a.destroy()
        assert [s.size for p in sub.pools() for s in p.spares] == [a.nbytes]
        big = dev.create_buffer(60 * MiB, STORAGE, name="big")  # only fits once the spare is released
        assert not any(p.spares for p in sub.pools())
        assert sub.heap_block_bytes(big.allocation.block.heap) <= 512 * MiB
        for b in keep + [big]:
            b.destroy()
    finally:
        finish_test_device(dev)


def churn(dev: Any, n_ops: int, seed: int) -> tuple[float, float]:
    """The issue-17 trace (sizes 60 % 1-64 KiB, 30 % 64 KiB-4 MiB, 10 % 4-64 MiB, live near ``target``) (20,000 operations)
    2 GiB; return (held/live - 1 at the end, worst held/live - 1 after warm-up)."""
    rng = random.Random(seed)
    target = 2 << 30
    live: list[Any] = []
    live_bytes = 0
    worst = 0.0
    warm = False
    classes = ((0.60, KiB, 64 * KiB), (0.90, 64 * KiB, 4 * MiB), (1.01, 4 * MiB, 64 * MiB))
    try:
        for i in range(n_ops):
            if not live or rng.random() < (0.75 if live_bytes < target else 0.25):
                r = rng.random()
                lo, hi = next((lo, hi) for p, lo, hi in classes if r < p)
                size = (int(math.exp(rng.uniform(math.log(lo), math.log(hi)))) + 255) & ~255
                live.append(dev.create_buffer(size, STORAGE))
                live_bytes += size
            else:
                n = len(live)
                j = rng.randrange(max(n - 64, 0), n) if rng.random() < 0.5 else rng.randrange(n)
                b = live.pop(j)
                live_bytes -= b.size
                b.destroy()
            warm = warm or live_bytes >= 0.9 * target
            if warm and i % 250 == 0:
                worst = max(worst, held(dev) / live_bytes - 1)
        return held(dev) / live_bytes - 1, worst
    finally:
        for b in live:
            b.destroy()


def test_churn_holds_little_more_than_is_live(dev: Any) -> None:
    dev.context.suballocator.assume_allocate_us = 20.0
    end, worst = churn(dev, 20000, seed=17)
    assert end <= 0.15 and worst <= 0.25, (end, worst)
