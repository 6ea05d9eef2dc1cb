"""Command pools, command buffers and queue submission (with timeline-semaphore waits and signals)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from .logical import LogicalDevice, Queue
from .shim import NULL, check, ffi, lib, vk
from .sync import Fence


class CommandPool:
    """A ``VkCommandPool`` for one queue family (not thread-safe: one pool per recording thread)."""

    def __init__(self, dev: LogicalDevice, family: int, *, transient: bool = True) -> None:
        """Create the pool; its buffers can be reset individually."""
        self._dev = dev
        self.family = family
        flags = vk.VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT
        if transient:
            flags |= vk.VK_COMMAND_POOL_CREATE_TRANSIENT_BIT
        info = ffi.new("VkCommandPoolCreateInfo*", {"sType": vk.VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                                    "flags": flags, "queueFamilyIndex": family})
        p = ffi.new("VkCommandPool*")
        check(lib.vkCreateCommandPool(dev.handle, info, NULL, p), "vkCreateCommandPool")
        self.handle = p[0]

    def allocate(self) -> Any:
        """Allocate one primary command buffer."""
        info = ffi.new("VkCommandBufferAllocateInfo*", {"sType": vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                                        "commandPool": self.handle,
                                                        "level": vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                                        "commandBufferCount": 1})
        p = ffi.new("VkCommandBuffer*")
        check(lib.vkAllocateCommandBuffers(self._dev.handle, info, p), "vkAllocateCommandBuffers")
        return p[0]

    def free(self, cmd: Any) -> None:
        """Return a command buffer to the pool."""
        p = ffi.new("VkCommandBuffer*", cmd)
        lib.vkFreeCommandBuffers(self._dev.handle, self.handle, 1, p)

    def destroy(self) -> None:
        """Destroy the pool and every buffer in it; safe to call twice."""
        if self.handle is not None and self._dev.handle is not None:
            lib.vkDestroyCommandPool(self._dev.handle, self.handle, NULL)
        self.handle = None


_BEGIN_INFO = ffi.new("VkCommandBufferBeginInfo*", {"sType": vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                                    "flags": vk.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT})


def begin(cmd: Any) -> None:
    """Reset and begin recording a one-time-submit command buffer."""
    check(lib.vkResetCommandBuffer(cmd, 0), "vkResetCommandBuffer")
    check(lib.vkBeginCommandBuffer(cmd, _BEGIN_INFO), "vkBeginCommandBuffer")


def end(cmd: Any) -> None:
    """Finish recording."""
    check(lib.vkEndCommandBuffer(cmd), "vkEndCommandBuffer")


def submit(dev: LogicalDevice, queue: Queue, cmds: Sequence[Any], *, fence: Fence | None = None,
           waits: Sequence[tuple[Any, int, int]] = (), signals: Sequence[tuple[Any, int]] = ()) -> None:
    """Submit command buffers once, waiting on and signalling timeline semaphores.

    :param waits: ``(semaphore, value, pipeline_stage_flags)`` triples.
    :param signals: ``(semaphore, value)`` pairs.
    """
    cmd_arr = ffi.new("VkCommandBuffer[]", list(cmds))
    info = ffi.new("VkSubmitInfo*", {"sType": vk.VK_STRUCTURE_TYPE_SUBMIT_INFO, "commandBufferCount": len(cmds),
                                     "pCommandBuffers": cmd_arr})
    keep: list[Any] = []
    if waits or signals:
        wsem = ffi.new("VkSemaphore[]", [w[0].handle for w in waits]) if waits else NULL
        wval = ffi.new("uint64_t[]", [w[1] for w in waits]) if waits else NULL
        wstage = ffi.new("VkPipelineStageFlags[]", [w[2] for w in waits]) if waits else NULL
        ssem = ffi.new("VkSemaphore[]", [s[0].handle for s in signals]) if signals else NULL
        sval = ffi.new("uint64_t[]", [s[1] for s in signals]) if signals else NULL
        tinfo = ffi.new("VkTimelineSemaphoreSubmitInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO,
            "waitSemaphoreValueCount": len(waits), "pWaitSemaphoreValues": wval,
            "signalSemaphoreValueCount": len(signals), "pSignalSemaphoreValues": sval})
        keep += [wsem, wval, wstage, ssem, sval, tinfo]
        info.pNext = tinfo
        info.waitSemaphoreCount = len(waits)
        info.pWaitSemaphores = wsem
        info.pWaitDstStageMask = wstage
        info.signalSemaphoreCount = len(signals)
        info.pSignalSemaphores = ssem
    queue.submit(info, 1, fence.handle if fence is not None else None, dev.faults)
    del keep


@contextlib.contextmanager
def one_shot(dev: LogicalDevice, pool: CommandPool, queue: Queue) -> Iterator[Any]:
    """Record into a fresh command buffer inside the block, then submit it and wait for completion."""
    cmd = pool.allocate()
    fence = Fence(dev)
    try:
        begin(cmd)
        yield cmd
        end(cmd)
        submit(dev, queue, [cmd], fence=fence)
        fence.wait()
    finally:
        fence.destroy()
        pool.free(cmd)
