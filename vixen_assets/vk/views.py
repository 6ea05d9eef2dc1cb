"""Image views and samplers: what a shader needs to read an image through a descriptor."""

from __future__ import annotations

from typing import Any

from .images import ASPECT_COLOR
from .logical import LogicalDevice
from .shim import NULL, check, ffi, lib, vk

VIEW_TYPE_2D = 1
VIEW_TYPE_2D_ARRAY = 5


def create_image_view(dev: LogicalDevice, image: Any, vk_format: int, *, view_type: int = VIEW_TYPE_2D,
                      levels: int = 1, layers: int = 1) -> Any:
    """``vkCreateImageView`` over the colour aspect of ``levels`` mip levels and ``layers`` array layers."""
    info = ffi.new("VkImageViewCreateInfo*", {
        "sType": vk.VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO, "image": image, "viewType": view_type,
        "format": vk_format,
        "subresourceRange": {"aspectMask": ASPECT_COLOR, "baseMipLevel": 0, "levelCount": levels,
                             "baseArrayLayer": 0, "layerCount": layers}})
    p = ffi.new("VkImageView*")
    check(lib.vkCreateImageView(dev.handle, info, NULL, p), "vkCreateImageView")
    return p[0]


def destroy_image_view(dev: LogicalDevice, view: Any) -> None:
    """``vkDestroyImageView``."""
    if dev.handle is not None and view is not None:
        lib.vkDestroyImageView(dev.handle, view, NULL)


def create_nearest_sampler(dev: LogicalDevice) -> Any:
    """A sampler with nearest filtering and clamp-to-edge addressing (for ``texelFetch`` and exact reads)."""
    info = ffi.new("VkSamplerCreateInfo*", {
        "sType": vk.VK_STRUCTURE_TYPE_SAMPLER_CREATE_INFO, "magFilter": vk.VK_FILTER_NEAREST,
        "minFilter": vk.VK_FILTER_NEAREST, "mipmapMode": vk.VK_SAMPLER_MIPMAP_MODE_NEAREST,
        "addressModeU": vk.VK_SAMPLER_ADDRESS_MODE_CLAMP_TO_EDGE,
        "addressModeV": vk.VK_SAMPLER_ADDRESS_MODE_CLAMP_TO_EDGE,
        "addressModeW": vk.VK_SAMPLER_ADDRESS_MODE_CLAMP_TO_EDGE, "maxLod": 0.0,
        "borderColor": vk.VK_BORDER_COLOR_FLOAT_TRANSPARENT_BLACK})
    p = ffi.new("VkSampler*")
    check(lib.vkCreateSampler(dev.handle, info, NULL, p), "vkCreateSampler")
    return p[0]


def destroy_sampler(dev: LogicalDevice, sampler: Any) -> None:
    """``vkDestroySampler``."""
    if dev.handle is not None and sampler is not None:
        lib.vkDestroySampler(dev.handle, sampler, NULL)
