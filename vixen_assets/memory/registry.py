"""Live GPU objects per device: counts and bytes per type, for the leak report at ``Device.close()`` and tests."""

from __future__ import annotations

import threading
from typing import Any, Protocol


class Tracked(Protocol):
    """What the registry needs of a GPU object."""

    name: str
    nbytes: int

    def destroy(self) -> None:
        """Release the object."""


class ResourceRegistry:
    """Every live GPU object of one device, by id; thread-safe."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._live: dict[int, Any] = {}

    def add(self, obj: Any) -> None:
        """Start tracking ``obj`` (a single dict store: atomic under the GIL, no lock on this hot path)."""
        self._live[id(obj)] = obj

    def remove(self, obj: Any) -> None:
        """Stop tracking ``obj`` (no error if it was not tracked)."""
        self._live.pop(id(obj), None)

    def live(self) -> list[Any]:
        """A snapshot of every live object, oldest first."""
        with self._lock:
            return list(self._live.copy().values())

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Live objects per type (the stats protocol; see :meth:`counts`)."""
        return self.counts()

    def reset(self) -> None:
        """Nothing to reset: the registry holds live numbers only."""

    def counts(self) -> dict[str, dict[str, int]]:
        """``{type name: {"count": n, "bytes": b}}`` of live objects."""
        out: dict[str, dict[str, int]] = {}
        for obj in self.live():
            d = out.setdefault(type(obj).__name__, {"count": 0, "bytes": 0})
            d["count"] += 1
            d["bytes"] += int(getattr(obj, "nbytes", 0))
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._live)
