"""The allocation chain: ``DeviceAllocator`` (interface) -> ``BudgetedAllocator`` (budget) -> ``Suballocator``.

A cacher never calls ``vkAllocateMemory``: it asks the device for buffers and images, which ask the budgeted
allocator for a range, which charges the budget *before* any Vulkan call and then asks the suballocator, which
carves ``VkDeviceMemory`` blocks (see ``blocks.py``). Every layer contributes to ``Device.budget.stats()`` and
resets with ``Device.budget.reset_stats()``.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import BudgetExceededError
from .allocation import Allocation, DeviceAllocator
from .budget import STAGING_CATEGORY, BudgetManager


class BudgetedAllocator(DeviceAllocator):
    """Charges the budget before passing a request down; releases it when the request fails or is freed."""

    def __init__(self, inner: DeviceAllocator, budget: BudgetManager, heap_of_type: Callable[[int], int],
                 overflow_type: Callable[[int], int | None]) -> None:
        """Wrap ``inner`` with ``budget``.

        :param overflow_type: maps allowed type bits to a host-memory type for ``overflow="host"`` placement.
        """
        self.inner = inner
        self.budget = budget
        self._heap_of_type = heap_of_type
        self._overflow_type = overflow_type
        self._heaps: dict[int, int] = {}  # memory type -> heap (cached: the hot path calls it per allocation)

    def allocate(self, size: int, alignment: int, type_index: int, *, category: str, type_bits: int = 0,
                 kind: int = 0, device_address: bool = False, dedicated: bool = False,
                 purpose: str = "general") -> Allocation:
        """Reserve ``size`` bytes on the type's heap, then allocate below; host overflow when configured."""
        heap = self._heaps.get(type_index)
        if heap is None:
            heap = self._heaps[type_index] = self._heap_of_type(type_index)
        if category == STAGING_CATEGORY:  # staging memory is charged to the staging quota (a part of the budget)
            self.budget.acquire_staging(size, timeout=0.0, who=purpose)
            try:
                alloc = self.inner.allocate(size, alignment, type_index, category=category, type_bits=type_bits,
                                            kind=kind, device_address=device_address, dedicated=dedicated,
                                            purpose=purpose)
            except BaseException:
                self.budget.release_staging(size)
                raise
            alloc.heap = -1
            return alloc
        charged = self.budget.reserve(size, heap=heap, category=category)
        if charged != heap:  # overflow="host": place it in host memory, visibly
            host_type = self._overflow_type(type_bits or (1 << type_index))
            if host_type is None or self._heap_of_type(host_type) != charged:
                self.budget.release(size, heap=charged, category=category)
                raise BudgetExceededError(size, self.budget.heap_used(heap), self.budget.limits[heap], who=category,
                                          heap=heap)
            type_index = host_type
            purpose = purpose + ":overflow"
        try:
            alloc = self.inner.allocate(size, alignment, type_index, category=category, type_bits=type_bits,
                                        kind=kind, device_address=device_address, dedicated=dedicated, purpose=purpose)
        except BaseException:
            self.budget.release(size, heap=charged, category=category)
            raise
        alloc.heap = charged
        alloc.category = category
        return alloc

    def free(self, allocation: Allocation) -> None:
        """Free below, then release the budget."""
        self.inner.free(allocation)
        if allocation.heap == -1:
            self.budget.release_staging(allocation.size)
        else:
            self.budget.release(allocation.size, heap=allocation.heap, category=allocation.category)

    def stats(self) -> dict[str, Any]:
        """The budget's stats (which include the lower layers through its stats providers)."""
        return self.budget.stats()

    def reset_stats(self) -> None:
        """Reset budget peaks and every provider's counters."""
        self.budget.reset_stats()
