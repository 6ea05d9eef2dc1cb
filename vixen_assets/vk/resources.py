"""Raw memory, buffer and image calls and the copy/barrier commands the layers above record.

Everything here takes a :class:`~vixen_assets.vk.logical.LogicalDevice` and plain ints/handles, and returns
handles; tracking, budgets and lifetimes live in ``vixen_assets.memory``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .logical import LogicalDevice
from .shim import (
    BUFFER_USAGE_SHADER_DEVICE_ADDRESS,
    MEMORY_ALLOCATE_DEVICE_ADDRESS,
    NULL,
    QUEUE_FAMILY_IGNORED,
    buffer_device_address,
    check,
    ffi,
    lib,
    map_memory,
    vk,
)

# -- memory ---------------------------------------------------------------------------------------------------------


def allocate_memory(dev: LogicalDevice, size: int, type_index: int, *, device_address: bool = False,
                    dedicated_buffer: Any = None) -> Any:
    """``vkAllocateMemory``; with ``device_address`` the allocation may back buffers with a device address."""
    if dev.faults is not None:
        dev.faults.before_allocate()
    info = ffi.new("VkMemoryAllocateInfo*", {"sType": vk.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                                             "allocationSize": size, "memoryTypeIndex": type_index})
    chain: list[Any] = []
    if device_address and dev.buffer_device_address:
        flags = ffi.new("VkMemoryAllocateFlagsInfo*", {"sType": vk.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO,
                                                       "flags": MEMORY_ALLOCATE_DEVICE_ADDRESS})
        chain.append(flags)
    if dedicated_buffer is not None:
        ded = ffi.new("VkMemoryDedicatedAllocateInfo*", {"sType": vk.VK_STRUCTURE_TYPE_MEMORY_DEDICATED_ALLOCATE_INFO,
                                                         "buffer": dedicated_buffer})
        chain.append(ded)
    for a, b in zip(chain, chain[1:]):
        a.pNext = b
    if chain:
        info.pNext = chain[0]
    p = ffi.new("VkDeviceMemory*")
    check(lib.vkAllocateMemory(dev.handle, info, NULL, p), "vkAllocateMemory")
    return p[0]


def free_memory(dev: LogicalDevice, memory: Any) -> None:
    """``vkFreeMemory``."""
    lib.vkFreeMemory(dev.handle, memory, NULL)


def map_whole(dev: LogicalDevice, memory: Any, size: int) -> tuple[int, np.ndarray]:
    """Map ``size`` bytes from offset 0; return the host address and a writable uint8 numpy view."""
    addr, buf = map_memory(dev.handle, memory, 0, size)
    return addr, np.frombuffer(buf, dtype=np.uint8)


def unmap(dev: LogicalDevice, memory: Any) -> None:
    """``vkUnmapMemory``."""
    lib.vkUnmapMemory(dev.handle, memory)


def flush_range(dev: LogicalDevice, memory: Any, offset: int, size: int) -> None:
    """Flush a host write range of non-coherent memory (caller aligns to ``nonCoherentAtomSize``)."""
    rng = ffi.new("VkMappedMemoryRange*", {"sType": vk.VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE, "memory": memory,
                                           "offset": offset, "size": size})
    check(lib.vkFlushMappedMemoryRanges(dev.handle, 1, rng), "vkFlushMappedMemoryRanges")


def invalidate_range(dev: LogicalDevice, memory: Any, offset: int, size: int) -> None:
    """Invalidate a range of non-coherent memory before the host reads it."""
    rng = ffi.new("VkMappedMemoryRange*", {"sType": vk.VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE, "memory": memory,
                                           "offset": offset, "size": size})
    check(lib.vkInvalidateMappedMemoryRanges(dev.handle, 1, rng), "vkInvalidateMappedMemoryRanges")


# -- buffers --------------------------------------------------------------------------------------------------------


def create_buffer(dev: LogicalDevice, size: int, usage: int) -> Any:
    """``vkCreateBuffer`` (exclusive sharing)."""
    info = ffi.new("VkBufferCreateInfo*", {"sType": vk.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, "size": size,
                                           "usage": usage, "sharingMode": vk.VK_SHARING_MODE_EXCLUSIVE})
    p = ffi.new("VkBuffer*")
    check(lib.vkCreateBuffer(dev.handle, info, NULL, p), "vkCreateBuffer")
    return p[0]


def destroy_buffer(dev: LogicalDevice, buffer: Any) -> None:
    """``vkDestroyBuffer``."""
    lib.vkDestroyBuffer(dev.handle, buffer, NULL)


def buffer_requirements(dev: LogicalDevice, buffer: Any) -> tuple[int, int, int]:
    """Return (size, alignment, memoryTypeBits) of a buffer."""
    req = ffi.new("VkMemoryRequirements*")
    lib.vkGetBufferMemoryRequirements(dev.handle, buffer, req)
    return int(req.size), int(req.alignment), int(req.memoryTypeBits)


def bind_buffer(dev: LogicalDevice, buffer: Any, memory: Any, offset: int) -> None:
    """``vkBindBufferMemory``."""
    check(lib.vkBindBufferMemory(dev.handle, buffer, memory, offset), "vkBindBufferMemory")


def device_address(dev: LogicalDevice, buffer: Any) -> int:
    """The buffer's GPU address (binding quirk handled in the shim)."""
    return buffer_device_address(dev.handle, buffer)


