"""``Device``: the friendly object that owns one Vulkan device and the memory and transfer systems on it.

:func:`open_device` picks a device (by index, or the ``VIXEN_DEVICE`` env var: an index or a name substring),
creates an instance (with validation when asked or when ``VIXEN_VALIDATION=1``) and a logical device, then builds the
budget manager, allocator and uploader on it. :func:`list_devices` describes every device without opening one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from pathlib import Path
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .arguments import int_argument
from .errors import ConfigError, DeviceClosedError, DeviceNotFoundError, VixenDeprecationWarning, VixenError
from .memory.allocator import BudgetedAllocator
from .memory.blocks import Suballocator
from .memory.budget import BudgetManager, HeapBudgetInput
from .memory.buffer_set import BufferSet
from .memory.buffers import Buffer, BufferFactory
from .memory.context import GpuContext
from .memory.defrag import DefragResult, defragment
from .memory.group import AllocationGroup
from .memory.images import Image, check_extent
from .memory.lifetime import Lifetime
from .memory.options import BudgetOptions
from .memory.registry import ResourceRegistry
from .memory.memory_map import write_memory_map
from .memory.report import memory_report
from .memory.resource import GpuResource
from .memory.stats import CallableStats, StatsSource
from .memory.strategies import REBAR_UPLOAD_MIN_BYTES, find_memory_type, upload_strategy
from .memory.tracker import AllocationTracker, PhaseCounts
from .stash import DeviceStash
from .transfer.readback import Readback
from .transfer.ring import StagingRing
from .transfer.uploader import BatchedUploader, Ticket, as_bytes
from .vk import DeviceInfo, Instance, LogicalDevice, query_device_info
from .vk.commands import CommandPool

T = TypeVar("T")


@dataclass(frozen=True)
class DeviceOptions:
    """Everything :func:`open_device` configures besides the device's identity and validation.

    :param budget: the memory budget.
    :param separate_transfer_queue: ``None`` uses a transfer-only family when present; ``True`` forces that path.
    :param buffer_image_granularity: force a larger ``bufferImageGranularity`` (tests of the suballocator).
    :param block_size: override the memory block size (default: 32 MiB pool blocks, requests of 4 MiB and more in
        their own blocks; with it, VMA's rule: dedicated above half a block).
    :param rebar: let ``strategy="auto"`` use a resizable-BAR heap on discrete GPUs.
    :param rebar_upload_min_bytes: ``create_and_upload`` with the default strategy writes data of at least this many
        bytes straight into the resizable BAR of a discrete GPU that has one (several fill threads, no staging copy,
        no DMA); ``None`` keeps every upload on the staging path. Measured on an H200 (docs/nvidia.md).
    """

    budget: BudgetOptions = field(default_factory=BudgetOptions)
    separate_transfer_queue: bool | None = None
    buffer_image_granularity: int | None = None
    block_size: int | None = None
    rebar: bool = False
    rebar_upload_min_bytes: int | None = REBAR_UPLOAD_MIN_BYTES

    def __post_init__(self) -> None:
        """Validate; raise :class:`ConfigError` naming the bad option."""
        if not isinstance(self.budget, BudgetOptions):
            raise ConfigError(f"budget must be a BudgetOptions, got {type(self.budget).__name__}", option="budget")
        for name in ("buffer_image_granularity", "block_size"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}", option=name)
        g = self.buffer_image_granularity
        if g is not None and g & (g - 1):
            raise ConfigError(f"buffer_image_granularity must be a power of two, got {g}",
                              option="buffer_image_granularity")
        if self.separate_transfer_queue is not None and type(self.separate_transfer_queue) is not bool:
            raise ConfigError(f"separate_transfer_queue must be None, True or False, got "
                              f"{self.separate_transfer_queue!r}", option="separate_transfer_queue")
        if type(self.rebar) is not bool:
            raise ConfigError(f"rebar must be True or False, got {self.rebar!r}", option="rebar")
        m = self.rebar_upload_min_bytes
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m <= 0):
            raise ConfigError(f"rebar_upload_min_bytes must be None or a positive integer, got {m!r}",
                              option="rebar_upload_min_bytes")


def _validation_default(validation: bool | None) -> bool:
    if validation is not None:
        return validation
    return os.environ.get("VIXEN_VALIDATION", "") not in ("", "0", "false", "no")


def list_devices() -> list[DeviceInfo]:
    """Describe every Vulkan device the loader finds (properties, heaps, queues, features)."""
    with Instance(validation=False) as inst:
        return [query_device_info(pd, i) for i, pd in enumerate(inst.physical_devices())]


def select_device(infos: list[DeviceInfo], index: int | str | None) -> int:
    """Resolve ``index`` (or ``VIXEN_DEVICE`` when ``None``) to a device index; raise ``DeviceNotFoundError``."""
    names = ", ".join(f"{i.index}: {i.name}" for i in infos) or "none"
    if not infos:
        raise DeviceNotFoundError("no Vulkan devices found (is mesa-vulkan-drivers installed? run `make setup`)")
    source = "index"
    if index is None:
        env = os.environ.get("VIXEN_DEVICE", "").strip()
        if not env:
            return 0
        index, source = env, "VIXEN_DEVICE"
    if isinstance(index, int) or (isinstance(index, str) and index.isdigit()):
        i = int(index)
        if 0 <= i < len(infos):
            return i
        raise DeviceNotFoundError(f"{source}={index!r}: no device with that index (devices: {names})")
    needle = str(index).lower()
    for info in infos:
        if needle in info.name.lower():
            return info.index
    raise DeviceNotFoundError(f"{source}={index!r}: no device name contains it (devices: {names})")


class Device:
    """One opened Vulkan device with its budget, allocator and uploader; close it (or use ``with``).

    ``Device`` composes the layers: a :class:`~vixen_assets.memory.context.GpuContext` (the memory layer's typed
    view: allocator chain, lifetime, registry, ...), the uploader and read-back on it, per-device cachers and a
    typed :meth:`stash`. Its internals are private; :attr:`budget`, :attr:`uploader`, :attr:`info`,
    :attr:`features` and :attr:`context` are read-only properties, :meth:`stats` is the stats hub.
    """

    def __init__(self, instance: Instance, physical: Any, info: DeviceInfo, *, options: DeviceOptions) -> None:
        """Build the device; use :func:`open_device` rather than calling this directly.

        :param instance: the Vulkan instance (owned: destroyed at close).
        :param physical: the ``VkPhysicalDevice`` to open.
        :param info: its description.
        :param options: budget and memory options (validated).
        """
        self._instance = instance
        self._info = info
        self._physical = physical
        self._options = options
        self._logical = LogicalDevice(physical, info, separate_transfer_queue=options.separate_transfer_queue)
        self._closed = False
        self._lock = threading.RLock()
        self._close_callbacks: list[Callable[[], object]] = []
        self._cachers: dict[str, Any] = {}
        self._stash = DeviceStash()
        try:
            self._command_pool = CommandPool(self._logical, self._logical.queue.family)
            self._setup_memory(options)
        except BaseException:
            self._abandon_setup()
            raise

    def _abandon_setup(self) -> None:
        """Undo a construction that failed part way: free what was built, destroy the ``VkDevice``; never raises."""
        self._closed = True
        steps: list[Callable[[], object]] = []
        uploader = self.__dict__.get("_uploader")
        if uploader is not None:
            steps.append(uploader.close)
        ctx = self.__dict__.get("_ctx")
        if ctx is not None:
            steps += [ctx.lifetime.drain, ctx.suballocator.release_all, ctx.lifetime.destroy, ctx.budget.close]
        pool = self.__dict__.get("_command_pool")
        if pool is not None:
            steps.append(pool.destroy)
        steps.append(self._logical.destroy)
        for step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001 - best effort: the original error is the one to report
                pass

    def _setup_memory(self, options: DeviceOptions) -> None:
        """Build the budget, the allocation chain, the tracker, the registry, deferred destruction, the uploader."""
        info = self._info
        bo = options.budget
        heaps = [HeapBudgetInput(h.size, h.device_local, h.budget) for h in info.heaps]
        budget = BudgetManager(heaps, budget_fraction=bo.fraction, warning_share=bo.warning_fraction,
                               limit_bytes=bo.limit_bytes, staging_quota=bo.staging_quota,
                               staging_timeout_s=bo.staging_timeout_s, overflow=bo.overflow, name=info.name)
        tracker = AllocationTracker()
        registry = ResourceRegistry()
        lifetime = Lifetime(self._logical)
        gran = options.buffer_image_granularity or info.limits.get("buffer_image_granularity", 1)
        sub = Suballocator(self._logical, heap_limits=lambda h: budget.limits[h], tracker=tracker, granularity=gran,
                           block_size=options.block_size)

        def heap_of_type(t: int) -> int:
            return info.memory_types[t].heap

        def overflow_type(bits: int) -> int | None:
            try:
                t = find_memory_type(info, bits, "host_overflow")
            except VixenError:
                return None
            return t if not info.heaps[heap_of_type(t)].device_local else None

        allocator = BudgetedAllocator(sub, budget, heap_of_type, overflow_type)
        buffers = BufferFactory(self._logical, allocator, sub, lifetime=lifetime, registry=registry, tracker=tracker,
                                rebar=options.rebar)
        self._ctx = ctx = GpuContext(logical=self._logical, info=info, physical=self._physical, budget=budget,
                                     allocator=allocator, suballocator=sub, buffers=buffers, lifetime=lifetime,
                                     registry=registry, tracker=tracker, command_pool=self._command_pool)
        budget.add_stats_provider("allocator", sub.stats, sub.reset_stats)
        budget.add_stats_provider("live_objects", registry.counts)
        self._leaks: list[str] = []
        with tracker.phase("setup"):
            self._uploader = BatchedUploader(self._logical, buffers, lifetime, staging_quota=budget.staging_quota,
                                             staging_timeout_s=bo.staging_timeout_s,
                                             force_ownership_transfer=bool(options.separate_transfer_queue))
            self._readback = Readback(self._uploader)
        ctx.add_pending_flush(self._uploader.flush_if_pending)
        budget.add_stats_provider("uploader", self._uploader.stats_dict)
        self._stats: dict[str, StatsSource] = {
            "budget": CallableStats(budget.stats, budget.reset_stats),
            "allocator": CallableStats(sub.stats, sub.reset_stats),
            "uploader": self._uploader,
            "registry": CallableStats(registry.counts),
            "tracker": CallableStats(tracker.as_dict, tracker.reset),
            "lifetime": CallableStats(lambda: {"pending": lifetime.pending, "submitted": lifetime.submitted,
                                               "destroyed_deferred": lifetime.destroyed_deferred}),
        }
        self._rings: list[StagingRing] = []

    # -- the layers (read-only) ------------------------------------------------------------------------------------
    @property
    def context(self) -> GpuContext:
        """The memory layer's view of this device: what ``Image``, ``BufferSet``, resources and groups are built on."""
        return self._ctx

    @property
    def budget(self) -> BudgetManager:
        """The memory budget (limits, warning threshold, staging quota, ``stats()``)."""
        return self._ctx.budget

    @property
    def uploader(self) -> BatchedUploader:
        """The batched uploader (``enqueue``, ``enqueue_image``, ``flush``)."""
        return self._uploader

    @property
    def info(self) -> DeviceInfo:
        """The device's description: properties, heaps, memory types, queues, limits."""
        return self._info

    @property
    def options(self) -> DeviceOptions:
        """The options the device was opened with."""
        return self._options

    @property
    def leaks(self) -> list[str]:
        """The leak report of :meth:`close` (names of resources still alive at close)."""
        return list(self._leaks)

    @property
    def cachers(self) -> dict[str, Any]:
        """Cacher instances of this device by cacher name (see ``vixen_assets.cachers.cacher_for``)."""
        return self._cachers

    @property
    def validation(self) -> bool:
        """True when the Vulkan validation layer is on."""
        return bool(self._instance.validation)

    # -- deprecated: the internals that were public attributes before the GpuContext ------------------------------
    def _deprecated(self, name: str, instead: str) -> None:
        warnings.warn(f"Device.{name} is deprecated: use {instead}", VixenDeprecationWarning, stacklevel=3)

    @property
    def allocator(self) -> BudgetedAllocator:
        """Deprecated: ``device.context.allocator``."""
        self._deprecated("allocator", "device.context.allocator")
        return self._ctx.allocator

    @property
    def buffers(self) -> BufferFactory:
        """Deprecated: ``device.create_buffer`` or ``device.context.buffers``."""
        self._deprecated("buffers", "device.create_buffer() or device.context.buffers")
        return self._ctx.buffers

    @property
    def suballocator(self) -> Suballocator:
        """Deprecated: ``device.context.suballocator``."""
        self._deprecated("suballocator", "device.context.suballocator")
        return self._ctx.suballocator

    @property
    def lifetime(self) -> Lifetime:
        """Deprecated: ``device.retire``, ``device.begin_frame`` or ``device.context.lifetime``."""
        self._deprecated("lifetime", "device.retire()/begin_frame() or device.context.lifetime")
        return self._ctx.lifetime

    @property
    def registry(self) -> ResourceRegistry:
        """Deprecated: ``device.live_resources()`` or ``device.context.registry``."""
        self._deprecated("registry", "device.live_resources() or device.context.registry")
        return self._ctx.registry

    @property
    def tracker(self) -> AllocationTracker:
        """Deprecated: ``device.phase()``, ``device.stats()['tracker']`` or ``device.context.tracker``."""
        self._deprecated("tracker", "device.phase(), device.stats()['tracker'] or device.context.tracker")
        return self._ctx.tracker

    @property
    def logical(self) -> LogicalDevice:
        """Deprecated: ``device.context.logical``."""
        self._deprecated("logical", "device.context.logical")
        return self._logical

    @property
    def command_pool(self) -> CommandPool:
        """Deprecated: ``device.context.command_pool``."""
        self._deprecated("command_pool", "device.context.command_pool")
        return self._command_pool

    @property
    def readback(self) -> Readback:
        """Deprecated: ``device.read_buffer`` / ``device.read_image``."""
        self._deprecated("readback", "device.read_buffer() / device.read_image()")
        return self._readback

    @property
    def physical(self) -> Any:
        """Deprecated: ``device.context.physical``."""
        self._deprecated("physical", "device.context.physical")
        return self._physical

    @property
    def instance(self) -> Instance:
        """Deprecated: ``device.validation`` / ``device.validation_problems()``."""
        self._deprecated("instance", "device.validation / device.validation_problems()")
        return self._instance

    def stash(self, key: type[T], factory: Callable[[], T]) -> T:
        """The one object of type ``key`` kept for this device, made by ``factory()`` on first use.

        What a module needs once per device (a compiled pipeline, a plan cache) lives here; objects with a
        ``destroy()`` (or ``close()``) are destroyed at :meth:`close`, before the Vulkan device.

        :param key: the object's type (the stash's key).
        :param factory: makes the object when the device has none yet.
        """
        if not isinstance(key, type) or not callable(factory):
            raise ConfigError(f"stash needs a type and a factory, got {key!r} and {factory!r}", option="key")
        self.check_open()
        return self._stash.get(key, factory)

    def stashed(self, key: type[T]) -> T | None:
        """The object of type ``key`` in :meth:`stash`, or ``None`` when none was made (nothing is made here).

        :param key: the object's type.
        """
        return self._stash.peek(key)

    def stats(self) -> dict[str, dict[str, Any]]:
        """The stats hub: a snapshot of every source by name (``budget``, ``allocator``, ``uploader``,
        ``registry``, ``tracker``, ``lifetime``)."""
        return {name: src.snapshot() for name, src in self._stats.items()}

    def reset_stats(self) -> None:
        """Reset counters and peaks of every stats source (what is in use stays counted)."""
        for src in self._stats.values():
            src.reset()

    # -- transfer --------------------------------------------------------------------------------------------
    def upload(self, buffer: Buffer, data: Any, offset: int = 0) -> None:
        """Copy ``data`` into ``buffer`` at ``offset`` and wait until it is on the GPU."""
        self.check_open()
        self._uploader.enqueue(buffer, data, offset)
        self._uploader.flush().wait()

    def create_and_upload(self, name: str, data: Any, usage: int | str | Iterable[str], *,
                          strategy: str = "device_local", category: str = "default") -> Buffer:
        """Create a buffer sized for ``data``, upload it, wait; on failure nothing is left behind.

        With the default ``strategy="device_local"``, data of at least ``DeviceOptions.rebar_upload_min_bytes`` goes
        to the resizable-BAR memory type of a discrete GPU that has one and is written there directly by the fill
        threads (``buffer.strategy`` is then ``"rebar"``): no staging copy, no DMA (see :func:`upload_strategy`).
        """
        self.check_open()
        src = as_bytes(data)
        strategy = upload_strategy(self._info, src.size, strategy, min_bytes=self._options.rebar_upload_min_bytes,
                                   parallel_writes=self._uploader.splits_direct_writes and self._uploader.direct_writes)
        buf = self.create_buffer(max(1, src.size), usage, strategy=strategy, name=name, category=category)
        try:
            self.upload(buf, src)
        except BaseException:
            buf.destroy()
            raise
        return buf

    def read_buffer(self, buffer: Buffer, size: int | None = None, offset: int = 0) -> Any:
        """Return ``size`` bytes of ``buffer`` from ``offset`` as a new ``numpy.uint8`` array (waits for uploads)."""
        self.check_open()
        return self._readback.read(buffer, size, offset)

    def create_image(self, width: int, height: int = 1, *, vk_format: int, depth: int = 1, levels: int = 1,
                     layers: int = 1, faces: int = 1, name: str = "", category: str = "default") -> Image:
        """Create a tracked, optimal-tiling image (sampled, transfer source and destination)."""
        self.check_open()
        check_extent(name, width, height, depth)
        return Image(self._ctx, name=name, vk_format=vk_format, width=width, height=height, depth=depth, levels=levels,
                     layers=layers, faces=faces, category=category)

    def read_image(self, texture: Any, level: int = 0, layer: int = 0, face: int = 0) -> Any:
        """Read one subresource back: raw blocks for block formats, pixels ``(h, w, texel_bytes)`` otherwise."""
        self.check_open()
        image = getattr(texture, "image", texture)
        return self._readback.read_image(image, level, layer, face)

    def flush(self) -> Ticket:
        """Submit what the uploader has pending (see ``Device.uploader``)."""
        self.check_open()
        return self._uploader.flush()

    def staging_ring(self, *, segment_size: int = 4 << 20, segments: int = 3,
                     strategy: str = "host_visible") -> StagingRing:
        """Create a :class:`StagingRing` for streaming uploads (destroyed at close).

        :param segment_size: bytes per segment.
        :param segments: segments used in turn.
        :param strategy: ``host_visible`` (default) or ``host_cached`` (see :class:`StagingRing`).
        """
        self.check_open()
        ring = StagingRing(self._ctx.buffers, self._ctx.lifetime, segment_size=segment_size, segments=segments,
                           strategy=strategy)
        self._rings.append(ring)
        return ring

    # -- memory ----------------------------------------------------------------------------------------------
    def create_buffer(self, size: int, usage: int | str | Iterable[str], *, strategy: str = "device_local",
                      name: str = "", category: str = "default", alignment: int = 0, dedicated: bool = False) -> Buffer:
        """Create a tracked buffer (``usage``: ``VkBufferUsageFlags`` or names like ``"vertex|storage"``).

        :param strategy: ``device_local``, ``host_visible``, ``host_cached`` or ``auto``.
        :param name: a label for stats, reprs and the leak report.
        :param category: the budget category its bytes are charged to (e.g. the cacher's name).
        :param alignment: minimum alignment of its memory offset.
        :param dedicated: give it its own ``VkDeviceMemory``.
        :raises BudgetExceededError: before any Vulkan call, when the budget cannot take it.
        """
        self.check_open()
        return self._ctx.buffers.create(size, usage, strategy=strategy, name=name, category=category, alignment=alignment,
                                   dedicated=dedicated)

    def create_buffer_set(self, specs: dict[str, tuple[int, Any]], *, strategy: str = "device_local", name: str = "",
                          category: str = "default", alignment: int = 256) -> BufferSet:
        """Create named buffers bound into ONE memory allocation (``{name: (size, usage)}``), all or nothing."""
        self.check_open()
        return BufferSet(self._ctx, specs, strategy=strategy, name=name, category=category, alignment=alignment)

    def allocation_group(self) -> AllocationGroup:
        """A transaction: buffers created through it are all kept, or all destroyed if the block raises."""
        self.check_open()
        return AllocationGroup(self._ctx)

    def retire(self, resource: GpuResource, after: int | None = None) -> None:
        """Destroy ``resource`` once the GPU finished the work submitted so far (or timeline value ``after``).

        :param resource: any GPU object of this device (buffer, image, buffer set, acceleration structure).
        :param after: the timeline value to wait for (default: everything submitted so far, or the object's last
            use when that is later).
        """
        if not hasattr(resource, "_mark_retiring"):
            raise ConfigError(f"retire needs a GPU object of this device, got {type(resource).__name__}",
                              option="resource")
        if after is not None:
            after = int_argument(after, "after", minimum=0)
        if not resource._mark_retiring():
            return
        last = resource._prepare_retire()  # pending uploads into it are submitted first, as destroy() does
        lifetime = self._ctx.lifetime
        lifetime.retire(resource, after if after is not None else max(lifetime.submitted, last))

    def begin_frame(self) -> int:
        """Start a frame of the frames-in-flight ring; destroys what retired frames ago and is done."""
        self.check_open()
        return self._ctx.lifetime.begin_frame()

    def phase(self, name: str) -> contextlib.AbstractContextManager[PhaseCounts]:
        """Count memory calls inside the ``with`` block under ``name`` (see ``Device.tracker``)."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"phase name must be a non-empty str, got {name!r}", option="name")
        return self._ctx.tracker.phase(name)

    def memory_report(self) -> dict[str, Any]:
        """A JSON-serialisable report: heaps, budget, per-category use, every block's used and free ranges."""
        return memory_report(self._ctx)

    def memory_report_html(self, path: str | Path, *, before: dict[str, Any] | None = None,
                           title: str = "memory map") -> Path:
        """Write the memory map of :meth:`memory_report` (every block a bar, ranges by category, hover for details)
        to ``path``: one self-contained HTML page (see ``memory.memory_map``).

        :param path: the HTML file to write.
        :param before: an earlier :meth:`memory_report` (e.g. taken before :meth:`defragment`): the page then shows
            before and after.
        :param title: the page title.
        :returns: the path written.
        """
        return write_memory_map(path, self.memory_report(), before=before, title=title)

    def defragment(self, *, max_bytes: int | None = None, max_ms: float | None = None,
                   images: bool = True) -> DefragResult:
        """Compact memory with GPU copies (buffers, images, small-buffer slabs); free the blocks that empty.

        Runs in the caller's thread (nothing moves memory behind your back). Every moved object's ``generation``
        goes up by one: re-fetch a buffer's ``handle``/``offset``/``device_address`` and an image's ``handle`` (and
        re-create its views) after a pass, or let ``BindingTable.update()`` rebind what changed.

        :param max_bytes: copy at most this many bytes in this pass (incremental: call once per frame).
        :param max_ms: keep this pass within about this many milliseconds (incremental).
        :param images: move images too (default ``True``).
        :returns: what was done (``moved``, ``bytes_moved``, ``images_moved``, ``remaining``, ...; see
            ``memory.defrag``).
        """
        if max_bytes is not None:
            max_bytes = int_argument(max_bytes, "max_bytes", minimum=0)
        self.check_open()
        return defragment(self._ctx, max_bytes=max_bytes, max_ms=max_ms, images=images)

    def live_resources(self) -> list[Any]:
        """Every live GPU object created through this device."""
        return self._ctx.registry.live()

    def close_report(self) -> list[str]:
        """Close the device and return the leak report (names of resources still alive at close)."""
        self.close()
        return list(self._leaks)

    def _release_memory(self) -> None:
        ctx = self._ctx
        self._stash.close()
        for ring in self._rings:
            ring.destroy()
        self._readback.destroy()
        self._uploader.close()
        ctx.lifetime.drain()
        leaks = []
        for obj in ctx.registry.live():
            leaks.append(f"{type(obj).__name__} {getattr(obj, 'name', '') or '<unnamed>'!r} "
                         f"({getattr(obj, 'nbytes', 0)} bytes)")
            obj._destroy_now()
        self._leaks = leaks
        if leaks:
            logging.getLogger("vixen_assets").warning("Device.close(): %d resources leaked: %s", len(leaks),
                                                      "; ".join(leaks))
        ctx.suballocator.release_all()
        ctx.lifetime.destroy()
        ctx.budget.close()

    # -- identity ------------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The device's name (``llvmpipe (LLVM 15.0.6, 256 bits)``, ``NVIDIA H100 80GB HBM3``)."""
        return self._info.name

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    @property
    def features(self) -> dict[str, bool]:
        """Capabilities enabled on this logical device."""
        return dict(self._logical.features)

    @property
    def buffer_device_address(self) -> bool:
        """True when buffers can have device addresses (``bufferDeviceAddress`` is enabled)."""
        return bool(self._logical.buffer_device_address)

    def check_open(self) -> None:
        """Raise :class:`DeviceClosedError` if the device was closed."""
        if self._closed:
            raise DeviceClosedError(f"device {self.name!r} is closed")

    def validation_problems(self) -> list[str]:
        """Validation WARNING/ERROR messages collected so far (empty without validation)."""
        return [str(m) for m in self._instance.problems()]

    def on_close(self, fn: Callable[[], object]) -> None:
        """Call ``fn()`` at :meth:`close`, before the Vulkan device is destroyed (last registered, first called)."""
        self._close_callbacks.append(fn)

    def wait_idle(self) -> None:
        """Wait until the GPU finished everything submitted."""
        self.check_open()
        self._logical.wait_idle()

    def close(self) -> None:
        """Wait for the GPU, free every resource (reporting leaks), destroy the device; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._logical.handle is not None:
                    try:
                        self._logical.wait_idle()
                    except Exception:  # a lost device still has to be torn down
                        pass
                for fn in reversed(self._close_callbacks):
                    fn()
                self._command_pool.destroy()
                self._release_memory()
            finally:
                self._logical.destroy()
                self._instance.destroy()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self._info.device_type
        return f"<Device {self._info.index} {self.name!r} {state}>"


#: the keywords ``open_device`` took before :class:`BudgetOptions` (a contract: still accepted, mapped into it)
_BUDGET_KEYWORDS = {"budget_fraction": "fraction", "warning_fraction": "warning_fraction",
                    "staging_quota": "staging_quota", "overflow": "overflow", "staging_timeout_s": "staging_timeout_s",
                    "budget_limit_bytes": "limit_bytes"}


def device_options(*, budget: BudgetOptions | None = None, separate_transfer_queue: bool | None = None,
                   buffer_image_granularity: int | None = None, block_size: int | None = None, rebar: bool = False,
                   rebar_upload_min_bytes: int | None = REBAR_UPLOAD_MIN_BYTES,
                   **budget_keywords: Any) -> DeviceOptions:
    """Build validated :class:`DeviceOptions` from :func:`open_device`'s keywords (the one options path).

    :param budget: the budget options (default ``BudgetOptions()``).
    :param separate_transfer_queue: see :class:`DeviceOptions`.
    :param buffer_image_granularity: see :class:`DeviceOptions`.
    :param block_size: see :class:`DeviceOptions`.
    :param rebar: see :class:`DeviceOptions`.
    :param rebar_upload_min_bytes: see :class:`DeviceOptions`.
    :param budget_keywords: the older spelling of budget options (``budget_fraction=0.5``, ``overflow="host"``...),
        applied on top of ``budget``.
    :raises ConfigError: an unknown keyword or a bad value (named).
    """
    unknown = sorted(set(budget_keywords) - set(_BUDGET_KEYWORDS))
    if unknown:
        raise ConfigError(f"open_device: unknown option {unknown[0]!r}", option=unknown[0])
    opts = budget if budget is not None else BudgetOptions()
    if budget_keywords:
        changes = {_BUDGET_KEYWORDS[k]: v for k, v in budget_keywords.items()}
        if "warning_fraction" in changes:
            # the old keyword is a share of the heap; BudgetOptions.warning_fraction is a share of the limit
            fraction = changes.get("fraction", opts.fraction)
            w = changes["warning_fraction"]
            if isinstance(w, (int, float)) and isinstance(fraction, (int, float)) and 0 < w <= 1 and fraction > 0:
                changes["warning_fraction"] = min(1.0, w / fraction)
        opts = opts.with_changes(**changes)
    return DeviceOptions(budget=opts, separate_transfer_queue=separate_transfer_queue,
                         buffer_image_granularity=buffer_image_granularity, block_size=block_size, rebar=rebar,
                         rebar_upload_min_bytes=rebar_upload_min_bytes)


def open_device(index: int | str | None = None, *, validation: bool | None = None,
                budget: BudgetOptions | None = None, separate_transfer_queue: bool | None = None,
                buffer_image_granularity: int | None = None, block_size: int | None = None, rebar: bool = False,
                rebar_upload_min_bytes: int | None = REBAR_UPLOAD_MIN_BYTES, **budget_keywords: Any) -> Device:
    """Open a Vulkan device (``index``, else ``VIXEN_DEVICE``, else the first) with its budget and uploader.

    :param index: device index or a substring of its name.
    :param validation: enable ``VK_LAYER_KHRONOS_validation``; ``None`` follows ``VIXEN_VALIDATION=1``.
    :param budget: the memory budget: :class:`BudgetOptions` (``fraction``, ``warning_fraction``, ``limit_bytes``,
        ``staging_quota``, ``overflow``, ``staging_timeout_s``).
    :param separate_transfer_queue: ``None`` uses a transfer-only family when present; ``True`` forces that path.
    :param buffer_image_granularity: force a larger ``bufferImageGranularity`` (tests of the suballocator).
    :param block_size: override the memory block size (default: 32 MiB pool blocks, requests of 4 MiB and more in
        their own blocks; with it, VMA's rule: dedicated above half a block).
    :param rebar: let ``strategy="auto"`` use a resizable-BAR heap on discrete GPUs.
    :param rebar_upload_min_bytes: the smallest ``create_and_upload`` written straight into a resizable BAR (``None``:
        never); see :class:`DeviceOptions`.
    :param budget_keywords: the earlier keywords, still accepted: ``budget_fraction``, ``warning_fraction``,
        ``staging_quota``, ``overflow``, ``staging_timeout_s`` (mapped into ``budget``).
    :raises ConfigError: a bad option, before any Vulkan call.
    :raises DeviceNotFoundError: no device matches ``index``.
    """
    options = device_options(budget=budget, separate_transfer_queue=separate_transfer_queue,
                             buffer_image_granularity=buffer_image_granularity, block_size=block_size, rebar=rebar,
                             rebar_upload_min_bytes=rebar_upload_min_bytes, **budget_keywords)
    instance = Instance(validation=_validation_default(validation))
    try:
        physicals = instance.physical_devices()
        infos = [query_device_info(pd, i) for i, pd in enumerate(physicals)]
        chosen = select_device(infos, index)
        return Device(instance, physicals[chosen], infos[chosen], options=options)
    except BaseException:
        instance.destroy()
        raise
