"""Allocation tracker: counts ``vkAllocateMemory`` / ``vkFreeMemory`` and suballocations per named phase.

``with device.phase("steady"):`` makes every count inside the block land in that phase, so a test can prove that
uploads after warm-up make zero ``vkAllocateMemory`` calls.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass


@dataclass
class PhaseCounts:
    """Counts for one phase."""

    allocate_memory: int = 0
    free_memory: int = 0
    allocated_bytes: int = 0
    suballocations: int = 0
    subfrees: int = 0
    buffers_created: int = 0
    buffers_destroyed: int = 0


class AllocationTracker:
    """Thread-safe counters of memory calls, bucketed by the current phase (``"default"`` outside any)."""

    def __init__(self) -> None:
        """Start with one ``default`` phase."""
        self._lock = threading.Lock()
        self._phases: dict[str, PhaseCounts] = {"default": PhaseCounts()}
        self._stack: list[str] = ["default"]
        self.total = PhaseCounts()

    def _current(self) -> PhaseCounts:
        return self._phases[self._stack[-1]]

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[PhaseCounts]:
        """Count everything inside the block under ``name``; yields that phase's (live) counts."""
        with self._lock:
            counts = self._phases.setdefault(name, PhaseCounts())
            self._stack.append(name)
        try:
            yield counts
        finally:
            with self._lock:
                self._stack.remove(name)

    def count_allocate_memory(self, nbytes: int) -> None:
        """Record one ``vkAllocateMemory``."""
        with self._lock:
            for c in (self._current(), self.total):
                c.allocate_memory += 1
                c.allocated_bytes += nbytes

    def count_free_memory(self, nbytes: int) -> None:
        """Record one ``vkFreeMemory``."""
        with self._lock:
            for c in (self._current(), self.total):
                c.free_memory += 1

    def suballocations_unlocked(self) -> None:
        """Record one range handed out (the caller holds the suballocator lock: no tracker lock, hot path)."""
        self._phases[self._stack[-1]].suballocations += 1
        self.total.suballocations += 1

    def subfrees_unlocked(self) -> None:
        """Record one range returned (the caller holds the suballocator lock)."""
        self._phases[self._stack[-1]].subfrees += 1
        self.total.subfrees += 1

    def count_suballocation(self) -> None:
        """Record one range handed out of a block."""
        with self._lock:
            self._current().suballocations += 1
            self.total.suballocations += 1

    def count_subfree(self) -> None:
        """Record one range returned to a block."""
        with self._lock:
            self._current().subfrees += 1
            self.total.subfrees += 1

    def count_buffer(self, created: bool) -> None:
        """Record one ``vkCreateBuffer`` (``created``) or ``vkDestroyBuffer``."""
        with self._lock:
            for c in (self._current(), self.total):
                if created:
                    c.buffers_created += 1
                else:
                    c.buffers_destroyed += 1

    def counts(self, phase: str | None = None) -> PhaseCounts:
        """Return a copy of one phase's counts, or the totals."""
        with self._lock:
            src = self.total if phase is None else self._phases.get(phase, PhaseCounts())
            return PhaseCounts(**asdict(src))

    def as_dict(self) -> dict[str, dict[str, int]]:
        """Every phase's counts plus ``total``."""
        with self._lock:
            d = {k: asdict(v) for k, v in self._phases.items()}
            d["total"] = asdict(self.total)
            return d

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Every phase's counts plus ``total`` (the stats protocol; see :meth:`as_dict`)."""
        return self.as_dict()

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._phases = {k: PhaseCounts() for k in self._phases}
            self.total = PhaseCounts()
