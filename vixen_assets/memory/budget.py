"""The per-device memory budget: limits, warning threshold, staging quota, host overflow and stats (pure logic).

One :class:`BudgetManager` belongs to one device; two devices never share one. It knows nothing about Vulkan:
the allocator above the driver asks :meth:`BudgetManager.reserve` *before* calling ``vkAllocateMemory`` (so a
budget failure raises :class:`~vixen_assets.errors.BudgetExceededError` with nothing to undo) and calls
:meth:`BudgetManager.release` after ``vkFreeMemory``. Every method is thread-safe (one lock, integer maths).

Limits, per heap:

- ``limit = floor(budget_fraction * heap size)``, capped at ``limit_bytes`` on device-local heaps, or the
  ``VK_EXT_memory_budget`` heap budget when that is smaller;
- ``warning_threshold = floor(warning_share * limit)`` when ``warning_share`` is given (what ``Device`` does,
  from ``BudgetOptions.warning_fraction``): a share of the limit in force, so with a tight ``budget_fraction`` or
  ``limit_bytes`` the warning, and cache eviction, still comes before the limit. Otherwise (the older spelling)
  ``floor(warning_fraction * heap size)``, scaled by the same factor as the limit when the extension's budget
  lowered it, and never above the limit.

The *primary* heap (the largest device-local one) is what :attr:`BudgetManager.limit`, :attr:`~BudgetManager.used`
and :attr:`~BudgetManager.peak` describe; the per-heap numbers are in :meth:`BudgetManager.stats`.

Staging memory is a quota inside the primary heap's budget (default: the smaller of 256 MiB and 10% of its limit).
:meth:`BudgetManager.acquire_staging` waits, first come first served, until enough staging memory is returned and
raises :class:`~vixen_assets.errors.StagingTimeoutError` after ``staging_timeout_s``; staging bytes are also charged
to the device budget under the category ``"staging"``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vixen_assets.errors import BudgetExceededError, ConfigError, DeviceClosedError, StagingTimeoutError

__all__ = [
    "BudgetEvent",
    "BudgetManager",
    "HeapBudgetInput",
    "OVERFLOW_ERROR",
    "OVERFLOW_HOST",
    "STAGING_CATEGORY",
    "DEFAULT_STAGING_CAP",
]

logger = logging.getLogger("vixen_assets.memory")

#: ``overflow`` mode: a reservation over the budget raises :class:`~vixen_assets.errors.BudgetExceededError`.
OVERFLOW_ERROR = "error"
#: ``overflow`` mode: a device-local reservation over the budget is charged to the host heap instead.
OVERFLOW_HOST = "host"
#: The category staging memory is charged under.
STAGING_CATEGORY = "staging"
#: The default staging quota is the smaller of this and 10% of the primary heap's limit.
DEFAULT_STAGING_CAP = 256 << 20

_MiB = 1 << 20

# stats() keys that a stats provider may not take
_RESERVED_KEYS = frozenset(
    {
        "name", "used", "peak", "limit", "warning_threshold", "total_used", "allocation_count", "total_allocations",
        "rejections", "warnings", "primary_heap", "host_heap", "heaps", "categories", "staging", "overflow",
        "overflow_allocations", "overflow_bytes", "closed",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class HeapBudgetInput:
    """What the budget needs to know about one memory heap.

    :param size: ``VkMemoryHeap::size`` in bytes.
    :param device_local: whether the heap has ``VK_MEMORY_HEAP_DEVICE_LOCAL_BIT``.
    :param budget_bytes: ``VkPhysicalDeviceMemoryBudgetPropertiesEXT::heapBudget`` for this heap, or ``None`` when
        ``VK_EXT_memory_budget`` is unavailable.
    """

    size: int
    device_local: bool = True
    budget_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class BudgetEvent:
    """Passed to warning callbacks when a heap's usage crosses its warning threshold upward."""

    heap: int
    used: int
    threshold: int
    limit: int


