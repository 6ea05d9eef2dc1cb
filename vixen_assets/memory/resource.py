"""The one lifetime protocol of every GPU object (buffers, images, buffer sets, acceleration structures, TLASes).

States come from :class:`ResourceState`: ``ALIVE`` -> ``RETIRING`` (``destroy()`` was called; the object waits
until the GPU work that used it, its ``last_use`` timeline value, is done) -> ``DESTROYED`` (Vulkan objects freed).

The friend API the memory and transfer layers and ``Device`` use (never ``_state`` pokes):

- ``_mark_retiring() -> bool``: ALIVE -> RETIRING; False when the object was not alive (nothing more to do).
- ``_prepare_retire() -> int``: submit work still pending on the object; return the timeline value to wait for.
- ``_destroy_now()``: RETIRING/ALIVE -> DESTROYED, freeing the Vulkan objects; safe to call twice.

``destroy()`` (public, safe to call twice) is ``_mark_retiring`` + ``_prepare_retire`` + hand it to the lifetime
queue. ``release(key)`` exists only on caches (their references), never on objects. ``with`` destroys; ``__del__``
only warns. :class:`TrackedResource` implements the protocol for objects built on a :class:`GpuContext`;
:class:`~vixen_assets.memory.buffers.Buffer` has its own slotted copy on the allocation hot path.
"""

from __future__ import annotations

import enum
import warnings
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .context import GpuContext


class ResourceState(enum.IntEnum):
    """Where a GPU object is in its life."""

    ALIVE = 0
    RETIRING = 1
    DESTROYED = 2


ALIVE, RETIRING, DESTROYED = ResourceState.ALIVE, ResourceState.RETIRING, ResourceState.DESTROYED
#: the old names (``LIVE``/``RETIRED``) of the first two states
LIVE, RETIRED = ALIVE, RETIRING


@runtime_checkable
class GpuResource(Protocol):
    """What ``Device.retire``, the lifetime queue and the leak report need from a GPU object."""

    name: str
    last_use: int

    @property
    def state(self) -> ResourceState:
        """The object's state."""
        ...

    def destroy(self) -> None:
        """Destroy (deferred while GPU work using it is in flight); safe to call twice."""
        ...

    def _mark_retiring(self) -> bool:
        ...

    def _prepare_retire(self) -> int:
        ...

    def _destroy_now(self) -> None:
        ...


class TrackedResource:
    """Base of a device's GPU objects: registry entry, deferred ``destroy()``, context manager.

    A subclass creates its Vulkan objects, calls :meth:`_track` with the device's :class:`GpuContext`
    (``device.context``), implements :meth:`_release` and, when work on it can still be only recorded,
    :meth:`_prepare_retire`.
    """

    ctx: GpuContext
    name: str
    last_use: int
    _state: ResourceState

    def _track(self, ctx: GpuContext, name: str) -> None:
        """Start tracking: call at the end of a subclass ``__init__``, once the Vulkan objects exist."""
        self.ctx = ctx
        self.name = name
        self.last_use = getattr(self, "last_use", 0)
        self._state = ALIVE
        ctx.registry.add(self)

    @property
    def state(self) -> ResourceState:
        """ALIVE, RETIRING (waiting for the GPU) or DESTROYED."""
        return self._state

    @property
    def alive(self) -> bool:
        """False once destroyed (or retired for destruction)."""
        return self._state is ALIVE

    # -- friend API ---------------------------------------------------------------------------------------------
    def _mark_retiring(self) -> bool:
        """ALIVE -> RETIRING; False when it was not alive."""
        if getattr(self, "_state", DESTROYED) is not ALIVE:
            return False
        self._state = RETIRING
        return True

    def _prepare_retire(self) -> int:
        """Submit work still pending on this object; return the timeline value to wait for."""
        self.ctx.flush_pending(self)
        return self.last_use

    def _destroy_now(self) -> None:
        """Free the Vulkan objects now (the GPU is done with them); safe to call twice."""
        if self._state is DESTROYED:
            return
        self._state = DESTROYED
        self._release()
        self.ctx.registry.remove(self)

    def _release(self) -> None:
        """Free the Vulkan objects (the subclass's part of the destruction)."""
        raise NotImplementedError

    # -- public -------------------------------------------------------------------------------------------------
    def destroy(self) -> None:
        """Destroy, deferred while GPU work using it is in flight; safe to call twice."""
        if not self._mark_retiring():
            return
        self.ctx.lifetime.retire(self, self._prepare_retire())

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __del__(self) -> None:
        if getattr(self, "_state", DESTROYED) is ALIVE:
            warnings.warn(f"{type(self).__name__} {getattr(self, 'name', '')!r} was never destroyed (use destroy() "
                          "or a with block)", ResourceWarning, stacklevel=1)
