"""The churn trace replayed through the real device API (``bench_churn.py --device``), beside the VMA-policy
simulation of the same trace in the same run.

Every alloc of the trace is ``device.create_buffer(size, VERTEX | STORAGE)``, every free ``buffer.destroy()``: the
public API, with the budget, the suballocator and its block policy, the arenas and ``vkCreateBuffer`` for buffers
above the arena limit. Reported, at the end of the trace and at its worst point (the highest held / live among
samples taken every ``--sample`` operations once live bytes first reached 90 % of the trace's 2 GiB target, so the
first empty-ish blocks do not count):

- held / live: bytes in ``VkDeviceMemory`` blocks (dedicated ones included) over the sum of the requested sizes;
- fragmentation ``1 - largest free range / free bytes`` (across blocks, and per block weighted by free bytes);
- ``vkAllocateMemory`` calls per 1,000 operations, and the cost per operation (median / p99 / max, µs);
- the same after ``device.defragment()`` (full) and after incremental passes ``defragment(max_bytes=, max_ms=)``.

The baseline, in the same run: the same trace through a simulation of VMA's default policy (``BlockSet`` in
``bench_churn.py``: 256 MiB TLSF blocks, dedicated above 128 MiB, one empty block kept) and VMA-style evacuation.
"""

from __future__ import annotations

import gc
import time
from array import array
from pathlib import Path
from typing import Any

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
VERTEX_STORAGE = 0x80 | 0x20


