"""``Device``: the friendly object that owns one Vulkan device and the memory and transfer systems on it.

:func:`open_device` picks a device (by index, or the ``VIXEN_DEVICE`` env var: an index or a name substring),
creates an instance (with validation when asked or when ``VIXEN_VALIDATION=1``) and a logical device, then builds the
budget manager, allocator and uploader on it. :func:`list_devices` describes every device without opening one.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import contextlib
from collections.abc import Iterable

from .errors import DeviceClosedError, DeviceNotFoundError
from .memory.allocator import BudgetedAllocator
from .memory.blocks import Suballocator
from .memory.budget import BudgetManager, HeapBudgetInput
from .memory.buffers import Buffer, BufferFactory
from .memory.group import AllocationGroup
from .memory.lifetime import Lifetime
from .memory.registry import ResourceRegistry
from .memory.report import memory_report
from .memory.strategies import find_memory_type
from .memory.tracker import AllocationTracker, PhaseCounts
from .transfer.readback import Readback
from .transfer.ring import StagingRing
from .transfer.uploader import BatchedUploader, Ticket
from .vk import DeviceInfo, Instance, LogicalDevice, query_device_info
from .vk.commands import CommandPool


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
    """One opened Vulkan device with its budget, allocator and uploader; close it (or use ``with``)."""

    def __init__(self, instance: Instance, physical: Any, info: DeviceInfo, *, separate_transfer_queue: bool | None,
                 budget_fraction: float, warning_fraction: float, staging_quota: int | None,
                 overflow: str = "error", staging_timeout_s: float = 30.0, buffer_image_granularity: int | None = None,
                 block_size: int | None = None, rebar: bool = False) -> None:
        """Build the device; use :func:`open_device` rather than calling this directly."""
        self.instance = instance
        self.info = info
        self.physical = physical
        self.logical = LogicalDevice(physical, info, separate_transfer_queue=separate_transfer_queue)
        self._closed = False
        self._lock = threading.RLock()
        self._close_callbacks: list[Any] = []
        #: cacher instances of this device by cacher name (see ``vixen_assets.cachers.cacher_for``)
        self.cachers: dict[str, Any] = {}
        self.command_pool = CommandPool(self.logical, self.logical.queue.family)
        self._force_ownership = bool(separate_transfer_queue)
        self._setup_memory(budget_fraction=budget_fraction, warning_fraction=warning_fraction,
                           staging_quota=staging_quota, overflow=overflow, staging_timeout_s=staging_timeout_s,
                           granularity=buffer_image_granularity, block_size=block_size, rebar=rebar)

    def _setup_memory(self, *, budget_fraction: float, warning_fraction: float, staging_quota: int | None,
                      overflow: str, staging_timeout_s: float, granularity: int | None = None,
                      block_size: int | None = None, rebar: bool = False) -> None:
        """Build the budget, the allocation chain, the tracker, the registry and deferred destruction."""
        info = self.info
        heaps = [HeapBudgetInput(h.size, h.device_local, h.budget) for h in info.heaps]
        self.budget = BudgetManager(heaps, budget_fraction=budget_fraction, warning_fraction=warning_fraction,
                                    staging_quota=staging_quota, staging_timeout_s=staging_timeout_s,
                                    overflow=overflow, name=info.name)
        self.tracker = AllocationTracker()
        self.registry = ResourceRegistry()
        self.lifetime = Lifetime(self.logical)
        gran = granularity or info.limits.get("buffer_image_granularity", 1)
        self.suballocator = Suballocator(self.logical, heap_limits=lambda h: self.budget.limits[h],
                                         tracker=self.tracker, granularity=gran, block_size=block_size)

        def heap_of_type(t: int) -> int:
            return info.memory_types[t].heap

        def overflow_type(bits: int) -> int | None:
            try:
                t = find_memory_type(info, bits, "host_overflow")
            except Exception:
                return None
            return t if not info.heaps[heap_of_type(t)].device_local else None

        self.allocator = BudgetedAllocator(self.suballocator, self.budget,
                                           heap_of_type, overflow_type)
        self.buffers = BufferFactory(self.logical, self.allocator, self.suballocator, lifetime=self.lifetime,
                                     registry=self.registry, tracker=self.tracker, rebar=rebar)
        self.budget.add_stats_provider("allocator", self.suballocator.stats, self.suballocator.reset_stats)
        self.budget.add_stats_provider("live_objects", self.registry.counts)
        self.leaks: list[str] = []
        with self.tracker.phase("setup"):
            self.uploader = BatchedUploader(self.logical, self.buffers, self.lifetime,
                                            staging_quota=self.budget.staging_quota,
                                            staging_timeout_s=staging_timeout_s,
                                            force_ownership_transfer=bool(self._force_ownership))
            self.readback = Readback(self.uploader)
        self.buffers.before_retire = self.uploader.flush_if_pending
        self.budget.add_stats_provider("uploader", self.uploader.stats_dict)
        self._rings: list[StagingRing] = []

    # -- transfer --------------------------------------------------------------------------------------------
    def upload(self, buffer: Buffer, data: Any, offset: int = 0) -> None:
        """Copy ``data`` into ``buffer`` at ``offset`` and wait until it is on the GPU."""
        self.check_open()
        self.uploader.enqueue(buffer, data, offset)
        self.uploader.flush().wait()

    def create_and_upload(self, name: str, data: Any, usage: int | str | Iterable[str], *,
                          strategy: str = "device_local", category: str = "default") -> Buffer:
        """Create a buffer sized for ``data``, upload it, wait; on failure nothing is left behind."""
        self.check_open()
        from .transfer.uploader import as_bytes

        src = as_bytes(data)
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
        return self.readback.read(buffer, size, offset)

    def create_image(self, width: int, height: int = 1, *, vk_format: int, depth: int = 1, levels: int = 1,
                     layers: int = 1, faces: int = 1, name: str = "", category: str = "default") -> Any:
        """Create a tracked, optimal-tiling image (sampled, transfer source and destination)."""
        self.check_open()
        from .memory.images import Image, check_extent

        check_extent(name, width, height, depth)
        return Image(self, name=name, vk_format=vk_format, width=width, height=height, depth=depth, levels=levels,
                     layers=layers, faces=faces, category=category)

    def read_image(self, texture: Any, level: int = 0, layer: int = 0, face: int = 0) -> Any:
        """Read one subresource back: raw blocks for block formats, pixels ``(h, w, texel_bytes)`` otherwise."""
        self.check_open()
        image = getattr(texture, "image", texture)
        return self.readback.read_image(image, level, layer, face)

    def flush(self) -> Ticket:
        """Submit what the uploader has pending (see ``Device.uploader``)."""
        self.check_open()
        return self.uploader.flush()

    def staging_ring(self, *, segment_size: int = 4 << 20, segments: int = 3) -> StagingRing:
        """Create a :class:`StagingRing` for streaming uploads (destroyed at close)."""
        self.check_open()
        ring = StagingRing(self.buffers, self.lifetime, segment_size=segment_size, segments=segments)
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
        return self.buffers.create(size, usage, strategy=strategy, name=name, category=category, alignment=alignment,
                                   dedicated=dedicated)

    def create_buffer_set(self, specs: dict[str, tuple[int, Any]], *, strategy: str = "device_local", name: str = "",
                          category: str = "default", alignment: int = 256) -> Any:
        """Create named buffers bound into ONE memory allocation (``{name: (size, usage)}``), all or nothing."""
        self.check_open()
        from .memory.buffer_set import BufferSet

        return BufferSet(self, specs, strategy=strategy, name=name, category=category, alignment=alignment)

    def allocation_group(self) -> AllocationGroup:
        """A transaction: buffers created through it are all kept, or all destroyed if the block raises."""
        self.check_open()
        return AllocationGroup(self)

    def retire(self, resource: Any, after: int | None = None) -> None:
        """Destroy ``resource`` once the GPU finished the work submitted so far (or timeline value ``after``)."""
        if hasattr(resource, "_state"):
            if resource._state:
                return
            if isinstance(resource, Buffer) and self.buffers.before_retire is not None:
                self.buffers.before_retire(resource)  # submit uploads still pending into it, as destroy() does
            resource._state = 1
            if hasattr(resource, "_before_retire"):  # TrackedResource: the same preparation destroy() makes
                resource.last_use = resource._before_retire()
        self.lifetime.retire(resource, after if after is not None else max(self.lifetime.submitted,
                                                                              getattr(resource, "last_use", 0)))

    def begin_frame(self) -> int:
        """Start a frame of the frames-in-flight ring; destroys what retired frames ago and is done."""
        self.check_open()
        return self.lifetime.begin_frame()

    def phase(self, name: str) -> contextlib.AbstractContextManager[PhaseCounts]:
        """Count memory calls inside the ``with`` block under ``name`` (see ``Device.tracker``)."""
        return self.tracker.phase(name)

    def memory_report(self) -> dict[str, Any]:
        """A JSON-serialisable report: heaps, budget, per-category use, every block's used and free ranges."""
        return memory_report(self)

    def defragment(self, **kwargs: Any) -> Any:
        """Move live buffers into fewer blocks with GPU copies; return what was done (see ``memory.defrag``)."""
        self.check_open()
        from .memory.defrag import defragment

        return defragment(self, **kwargs)

    def live_resources(self) -> list[Any]:
        """Every live GPU object created through this device."""
        return self.registry.live()

    def close_report(self) -> list[str]:
        """Close the device and return the leak report (names of resources still alive at close)."""
        self.close()
        return list(self.leaks)

    def _release_memory(self) -> None:
        for ring in self._rings:
            ring.destroy()
        self.readback.destroy()
        self.uploader.close()
        self.lifetime.drain()
        leaks = []
        for obj in self.registry.live():
            leaks.append(f"{type(obj).__name__} {getattr(obj, 'name', '') or '<unnamed>'!r} "
                         f"({getattr(obj, 'nbytes', 0)} bytes)")
            obj._destroy_now() if hasattr(obj, "_destroy_now") else obj.destroy()
        self.leaks = leaks
        if leaks:
            import logging

            logging.getLogger("vixen_assets").warning("Device.close(): %d resources leaked: %s", len(leaks),
                                                      "; ".join(leaks))
        self.suballocator.release_all()
        self.lifetime.destroy()
        self.budget.close()

    # -- identity ------------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The device's name (``llvmpipe (LLVM 15.0.6, 256 bits)``, ``NVIDIA H100 80GB HBM3``)."""
        return self.info.name

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    @property
    def features(self) -> dict[str, bool]:
        """Capabilities enabled on this logical device."""
        return dict(self.logical.features)

    def check_open(self) -> None:
        """Raise :class:`DeviceClosedError` if the device was closed."""
        if self._closed:
            raise DeviceClosedError(f"device {self.name!r} is closed")

    def validation_problems(self) -> list[str]:
        """Validation WARNING/ERROR messages collected so far (empty without validation)."""
        return [str(m) for m in self.instance.problems()]

    def on_close(self, fn: Any) -> None:
        """Call ``fn()`` at :meth:`close`, before the Vulkan device is destroyed (last registered, first called)."""
        self._close_callbacks.append(fn)

    def wait_idle(self) -> None:
        """Wait until the GPU finished everything submitted."""
        self.check_open()
        self.logical.wait_idle()

    def close(self) -> None:
        """Wait for the GPU, free every resource (reporting leaks), destroy the device; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self.logical.handle is not None:
                    try:
                        self.logical.wait_idle()
                    except Exception:  # a lost device still has to be torn down
                        pass
                for fn in reversed(self._close_callbacks):
                    fn()
                self.command_pool.destroy()
                self._release_memory()
            finally:
                self.logical.destroy()
                self.instance.destroy()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.info.device_type
        return f"<Device {self.info.index} {self.name!r} {state}>"


def open_device(index: int | str | None = None, *, validation: bool | None = None, budget_fraction: float = 0.9,
                warning_fraction: float = 0.8, staging_quota: int | None = None,
                separate_transfer_queue: bool | None = None, overflow: str = "error",
                staging_timeout_s: float = 30.0, buffer_image_granularity: int | None = None,
                block_size: int | None = None, rebar: bool = False) -> Device:
    """Open a Vulkan device (``index``, else ``VIXEN_DEVICE``, else the first) with its budget and uploader.

    :param index: device index or a substring of its name.
    :param validation: enable ``VK_LAYER_KHRONOS_validation``; ``None`` follows ``VIXEN_VALIDATION=1``.
    :param budget_fraction: hard limit as a fraction of each device-local heap.
    :param warning_fraction: warning threshold as a fraction of each device-local heap.
    :param staging_quota: bytes of the budget usable for staging (default min(256 MiB, 10% of the limit)).
    :param separate_transfer_queue: ``None`` uses a transfer-only family when present; ``True`` forces that path.
    :param overflow: ``"error"`` (default) or ``"host"`` to place allocations in host memory once over budget.
    :param staging_timeout_s: how long a staging request waits for memory before ``StagingTimeoutError``.
    :param buffer_image_granularity: force a larger ``bufferImageGranularity`` (tests of the suballocator).
    :param block_size: override the memory block size (default: VMA's, 256 MiB or heap/8).
    :param rebar: let ``strategy="auto"`` use a resizable-BAR heap on discrete GPUs.
    """
    instance = Instance(validation=_validation_default(validation))
    try:
        physicals = instance.physical_devices()
        infos = [query_device_info(pd, i) for i, pd in enumerate(physicals)]
        chosen = select_device(infos, index)
        return Device(instance, physicals[chosen], infos[chosen], separate_transfer_queue=separate_transfer_queue,
                      budget_fraction=budget_fraction, warning_fraction=warning_fraction, staging_quota=staging_quota,
                      overflow=overflow, staging_timeout_s=staging_timeout_s,
                      buffer_image_granularity=buffer_image_granularity, block_size=block_size, rebar=rebar)
    except BaseException:
        instance.destroy()
        raise
