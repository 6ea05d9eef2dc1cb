"""Which tiles live in the cache: slots, LRU order, pinned tiles, request priorities, the residency level bias and
thrash counting. Pure host logic; :class:`~vixen_assets.vt.runtime.VirtualTexture` drives it.

Level bias (after Unreal Engine's streaming virtual texturing, which raises it when more than 95% of the pool was
used over the last 15 frames): the demand is the number of distinct unpinned tiles requested over the last 15
updates, as a fraction of the unpinned cache. Above 95%, the bias rises by ``0.05 + 0.2 * (demand / 0.95 - 1)`` (at
most 1, capped at 4), at most once every 5 updates so the window can show the effect of the last rise, and requests
move to coarser levels instead of evicting each other in a loop. It falls by 0.2 once the demand, four times over
(one whole level finer), would still fit under 80%, and the bias has held for 15 updates (lowering it by any amount
can move a sample one level down, so a smaller margin oscillates). A thrash event is a tile requested again within
15 updates of its eviction.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, OrderedDict
from dataclasses import dataclass

from .tilefile import Layout

WINDOW = 15
UPPER = 0.95
LOWER = 0.80
RATE = 0.2
MAX_BIAS = 4.0
COOLDOWN = 5


@dataclass
class Plan:
    """What one update will do: tiles to load (with their slots), tiles evicted to make room, and counts."""

    loads: list[tuple[int, int]]
    evictions: list[int]
    requested: int
    hits: int
    thrash: int
    deferred: int


class Residency:
    """Slot bookkeeping for a cache of ``slots`` pages of which the coarsest levels are pinned."""

    def __init__(self, layout: Layout, slots: int, pinned_levels: int) -> None:
        """Reserve slots ``0..pinned-1`` for the tiles of the ``pinned_levels`` coarsest levels."""
        self.layout = layout
        self.slots = slots
        base = layout.level_base
        first = layout.levels - pinned_levels
        self.pinned = list(range(base[first], base[-1]))
        self.pinned_levels = pinned_levels
        self.resident: dict[int, int] = {t: i for i, t in enumerate(self.pinned)}
        self.free = list(range(slots - 1, len(self.pinned) - 1, -1))
        self.lru: OrderedDict[int, int] = OrderedDict()  # unpinned resident tile -> update it was last requested
        self.evicted_at: dict[int, int] = {}
        self.bad: set[int] = set()
        self.bias = 0.0
        self.now = 0
        self._last_request: dict[int, int] = {}  # unpinned tile -> the last update that requested it
        self._last_change = -WINDOW
        self.demand = 0.0

    @property
    def unpinned_slots(self) -> int:
        """Slots left for streamed tiles."""
        return self.slots - len(self.pinned)

    def plan(self, requests: Counter[int], max_tiles: int) -> Plan:
        """Decide one update: touch requested resident tiles, pick up to ``max_tiles`` missing ones (coarse first,
        then most requested), find slots (free, else least recently requested), adjust the level bias.

        :param requests: tile number -> how many samples asked for it.
        :param max_tiles: most tiles to load.
        """
        self.now += 1
        now = self.now
        hits = 0
        missing: list[int] = []
        thrash = 0
        for t in requests:
            if t in self.resident:
                hits += 1
                if t in self.lru:
                    self.lru[t] = now
                    self.lru.move_to_end(t)
            elif t not in self.bad:
                missing.append(t)
                ev = self.evicted_at.pop(t, None)
                if ev is not None and now - ev <= WINDOW:
                    thrash += 1
        base = self.layout.level_base
        missing.sort(key=lambda t: (-bisect_right(base, t), -requests[t], t))  # coarse first, then most requested
        loads: list[tuple[int, int]] = []
        evictions: list[int] = []
        for t in missing[:max_tiles]:
            if self.free:
                slot = self.free.pop()
            else:
                victim = next(iter(self.lru), None)
                if victim is None or self.lru[victim] >= now:
                    break  # everything evictable was requested in this update: the cache is oversubscribed
                del self.lru[victim]
                slot = self.resident.pop(victim)
                self.evicted_at[victim] = now
                evictions.append(victim)
            loads.append((t, slot))
            self.resident[t] = slot
            self.lru[t] = now
        pinned = self.pinned_set
        last = self._last_request
        for t in requests:
            if t not in pinned and t not in self.bad:
                last[t] = now
        if len(last) > 2 * self.unpinned_slots or now % WINDOW == 0:
            for t in [t for t, u in last.items() if now - u >= WINDOW]:
                del last[t]
        active = sum(1 for u in last.values() if now - u < WINDOW)
        self._adjust_bias(active / max(1, self.unpinned_slots))
        return Plan(loads, evictions, len(requests), hits, thrash, len(missing) - len(loads))

    @property
    def pinned_set(self) -> frozenset[int]:
        """The pinned tile numbers."""
        s = getattr(self, "_pinned_set", None)
        if s is None:
            s = self._pinned_set = frozenset(self.pinned)
        return s

    def _adjust_bias(self, demand: float) -> None:
        self.demand = demand
        since = self.now - self._last_change
        if demand > UPPER and since >= COOLDOWN and self.bias < MAX_BIAS:
            self.bias = min(MAX_BIAS, self.bias + min(1.0, RATE * (demand / UPPER - 1.0) + 0.05))
            self._last_change = self.now
        elif self.bias > 0 and demand * 4 < LOWER and since >= WINDOW:
            self.bias = max(0.0, round(self.bias - RATE, 6))
            self._last_change = self.now

    def failed(self, tile: int) -> None:
        """A tile could not be read: free its slot and never ask for it again (lookups resolve to its ancestor).

        :param tile: the tile number.
        """
        slot = self.resident.pop(tile, None)
        self.lru.pop(tile, None)
        if slot is not None:
            self.free.append(slot)
        self.bad.add(tile)


__all__ = ["Residency", "Plan", "WINDOW", "MAX_BIAS"]
