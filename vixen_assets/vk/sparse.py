"""Sparse residency images: creation, their page granularity and mip tail, and ``vkQueueBindSparse``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .images import ASPECT_COLOR
from .logical import LogicalDevice, Queue
from .shim import NULL, check, ffi, lib, vk

IMAGE_CREATE_SPARSE_BINDING = 0x1
IMAGE_CREATE_SPARSE_RESIDENCY = 0x2
IMAGE_TYPE_2D = 1
SAMPLE_COUNT_1 = 1
TILING_OPTIMAL = 0


@dataclass(frozen=True)
class SparseLayout:
    """Page shape and mip tail of a sparse image (``vkGetImageSparseMemoryRequirements``) and its memory needs."""

    page_width: int
    page_height: int
    mip_tail_first_lod: int
    mip_tail_size: int
    mip_tail_offset: int
    size: int
    alignment: int
    type_bits: int


@dataclass(frozen=True)
class ImageBind:
    """Bind (``memory`` not None) or unbind one page region of mip ``level`` at texel ``(x, y)``."""

    level: int
    x: int
    y: int
    width: int
    height: int
    memory: Any
    offset: int


def sparse_format_granularity(physical: Any, vk_format: int, usage: int) -> tuple[int, int] | None:
    """The page shape of a 2D single-sample optimal sparse image of ``vk_format``, or None when unsupported."""
    n = ffi.new("uint32_t*")
    lib.vkGetPhysicalDeviceSparseImageFormatProperties(physical, vk_format, IMAGE_TYPE_2D, SAMPLE_COUNT_1, usage,
                                                       TILING_OPTIMAL, n, NULL)
    if not n[0]:
        return None
    props = ffi.new("VkSparseImageFormatProperties[]", n[0])
    lib.vkGetPhysicalDeviceSparseImageFormatProperties(physical, vk_format, IMAGE_TYPE_2D, SAMPLE_COUNT_1, usage,
                                                       TILING_OPTIMAL, n, props)
    for i in range(n[0]):
        if props[i].aspectMask & ASPECT_COLOR:
            g = props[i].imageGranularity
            return int(g.width), int(g.height)
    return None


def create_sparse_image(dev: LogicalDevice, *, vk_format: int, width: int, height: int, levels: int,
                        usage: int) -> Any:
    """``vkCreateImage`` of a 2D sparse-resident image (optimal tiling, UNDEFINED layout)."""
    info = ffi.new("VkImageCreateInfo*", {
        "sType": vk.VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO,
        "flags": IMAGE_CREATE_SPARSE_BINDING | IMAGE_CREATE_SPARSE_RESIDENCY, "imageType": IMAGE_TYPE_2D,
        "format": vk_format, "extent": {"width": width, "height": height, "depth": 1}, "mipLevels": levels,
        "arrayLayers": 1, "samples": SAMPLE_COUNT_1, "tiling": TILING_OPTIMAL, "usage": usage,
        "sharingMode": vk.VK_SHARING_MODE_EXCLUSIVE, "initialLayout": vk.VK_IMAGE_LAYOUT_UNDEFINED})
    p = ffi.new("VkImage*")
    check(lib.vkCreateImage(dev.handle, info, NULL, p), "vkCreateImage")
    return p[0]


def sparse_layout(dev: LogicalDevice, image: Any) -> SparseLayout:
    """The colour aspect's page shape and mip tail, and the image's memory requirements."""
    req = ffi.new("VkMemoryRequirements*")
    lib.vkGetImageMemoryRequirements(dev.handle, image, req)
    n = ffi.new("uint32_t*")
    lib.vkGetImageSparseMemoryRequirements(dev.handle, image, n, NULL)
    reqs = ffi.new("VkSparseImageMemoryRequirements[]", max(1, n[0]))
    lib.vkGetImageSparseMemoryRequirements(dev.handle, image, n, reqs)
    for i in range(n[0]):
        r = reqs[i]
        if r.formatProperties.aspectMask & ASPECT_COLOR:
            g = r.formatProperties.imageGranularity
            return SparseLayout(int(g.width), int(g.height), int(r.imageMipTailFirstLod), int(r.imageMipTailSize),
                                int(r.imageMipTailOffset), int(req.size), int(req.alignment),
                                int(req.memoryTypeBits))
    raise ValueError("the sparse image has no colour aspect requirements")


def queue_bind_sparse(queue: Queue, image: Any, binds: Sequence[ImageBind], *,
                      opaque: Sequence[tuple[int, int, Any, int]] = (), signal: tuple[Any, int] | None = None,
                      wait: tuple[Any, int] | None = None) -> None:
    """``vkQueueBindSparse`` of page binds (and opaque ``(resource_offset, size, memory, memory_offset)`` binds, for a
    mip tail) of one image, waiting on and signalling timeline values, under the queue's lock."""
    keep: list[Any] = []
    info = ffi.new("VkBindSparseInfo*", {"sType": vk.VK_STRUCTURE_TYPE_BIND_SPARSE_INFO})
    if binds:
        arr = ffi.new("VkSparseImageMemoryBind[]", len(binds))
        for i, b in enumerate(binds):
            m = arr[i]
            m.subresource.aspectMask = ASPECT_COLOR
            m.subresource.mipLevel = b.level
            m.subresource.arrayLayer = 0
            m.offset.x, m.offset.y, m.offset.z = b.x, b.y, 0
            m.extent.width, m.extent.height, m.extent.depth = b.width, b.height, 1
            m.memory = b.memory if b.memory is not None else NULL
            m.memoryOffset = b.offset
        ib = ffi.new("VkSparseImageMemoryBindInfo*", {"image": image, "bindCount": len(binds), "pBinds": arr})
        keep += [arr, ib]
        info.imageBindCount = 1
        info.pImageBinds = ib
    if opaque:
        oarr = ffi.new("VkSparseMemoryBind[]", len(opaque))
        for i, (res_off, size, memory, mem_off) in enumerate(opaque):
            oarr[i].resourceOffset = res_off
            oarr[i].size = size
            oarr[i].memory = memory if memory is not None else NULL
            oarr[i].memoryOffset = mem_off
        ob = ffi.new("VkSparseImageOpaqueMemoryBindInfo*", {"image": image, "bindCount": len(opaque),
                                                            "pBinds": oarr})
        keep += [oarr, ob]
        info.imageOpaqueBindCount = 1
        info.pImageOpaqueBinds = ob
    if signal is not None or wait is not None:
        wsem = ffi.new("VkSemaphore[]", [wait[0].handle]) if wait else NULL
        wval = ffi.new("uint64_t[]", [wait[1]]) if wait else NULL
        ssem = ffi.new("VkSemaphore[]", [signal[0].handle]) if signal else NULL
        sval = ffi.new("uint64_t[]", [signal[1]]) if signal else NULL
        tinfo = ffi.new("VkTimelineSemaphoreSubmitInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO, "waitSemaphoreValueCount": 1 if wait else 0,
            "pWaitSemaphoreValues": wval, "signalSemaphoreValueCount": 1 if signal else 0,
            "pSignalSemaphoreValues": sval})
        keep += [wsem, wval, ssem, sval, tinfo]
        info.pNext = tinfo
        info.waitSemaphoreCount = 1 if wait else 0
        info.pWaitSemaphores = wsem
        info.signalSemaphoreCount = 1 if signal else 0
        info.pSignalSemaphores = ssem
    with queue.lock:
        check(lib.vkQueueBindSparse(queue.handle, 1, info, NULL), "vkQueueBindSparse")
    del keep


def destroy_sparse_image(dev: LogicalDevice, image: Any) -> None:
    """``vkDestroyImage`` (the bound pages' memory belongs to the caller)."""
    if dev.handle is not None and image is not None:
        lib.vkDestroyImage(dev.handle, image, NULL)


__all__ = ["ImageBind", "SparseLayout", "create_sparse_image", "destroy_sparse_image", "queue_bind_sparse",
           "sparse_format_granularity", "sparse_layout"]
