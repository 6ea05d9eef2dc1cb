"""``open_virtual_texture(path, device)``: sample a huge ``.vtex`` texture through a fixed-size tile cache.

At open, everything is allocated once through the budget manager (category ``"vt"``): the tile cache (one atlas
image of ``tile + 2 * border`` pages, sized from ``budget_mb``; or, with ``backend="sparse"``, a sparse image and its
page pool), the page table (one 32-bit entry per tile per level), the feedback and sample buffers, and a two-segment
staging ring. After that, streaming makes no ``vkAllocateMemory``,
``vkCreateBuffer`` or ``vkCreateImage`` call.

Per frame: :meth:`VirtualTexture.request` (CPU) or :meth:`VirtualTexture.feedback` (a compute pass over (u, v, lod)
samples, read back at the next update) say which tiles are wanted; :meth:`VirtualTexture.update` loads the missing
ones (coarse before fine, then most requested) on a thread pool straight into staging, and submits the copies and the
page-table writes as one batch; :meth:`VirtualTexture.sample` reads texels through the page table on the GPU.

Levels: a lookup at ``lod`` uses level ``clamp(floor(lod), 0, levels - 1)``; requests add the residency level bias.
Requests are per update: ask again every frame for what is still wanted.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BudgetExceededError, ConfigError, DeviceClosedError, FormatError, UnsupportedFeatureError
from ..vk import resources as vkr
from ..vk.images import buffer_image_copies, cmd_copy_buffer_to_image_array, cmd_image_barrier
from ..vk.enums import FormatFeature, MemoryProperty
from ..vk.physical import format_properties
from .gpu import (ACCESS_HOST_READ, ACCESS_SHADER_READ, ACCESS_SHADER_WRITE, ACCESS_TRANSFER_WRITE,
                  LAYOUT_SHADER_READ, LAYOUT_TRANSFER_DST, STAGE_COMPUTE, STAGE_HOST, STAGE_TOP, STAGE_TRANSFER,
                  WORKGROUP, VtGpu, context)
from .pagetable import PageTable
from .residency import Residency
from .sparse import SparseCache, check_sparse
from .tilefile import TileFile

if TYPE_CHECKING:
    from ..device import Device

VK_FORMATS = {"rgba8": 37, "bc7": 145}  # R8G8B8A8_UNORM, BC7_UNORM_BLOCK
FEATURE_SAMPLED = FormatFeature.SAMPLED_IMAGE
FEATURE_TRANSFER_DST = FormatFeature.TRANSFER_DST
SPARSE_SLACK = 1 << 16  # the pool's first page is aligned inside it
FILTERS = {"nearest": 0, "bilinear": 1}
PINNED_FRACTION = 8  # the pinned coarse levels take at most 1/8 of the cache
FEEDBACK_SAMPLES = 1920 * 1080 // 16  # UE: one feedback texel per 4x4 pixels
BACKENDS = ("pagetable", "sparse")
STAGING = ("host_cached", "host_visible")
READERS = ("zstd", "chunks")  # TileFile.read_tiles methods


@dataclass
class UpdateStats:
    """What one :meth:`VirtualTexture.update` did."""

    requested: int = 0
    hits: int = 0
    uploaded: int = 0
    evicted: int = 0
    deferred: int = 0
    bytes_read: int = 0
    thrash: int = 0
    level_bias: float = 0.0
    ms: float = 0.0
    errors: list[str] = field(default_factory=list)
    tiles: list[int] = field(default_factory=list)  # the tile numbers uploaded

    @property
    def hit_rate(self) -> float:
        """Fraction of the requested tiles that were already resident (1.0 when nothing was requested)."""
        return self.hits / self.requested if self.requested else 1.0


@dataclass
class VtStats:
    """Running totals of a virtual texture (``vt.stats``)."""

    requested: int = 0
    hits: int = 0
    resident: int = 0
    pinned: int = 0
    slots: int = 0
    uploaded: int = 0
    evicted: int = 0
    bytes_read: int = 0
    thrash: int = 0
    errors: int = 0
    updates: int = 0
    level_bias: float = 0.0
    hit_rate: float = 1.0
    update_p50_ms: float = 0.0
    update_p99_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return asdict(self)


def _as_samples(u: Any, v: Any, lod: Any) -> np.ndarray:
    """``(N, 4)`` float32 ``(u, v, lod, 0)`` from broadcastable arrays."""
    u, v, lod = np.broadcast_arrays(np.asarray(u, np.float32), np.asarray(v, np.float32), np.asarray(lod, np.float32))
    out = np.zeros((u.size, 4), np.float32)
    out[:, 0], out[:, 1], out[:, 2] = u.ravel(), v.ravel(), lod.ravel()
    return np.nan_to_num(out, copy=False, nan=0.0, posinf=1e6, neginf=-1e6)  # NaN/inf: defined lookups


class VirtualTexture:
    """A ``.vtex`` texture streamed into a fixed GPU tile cache; see the module docstring. Use
    :func:`open_virtual_texture`."""

    def __init__(self, path: str | os.PathLike[str], device: Device, *, budget_mb: float = 256,
                 max_uploads_per_update: int | None = None, sample_capacity: int = 1 << 14,
                 feedback_capacity: int | None = None, threads: int | None = None, backend: str = "pagetable",
                 staging: str = "host_cached", reader: str = "zstd") -> None:
        """Open the file, size and allocate everything, upload the pinned levels; nothing is left on failure."""
        device.check_open()
        if backend not in BACKENDS:
            raise ConfigError(f"{backend!r} is not one of {', '.join(BACKENDS)}", option="backend")
        if staging not in STAGING:
            raise ConfigError(f"{staging!r} is not one of {', '.join(STAGING)}", option="staging")
        if reader not in READERS:
            raise ConfigError(f"{reader!r} is not one of {', '.join(READERS)}", option="reader")
        self.staging = staging
        self.reader = reader
        self.backend = backend
        self.sparse: SparseCache | None = None
        self.device = device
        self.path = str(path)
        self.file = TileFile(path)
        self._owned: list[Any] = []
        self._last_value = 0
        self._feedback_value = 0
        self._gpu: VtGpu | None = None
        self._closed = False
        try:
            self._open(budget_mb, max_uploads_per_update, sample_capacity, feedback_capacity, threads)
        except BaseException:
            self.release()
            raise

    # -- open ------------------------------------------------------------------------------------------------------
    def _open(self, budget_mb: float, max_uploads: int | None, sample_capacity: int, feedback_capacity: int | None,
              threads: int | None) -> None:
        lay = self.file.layout
        self.layout = lay
        dev = self.device
        ctx = context(dev)
        vk_format = VK_FORMATS[lay.fmt]
        _lin, optimal, _buf = format_properties(ctx.physical, vk_format)
        need = FEATURE_SAMPLED | FEATURE_TRANSFER_DST
        if optimal & need != need:
            raise UnsupportedFeatureError(f"{dev.name} cannot sample and copy into {lay.fmt} images ({self.path})")
        sparse = self.backend == "sparse"
        if sparse:
            check_sparse(dev, lay, vk_format)
        if budget_mb <= 0:
            raise ConfigError(f"must be positive, got {budget_mb}", option="budget_mb")
        budget = int(budget_mb * (1 << 20))
        page_bytes = lay.raw_bytes
        self.slot_bytes = lay.tile * lay.tile * 4 if sparse else page_bytes  # sparse pages hold no border
        if max_uploads is None:  # 64, or fewer when a small budget cannot spare the staging
            max_uploads = max(8, min(64, budget // (page_bytes * 32)))
        self.max_uploads = int(max_uploads)
        if self.max_uploads < 1:
            raise ConfigError(f"must be at least 1, got {max_uploads}", option="max_uploads_per_update")
        pt_bytes = lay.tile_count * 4
        slack = 16 * (self.max_uploads + 1) * (lay.levels + 2)  # slice alignment, page-table row ranges
        seg = (self.max_uploads * page_bytes + pt_bytes + slack + 0xFFFF) & ~0xFFFF
        self.sample_capacity = sample_capacity
        if feedback_capacity is None:  # a 1080p frame's feedback (1/16 of its pixels) where the budget allows
            feedback_capacity = min(FEEDBACK_SAMPLES, max(1 << 12, budget // 1024))
        if feedback_capacity < 1 or sample_capacity < 1:
            raise ConfigError("sample and feedback capacities must be at least 1", option="feedback_capacity")
        self.feedback_capacity = feedback_capacity
        fixed = (pt_bytes * 5 + 12 + sample_capacity * 24 + feedback_capacity * 16 + 2 * seg)
        cache_bytes = (budget - fixed) * 0.98  # the driver may pad the atlas a little
        slots = int((cache_bytes - (SPARSE_SLACK if sparse else 0)) // self.slot_bytes)
        if sparse:
            cols, rows = 0, 0
        else:
            max_side = int(dev.info.limits.get("max_image_dimension_2d", 16384)) // lay.page
            cols = max(1, min(max_side, math.isqrt(max(slots, 1))))
            rows = min(max_side, slots // cols) if slots > 0 else 0
            slots = cols * rows
        pinned_levels, pinned_tiles = 0, 0
        base = lay.level_base
        for lv in range(lay.levels - 1, -1, -1):
            n = base[lv + 1] - base[lv]
            if pinned_levels and pinned_tiles + n > slots // PINNED_FRACTION:
                break
            pinned_levels += 1
            pinned_tiles += n
        if slots < pinned_tiles + 4:
            raise ConfigError(f"{budget_mb} MB leaves room for {slots} tiles of {self.slot_bytes} bytes after "
                              f"{fixed} bytes of tables and staging; {self.path} needs at least {pinned_tiles + 4}",
                              option="budget_mb")
        avail = dev.budget.available()
        if budget > avail:  # before any Vulkan call
            raise BudgetExceededError(budget, dev.budget.used, dev.budget.limit, who=f"virtual texture {self.path}")
        self.cols, self.rows, self.slots = cols, rows, slots
        self.pinned_levels = pinned_levels
        self.budget_bytes = budget
        name = os.path.basename(self.path)

        def own(obj: Any) -> Any:
            self._owned.append(obj)
            return obj

        mk = dev.create_buffer
        self.atlas: Any = None
        self.pt_buf: Any = None
        if sparse:
            pool = own(mk(slots * self.slot_bytes + SPARSE_SLACK, "storage", name=f"vt-sparse-pages:{name}", category="vt",
                          dedicated=True))
            self.sparse = SparseCache(dev, lay, vk_format, pool, slots)
        else:
            self.atlas = own(dev.create_image(cols * lay.page, rows * lay.page, vk_format=vk_format,
                                              name=f"vt-cache:{name}", category="vt"))
            self.atlas.movable = False  # VtGpu keeps a view of it: Device.defragment() must not move it
            self.pt_buf = own(mk(pt_bytes, "storage|transfer_dst", name=f"vt-pagetable:{name}", category="vt"))
        # feedback: counters and the request list stay on the device (atomics); the collect pass writes the
        # deduplicated (tile, count) pairs into a small host-visible list
        self.counters = own(mk(pt_bytes, "storage|transfer_dst", name=f"vt-feedback-counts:{name}", category="vt"))
        self.requests_buf = own(mk(pt_bytes + 4, "storage|transfer_dst", name=f"vt-feedback:{name}", category="vt"))
        self.collected = own(mk(pt_bytes * 2 + 8, "storage", strategy="host_visible",
                                name=f"vt-feedback-readback:{name}", category="vt"))
        self.sample_in = own(mk(sample_capacity * 16, "storage", strategy="host_visible", name=f"vt-samples:{name}",
                                category="vt"))
        self.sample_out = own(mk(sample_capacity * 8, "storage", strategy="host_visible", name=f"vt-results:{name}",
                                 category="vt"))
        self.feedback_in = own(mk(feedback_capacity * 16, "storage", strategy="host_visible",
                                  name=f"vt-feedback-samples:{name}", category="vt"))
        ring = dev.staging_ring(segment_size=seg, segments=2, strategy=self.staging)
        flags = dev.info.memory_types[ring.segments[0].allocation.block.type_index].flags
        if not flags & MemoryProperty.HOST_COHERENT:  # a cached type that needs flushes: the plain staging type
            ring.destroy()
            ring = dev.staging_ring(segment_size=seg, segments=2)
            flags = dev.info.memory_types[ring.segments[0].allocation.block.type_index].flags
        self.ring = own(ring)
        #: decompress straight into staging (cached memory); else through a cached page per thread and a copy, as
        #: zstd reads back its output and write-combined memory is slow to read
        self.direct = bool(flags & MemoryProperty.HOST_CACHED)
        self._gpu = VtGpu(dev, self.atlas, vk_format)  # no atlas with the sparse backend
        g = self._gpu
        assert g.feedback_pipe is not None
        if self.sparse is not None:
            assert self.sparse.pipe is not None
            self.sparse.pipe.write([(self.sparse.view, self.sparse.sampler, LAYOUT_SHADER_READ),
                                    self._range(self.sample_in), self._range(self.sample_out)])
        else:
            assert g.sample_pipe is not None
            g.sample_pipe.write([(g.view, g.sampler, LAYOUT_SHADER_READ), self._range(self.pt_buf),
                                 self._range(self.sample_in), self._range(self.sample_out)])
        g.feedback_pipe.write([self._range(self.feedback_in), self._range(self.counters),
                               self._range(self.requests_buf)])
        assert g.collect_pipe is not None
        g.collect_pipe.write([self._range(self.counters), self._range(self.requests_buf), self._range(self.collected)])
        idx, cmd = g.record()  # counters and the request count start at zero
        for buf in (self.counters, self.requests_buf):
            vkr.cmd_fill_buffer(cmd, buf.handle, buf.offset, buf.size & ~3, 0)
        g.barrier(cmd, STAGE_TRANSFER, STAGE_COMPUTE, ACCESS_TRANSFER_WRITE, ACCESS_SHADER_READ | ACCESS_SHADER_WRITE)
        self._last_value = g.submit(idx)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.threads = int(threads or max(1, min(32, cpus)))  # the cores this process may run on
        self.table = PageTable(lay)
        self.residency = Residency(lay, slots, pinned_levels)
        self._requests: Counter[int] = Counter()
        self._times: deque[float] = deque(maxlen=4096)
        self._stats = VtStats(slots=slots, pinned=len(self.residency.pinned))
        self._tile_ms = 0.0
        self._base = np.array(lay.level_base[:-1], dtype=np.int64)
        self._tps = np.array([lay.tiles_per_side(lv) for lv in range(lay.levels)], dtype=np.int64)
        pinned = [(t, self.residency.resident[t]) for t in self.residency.pinned]
        for i in range(0, len(pinned), self.max_uploads):  # coarsest first: every lookup resolves from here on
            _ok, _bytes, errors = self._load(pinned[i:i + self.max_uploads])
            if errors:
                raise errors[0]
        self._gpu.wait(self._last_value)
        dev.on_close(self.release)

    @staticmethod
    def _range(buf: Any) -> tuple[Any, int, int]:
        return buf.handle, buf.offset, buf.size

    def _check(self) -> None:
        if self._closed:
            raise DeviceClosedError(f"virtual texture {self.path!r} was released")
        self.device.check_open()

    # -- loading ---------------------------------------------------------------------------------------------------
    def _coords(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(level, tx, ty)`` arrays of tile numbers."""
        lv = np.searchsorted(self._base, tiles, side="right") - 1
        i = tiles - self._base[lv]
        n = self._tps[lv]
        return lv, i % n, i // n

    def _load(self, loads: list[tuple[int, int]], evictions: list[int] = ()) -> tuple[int, int, list[FormatError]]:
        """Read and decompress the ``(tile, slot)`` pairs into one staging range (the whole batch at once, on all
        cores: :meth:`TileFile.read_tiles`), then submit their copies (one ``vkCmdCopyBufferToImage`` with a region
        per tile) and the changed page-table rows (one ``vkCmdCopyBuffer``) in one command buffer (sparse: after binding the
        pages, and unbinding the ``evictions``'). Returns ``(uploaded, compressed bytes read, errors)``."""
        lay = self.layout
        page, raw = lay.page, lay.raw_bytes
        n = len(loads)
        errors: list[FormatError] = []
        nbytes = 0
        ok_pos = np.zeros(0, np.int64)
        stage = None
        if n:
            tiles = np.fromiter((t for t, _ in loads), np.int64, n)
            stage = self.ring.alloc(n * raw)
            rows = stage.view.reshape(n, raw)
            nbytes, bad = self.file.read_tiles(tiles, rows, threads=max(1, min(self.threads, n // 4)),
                                               direct=self.direct, method=self.reader)
            failed = np.zeros(n, bool)
            for i, exc in bad:
                errors.append(exc)
                failed[i] = True
                self.residency.failed(loads[i][0])
            ok_pos = np.flatnonzero(~failed)
            lv, tx, ty = self._coords(tiles)
            slots = np.fromiter((s for _t, s in loads), np.int64, n)
            self.table.make_resident_many(lv[ok_pos], tx[ok_pos], ty[ok_pos], slots[ok_pos])
        dirty = self.table.take_dirty()
        if self.pt_buf is None:
            dirty = []  # sparse: the host copy only answers resident_level()
        pt_stage = None
        if dirty:
            total = sum(b - a for a, b in dirty)
            pt_stage = self.ring.alloc(total * 4)
            pt_regions = vkr.copy_regions(len(dirty))
            at = 0
            pt_words = pt_stage.view.view(np.uint32)
            for k, (a, b) in enumerate(dirty):
                pt_words[at:at + b - a] = self.table.entries[a:b]
                pt_regions[k] = (pt_stage.buffer.offset + pt_stage.offset + at * 4, self.pt_buf.offset + a * 4,
                                 (b - a) * 4)
                at += b - a
        g = self._gpu
        assert g is not None
        bound = 0
        if self.sparse is not None and (len(ok_pos) or evictions):
            bound = self.sparse.bind([loads[i] for i in ok_pos.tolist()], list(evictions),
                                     after=max(g.latest, self._last_value))
            self._last_value = bound
        if not len(ok_pos) and pt_stage is None:
            return 0, nbytes, errors
        idx, cmd = g.record()
        g.barrier(cmd, STAGE_COMPUTE, STAGE_TRANSFER, 0, 0)  # earlier samples finished reading what is rewritten
        image = self.sparse.image if self.sparse is not None else self.atlas
        if len(ok_pos):
            assert stage is not None
            old = image.layout
            cmd_image_barrier(cmd, image, old_layout=old, new_layout=LAYOUT_TRANSFER_DST,
                              src_stage=STAGE_COMPUTE if old else STAGE_TOP, dst_stage=STAGE_TRANSFER,
                              src_access=0, dst_access=ACCESS_TRANSFER_WRITE)
            regions = buffer_image_copies(len(ok_pos))
            first = stage.buffer.offset + stage.offset + ok_pos * raw
            if self.sparse is not None:  # the page's interior (its border skipped) to the tile's place in the image
                b, t = lay.border, lay.tile
                regions["buffer_offset"] = first + (b * page + b) * 4
                regions["row_length"] = page
                regions["level"] = lv[ok_pos]
                regions["x"] = tx[ok_pos] * t
                regions["y"] = ty[ok_pos] * t
                regions["width"] = regions["height"] = t
            else:  # the whole bordered page to its slot in the atlas
                regions["buffer_offset"] = first
                regions["x"] = (slots[ok_pos] % self.cols) * page
                regions["y"] = (slots[ok_pos] // self.cols) * page
                regions["width"] = regions["height"] = page
            cmd_copy_buffer_to_image_array(cmd, stage.buffer.handle, image, regions)
            cmd_image_barrier(cmd, image, old_layout=LAYOUT_TRANSFER_DST, new_layout=LAYOUT_SHADER_READ,
                              src_stage=STAGE_TRANSFER, dst_stage=STAGE_COMPUTE, src_access=ACCESS_TRANSFER_WRITE,
                              dst_access=ACCESS_SHADER_READ)
        if pt_stage is not None:
            vkr.cmd_copy_buffer(cmd, pt_stage.buffer.handle, self.pt_buf.handle, pt_regions)
        g.barrier(cmd, STAGE_TRANSFER, STAGE_COMPUTE, ACCESS_TRANSFER_WRITE, ACCESS_SHADER_READ)
        value = g.submit(idx, after=bound)
        self.ring.submit(value)
        if len(ok_pos):
            image.layout = LAYOUT_SHADER_READ
        for res in (self.atlas, self.pt_buf):
            if res is not None:
                res.last_use = value
        self._last_value = value
        return len(ok_pos), nbytes, errors

    # -- requests --------------------------------------------------------------------------------------------------
    def tile_ids(self, u: Any, v: Any, lod: Any, *, bias: float = 0.0) -> np.ndarray:
        """The tile number each ``(u, v, lod)`` sample falls in, at level ``clamp(floor(lod + bias))`` (int64).

        :param u: horizontal coordinates in [0, 1] (numpy, broadcast with ``v`` and ``lod``).
        :param v: vertical coordinates in [0, 1].
        :param lod: levels of detail.
        :param bias: added to ``lod`` (the residency level bias, for requests).
        """
        s = _as_samples(u, v, lod)
        lay = self.layout
        level = np.clip(np.floor(s[:, 2] + np.float32(bias)), 0, lay.levels - 1).astype(np.int64)
        sl = (lay.size >> level).astype(np.float32)
        uu = np.clip(s[:, 0], 0, 1)
        vv = np.clip(s[:, 1], 0, 1)
        x = np.minimum((uu * sl).astype(np.int64), (lay.size >> level) - 1)
        y = np.minimum((vv * sl).astype(np.int64), (lay.size >> level) - 1)
        return self._base[level] + (y // lay.tile) * self._tps[level] + x // lay.tile

    def request(self, u: Any, v: Any, lod: Any) -> int:
        """Ask for the tiles under the samples ``(u, v, lod)`` for the next update (the CPU path of feedback); the
        residency level bias is added to ``lod``.

        :param u: horizontal coordinates in [0, 1] (numpy, broadcast with ``v`` and ``lod``).
        :param v: vertical coordinates in [0, 1].
        :param lod: levels of detail.
        :returns: how many distinct tiles were asked for.
        """
        self._check()
        ids, counts = np.unique(self.tile_ids(u, v, lod, bias=self.residency.bias), return_counts=True)
        self._requests.update(dict(zip(ids.tolist(), counts.tolist())))
        return len(ids)

    def feedback(self, samples: Any) -> None:
        """Run the feedback compute pass over ``samples``: an ``(N, 3)``/``(N, 4)`` float array of ``(u, v, lod)``, or
        a device buffer of ``vec4`` samples (storage usage). The deduplicated tile requests (with how often each was
        hit) are read back by the next :meth:`update`, so the pass overlaps the caller's other work.

        :param samples: ``(N, 3)``/``(N, 4)`` floats, or a :class:`~vixen_assets.memory.buffers.Buffer` of ``vec4``.
        """
        self._check()
        g = self._gpu
        assert g is not None and g.feedback_pipe is not None
        self._collect_feedback()
        lay = self.layout
        pc_head = (lay.levels, lay.size, lay.tile, lay.tile_count)
        if hasattr(samples, "handle") and hasattr(samples, "size"):
            n = samples.size // 16
            g.feedback_pipe.write([self._range(samples), self._range(self.counters), self._range(self.requests_buf)])
            try:
                self._dispatch_feedback(n, pc_head)
            finally:
                self._gpu.wait(self._feedback_value)
                g.feedback_pipe.write([self._range(self.feedback_in), self._range(self.counters),
                                       self._range(self.requests_buf)])
            return
        arr = np.asarray(samples, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] not in (3, 4):
            raise ConfigError(f"expected (N, 3) or (N, 4) samples, got {arr.shape}", option="samples")
        arr = np.nan_to_num(arr, nan=0.0, posinf=1e6, neginf=-1e6)
        view = self.feedback_in.mapped.view(np.float32).reshape(-1, 4)
        for start in range(0, len(arr), self.feedback_capacity):
            self._collect_feedback()  # the previous chunk: its samples buffer is reused, its list read
            part = arr[start:start + self.feedback_capacity]
            view[:len(part), :part.shape[1]] = part
            if part.shape[1] == 3:
                view[:len(part), 3] = 0
            self._dispatch_feedback(len(part), pc_head)

    def _dispatch_feedback(self, n: int, head: tuple[int, int, int, int]) -> None:
        g = self._gpu
        assert g is not None and g.feedback_pipe is not None
        if n == 0:
            return
        idx, cmd = g.record()
        pc = np.array([n, head[0], head[1], head[2], head[3]], np.uint32).tobytes() + np.float32(
            self.residency.bias).tobytes()
        g.feedback_pipe.cmd_dispatch(cmd, (n + WORKGROUP - 1) // WORKGROUP, pc)
        g.barrier(cmd, STAGE_COMPUTE, STAGE_COMPUTE, ACCESS_SHADER_WRITE, ACCESS_SHADER_READ | ACCESS_SHADER_WRITE)
        assert g.collect_pipe is not None
        tiles = self.layout.tile_count
        g.collect_pipe.cmd_dispatch(cmd, (tiles + WORKGROUP - 1) // WORKGROUP, np.uint32(tiles).tobytes())
        g.barrier(cmd, STAGE_COMPUTE, STAGE_TRANSFER, ACCESS_SHADER_WRITE, ACCESS_TRANSFER_WRITE)
        vkr.cmd_fill_buffer(cmd, self.requests_buf.handle, self.requests_buf.offset, 4, 0)  # the next pass starts empty
        g.barrier(cmd, STAGE_COMPUTE | STAGE_TRANSFER, STAGE_HOST | STAGE_COMPUTE,
                  ACCESS_SHADER_WRITE | ACCESS_TRANSFER_WRITE, ACCESS_HOST_READ | ACCESS_SHADER_READ | ACCESS_SHADER_WRITE)
        self._feedback_value = g.submit(idx)

    def _collect_feedback(self, wait: bool = True) -> None:
        """Merge the finished feedback pass's requests (waiting for it, or, without ``wait``, only if it is done)."""
        if not self._feedback_value:
            return
        assert self._gpu is not None
        if not wait and not self._gpu.done(self._feedback_value):
            return
        self._gpu.wait(self._feedback_value)
        self._feedback_value = 0
        raw = self.collected.mapped
        n = min(int(raw[:4].view(np.uint32)[0]), self.layout.tile_count)
        pairs = raw[8:8 + 8 * n].view(np.uint32).reshape(n, 2)
        self._requests.update(dict(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist())))

    def pending_requests(self) -> dict[int, int]:
        """The tile requests the next update will see (``{tile number: samples}``), feedback included (waits for
        a feedback pass in flight)."""
        self._check()
        self._collect_feedback()
        return dict(self._requests)

    # -- update ----------------------------------------------------------------------------------------------------
    def update(self, *, max_tiles: int = 32, max_ms: float | None = None, wait_feedback: bool = False) -> UpdateStats:
        """Load the missing requested tiles (at most ``max_tiles`` and ``max_uploads_per_update``; with ``max_ms``,
        as many as the running per-tile cost says fit), evicting least recently requested unpinned tiles, and
        submit their copies with the page-table writes in one batch.

        :param max_tiles: most tiles to load in this update.
        :param max_ms: time budget; the tile count is cut to what the measured per-tile cost allows (at least one).
        :param wait_feedback: wait for a feedback pass still running on the GPU; by default its requests are taken
            by the next update (or the next :meth:`feedback`), as engines read feedback a frame or two late.
        :returns: what was done; tiles that failed their checks are listed in ``errors`` and never asked for again.
        :raises FormatError: after the rest of the batch was submitted, when a tile was corrupt (the first error).
        """
        self._check()
        t0 = time.perf_counter()
        self._collect_feedback(wait=wait_feedback)
        requests, self._requests = self._requests, Counter()
        cap = max(0, min(max_tiles, self.max_uploads))
        if max_ms is not None and self._tile_ms > 0:
            cap = max(1, min(cap, int(max_ms / self._tile_ms)))
        res = self.residency
        plan = res.plan(requests, cap)
        lay = self.layout
        for t in plan.evictions:
            lv, tx, ty = lay.tile_coords(t)
            self.table.evict(lv, tx, ty)
        uploaded, nbytes, errors = self._load(plan.loads, plan.evictions)
        bad = self.residency.bad
        ms = (time.perf_counter() - t0) * 1e3
        if uploaded:
            per = ms / uploaded
            self._tile_ms = per if not self._tile_ms else 0.8 * self._tile_ms + 0.2 * per
        self._times.append(ms)
        out = UpdateStats(requested=plan.requested, hits=plan.hits, uploaded=uploaded, evicted=len(plan.evictions),
                          deferred=plan.deferred, bytes_read=nbytes, thrash=plan.thrash, level_bias=res.bias, ms=ms,
                          errors=[str(e) for e in errors], tiles=[t for t, _ in plan.loads if t not in bad])
        st = self._stats
        st.requested += plan.requested
        st.hits += plan.hits
        st.uploaded += uploaded
        st.evicted += len(plan.evictions)
        st.bytes_read += nbytes
        st.thrash += plan.thrash
        st.errors += len(errors)
        st.updates += 1
        if errors:
            raise errors[0]
        return out

    # -- sampling --------------------------------------------------------------------------------------------------
    def sample(self, u: Any, v: Any, lod: Any, *, filter: str = "nearest",
               return_levels: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Sample through the page table on the GPU and read the texels back.

        :param u: horizontal coordinates in [0, 1] (numpy, broadcast with ``v`` and ``lod``).
        :param v: vertical coordinates in [0, 1].
        :param lod: level of detail; level ``clamp(floor(lod))`` is looked up, and the finest resident tile covering
            it is read.
        :param filter: ``"nearest"`` or ``"bilinear"`` (inside the resident tile, using its border).
        :param return_levels: also return the resident level each sample was read from.
        :returns: ``(N, 4)`` uint8 texels (and ``(N,)`` uint8 levels).
        """
        self._check()
        if filter not in FILTERS:
            raise ConfigError(f"{filter!r} is not one of {sorted(FILTERS)}", option="filter")
        g = self._gpu
        assert g is not None
        pipe = self.sparse.pipe if self.sparse is not None else g.sample_pipe
        assert pipe is not None
        s = _as_samples(u, v, lod)
        n = len(s)
        rgba = np.empty((n, 4), np.uint8)
        levels = np.empty(n, np.uint8)
        lay = self.layout
        view_in = self.sample_in.mapped.view(np.float32).reshape(-1, 4)
        view_out = self.sample_out.mapped.view(np.uint32).reshape(-1, 2)
        for start in range(0, n, self.sample_capacity):
            part = s[start:start + self.sample_capacity]
            m = len(part)
            view_in[:m] = part
            idx, cmd = g.record()
            if self.sparse is not None:
                pc = np.array([m, lay.levels, lay.size, FILTERS[filter]], np.uint32).tobytes()
            else:
                pc = np.array([m, lay.levels, lay.size, lay.tile, lay.border, self.cols, FILTERS[filter]],
                              np.uint32).tobytes()
            pipe.cmd_dispatch(cmd, (m + WORKGROUP - 1) // WORKGROUP, pc)
            g.barrier(cmd, STAGE_COMPUTE, STAGE_HOST, ACCESS_SHADER_WRITE, ACCESS_HOST_READ)
            value = g.submit(idx)
            if self.atlas is not None:
                self.atlas.last_use = value
            g.wait(value)
            out = view_out[:m]
            rgba[start:start + m] = out[:, 0:1].view(np.uint8).reshape(m, 4)
            levels[start:start + m] = out[:, 1]
        return (rgba, levels) if return_levels else rgba

    # -- state -----------------------------------------------------------------------------------------------------
    @property
    def stats(self) -> VtStats:
        """Totals: tiles requested, resident, uploaded, evicted, bytes read, hit rate, level bias, p50/p99 update ms."""
        st = self._stats
        st.resident = len(self.residency.resident) if hasattr(self, "residency") else 0
        st.level_bias = self.residency.bias if hasattr(self, "residency") else 0.0
        st.hit_rate = st.hits / st.requested if st.requested else 1.0
        if self._times:
            t = np.fromiter(self._times, float)
            st.update_p50_ms = float(np.percentile(t, 50))
            st.update_p99_ms = float(np.percentile(t, 99))
        return st

    @property
    def nbytes(self) -> int:
        """Bytes of device memory this texture holds (cache, page table, feedback and sample buffers, staging)."""
        total = 0
        for obj in self._owned:
            if hasattr(obj, "segments"):
                total += sum(s.nbytes for s in obj.segments)
            else:
                total += obj.nbytes
        return total

    def wait(self) -> None:
        """Block until every upload and pass submitted so far finished on the GPU (``update`` does not wait: its
        copies are ordered before later samples on the same queue)."""
        self._check()
        assert self._gpu is not None
        self._gpu.wait(max(self._last_value, self._feedback_value, *self._gpu.values))

    def resident_level(self, level: int, tx: int, ty: int) -> int:
        """The level of the finest resident tile covering tile ``(level, tx, ty)`` (host copy of the page table).

        :param level: the tile's level.
        :param tx: its column in that level.
        :param ty: its row.
        """
        return self.table.resolve(level, tx, ty)[0]

    def release(self) -> None:
        """Wait for the GPU, free every resource of this texture and close the file; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._gpu is not None and not self.device.closed:
                self._gpu.wait(max(self._last_value, self._feedback_value, *self._gpu.values))
        finally:
            if self._gpu is not None:
                self._gpu.destroy()
            if self.sparse is not None:
                self.sparse.destroy()  # before the pool buffer whose memory backs its pages
            for obj in reversed(self._owned):
                obj.destroy()
            self._owned = []
            self.file.close()

    def destroy(self) -> None:
        """The same as :meth:`release` (the house name for freeing a GPU object)."""
        self.release()

    @property
    def name(self) -> str:
        """The file's name."""
        return os.path.basename(self.path)

    def __enter__(self) -> VirtualTexture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        lay = self.layout
        return (f'<VirtualTexture "{os.path.basename(self.path)}" {lay.size}^2 {lay.fmt} slots={self.slots} '
                f"pinned_levels={self.pinned_levels}>")


def open_virtual_texture(path: str | os.PathLike[str], device: Device, *, budget_mb: float = 256,
                         max_uploads_per_update: int | None = None, sample_capacity: int = 1 << 14,
                         feedback_capacity: int | None = None, threads: int | None = None,
                         backend: str = "pagetable", staging: str = "host_cached",
                         reader: str = "zstd") -> VirtualTexture:
    """Open a ``.vtex`` file for streaming on ``device`` (a context manager; :meth:`VirtualTexture.release`).

    :param path: the tile file (see :func:`vixen_assets.vt.build`).
    :param device: the device whose budget pays for the cache.
    :param budget_mb: device memory for everything (cache, page table, feedback, sample buffers and staging).
    :param max_uploads_per_update: most tiles one update can load (sizes the staging ring; default 64, fewer for
        budgets under 32 x 64 pages).
    :param sample_capacity: samples per :meth:`VirtualTexture.sample` dispatch (larger calls are split).
    :param feedback_capacity: samples per feedback dispatch (larger arrays are split); default a 1080p frame's
        (129,600, one per 4 x 4 pixels as in UE), fewer for budgets under 128 MB.
    :param threads: threads that read and decompress tiles in each update (default: the cores this process may
        run on, at most 32).
    :param backend: ``"pagetable"`` (an atlas of bordered pages and a page table; any size) or ``"sparse"`` (a
        sparse-resident image of the whole texture, pages bound with ``vkQueueBindSparse``; RGBA8, tiles of the
        sparse page shape, textures up to ``maxImageDimension2D``).
    :param staging: memory of the staging ring: ``"host_cached"`` (tiles are decompressed straight into it) or
        ``"host_visible"`` (write-combined on discrete GPUs: each tile is decompressed into a cached page, then
        copied); a cached type that is not coherent falls back to ``"host_visible"``.
    :param reader: how an update reads its batch (:meth:`TileFile.read_tiles` ``method``): ``"zstd"`` (reads in the
        calling thread, decompression in zstd's C threads, then a copy: no GIL hand-offs) or ``"chunks"`` (one chunk
        per Python thread, decompressed straight into staging).
    :raises FormatError: for a bad file or a corrupt pinned tile.
    :raises UnsupportedFeatureError: when the device or the file does not suit the sparse backend.
    :raises ConfigError: when the budget cannot hold the pinned levels and a few streamed tiles.
    :raises BudgetExceededError: when the device budget cannot take ``budget_mb``.
    """
    return VirtualTexture(path, device, budget_mb=budget_mb, max_uploads_per_update=max_uploads_per_update,
                          sample_capacity=sample_capacity, feedback_capacity=feedback_capacity, threads=threads,
                          backend=backend, staging=staging, reader=reader)


__all__ = ["VirtualTexture", "UpdateStats", "VtStats", "open_virtual_texture"]
