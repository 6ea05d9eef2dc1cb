"""``StagingRing``: N host-visible segments reused in turn, each guarded by the timeline value of its last use.

The streaming path (virtual-texture tiles, per-frame data): ``alloc(n)`` hands out linear ranges of the current
segment; ``submit(value)`` marks the segment with the timeline value of the submission that reads it and moves
on; when the ring wraps onto a segment whose value the GPU has not reached, ``alloc`` waits for it. Requests larger
than a segment are refused (split them, or use the staging pool).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, VixenError
from ..memory.buffers import TRANSFER, Buffer, BufferFactory
from ..memory.lifetime import Lifetime


@dataclass
class RingStats:
    """Usage counters of a staging ring."""

    allocations: int = 0
    bytes: int = 0
    wraps: int = 0
    waits: int = 0
    submits: int = 0


@dataclass
class RingSlice:
    """A range of a ring segment: write into ``view``, copy from ``buffer`` at ``offset``."""

    buffer: Buffer
    offset: int
    size: int
    view: np.ndarray


class StagingRing:
    """Triple-buffered (by default) staging memory for streaming uploads."""

    def __init__(self, factory: BufferFactory, lifetime: Lifetime, *, segment_size: int = 4 << 20, segments: int = 3,
                 alignment: int = 16, strategy: str = "host_visible") -> None:
        """Create ``segments`` host-visible buffers of ``segment_size`` bytes (charged to the staging quota).

        :param strategy: their memory strategy: ``host_visible`` (write-combined on discrete GPUs: fast to write
            once, slow to read back) or ``host_cached`` (for writers that read what they wrote, e.g. decompressors).
        """
        if segments < 2:
            raise ConfigError(f"a staging ring needs at least 2 segments, got {segments}")
        self._lifetime = lifetime
        self.segment_size = segment_size
        self.alignment = alignment
        self.segments: list[Buffer] = []
        try:  # all or nothing: a failed segment frees the ones created before it
            for i in range(segments):
                self.segments.append(factory.create(segment_size, TRANSFER, strategy=strategy,
                                                    name=f"staging-ring-{i}", category="staging"))
        except BaseException:
            for seg in self.segments:
                seg.destroy()
            raise
        self._fence_values = [0] * segments
        self._current = 0
        self._cursor = 0
        self._unsubmitted: list[int] = []  # earlier segments holding slices the next submit() reads
        self._move_on = False  # the current segment was submitted: the next alloc starts the next one
        self._lock = threading.Lock()
        self.stats = RingStats()

    def alloc(self, size: int) -> RingSlice:
        """Reserve ``size`` bytes of the current segment (waiting for the GPU when the ring wraps onto busy memory)."""
        if size > self.segment_size:
            raise ConfigError(f"staging ring request of {size} bytes exceeds the {self.segment_size}-byte segment")
        with self._lock:
            start = (self._cursor + self.alignment - 1) & -self.alignment
            if self._move_on or start + size > self.segment_size:
                # a segment left unsubmitted still holds slices the next submit() reads
                self._advance_locked(spill=not self._move_on and self._cursor > 0)
                start = 0
            self._cursor = start + size
            seg = self.segments[self._current]
            self.stats.allocations += 1
            self.stats.bytes += size
            view = seg.host_bytes[start:start + size]
            return RingSlice(seg, start, size, view)

    def _advance_locked(self, spill: bool = False) -> None:
        nxt = (self._current + 1) % len(self.segments)
        if nxt in self._unsubmitted or (spill and nxt == self._current):
            raise VixenError(f"staging ring overrun: all {len(self.segments)} segments were filled without a "
                             f"submit(); submit the work that reads them, or use larger segments")
        if spill:
            self._unsubmitted.append(self._current)
        self._move_on = False
        self._current = nxt
        if self._current == 0:
            self.stats.wraps += 1
        value = self._fence_values[self._current]
        if not self._lifetime.is_done(value):
            self.stats.waits += 1
            self._lifetime.wait(value)
        self._cursor = 0

    def submit(self, value: int) -> None:
        """Mark the segments allocated from since the last submit as read by the submission that signals ``value``.

        Later allocs use the next segment; this never blocks (the wait, if any, happens in the ``alloc`` that wraps).
        """
        with self._lock:
            for i in self._unsubmitted + [self._current]:
                self._fence_values[i] = max(self._fence_values[i], value)
            self._unsubmitted.clear()
            self.stats.submits += 1
            if self._cursor:
                self._move_on = True

    def stats_dict(self) -> dict[str, Any]:
        """Counters plus geometry."""
        d = asdict(self.stats)
        d.update(segments=len(self.segments), segment_size=self.segment_size)
        return d

    def destroy(self) -> None:
        """Wait for the segments' last use and destroy them; safe to call twice."""
        for value in self._fence_values:
            self._lifetime.wait(value)
        for seg in self.segments:
            seg.destroy()
        self.segments = []