def wants_device_address(usage: int) -> bool:
    """True when the usage flags ask for a shader device address."""
    return bool(usage & BUFFER_USAGE_SHADER_DEVICE_ADDRESS)


# -- commands -------------------------------------------------------------------------------------------------------

_COPY_DTYPE = np.dtype([("src", "<u8"), ("dst", "<u8"), ("size", "<u8")])


def copy_regions(n: int) -> np.ndarray:
    """Return an empty structured array laid out like ``VkBufferCopy[n]``."""
    return np.empty(n, dtype=_COPY_DTYPE)


def cmd_copy_buffer(cmd: Any, src: Any, dst: Any, regions: np.ndarray) -> None:
    """Record ``vkCmdCopyBuffer`` with a ``VkBufferCopy`` structured array (zero-copy into the call)."""
    regions = np.ascontiguousarray(regions, dtype=_COPY_DTYPE)
    lib.vkCmdCopyBuffer(cmd, src, dst, len(regions), ffi.cast("VkBufferCopy*", ffi.from_buffer(regions)))


def cmd_fill_buffer(cmd: Any, buffer: Any, offset: int, size: int, value: int = 0) -> None:
    """Record ``vkCmdFillBuffer``: ``size`` bytes (a multiple of 4) at ``offset`` set to the 32-bit ``value``."""
    lib.vkCmdFillBuffer(cmd, buffer, offset, size, value)


def cmd_buffer_barrier(cmd: Any, buffer: Any, *, src_stage: int, dst_stage: int, src_access: int, dst_access: int,
                       offset: int = 0, size: int = 0xFFFFFFFFFFFFFFFF, src_family: int = QUEUE_FAMILY_IGNORED,
                       dst_family: int = QUEUE_FAMILY_IGNORED) -> None:
    """Record one buffer memory barrier (also used for queue-family ownership release and acquire)."""
    barrier = ffi.new("VkBufferMemoryBarrier*", {
        "sType": vk.VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER, "srcAccessMask": src_access, "dstAccessMask": dst_access,
        "srcQueueFamilyIndex": src_family, "dstQueueFamilyIndex": dst_family, "buffer": buffer, "offset": offset,
        "size": size})
    lib.vkCmdPipelineBarrier(cmd, src_stage, dst_stage, 0, 0, NULL, 1, barrier, 0, NULL)


def cmd_memory_barrier(cmd: Any, *, src_stage: int, dst_stage: int, src_access: int, dst_access: int) -> None:
    """Record a global memory barrier."""
    barrier = ffi.new("VkMemoryBarrier*", {"sType": vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                                           "srcAccessMask": src_access, "dstAccessMask": dst_access})
    lib.vkCmdPipelineBarrier(cmd, src_stage, dst_stage, 0, 1, barrier, 0, NULL, 0, NULL)
