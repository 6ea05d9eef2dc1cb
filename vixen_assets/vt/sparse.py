"""``backend="sparse"``: the tile cache as a sparse-resident image of the whole texture (every level), with cache
slots being pages of one memory pool bound with ``vkQueueBindSparse``; residency is read from the sampled result.

The pool is the memory of one dedicated device-local buffer allocated through the budget at open (the buffer itself
is never used; its memory backs the image's pages, which Vulkan allows when the memory type suits the image). Limits:
RGBA8 tiles whose size is the format's sparse page (128 x 128 for RGBA8 on lavapipe and NVIDIA), and textures no
larger than ``maxImageDimension2D`` (16384 on lavapipe, 32768 on NVIDIA): the page-table backend has neither limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UnsupportedFeatureError
from ..vk.enums import ImageUsage
from ..vk.images import ASPECT_COLOR
from ..vk.pipeline import DESC_COMBINED_IMAGE_SAMPLER, DESC_STORAGE_BUFFER, ComputePipeline
from ..vk.sparse import (ImageBind, create_sparse_image, destroy_sparse_image, queue_bind_sparse,
                         sparse_format_granularity, sparse_layout)
from ..vk.views import create_image_view, create_nearest_sampler, destroy_image_view, destroy_sampler
from .gpu import context, spirv
from .tilefile import Layout

if TYPE_CHECKING:
    from ..device import Device

USAGE_SAMPLED_TRANSFER = ImageUsage.SAMPLED | ImageUsage.TRANSFER_DST | ImageUsage.TRANSFER_SRC


@dataclass
class SparseImage:
    """What ``cmd_image_barrier`` and ``cmd_copy_buffer_to_image`` need of an image."""

    handle: Any
    levels: int
    layers: int = 1
    aspect: int = ASPECT_COLOR
    layout: int = 0


def check_sparse(device: Device, layout: Layout, vk_format: int) -> None:
    """Raise :class:`UnsupportedFeatureError` unless the device and the file suit the sparse backend.

    :param device: the device.
    :param layout: the file's geometry.
    :param vk_format: the image format.
    """
    feats = device.features
    for feat in ("sparse_binding", "sparse_residency_image2d", "shader_resource_residency"):
        if not feats.get(feat):
            raise UnsupportedFeatureError(f"{device.name} lacks {feat} (backend='sparse')")
    if layout.fmt != "rgba8":
        raise UnsupportedFeatureError(f"backend='sparse' handles rgba8 tiles, not {layout.fmt}")
    max_dim = int(device.info.limits.get("max_image_dimension_2d", 0))
    if layout.size > max_dim:
        raise UnsupportedFeatureError(f"backend='sparse': a {layout.size}^2 image exceeds {device.name}'s "
                                      f"maxImageDimension2D of {max_dim}; use the page-table backend")
    family = context(device).logical.queue.family
    if "sparse" not in device.info.queue_families[family].capabilities:
        raise UnsupportedFeatureError(f"backend='sparse': {device.name}'s queue family {family} cannot bind sparse "
                                      "memory")
    gran = sparse_format_granularity(context(device).physical, vk_format, USAGE_SAMPLED_TRANSFER)
    if gran != (layout.tile, layout.tile):
        raise UnsupportedFeatureError(f"backend='sparse' needs tiles of the sparse page shape {gran}, the file has "
                                      f"{layout.tile} x {layout.tile}")


class SparseCache:
    """The sparse image, its view, sampler and sampling pipeline, and page binding into the pool."""

    def __init__(self, device: Device, layout: Layout, vk_format: int, pool: Any, slots: int) -> None:
        """Create the image and check the pool suits it; ``pool`` is the buffer whose memory holds the pages."""
        ctx = context(device)
        self.ctx = ctx
        self.dev = ctx.logical
        self.layout = layout
        self.pool = pool
        self.view = self.sampler = None
        self.pipe: ComputePipeline | None = None
        self.handle = create_sparse_image(self.dev, vk_format=vk_format, width=layout.size, height=layout.size,
                                          levels=layout.levels, usage=USAGE_SAMPLED_TRANSFER)
        try:
            sl = sparse_layout(self.dev, self.handle)
            self.page_bytes = layout.tile * layout.tile * 4
            type_index = pool.allocation.block.type_index
            if not sl.type_bits & (1 << type_index):
                raise UnsupportedFeatureError(f"backend='sparse': memory type {type_index} cannot back the image "
                                              f"(types {sl.type_bits:#x})")
            if sl.mip_tail_first_lod < layout.levels:
                raise UnsupportedFeatureError(f"backend='sparse': levels from {sl.mip_tail_first_lod} sit in a mip "
                                              "tail; not supported")
            self.base = -(-pool.memory_offset // sl.alignment) * sl.alignment - pool.memory_offset
            if self.base + slots * self.page_bytes > pool.size:
                raise UnsupportedFeatureError("backend='sparse': the pool is too small for its slots")
            self.image = SparseImage(self.handle, layout.levels)
            self.view = create_image_view(self.dev, self.handle, vk_format, levels=layout.levels)
            self.sampler = create_nearest_sampler(self.dev)
            self.pipe = ComputePipeline(self.dev, spirv("vt_sample_sparse"),
                                        [DESC_COMBINED_IMAGE_SAMPLER, DESC_STORAGE_BUFFER, DESC_STORAGE_BUFFER],
                                        push_constant_bytes=16)
        except BaseException:
            self.destroy()
            raise

    def _bind(self, tile: int, slot: int | None) -> ImageBind:
        lv, tx, ty = self.layout.tile_coords(tile)
        t = self.layout.tile
        mem = self.pool.memory if slot is not None else None
        offset = self.pool.memory_offset + self.base + slot * self.page_bytes if slot is not None else 0
        return ImageBind(lv, tx * t, ty * t, t, t, mem, offset)

    def bind(self, loads: list[tuple[int, int]], evictions: list[int], after: int) -> int:
        """Unbind the evicted tiles' pages and bind the loaded ones to their slots once the timeline reached
        ``after`` (the last submission that used them); return the timeline value the binding signals.

        :param loads: ``(tile, slot)`` pairs to bind.
        :param evictions: tiles whose pages to unbind.
        :param after: a timeline value the binding waits for (0: none).
        """
        binds = [self._bind(t, None) for t in evictions] + [self._bind(t, s) for t, s in loads]
        lt = self.ctx.lifetime
        with lt.submit_lock:
            value = lt.next_value()
            queue_bind_sparse(self.dev.queue, self.handle, binds, signal=(lt.timeline, value),
                              wait=(lt.timeline, after) if after else None)
        return value

    def destroy(self) -> None:
        """Destroy the pipeline, view, sampler and image (the pool buffer belongs to the caller); safe twice."""
        if self.pipe is not None:
            self.pipe.destroy()
            self.pipe = None
        destroy_image_view(self.dev, self.view)
        destroy_sampler(self.dev, self.sampler)
        self.view = self.sampler = None
        destroy_sparse_image(self.dev, self.handle)
        self.handle = None


__all__ = ["SparseCache", "check_sparse"]
