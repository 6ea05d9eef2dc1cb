"""Reading GPU buffers back to numpy: straight from mapped memory when host-visible, else through staging."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..memory.buffers import Buffer
from ..vk import resources as vkr
from ..vk.commands import CommandPool, begin, end, submit
from ..vk.enums import Access, ImageLayout, PipelineStage
from .uploader import BatchedUploader, readback_barrier


class Readback:
    """Copies device buffers into host memory (reusing the uploader's staging pool: no allocation after warm-up)."""

    def __init__(self, uploader: BatchedUploader) -> None:
        """Share the uploader's pool and timeline; record on the main queue."""
        self._up = uploader
        self._dev = uploader.dev
        self._pool = CommandPool(self._dev, self._dev.queue.family)
        self._cmd = self._pool.allocate()
        self._lock = threading.Lock()

    def read(self, buffer: Buffer, size: int | None = None, offset: int = 0) -> np.ndarray:
        """Return a new uint8 array with ``size`` bytes of ``buffer`` from ``offset`` (after pending uploads)."""
        if size is None:
            size = buffer.size - offset
        if offset < 0 or size < 0 or offset + size > buffer.size:
            raise ConfigError(f"read of buffer {buffer.name!r}: {size} bytes at offset {offset} exceed its {buffer.size} bytes")
        up = self._up
        self._settle(buffer)
        out = np.empty(size, dtype=np.uint8)
        if size == 0:
            return out
        if buffer.host_visible:
            np.copyto(out, buffer.host_bytes[offset:offset + size])
            return out
        pos = 0
        while pos < size:
            chunk = min(size - pos, up.pool.max_chunk)
            staging = up.pool.checkout(chunk)
            try:
                regions = vkr.copy_regions(1)
                regions[0] = (buffer.offset + offset + pos, staging.offset, chunk)
                self._run(lambda cmd: vkr.cmd_copy_buffer(cmd, buffer.handle, staging.handle, regions))
                np.copyto(out[pos:pos + chunk], staging.host_bytes[:chunk])
            finally:
                up.pool.give_back([staging])
            pos += chunk
        return out

    def read_image(self, image: Any, level: int = 0, layer: int = 0, face: int = 0) -> np.ndarray:
        """Return one subresource's bytes: raw blocks (1-D uint8) for block formats, else pixels
        ``(height, width, texel_bytes)`` (``(depth, height, width, texel_bytes)`` for 3D images)."""
        from ..formats.vkformat import format_info, level_size
        from ..vk.images import cmd_copy_image_to_buffer, cmd_image_barrier
        from .image_regions import level_copies, mip_extent

        if not (0 <= level < image.levels and 0 <= layer < image.array_layers and 0 <= face < image.faces):
            raise ConfigError(f"image {image.name!r}: no level {level} / layer {layer} / face {face}")
        up = self._up
        self._settle(image)
        info = format_info(image.vk_format)
        w, h, d = mip_extent(image.width, image.height, image.depth, level)
        total = level_size(info, w, h, d)
        out = np.empty(total, dtype=np.uint8)
        copies = level_copies(info, w, h, d, level=level, base_layer=layer * image.faces + face, layer_count=1,
                              buffer_offset=0, max_bytes=up.pool.max_chunk)
        old = image.layout
        for c in copies:
            staging = up.pool.checkout(c.size)
            try:
                def record(cmd: Any, c: Any = c, staging: Any = staging, old: int = old) -> None:
                    cmd_image_barrier(cmd, image, old_layout=old, new_layout=ImageLayout.TRANSFER_SRC,
                                      src_stage=PipelineStage.ALL_COMMANDS, dst_stage=PipelineStage.TRANSFER,
                                      src_access=Access.MEMORY_WRITE, dst_access=Access.TRANSFER_READ)
                    cmd_copy_image_to_buffer(cmd, image, 6, staging.handle, staging.offset, [c.rebased(0)])
                    cmd_image_barrier(cmd, image, old_layout=ImageLayout.TRANSFER_SRC,
                                      new_layout=old if old else ImageLayout.SHADER_READ_ONLY,
                                      src_stage=PipelineStage.TRANSFER, dst_stage=PipelineStage.ALL_COMMANDS,
                                      src_access=Access.TRANSFER_READ, dst_access=Access.MEMORY_READ)

                self._run(record)
                old = image.layout = old if old else ImageLayout.SHADER_READ_ONLY
                np.copyto(out[c.buffer_offset:c.buffer_offset + c.size], staging.host_bytes[:c.size])
            finally:
                up.pool.give_back([staging])
        if info.is_compressed:
            return out
        texel = info.bytes_per_block
        return out.reshape((d, h, w, texel) if image.depth > 1 else (h, w, texel))

    def _settle(self, resource: Any) -> None:
        """Submit pending uploads and wait for the GPU work that last used ``resource``."""
        up = self._up
        if up.has_pending:
            up.flush()
        if resource.last_use:
            up.lifetime.wait(resource.last_use)

    def _run(self, record: Any) -> None:
        """Record ``record(cmd)`` plus the host-read barrier, submit on the main queue, wait for it."""
        lt = self._up.lifetime
        with self._lock:
            cmd = self._cmd
            begin(cmd)
            record(cmd)
            readback_barrier(cmd)
            end(cmd)
            with lt.submit_lock:
                value = lt.next_value()
                submit(self._dev, self._dev.queue, [cmd], signals=[(lt.timeline, value)])
            lt.wait(value)

    def destroy(self) -> None:
        """Destroy the command pool."""
        self._pool.destroy()


def read_view(data: Any) -> np.ndarray:
    """Flat uint8 view of bytes-like data (for comparisons in tests and tools)."""
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