def _limits_for(
    heap: HeapBudgetInput, budget_fraction: float, warning_fraction: float, limit_bytes: int | None = None,
    warning_share: float | None = None,
) -> tuple[int, int]:
    """``(limit, warning_threshold)`` of one heap (see the module docstring)."""
    limit = math.floor(budget_fraction * heap.size)
    if limit_bytes is not None and heap.device_local:
        limit = min(limit, limit_bytes)
    if warning_share is not None:
        if heap.budget_bytes is not None and heap.budget_bytes < limit:
            limit = max(heap.budget_bytes, 0)  # the driver's budget is tighter
        # a share of the limit in force, so the warning (and cache eviction) always comes before the limit
        return limit, min(math.floor(warning_share * limit), limit)
    threshold = math.floor(warning_fraction * heap.size)
    if heap.budget_bytes is not None and heap.budget_bytes < limit:
        # the driver's budget is tighter: keep the warning at the same fraction of the (lower) limit
        threshold = math.floor(threshold * (max(heap.budget_bytes, 0) / limit))
        limit = max(heap.budget_bytes, 0)
    return limit, min(threshold, limit)


class BudgetManager:
    """Memory budget of one device: hard limits, a warning threshold, a staging quota and stats.

    :param heaps: one entry per ``VkMemoryHeap``, in heap-index order (a bare ``int`` is a device-local heap of
        that size without an extension budget).
    :param budget_fraction: the share of each heap that may be used (0 makes every reservation fail).
    :param warning_fraction: the share of each heap at which warning callbacks fire (when ``warning_share`` is None).
    :param limit_bytes: a byte cap on every device-local heap's limit (``None``: the fraction alone).
    :param warning_share: the share of each heap's *limit* at which warning callbacks fire (wins over
        ``warning_fraction``).
    :param staging_quota: bytes of staging memory that may be held at once (default: the smaller of 256 MiB and 10%
        of the primary heap's limit).
    :param staging_timeout_s: how long :meth:`acquire_staging` waits by default before raising.
    :param overflow: ``"error"`` (default): over-budget reservations raise; ``"host"``: a device-local reservation
        that does not fit is charged to the host heap instead, with a logged warning and the ``overflow_*`` stats.
    :param host_heap: the heap overflow goes to (default: the largest heap without the device-local bit; with
        none, overflow has nowhere to go and reservations raise as in ``"error"`` mode).
    :param name: a label for messages and ``repr`` (e.g. the device name).
    """

    def __init__(
        self,
        heaps: Sequence[HeapBudgetInput | int],
        *,
        budget_fraction: float = 0.9,
        warning_fraction: float = 0.8,
        limit_bytes: int | None = None,
        warning_share: float | None = None,
        staging_quota: int | None = None,
        staging_timeout_s: float = 30.0,
        overflow: str = OVERFLOW_ERROR,
        host_heap: int | None = None,
        name: str = "",
    ) -> None:
        specs = [h if isinstance(h, HeapBudgetInput) else HeapBudgetInput(int(h)) for h in heaps]
        if not specs:
            raise ConfigError("BudgetManager needs at least one heap")
        for i, h in enumerate(specs):
            if h.size < 0:
                raise ConfigError(f"heap {i} has a negative size ({h.size})")
        if not 0.0 <= budget_fraction <= 1.0:
            raise ConfigError(f"budget_fraction must be within [0, 1], got {budget_fraction!r}")
        if not 0.0 <= warning_fraction <= 1.0:
            raise ConfigError(f"warning_fraction must be within [0, 1], got {warning_fraction!r}")
        if overflow not in (OVERFLOW_ERROR, OVERFLOW_HOST):
            raise ConfigError(f"overflow must be {OVERFLOW_ERROR!r} or {OVERFLOW_HOST!r}, got {overflow!r}")
        if staging_timeout_s < 0:
            raise ConfigError(f"staging_timeout_s must be >= 0, got {staging_timeout_s!r}")
        if staging_quota is not None and staging_quota < 0:
            raise ConfigError(f"staging_quota must be >= 0, got {staging_quota!r}")

        self.name = name
        self._specs = specs
        self._budget_fraction = float(budget_fraction)
        self._warning_fraction = float(warning_fraction)
        self._limit_bytes = limit_bytes
        self._warning_share = warning_share
        n = len(specs)
        self._limits = [0] * n
        self._thresholds = [0] * n
        for i, h in enumerate(specs):
            self._limits[i], self._thresholds[i] = _limits_for(h, budget_fraction, warning_fraction, limit_bytes, warning_share)
        self._device_local = [h.device_local for h in specs]
        local = [i for i in range(n) if specs[i].device_local]
        self._primary = max(local, key=lambda i: (specs[i].size, -i)) if local else 0
        if host_heap is None:
            hosts = [i for i in range(n) if not specs[i].device_local]
            host_heap = max(hosts, key=lambda i: (specs[i].size, -i)) if hosts else None
        elif not 0 <= host_heap < n:
            raise ConfigError(f"host_heap {host_heap} is not one of the {n} heaps")
        self._host_heap = host_heap
        self._overflow_host = overflow == OVERFLOW_HOST and host_heap is not None
        self._overflow = overflow

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._used = [0] * n
        self._peak = [0] * n
        self._count = [0] * n
        # Hot-path helpers, derived from the limits by _derive_locked():
        #   _cap[h]:     the most ``used`` may reach; -1 when nothing may be reserved (zero limit, or closed)
        #   _trigger[h]: usage at which the next warning fires: the threshold while armed, else never (inf)
        self._cap = [0] * n
        self._trigger: list[float] = [0] * n
        self._overflow_armed = [True] * n
        #: category -> [bytes, peak, live count, reservations since reset]
        self._cats: dict[str, list[int]] = {}
        self._rejections = 0
        self._warnings = 0
        self._overflow_allocs = 0
        self._overflow_bytes = 0
        self._closed = False
        for i in range(n):
            self._derive_locked(i)

        if staging_quota is None:
            staging_quota = min(DEFAULT_STAGING_CAP, self._limits[self._primary] // 10)
        self._staging_quota = int(staging_quota)
        self._staging_timeout_s = float(staging_timeout_s)
        self._staging_used = 0
        self._staging_peak = 0
        self._staging_acquired = 0
        self._staging_waits = 0
        self._staging_timeouts = 0
        self._staging_queue: deque[object] = deque()

        self._callbacks: list[Callable[[BudgetEvent], object]] = []
        self._providers: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[], object] | None]] = {}

    def _derive_locked(self, h: int) -> None:
        """Recompute heap ``h``'s hot-path cap and warning trigger from its limit, threshold and usage."""
        limit = self._limits[h]
        self._cap[h] = -1 if (self._closed or not limit) else limit
        self._trigger[h] = self._thresholds[h] if self._used[h] < self._thresholds[h] else math.inf

    # ------------------------------------------------------------------ reserve / release (hot path)

    def reserve(self, nbytes: int, *, heap: int | None = None, category: str) -> int:
        """Charge ``nbytes`` to ``heap`` for ``category``; call it *before* the Vulkan allocation.

        :param nbytes: bytes the allocation will take (>= 0).
        :param heap: the heap index (default: the primary heap).
        :param category: who asks (a cacher's name, ``"staging"``, ...): stats are kept per category.
        :returns: the heap actually charged: ``heap`` itself, or the host heap when ``overflow="host"`` moved a
            device-local reservation there (allocate in host memory then, and release on that heap).
        :raises BudgetExceededError: the reservation would take the heap over its limit (or the limit is 0).
        :raises DeviceClosedError: after :meth:`close`.
        """
        h = self._primary if heap is None else heap
        note = None
        lock = self._lock
        lock.acquire()
        try:
            usedl = self._used
            used = usedl[h] + nbytes
            if used > self._cap[h] or nbytes < 0 or h < 0:
                h, used, note = self._reserve_slow_locked(nbytes, h, category)
            usedl[h] = used
            peak = self._peak
            if used > peak[h]:
                peak[h] = used
            self._count[h] += 1
            c = self._cats.get(category)
            if c is None:
                c = self._cats[category] = [0, 0, 0, 0]
            b = c[0] + nbytes
            c[0] = b
            if b > c[1]:
                c[1] = b
            c[2] += 1
            c[3] += 1
            event = self._disarm_locked(h, used) if used >= self._trigger[h] else None
        except IndexError:
            raise ConfigError(f"reserve: heap {heap!r} is not one of the {len(self._limits)} heaps") from None
        finally:
            lock.release()
        if note is not None:
            self._log_overflow(nbytes, category, h, *note)
        if event is not None:
            self._notify(event)
        return h

    def check(self, nbytes: int, *, heap: int | None = None, category: str) -> None:
        """Raise :class:`BudgetExceededError` (counted as a rejection) if ``nbytes`` could not be reserved now, in
        ``overflow="error"`` mode; reserves nothing. Used before creating a Vulkan object whose exact size is known
        only after it exists."""
        h = self._primary if heap is None else heap
        with self._lock:
            if self._overflow_host or self._used[h] + nbytes <= self._limits[h] and self._limits[h]:
                return
            self._rejections += 1
            raise BudgetExceededError(nbytes, self._used[h], self._limits[h], who=category, heap=h)

    def release(self, nbytes: int, *, heap: int | None = None, category: str) -> None:
        """Give back a reservation: the same ``nbytes``, the heap :meth:`reserve` returned, the same category.

        Allowed after :meth:`close` (resources are destroyed late).

        :raises ValueError: more is released than is reserved on that heap or for that category (a double release).
        """
        h = self._primary if heap is None else heap
        lock = self._lock
        lock.acquire()
        try:
            c = self._cats.get(category)
            usedl = self._used
            used = usedl[h] - nbytes
            count = self._count
            if c is None or used < 0 or nbytes < 0 or h < 0 or c[0] < nbytes or not c[2] or not count[h]:
                raise ConfigError(self._bad_release_message(nbytes, h, category))
            usedl[h] = used
            count[h] -= 1
            c[0] -= nbytes
            c[2] -= 1
            thr = self._thresholds[h]
            if used < thr:
                self._trigger[h] = thr
                self._overflow_armed[h] = True
        except IndexError:
            raise ConfigError(f"release: heap {heap!r} is not one of the {len(self._limits)} heaps") from None
        finally:
            lock.release()

    def _reserve_slow_locked(self, nbytes: int, heap: int, category: str) -> tuple[int, int, tuple[int, int, int, bool] | None]:
        """``reserve`` outside the fast path: bad arguments, closed, or over budget (overflow or raise).
        Returns ``(heap to charge, its new usage, overflow note for the log or None)``."""
        n = len(self._limits)
        if not 0 <= heap < n:
            raise ConfigError(f"reserve: heap {heap!r} is not one of the {n} heaps")
        if nbytes < 0:
            raise ConfigError(f"reserve: nbytes must be >= 0, got {nbytes!r}")
        if self._closed:
            raise DeviceClosedError(f"budget {self.name!r} is closed: cannot reserve {nbytes} bytes for {category!r}")
        host = self._host_heap
        if self._overflow_host and self._device_local[heap] and host is not None and host != heap:
            used = self._used[host] + nbytes
            if used <= self._cap[host]:
                self._overflow_allocs += 1
                self._overflow_bytes += nbytes
                note = (heap, self._used[heap], self._limits[heap], self._overflow_armed[heap])
                self._overflow_armed[heap] = False
                return host, used, note
        self._rejections += 1
        raise BudgetExceededError(nbytes, self._used[heap], self._limits[heap], who=category, heap=heap)

    def _log_overflow(
        self, nbytes: int, category: str, host: int, heap: int, used: int, limit: int, first: bool
    ) -> None:
        """A warning for the first overflow of an episode (until the heap drops below its warning threshold
        again), debug messages for the rest: an overflowing load would otherwise log once per buffer."""
        logger.log(
            logging.WARNING if first else logging.DEBUG,
            "device memory budget%s exhausted on heap %d (%d of %d bytes used): %d bytes for %r placed in host "
            "memory (heap %d) instead%s",
            f" of {self.name!r}" if self.name else "", heap, used, limit, nbytes, category, host,
            "; further overflows are counted in stats()['overflow_allocations']" if first else "",
        )

    def _disarm_locked(self, heap: int, used: int) -> BudgetEvent:
        self._trigger[heap] = math.inf
        self._warnings += 1
        return BudgetEvent(heap, used, self._thresholds[heap], self._limits[heap])

    def _notify(self, event: BudgetEvent) -> None:
        """Log the crossing and call every warning callback (outside the lock, so callbacks may release memory)."""
        logger.warning(
            "device memory%s crossed the warning threshold on heap %d: %d bytes used, threshold %d, limit %d "
            "(%.1f MiB left)",
            f" of {self.name!r}" if self.name else "", event.heap, event.used, event.threshold, event.limit,
            (event.limit - event.used) / _MiB,
        )
        with self._lock:
            callbacks = tuple(self._callbacks)
        for fn in callbacks:
            try:
                fn(event)
            except Exception:
                logger.exception("budget warning callback %r raised", fn)

    def _bad_release_message(self, nbytes: int, heap: int, category: str) -> str:
        if not 0 <= heap < len(self._limits):
            return f"release: heap {heap!r} is not one of the {len(self._limits)} heaps"
        c = self._cats.get(category)
        held = c[0] if c else 0
        return (
            f"release of {nbytes} bytes for {category!r} on heap {heap} does not match a reservation: "
            f"{self._used[heap]} bytes are reserved on that heap and {held} for that category (double release, "
            f"or released on another heap than reserve() returned?)"
        )

    # ------------------------------------------------------------------ staging quota

    def acquire_staging(self, nbytes: int, *, timeout: float | None = None, who: str = "") -> None:
        """Take ``nbytes`` of the staging quota, waiting (first come, first served) until enough is returned.

        The bytes are also charged to the primary heap's device budget under the category ``"staging"``.

        :param nbytes: staging bytes wanted (at most :attr:`staging_quota`).
        :param timeout: seconds to wait (default: ``staging_timeout_s`` from the constructor).
        :param who: who waits, for the timeout message.
        :raises StagingTimeoutError: the quota stayed exhausted for ``timeout`` seconds.
        :raises BudgetExceededError: ``nbytes`` is larger than the whole quota (it could never be granted; split the
            upload), or the device budget itself is exhausted (a hard failure, no waiting).
        :raises DeviceClosedError: the budget was closed before or while waiting.
        """
        if nbytes < 0:
            raise ConfigError(f"acquire_staging: nbytes must be >= 0, got {nbytes!r}")
        h = self._primary
        quota = self._staging_quota
        if nbytes > quota:
            with self._lock:
                self._rejections += 1
            raise BudgetExceededError(
                nbytes, self._staging_used, quota, who=f"staging quota{': ' + who if who else ''}", heap=h
            )
        wait_s = self._staging_timeout_s if timeout is None else timeout
        with self._cond:
            if self._closed:
                raise DeviceClosedError(f"budget {self.name!r} is closed: cannot acquire {nbytes} staging bytes")
            if self._staging_queue or self._staging_used + nbytes > quota:
                self._wait_for_staging_locked(nbytes, wait_s, who)
            used = self._used[h] + nbytes
            if used > self._cap[h]:
                self._rejections += 1
                raise BudgetExceededError(nbytes, self._used[h], self._limits[h], who=STAGING_CATEGORY, heap=h)
            self._staging_used += nbytes
            self._staging_acquired += 1
            if self._staging_used > self._staging_peak:
                self._staging_peak = self._staging_used
            self._used[h] = used
            if used > self._peak[h]:
                self._peak[h] = used
            self._count[h] += 1
            c = self._cats.get(STAGING_CATEGORY)
            if c is None:
                c = self._cats[STAGING_CATEGORY] = [0, 0, 0, 0]
            c[0] += nbytes
            c[1] = max(c[1], c[0])
            c[2] += 1
            c[3] += 1
            event = self._disarm_locked(h, used) if used >= self._trigger[h] else None
        if event is not None:
            self._notify(event)

    def _wait_for_staging_locked(self, nbytes: int, wait_s: float, who: str) -> None:
        """Queue behind earlier waiters; return once first in line with room, or raise on timeout/close."""
        ticket = object()
        queue = self._staging_queue
        queue.append(ticket)
        self._staging_waits += 1
        deadline = time.monotonic() + wait_s
        try:
            while True:
                if self._closed:
                    raise DeviceClosedError(
                        f"budget {self.name!r} was closed while waiting for {nbytes} staging bytes"
                    )
                if queue[0] is ticket and self._staging_used + nbytes <= self._staging_quota:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._staging_timeouts += 1
                    ahead = queue.index(ticket)
                    raise StagingTimeoutError(
                        f"staging quota exhausted: waited {wait_s:.3g} s for {nbytes} bytes of staging memory"
                        f"{' for ' + repr(who) if who else ''}, but {self._staging_used} of the "
                        f"{self._staging_quota}-byte staging quota stayed in use ({ahead} earlier request(s) still "
                        f"waiting); release staging memory sooner (release_staging), upload in smaller pieces, or "
                        f"raise staging_quota / staging_timeout_s"
                    )
                self._cond.wait(remaining)
        finally:
            queue.remove(ticket)
            self._cond.notify_all()  # the next in line may fit now

    def release_staging(self, nbytes: int) -> None:
        """Return ``nbytes`` of staging memory (quota and device budget); wakes waiting :meth:`acquire_staging`\\ s.

        :raises ValueError: more is returned than is held.
        """
        h = self._primary
        with self._cond:
            c = self._cats.get(STAGING_CATEGORY)
            if nbytes < 0 or nbytes > self._staging_used or c is None or c[0] < nbytes or self._used[h] < nbytes:
                raise ConfigError(
                    f"release_staging({nbytes}): only {self._staging_used} staging bytes are held (double release?)"
                )
            self._staging_used -= nbytes
            used = self._used[h] - nbytes
            self._used[h] = used
            self._count[h] -= 1
            c[0] -= nbytes
            c[2] -= 1
            if used < self._thresholds[h]:
                self._trigger[h] = self._thresholds[h]
                self._overflow_armed[h] = True
            self._cond.notify_all()

    # ------------------------------------------------------------------ runtime updates and lifetime

    def update_heap_budgets(self, budgets: Sequence[int | None]) -> None:
        """Feed fresh ``VK_EXT_memory_budget`` heap budgets (they change while other processes use the GPU).

        Limits and thresholds are recomputed; a heap now at or over its new threshold notifies as a crossing.
        """
        if len(budgets) != len(self._specs):
            raise ConfigError(f"expected {len(self._specs)} heap budgets, got {len(budgets)}")
        events = []
        with self._lock:
            for i, b in enumerate(budgets):
                spec = self._specs[i]
                self._specs[i] = HeapBudgetInput(spec.size, spec.device_local, b)
                self._limits[i], self._thresholds[i] = _limits_for(
                    self._specs[i], self._budget_fraction, self._warning_fraction, self._limit_bytes,
                    self._warning_share
                )
                was_armed = self._trigger[i] != math.inf
                self._derive_locked(i)
                used = self._used[i]
                if used and was_armed and used >= self._thresholds[i]:
                    events.append(self._disarm_locked(i, used))
        for event in events:
            self._notify(event)

    def close(self) -> None:
        """End the budget's life with its device: later reservations raise ``DeviceClosedError``, staging waiters
        wake up and raise it; releases stay allowed. Safe to call twice."""
        with self._cond:
            self._closed = True
            for i in range(len(self._cap)):
                self._derive_locked(i)
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    # ------------------------------------------------------------------ callbacks and stats providers

    def add_warning_callback(self, fn: Callable[[BudgetEvent], object]) -> Callable[[BudgetEvent], object]:
        """Call ``fn(BudgetEvent)`` each time a heap's usage crosses its warning threshold upward (once per crossing;
        re-armed when usage drops below it). Returns ``fn``, so it works as a decorator."""
        with self._lock:
            self._callbacks.append(fn)
        return fn

    def remove_warning_callback(self, fn: Callable[[BudgetEvent], object]) -> None:
        """Stop calling ``fn``. :raises ValueError: it was not registered."""
        with self._lock:
            self._callbacks.remove(fn)

    def add_stats_provider(
        self, name: str, fn: Callable[[], dict[str, Any]], reset: Callable[[], object] | None = None
    ) -> None:
        """Let a lower layer add to :meth:`stats` (``stats()[name] = fn()``) and to :meth:`reset_stats` (``reset()``).

        Providers are called without the budget's lock held, so they may take their own locks.

        :raises ValueError: ``name`` is taken (by another provider or a built-in key).
        """
        with self._lock:
            if name in _RESERVED_KEYS or name in self._providers:
                raise ConfigError(f"stats provider name {name!r} is already used")
            self._providers[name] = (fn, reset)

    def remove_stats_provider(self, name: str) -> None:
        """Unregister a provider. :raises KeyError: unknown name."""
        with self._lock:
            del self._providers[name]

    def stats(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot: totals, per heap, per category, staging, overflow, and every provider's
        contribution under its name."""
        with self._lock:
            p = self._primary
            heaps = [
                {
                    "index": i,
                    "size": spec.size,
                    "device_local": spec.device_local,
                    "budget_bytes": spec.budget_bytes,
                    "limit": self._limits[i],
                    "warning_threshold": self._thresholds[i],
                    "used": self._used[i],
                    "peak": self._peak[i],
                    "allocation_count": self._count[i],
                }
                for i, spec in enumerate(self._specs)
            ]
            out: dict[str, Any] = {
                "name": self.name,
                "used": self._used[p],
                "peak": self._peak[p],
                "limit": self._limits[p],
                "warning_threshold": self._thresholds[p],
                "total_used": sum(self._used),
                "allocation_count": sum(self._count),
                "total_allocations": sum(c[3] for c in self._cats.values()),
                "rejections": self._rejections,
                "warnings": self._warnings,
                "primary_heap": p,
                "host_heap": self._host_heap,
                "heaps": heaps,
                "categories": {
                    k: {"bytes": c[0], "peak": c[1], "count": c[2], "total_count": c[3]} for k, c in self._cats.items()
                },
                "staging": {
                    "quota": self._staging_quota,
                    "used": self._staging_used,
                    "peak": self._staging_peak,
                    "acquisitions": self._staging_acquired,
                    "waits": self._staging_waits,
                    "timeouts": self._staging_timeouts,
                    "waiting": len(self._staging_queue),
                },
                "overflow": self._overflow,
                "overflow_allocations": self._overflow_allocs,
                "overflow_bytes": self._overflow_bytes,
                "closed": self._closed,
            }
            providers = list(self._providers.items())
        for name, (fn, _reset) in providers:
            out[name] = fn()
        return out

    def reset_stats(self) -> None:
        """Reset peaks (to current use) and counters through every layer; what is in use stays counted."""
        with self._lock:
            self._peak[:] = self._used
            for c in self._cats.values():
                c[1] = c[0]
                c[3] = 0
            self._rejections = 0
            self._warnings = 0
            self._overflow_allocs = 0
            self._overflow_bytes = 0
            self._staging_peak = self._staging_used
            self._staging_acquired = 0
            self._staging_waits = 0
            self._staging_timeouts = 0
            resets = [r for _fn, r in self._providers.values() if r is not None]
        for reset in resets:
            reset()

    # -- the stats protocol (``memory.stats``) ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The budget's stats (see :meth:`stats`)."""
        return self.stats()

    def reset(self) -> None:
        """Zero counters and peaks (live numbers stay)."""
        self.reset_stats()

    # ------------------------------------------------------------------ queries

    @property
    def primary_heap(self) -> int:
        """Index of the largest device-local heap (0 when none is device-local)."""
        return self._primary

    @property
    def host_heap(self) -> int | None:
        """Index of the heap ``overflow="host"`` charges, or ``None``."""
        return self._host_heap

    @property
    def overflow(self) -> str:
        """``"error"`` or ``"host"``."""
        return self._overflow

    @property
    def limit(self) -> int:
        """Byte limit of the primary heap."""
        return self._limits[self._primary]

    @property
    def limits(self) -> tuple[int, ...]:
        """Byte limit of every heap, by heap index."""
        return tuple(self._limits)

    @property
    def warning_threshold(self) -> int:
        """Warning threshold of the primary heap."""
        return self._thresholds[self._primary]

    @property
    def warning_thresholds(self) -> tuple[int, ...]:
        """Warning threshold of every heap."""
        return tuple(self._thresholds)

    @property
    def used(self) -> int:
        """Bytes reserved on the primary heap (staging included)."""
        return self._used[self._primary]

    @property
    def peak(self) -> int:
        """Highest :attr:`used` since construction or :meth:`reset_stats`."""
        return self._peak[self._primary]

    def heap_used(self, heap: int) -> int:
        """Bytes reserved on ``heap``."""
        return self._used[heap]

    def available(self, heap: int | None = None) -> int:
        """Bytes that can still be reserved on ``heap`` (default: the primary heap)."""
        h = self._primary if heap is None else heap
        return max(self._limits[h] - self._used[h], 0)

    @property
    def staging_quota(self) -> int:
        """Bytes of staging memory that may be held at once."""
        return self._staging_quota

    @property
    def staging_used(self) -> int:
        """Staging bytes held now."""
        return self._staging_used

    def __repr__(self) -> str:
        label = f' "{self.name}"' if self.name else ""
        return f"<BudgetManager{label} {self.used / _MiB:.1f} MiB used of {self.limit / _MiB:.1f} MiB limit>"
