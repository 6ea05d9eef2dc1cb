"""``TrackedResource``: the lifetime every GPU object of a device shares (images, acceleration structures, buffer
sets; ``Buffer`` has its own slotted copy of this on the allocation hot path).

``destroy()`` is safe to call twice; it retires the object until the GPU work that used it (``last_use``, a timeline
value) is done, then ``_release()`` frees the Vulkan objects. The device's registry lists it while it lives (the
leak report at ``Device.close()``); ``with`` destroys it; ``__del__`` only warns.
"""

from __future__ import annotations

import warnings
from typing import Any

LIVE, RETIRED, DESTROYED = 0, 1, 2


class TrackedResource:
    """Base of a device's GPU objects: registry entry, deferred ``destroy()``, context manager."""

    device: Any
    name: str
    last_use: int
    _state: int

    def _track(self, device: Any, name: str) -> None:
        """Start tracking: call at the end of a subclass ``__init__``, once the Vulkan objects exist."""
        self.device = device
        self.name = name
        self.last_use = getattr(self, "last_use", 0)
        self._state = LIVE
        device.registry.add(self)

    @property
    def alive(self) -> bool:
        """False once destroyed (or retired for destruction)."""
        return self._state == LIVE

    def _before_retire(self) -> int:
        """Hook: submit work still pending on this object; return the timeline value to wait for."""
        return self.last_use

    def destroy(self) -> None:
        """Destroy, deferred while GPU work using it is in flight; safe to call twice."""
        if self._state != LIVE:
            return
        self._state = RETIRED
        self.device.lifetime.retire(self, self._before_retire())

    def _destroy_now(self) -> None:
        if self._state == DESTROYED:
            return
        self._state = DESTROYED
        self._release()
        self.device.registry.remove(self)

    def _release(self) -> None:
        """Free the Vulkan objects (the subclass's part of the destruction)."""
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __del__(self) -> None:
        if getattr(self, "_state", DESTROYED) == LIVE:
            warnings.warn(f"{type(self).__name__} {getattr(self, 'name', '')!r} was never destroyed (use destroy() "
                          "or a with block)", ResourceWarning, stacklevel=1)
