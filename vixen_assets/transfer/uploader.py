"""``BatchedUploader`` (``Device.uploader``): record many copies into one command buffer, submit once.

- ``enqueue(dst, data, dst_offset)`` stages ``data`` and records a ``VkBufferCopy``; copies to adjacent ranges of
  one buffer from adjacent staging bytes are coalesced into one region. Small pieces are packed linearly into pool
  buffers; pieces above 512 KiB skip the packing and take whole pool buffers, split at the largest tier (4 MiB).
- Staging fills of large pieces run on a small thread pool (``numpy.copyto`` releases the GIL), so host copies do
  not cap the DMA engine. Once a batch holds ``AUTO_FLUSH_BYTES`` it is sealed and submitted as soon as its fills
  are done, while enqueueing goes on into the next batch: host fills overlap the copies of earlier batches. One
  fill task per staging chunk (``FILL_SLICE``). A submitter thread, woken when a batch is sealed, waits for the
  oldest sealed batch's fills (without the lock) and submits it at once, in order (it does not wait for the
  enqueueing thread to come back). A batch stays in ``_sealed`` until its destinations' ``last_use`` is set, and
  the pending tests (``has_pending``, ``flush_if_pending``) take the lock, so a read or a retire never slips
  between the two.
- When the destination is host-visible (unified memory, e.g. lavapipe; resizable BAR) and ``direct_writes`` is on,
  the bytes go straight into the mapped destination: no staging copy, no GPU work. With 4 or more fill threads,
  pieces of 2 MiB and more are written by several fill threads at once and ``enqueue`` returns without waiting for
  them (the next piece's ``create_buffer`` and enqueue overlap the writes; at most ``DIRECT_INFLIGHT`` bytes are
  outstanding); ``flush()`` (and any read, retire or staged submission) waits for them. As for staged pieces, the
  source must not change until ``flush()``. A direct write into a destination first waits for the direct writes
  into it still running and submits the staged copies into it still pending: the later write lands last.
- ``flush()`` makes one ``vkQueueSubmit`` per batch on the upload queue (the dedicated transfer queue when the device
  has one) and returns a :class:`Ticket` (``wait()`` / ``done``) covering everything enqueued before it. With a
  separate transfer queue, the destinations are released by the transfer family and acquired by the main family
  (queue-family ownership transfer; destinations side by side in one ``VkBuffer`` share one barrier): the acquire is
  a second submission on the main queue that waits on the transfer queue's timeline semaphore.
- ``enqueue_image`` records buffer-to-image copies with the layout transitions (UNDEFINED -> TRANSFER_DST -> the
  final layout, default SHADER_READ_ONLY_OPTIMAL).
"""

from __future__ import annotations

import os
import threading
from time import thread_time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..arguments import int_argument
from ..errors import ConfigError, DeviceClosedError, VixenError
from ..memory.buffers import Buffer, BufferFactory
from ..memory.lifetime import Lifetime
from ..memory.resource import DESTROYED
from ..vk import LogicalDevice
from ..vk import resources as vkr
from ..vk.commands import CommandPool, begin, end, submit
from ..vk.enums import Access, ImageLayout, PipelineStage
from ..vk.images import ImageCopy, cmd_copy_buffer_to_image, cmd_image_barriers
from ..vk.shim import QUEUE_FAMILY_IGNORED
from ..vk.sync import TimelineSemaphore
from .staging import StagingBufferPool

LARGE_COPY = 512 << 10      # pieces above this skip linear packing (Hydra Storm's threshold)
PARALLEL_FILL = 1 << 20     # pieces above this are filled on the thread pool
FILL_SPLIT = 1 << 20        # direct writes are split over the fill threads in slices of at least this
AUTO_FLUSH_BYTES = 16 << 20  # staged bytes that seal a batch for submission (starts the DMA engine early)
TIMED_COPY = 64 << 10       # host copies of at least this are timed (thread CPU) into ``UploadStats.copy_cpu_s``
DIRECT_INFLIGHT = 256 << 20  # bytes of direct writes that may run on the fill threads while enqueueing goes on
# bytes per staging fill task: a whole 4 MiB chunk. Slicing chunks over 16 threads (1 MiB tasks) made four times the
# tasks, each a trip of a fill thread through the GIL (pool queue, future, result) against the enqueueing thread's
# Python; on the H200 those rows fell to 54% of the fill floor (the 38beb81 design, one task per chunk, had 17 GB/s on
# an H100 host). ``bench_upload.py --fill-slice-mib 1`` measures the sliced variant beside it.
FILL_SLICE = 4 << 20

# short names of the vk/enums.py values the barriers below use
STAGE_TRANSFER = PipelineStage.TRANSFER
STAGE_ALL_COMMANDS = PipelineStage.ALL_COMMANDS
STAGE_HOST = PipelineStage.HOST
STAGE_TOP = PipelineStage.TOP_OF_PIPE
ACCESS_TRANSFER_WRITE = Access.TRANSFER_WRITE
ACCESS_MEMORY_READ = Access.MEMORY_READ
ACCESS_MEMORY_WRITE = Access.MEMORY_WRITE
ACCESS_HOST_READ = Access.HOST_READ


