"""``VkDeviceMemory`` blocks and the suballocator that carves them with TLSF.

The block policy (issue 17: hold little more than is live, without a defragmentation pass):

- **Large requests get their own block** ("dedicated": one resource per ``VkDeviceMemory``, exact size, so no
  fragmentation at all) from :meth:`Suballocator.dedicated_min` (4 MiB) up. What the measured cost of
  ``vkAllocateMemory`` on a heap changes (every call the suballocator makes is timed) is the hysteresis below, not
  the threshold: on the issue-17 churn trace (``benchmarks/bench_churn.py --device``, calls forced to cost 2 ms)
  a 16 MiB threshold held 33 % over live at the end (46 % at worst), 8 MiB 18 % (31 %) (100k operations);
  4 MiB with spares capped at 1/16 of the heap and 1/4 slack 19.4 % (22.6 %, 27 ``vkAllocateMemory`` per 1,000
  operations), at 1/32 and 1/8 14.0 % (17.2 %, 39 per 1,000), with no spares 10.2 % (13.2 %, 50 per 1,000)
  (200k operations).
- **Spare dedicated blocks** (hysteresis for heaps where ``vkAllocateMemory`` costs more than
  :data:`COSTLY_ALLOCATE_US`, e.g. 1.5-2 ms on an NVIDIA H200): a freed dedicated block is kept, while the heap's
  spares stay under 1/32 of its held bytes, and reused by a later large request it exceeds by at most 1/8 (best
  fit). Where a call is cheap (lavapipe, tens of µs) none is kept: held memory wins.
- **Pool blocks fitted to what they serve**: a pool only serves requests below the dedicated threshold, so its
  blocks are 8 x that threshold (32 MiB), capped by VMA's default (256 MiB, heap/8 on heaps of 1 GiB or less) and
  by the heap's budget limit.
- **Best fit across blocks, fullest first**: a request that does not fit the block used last goes to the fullest
  block with room, so the emptiest blocks drain and can be freed.
- **Empty blocks with hysteresis**: one empty block per pool is kept (steady churn makes no ``vkAllocateMemory``
  calls) unless the pool's other blocks have a block's worth of free bytes between them; the rest are freed at
  once; ``trim()`` frees the kept ones too.

``block_size=`` (``open_device``) overrides the pool block size and restores VMA's rule for dedicated memory (above
half a block), which tests of the block machinery rely on. Host-visible blocks are mapped once, persistently. The
total of a heap's blocks never exceeds the budget limit of that heap: a new block is shrunk to the room that is
left (spare blocks are released first).
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import BudgetExceededError
from ..vk import LogicalDevice
from ..vk import resources as vkr
from ..vk.enums import MemoryProperty
from .allocation import Allocation, DeviceAllocator
from .tlsf import TlsfAllocator
from .tracker import AllocationTracker

MiB = 1 << 20
DEFAULT_BLOCK_SIZE = 256 * MiB
#: requests from this size up get their own block (unless ``block_size=`` is given: then above half a block)
DEDICATED_MIN = 4 * MiB
#: a ``vkAllocateMemory`` call slower than this on average (µs) makes a heap "costly"
COSTLY_ALLOCATE_US = 250.0
#: pool blocks hold this many of their largest requests
POOL_BLOCK_FACTOR = 8
#: a spare dedicated block is reused for a request it exceeds by at most 1/SPARE_SLACK
SPARE_SLACK = 8
#: spare dedicated blocks of a costly heap stay under 1/SPARE_SHARE of the heap's held bytes
SPARE_SHARE = 32
_ids = itertools.count(1)


def default_block_size(heap_size: int) -> int:
    """VMA's rule: 256 MiB, or heap/8 on heaps of 1 GiB or less (rounded down to 64 KiB)."""
    if heap_size <= 1 << 30:
        return max(64 << 10, (heap_size // 8) & ~0xFFFF)
    return DEFAULT_BLOCK_SIZE


class MemoryBlock:
    """One ``VkDeviceMemory`` allocation with its TLSF range allocator and, if host-visible, a persistent mapping."""

    __slots__ = ("id", "memory", "size", "type_index", "heap", "tlsf", "mapped", "dedicated",
                 "device_address", "pool_key", "payload", "_dev")

    def __init__(self, dev: LogicalDevice, size: int, type_index: int, heap: int, *, host_visible: bool,
                 device_address: bool, dedicated: bool, granularity: int, pool_key: tuple[Any, ...], dedicated_buffer: Any = None) -> None:
        """Allocate the memory (and map it when host-visible)."""
        self._dev = dev
        self.id = next(_ids)
        self.size = size
        self.type_index = type_index
        self.heap = heap
        self.dedicated = dedicated
        self.device_address = device_address
        self.pool_key = pool_key
        self.payload: Any = None  # e.g. the arena VkBuffer bound over the whole block
        self.memory = vkr.allocate_memory(dev, size, type_index, device_address=device_address,
                                          dedicated_buffer=dedicated_buffer)
        self.tlsf = TlsfAllocator(size, buffer_image_granularity=granularity)
        self.mapped: np.ndarray | None = None
        if host_visible:
            try:
                _addr, self.mapped = vkr.map_whole(dev, self.memory, size)
            except BaseException:
                vkr.free_memory(dev, self.memory)
                raise

    def release(self) -> None:
        """Unmap and free the ``VkDeviceMemory``."""
        if self.memory is None:
            return
        if self.mapped is not None:
            self.mapped = None
            vkr.unmap(self._dev, self.memory)
        vkr.free_memory(self._dev, self.memory)
        self.memory = None

    def __repr__(self) -> str:
        return (f"<MemoryBlock #{self.id} type={self.type_index} {self.size / MiB:.1f} MiB "
                f"used={self.tlsf.used_bytes} {'dedicated' if self.dedicated else ''}>")


SLAB_BYTES = 64 << 10
SLAB_MAX = 4096
#: request size -> slot size (powers of two from 64 bytes), precomputed for the hot path
SLAB_CLASS = [max(64, 1 << max(0, (n - 1).bit_length())) for n in range(SLAB_MAX + 1)]


class Slab:
    """A 64 KiB TLSF range of one block cut into equal slots of one size class."""

    __slots__ = ("block", "base", "cls", "free", "used", "partial", "sizes")

    def __init__(self, block: MemoryBlock, base: int, cls: int, partial: list[Slab]) -> None:
        self.block = block
        self.base = base
        self.cls = cls
        self.free = list(range(base + SLAB_BYTES - cls, base - 1, -cls))
        self.used = 0
        self.partial = partial
        self.sizes: dict[int, int] = {}  # live slot offset -> requested bytes (for the memory report)

    def ranges(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(used, free) ``(offset, size)`` ranges inside the slab, by offset."""
        used, free = [], []
        for off in range(self.base, self.base + SLAB_BYTES, self.cls):
            n = self.sizes.get(off)
            if n is None:
                free.append((off, self.cls))
            else:
                used.append((off, n))
                if n < self.cls:
                    free.append((off + n, self.cls - n))
        return used, free


@dataclass
class PoolStats:
    """Counters of one pool of blocks."""

    block_allocations: int = 0
    block_frees: int = 0
    suballocations: int = 0
    subfrees: int = 0
    peak_blocks: int = 0


@dataclass
class BlockPool:
    """The blocks of one (memory type, purpose, device-address) combination."""

    key: tuple[Any, ...]
    blocks: list[MemoryBlock] = field(default_factory=list)
    stats: PoolStats = field(default_factory=PoolStats)
    #: the size of its regular blocks, fixed when the pool is made (``Suballocator.block_size_for``)
    block_size: int = 0
    #: requests of at least this size get their own block (``Suballocator.dedicated_min``, refreshed per block)
    dedicated_min: int = 0
    #: the block the last suballocation came from (tried first by the next one)
    current: MemoryBlock | None = None
    #: size class -> slabs of that class with free slots (small allocations, see ``Suballocator.allocate``)
    slabs: dict[int, list[Slab]] = field(default_factory=dict)
    #: every live slab by (block id, base offset), full ones included
    slab_index: dict[tuple[int, int], Slab] = field(default_factory=dict)
    #: empty dedicated blocks kept for reuse (costly heaps only; also in ``blocks``)
    spares: list[MemoryBlock] = field(default_factory=list)


class Suballocator(DeviceAllocator):
    """Carves ``VkDeviceMemory`` blocks into ranges: the bottom of the allocation chain (thread-safe)."""

    def __init__(self, dev: LogicalDevice, *, heap_limits: Callable[[int], int], tracker: AllocationTracker,
                 granularity: int, block_size: int | None = None) -> None:
        """Create an empty suballocator.

        :param heap_limits: returns the byte limit for the blocks of a heap (the budget's limit).
        :param granularity: ``bufferImageGranularity`` (may be forced larger for tests).
        :param block_size: override of the default block size.
        """
        self._dev = dev
        self._info = dev.info
        self._heap_limits = heap_limits
        self.tracker = tracker
        self.granularity = granularity
        self._block_size = block_size
        self._pools: dict[tuple[Any, ...], BlockPool] = {}
        self._heap_bytes: dict[int, int] = {}
        #: heap -> [nanoseconds spent in vkAllocateMemory (+ map), calls]
        self._alloc_cost: dict[int, list[int]] = {}
        #: forced vkAllocateMemory cost per heap in µs (benchmarks: replay a costly device's policy elsewhere)
        self.assume_allocate_us: float | None = None
        #: bytes per second the last defragmentation pass copied (``defrag.py`` sizes ``max_ms`` passes with it)
        self.defrag_copy_rate: float = 0.0
        self.lock = threading.RLock()
        self.on_new_block: dict[str, Callable[[MemoryBlock], None]] = {}
        self.on_release_block: dict[str, Callable[[MemoryBlock], None]] = {}

    # -- info -----------------------------------------------------------------------------------------------------
    def allocate_cost_us(self, heap: int) -> float | None:
        """The mean cost of one ``vkAllocateMemory`` (+ mapping) on ``heap`` in µs, measured; ``None`` before any.

        :param heap: the heap index.
        """
        if self.assume_allocate_us is not None:
            return self.assume_allocate_us
        ns, n = self._alloc_cost.get(heap, (0, 0))
        return ns / n / 1000.0 if n else None

    def costly(self, heap: int) -> bool:
        """True when ``vkAllocateMemory`` on ``heap`` costs more than :data:`COSTLY_ALLOCATE_US` on average.

        :param heap: the heap index.
        """
        cost = self.allocate_cost_us(heap)
        return cost is not None and cost > COSTLY_ALLOCATE_US

    def dedicated_min(self, type_index: int) -> int:
        """Requests of at least this many bytes of memory type ``type_index`` get their own block:
        :data:`DEDICATED_MIN`, or more than half a block where blocks are smaller than 8 MiB (small heaps or budgets,
        or ``block_size=``).

        :param type_index: the memory type.
        """
        return min(DEDICATED_MIN, (self._vma_block_size(type_index) >> 1) + 1)

    def _vma_block_size(self, type_index: int) -> int:
        """``block_size=``, else VMA's rule applied to the heap or to its budget limit when that is smaller (else
        one block may take a small budget whole and starve every other pool)."""
        if self._block_size:
            return self._block_size
        heap = self._info.memory_types[type_index].heap
        size = self._info.heaps[heap].size
        limit = self._heap_limits(heap)
        return default_block_size(min(size, limit) if limit > 0 else size)

    def block_size_for(self, type_index: int) -> int:
        """The block size of a memory type's pools: :data:`POOL_BLOCK_FACTOR` times the largest request they serve
        (below :meth:`dedicated_min`), capped by ``block_size=`` or VMA's rule (256 MiB; heap/8 on heaps of 1 GiB
        or less; applied to the budget limit when that is smaller).

        :param type_index: the memory type.
        """
        vma = self._vma_block_size(type_index)
        if self._block_size:
            return vma
        return min(vma, POOL_BLOCK_FACTOR * DEDICATED_MIN)

    def heap_block_bytes(self, heap: int) -> int:
        """Bytes of ``VkDeviceMemory`` currently allocated on a heap."""
        return self._heap_bytes.get(heap, 0)

    def pools(self) -> list[BlockPool]:
        """Every pool (a snapshot list)."""
        with self.lock:
            return list(self._pools.values())

    def all_blocks(self) -> list[MemoryBlock]:
        """Every live block."""
        with self.lock:
            return [b for p in self._pools.values() for b in p.blocks]

    # -- allocation -----------------------------------------------------------------------------------------------
    def _new_block(self, pool: BlockPool, size: int, type_index: int, *, dedicated: bool, device_address: bool,
                   purpose: str, dedicated_buffer: Any = None) -> MemoryBlock:
        heap = self._info.memory_types[type_index].heap
        limit = self._heap_limits(heap)
        room = limit - self._heap_bytes.get(heap, 0)
        if size > room and self._drop_spares(heap):
            room = limit - self._heap_bytes.get(heap, 0)
        if size > room:
            raise BudgetExceededError(size, self._heap_bytes.get(heap, 0), limit, who=f"{purpose} memory block", heap=heap)
        host_visible = bool(self._info.memory_types[type_index].flags & MemoryProperty.HOST_VISIBLE)
        t0 = time.perf_counter_ns()
        block = MemoryBlock(self._dev, size, type_index, heap, host_visible=host_visible, device_address=device_address,
                            dedicated=dedicated, granularity=self.granularity, pool_key=pool.key,
                            dedicated_buffer=dedicated_buffer)
        cost = self._alloc_cost.setdefault(heap, [0, 0])
        cost[0] += time.perf_counter_ns() - t0
        cost[1] += 1
        hook = self.on_new_block.get(purpose)
        if hook is not None:
            try:
                hook(block)
            except BaseException:
                block.release()
                raise
        self.tracker.count_allocate_memory(size)
        self._heap_bytes[heap] = self._heap_bytes.get(heap, 0) + size
        pool.blocks.append(block)
        pool.stats.block_allocations += 1
        pool.stats.peak_blocks = max(pool.stats.peak_blocks, len(pool.blocks))
        return block

    def _drop_spares(self, heap: int) -> int:
        """Free every spare dedicated block of ``heap``; return how many."""
        n = 0
        for pool in self._pools.values():
            for block in [b for b in pool.spares if b.heap == heap]:
                self._release_block(pool, block, pool.key[1])
                n += 1
        return n

    def _take_spare(self, pool: BlockPool, size: int) -> MemoryBlock | None:
        """The smallest spare dedicated block of ``pool`` that holds ``size`` bytes with at most 1/8 to spare."""
        best = None
        for b in pool.spares:
            if size <= b.size <= size + size // SPARE_SLACK and (best is None or b.size < best.size):
                best = b
        if best is not None:
            pool.spares.remove(best)
        return best

    def _release_block(self, pool: BlockPool, block: MemoryBlock, purpose: str) -> None:
        pool.blocks.remove(block)
        if block in pool.spares:
            pool.spares.remove(block)
        if pool.current is block:
            pool.current = None
        hook = self.on_release_block.get(purpose)
        if hook is not None:
            hook(block)
        block.release()
        self._heap_bytes[block.heap] -= block.size
        pool.stats.block_frees += 1
        self.tracker.count_free_memory(block.size)

    def allocate(self, size: int, alignment: int, type_index: int, *, category: str = "default", type_bits: int = 0,
                 kind: int = 0, device_address: bool = False, dedicated: bool = False,
                 purpose: str = "general") -> Allocation:
        """Return a new range of a block of memory type ``type_index``; creates a block when none has room.

        Small linear requests (at most :data:`SLAB_MAX` bytes, alignment dividing their size class) come from
        size-class slabs: 64 KiB TLSF ranges cut into equal slots, handed out and taken back with a list pop/append
        (the forge3d O2 size buckets). A slab whose slots are all free goes back to TLSF when another slab of its class
        has room, so blocks still empty and get freed.
        """
        if size <= SLAB_MAX and not dedicated and not kind:
            cls = SLAB_CLASS[size]
            if cls % alignment == 0:
                return self._allocate_small(size, cls, alignment, type_index, category, device_address, purpose)
        if not dedicated:  # hot path: the pool's current block usually has room
            pool = self._pools.get((type_index, purpose, device_address))
            if pool is not None and pool.current is not None and size < pool.dedicated_min:
                with self.lock:
                    block = pool.current
                    if block is not None:
                        off = block.tlsf.alloc(size, alignment, granularity_kind=kind)
                        if off is not None:
                            pool.stats.suballocations += 1
                            self.tracker.suballocations_unlocked()
                            return Allocation(block, off, size, size, category, block.heap, purpose, alignment)
        block, offset = self._allocate(size, alignment, type_index, kind, device_address, dedicated, purpose)
        return Allocation(block, offset, size, size, category, block.heap, purpose, alignment)

    def free(self, allocation: Allocation) -> None:
        """Give a range back (see :meth:`free_range`)."""
        slab = allocation.slab
        if slab is None:
            self.free_range(allocation.block, allocation.offset, allocation.purpose)
            return
        with self.lock:
            slab.free.append(allocation.offset)
            del slab.sizes[allocation.offset]
            slab.used -= 1
            partial = slab.partial
            if len(slab.free) == 1:
                partial.append(slab)  # it was full: it has room again
            elif not slab.used and len(partial) > 1:  # idle, and another slab of its class has room
                partial.remove(slab)
                self._pools[slab.block.pool_key].slab_index.pop((slab.block.id, slab.base), None)
                self.free_range(slab.block, slab.base, allocation.purpose, count=False)  # internal: not counted
            self._pools[slab.block.pool_key].stats.subfrees += 1
            self.tracker.subfrees_unlocked()

    def _allocate_small(self, size: int, cls: int, alignment: int, type_index: int, category: str,
                        device_address: bool, purpose: str) -> Allocation:
        key = (type_index, purpose, device_address)
        with self.lock:
            pool = self._pools.get(key)
            partial = pool.slabs.get(cls) if pool is not None else None
            if not partial:
                block, base = self._allocate(SLAB_BYTES, max(cls, 256), type_index, 0, device_address, False,
                                             purpose, count=False)
                pool = self._pools[key]
                partial = pool.slabs.setdefault(cls, [])
                new = Slab(block, base, cls, partial)
                partial.append(new)
                pool.slab_index[(block.id, base)] = new
            slab = partial[-1]
            off = slab.free.pop()
            slab.sizes[off] = size
            slab.used += 1
            if not slab.free:
                partial.pop()
            pool.stats.suballocations += 1  # type: ignore[union-attr]  # partial came from it
            self.tracker.suballocations_unlocked()
            return Allocation(slab.block, off, size, size, category, slab.block.heap, purpose, alignment, slab)

    def _allocate(self, size: int, alignment: int, type_index: int, kind: int, device_address: bool,
                  dedicated: bool, purpose: str, count: bool = True) -> tuple[MemoryBlock, int]:
        key = (type_index, purpose, device_address)
        with self.lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = BlockPool(key, block_size=self.block_size_for(type_index),
                                                    dedicated_min=self.dedicated_min(type_index))
            if dedicated or size >= pool.dedicated_min:
                block = None if dedicated else self._take_spare(pool, size)
                if block is None:
                    block = self._new_block(pool, size, type_index, dedicated=True, device_address=device_address,
                                            purpose=purpose)
                    self._refresh(pool, type_index)
                off = block.tlsf.alloc(size, alignment, granularity_kind=kind)
                assert off == 0
                if count:
                    pool.stats.suballocations += 1
                    self.tracker.suballocations_unlocked()
                return block, 0
            # best fit across blocks: the fullest block with room first (the emptiest ones drain and get freed)
            cands = [b for b in pool.blocks if not b.dedicated and b.tlsf.free_bytes >= size]
            cands.sort(key=lambda b: b.tlsf.free_bytes)
            for block in cands:
                off = block.tlsf.alloc(size, alignment, granularity_kind=kind)
                if off is not None:
                    if count:
                        pool.stats.suballocations += 1
                        self.tracker.suballocations_unlocked()
                    pool.current = block
                    return block, off
            bsize = pool.block_size
            heap = self._info.memory_types[type_index].heap
            room = self._heap_limits(heap) - self._heap_bytes.get(heap, 0)
            if room < bsize and self._drop_spares(heap):
                room = self._heap_limits(heap) - self._heap_bytes.get(heap, 0)
            new_size = bsize if room >= bsize else max(size + alignment, (room // 65536) * 65536)
            block = self._new_block(pool, new_size, type_index, dedicated=False, device_address=device_address,
                                    purpose=purpose)
            self._refresh(pool, type_index)
            off = block.tlsf.alloc(size, alignment, granularity_kind=kind)
            if off is None:  # cannot happen for a fresh block that is at least size + alignment
                raise BudgetExceededError(size, self._heap_bytes.get(heap, 0), self._heap_limits(heap), who=purpose, heap=heap)
            pool.current = block
            if count:
                pool.stats.suballocations += 1
                self.tracker.suballocations_unlocked()
            return block, off

    def _refresh(self, pool: BlockPool, type_index: int) -> None:
        """Re-derive the pool's threshold and block size after a new measurement of ``vkAllocateMemory``."""
        pool.dedicated_min = self.dedicated_min(type_index)
        pool.block_size = self.block_size_for(type_index)

    def free_range(self, block: MemoryBlock, offset: int, purpose: str = "general", count: bool = True) -> None:
        """Return a range; an emptied block is freed unless it is the pool's only empty block."""
        with self.lock:
            tlsf = block.tlsf
            tlsf.free(offset)
            pool = self._pools[block.pool_key]
            if count:
                pool.stats.subfrees += 1
                self.tracker.subfrees_unlocked()
            if not tlsf.allocation_count:
                if block.dedicated:
                    if self._keep_spare(pool, block):
                        pool.spares.append(block)
                    else:
                        self._release_block(pool, block, purpose)
                elif self._surplus(pool, block):
                    self._release_block(pool, block, purpose)

    def _surplus(self, pool: BlockPool, block: MemoryBlock) -> bool:
        """Free an emptied pool block? Yes when the pool has another empty block, or when its other blocks have a
        block's worth of free bytes between them (the empty block then only adds held memory)."""
        free = 0
        for b in pool.blocks:
            if b is block or b.dedicated:
                continue
            if b.tlsf.is_empty:
                return True
            free += b.tlsf.free_bytes
        return free >= block.size and not self._block_size

    def _keep_spare(self, pool: BlockPool, block: MemoryBlock) -> bool:
        """Keep an emptied dedicated block for reuse? Only on a costly heap, only policy-sized ones, and only while
        the heap's spares stay under 1/32 of its held bytes."""
        if self._block_size or not self.costly(block.heap) or block.size < pool.dedicated_min:
            return False
        spare = sum(b.size for p in self._pools.values() for b in p.spares if b.heap == block.heap)
        return (spare + block.size) * SPARE_SHARE <= self._heap_bytes.get(block.heap, 0)

    def idle(self) -> bool:
        """True when nothing is allocated: every remaining range is an idle size-class slab kept for reuse."""
        with self.lock:
            for pool in self._pools.values():
                for block in pool.blocks:
                    for start, _size in block.tlsf.used_ranges():
                        slab = pool.slab_index.get((block.id, start))
                        if slab is None or slab.used:
                            return False
            return True

    def trim_slabs(self) -> None:
        """Give every idle size-class slab back to its block's TLSF (an emptied block is then freed as usual)."""
        with self.lock:
            for pool in self._pools.values():
                for key, slab in list(pool.slab_index.items()):
                    if not slab.used:
                        slab.partial.remove(slab)
                        del pool.slab_index[key]
                        self.free_range(slab.block, slab.base, pool.key[1], count=False)

    def trim(self) -> int:
        """Free idle slabs and every empty block (also the one kept for reuse); return how many blocks were freed."""
        n = 0
        with self.lock:
            self.trim_slabs()
            for pool in self._pools.values():
                for block in [b for b in pool.blocks if b.tlsf.is_empty]:
                    self._release_block(pool, block, pool.key[1])
                    n += 1
        return n

    def release_all(self) -> None:
        """Free every block (device teardown)."""
        with self.lock:
            for pool in self._pools.values():
                for block in list(pool.blocks):
                    self._release_block(pool, block, pool.key[1])

    def stats(self) -> dict[str, Any]:
        """Blocks, block bytes, fragmentation and counters, per pool and overall."""
        with self.lock:
            pools = []
            total_free = 0
            largest = 0
            largest_per_pool = 0
            for pool in self._pools.values():
                general = [b for b in pool.blocks if not b.dedicated]
                free = sum(b.tlsf.free_bytes for b in general)
                big = max((b.tlsf.largest_free for b in general), default=0)
                total_free += free
                largest = max(largest, big)
                largest_per_pool += big
                pools.append({
                    "memory_type": pool.key[0], "purpose": pool.key[1], "device_address": pool.key[2],
                    "blocks": len(pool.blocks), "bytes": sum(b.size for b in pool.blocks),
                    "used": sum(b.tlsf.used_bytes for b in pool.blocks) - sum(
                        SLAB_BYTES - sum(sl.sizes.values()) for sl in pool.slab_index.values()),  # live bytes only
                    "fragmentation": (1 - big / free) if free else 0.0,
                    **vars(pool.stats),
                })
            return {
                "blocks": sum(p["blocks"] for p in pools),
                "block_bytes": sum(p["bytes"] for p in pools),
                "heap_block_bytes": dict(self._heap_bytes),
                "fragmentation": (1 - largest / total_free) if total_free else 0.0,
                # a request only ever goes to one pool: 1 - sum of each pool's largest free range / free bytes
                "fragmentation_per_pool": (1 - largest_per_pool / total_free) if total_free else 0.0,
                "pools": pools,
            }

    # -- the stats protocol (``memory.stats``) ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Blocks, bytes, fragmentation and counters (see :meth:`stats`)."""
        return self.stats()

    def reset(self) -> None:
        """Zero counters and peaks (live numbers stay)."""
        self.reset_stats()

    def reset_stats(self) -> None:
        """Reset counters and peaks (live numbers stay)."""
        with self.lock:
            for pool in self._pools.values():
                pool.stats = PoolStats(peak_blocks=len(pool.blocks))
