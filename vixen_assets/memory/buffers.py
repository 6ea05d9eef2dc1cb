"""Tracked buffers: ``Buffer`` and the factory behind ``Device.create_buffer``.

Small buffers (up to ``ARENA_MAX`` bytes) whose usage fits the arena usage are ranges of one shared ``VkBuffer``
bound over a whole memory block (an *arena*), so a 1 KiB buffer costs no ``vkCreateBuffer``: ``Buffer.handle``
and ``Buffer.offset`` say where it lives. Larger buffers get their own ``VkBuffer`` bound at a range of a block.
Every buffer is created with ``TRANSFER_SRC | TRANSFER_DST`` added, so it can be uploaded to and read back.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, DeviceClosedError, UnsupportedFeatureError, VixenError
from ..vk import LogicalDevice
from ..vk import resources as vkr
from ..vk.enums import BufferUsage
from ..vk.shim import BUFFER_USAGE_AS_BUILD_INPUT_READ_ONLY, BUFFER_USAGE_AS_STORAGE, BUFFER_USAGE_SHADER_DEVICE_ADDRESS
from .allocation import Allocation, DeviceAllocator
from .blocks import MemoryBlock, Suballocator
from .resource import ALIVE, DESTROYED, RETIRING, ResourceState
from .strategies import STRATEGIES, find_memory_type

if TYPE_CHECKING:
    from .lifetime import Lifetime
    from .registry import ResourceRegistry
    from .tracker import AllocationTracker

USAGE_NAMES = {
    "transfer_src": BufferUsage.TRANSFER_SRC, "transfer_dst": BufferUsage.TRANSFER_DST,
    "uniform_texel": BufferUsage.UNIFORM_TEXEL, "storage_texel": BufferUsage.STORAGE_TEXEL,
    "uniform": BufferUsage.UNIFORM, "storage": BufferUsage.STORAGE, "index": BufferUsage.INDEX,
    "vertex": BufferUsage.VERTEX, "indirect": BufferUsage.INDIRECT,
    "device_address": BUFFER_USAGE_SHADER_DEVICE_ADDRESS, "accel_input": BUFFER_USAGE_AS_BUILD_INPUT_READ_ONLY,
    "accel_storage": BUFFER_USAGE_AS_STORAGE,
}
TRANSFER = BufferUsage.TRANSFER_SRC | BufferUsage.TRANSFER_DST
ARENA_MAX = 512 << 10
_ARENA_BASE = (TRANSFER | BufferUsage.UNIFORM | BufferUsage.STORAGE | BufferUsage.INDEX | BufferUsage.VERTEX
               | BufferUsage.INDIRECT)


_parsed: dict[str, int] = {}


def parse_usage(usage: int | str | Iterable[str]) -> int:
    """Return ``VkBufferUsageFlags`` from an int, ``"vertex|index"`` or a list of names (see ``USAGE_NAMES``)."""
    if isinstance(usage, int):
        return usage
    if isinstance(usage, str) and usage in _parsed:
        return _parsed[usage]
    names = usage.replace(",", "|").split("|") if isinstance(usage, str) else list(usage)
    flags = 0
    for n in names:
        key = n.strip().lower()
        if not key:
            continue
        if key not in USAGE_NAMES:
            raise ConfigError(f"unknown buffer usage {n!r}; known: {', '.join(USAGE_NAMES)}")
        flags |= USAGE_NAMES[key]
    if isinstance(usage, str):
        _parsed[usage] = flags
    return flags


def _fmt_size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} B"


class Buffer:
    """A GPU buffer tracked by its device: ``handle`` + ``offset`` locate it, ``generation`` counts handle changes."""

    __slots__ = ("name", "size", "usage", "strategy", "generation", "device_address", "last_use", "_handle",
                 "_offset", "_alloc", "_owned_handle", "_factory", "_state", "_refs", "__weakref__")

    def __init__(self, factory: BufferFactory, name: str, size: int, usage: int, strategy: str, handle: Any,
                 offset: int, alloc: Allocation, owned_handle: bool, device_address: int) -> None:
        self._factory = factory
        self.name = name
        self.size = size
        self.usage = usage
        self.strategy = strategy
        self._handle = handle
        self._offset = offset
        self._alloc = alloc
        self._owned_handle = owned_handle
        self.device_address = device_address
        self.generation = 1
        self.last_use = 0
        self._state = ALIVE
        self._refs = 1

    # -- where it lives -------------------------------------------------------------------------------------------
    def _check(self) -> None:
        if self._state is DESTROYED:
            raise DeviceClosedError(f"buffer {self.name!r} was destroyed")

    @property
    def handle(self) -> Any:
        """The ``VkBuffer`` (shared by several arena buffers; use with :attr:`offset`)."""
        self._check()
        return self._handle

    @property
    def offset(self) -> int:
        """Byte offset of this buffer inside :attr:`handle`."""
        self._check()
        return self._offset

    @property
    def memory(self) -> Any:
        """The ``VkDeviceMemory`` it is bound to."""
        self._check()
        return self._alloc.block.memory

    @property
    def memory_offset(self) -> int:
        """Byte offset of this buffer's first byte inside :attr:`memory`."""
        return self._alloc.offset

    @property
    def allocation(self) -> Allocation:
        """The allocation record (block, offset, size, category)."""
        return self._alloc

    @property
    def nbytes(self) -> int:
        """Bytes of memory charged for this buffer."""
        return self._alloc.size

    @property
    def category(self) -> str:
        """The budget category its bytes are charged to."""
        return self._alloc.category

    @property
    def host_visible(self) -> bool:
        """True when the memory is mapped (writes can go straight in)."""
        return self._alloc.block.mapped is not None

    @property
    def mapped(self) -> np.ndarray | None:
        """A writable uint8 view of the buffer's bytes in mapped memory, or ``None`` for device-only memory."""
        self._check()
        m = self._alloc.block.mapped
        if m is None:
            return None
        start = self._alloc.offset
        return m[start:start + self.size]

    @property
    def host_bytes(self) -> np.ndarray:
        """Like :attr:`mapped`, for buffers known to be host-visible (staging); raises when it is not mapped."""
        view = self.mapped
        if view is None:
            raise VixenError(f"buffer {self.name!r} is not host-visible")
        return view

    @property
    def alive(self) -> bool:
        """False once destroyed (or retired for destruction)."""
        return self._state is ALIVE

    @property
    def state(self) -> ResourceState:
        """ALIVE, RETIRING (waiting for the GPU) or DESTROYED."""
        return self._state

    # -- lifetime -------------------------------------------------------------------------------------------------
    def acquire(self) -> Buffer:
        """Add a reference (shared resources); each needs a matching :meth:`release`."""
        self._check()
        self._refs += 1
        return self

    def release(self) -> None:
        """Drop a reference; the last one destroys the buffer."""
        self._refs -= 1
        if self._refs <= 0:
            self.destroy()

    @property
    def refcount(self) -> int:
        """How many references are held."""
        return self._refs

    def destroy(self) -> None:
        """Destroy now, or once the GPU is done with it when work using it is in flight; safe to call twice."""
        if self._state is not ALIVE:
            return
        self._state = RETIRING
        self._factory.retire(self)

    # -- friend API of the lifetime protocol (see ``memory.resource``) -------------------------------------------
    def _mark_retiring(self) -> bool:
        """ALIVE -> RETIRING; False when it was not alive."""
        if self._state is not ALIVE:
            return False
        self._state = RETIRING
        return True

    def _prepare_retire(self) -> int:
        """Submit uploads still pending into this buffer; return the timeline value to wait for."""
        return self._factory.prepare_retire(self)

    def _destroy_now(self) -> None:
        """Free the handle, range and budget now; safe to call twice."""
        if self._state is DESTROYED:
            return
        self._state = DESTROYED
        self._factory.destroy_now(self)

    def __enter__(self) -> Buffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __del__(self) -> None:
        if getattr(self, "_state", DESTROYED) is ALIVE:
            warnings.warn(f"Buffer {self.name!r} was never destroyed (use destroy() or a with block)", ResourceWarning,
                          stacklevel=1)

    def __repr__(self) -> str:
        state = {ALIVE: "", RETIRING: " retired", DESTROYED: " destroyed"}[self._state]
        return f'<Buffer "{self.name}" {_fmt_size(self.size)} gen={self.generation}{state}>'