_U8 = np.dtype(np.uint8)
_ndarray = np.ndarray


def _timed_copy(dst: np.ndarray, src: np.ndarray) -> float:
    """``numpy.copyto(dst, src)`` (releases the GIL); return the calling thread's CPU seconds it took."""
    t0 = thread_time()
    np.copyto(dst, src)
    return thread_time() - t0


def as_bytes(data: Any) -> np.ndarray:
    """View ``data`` (bytes-like or numpy array) as a flat uint8 array without copying when possible."""
    if isinstance(data, np.ndarray):
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        out: np.ndarray = data.reshape(-1).view(np.uint8)
        return out
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError) as exc:
        raise ConfigError(f"must be bytes-like or a numpy array, got {type(data).__name__} ({exc})",
                          option="data") from None


class Ticket:
    """A flushed batch: ``wait()`` blocks until the GPU finished it, ``done`` polls."""

    __slots__ = ("_uploader", "value", "regions", "nbytes", "submits")

    def __init__(self, uploader: BatchedUploader | None, value: int, regions: int, nbytes: int, submits: int) -> None:
        self._uploader = uploader
        self.value = value
        self.regions = regions
        self.nbytes = nbytes
        self.submits = submits

    @property
    def done(self) -> bool:
        """True once the GPU finished the batch (immediately for batches of direct writes only)."""
        return self._uploader is None or self._uploader.lifetime.is_done(self.value)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the batch is done; return False on timeout."""
        if self._uploader is None:
            return True
        ok = self._uploader.lifetime.wait(self.value, timeout_s)
        if ok:
            self._uploader.collect()
        return ok

    def __repr__(self) -> str:
        return f"<Ticket value={self.value} regions={self.regions} {self.nbytes} B done={self.done}>"


@dataclass
class _Batch:
    groups: dict[tuple[int, int], tuple[Any, Any, list[list[int]]]] = field(default_factory=dict)
    staging: list[Buffer] = field(default_factory=list)
    cursor_buf: Buffer | None = None
    cursor_view: Any = None  # ``cursor_buf.mapped``
    cursor: int = 0
    last: list[int] | None = None  # the region the previous small piece went into (``[src, dst, size]``)
    last_dst: Any = None  # ... and its destination ``VkBuffer``
    fills: list[Future[Any]] = field(default_factory=list)
    dsts: dict[int, Buffer] = field(default_factory=dict)
    images: list[tuple[Any, Any, list[ImageCopy], int]] = field(default_factory=list)
    nbytes: int = 0
    pieces: int = 0

    def empty(self) -> bool:
        return not self.groups and not self.images


@dataclass
class UploadStats:
    """Counters of the uploader."""

    enqueues: int = 0
    direct_writes: int = 0
    direct_bytes: int = 0
    staged_bytes: int = 0
    #: thread CPU seconds spent in the host copies of buffer uploads' bytes (staging fills and direct writes of at
    #: least ``TIMED_COPY`` bytes, on whichever thread ran them): what an overhead measure subtracts
    copy_cpu_s: float = 0.0
    regions: int = 0
    coalesced: int = 0
    flushes: int = 0
    submits: int = 0
    ownership_transfers: int = 0
    ownership_barriers: int = 0
    image_copies: int = 0
    prestaged_bytes: int = 0  # image bytes callers wrote straight into staging (``enqueue_image_staged``)


class BatchedUploader:
    """Batches host-to-GPU copies; see the module docstring. Thread-safe."""

    def __init__(self, dev: LogicalDevice, factory: BufferFactory, lifetime: Lifetime, *, staging_quota: int,
                 staging_timeout_s: float, threads: int | None = None, force_ownership_transfer: bool = False) -> None:
        """Create the staging pool, command pools and fill threads."""
        self.dev = dev
        self.factory = factory
        self.lifetime = lifetime
        self.direct_writes = True
        self._lock = threading.RLock()
        self._batch = _Batch()
        # auto-flushed batches whose staging fills are still running: submitted in order once their fills are done,
        # while enqueueing goes on into a new batch (host fills overlap the copies of earlier batches)
        self._sealed: deque[_Batch] = deque()
        self._inflight: deque[tuple[int, list[Buffer], list[tuple[str, Any]]]] = deque()
        self.pool = StagingBufferPool(factory, quota=staging_quota, timeout_s=staging_timeout_s,
                                      on_exhausted=self._on_exhausted)
        self.upload_queue = dev.upload_queue
        self.main_queue = dev.queue
        self.separate_queue = dev.transfer_queue is not None
        self.ownership_transfer = self.separate_queue and (
            dev.upload_queue.family != dev.queue.family or force_ownership_transfer)
        self._pools = {"upload": CommandPool(dev, self.upload_queue.family)}
        self._free_cmds: dict[str, list[Any]] = {"upload": []}
        self.transfer_timeline: TimelineSemaphore | None = None
        if self.separate_queue:
            self._pools["acquire"] = CommandPool(dev, self.main_queue.family)
            self._free_cmds["acquire"] = []
            self.transfer_timeline = TimelineSemaphore(dev, 0)
        self._transfer_value = 0
        workers = threads if threads is not None else max(1, min(16, (os.cpu_count() or 2)))
        self._workers = workers
        # direct writes are split over the fill threads only where there are cores to spare: measured on 2 cores
        # (lavapipe) the split made 100 MB in 4 MiB pieces 1.2 ms slower; on 16 (H100, resizable BAR) 2x faster
        self._split_direct = workers >= 4
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vixen-fill")
        # pieces up to this are packed into shared pool buffers (never more than the largest tier holds)
        self._small_max = min(LARGE_COPY, self.pool.max_chunk)
        self.stats = UploadStats()
        self._error: BaseException | None = None
        # direct writes running on the fill threads: (future, bytes), their destinations, their bytes
        self._direct: deque[tuple[Future[float], int]] = deque()
        self._direct_dsts: dict[int, Buffer] = {}
        self._direct_bytes = 0
        self._closed = False
        # sealed batches are submitted by one submitter thread, woken when a batch is sealed (never by a fill thread:
        # a fill thread blocked on the lock could starve the direct writes the lock holder waits for)
        self._kick = threading.Event()
        self._submitter = threading.Thread(target=self._submit_loop, name="vixen-submit", daemon=True)
        self._submitter.start()

    @property
    def fill_threads(self) -> int:
        """How many fill threads copy staging fills and large direct writes (default: the CPUs, at most 16)."""
        return self._workers

    @property
    def splits_direct_writes(self) -> bool:
        """Whether large direct writes are split over several fill threads (4 or more of them)."""
        return self._split_direct

    def set_fill_threads(self, count: int) -> None:
        """Replace the fill threads by ``count`` of them (tests and tuning: a many-core host's pipeline anywhere).

        Fills and direct writes already running finish on the old threads first.

        :param count: the number of fill threads, at least 1.
        :raises ConfigError: ``count`` is not a positive integer.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"must be a positive integer, got {count!r}", option="fill_threads")
        with self._lock:
            old = self._threads
            self._wait_direct()
            old.shutdown(wait=True)  # pending batches' fills complete; their futures stay valid
            self._threads = ThreadPoolExecutor(max_workers=count, thread_name_prefix="vixen-fill")
            self._workers = count
            self._split_direct = count >= 4

    # -- enqueue --------------------------------------------------------------------------------------------------
    def enqueue(self, dst: Buffer, data: Any, dst_offset: int = 0) -> None:
        """Schedule a copy of ``data`` into ``dst`` at ``dst_offset`` (done at the next :meth:`flush`)."""
        # hot path (one call per buffer when loading thousands of small ones): a 1-D uint8 array is used as it is
        # (numpy copies from any stride), everything else goes through as_bytes
        if type(data) is _ndarray and data.dtype is _U8 and data.ndim == 1:
            src = data
        else:
            src = as_bytes(data)
        n = src.shape[0]
        if type(dst_offset) is not int:
            dst_offset = int_argument(dst_offset, "offset")
        if type(dst) is not Buffer and not isinstance(dst, Buffer):
            raise ConfigError(f"the destination must be a Buffer, got {type(dst).__name__}", option="buffer")
        if dst_offset < 0 or dst_offset + n > dst.size:
            raise ConfigError(f"upload to buffer {dst.name!r}: {n} bytes at offset {dst_offset} exceed its {dst.size} bytes")
        if dst._state is DESTROYED:
            raise DeviceClosedError(f"buffer {dst.name!r} was destroyed")
        if n == 0:
            return
        stats = self.stats
        stats.enqueues += 1
        if self.direct_writes:
            alloc = dst._alloc
            mapped = alloc.block.mapped
            if mapped is not None:  # host-visible destination: write straight into it
                if self._direct or self._sealed or self._batch.groups:
                    self._settle_direct(dst)  # earlier writes into dst (staged or on the fill threads) land first
                if dst.last_use and not self.lifetime.is_done(dst.last_use):
                    self.lifetime.wait(dst.last_use)  # never write under the GPU's feet
                start = alloc.offset + dst_offset
                if n >= 2 * FILL_SPLIT and self._split_direct:
                    self._write_direct_async(dst, mapped[start:start + n], src)
                elif n >= TIMED_COPY:
                    cpu = _timed_copy(mapped[start:start + n], src)
                    with self._lock:  # the submitter thread adds its batches' fill times under the lock
                        stats.copy_cpu_s += cpu
                else:
                    mapped[start:start + n] = src
                stats.direct_writes += 1
                stats.direct_bytes += n
                return
        with self._lock:
            if n > self._small_max:
                self._stage_large(dst, src, dst_offset)
            else:
                self._stage_small(dst, src, dst_offset)
                if self._batch.nbytes >= AUTO_FLUSH_BYTES:
                    self._seal()
            if self._sealed:
                self._submit_ready()

    def _settle_direct(self, dst: Buffer) -> None:
        """Before a direct write into ``dst``: wait for the direct writes into it still running on the fill threads
        and submit the staged copies into it not yet submitted (the caller then waits for ``dst.last_use``)."""
        key = id(dst)
        with self._lock:
            if key in self._direct_dsts:
                self._wait_direct()
            if any(key in b.dsts for b in (self._batch, *self._sealed)):
                self.flush()

    def _write_direct_async(self, dst: Buffer, view: np.ndarray, src: np.ndarray) -> None:
        """Write ``src`` into the mapped ``view`` on the fill threads, in slices that spread one piece over all of
        them (at least ``FILL_SPLIT`` bytes each); :meth:`flush` waits for them."""
        n = src.shape[0]
        step = max(FILL_SPLIT, (-(-n // self._workers) + 0xFFFF) & ~0xFFFF)
        with self._lock:
            submit = self._threads.submit
            for i in range(0, n, step):
                self._direct.append((submit(_timed_copy, view[i:i + step], src[i:i + step]), min(step, n - i)))
            self._direct_dsts[id(dst)] = dst
            self._direct_bytes += n
            while self._direct_bytes > DIRECT_INFLIGHT:  # bound the work (and source arrays) held in flight
                fut, nbytes = self._direct.popleft()
                self.stats.copy_cpu_s += fut.result()
                self._direct_bytes -= nbytes

    def _wait_direct(self) -> None:
        """Wait for the direct writes still running on the fill threads (call with the lock held)."""
        if not self._direct:
            self._direct_dsts.clear()  # the in-flight bound may have waited for them all already
            return
        try:
            while self._direct:
                fut, nbytes = self._direct.popleft()
                self._direct_bytes -= nbytes
                self.stats.copy_cpu_s += fut.result()
        finally:
            if not self._direct:
                self._direct_dsts.clear()

    def _record(self, src_buf: Buffer, src_off: int, dst: Buffer, dst_off: int, n: int) -> list[int]:
        batch = self._batch
        key = (id(src_buf._handle), id(dst._handle))  # one vkCmdCopyBuffer per (src, dst) VkBuffer pair
        group = batch.groups.get(key)
        if group is None:
            group = batch.groups[key] = (src_buf.handle, dst.handle, [])
        regions = group[2]
        src_abs = src_buf.offset + src_off
        dst_abs = dst.offset + dst_off
        if regions:
            last = regions[-1]
            if last[0] + last[2] == src_abs and last[1] + last[2] == dst_abs:
                last[2] += n
                self.stats.coalesced += 1
                batch.dsts[id(dst)] = dst
                batch.nbytes += n
                return last
        region = [src_abs, dst_abs, n]
        regions.append(region)
        batch.dsts[id(dst)] = dst
        batch.nbytes += n
        return region

    def _stage_small(self, dst: Buffer, src: np.ndarray, dst_offset: int) -> None:
        n = src.shape[0]
        batch = self._batch
        buf = batch.cursor_buf
        cursor = batch.cursor
        dst_abs = dst._offset + dst_offset
        last = batch.last
        if (last is not None and batch.last_dst is dst._handle and last[1] + last[2] == dst_abs
                and buf is not None and last[0] + last[2] == buf._offset + cursor and cursor + n <= buf.size):
            # this piece continues the previous one in the destination: pack it back to back, extend the region
            if n >= TIMED_COPY:
                self.stats.copy_cpu_s += _timed_copy(batch.cursor_view[cursor:cursor + n], src)
            else:
                batch.cursor_view[cursor:cursor + n] = src
            batch.cursor = cursor + n
            last[2] += n
            batch.nbytes += n
            batch.dsts[id(dst)] = dst
            self.stats.coalesced += 1
            self.stats.staged_bytes += n
            return
        start = (cursor + 15) & ~15
        if buf is None or start + n > buf.size:
            buf = self.pool.checkout(max(n, 1 << 20))
            batch = self._batch  # checkout may have flushed the previous batch
            batch.staging.append(buf)
            batch.cursor_buf = buf
            batch.cursor_view = buf.mapped
            start = 0
        if n >= TIMED_COPY:
            self.stats.copy_cpu_s += _timed_copy(batch.cursor_view[start:start + n], src)
        else:
            batch.cursor_view[start:start + n] = src
        batch.cursor = start + n
        batch.last = self._record(buf, start, dst, dst_offset, n)
        batch.last_dst = dst._handle
        self.stats.staged_bytes += n

    def _fill_slice(self) -> int:
        """Bytes per fill task: ``FILL_SLICE`` (a whole staging chunk by default), at least ``FILL_SPLIT``."""
        return max(FILL_SPLIT, FILL_SLICE & ~0xFFFF)

    def _stage_large(self, dst: Buffer, src: np.ndarray, dst_offset: int) -> None:
        n = src.size
        pos = 0
        step = self._fill_slice()
        submit = self._threads.submit
        while pos < n:
            chunk = min(n - pos, self.pool.max_chunk)
            buf = self.pool.checkout(chunk)
            batch = self._batch
            batch.staging.append(buf)
            part = src[pos:pos + chunk]
            if chunk >= PARALLEL_FILL:
                view = buf.host_bytes[:chunk]
                for i in range(0, chunk, step):
                    batch.fills.append(submit(_timed_copy, view[i:i + step], part[i:i + step]))
            elif chunk >= TIMED_COPY:
                self.stats.copy_cpu_s += _timed_copy(buf.host_bytes[:chunk], part)
            else:
                buf.host_bytes[:chunk] = part
            self._record(buf, 0, dst, dst_offset + pos, chunk)
            pos += chunk
            if batch.nbytes >= AUTO_FLUSH_BYTES:
                self._seal()
            if self._sealed:
                self._submit_ready()
        self.stats.staged_bytes += n

    def enqueue_image(self, image: Any, data: Any, copies: Sequence[ImageCopy], *,
                      final_layout: int = ImageLayout.SHADER_READ_ONLY) -> None:
        """Schedule buffer-to-image copies of ``data`` (offsets in ``copies`` are into ``data``) with transitions.

        :param image: an object with ``handle``, ``aspect``, ``levels`` and ``layers`` (see ``memory.images``).
        :param final_layout: ``VkImageLayout`` after the copies (default ``ImageLayout.SHADER_READ_ONLY``).
        """
        src = as_bytes(data)
        n = src.size
        with self._lock:
            # each copy's bytes must sit in one staging buffer: pack whole copies into pieces of at most a chunk
            pending: list[ImageCopy] = []
            chunk_size = 0
            for c in list(copies) + [None]:  # type: ignore[list-item]
                if c is not None and c.size > self.pool.max_chunk:
                    raise VixenError(f"image {getattr(image, 'name', '')!r}: one copy of {c.size} bytes exceeds the "
                                     f"{self.pool.max_chunk}-byte staging chunk")
                if c is None or (chunk_size + c.size + 16 > self.pool.max_chunk and pending):
                    if pending:
                        buf, base = self._image_staging(chunk_size)
                        view = buf.host_bytes
                        rebased = []
                        cur = base
                        for p in pending:
                            cur = (cur + 15) & ~15
                            view[cur:cur + p.size] = src[p.buffer_offset:p.buffer_offset + p.size]
                            rebased.append(p.rebased(cur))
                            cur += p.size
                        # recorded into the batch that holds its staging (a checkout may have flushed the previous)
                        self._batch.images.append((buf, image, rebased, final_layout))
                        self._batch.nbytes += sum(c.size for c in rebased)
                    pending, chunk_size = [], 0
                    if c is None:
                        break
                pending.append(c)
                chunk_size = ((chunk_size + 15) & ~15) + c.size
            self.stats.staged_bytes += n
            self.stats.image_copies += len(copies)

    def enqueue_image_staged(self, image: Any, pieces: Sequence[tuple[Buffer, Sequence[ImageCopy]]], *,
                             final_layout: int = ImageLayout.SHADER_READ_ONLY) -> None:
        """Schedule buffer-to-image copies whose bytes the caller already wrote into staging buffers it checked out
        of :attr:`pool` (a worker inflating straight into staging: no copy here). The buffers join the current
        batch and go back to the pool once its copies are done.

        :param image: as for :meth:`enqueue_image`.
        :param pieces: ``(staging buffer, copies)``; each copy's ``buffer_offset`` is into its buffer.
        :param final_layout: ``VkImageLayout`` after the copies.
        """
        with self._lock:
            batch = self._batch
            for buf, cps in pieces:
                for c in cps:
                    if c.buffer_offset < 0 or c.buffer_offset + c.size > buf.size:
                        raise VixenError(f"image {getattr(image, 'name', '')!r}: a copy of {c.size} bytes at "
                                         f"{c.buffer_offset} exceeds its {buf.size}-byte staging buffer")
            for buf, cps in pieces:
                batch.staging.append(buf)
                batch.images.append((buf, image, list(cps), final_layout))
                nbytes = sum(c.size for c in cps)
                batch.nbytes += nbytes
                self.stats.staged_bytes += nbytes
                self.stats.prestaged_bytes += nbytes
                self.stats.image_copies += len(cps)

    def _image_staging(self, size: int) -> tuple[Buffer, int]:
        """Staging room for ``size`` bytes of image copies: ``(buffer, offset)``, after what the batch's current pool
        buffer holds when they fit (many small textures share one pool buffer instead of a 64-256 KiB buffer each,
        so a batch holds ~3x more of them under the same staging quota), else at the start of a fresh pool buffer
        that becomes the current one."""
        batch = self._batch
        buf = batch.cursor_buf
        start = (batch.cursor + 15) & ~15
        if buf is not None and start + size + 16 <= buf.size:
            batch.cursor = start + size + 16  # room for the 16-byte alignment of each copy inside the piece
            batch.last = None  # the next small buffer copy must not coalesce across this image data
            return buf, start
        buf = self.pool.checkout(max(size + 16, 1 << 20))
        batch = self._batch  # checkout may have flushed the previous batch
        batch.staging.append(buf)
        batch.cursor_buf = buf
        batch.cursor_view = buf.mapped
        batch.cursor = size + 16
        batch.last = None
        return buf, 0

    # -- flush ----------------------------------------------------------------------------------------------------
    def _cmd(self, which: str) -> Any:
        free = self._free_cmds[which]
        return free.pop() if free else self._pools[which].allocate()

    def flush(self) -> Ticket:
        """Submit everything enqueued; return a :class:`Ticket` that covers it.

        One ``vkQueueSubmit`` per batch (two with a separate transfer queue): the current batch, after any batch that
        an auto-flush sealed and whose staging fills were still running.
        """
        with self._lock:
            if self._error is not None:  # a submission made by the submitter thread failed
                err, self._error = self._error, None
                raise err
            self._wait_direct()
            self._seal(background=False)  # the open batch goes last in line (pending until it is submitted)
            self.collect()
            ticket = None
            while self._sealed:
                ticket = self._submit_oldest_sealed(ticket)
            if ticket is not None:
                return ticket
            # nothing new: the ticket still covers every batch submitted before (auto-flushes inside enqueue)
            last = self._inflight[-1][0] if self._inflight else 0
            return Ticket(self if last else None, last, 0, 0, 0)

    def _seal(self, *, background: bool = True) -> None:
        """Auto-flush: close the current batch; it is submitted once its staging fills are done by the submitter
        thread (``background``; else by the caller, :meth:`flush`), without blocking the enqueueing thread on them."""
        if not self._batch.empty():
            self._sealed.append(self._batch)
            self._batch = _Batch()
            if background:
                self._kick.set()

    def _submit_ready(self) -> None:
        """Submit, in order, the sealed batches whose staging fills have finished (call with the lock held)."""
        while self._sealed and all(f.done() for f in self._sealed[0].fills):
            self._submit_oldest_sealed()

    def _submit_oldest_sealed(self, prev: Ticket | None = None) -> Ticket:
        """Submit ``_sealed[0]``; it stays in ``_sealed`` until its destinations' ``last_use`` is set, so that a
        reader or a retire that tests :attr:`has_pending` (under the lock) never misses it."""
        try:
            return self._submit_batch(self._sealed[0], prev)
        finally:
            self._sealed.popleft()

    def _submit_loop(self) -> None:
        """The submitter thread: woken when a batch is sealed, it waits (without the lock) for the oldest sealed
        batch's fills and submits it, in order, until none is left."""
        kick = self._kick
        while True:
            kick.wait()
            kick.clear()  # a batch sealed from here on wakes the next round
            while not self._closed:
                with self._lock:
                    if self._closed or not self._sealed:
                        break
                    batch = self._sealed[0]
                    try:
                        self._submit_ready()
                    except BaseException as e:  # noqa: BLE001 - raised again by the next flush, never lost here
                        self._error = e
                        break
                    if self._sealed and self._sealed[0] is batch:
                        fills = list(batch.fills)
                    else:
                        continue
                for f in fills:  # the enqueueing thread goes on meanwhile (a flush may submit the batch first)
                    f.exception()
            if self._closed:
                return

    def _submit_batch(self, batch: _Batch, prev: Ticket | None = None) -> Ticket:
        """Record and submit one batch once its fills are done; the ticket also counts ``prev``'s batches."""
        with self._lock:
            self._wait_direct()  # a staged copy never lands before a direct write enqueued earlier
            cpu = 0.0
            for f in batch.fills:
                cpu += f.result()
            self.stats.copy_cpu_s += cpu
            self.stats.flushes += 1
            cmd = self._cmd("upload")
            begin(cmd)
            nregions = 0
            for src_handle, dst_handle, regions in batch.groups.values():
                arr = np.array(regions, dtype=np.uint64).view(vkr.copy_regions(0).dtype).reshape(-1)
                vkr.cmd_copy_buffer(cmd, src_handle, dst_handle, arr)
                nregions += len(regions)
            self.stats.regions += nregions
            dst_family = self.main_queue.family
            src_family = self.upload_queue.family
            images: dict[int, tuple[Any, int]] = {}  # each image transitions once, whatever its number of pieces
            for _buf, image, _cps, final_layout in batch.images:
                images.setdefault(id(image), (image, final_layout))
            # one vkCmdPipelineBarrier per transition for the whole batch (not one per image): fresh images
            # (UNDEFINED) wait on nothing, images uploaded to before wait on all earlier commands
            fresh = [img for img, _f in images.values() if not img.layout]
            again = [img for img, _f in images.values() if img.layout]
            cmd_image_barriers(cmd, fresh, old_layout=ImageLayout.UNDEFINED, new_layout=ImageLayout.TRANSFER_DST,
                               src_stage=STAGE_TOP, dst_stage=STAGE_TRANSFER, src_access=Access.NONE,
                               dst_access=ACCESS_TRANSFER_WRITE)
            cmd_image_barriers(cmd, again, old_layout=-1, new_layout=ImageLayout.TRANSFER_DST,
                               src_stage=STAGE_ALL_COMMANDS, dst_stage=STAGE_TRANSFER, src_access=Access.NONE,
                               dst_access=ACCESS_TRANSFER_WRITE)
            by_final: dict[int, list[Any]] = {}
            for image, final_layout in images.values():
                by_final.setdefault(final_layout, []).append(image)
            for buf, image, cps, _final in batch.images:
                cmd_copy_buffer_to_image(cmd, buf.handle, buf.offset, image, cps)
                nregions += len(cps)
            cmds: list[tuple[str, Any]] = [("upload", cmd)]
            if self.ownership_transfer:
                ranges = self._ownership_ranges(batch)
                for handle, offset, size in ranges:
                    vkr.cmd_buffer_barrier(cmd, handle, offset=offset, size=size, src_stage=STAGE_TRANSFER,
                                           dst_stage=STAGE_ALL_COMMANDS, src_access=ACCESS_TRANSFER_WRITE,
                                           dst_access=Access.NONE, src_family=src_family, dst_family=dst_family)
                for final_layout, imgs in by_final.items():
                    cmd_image_barriers(cmd, imgs, old_layout=ImageLayout.TRANSFER_DST, new_layout=final_layout,
                                       src_stage=STAGE_TRANSFER, dst_stage=STAGE_ALL_COMMANDS,
                                       src_access=ACCESS_TRANSFER_WRITE, dst_access=Access.NONE,
                                       src_family=src_family, dst_family=dst_family)
                end(cmd)
                acq = self._cmd("acquire")
                begin(acq)
                for handle, offset, size in ranges:
                    vkr.cmd_buffer_barrier(acq, handle, offset=offset, size=size, src_stage=STAGE_TOP,
                                           dst_stage=STAGE_ALL_COMMANDS, src_access=Access.NONE,
                                           dst_access=ACCESS_MEMORY_READ | ACCESS_MEMORY_WRITE,
                                           src_family=src_family, dst_family=dst_family)
                for final_layout, imgs in by_final.items():
                    # one family on two queues (forced ownership path): no transfer happens, the release barrier
                    # already made the transition, so the acquire side keeps the layout (a second TRANSFER_DST ->
                    # final transition from an image already in ``final`` is what the validation layer reported)
                    cmd_image_barriers(acq, imgs,
                                       old_layout=ImageLayout.TRANSFER_DST if src_family != dst_family else final_layout,
                                       new_layout=final_layout, src_stage=STAGE_TOP, dst_stage=STAGE_ALL_COMMANDS,
                                       src_access=Access.NONE, dst_access=ACCESS_MEMORY_READ | ACCESS_MEMORY_WRITE,
                                       src_family=src_family, dst_family=dst_family)
                end(acq)
                cmds.append(("acquire", acq))
                self.stats.ownership_transfers += len(batch.dsts) + len(images)
                self.stats.ownership_barriers += len(ranges)
            else:
                vkr.cmd_memory_barrier(cmd, src_stage=STAGE_TRANSFER, dst_stage=STAGE_ALL_COMMANDS,
                                       src_access=ACCESS_TRANSFER_WRITE,
                                       dst_access=ACCESS_MEMORY_READ | ACCESS_MEMORY_WRITE)
                for final_layout, imgs in by_final.items():
                    cmd_image_barriers(cmd, imgs, old_layout=ImageLayout.TRANSFER_DST, new_layout=final_layout,
                                       src_stage=STAGE_TRANSFER, dst_stage=STAGE_ALL_COMMANDS,
                                       src_access=ACCESS_TRANSFER_WRITE, dst_access=ACCESS_MEMORY_READ)
                end(cmd)
            value = self._submit(cmd, cmds)
            for dst in batch.dsts.values():
                dst.last_use = value
            for image, final_layout in images.values():
                image.last_use = value
                image.layout = final_layout
            self._inflight.append((value, batch.staging, cmds))
            if prev is not None:
                return Ticket(self, value, nregions + prev.regions, batch.nbytes + prev.nbytes, len(cmds) + prev.submits)
            return Ticket(self, value, nregions, batch.nbytes, len(cmds))

    @staticmethod
    def _ownership_ranges(batch: _Batch) -> list[tuple[Any, int, int]]:
        """The ``(VkBuffer, offset, size)`` ranges to release and acquire: the bytes this batch's copies wrote (not
        whole destinations: a buffer filled over several batches, or a part of a buffer in use, only hands over what
        the transfer queue wrote), where several sit back to back in one ``VkBuffer`` (arena buffers, created one
        after another; the chunks of one large piece) merged into one barrier.

        Ranges less than 256 bytes apart (alignment padding) merge too; a barrier per destination costs a few µs of
        Python each, which dominated batches of thousands of small buffers.
        """
        per_handle: dict[int, tuple[Any, list[tuple[int, int]]]] = {}
        for _src, h, regions in batch.groups.values():
            entry = per_handle.get(id(h))
            if entry is None:
                entry = per_handle[id(h)] = (h, [])
            entry[1].extend((r[1], r[1] + r[2]) for r in regions)
        out: list[tuple[Any, int, int]] = []
        for handle, spans in per_handle.values():
            spans.sort()
            start, end = spans[0]
            for a, b in spans[1:]:
                if a <= end + 256:
                    if b > end:
                        end = b
                else:
                    out.append((handle, start, end - start))
                    start, end = a, b
            out.append((handle, start, end - start))
        return out

    def _submit(self, cmd: Any, cmds: list[tuple[str, Any]]) -> int:
        lt = self.lifetime
        with lt.submit_lock:
            value = lt.next_value()
            try:
                self._submit_locked(cmd, cmds, value)
            except BaseException:
                lt.abandon(value)  # a failed vkQueueSubmit (device lost): waits on ``value`` must not hang
                raise
        return value

    def _submit_locked(self, cmd: Any, cmds: list[tuple[str, Any]], value: int) -> None:
        """The ``vkQueueSubmit`` calls of one batch, signalling ``value`` (``submit_lock`` held)."""
        lt = self.lifetime
        if self.separate_queue:
            assert self.transfer_timeline is not None
            self._transfer_value += 1
            tv = self._transfer_value
            submit(self.dev, self.upload_queue, [cmd], signals=[(self.transfer_timeline, tv)])
            self.stats.submits += 1
            if len(cmds) > 1:
                submit(self.dev, self.main_queue, [cmds[1][1]], waits=[(self.transfer_timeline, tv, STAGE_ALL_COMMANDS)],
                       signals=[(lt.timeline, value)])
            else:  # same family on a second queue: order the main queue after the transfer queue
                submit(self.dev, self.main_queue, [], waits=[(self.transfer_timeline, tv, STAGE_ALL_COMMANDS)],
                       signals=[(lt.timeline, value)])
            self.stats.submits += 1
        else:
            submit(self.dev, self.upload_queue, [cmd], signals=[(lt.timeline, value)])
            self.stats.submits += 1

    # -- completion -----------------------------------------------------------------------------------------------
    def collect(self) -> int:
        """Recycle staging and command buffers of finished batches; return how many finished."""
        n = 0
        with self._lock:
            while self._inflight and self.lifetime.is_done(self._inflight[0][0]):
                _value, staging, cmds = self._inflight.popleft()
                self.pool.give_back(staging)
                for which, cmd in cmds:
                    self._free_cmds[which].append(cmd)
                n += 1
        self.lifetime.collect()
        return n

    def _on_exhausted(self) -> bool:
        """Staging is used up: submit what is pending and wait for the oldest batch in flight."""
        with self._lock:
            if not self._batch.empty() or self._sealed:
                self.flush()
            if not self._inflight:
                return False
            value = self._inflight[0][0]
        self.lifetime.wait(value)
        self.collect()
        return True

    def pending_for(self, resource: object) -> bool:
        """True when copies into ``resource`` (a buffer or an image) are recorded and not yet submitted."""
        key = id(resource)
        with self._lock:
            if key in self._direct_dsts:
                return True
            for batch in (self._batch, *self._sealed):
                if key in batch.dsts or any(img is resource for _b, img, _c, _l in batch.images):
                    return True
        return False

    @property
    def has_pending(self) -> bool:
        """True when anything (buffer or image copies) is enqueued and not yet submitted."""
        with self._lock:  # exact: every submission happens under the lock
            return bool(self._sealed) or not self._batch.empty() or bool(self._direct)

    def flush_if_pending(self, resource: object) -> None:
        """Submit the pending batches when they copy into ``resource`` (a buffer or an image); the pending-flush
        callback the device registers on its ``GpuContext`` (called before ``resource`` retires)."""
        with self._lock:  # a submission in progress (submitter thread) ends before the test
            batch = self._batch
            if id(resource) in batch.dsts or batch.images or self._sealed or self._direct_dsts:  # cheap test first
                if self.pending_for(resource):
                    self.flush()

    @property
    def pending_bytes(self) -> int:
        """Bytes enqueued and not yet submitted."""
        return self._batch.nbytes + sum(b.nbytes for b in self._sealed)

    @property
    def in_flight(self) -> int:
        """Batches submitted and not yet recycled."""
        return len(self._inflight)

    def drain(self) -> None:
        """Flush and wait for every batch."""
        self.flush()
        while self._inflight:
            self.lifetime.wait(self._inflight[-1][0])
            self.collect()

    # -- the stats protocol (``memory.stats``) ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Uploader counters plus the staging pool's (see :meth:`stats_dict`)."""
        return self.stats_dict()

    def reset(self) -> None:
        """Zero counters and peaks (live numbers stay)."""
        self.stats = UploadStats()

    def stats_dict(self) -> dict[str, Any]:
        """Uploader counters plus the staging pool's."""
        d = dict(vars(self.stats))
        d["staging_pool"] = self.pool.stats_dict()
        d["in_flight"] = self.in_flight
        return d

    def close(self) -> None:
        """Drain, destroy the staging pool, command pools and threads; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self.drain()
        finally:
            self._kick.set()
            self._submitter.join()
            self._threads.shutdown(wait=True)
            self.pool.destroy()
            for pool in self._pools.values():
                pool.destroy()
            if self.transfer_timeline is not None:
                self.transfer_timeline.destroy()


def readback_barrier(cmd: Any) -> None:
    """Make transfer writes visible to host reads."""
    vkr.cmd_memory_barrier(cmd, src_stage=STAGE_TRANSFER, dst_stage=STAGE_HOST, src_access=ACCESS_TRANSFER_WRITE,
                           dst_access=ACCESS_HOST_READ)


__all__ = ["BatchedUploader", "Ticket", "as_bytes", "readback_barrier", "QUEUE_FAMILY_IGNORED"]
