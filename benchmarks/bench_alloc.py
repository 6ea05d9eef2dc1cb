"""Alloc+free cost through the whole allocation chain, beside raw ``vkAllocateMemory`` + ``vkFreeMemory``.

One alloc+free pair is ``device.create_buffer(size, usage_int)`` followed by ``buffer.destroy()``: the budget
reservation, the suballocator (TLSF range of a ``VkDeviceMemory`` block), the tracker and the registry, and for
buffers above the arena limit (512 KiB) a ``vkCreateBuffer`` + ``vkBindBufferMemory`` + ``vkDestroyBuffer``.
Two sizes: 1 KiB (a range of a shared arena ``VkBuffer``: no Vulkan call at all) and 1 MiB (its own ``VkBuffer``).
Every pair is timed on its own with ``time.perf_counter_ns`` (garbage collection off), so the table has the median,
p99 and max: users hate stalls more than averages. In the same run, on the same device, raw pairs are timed for
reference: ``vkAllocateMemory`` + ``vkFreeMemory`` of memory type 0 (what a naive allocator pays per buffer) and
``vkCreateBuffer`` + ``vkBindBufferMemory`` + ``vkDestroyBuffer`` (the floor of the own-handle path).

Validation is OFF (``open_device(validation=False)``). Target for the chain: median < 5 µs and p99 < 50 µs per pair.
The timed phase must make no ``vkAllocateMemory`` call (steady state reuses blocks): checked and reported.

Fragmentation after a long churn trace is measured by ``benchmarks/bench_churn.py`` (``results/churn.json``).

Usage: ``python benchmarks/bench_alloc.py [--pairs N] [--device D] [--json PATH]``
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vixen_assets import open_device  # noqa: E402
from vixen_assets.vk import resources as vkr  # noqa: E402

KiB = 1 << 10
MiB = 1 << 20
VERTEX = 0x80
TARGET_MEDIAN_US = 5.0
TARGET_P99_US = 50.0
HERE = Path(__file__).resolve().parent


def percentile(sorted_ns: list[int], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted samples, nearest rank."""
    i = min(len(sorted_ns) - 1, max(0, round(q * (len(sorted_ns) - 1))))
    return float(sorted_ns[i])


def time_pairs(pair: Callable[[], None], n: int, warmup: int) -> dict[str, float]:
    """Run ``pair`` ``warmup`` times, then time ``n`` runs one by one; return µs statistics."""
    for _ in range(warmup):
        pair()
    samples = [0] * n
    clock = time.perf_counter_ns
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for i in range(n):
            t0 = clock()
            pair()
            samples[i] = clock() - t0
    finally:
        if gc_was:
            gc.enable()
    samples.sort()
    return {
        "pairs": n,
        "median_us": statistics.median(samples) / 1e3,
        "p99_us": percentile(samples, 0.99) / 1e3,
        "max_us": samples[-1] / 1e3,
        "mean_us": statistics.fmean(samples) / 1e3,
    }


def verdict(row: dict[str, Any]) -> tuple[str, str]:
    """PASS/MISS for the median and p99 targets (reference rows have none)."""
    if not row["target"]:
        return "ref", "ref"
    return ("PASS" if row["median_us"] < TARGET_MEDIAN_US else "MISS",
            "PASS" if row["p99_us"] < TARGET_P99_US else "MISS")


