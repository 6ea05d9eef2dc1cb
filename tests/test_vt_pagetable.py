"""Page table and residency policy (host only): lookups resolve to the finest resident ancestor; LRU, priorities,
bias and thrash counting."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from vixen_assets.vt.pagetable import LEVEL_SHIFT, SLOT_MASK, PageTable
from vixen_assets.vt.residency import MAX_BIAS, WINDOW, Residency
from vixen_assets.vt.tilefile import Layout

LAY = Layout(1024, 64, 4, "rgba8")  # 5 levels: 16^2, 8^2, 4^2, 2^2, 1


def _brute(resident: dict[int, int]) -> np.ndarray:
    """Each entry: the finest resident tile among the tile and its ancestors."""
    out = np.zeros(LAY.tile_count, np.uint32)
    for t in range(LAY.tile_count):
        lv, tx, ty = LAY.tile_coords(t)
        for k in range(lv, LAY.levels):
            a = LAY.tile_id(k, tx >> (k - lv), ty >> (k - lv))
            if a in resident:
                out[t] = (k << LEVEL_SHIFT) | resident[a]
                break
    return out


def test_random_residency_changes_match_a_brute_force_resolution() -> None:
    rng = np.random.default_rng(0)
    pt = PageTable(LAY)
    top = LAY.tile_count - 1
    resident = {top: 0}
    pt.make_resident(LAY.levels - 1, 0, 0, 0)
    slot = 1
    for _ in range(400):
        t = int(rng.integers(0, top))
        lv, tx, ty = LAY.tile_coords(t)
        if t in resident:
            pt.evict(lv, tx, ty)
            del resident[t]
        else:
            pt.make_resident(lv, tx, ty, slot)
            resident[t] = slot
            slot += 1
        np.testing.assert_array_equal(pt.entries, _brute(resident))


def test_dirty_ranges_cover_every_change_and_are_merged() -> None:
    pt = PageTable(LAY)
    pt.make_resident(LAY.levels - 1, 0, 0, 0)
    assert pt.take_dirty() == [(0, LAY.tile_count)]
    before = pt.entries.copy()
    pt.make_resident(1, 3, 5, 7)
    spans = pt.take_dirty()
    changed = np.nonzero(pt.entries != before)[0]
    assert all(any(a <= c < b for a, b in spans) for c in changed)
    assert all(b1 < a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))
    assert pt.take_dirty() == []
    assert (int(pt.views[0][10, 6]) >> LEVEL_SHIFT, int(pt.views[0][10, 6]) & SLOT_MASK) == (1, 7)


def test_the_top_level_cannot_be_evicted() -> None:
    pt = PageTable(LAY)
    with pytest.raises(ValueError, match="pinned"):
        pt.evict(LAY.levels - 1, 0, 0)


def _residency(slots: int = 30, pinned_levels: int = 2) -> Residency:
    return Residency(LAY, slots, pinned_levels)


def test_coarse_before_fine_then_most_requested() -> None:
    r = _residency()
    fine_a, fine_b = LAY.tile_id(0, 0, 0), LAY.tile_id(0, 5, 5)
    coarse = LAY.tile_id(2, 1, 1)
    plan = r.plan(Counter({fine_a: 1, fine_b: 9, coarse: 1}), max_tiles=2)
    assert [t for t, _ in plan.loads] == [coarse, fine_b]
    assert plan.deferred == 1 and plan.hits == 0
    plan = r.plan(Counter({fine_a: 1, fine_b: 9, coarse: 1}), max_tiles=2)
    assert [t for t, _ in plan.loads] == [fine_a] and plan.hits == 2


def test_lru_eviction_skips_tiles_requested_in_the_same_update_and_counts_thrash() -> None:
    r = _residency(slots=5 + 4)  # 5 pinned (levels 3, 4) + 4 streamed
    a = [LAY.tile_id(0, i, 0) for i in range(6)]
    r.plan(Counter(a[:4]), 8)
    plan = r.plan(Counter([a[1], a[4]]), 8)  # a[0] is least recently requested
    assert plan.evictions == [a[0]] and plan.loads == [(a[4], r.resident[a[4]])]
    plan = r.plan(Counter([a[0]]), 8)
    assert plan.thrash == 1
    plan = r.plan(Counter(a[:5] + [a[5]]), 8)  # more than fits: stops instead of evicting this update's tiles
    assert (plan.loads, plan.evictions, plan.deferred, plan.hits) == ([], [], 2, 4)


def test_bias_rises_when_oversubscribed_is_capped_and_falls_when_calm() -> None:
    r = _residency(slots=5 + 8)
    everything = Counter(range(LAY.level_base[1]))  # 256 level-0 tiles for 8 slots
    biases = []
    for _ in range(30):
        r.plan(everything, 4)
        biases.append(r.bias)
    assert biases[0] > 0 and biases == sorted(biases) and biases[-1] == MAX_BIAS
    for _ in range(WINDOW + 5):
        r.plan(Counter([LAY.tile_id(0, 0, 0)]), 4)
    assert r.bias < MAX_BIAS


def test_make_resident_many_matches_one_by_one_in_any_order() -> None:
    rng = np.random.default_rng(3)
    top = LAY.tile_count - 1
    for _ in range(20):
        tiles = rng.choice(top, size=40, replace=False)  # every level but the top, level 0 included
        slots = np.arange(1, 41)
        batch, single = PageTable(LAY), PageTable(LAY)
        for pt in (batch, single):
            pt.make_resident(LAY.levels - 1, 0, 0, 0)
            pt.take_dirty()
        before = batch.entries.copy()
        coords = np.array([LAY.tile_coords(int(t)) for t in tiles])
        order = rng.permutation(40)
        batch.make_resident_many(coords[order, 0], coords[order, 1], coords[order, 2], slots[order])
        for (lv, tx, ty), s in zip(coords.tolist(), slots.tolist()):
            single.make_resident(lv, tx, ty, s)
        np.testing.assert_array_equal(batch.entries, single.entries)
        np.testing.assert_array_equal(batch.entries, _brute({top: 0, **dict(zip(tiles.tolist(), slots.tolist()))}))
        changed = np.zeros(LAY.tile_count, bool)
        for a, b in batch.take_dirty():
            changed[a:b] = True
        assert changed[np.flatnonzero(batch.entries != before)].all()  # every change is uploaded
