"""``BufferSet``: several ``VkBuffer``\\ s bound into ONE memory allocation at aligned offsets.

The shared-memory pattern of the original voxel design: a scene's node, brick, palette, material, transform and
AABB buffers live in one ``VkDeviceMemory`` range, allocated through the budget as one tracked allocation (one
budget charge, one leak-report entry). Members are ordinary :class:`~vixen_assets.memory.buffers.Buffer` objects
(``handle``, ``offset`` 0 in their own handle, ``memory``, ``memory_offset``, ``device_address``, ``mapped``); the
set owns their lifetime: ``BufferSet.destroy()`` destroys every member and frees the allocation, once the GPU
finished the last work that used any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import ConfigError, VixenError
from ..vk import resources as vkr
from ..vk.enums import ALL_MEMORY_TYPES
from ..vk.shim import BUFFER_USAGE_SHADER_DEVICE_ADDRESS
from .allocation import Allocation
from .buffers import TRANSFER, Buffer, parse_usage
from .resource import TrackedResource

if TYPE_CHECKING:
    from .context import GpuContext


@dataclass(frozen=True)
class BufferView:
    """Where one member lives inside the set's memory: its byte ``offset`` and ``size``."""

    name: str
    offset: int
    size: int


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


class BufferSet(TrackedResource):
    """Named buffers sharing one memory allocation; create with :meth:`Device.create_buffer_set`."""

    def __init__(self, ctx: GpuContext, specs: dict[str, tuple[int, int | str | Iterable[str]]], *,
                 strategy: str = "device_local", name: str = "", category: str = "default",
                 alignment: int = 256) -> None:
        """Create every member and bind them into one allocation; all or nothing.

        :param specs: member name -> (size in bytes, usage).
        :param alignment: minimum offset alignment of every member inside the memory.
        """
        if not specs:
            raise ConfigError(f"buffer set {name!r} needs at least one buffer")
        self.category = category
        self.last_use = 0
        dev = ctx.logical
        handles: list[tuple[str, Any, int, int]] = []
        self.alloc = None
        try:
            offset = 0
            type_bits = ~0
            want_addr = False
            layout: list[tuple[str, Any, int, int, int]] = []
            for member, (size, usage) in specs.items():
                if size <= 0:
                    raise ConfigError(f"buffer set {name!r}: member {member!r} has size {size}")
                flags = parse_usage(usage) | TRANSFER
                want_addr |= bool(flags & BUFFER_USAGE_SHADER_DEVICE_ADDRESS)
                h = vkr.create_buffer(dev, size, flags)
                handles.append((member, h, size, flags))
                _s, req_align, bits = vkr.buffer_requirements(dev, h)
                type_bits &= bits
                offset = _align(offset, max(alignment, req_align))
                layout.append((member, h, size, flags, offset))
                offset += _s
            type_bits &= ALL_MEMORY_TYPES
            if not type_bits:
                raise VixenError(f"buffer set {name!r}: no memory type suits every member")
            type_index = ctx.memory_type(type_bits, strategy)
            self.alloc = ctx.allocator.allocate(offset, max(alignment, 256), type_index, category=category,
                                                   type_bits=type_bits, device_address=want_addr,
                                                   dedicated=True)
            self.buffers: dict[str, Buffer] = {}
            self.views: dict[str, BufferView] = {}
            for member, h, size, flags, off in layout:
                vkr.bind_buffer(dev, h, self.alloc.block.memory, self.alloc.offset + off)
                addr = vkr.device_address(dev, h) if flags & BUFFER_USAGE_SHADER_DEVICE_ADDRESS else 0
                view = _MemberAllocation(self.alloc, off, size)
                buf = Buffer(self, f"{name}.{member}", size, flags, strategy, h, 0, view, True, addr)  # type: ignore[arg-type]
                self.buffers[member] = buf
                self.views[member] = BufferView(member, off, size)
            handles = []
        except BaseException:
            for _m, h, _s, _f in handles:
                vkr.destroy_buffer(dev, h)
            if self.alloc is not None:
                ctx.allocator.free(self.alloc)
                self.alloc = None
            raise
        self._track(ctx, name)

    # -- the protocol Buffer uses for its owner ------------------------------------------------------------------
    def retire(self, buf: Buffer) -> None:
        """A member was destroyed: the set frees everything once all members are."""
        if all(not b.alive for b in self.buffers.values()):
            self.destroy()

    def prepare_retire(self, buf: Buffer) -> int:
        """Submit uploads still pending into one member; return its ``last_use``."""
        self.ctx.flush_pending(buf)
        return buf.last_use

    def destroy_now(self, buf: Buffer) -> None:
        """Destroy one member's handle (the memory stays with the set)."""
        if self.ctx.device_open:
            vkr.destroy_buffer(self.ctx.logical, buf._handle)

    # -- the set ---------------------------------------------------------------------------------------------------
    @property
    def memory(self) -> Any:
        """The one ``VkDeviceMemory`` every member is bound to."""
        return self.alloc.block.memory if self.alloc is not None else None

    @property
    def nbytes(self) -> int:
        """Bytes of the shared allocation."""
        return self.alloc.size if self.alloc is not None else 0

    def __getitem__(self, member: str) -> Buffer:
        return self.buffers[member]

    def _prepare_retire(self) -> int:
        """Mark every member retiring and submit uploads still pending into any of them; wait for the latest use."""
        for b in self.buffers.values():
            b._mark_retiring()
        for b in self.buffers.values():
            self.ctx.flush_pending(b)
        return max([self.last_use] + [b.last_use for b in self.buffers.values()])

    def _release(self) -> None:
        for b in self.buffers.values():
            b._destroy_now()
        if self.alloc is not None:
            self.ctx.allocator.free(self.alloc)
            self.alloc = None

    def __repr__(self) -> str:
        return f'<BufferSet "{self.name}" {len(self.buffers)} buffers {self.nbytes} B>'


class _MemberAllocation:
    """What a member ``Buffer`` sees as its allocation: the set's block at the member's offset."""

    __slots__ = ("_parent", "_offset", "size")

    def __init__(self, parent: Allocation, offset: int, size: int) -> None:
        self._parent = parent
        self._offset = offset
        self.size = size

    @property
    def block(self) -> Any:
        """The set's memory block."""
        return self._parent.block

    @property
    def offset(self) -> int:
        """The member's offset inside the block."""
        return self._parent.offset + self._offset

    @property
    def category(self) -> str:
        """The set's budget category."""
        return self._parent.category

    @property
    def heap(self) -> int:
        """The heap charged."""
        return self._parent.heap
