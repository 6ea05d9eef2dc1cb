"""Fault injection for tests: make the Nth ``vkAllocateMemory`` fail, or the device report loss; count
``vkCreateImage`` calls.

This wraps the real driver; it never replaces it. A ``FaultInjector`` set on a logical device (``device.faults``)
is consulted by the allocation and submission paths of ``vixen_assets.vk`` just before the real Vulkan call.
"""

from __future__ import annotations

import threading

from ..errors import DeviceLostError, OutOfDeviceMemoryError


class FaultInjector:
    """Counts allocations and submissions and fails the chosen ones with the Vulkan error a driver would give."""

    def __init__(self, *, fail_allocation_at: int | None = None, fail_every_allocation_after: bool = False,
                 device_lost_at_submit: int | None = None) -> None:
        """Configure which calls fail.

        :param fail_allocation_at: 1-based index of the ``vkAllocateMemory`` call that fails with
            ``VK_ERROR_OUT_OF_DEVICE_MEMORY``.
        :param fail_every_allocation_after: also fail every later allocation.
        :param device_lost_at_submit: 1-based index of the ``vkQueueSubmit`` that reports ``VK_ERROR_DEVICE_LOST``.
        """
        self.fail_allocation_at = fail_allocation_at
        self.fail_every_allocation_after = fail_every_allocation_after
        self.device_lost_at_submit = device_lost_at_submit
        self.allocations = 0
        self.submits = 0
        self.images = 0
        self.injected = 0
        self._lock = threading.Lock()

    def before_allocate(self) -> None:
        """Called before each ``vkAllocateMemory``; raises the injected error when it is this call's turn."""
        with self._lock:
            self.allocations += 1
            n = self.allocations
        at = self.fail_allocation_at
        if at is not None and (n == at or (self.fail_every_allocation_after and n > at)):
            self.injected += 1
            raise OutOfDeviceMemoryError("VK_ERROR_OUT_OF_DEVICE_MEMORY", "vkAllocateMemory", "injected fault")

    def before_create_image(self) -> None:
        """Called before each ``vkCreateImage``; counts them (tests check what happens before the first one)."""
        with self._lock:
            self.images += 1

    def before_submit(self) -> None:
        """Called before each ``vkQueueSubmit``; raises ``DeviceLostError`` when it is this call's turn."""
        with self._lock:
            self.submits += 1
            n = self.submits
        if self.device_lost_at_submit is not None and n >= self.device_lost_at_submit:
            self.injected += 1
            raise DeviceLostError("VK_ERROR_DEVICE_LOST", "vkQueueSubmit", "injected fault")
