"""Soak: mixed USD, texture and voxel loads, releases, evictions and buffer churn for a fixed time under a small
budget (``--budget-mb 20``). Checked all along: the budget never goes over its limit and nothing is refused; at the
end: no leak (only the staging pool is left once the caches are emptied), no validation message, fragmentation of
the memory blocks no worse at the end of the run than after its first half, and no ``vkAllocateMemory`` in the steady
state (a working set that fits, loaded and released again and again: blocks are reused, never allocated again).

The short form runs in ``make test`` (a few seconds); ``-m slow`` runs ``VIXEN_SOAK_SECONDS`` (600 by default).
"""

from __future__ import annotations

import os
import random
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

import vixen_assets as va
from vixen_assets.testing import finish_test_device, open_test_device

from test_load_stage import GEN

MiB = 1 << 20
BUDGET_MB = 20


def _vox(seed: int) -> bytes:
    rnd = random.Random(seed)
    n = rnd.randint(50, 400)
    vox = bytes(b for _ in range(n) for b in (rnd.randrange(32), rnd.randrange(32), rnd.randrange(32),
                                              rnd.randint(1, 255)))

    def chunk(cid: bytes, content: bytes, children: bytes = b"") -> bytes:
        return struct.pack("<4sii", cid, len(content), len(children)) + content + children

    body = chunk(b"SIZE", struct.pack("<3i", 32, 32, 32)) + chunk(b"XYZI", struct.pack("<i", n) + vox)
    return b"VOX " + struct.pack("<i", 150) + chunk(b"MAIN", b"", body)


def _assets(tmp: Path) -> dict[str, list[Path]]:
    stages = []
    for k in range(5):
        p = tmp / f"soak_{k}.usdc"
        GEN.generate_scene(p, meshes=10, triangles=25_000 + 5_000 * k, seed=50 + k)
        stages.append(p)
    textures = []
    rng = np.random.default_rng(1)
    for k, side in enumerate((256, 512, 1024, 1024, 1024, 1024)):  # any three held at once fit the budget
        p = tmp / f"soak_{k}.png"
        PILImage.fromarray(rng.integers(0, 256, (side, side, 4), np.uint8), "RGBA").save(p, compress_level=0)
        textures.append(p)
    voxels = []
    for k in range(4):
        p = tmp / f"soak_{k}.vox"
        p.write_bytes(_vox(k))
        voxels.append(p)
    return {"stage": stages, "texture": textures, "vox": voxels}


def _fragmentation(device: Any) -> float:
    """Free bytes outside each block's largest free range, over all free bytes (0: every block has one hole)."""
    blocks = device.memory_report()["blocks"]
    free = sum(b["free"] for b in blocks)
    largest = sum(max((s for _o, s in b["free_ranges"]), default=0) for b in blocks)
    return 0.0 if free == 0 else 1.0 - largest / free


def _evictions(device: Any) -> int:
    """Entries every cacher of ``device`` has evicted so far."""
    return sum(c.stats.evictions for c in device.cachers.values())


def _empty_caches(device: Any) -> None:
    """Evict every unreferenced entry of every cacher of ``device``."""
    for cacher in list(device.cachers.values()):
        cacher.evict()