class BufferFactory:
    """Creates and destroys :class:`Buffer` objects through the allocation chain (thread-safe)."""

    def __init__(self, dev: LogicalDevice, allocator: DeviceAllocator, sub: Suballocator, *, lifetime: Lifetime,
                 registry: ResourceRegistry, tracker: AllocationTracker, rebar: bool = False) -> None:
        """Wire the factory to the chain and register the arena hooks on the suballocator."""
        self._dev = dev
        self._info = dev.info
        self.allocator = allocator
        self.sub = sub
        self.lifetime = lifetime
        self.registry = registry
        self.tracker = tracker
        self.rebar = rebar
        self._lock = threading.Lock()
        lim = self._info.limits
        self.arena_alignment = max(16, lim.get("min_storage_buffer_offset_alignment", 16),
                                   lim.get("min_uniform_buffer_offset_alignment", 16))
        usage = _ARENA_BASE
        if dev.buffer_device_address:
            usage |= BUFFER_USAGE_SHADER_DEVICE_ADDRESS
        if dev.features.get("acceleration_structure"):
            usage |= BUFFER_USAGE_AS_BUILD_INPUT_READ_ONLY
        self.arena_usage = usage
        probe = vkr.create_buffer(dev, 4096, usage)
        try:
            _s, self._arena_align_req, self._arena_bits = vkr.buffer_requirements(dev, probe)
        finally:
            vkr.destroy_buffer(dev, probe)
        self._type_cache: dict[tuple[int, str], int] = {}
        self._arena_types: dict[str, int] = {}  # strategy -> memory type of its arenas (create's fast path)
        self._arena_bda = bool(usage & BUFFER_USAGE_SHADER_DEVICE_ADDRESS)
        #: "submit work still pending into this resource" (set by ``GpuContext``: its pending-flush callbacks)
        self.before_retire: Callable[[object], None] | None = None
        sub.on_new_block["arena"] = self._make_arena
        sub.on_release_block["arena"] = self._drop_arena
        sub.on_new_block["arena:overflow"] = self._make_arena
        sub.on_release_block["arena:overflow"] = self._drop_arena

    # -- arenas ---------------------------------------------------------------------------------------------------
    def _make_arena(self, block: MemoryBlock) -> None:
        buf = vkr.create_buffer(self._dev, block.size, self.arena_usage)
        try:
            vkr.bind_buffer(self._dev, buf, block.memory, 0)
            addr = vkr.device_address(self._dev, buf) if self.arena_usage & BUFFER_USAGE_SHADER_DEVICE_ADDRESS else 0
        except BaseException:
            vkr.destroy_buffer(self._dev, buf)
            raise
        self.tracker.count_buffer(True)
        block.payload = (buf, addr)

    def _drop_arena(self, block: MemoryBlock) -> None:
        if block.payload is not None:
            vkr.destroy_buffer(self._dev, block.payload[0])
            self.tracker.count_buffer(False)
            block.payload = None

    def memory_type(self, type_bits: int, strategy: str) -> int:
        """The memory type for a strategy (cached)."""
        key = (type_bits, strategy)
        t = self._type_cache.get(key)
        if t is None:
            t = self._type_cache[key] = find_memory_type(self._info, type_bits, strategy, rebar=self.rebar)
        return t

    # -- create / destroy -----------------------------------------------------------------------------------------
    def create(self, size: int, usage: int | str | Iterable[str], *, strategy: str = "device_local", name: str = "",
               category: str = "default", alignment: int = 0, dedicated: bool = False) -> Buffer:
        """Create a buffer of ``size`` bytes (see ``Device.create_buffer``)."""
        if 0 < size <= ARENA_MAX and not dedicated and (not alignment or alignment <= self.arena_alignment):
            # hot path: a small buffer of a strategy already used for an arena buffer (so it passed the checks below)
            type_index = self._arena_types.get(strategy)
            if type_index is not None:
                flags = (usage if type(usage) is int else parse_usage(usage)) | TRANSFER
                if flags & ~self.arena_usage == 0:
                    return self._create_in_arena(size, flags, strategy, name, category, type_index)
        if size <= 0:
            raise ConfigError(f"buffer {name!r}: size must be > 0, got {size}")
        if strategy not in STRATEGIES:
            raise ConfigError(f"buffer {name!r}: unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
        flags = parse_usage(usage) | TRANSFER
        if flags & BUFFER_USAGE_SHADER_DEVICE_ADDRESS and not self._dev.buffer_device_address:
            raise UnsupportedFeatureError(f"buffer {name!r}: shader device address requested but {self._info.name} "
                                          "lacks it", feature="bufferDeviceAddress")
        if (size <= ARENA_MAX and not dedicated and flags & ~self.arena_usage == 0
                and (not alignment or alignment <= self.arena_alignment)):
            type_index = self._arena_types[strategy] = self.memory_type(self._arena_bits, strategy)
            return self._create_in_arena(size, flags, strategy, name, category, type_index)
        return self._create_own(size, flags, strategy, name, category, alignment, dedicated)

    def _create_in_arena(self, size: int, flags: int, strategy: str, name: str, category: str,
                         type_index: int) -> Buffer:
        # flags are a subset of the arena usage, so the arena's device-address flag is the one to ask for
        alloc = self.allocator.allocate(size, self.arena_alignment, type_index, category=category,
                                        type_bits=self._arena_bits, device_address=self._arena_bda, purpose="arena")
        handle, base = alloc.block.payload
        offset = alloc.offset
        addr = base + offset if base and flags & BUFFER_USAGE_SHADER_DEVICE_ADDRESS else 0
        buf = Buffer(self, name, size, flags, strategy, handle, offset, alloc, False, addr)
        self.registry.add(buf)
        return buf

    def _create_own(self, size: int, flags: int, strategy: str, name: str, category: str, alignment: int,
                    dedicated: bool) -> Buffer:
        dev = self._dev
        budget = getattr(self.allocator, "budget", None)
        if budget is not None and category != "staging":
            # fail before any Vulkan call when even the bare size cannot fit the heap it would land on
            budget.check(size, heap=self._info.memory_types[self.memory_type(self._arena_bits, strategy)].heap,
                         category=category)
        handle = vkr.create_buffer(dev, size, flags)
        try:
            req_size, req_align, bits = vkr.buffer_requirements(dev, handle)
            type_index = self.memory_type(bits, strategy)
            want_addr = bool(flags & BUFFER_USAGE_SHADER_DEVICE_ADDRESS)
            alloc = self.allocator.allocate(req_size, max(req_align, alignment or 1), type_index, category=category,
                                            type_bits=bits, device_address=want_addr, dedicated=dedicated)
        except BaseException:
            vkr.destroy_buffer(dev, handle)
            raise
        try:
            vkr.bind_buffer(dev, handle, alloc.block.memory, alloc.offset)
            addr = vkr.device_address(dev, handle) if want_addr else 0
        except BaseException:
            vkr.destroy_buffer(dev, handle)
            self.allocator.free(alloc)
            raise
        self.tracker.count_buffer(True)
        buf = Buffer(self, name, size, flags, strategy, handle, 0, alloc, True, addr)
        self.registry.add(buf)
        return buf

    def prepare_retire(self, buf: Buffer) -> int:
        """Submit work still pending into ``buf`` (so ``last_use`` covers it); return ``buf.last_use``."""
        if self.before_retire is not None:
            self.before_retire(buf)
        return buf.last_use

    def retire(self, buf: Buffer) -> None:
        """Destroy when the GPU finished the last work that used it (immediately when that is done already)."""
        if self.before_retire is not None:
            self.before_retire(buf)  # submit work still pending into it, so last_use covers it
        last = buf.last_use
        if not last:  # never used by the GPU: nothing to wait for
            buf._destroy_now()
            return
        self.lifetime.retire(buf, last)

    def destroy_now(self, buf: Buffer) -> None:
        """Free the buffer's handle, range and budget now."""
        if buf._owned_handle and self._dev.handle is not None:
            vkr.destroy_buffer(self._dev, buf._handle)
            self.tracker.count_buffer(False)
        self.allocator.free(buf._alloc)
        self.registry.remove(buf)

    def rebind(self, buf: Buffer, handle: Any, offset: int, alloc: Allocation, owned: bool, device_address: int) -> None:
        """Point ``buf`` at a new handle/range (defragmentation); bumps its generation when the handle changes."""
        old_handle, old_offset = buf._handle, buf._offset
        buf._handle, buf._offset, buf._alloc, buf._owned_handle = handle, offset, alloc, owned
        buf.device_address = device_address
        if handle != old_handle or offset != old_offset:
            buf.generation += 1
