"""``Allocation`` (a range of a memory block) and ``DeviceAllocator``, the interface of every allocator in the chain."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .blocks import MemoryBlock


class Allocation:
    """A range of one memory block: where a resource lives and whom its bytes are charged to."""

    __slots__ = ("block", "offset", "size", "charged", "category", "heap", "purpose", "alignment", "slab")

    def __init__(self, block: MemoryBlock, offset: int, size: int, charged: int, category: str, heap: int,
                 purpose: str, alignment: int = 1, slab: Any = None) -> None:
        self.alignment = alignment  # what the offset had to be a multiple of (a move must keep it)
        self.slab = slab  # the small-size slab it came from (see blocks.Slab), or None for a TLSF range
        self.block = block
        self.offset = offset
        self.size = size
        self.charged = charged
        self.category = category
        self.heap = heap
        self.purpose = purpose

    @property
    def memory(self) -> Any:
        """The ``VkDeviceMemory`` handle."""
        return self.block.memory

    @property
    def overflowed(self) -> bool:
        """True when the allocation was placed in host memory because the device budget was used up."""
        return self.purpose.endswith(":overflow")

    def __repr__(self) -> str:
        return f"<Allocation block#{self.block.id} +{self.offset} {self.size} B {self.category!r}>"


class DeviceAllocator(abc.ABC):
    """What every allocator in the chain offers."""

    @abc.abstractmethod
    def allocate(self, size: int, alignment: int, type_index: int, *, category: str, type_bits: int = 0,
                 kind: int = 0, device_address: bool = False, dedicated: bool = False,
                 purpose: str = "general") -> Allocation:
        """Return a new range of ``size`` bytes in memory type ``type_index``."""

    @abc.abstractmethod
    def free(self, allocation: Allocation) -> None:
        """Give a range back."""

    @abc.abstractmethod
    def stats(self) -> dict[str, Any]:
        """Counters of this layer and those below it."""

    @abc.abstractmethod
    def reset_stats(self) -> None:
        """Reset counters and peaks through this layer and those below it."""
