"""The page table's host copy: one 32-bit entry per tile per level, ``resident_level << 24 | cache_slot``.

Every entry names the finest resident tile covering it (itself, or an ancestor), so a shader resolves any lookup
with one read. Making a tile resident rewrites the entries below it that pointed at a coarser tile; evicting one
points its dependants back at its nearest resident ancestor. Changed rows are remembered as flat index ranges for
the next upload.
"""

from __future__ import annotations

import numpy as np

from .tilefile import Layout

SLOT_MASK = 0xFFFFFF
UNSET = 0xFFFFFFFF  # an entry no resident tile covers yet (only before the pinned levels load)
LEVEL_SHIFT = 24


def pack_entry(level: int, slot: int) -> int:
    """One page-table entry.

    :param level: the resident tile's level.
    :param slot: its cache slot.
    """
    return (level << LEVEL_SHIFT) | slot


class PageTable:
    """Host mirror of the GPU page table with dirty-range tracking."""

    def __init__(self, layout: Layout) -> None:
        """All entries start unset (:data:`UNSET`); the top level is made resident before any lookup."""
        self.layout = layout
        self.entries = np.full(layout.tile_count, UNSET, dtype=np.uint32)
        base = layout.level_base
        self.views = [self.entries[base[lv]:base[lv + 1]].reshape(layout.tiles_per_side(lv), -1)
                      for lv in range(layout.levels)]
        self._dirty: list[tuple[int, int]] = []

    def _region(self, level: int, tx: int, ty: int, k: int) -> tuple[slice, slice]:
        f = 1 << (level - k)
        return slice(ty * f, (ty + 1) * f), slice(tx * f, (tx + 1) * f)

    def _mark(self, k: int, rows: slice) -> None:
        n = self.layout.tiles_per_side(k)
        base = self.layout.level_base[k]
        self._dirty.append((base + rows.start * n, base + rows.stop * n))

    def make_resident(self, level: int, tx: int, ty: int, slot: int) -> None:
        """Point tile ``(level, tx, ty)`` and every finer entry that resolved coarser than ``level`` at ``slot``.

        :param level: the tile's level.
        :param tx: its column.
        :param ty: its row.
        :param slot: the cache slot now holding it.
        """
        new = np.uint32(pack_entry(level, slot))
        for k in range(level, -1, -1):
            rs, cs = self._region(level, tx, ty, k)
            sub = self.views[k][rs, cs]
            if k == level:
                sub[...] = new
            else:
                coarser = (sub >> LEVEL_SHIFT) > level  # unset entries (0xFF...) count as coarser
                if not coarser.any():
                    continue  # finer tiles resident everywhere below: nothing further down points higher
                sub[coarser] = new
            self._mark(k, rs)

    def make_resident_many(self, levels: np.ndarray, tx: np.ndarray, ty: np.ndarray, slots: np.ndarray) -> None:
        """:meth:`make_resident` for a batch (the result does not depend on the order): level-0 tiles, which
        cover no finer entry, are written with one array operation; the others one by one.

        :param levels: the tiles' levels.
        :param tx: their columns.
        :param ty: their rows.
        :param slots: their cache slots.
        """
        levels = np.asarray(levels, np.int64)
        fine = levels == 0
        if fine.any():
            n = self.layout.tiles_per_side(0)
            rows = np.asarray(ty, np.int64)[fine]
            self.entries[rows * n + np.asarray(tx, np.int64)[fine]] = np.asarray(slots, np.uint32)[fine]  # level 0
            for r in np.unique(rows).tolist():
                self._dirty.append((r * n, (r + 1) * n))
        for i in np.flatnonzero(~fine).tolist():
            self.make_resident(int(levels[i]), int(tx[i]), int(ty[i]), int(slots[i]))

    def evict(self, level: int, tx: int, ty: int) -> None:
        """Point the entries that resolved to tile ``(level, tx, ty)`` at its nearest resident ancestor.

        :param level: the evicted tile's level (not the top one).
        :param tx: its column.
        :param ty: its row.
        """
        if level + 1 >= self.layout.levels:
            raise ValueError("the top level is pinned and cannot be evicted")
        old = self.views[level][ty, tx]
        parent = self.views[level + 1][ty >> 1, tx >> 1]
        for k in range(level, -1, -1):
            rs, cs = self._region(level, tx, ty, k)
            sub = self.views[k][rs, cs]
            hit = sub == old
            if not hit.any():
                continue
            sub[hit] = parent
            self._mark(k, rs)

    def resolve(self, level: int, tx: int, ty: int) -> tuple[int, int]:
        """``(resident_level, slot)`` of the entry of tile ``(level, tx, ty)``.

        :param level: the tile's level.
        :param tx: its column.
        :param ty: its row.
        """
        e = int(self.views[level][ty, tx])
        return e >> LEVEL_SHIFT, e & SLOT_MASK

    def take_dirty(self) -> list[tuple[int, int]]:
        """Merged ``[start, stop)`` entry ranges changed since the last call (and forget them)."""
        if not self._dirty:
            return []
        spans = sorted(self._dirty)
        self._dirty = []
        out = [list(spans[0])]
        for a, b in spans[1:]:
            if a <= out[-1][1]:
                out[-1][1] = max(out[-1][1], b)
            else:
                out.append([a, b])
        return [(a, b) for a, b in out]


__all__ = ["PageTable", "pack_entry", "SLOT_MASK", "LEVEL_SHIFT"]
