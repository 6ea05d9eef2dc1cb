"""``DeviceStash``: one object per type kept for a device (``Device.stash``), destroyed when the device closes.

What a module needs once per device (a compiled pipeline, a cache of load plans) lives here under its own type
instead of in string-keyed dicts or attributes poked onto the device.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import VixenError

T = TypeVar("T")


class DeviceStash:
    """One object per type, made on first use; :meth:`close` destroys them, newest first."""

    def __init__(self) -> None:
        """Start empty."""
        self._objects: dict[type, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: type[T], factory: Callable[[], T]) -> T:
        """The object of type ``key``, made by ``factory()`` when there is none yet.

        :param key: the type (the object must be an instance of it).
        :param factory: makes the object.
        :raises VixenError: ``factory()`` returned something that is not a ``key``.
        """
        with self._lock:
            obj = self._objects.get(key)
            if obj is None:
                obj = factory()
                if not isinstance(obj, key):
                    raise VixenError(f"stash factory for {key.__name__} returned a {type(obj).__name__}")
                self._objects[key] = obj
            return obj

    def peek(self, key: type[T]) -> T | None:
        """The object of type ``key``, or ``None`` when none was made.

        :param key: the type.
        """
        return self._objects.get(key)

    def __contains__(self, key: type) -> bool:
        return key in self._objects

    def close(self) -> None:
        """Destroy every object that has ``destroy()`` (or ``close()``), newest first; empty the stash."""
        with self._lock:
            objs = list(self._objects.values())
            self._objects.clear()
        for obj in reversed(objs):
            end = getattr(obj, "destroy", None) or getattr(obj, "close", None)
            if callable(end):
                end()
