"""Raw image calls: create/bind/destroy, buffer<->image copies and layout-transition barriers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .logical import LogicalDevice
from .shim import NULL, QUEUE_FAMILY_IGNORED, check, ffi, lib, vk

ASPECT_COLOR = 0x1
IMAGE_CREATE_CUBE_COMPATIBLE = 0x10


@dataclass(frozen=True)
class ImageCopy:
    """One buffer-to-image (or image-to-buffer) region: ``size`` bytes at ``buffer_offset`` for one level/layer."""

    buffer_offset: int
    size: int
    level: int
    base_layer: int
    layer_count: int
    width: int
    height: int
    depth: int = 1
    x: int = 0
    y: int = 0
    z: int = 0

    def rebased(self, offset: int) -> ImageCopy:
        """The same region read from another buffer offset."""
        # positional construction: ``dataclasses.replace`` cost ~5 µs per copy, a fixed cost per uploaded level
        return ImageCopy(offset, self.size, self.level, self.base_layer, self.layer_count, self.width, self.height,
                         self.depth, self.x, self.y, self.z)


def create_image(dev: LogicalDevice, *, image_type: int, vk_format: int, width: int, height: int, depth: int,
                 levels: int, layers: int, usage: int, cube: bool = False, tiling: int = 0) -> Any:
    """``vkCreateImage`` (optimal tiling by default, exclusive sharing, UNDEFINED initial layout)."""
    info = ffi.new("VkImageCreateInfo*", {
        "sType": vk.VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO, "flags": IMAGE_CREATE_CUBE_COMPATIBLE if cube else 0,
        "imageType": image_type, "format": vk_format, "extent": {"width": width, "height": height, "depth": depth},
        "mipLevels": levels, "arrayLayers": layers, "samples": vk.VK_SAMPLE_COUNT_1_BIT, "tiling": tiling,
        "usage": usage, "sharingMode": vk.VK_SHARING_MODE_EXCLUSIVE, "initialLayout": vk.VK_IMAGE_LAYOUT_UNDEFINED})
    p = ffi.new("VkImage*")
    if dev.faults is not None:
        dev.faults.before_create_image()
    check(lib.vkCreateImage(dev.handle, info, NULL, p), "vkCreateImage")
    return p[0]


def destroy_image(dev: LogicalDevice, image: Any) -> None:
    """``vkDestroyImage``."""
    lib.vkDestroyImage(dev.handle, image, NULL)


def image_requirements(dev: LogicalDevice, image: Any) -> tuple[int, int, int]:
    """Return (size, alignment, memoryTypeBits) of an image."""
    req = ffi.new("VkMemoryRequirements*")
    lib.vkGetImageMemoryRequirements(dev.handle, image, req)
    return int(req.size), int(req.alignment), int(req.memoryTypeBits)


def bind_image(dev: LogicalDevice, image: Any, memory: Any, offset: int) -> None:
    """``vkBindImageMemory``."""
    check(lib.vkBindImageMemory(dev.handle, image, memory, offset), "vkBindImageMemory")


def bind_images(dev: LogicalDevice, binds: Sequence[tuple[Any, Any, int]]) -> None:
    """Bind several images at once: one ``vkBindImageMemory2`` call for every ``(image, memory, offset)``."""
    n = len(binds)
    if not n:
        return
    if n == 1:
        bind_image(dev, *binds[0])
        return
    infos = ffi.new("VkBindImageMemoryInfo[]", n)
    stype = vk.VK_STRUCTURE_TYPE_BIND_IMAGE_MEMORY_INFO
    for i, (image, memory, offset) in enumerate(binds):
        b = infos[i]
        b.sType = stype
        b.image = image
        b.memory = memory
        b.memoryOffset = offset
    check(lib.vkBindImageMemory2(dev.handle, n, infos), "vkBindImageMemory2")


def image_format_supported(dev_physical: Any, vk_format: int, *, image_type: int, usage: int, cube: bool = False,
                           levels: int = 1, layers: int = 1, width: int = 1, height: int = 1, depth: int = 1) -> bool:
    """True when ``vkGetPhysicalDeviceImageFormatProperties`` accepts the format/type/usage and the extent fits."""
    props = ffi.new("VkImageFormatProperties*")
    r = lib.vkGetPhysicalDeviceImageFormatProperties(dev_physical, vk_format, image_type, 0, usage,
                                                     IMAGE_CREATE_CUBE_COMPATIBLE if cube else 0, props)
    if r != vk.VK_SUCCESS:
        return False
    e = props.maxExtent
    return bool(width <= e.width and height <= e.height and depth <= e.depth and levels <= props.maxMipLevels
                and layers <= props.maxArrayLayers)


def _regions(copies: Sequence[ImageCopy], base: int, aspect: int) -> np.ndarray:
    """The ``VkBufferImageCopy`` records of ``copies`` (offsets moved by ``base``) as a
    :data:`BUFFER_IMAGE_COPY_DTYPE` array: one tuple per copy, ~2x faster than setting 13 cffi fields each (a fixed
    cost of every uploaded texture, under the GIL)."""
    return np.array([(base + c.buffer_offset, 0, 0, aspect, c.level, c.base_layer, c.layer_count, c.x, c.y, c.z,
                      c.width, c.height, c.depth) for c in copies], BUFFER_IMAGE_COPY_DTYPE)


def cmd_copy_buffer_to_image(cmd: Any, buffer: Any, base_offset: int, image: Any, copies: Sequence[ImageCopy]) -> None:
    """Record ``vkCmdCopyBufferToImage`` into TRANSFER_DST_OPTIMAL."""
    arr = _regions(copies, base_offset, getattr(image, "aspect", ASPECT_COLOR))
    held = ffi.from_buffer(arr)  # keeps ``arr`` alive through the call
    lib.vkCmdCopyBufferToImage(cmd, buffer, image.handle, vk.VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, len(copies),
                               ffi.cast("VkBufferImageCopy*", held))


#: ``VkBufferImageCopy`` as a numpy record (56 bytes): build many regions with array operations, no per-region loop
BUFFER_IMAGE_COPY_DTYPE = np.dtype([
    ("buffer_offset", "<u8"), ("row_length", "<u4"), ("image_height", "<u4"), ("aspect", "<u4"), ("level", "<u4"),
    ("base_layer", "<u4"), ("layer_count", "<u4"), ("x", "<i4"), ("y", "<i4"), ("z", "<i4"), ("width", "<u4"),
    ("height", "<u4"), ("depth", "<u4")])
assert BUFFER_IMAGE_COPY_DTYPE.itemsize == ffi.sizeof("VkBufferImageCopy")


def buffer_image_copies(n: int) -> np.ndarray:
    """``n`` zeroed ``VkBufferImageCopy`` records (colour aspect, one layer, depth 1) to fill in and pass to
    :func:`cmd_copy_buffer_to_image_array`.

    :param n: the number of regions.
    """
    arr = np.zeros(n, dtype=BUFFER_IMAGE_COPY_DTYPE)
    arr["aspect"] = ASPECT_COLOR
    arr["layer_count"] = 1
    arr["depth"] = 1
    return arr


def cmd_copy_buffer_to_image_array(cmd: Any, buffer: Any, image: Any, regions: np.ndarray) -> None:
    """Record one ``vkCmdCopyBufferToImage`` (into TRANSFER_DST_OPTIMAL) from a :data:`BUFFER_IMAGE_COPY_DTYPE`
    array (passed to the call without a copy; offsets are absolute in ``buffer``).

    :param cmd: the command buffer.
    :param buffer: the source ``VkBuffer``.
    :param image: the destination (``handle``).
    :param regions: the regions.
    """
    regions = np.ascontiguousarray(regions, dtype=BUFFER_IMAGE_COPY_DTYPE)
    if len(regions):
        lib.vkCmdCopyBufferToImage(cmd, buffer, image.handle, vk.VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, len(regions),
                                   ffi.cast("VkBufferImageCopy*", ffi.from_buffer(regions)))


def cmd_copy_image_to_buffer(cmd: Any, image: Any, layout: int, buffer: Any, base_offset: int,
                             copies: Sequence[ImageCopy]) -> None:
    """Record ``vkCmdCopyImageToBuffer`` from an image in ``layout``."""
    arr = _regions(copies, base_offset, getattr(image, "aspect", ASPECT_COLOR))
    held = ffi.from_buffer(arr)  # keeps ``arr`` alive through the call
    lib.vkCmdCopyImageToBuffer(cmd, image.handle, layout, buffer, len(copies), ffi.cast("VkBufferImageCopy*", held))


def cmd_image_barrier(cmd: Any, image: Any, *, old_layout: int, new_layout: int, src_stage: int, dst_stage: int,
                      src_access: int, dst_access: int, src_family: int = QUEUE_FAMILY_IGNORED,
                      dst_family: int = QUEUE_FAMILY_IGNORED) -> None:
    """Record a layout transition (and optional queue-family ownership transfer) over the whole image."""
    barrier = ffi.new("VkImageMemoryBarrier*", {
        "sType": vk.VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER, "srcAccessMask": src_access, "dstAccessMask": dst_access,
        "oldLayout": old_layout, "newLayout": new_layout, "srcQueueFamilyIndex": src_family,
        "dstQueueFamilyIndex": dst_family, "image": image.handle,
        "subresourceRange": {"aspectMask": getattr(image, "aspect", ASPECT_COLOR), "baseMipLevel": 0,
                             "levelCount": image.levels, "baseArrayLayer": 0, "layerCount": image.layers}})
    lib.vkCmdPipelineBarrier(cmd, src_stage, dst_stage, 0, 0, NULL, 0, NULL, 1, barrier)


def cmd_image_barriers(cmd: Any, images: Sequence[Any], *, old_layout: int, new_layout: int, src_stage: int,
                       dst_stage: int, src_access: int, dst_access: int, src_family: int = QUEUE_FAMILY_IGNORED,
                       dst_family: int = QUEUE_FAMILY_IGNORED) -> None:
    """Record one ``vkCmdPipelineBarrier`` transitioning every image of ``images`` (whole images) at once.

    ``old_layout`` may be ``-1``: each image's own ``layout`` attribute is used. A batch of many small textures then
    costs one barrier call per transition instead of one per image.
    """
    n = len(images)
    if not n:
        return
    arr = ffi.new("VkImageMemoryBarrier[]", n)
    for i, image in enumerate(images):
        b = arr[i]
        b.sType = vk.VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER
        b.srcAccessMask = src_access
        b.dstAccessMask = dst_access
        b.oldLayout = image.layout if old_layout == -1 else old_layout
        b.newLayout = new_layout
        b.srcQueueFamilyIndex = src_family
        b.dstQueueFamilyIndex = dst_family
        b.image = image.handle
        r = b.subresourceRange
        r.aspectMask = getattr(image, "aspect", ASPECT_COLOR)
        r.baseMipLevel = 0
        r.levelCount = image.levels
        r.baseArrayLayer = 0
        r.layerCount = image.layers
    lib.vkCmdPipelineBarrier(cmd, src_stage, dst_stage, 0, 0, NULL, 0, NULL, n, arr)


def cmd_copy_image(cmd: Any, src: Any, dst: Any, *, width: int, height: int, depth: int, levels: int,
                   layers: int) -> None:
    """Record ``vkCmdCopyImage`` of every mip level and array layer of ``src`` (TRANSFER_SRC_OPTIMAL) into ``dst``
    (TRANSFER_DST_OPTIMAL): two images of the same format and extent (a defragmentation move).

    ``src`` and ``dst`` are objects with ``handle`` (and optionally ``aspect``)."""
    arr = ffi.new("VkImageCopy[]", levels)
    aspect = getattr(src, "aspect", ASPECT_COLOR)
    for level in range(levels):
        r = arr[level]
        for sub in (r.srcSubresource, r.dstSubresource):
            sub.aspectMask = aspect
            sub.mipLevel = level
            sub.baseArrayLayer = 0
            sub.layerCount = layers
        r.extent.width = max(1, width >> level)
        r.extent.height = max(1, height >> level)
        r.extent.depth = max(1, depth >> level)
    lib.vkCmdCopyImage(cmd, src.handle, vk.VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, dst.handle,
                       vk.VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, levels, arr)
