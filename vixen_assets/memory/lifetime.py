"""Deferred destruction: a resource retired while the GPU may still use it is destroyed once that work is done.

Every submission of the device signals its timeline semaphore with a new value. ``retire(resource, value)``
queues the resource until the timeline reaches ``value`` (default: everything submitted so far).
``begin_frame()`` adds the classic ring of frames in flight: resources retired during frame N are destroyed when
frame N - frames_in_flight has completed on the GPU.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from ..errors import VixenError
from ..vk import LogicalDevice
from ..vk.sync import TimelineSemaphore


class Lifetime:
    """The device timeline and the queue of retired resources waiting for it."""

    def __init__(self, dev: LogicalDevice, *, frames_in_flight: int = 2) -> None:
        """Create the timeline semaphore."""
        self.timeline = TimelineSemaphore(dev, 0)
        self.frames_in_flight = frames_in_flight
        self._lock = threading.Lock()
        #: held around "take a timeline value + vkQueueSubmit" so values reach the queue in increasing order
        self.submit_lock = threading.Lock()
        self._submitted = 0
        self._pending: deque[tuple[int, Any]] = deque()
        self._frame_values: deque[int] = deque()
        self.destroyed_deferred = 0

    def next_value(self) -> int:
        """Reserve the timeline value the next submission will signal."""
        with self._lock:
            self._submitted += 1
            return self._submitted

    def abandon(self, value: int) -> None:
        """The submission that was to signal ``value`` failed before reaching the queue (``vkQueueSubmit`` raised):
        signal ``value`` from the host once the submissions before it are done, so that waiting on it (``drain`` at
        ``Device.close()``, a retired resource) returns instead of hanging. Call it with :attr:`submit_lock` held,
        before any later value is taken.

        :param value: the value :meth:`next_value` returned for the failed submission.
        """
        try:
            self.wait(value - 1)
            if self.timeline.value < value:
                self.timeline.signal(value)
        except VixenError:  # the device is really lost: waits fail with DeviceLostError from now on anyway
            pass

    @property
    def submitted(self) -> int:
        """The highest timeline value handed to a submission."""
        return self._submitted

    @property
    def completed(self) -> int:
        """The timeline value the GPU has reached."""
        return self.timeline.value if self.timeline.handle is not None else self._submitted

    def is_done(self, value: int) -> bool:
        """True once the GPU finished the submission that signals ``value``."""
        return value <= 0 or self.completed >= value

    def wait(self, value: int, timeout_s: float | None = None) -> bool:
        """Block until the timeline reaches ``value``."""
        if value <= 0:
            return True
        return self.timeline.wait(value, timeout_s)

    def retire(self, resource: Any, after: int | None = None) -> None:
        """Destroy ``resource`` once the timeline reaches ``after`` (default: all work submitted so far)."""
        value = self._submitted if after is None else after
        if self.is_done(value):
            resource._destroy_now()
            return
        with self._lock:
            self._pending.append((value, resource))

    def collect(self) -> int:
        """Destroy every retired resource whose work is done; return how many."""
        if not self._pending:
            return 0
        done = self.completed
        ready = []
        with self._lock:
            keep: deque[tuple[int, Any]] = deque()
            for value, res in self._pending:
                if value <= done:
                    ready.append(res)
                else:
                    keep.append((value, res))
            self._pending = keep
        for res in ready:
            res._destroy_now()
        self.destroyed_deferred += len(ready)
        return len(ready)

    @property
    def pending(self) -> int:
        """How many retired resources still wait for the GPU."""
        return len(self._pending)

    def begin_frame(self) -> int:
        """Start a frame: wait for the frame ``frames_in_flight`` ago, collect, return this frame's fence value."""
        value = self._submitted
        self._frame_values.append(value)
        while len(self._frame_values) > self.frames_in_flight:
            old = self._frame_values.popleft()
            self.wait(old)
        self.collect()
        return value

    def drain(self) -> None:
        """Wait for everything submitted and destroy every retired resource."""
        self.wait(self._submitted)
        self.collect()

    def destroy(self) -> None:
        """Destroy the timeline semaphore (after :meth:`drain`)."""
        self.timeline.destroy()
