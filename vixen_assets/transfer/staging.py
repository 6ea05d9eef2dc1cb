"""``StagingBufferPool``: host-visible staging buffers in size tiers, pre-warmed, counted against the staging quota.

Tiers are 64 KiB, 256 KiB, 1 MiB and 4 MiB (larger requests are split by the uploader). A checkout takes a free
buffer of the smallest tier that holds the request (a *hit*), else creates one while the pool's bytes stay within
the staging quota, else *waits*: it calls the pool's ``on_exhausted`` hook (the uploader flushes its pending batch
and waits for the oldest in-flight one, whose buffers come back) and tries again. Exceeding the quota therefore
throttles and never fails; only a wait longer than the budget's ``staging_timeout_s`` raises
``StagingTimeoutError``. Pool buffers are charged to the budget's staging quota (category ``staging``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from ..errors import StagingTimeoutError
from ..memory.buffers import TRANSFER, Buffer, BufferFactory

KiB = 1 << 10
MiB = 1 << 20
TIERS = (64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB)


@dataclass
class StagingStats:
    """Usage counters of a staging pool."""

    checkouts: int = 0
    hits: int = 0
    created: int = 0
    waits: int = 0
    bytes_checked_out: int = 0
    returned: int = 0


class StagingBufferPool:
    """Thread-safe pool of host-visible staging buffers in :data:`TIERS` sizes."""

    def __init__(self, factory: BufferFactory, *, quota: int, timeout_s: float, prewarm: dict[int, int] | None = None,
                 on_exhausted: Callable[[], bool] | None = None) -> None:
        """Create the pool and pre-warm it.

        :param quota: the most bytes the pool may hold (the budget's staging quota).
        :param timeout_s: how long a checkout may wait in total.
        :param prewarm: buffers to create up front per tier size (default: one per tier that fits the quota).
        :param on_exhausted: called when no buffer is free and the quota is used up; it should make buffers come
            back (flush, wait for the oldest batch) and return True if it did anything.
        """
        self._factory = factory
        self.quota = quota
        self.timeout_s = timeout_s
        self.tiers = tuple(t for t in TIERS if t <= max(quota, TIERS[0])) or (TIERS[0],)
        self._free: dict[int, list[Buffer]] = {t: [] for t in self.tiers}
        self._all: list[Buffer] = []
        self._bytes = 0
        self._lock = threading.Condition()
        self.on_exhausted = on_exhausted
        self.stats = StagingStats()
        if prewarm is None:
            prewarm = {}
            left = quota
            for t in self.tiers:
                if t <= left // 4:
                    prewarm[t] = 1
                    left -= t
        for tier, count in prewarm.items():
            for _ in range(count):
                self._free[tier].append(self._create(tier))

    @property
    def max_chunk(self) -> int:
        """The largest single checkout (the largest tier)."""
        return self.tiers[-1]

    @property
    def pooled_bytes(self) -> int:
        """Bytes of staging memory the pool holds (free and checked out)."""
        return self._bytes

    def _create(self, tier: int) -> Buffer:
        buf = self._factory.create(tier, TRANSFER, strategy="host_visible", name=f"staging-{tier // KiB}KiB",
                                   category="staging")
        self._all.append(buf)
        self._bytes += tier
        self.stats.created += 1
        return buf

    def tier_for(self, size: int) -> int:
        """The smallest tier holding ``size`` bytes (the largest tier when none does)."""
        for t in self.tiers:
            if size <= t:
                return t
        return self.tiers[-1]

    def checkout(self, size: int) -> Buffer:
        """Take a staging buffer of at least ``min(size, max_chunk)`` bytes, waiting while the quota is used up."""
        tier = self.tier_for(size)
        deadline = time.monotonic() + self.timeout_s
        waited = False
        buf: Buffer | None
        while True:
            with self._lock:
                self.stats.checkouts += 1 if not waited else 0
                for t in self.tiers:
                    if t >= tier and self._free[t]:
                        buf = self._free[t].pop()
                        self.stats.hits += 1
                        self.stats.bytes_checked_out += t
                        return buf
                if self._bytes + tier <= self.quota:
                    try:
                        buf = self._create(tier)
                    except StagingTimeoutError:
                        buf = None  # the budget's staging quota is held elsewhere: wait like any exhaustion
                    if buf is not None:
                        self.stats.bytes_checked_out += tier
                        return buf
                # nothing big enough: smaller free buffers could be dropped to make room for a bigger tier
                if self._drop_free_for(tier):
                    continue
            if not waited:
                self.stats.waits += 1
                waited = True
            progressed = self.on_exhausted() if self.on_exhausted is not None else False
            if time.monotonic() > deadline:
                raise StagingTimeoutError(
                    f"staging pool exhausted for {self.timeout_s:.3g} s: {self._bytes} of {self.quota} quota bytes "
                    f"held and none returned; a {tier}-byte staging buffer was wanted")
            if not progressed:
                with self._lock:
                    self._lock.wait(0.005)

    def _drop_free_for(self, tier: int) -> bool:
        """Destroy free smaller buffers until ``tier`` fits the quota; True if it now fits."""
        for t in self.tiers:
            while t < tier and self._free[t] and self._bytes + tier > self.quota:
                buf = self._free[t].pop()
                self._all.remove(buf)
                self._bytes -= t
                buf.destroy()
        return self._bytes + tier <= self.quota

    def give_back(self, buffers: list[Buffer]) -> None:
        """Return checked-out buffers (their GPU work is done)."""
        if not buffers:
            return
        with self._lock:
            for buf in buffers:
                self._free[buf.size].append(buf)
            self.stats.returned += len(buffers)
            self._lock.notify_all()

    def free_count(self) -> int:
        """How many buffers sit unused in the pool."""
        with self._lock:
            return sum(len(v) for v in self._free.values())

    def stats_dict(self) -> dict[str, Any]:
        """Counters plus current sizes."""
        d = asdict(self.stats)
        d.update(pooled_bytes=self._bytes, quota=self.quota, free_buffers=self.free_count(), buffers=len(self._all))
        return d

    def destroy(self) -> None:
        """Destroy every pool buffer (the uploader has drained first)."""
        with self._lock:
            for buf in self._all:
                buf.destroy()
            self._all.clear()
            self._free = {t: [] for t in self.tiers}
            self._bytes = 0