def _pct(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


def _dist(ns: array) -> dict[str, float]:
    s = sorted(ns)
    if not s:
        return {"median": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    return {"median": _pct(s, 0.5), "p99": _pct(s, 0.99), "max": s[-1] / 1000.0, "mean": sum(s) / len(s) / 1000.0}


def held_state(device: Any) -> dict[str, float | int]:
    """Held bytes, blocks and fragmentation from ``device.memory_report()`` (the public view)."""
    rep = device.memory_report()
    blocks = rep["blocks"]
    held = sum(b["size"] for b in blocks)
    free_pooled = [b for b in blocks if not b["dedicated"]]
    free = sum(b["free"] for b in free_pooled)
    largest = max((b["largest_free"] for b in free_pooled), default=0)
    largest_each = sum(min(b["largest_free"], b["free"]) for b in free_pooled)
    pools: dict[tuple[Any, ...], int] = {}
    for b in free_pooled:
        key = (b["memory_type"], b["purpose"], b.get("device_address"))
        pools[key] = max(pools.get(key, 0), b["largest_free"])
    return {
        "held_bytes": held,
        "blocks": len(blocks),
        "dedicated_blocks": sum(1 for b in blocks if b["dedicated"]),
        "free_in_blocks": free,
        "fragmentation": (1 - largest / free) if free else 0.0,
        "per_block_weighted_fragmentation": (1 - largest_each / free) if free else 0.0,
        "per_pool_fragmentation": (1 - sum(pools.values()) / free) if free else 0.0,
    }


def replay(trace: list[tuple[int, int, int, int]], *, sample_every: int = 1000, target: int = 2 * GiB,
           incremental_bytes: int = 64 * MiB, incremental_ms: float = 8.0, html: Path | None = None,
           assume_allocate_us: float | None = None) -> dict[str, Any]:
    """Replay ``trace`` through ``open_device()``'s public API; measure; defragment; return the figures."""
    from vixen_assets import open_device

    out: dict[str, Any] = {}
    device = open_device(validation=False, staging_quota=0)
    try:
        out["device"] = device.name
        if assume_allocate_us is not None:  # replay the policy of a device where vkAllocateMemory costs this much
            device.context.suballocator.assume_allocate_us = assume_allocate_us
        out["assume_allocate_us"] = assume_allocate_us
        base_held = held_state(device)["held_bytes"]
        out["held_before_trace"] = base_held
        bufs: dict[int, Any] = {}
        sizes: dict[int, int] = {}
        create_ns = array("q")
        destroy_ns = array("q")
        live = 0
        warm = False
        worst: dict[str, Any] = {"overhead": 0.0}
        create = device.create_buffer
        clock = time.perf_counter_ns
        device.reset_stats()
        gc.collect()
        gc.freeze()
        t_run = time.perf_counter()
        with device.phase("churn") as counts:
            for i, (op, oid, size, _ak) in enumerate(trace):
                if op:
                    t0 = clock()
                    bufs[oid] = create(size, VERTEX_STORAGE)
                    create_ns.append(clock() - t0)
                    sizes[oid] = size
                    live += size
                else:
                    b = bufs.pop(oid)
                    t0 = clock()
                    b.destroy()
                    destroy_ns.append(clock() - t0)
                    live -= sizes.pop(oid)
                if not warm and live >= 0.9 * target:
                    warm = True
                    out["warm_at_op"] = i
                if warm and i % sample_every == 0:
                    st = held_state(device)
                    ov = (st["held_bytes"] - base_held) / live
                    if ov > worst["overhead"]:
                        worst = {"overhead": ov, "op": i, "live_bytes": live, **st}
        run_s = time.perf_counter() - t_run
        gc.unfreeze()
        n_ops = len(trace)
        alloc_calls = counts.allocate_memory
        end = held_state(device)
        end["live_bytes"] = live
        end["overhead"] = (end["held_bytes"] - base_held) / live if live else 0.0
        out.update({
            "ops": n_ops, "run_seconds": round(run_s, 2), "us_per_op": run_s / n_ops * 1e6,
            "create_us": _dist(create_ns), "destroy_us": _dist(destroy_ns),
            "op_us_mean": (sum(create_ns) + sum(destroy_ns)) / n_ops / 1000.0,
            "vk_allocate_memory": alloc_calls, "vk_free_memory": counts.free_memory,
            "vk_allocate_memory_per_1000_ops": 1000.0 * alloc_calls / n_ops,
            "at_end": end, "worst": worst,
        })

        html_before = device.memory_report() if html is not None else None
        # incremental passes first (a frame loop's view), then whatever a full pass still finds
        passes = []
        t0 = time.perf_counter()
        for _ in range(1000):
            r = device.defragment(max_bytes=incremental_bytes, max_ms=incremental_ms)
            passes.append(r)
            if not r.moved:
                break
        inc_s = time.perf_counter() - t0
        inc = held_state(device)
        inc.update(live_bytes=live, overhead=(inc["held_bytes"] - base_held) / live,
                   passes=len(passes), bytes_moved=sum(p.bytes_moved for p in passes),
                   max_pass_bytes=max((p.bytes_moved for p in passes), default=0),
                   max_pass_ms=max((p.seconds * 1e3 for p in passes), default=0.0),
                   median_pass_ms=sorted(p.seconds * 1e3 for p in passes)[len(passes) // 2] if passes else 0.0,
                   limit_bytes=incremental_bytes, limit_ms=incremental_ms, seconds=round(inc_s, 3))
        out["after_incremental"] = inc
        t0 = time.perf_counter()
        full = device.defragment()
        full_s = time.perf_counter() - t0
        after = held_state(device)
        after.update(live_bytes=live, overhead=(after["held_bytes"] - base_held) / live, bytes_moved=full.bytes_moved,
                     moved=full.moved, seconds=round(full_s, 3))
        out["after_full_pass"] = after
        if html is not None:
            from vixen_assets.memory.memory_map import write_memory_map

            write_memory_map(html, device.memory_report(), before=html_before, title=f"churn replay, {n_ops:,} ops")
            out["html"] = str(html)
        for b in bufs.values():
            b.destroy()
    finally:
        device.close()
    return out


def simulate_vma(trace: list[tuple[int, int, int, int]], *, sample_every: int = 1000,
                 target: int = 2 * GiB) -> dict[str, Any]:
    """The same trace through the VMA-default-policy simulation (``BlockSet``) with the same sampling."""
    from bench_churn import BlockSet, defrag_variants

    bs = BlockSet(1)
    where: dict[int, tuple] = {}
    live = 0
    warm = False
    worst = 0.0
    op_ns = 0
    clock = time.perf_counter_ns
    for i, (op, oid, size, align_kind) in enumerate(trace):
        if op:
            t0 = clock()
            blk, off = bs.alloc(oid, size, 1 << (align_kind >> 1), align_kind & 1)
            op_ns += clock() - t0
            where[oid] = (blk, off, size, 0, "buffer", 0, 0)
            live += size
        else:
            blk, off, size, *_ = where.pop(oid)
            t0 = clock()
            bs.free(oid, blk, off)
            op_ns += clock() - t0
            live -= size
        if not warm and live >= 0.9 * target:
            warm = True
        if warm and i % sample_every == 0:
            worst = max(worst, float(bs.snapshot(live)["overhead"]))
    d = defrag_variants(bs, where, live)
    end = d["no_pass"]
    return {"at_end": end, "worst_overhead": worst, "after_evacuation": d["evacuation"],
            "after_full_compaction": d["full_compaction"], "us_per_op": op_ns / len(trace) / 1000.0,
            "vk_allocate_memory_per_1000_ops": 1000.0 * bs.blocks_created / len(trace)}


def print_comparison(dev: dict[str, Any], vma: dict[str, Any]) -> None:
    """One table: this device's policy through the API beside the simulated VMA policy on the same trace."""
    def pct(x: float) -> str:
        return f"{100 * x:6.1f} %"

    e, w, inc, full = dev["at_end"], dev["worst"], dev["after_incremental"], dev["after_full_pass"]
    ve, vev, vfc = vma["at_end"], vma["after_evacuation"], vma["after_full_compaction"]
    rows = [
        ("held over live at end (goal <= 15 %)", pct(e["overhead"] - 1), pct(ve["overhead"] - 1)),
        ("held over live, worst point (goal <= 25 %)", pct(w["overhead"] - 1), pct(vma["worst_overhead"] - 1)),
        ("fragmentation at end (across blocks)", pct(e["fragmentation"]), pct(ve["fragmentation"])),
        ("fragmentation at end (per block, weighted)", pct(e["per_block_weighted_fragmentation"]),
         pct(ve["per_block_weighted_fragmentation"])),
        ("fragmentation at end (per pool, weighted)", pct(e["per_pool_fragmentation"]),
         f"{pct(ve['fragmentation'])} (1 pool)"),
        ("blocks at end (dedicated)", f"{e['blocks']} ({e['dedicated_blocks']})", f"{ve['blocks']} ({ve['dedicated']})"),
        ("vkAllocateMemory per 1,000 ops", f"{dev['vk_allocate_memory_per_1000_ops']:.2f}",
         f"{vma['vk_allocate_memory_per_1000_ops']:.2f}"),
        ("cost per operation, mean µs (sim: TLSF blocks only, no Vulkan)", f"{dev['op_us_mean']:.1f}",
         f"{vma['us_per_op']:.1f}"),
        ("after incremental passes: held over live (goal <= 5 %)", pct(inc["overhead"] - 1), "-"),
        ("after incremental passes: fragmentation, per pool / per block", f"{pct(inc['per_pool_fragmentation'])} / "
         f"{pct(inc['per_block_weighted_fragmentation'])}", "-"),
        ("after full defragment(): held over live (goal <= 5 %)", pct(full["overhead"] - 1),
         f"{pct(vev['overhead'] - 1)} (evac.)"),
        ("after full defragment(): fragmentation across blocks", pct(full["fragmentation"]),
         f"{pct(vev['fragmentation'])} (evac.)"),
        ("after full defragment(): fragmentation per pool (goal <= 5 %)", pct(full["per_pool_fragmentation"]),
         f"{pct(vev['fragmentation'])} (evac.)"),
        ("after full defragment(): fragmentation per block (goal <= 5 %)",
         pct(full["per_block_weighted_fragmentation"]), f"{pct(vev['per_block_weighted_fragmentation'])} (evac.)"),
        ("full compaction of the VMA simulation's 256 MiB blocks: held over live", "-", pct(vfc["overhead"] - 1)),
    ]
    w0 = max(len(r[0]) for r in rows)
    print(f"churn replay through the device API on {dev['device']}: {dev['ops']:,} ops in {dev['run_seconds']} s "
          f"({dev['us_per_op']:.1f} µs/op incl. sampling); worst point at op {w.get('op', '-')}")
    print(f"{'metric':<{w0}}  {'this device':>17}  {'VMA policy (sim)':>18}")
    print(f"{'-' * w0}  {'-' * 17}  {'-' * 18}")
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:>17}  {c:>18}")
    print("fragmentation = 1 - largest free range / free bytes; 'across' over every pooled block of every pool at "
          "once (the arena pool's and the general pool's tails never merge: two equal tails read 50 %); 'per pool' "
          "= 1 - sum of each pool's largest free range / free bytes (a request only ever goes to one pool; the VMA "
          "simulation has one pool); 'per block' = the share of free bytes outside their block's largest hole; "
          "held = every VkDeviceMemory byte, dedicated blocks included")
    c, d = dev["create_us"], dev["destroy_us"]
    print(f"create_buffer µs median / p99 / max: {c['median']:.1f} / {c['p99']:.1f} / {c['max']:.0f}; "
          f"destroy: {d['median']:.1f} / {d['p99']:.1f} / {d['max']:.0f}")
    print(f"incremental (defragment(max_bytes={inc['limit_bytes'] / MiB:.0f} MiB, max_ms={inc['limit_ms']:g})): "
          f"{inc['passes']} passes, {inc['bytes_moved'] / MiB:,.0f} MiB moved, largest pass "
          f"{inc['max_pass_bytes'] / MiB:,.1f} MiB, pass time median / max {inc['median_pass_ms']:.1f} / "
          f"{inc['max_pass_ms']:.1f} ms (max_ms is soft: the first move of a pass is always made, and one 4 MiB copy "
          f"takes ~25 ms at lavapipe's copy rate); full pass after it: {full['bytes_moved'] / MiB:,.0f} MiB moved "
          f"in {full['seconds']} s")
