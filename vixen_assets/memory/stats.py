"""The one stats protocol: every part that keeps counters has ``snapshot()`` and ``reset()``.

``snapshot()`` returns a JSON-serialisable dict of the counters now; ``reset()`` zeroes counters and peaks (what is
in use stays counted). ``Device.stats()`` is the hub: ``{name: source.snapshot()}`` over the budget, allocator,
uploader, registry, tracker and lifetime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class StatsSource(Protocol):
    """Something with counters: the budget, the suballocator, the uploader, the registry, ..."""

    def snapshot(self) -> dict[str, Any]:
        """The counters now (JSON-serialisable)."""
        ...

    def reset(self) -> None:
        """Zero counters and peaks; live numbers stay."""
        ...


class CallableStats:
    """A :class:`StatsSource` from two functions (for parts whose counters are a few properties)."""

    __slots__ = ("_snapshot", "_reset")

    def __init__(self, snapshot: Callable[[], dict[str, Any]], reset: Callable[[], object] | None = None) -> None:
        """Wrap ``snapshot`` and (optional) ``reset``.

        :param snapshot: returns the counters.
        :param reset: zeroes them (``None``: nothing to reset).
        """
        self._snapshot = snapshot
        self._reset = reset

    def snapshot(self) -> dict[str, Any]:
        """The counters now."""
        return self._snapshot()

    def reset(self) -> None:
        """Zero the counters (no-op without a reset function)."""
        if self._reset is not None:
            self._reset()
