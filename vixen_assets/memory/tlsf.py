"""A TLSF (two-level segregated fit) range allocator over one block of bytes: pure Python, no Vulkan.

:class:`TlsfAllocator` hands out ``[offset, offset + size)`` ranges of one block (a ``VkDeviceMemory`` once the
Vulkan layer wraps it) in O(1): free ranges sit in size buckets (32 per power of two; exact buckets below 64
bytes), one Python ``int`` is the bitmap of non-empty buckets, and the search for a bucket that fits is two shifts
and a ``bit_length()``. Freeing merges with both physical neighbours through two flat dicts (free range start ->
size, free range end -> start), so there are no per-range objects at all.

Alignment (any power of two) is honoured per call. ``bufferImageGranularity`` is honoured with the simplest rule
that is correct and stays O(1): when the granularity is above 1, an *optimal* (image, ``granularity_kind=1``)
allocation is aligned to ``max(alignment, granularity)`` and its size is rounded up to a whole number of
granularity pages. It therefore owns every page it touches, so a linear resource (buffer, linear image) and an
optimal one never share a page, whatever lands next to them; the price is at most one page of padding per image.

The allocator is not thread-safe: the owner (one per ``VkDeviceMemory`` block) holds the lock.
"""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["TlsfAllocator", "KIND_LINEAR", "KIND_OPTIMAL", "SCAN_LIMIT"]

#: ``granularity_kind`` of buffers and linear-tiling images.
KIND_LINEAR = 0
#: ``granularity_kind`` of optimal-tiling images.
KIND_OPTIMAL = 1
#: Free ranges checked one by one, at most, when the O(1) searches fail (see :meth:`TlsfAllocator.alloc`).
SCAN_LIMIT = 16

# Bucket mapping (second level = 32 subdivisions per power of two; SL_LOG2 = 5):
#   size < 64      -> bucket ``size`` (exact)
#   size >= 64     -> s = size.bit_length() - 6; bucket (s << 5) + (size >> s)
# This is continuous (64 -> 64, 127 -> 95, 128 -> 96, ...), a 256 MiB block needs 769 buckets and a 1 TiB one 1153.
# ``_bucket_floor`` is the bucket a free range of ``n`` bytes lives in; ``_bucket_ceil`` is the first bucket whose
# every range holds at least ``n`` bytes (the TLSF "good fit" search start). Both are inlined on the hot paths.


def _bucket_floor(n: int) -> int:
    if n < 64:
        return n
    s = n.bit_length() - 6
    return (s << 5) + (n >> s)


def _bucket_ceil(n: int) -> int:
    if n < 64:
        return n
    s = n.bit_length() - 6
    return (s << 5) + ((n + (1 << s) - 1) >> s)


