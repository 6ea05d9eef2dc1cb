"""Reading GPU buffers back to numpy: straight from mapped memory when host-visible, else through staging."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..errors import VixenError
from ..memory.buffers import Buffer
from ..vk import resources as vkr
from ..vk.commands import CommandPool, begin, end, submit
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
            raise VixenError(f"read of buffer {buffer.name!r}: {size} bytes at offset {offset} exceed its {buffer.size} bytes")
        up = self._up
        if up.pending_bytes or up._batch.images:
            up.flush()
        lt = up.lifetime
        if buffer.last_use:
            lt.wait(buffer.last_use)
        out = np.empty(size, dtype=np.uint8)
        if size == 0:
            return out
        if buffer.host_visible:
            np.copyto(out, buffer.mapped[offset:offset + size])
            return out
        pos = 0
        while pos < size:
            chunk = min(size - pos, up.pool.max_chunk)
            staging = up.pool.checkout(chunk)
            try:
                with self._lock:
                    cmd = self._cmd
                    begin(cmd)
                    regions = vkr.copy_regions(1)
                    regions[0] = (buffer.offset + offset + pos, staging.offset, chunk)
                    vkr.cmd_copy_buffer(cmd, buffer.handle, staging.handle, regions)
                    readback_barrier(cmd)
                    end(cmd)
                    with lt.submit_lock:
                        value = lt.next_value()
                        submit(self._dev, self._dev.queue, [cmd], signals=[(lt.timeline, value)])
                    lt.wait(value)
                np.copyto(out[pos:pos + chunk], staging.mapped[:chunk])
            finally:
                up.pool.give_back([staging])
            pos += chunk
        return out

    def destroy(self) -> None:
        """Destroy the command pool."""
        self._pool.destroy()


def read_view(data: Any) -> np.ndarray:
    """Flat uint8 view of bytes-like data (for comparisons in tests and tools)."""
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
