"""Exception-safe multi-buffer allocation: all of a group's buffers, or none of them."""

from __future__ import annotations

import warnings
from typing import Any

from ..errors import VixenDeprecationWarning
from .buffers import Buffer
from .context import GpuContext


class AllocationGroup:
    """``with device.allocation_group() as g:`` buffers made by ``g.create_buffer`` are destroyed if the block raises.

    After a clean exit they belong to the caller (``g.buffers``); :meth:`rollback` destroys them explicitly.
    """

    def __init__(self, ctx: GpuContext) -> None:
        """Start an empty group (``Device.allocation_group()`` makes one).

        :param ctx: the device's :class:`GpuContext` (``device.context``); passing the ``Device`` itself is
            deprecated.
        """
        if not isinstance(ctx, GpuContext):
            warnings.warn("AllocationGroup(device) is deprecated: use device.allocation_group() or "
                          "AllocationGroup(device.context)", VixenDeprecationWarning, stacklevel=2)
            ctx = ctx.context
        self._ctx = ctx
        self.buffers: list[Buffer] = []
        self.committed = False

    def create_buffer(self, size: int, usage: Any, **kwargs: Any) -> Buffer:
        """Create a buffer as ``Device.create_buffer`` does, owned by the group until commit."""
        buf = self._ctx.buffers.create(size, usage, **kwargs)
        self.buffers.append(buf)
        return buf

    def adopt(self, resource: Any) -> Any:
        """Make the group responsible for a resource created elsewhere (anything with ``destroy()``)."""
        self.buffers.append(resource)
        return resource

    def rollback(self) -> None:
        """Destroy everything the group made, newest first (after submitting uploads still pending into them)."""
        while self.buffers:
            self.buffers.pop().destroy()

    def __enter__(self) -> AllocationGroup:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.rollback()
        else:
            self.committed = True