class TlsfAllocator:
    """O(1) range allocator over one block of ``size`` bytes.

    :param size: the block size in bytes (> 0).
    :param buffer_image_granularity: ``VkPhysicalDeviceLimits::bufferImageGranularity`` (a power of two; 1 means
        linear and optimal resources may share pages).

    ``alloc`` returns the offset of the new range or ``None`` when no free range can hold it; ``free`` takes that
    offset back and merges the range with free neighbours. Offsets are plain ``int``\\ s; the allocator keeps no
    per-allocation objects.
    """

    __slots__ = ("_size", "_granularity", "_bitmap", "_buckets", "_fstart", "_fend", "_used", "_free_bytes")

    def __init__(self, size: int, *, buffer_image_granularity: int = 1) -> None:
        if not isinstance(size, int) or size <= 0:
            raise ConfigError(f"TlsfAllocator size must be a positive int, got {size!r}")
        g = buffer_image_granularity
        if not isinstance(g, int) or g <= 0 or g & (g - 1):
            raise ConfigError(f"buffer_image_granularity must be a power of two, got {g!r}")
        self._size = size
        self._granularity = g
        #: one set of free-range starts per bucket index
        #: (made on first use: a 256 MiB block has 769 size classes, most never used)
        self._buckets: list[set[int] | None] = [None] * (_bucket_floor(size) + 1)
        #: free range start -> size, and free range end -> start (for merging with the previous neighbour)
        self._fstart: dict[int, int] = {0: size}
        self._fend: dict[int, int] = {size: 0}
        #: live allocation offset -> size (the size actually reserved, after granularity rounding)
        self._used: dict[int, int] = {}
        self._free_bytes = size
        i = _bucket_floor(size)
        self._buckets[i] = {0}
        self._bitmap = 1 << i

    # ------------------------------------------------------------------ hot path

    def alloc(self, size: int, alignment: int = 1, *, granularity_kind: int = 0) -> int | None:
        """Reserve ``size`` bytes aligned to ``alignment``; return the offset, or ``None`` when it does not fit.

        :param size: bytes wanted (> 0).
        :param alignment: a power of two; the returned offset is a multiple of it.
        :param granularity_kind: :data:`KIND_LINEAR` (0: buffers, linear images) or :data:`KIND_OPTIMAL` (1:
            optimal-tiling images). With a granularity above 1, optimal allocations are page-aligned and rounded
            up to whole pages (see the module docstring).
        :returns: the offset of the new range, or ``None``.

        The search is TLSF's *good fit*: the smallest size class whose every range holds the request (O(1)); with
        alignment padding that does not fit, the class that holds ``size + alignment - 1`` (O(1)). Only when both
        are empty does it look inside the request's own size class (and, when aligned, the classes up to that
        bound), checking at most :data:`SCAN_LIMIT` ranges. So ``None`` means no range is certainly large enough;
        a range barely larger than the request may remain when the block is that full.
        """
        if size <= 0 or alignment <= 0 or alignment & (alignment - 1):
            self._bad_request(size, alignment)
        if granularity_kind:
            g = self._granularity
            if g > 1:
                if alignment < g:
                    alignment = g
                size = (size + g - 1) & -g
        mask = alignment - 1
        # good fit: the first non-empty bucket whose every range holds ``size``
        if size < 64:
            idx = size
        else:
            s = size.bit_length() - 6
            idx = (s << 5) + ((size + (1 << s) - 1) >> s)
        m = self._bitmap >> idx
        if not m:
            return self._alloc_slow(size, mask)
        idx += (m & -m).bit_length() - 1
        bucket = self._buckets[idx]
        start = bucket.pop()  # type: ignore[union-attr]  # the bitmap says it is a set
        fstart = self._fstart
        fsize = fstart.pop(start)
        pad = -start & mask
        if pad:
            if pad + size > fsize:  # this range cannot take the alignment padding: put it back, search wider
                bucket.add(start)  # type: ignore[union-attr]  # the bitmap says it is a set
                fstart[start] = fsize
                return self._alloc_slow(size, mask)
            if not bucket:
                self._bitmap ^= 1 << idx
            return self._carve(start, fsize, pad, size)
        if not bucket:
            self._bitmap ^= 1 << idx
        rem = fsize - size
        if rem:
            r = start + size
            fstart[r] = rem
            self._fend[r + rem] = r
            if rem < 64:
                i = rem
            else:
                s = rem.bit_length() - 6
                i = (s << 5) + (rem >> s)
            b = self._buckets[i]
            if b:
                b.add(r)
            else:
                self._bitmap |= 1 << i
                if b is None:
                    self._buckets[i] = {r}
                else:
                    b.add(r)
        else:
            del self._fend[start + fsize]
        self._used[start] = size
        self._free_bytes -= size
        return start

    def free(self, offset: int) -> None:
        """Return the range that :meth:`alloc` placed at ``offset``; it merges with free neighbours.

        :raises ValueError: ``offset`` is not a live allocation (double free, or a foreign offset).
        """
        try:
            size = self._used.pop(offset)
        except KeyError:
            raise ConfigError(
                f"TlsfAllocator.free({offset!r}): no live allocation starts at this offset (double free?)"
            ) from None
        self._free_bytes += size
        fstart = self._fstart
        fend = self._fend
        buckets = self._buckets
        end = offset + size
        n = fstart.pop(end, None)
        if n is not None:  # merge with the next range
            if n < 64:
                i = n
            else:
                s = n.bit_length() - 6
                i = (s << 5) + (n >> s)
            b = buckets[i]
            b.remove(end)  # type: ignore[union-attr]  # the bitmap says it is a set
            if not b:
                self._bitmap ^= 1 << i
            end += n  # fend[end] is overwritten below
        p = fend.pop(offset, None)
        if p is not None:  # merge with the previous range
            n = fstart[p]
            if n < 64:
                i = n
            else:
                s = n.bit_length() - 6
                i = (s << 5) + (n >> s)
            b = buckets[i]
            b.remove(p)  # type: ignore[union-attr]  # the bitmap says it is a set
            if not b:
                self._bitmap ^= 1 << i
            offset = p
        n = end - offset
        fstart[offset] = n
        fend[end] = offset
        if n < 64:
            i = n
        else:
            s = n.bit_length() - 6
            i = (s << 5) + (n >> s)
        b = buckets[i]
        if b:
            b.add(offset)
        else:
            self._bitmap |= 1 << i
            if b is None:
                buckets[i] = {offset}
            else:
                b.add(offset)

    # ------------------------------------------------------------------ slow paths

    def _carve(self, start: int, fsize: int, pad: int, size: int) -> int:
        """Split the free range ``[start, start + fsize)`` (already unlinked from its bucket and ``_fstart``) into
        a leading free sliver of ``pad`` bytes, the allocation, and a trailing free remainder."""
        fstart = self._fstart
        fend = self._fend
        end = start + fsize
        if pad:
            fstart[start] = pad
            fend[start + pad] = start
            self._link(start, pad)
            start += pad
        rem = end - start - size
        if rem:
            r = start + size
            fstart[r] = rem
            fend[end] = r
            self._link(r, rem)
        else:
            del fend[end]
        self._used[start] = size
        self._free_bytes -= size
        return start

    def _link(self, start: int, n: int) -> None:
        """Put the free range ``[start, start + n)`` into its size class."""
        i = _bucket_floor(n)
        b = self._buckets[i]
        if b is None:
            self._buckets[i] = {start}
        else:
            b.add(start)
        self._bitmap |= 1 << i

    def _alloc_slow(self, size: int, mask: int) -> int | None:
        """The good-fit search found nothing usable. First look where any range must fit (``size + mask``, still
        O(1)); then check a bounded number of free ranges in the buckets below that which could still hold the
        request once aligned (only reached when the block is nearly full or the request is large)."""
        if size > self._free_bytes:
            return None
        buckets = self._buckets
        fstart = self._fstart
        if mask:
            idx = _bucket_ceil(size + mask)
            m = self._bitmap >> idx
            if m:
                idx += (m & -m).bit_length() - 1
                bucket = buckets[idx]
                start = bucket.pop()  # type: ignore[union-attr]  # the bitmap says it is a set
                if not bucket:
                    self._bitmap ^= 1 << idx
                return self._carve(start, fstart.pop(start), -start & mask, size)
            hi = idx
        else:
            hi = _bucket_ceil(size)
        lo = _bucket_floor(size)
        if lo >= hi:
            return None
        return self._alloc_scan(size, mask, lo, hi)

    def _alloc_scan(self, size: int, mask: int, lo: int, hi: int) -> int | None:
        """Check free ranges in buckets ``[lo, hi)``, largest bucket first, for one that holds ``size`` bytes once
        aligned; give up after :data:`SCAN_LIMIT` ranges so that a nearly full block riddled with same-sized holes
        (the block an allocator tries first, again and again) still answers in O(1)."""
        buckets = self._buckets
        fstart = self._fstart
        m = (self._bitmap >> lo) & ((1 << (hi - lo)) - 1)
        budget = SCAN_LIMIT
        while m:
            top = m.bit_length() - 1
            m ^= 1 << top
            idx = lo + top
            bucket = buckets[idx]
            for start in bucket:  # type: ignore[union-attr]  # the bitmap says it is a set
                fsize = fstart[start]
                pad = -start & mask
                if pad + size <= fsize:
                    bucket.remove(start)  # type: ignore[union-attr]  # the bitmap says it is a set
                    if not bucket:
                        self._bitmap ^= 1 << idx
                    del fstart[start]
                    return self._carve(start, fsize, pad, size)
                budget -= 1
                if not budget:
                    return None
        return None

    def alloc_lowest(self, size: int, alignment: int = 1, *, granularity_kind: int = 0,
                     below: int | None = None) -> int | None:
        """Reserve ``size`` bytes at the lowest offset that holds them (address-ordered first fit), optionally
        ending at or before ``below``; ``None`` when no such range exists. O(free ranges): for defragmentation
        planning (compaction towards offset 0), never the hot path.

        :param size: bytes wanted (> 0).
        :param alignment: a power of two.
        :param granularity_kind: as for :meth:`alloc`.
        :param below: the new range must end at or before this offset (a move within the block must go down).
        """
        if size <= 0 or alignment <= 0 or alignment & (alignment - 1):
            self._bad_request(size, alignment)
        if granularity_kind:
            g = self._granularity
            if g > 1:
                alignment = max(alignment, g)
                size = (size + g - 1) & -g
        if size > self._free_bytes:
            return None
        mask = alignment - 1
        for start, fsize in sorted(self._fstart.items()):
            if below is not None and start + size > below:
                return None
            pad = -start & mask
            if pad + size <= fsize and (below is None or start + pad + size <= below):
                b = self._buckets[_bucket_floor(fsize)]
                b.remove(start)  # type: ignore[union-attr]  # a free range is in its bucket
                if not b:
                    self._bitmap ^= 1 << _bucket_floor(fsize)
                del self._fstart[start]
                return self._carve(start, fsize, pad, size)
        return None

    def reserve(self, offset: int, size: int) -> None:
        """Reserve exactly ``[offset, offset + size)`` (undoing a planned move: the range must be free). O(free ranges).

        :raises ConfigError: the range is not entirely free.
        """
        for start, fsize in self._fstart.items():
            if start <= offset and offset + size <= start + fsize:
                b = self._buckets[_bucket_floor(fsize)]
                b.remove(start)  # type: ignore[union-attr]  # a free range is in its bucket
                if not b:
                    self._bitmap ^= 1 << _bucket_floor(fsize)
                del self._fstart[start]
                self._carve(start, fsize, offset - start, size)
                return
        raise ConfigError(f"TlsfAllocator.reserve({offset}, {size}): the range is not free")

    @staticmethod
    def _bad_request(size: object, alignment: object) -> None:
        if not isinstance(size, int) or size <= 0:
            raise ConfigError(f"TlsfAllocator.alloc: size must be a positive int, got {size!r}")
        raise ConfigError(f"TlsfAllocator.alloc: alignment must be a power of two, got {alignment!r}")

    # ------------------------------------------------------------------ queries

    @property
    def size(self) -> int:
        """The block size in bytes."""
        return self._size

    @property
    def buffer_image_granularity(self) -> int:
        """The granularity given at construction."""
        return self._granularity

    @property
    def used_bytes(self) -> int:
        """Bytes in live allocations (optimal allocations count their page-rounded size)."""
        return self._size - self._free_bytes

    @property
    def free_bytes(self) -> int:
        """Bytes in free ranges (``used_bytes + free_bytes == size`` always)."""
        return self._free_bytes

    @property
    def allocation_count(self) -> int:
        """Number of live allocations."""
        return len(self._used)

    @property
    def is_empty(self) -> bool:
        """True when nothing is allocated (the block is one free range again)."""
        return not self._used

    @property
    def largest_free(self) -> int:
        """Size of the largest free range (0 when full). Scans one bucket: cheap, but not for the hot path."""
        bm = self._bitmap
        if not bm:
            return 0
        fstart = self._fstart
        return max(fstart[o] for o in self._buckets[bm.bit_length() - 1])  # type: ignore[union-attr]  # the bitmap says it is a set

    def fragmentation(self) -> float:
        """``1 - largest free range / total free bytes``; 0.0 when nothing (or everything) is free in one range."""
        free = self._free_bytes
        if not free:
            return 0.0
        return 1.0 - self.largest_free / free

    def allocation_size(self, offset: int) -> int:
        """The size reserved for the live allocation at ``offset`` (after granularity rounding).

        :raises KeyError: no live allocation starts at ``offset``.
        """
        return self._used[offset]

    def __contains__(self, offset: object) -> bool:
        return offset in self._used

    def free_ranges(self) -> list[tuple[int, int]]:
        """Every free range as ``(offset, size)``, sorted by offset (O(n log n): for reports and tests)."""
        return sorted(self._fstart.items())

    def used_ranges(self) -> list[tuple[int, int]]:
        """Every live allocation as ``(offset, size)``, sorted by offset (O(n log n): for reports and tests)."""
        return sorted(self._used.items())

    def check(self) -> None:
        """Verify every internal invariant (O(n log n)); raise ``AssertionError`` naming the first one broken.

        The ranges tile the block exactly, no two free ranges touch, the free maps and buckets agree with each
        other, and the bitmap marks exactly the non-empty buckets.
        """
        used = [(o, s, False) for o, s in self._used.items()]
        ranges = sorted(used + [(o, s, True) for o, s in self._fstart.items()])
        pos = 0
        prev_free = False
        for off, sz, is_free in ranges:
            if off != pos:
                raise AssertionError(f"gap or overlap at {pos}: next range starts at {off}")
            if sz <= 0:
                raise AssertionError(f"empty range at {off}")
            if is_free and prev_free:
                raise AssertionError(f"two adjacent free ranges not merged at {off}")
            if is_free and self._fend.get(off + sz) != off:
                raise AssertionError(f"free range {off}+{sz} missing from the end map")
            if is_free and off not in (self._buckets[_bucket_floor(sz)] or ()):
                raise AssertionError(f"free range {off}+{sz} is not in bucket {_bucket_floor(sz)}")
            prev_free = is_free
            pos = off + sz
        if pos != self._size:
            raise AssertionError(f"ranges end at {pos}, block is {self._size} bytes")
        if len(self._fend) != len(self._fstart):
            raise AssertionError("free start and end maps differ in length")
        if sum(len(b) for b in self._buckets if b) != len(self._fstart):
            raise AssertionError("buckets hold a different number of ranges than the free map")
        bitmap = sum(1 << i for i, b in enumerate(self._buckets) if b)
        if bitmap != self._bitmap:
            raise AssertionError("bucket bitmap does not match the non-empty buckets")
        if sum(self._fstart.values()) != self._free_bytes:
            raise AssertionError("free byte counter is out of step with the free ranges")

    def __repr__(self) -> str:
        return (
            f"<TlsfAllocator {self._size} bytes used={self.used_bytes} allocations={len(self._used)} "
            f"free_ranges={len(self._fstart)}>"
        )