def run(pairs: int, device_index: str | None) -> dict[str, Any]:
    """Measure every row on one device; return the JSON document."""
    dev = open_device(device_index, validation=False)
    try:
        logical = dev.context.logical
        rows: list[dict[str, Any]] = []

        def chain(size: int) -> Callable[[], None]:
            create = dev.create_buffer

            def pair() -> None:
                create(size, VERTEX).destroy()

            return pair

        def raw_memory(size: int) -> Callable[[], None]:
            def pair() -> None:
                vkr.free_memory(logical, vkr.allocate_memory(logical, size, 0))

            return pair

        scratch = vkr.allocate_memory(logical, 1 * MiB, 0)

        def raw_buffer(size: int) -> Callable[[], None]:
            def pair() -> None:
                h = vkr.create_buffer(logical, size, VERTEX | 0x3)
                vkr.bind_buffer(logical, h, scratch, 0)
                vkr.destroy_buffer(logical, h)

            return pair

        try:
            with dev.phase("bench") as phase:
                for label, size, fn, n, target, path in (
                    ("chain: create_buffer+destroy", 1 * KiB, chain(1 * KiB), pairs, True, "arena range"),
                    ("chain: create_buffer+destroy", 1 * MiB, chain(1 * MiB), max(1, pairs // 4), True,
                     "own VkBuffer"),
                    ("raw: vkAllocateMemory+vkFreeMemory (type 0)", 1 * KiB, raw_memory(1 * KiB),
                     max(1, pairs // 4), False, "driver"),
                    ("raw: vkAllocateMemory+vkFreeMemory (type 0)", 1 * MiB, raw_memory(1 * MiB),
                     max(1, pairs // 4), False, "driver"),
                    ("raw: vkCreateBuffer+vkBindBufferMemory+vkDestroyBuffer", 1 * MiB, raw_buffer(1 * MiB),
                     max(1, pairs // 4), False, "driver"),
                ):
                    stats = time_pairs(fn, n, warmup=min(200, n))
                    rows.append({"what": label, "size": size, "path": path, "target": target, **stats})
        finally:
            vkr.free_memory(logical, scratch)
        for row in rows:
            row["median_verdict"], row["p99_verdict"] = verdict(row)
        return {
            "benchmark": "alloc",
            "device": dev.name,
            "validation": False,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "targets_us": {"median": TARGET_MEDIAN_US, "p99": TARGET_P99_US},
            "rows": rows,
            "vk_allocate_memory_calls_in_chain_rows": phase.allocate_memory,
            "note": "raw rows call the driver directly (vixen_assets.vk.resources) and are not counted by the "
                    "tracker; chain rows go through Device.create_buffer",
            "churn_fragmentation": "see benchmarks/bench_churn.py and benchmarks/results/churn.json",
        }
    finally:
        dev.close()


def fmt_size(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n // KiB} KiB"


def print_table(doc: dict[str, Any]) -> None:
    """Print the rows as a fixed-width table."""
    print(f"alloc+free pair cost on {doc['device']} (validation off, Python {doc['python']}); "
          f"targets: median < {TARGET_MEDIAN_US:g} µs, p99 < {TARGET_P99_US:g} µs")
    head = f"{'what':<56} {'size':>7} {'path':<12} {'pairs':>6} {'median µs':>10} {'':>4} {'p99 µs':>9} {'':>4} " \
           f"{'max µs':>9}"
    print(head)
    print("-" * len(head))
    for r in doc["rows"]:
        print(f"{r['what']:<56} {fmt_size(r['size']):>7} {r['path']:<12} {r['pairs']:>6} {r['median_us']:>10.2f} "
              f"{r['median_verdict']:>4} {r['p99_us']:>9.2f} {r['p99_verdict']:>4} {r['max_us']:>9.1f}")
    print(f"vkAllocateMemory calls made by the chain rows: {doc['vk_allocate_memory_calls_in_chain_rows']} "
          f"(steady state reuses blocks)")
    churn = HERE / "bench_churn.py"
    if churn.exists():
        print("fragmentation after a long churn trace: run benchmarks/bench_churn.py (results/churn.json)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=20000, help="timed 1 KiB chain pairs (the other rows use a quarter)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 5,000 pairs (the other rows a quarter)")
    ap.add_argument("--device", default=None, help="device index or name substring")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "alloc.json")
    args = ap.parse_args(argv)
    doc = run(5000 if args.quick else args.pairs, args.device)
    print_table(doc)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
