"""Fences and timeline semaphores."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .shim import NULL, check, ffi, lib, vk

if TYPE_CHECKING:
    from .logical import LogicalDevice

FOREVER = 0xFFFFFFFFFFFFFFFF


class Fence:
    """A ``VkFence``: ``wait()``, ``done``, ``reset()``, ``destroy()``."""

    def __init__(self, dev: LogicalDevice, *, signaled: bool = False) -> None:
        """Create the fence on the logical device ``dev``."""
        self._dev = dev
        info = ffi.new("VkFenceCreateInfo*", {"sType": vk.VK_STRUCTURE_TYPE_FENCE_CREATE_INFO,
                                              "flags": vk.VK_FENCE_CREATE_SIGNALED_BIT if signaled else 0})
        p = ffi.new("VkFence*")
        check(lib.vkCreateFence(dev.handle, info, NULL, p), "vkCreateFence")
        self.handle = p[0]
        self._p = p

    @property
    def done(self) -> bool:
        """True once the GPU signalled the fence."""
        r = lib.vkGetFenceStatus(self._dev.handle, self.handle)
        if r == vk.VK_NOT_READY:
            return False
        check(r, "vkGetFenceStatus")
        return True

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until signalled; return False on timeout."""
        t = FOREVER if timeout_s is None else int(timeout_s * 1e9)
        r = lib.vkWaitForFences(self._dev.handle, 1, self._p, 1, t)
        if r == vk.VK_TIMEOUT:
            return False
        check(r, "vkWaitForFences")
        return True

    def reset(self) -> None:
        """Return the fence to the unsignalled state."""
        check(lib.vkResetFences(self._dev.handle, 1, self._p), "vkResetFences")

    def destroy(self) -> None:
        """Destroy the fence; safe to call twice."""
        if self.handle is not None and self._dev.handle is not None:
            lib.vkDestroyFence(self._dev.handle, self.handle, NULL)
        self.handle = None


class TimelineSemaphore:
    """A timeline ``VkSemaphore``: a 64-bit counter the GPU and the host can signal and wait on."""

    def __init__(self, dev: LogicalDevice, initial: int = 0) -> None:
        """Create the semaphore on ``dev`` with the ``initial`` counter value."""
        self._dev = dev
        tinfo = ffi.new("VkSemaphoreTypeCreateInfo*", {"sType": vk.VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO,
                                                       "semaphoreType": vk.VK_SEMAPHORE_TYPE_TIMELINE,
                                                       "initialValue": initial})
        info = ffi.new("VkSemaphoreCreateInfo*", {"sType": vk.VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO, "pNext": tinfo})
        p = ffi.new("VkSemaphore*")
        check(lib.vkCreateSemaphore(dev.handle, info, NULL, p), "vkCreateSemaphore")
        self.handle = p[0]
        self._p = p
        self._value_p = ffi.new("uint64_t*")

    @property
    def value(self) -> int:
        """The counter's current value."""
        check(lib.vkGetSemaphoreCounterValue(self._dev.handle, self.handle, self._value_p), "vkGetSemaphoreCounterValue")
        return int(self._value_p[0])

    def wait(self, value: int, timeout_s: float | None = None) -> bool:
        """Block until the counter reaches ``value``; return False on timeout."""
        vals = ffi.new("uint64_t*", value)
        info = ffi.new("VkSemaphoreWaitInfo*", {"sType": vk.VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO, "semaphoreCount": 1,
                                                "pSemaphores": self._p, "pValues": vals})
        t = FOREVER if timeout_s is None else int(timeout_s * 1e9)
        r = lib.vkWaitSemaphores(self._dev.handle, info, t)
        if r == vk.VK_TIMEOUT:
            return False
        check(r, "vkWaitSemaphores")
        return True

    def signal(self, value: int) -> None:
        """Signal ``value`` from the host."""
        info = ffi.new("VkSemaphoreSignalInfo*", {"sType": vk.VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO,
                                                  "semaphore": self.handle, "value": value})
        check(lib.vkSignalSemaphore(self._dev.handle, info), "vkSignalSemaphore")

    def destroy(self) -> None:
        """Destroy the semaphore; safe to call twice."""
        if self.handle is not None and self._dev.handle is not None:
            lib.vkDestroySemaphore(self._dev.handle, self.handle, NULL)
        self.handle = None