def soak(tmp: Path, seconds: float, seed: int = 0) -> dict[str, Any]:
    """Run the soak for ``seconds``; return its figures (the checks are the caller's).

    The first 60% of the time loads from every asset (more than the budget holds: caches evict); the rest is the
    steady state: the application releases what it held, empties the caches and moves on to a working set that fits
    (two stages, the two smaller textures, the voxels), loaded once, then loaded, released and churned again and
    again, which must make no ``vkAllocateMemory`` at all. Without emptying the caches the leftovers of the first
    phase keep the budget near its warning threshold, churn pushes it over, caches evict and rebuild (a voxel scene
    is its own memory block): allocations that depend on timing, not on the allocator reusing blocks.
    """
    assets = _assets(tmp)
    rnd = random.Random(seed)
    dev = open_test_device(budget=va.BudgetOptions.from_mib(BUDGET_MB, staging_timeout_s=10.0))
    held: list[Any] = []
    counts = {"stage": 0, "texture": 0, "vox": 0, "churn": 0, "released": 0}
    figures: dict[str, Any] = {}
    working_set = {"stage": assets["stage"][:2], "texture": assets["texture"][:2], "vox": assets["vox"]}

    def step(pool: dict[str, list[Path]]) -> None:
        op = rnd.random()
        if op < 0.35:
            held.append(va.load_stage(rnd.choice(pool["stage"]), dev, warm=rnd.random() < 0.5))
            counts["stage"] += 1
        elif op < 0.6:
            held.append(va.load_texture(rnd.choice(pool["texture"]), dev))
            counts["texture"] += 1
        elif op < 0.8:
            held.append(va.load_vox(rnd.choice(pool["vox"]), dev))
            counts["vox"] += 1
        else:
            bufs = [dev.create_buffer(rnd.choice((256, 4096, 65536, 256 << 10)), "storage|vertex", name="churn")
                    for _ in range(rnd.randint(1, 16))]
            for b in bufs:
                b.destroy()
            counts["churn"] += len(bufs)
        while len(held) > 2 or (held and rnd.random() < 0.5):
            held.pop(rnd.randrange(len(held))).release()
            counts["released"] += 1
        assert dev.budget.used <= dev.budget.limit

    try:
        start = time.monotonic()
        mixed_until = start + 0.6 * seconds
        while time.monotonic() < mixed_until:
            step(assets)
            if "fragmentation_half" not in figures and time.monotonic() - start >= 0.3 * seconds:
                figures["fragmentation_half"] = _fragmentation(dev)
        evictions_mixed = _evictions(dev)
        for h in held:  # the application moves on to its working set: what it held of the mixed phase goes
            h.release()
        held.clear()
        _empty_caches(dev)  # and drops what it cached of it
        for kind, paths in working_set.items():  # warm the working set once
            for p in paths:
                loader = {"stage": va.load_stage, "texture": va.load_texture, "vox": va.load_vox}[kind]
                loader(p, dev).release()
        for _ in range(300):  # and the arenas and blocks the churn uses, until the working set has settled
            step(working_set)
        evictions_before = _evictions(dev)
        steady_peak = 0
        with dev.phase("steady") as steady:
            steady_steps = 0
            while time.monotonic() - start < seconds:
                step(working_set)
                steady_steps += 1
                steady_peak = max(steady_peak, dev.budget.used)
        figures["steady_evictions"] = _evictions(dev) - evictions_before
        figures["steady_peak"] = steady_peak
        for h in held:
            h.release()
        held.clear()
        figures["steady"] = {k: v for k, v in vars(steady).items() if k in ("allocate_memory", "free_memory",
                                                                              "suballocations", "subfrees")}
        figures["steady_steps"] = steady_steps
        figures["fragmentation_end"] = _fragmentation(dev)
        stats = dev.budget.stats()
        figures.update(counts=counts, limit=dev.budget.limit, peak=dev.budget.peak, rejections=stats["rejections"],
                       seconds=seconds, evictions=evictions_mixed)
        _empty_caches(dev)
        dev.uploader.drain()
        figures["left"] = {k: v["bytes"] for k, v in dev.budget.stats()["categories"].items()
                           if k != "staging" and v["bytes"]}
        figures["live"] = [o.name for o in dev.live_resources() if not o.name.startswith("staging")]
    finally:
        for h in held:
            h.release()
        finish_test_device(dev)  # fails on validation messages or leaks
    return figures


def _check(fig: dict[str, Any]) -> None:
    print(f"soak {fig['seconds']:.0f} s: {fig['counts']}, {fig['evictions']} evictions, peak {fig['peak'] / MiB:.1f} "
          f"MiB of a {fig['limit'] / MiB:.0f} MiB limit, steady state ({fig['steady_steps']} steps, at most "
          f"{fig['steady_peak'] / MiB:.1f} MiB used between steps, {fig['steady_evictions']} evictions) {fig['steady']}, "
          f"fragmentation "
          f"{fig.get('fragmentation_half', 0):.3f} at half time, {fig['fragmentation_end']:.3f} at the end")
    assert fig["peak"] <= fig["limit"] and fig["rejections"] == 0
    assert fig["evictions"] > 0, "the budget is small enough that caches must evict"
    assert fig["left"] == {} and fig["live"] == []
    assert fig["counts"]["stage"] and fig["counts"]["texture"] and fig["counts"]["vox"]
    steady = fig["steady"]
    assert fig["steady_evictions"] == 0, "the working set fits: nothing is evicted in the steady state"
    assert fig["steady_steps"] > 0 and steady["allocate_memory"] == 0 and steady["free_memory"] == 0, steady
    assert fig["fragmentation_end"] <= max(0.35, fig["fragmentation_half"] + 0.15)


def test_soak_short(tmp_path: Path) -> None:
    _check(soak(tmp_path, seconds=float(os.environ.get("VIXEN_SOAK_SHORT_SECONDS", "6"))))


@pytest.mark.slow
def test_soak_long(tmp_path: Path) -> None:
    _check(soak(tmp_path, seconds=float(os.environ.get("VIXEN_SOAK_SECONDS", "600")), seed=1))
