"""A size-bucket pool: fixed-size slots carved from blocks, O(1) acquire/release, reference counts, compaction.

This is the forge3d O2 plan ("pool allocator with size buckets; reference counting; defrag strategy") as pure
logic. A :class:`BucketPool` has a few slot sizes (the buckets); a request takes a slot of the smallest bucket that
holds it. Each bucket carves its own blocks of ``block_size`` bytes into equal slots, so slots never fragment a
block: a freed slot is exactly what the next request of that bucket needs. The price is internal waste (a request
rounded up to its bucket), reported by :meth:`BucketPool.stats`.

Blocks come from a callback (``new_block(nbytes) -> handle``; the Vulkan layer returns a ``VkDeviceMemory`` block
or a range of a TLSF block, charging the budget as it does so) and go back through ``free_block(handle)``.
Every slot object is made once, when its block is carved, and reused: :meth:`~BucketPool.acquire` and
:meth:`~BucketPool.release` allocate nothing. A slot is shared with :meth:`~BucketPool.retain`; it returns to its
bucket when the last reference is released.

:meth:`BucketPool.compact` is the defragmentation strategy: it moves live slots out of the emptiest blocks of each
bucket into free slots of the fullest ones (the caller's ``copy`` does the GPU copy), updates each moved
:class:`PoolSlot` in place (``block``, ``offset``, ``generation + 1``) and frees the blocks it emptied.

Not thread-safe: the owner holds the lock.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["BucketPool", "PoolSlot", "DEFAULT_BUCKET_SIZES"]

#: 256 B to 1 MiB in powers of four: uniform buffers, small meshes, small textures.
DEFAULT_BUCKET_SIZES: tuple[int, ...] = (256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20)


class PoolSlot:
    """One slot of a :class:`BucketPool`: ``size`` bytes at ``offset`` in ``block`` (the handle ``new_block`` gave).

    ``requested`` is what :meth:`BucketPool.acquire` asked for; ``refs`` the live references; ``generation`` starts
    at 1 and grows each time :meth:`BucketPool.compact` moves the slot (rebind descriptors when it changed).
    """

    __slots__ = ("block", "offset", "size", "requested", "refs", "generation", "_home", "_bucket")

    def __init__(self, home: _Block, offset: int) -> None:
        self.block: Any = home.handle
        self.offset = offset
        self.size = home.slot_size
        self.requested = 0
        self.refs = 0
        self.generation = 1
        self._home = home
        self._bucket = home.bucket

    def __repr__(self) -> str:
        state = f"refs={self.refs}" if self.refs else "free"
        return f"<PoolSlot {self.size} B @ {self.block!r}+{self.offset} {state} gen={self.generation}>"


class _Block:
    """A block of one bucket and its slots; ``live`` counts slots in use."""

    __slots__ = ("handle", "bucket", "slot_size", "slots", "live")

    def __init__(self, handle: Any, bucket: int, slot_size: int, count: int) -> None:
        self.handle = handle
        self.bucket = bucket
        self.slot_size = slot_size
        self.live = 0
        self.slots = [PoolSlot(self, i * slot_size) for i in range(count)]


class BucketPool:
    """Fixed-size slots in size buckets, carved from blocks on demand.

    :param bucket_sizes: the slot sizes, ascending; each must divide into ``block_size`` at least once and be a
        multiple of ``alignment``.
    :param block_size: bytes per block (every bucket carves blocks of this size).
    :param alignment: every slot offset is a multiple of this (the blocks themselves are assumed aligned).
    :param new_block: ``new_block(nbytes) -> handle`` makes a block (default: consecutive ints). Exceptions
        propagate, with the pool unchanged.
    :param free_block: ``free_block(handle)`` gives one back (default: nothing).
    :param spare_blocks: empty blocks kept per bucket for reuse before they are freed.
    """

    def __init__(
        self,
        bucket_sizes: Sequence[int] = DEFAULT_BUCKET_SIZES,
        *,
        block_size: int = 4 << 20,
        alignment: int = 256,
        new_block: Callable[[int], Any] | None = None,
        free_block: Callable[[Any], object] | None = None,
        spare_blocks: int = 1,
    ) -> None:
        sizes = list(bucket_sizes)
        if not sizes or sizes != sorted(set(sizes)):
            raise ValueError(f"bucket_sizes must be distinct and ascending, got {bucket_sizes!r}")
        if alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"alignment must be a power of two, got {alignment!r}")
        for s in sizes:
            if s <= 0 or s % alignment:
                raise ValueError(f"bucket size {s} is not a positive multiple of the alignment {alignment}")
            if s > block_size:
                raise ValueError(f"bucket size {s} does not fit a {block_size}-byte block")
        self._sizes = sizes
        self._block_size = block_size
        self._alignment = alignment
        counter = itertools.count()
        self._new_block = new_block if new_block is not None else (lambda _n: next(counter))
        self._free_block = free_block
        self._spare = max(spare_blocks, 0)
        n = len(sizes)
        #: per bucket: free slots (dict as an ordered set: O(1) pop and O(1) removal of a given slot)
        self._free: list[dict[PoolSlot, None]] = [{} for _ in range(n)]
        self._blocks: list[list[_Block]] = [[] for _ in range(n)]
        self._empty: list[int] = [0] * n  # empty blocks per bucket
        self._live = [0] * n
        self._peak = [0] * n
        self._acquisitions = [0] * n
        self._requested = 0
        self._blocks_created = 0
        self._blocks_freed = 0
        self._moves = 0

    # ------------------------------------------------------------------ hot path

    def bucket_for(self, size: int) -> int:
        """Index of the smallest bucket whose slots hold ``size`` bytes. :raises ValueError: none does."""
        i = bisect_left(self._sizes, size)
        if i == len(self._sizes) or size <= 0:
            raise ValueError(
                f"BucketPool: no bucket holds {size} bytes (buckets go up to {self._sizes[-1]}); "
                f"use the TLSF suballocator for it"
            )
        return i

    def acquire(self, size: int) -> PoolSlot:
        """A slot of at least ``size`` bytes with one reference (O(1); a new block when the bucket is full)."""
        i = bisect_left(self._sizes, size)
        if i == len(self._sizes) or size <= 0:
            self.bucket_for(size)  # raises with the message
        free = self._free[i]
        if not free:
            self._grow(i)
        slot, _ = free.popitem()
        home = slot._home
        if not home.live:
            self._empty[i] -= 1
        home.live += 1
        slot.refs = 1
        slot.requested = size
        self._requested += size
        live = self._live[i] + 1
        self._live[i] = live
        if live > self._peak[i]:
            self._peak[i] = live
        self._acquisitions[i] += 1
        return slot

    def retain(self, slot: PoolSlot) -> PoolSlot:
        """Add a reference to a live slot (a resource shared by several owners). Returns ``slot``."""
        if not slot.refs:
            raise ValueError(f"retain of a released slot {slot!r}")
        slot.refs += 1
        return slot

    def release(self, slot: PoolSlot) -> bool:
        """Drop one reference; the slot returns to its bucket with the last one (then ``True``).

        :raises ValueError: the slot has no references left (released too often).
        """
        refs = slot.refs
        if refs > 1:
            slot.refs = refs - 1
            return False
        if refs != 1:
            raise ValueError(f"release of a slot with no references left {slot!r} (released twice?)")
        slot.refs = 0
        i = slot._bucket
        self._free[i][slot] = None
        self._requested -= slot.requested
        self._live[i] -= 1
        home = slot._home
        home.live -= 1
        if not home.live:
            self._empty[i] += 1
            if self._empty[i] > self._spare:
                self._drop(home)
        return True

    # ------------------------------------------------------------------ blocks

    def _grow(self, i: int) -> None:
        size = self._sizes[i]
        handle = self._new_block(self._block_size)
        block = _Block(handle, i, size, self._block_size // size)
        self._blocks[i].append(block)
        self._empty[i] += 1
        self._blocks_created += 1
        free = self._free[i]
        for slot in reversed(block.slots):  # popitem() is LIFO: hand out the lowest offsets first
            free[slot] = None

    def _drop(self, block: _Block) -> None:
        """Free an empty block: O(slots per block), paid once per block's worth of releases."""
        i = block.bucket
        free = self._free[i]
        for slot in block.slots:
            del free[slot]
        self._blocks[i].remove(block)
        self._empty[i] -= 1
        self._blocks_freed += 1
        if self._free_block is not None:
            self._free_block(block.handle)

    def trim(self) -> int:
        """Free every empty block, spares included; return how many were freed."""
        freed = 0
        for blocks in self._blocks:
            for block in [b for b in blocks if not b.live]:
                self._drop(block)
                freed += 1
        return freed

    def compact(self, copy: Callable[[PoolSlot, Any, int], object]) -> dict[str, int]:
        """Defragment: per bucket, move the live slots of the emptiest blocks into the free slots of the fullest
        ones, until the live slots fill as few blocks as possible, then free the emptied blocks (beyond the spares).

        :param copy: ``copy(slot, dst_block, dst_offset)`` copies the slot's bytes (a GPU copy) before the pool
            points ``slot`` at its new place; the slot object stays the same, its ``generation`` grows by one. If
            ``copy`` raises, the slots moved so far stay moved and the pool stays consistent.
        :returns: ``{"moved": slots moved, "bytes": bytes copied, "blocks_freed": blocks freed}``.

        O(slots of the buckets that have more blocks than their live slots need).
        """
        moved = nbytes = 0
        freed_before = self._blocks_freed
        for i, blocks in enumerate(self._blocks):
            size = self._sizes[i]
            per_block = self._block_size // size
            order = sorted((b for b in blocks if b.live), key=lambda b: b.live)
            n_src = len(order) - -(-self._live[i] // per_block)
            if n_src <= 0:
                continue
            sources, targets = order[:n_src], order[n_src:]
            # enough holes: the targets are ceil(live / per_block) blocks
            holes = iter([s for b in reversed(targets) for s in b.slots if not s.refs])
            for src in sources:
                for slot in [s for s in src.slots if s.refs]:
                    spot = next(holes)
                    dst = spot._home
                    copy(slot, dst.handle, spot.offset)
                    # the live slot object moves to dst; the free one takes its old place in src (and stays in the
                    # bucket's free set, so nothing else changes)
                    src.slots[slot.offset // size], dst.slots[spot.offset // size] = spot, slot
                    spot._home, slot._home = src, dst
                    spot.block, slot.block = src.handle, dst.handle
                    spot.offset, slot.offset = slot.offset, spot.offset
                    slot.generation += 1
                    src.live -= 1
                    dst.live += 1
                    moved += 1
                    nbytes += size
                self._empty[i] += 1
            for src in sources:
                if self._empty[i] > self._spare:
                    self._drop(src)
        self._moves += moved
        return {"moved": moved, "bytes": nbytes, "blocks_freed": self._blocks_freed - freed_before}

    # ------------------------------------------------------------------ queries

    @property
    def bucket_sizes(self) -> tuple[int, ...]:
        """Slot size of each bucket, in bytes."""
        return tuple(self._sizes)

    @property
    def block_size(self) -> int:
        """Bytes of each block the buckets carve slots from."""
        return self._block_size

    @property
    def live_slots(self) -> int:
        """Slots in use, all buckets."""
        return sum(self._live)

    @property
    def block_count(self) -> int:
        """Blocks held, all buckets."""
        return sum(len(b) for b in self._blocks)

    def stats(self) -> dict[str, Any]:
        """JSON-serialisable counts: per bucket and overall; ``waste`` is the share of live slot bytes that
        requests did not ask for (rounding up to the bucket)."""
        slot_bytes = sum(n * s for n, s in zip(self._live, self._sizes))
        return {
            "block_size": self._block_size,
            "blocks": self.block_count,
            "block_bytes": self.block_count * self._block_size,
            "live_slots": sum(self._live),
            "live_slot_bytes": slot_bytes,
            "requested_bytes": self._requested,
            "waste": 1.0 - self._requested / slot_bytes if slot_bytes else 0.0,
            "blocks_created": self._blocks_created,
            "blocks_freed": self._blocks_freed,
            "moves": self._moves,
            "buckets": [
                {
                    "slot_size": s,
                    "blocks": len(self._blocks[i]),
                    "empty_blocks": self._empty[i],
                    "live": self._live[i],
                    "peak": self._peak[i],
                    "acquisitions": self._acquisitions[i],
                }
                for i, s in enumerate(self._sizes)
            ],
        }

    def reset_stats(self) -> None:
        """Peaks drop to current use; counters restart (fits ``BudgetManager.add_stats_provider``'s reset)."""
        self._peak = list(self._live)
        self._acquisitions = [0] * len(self._sizes)
        self._blocks_created = 0
        self._blocks_freed = 0
        self._moves = 0

    def __repr__(self) -> str:
        return f"<BucketPool {len(self._sizes)} buckets {self.block_count} blocks {self.live_slots} live slots>"
