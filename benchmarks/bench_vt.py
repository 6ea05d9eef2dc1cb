"""Virtual-texture benchmark: build throughput and peak memory, streaming against its no-GPU floor, update latency,
hit rates on camera paths.

For each size (default 16384^2 and 65536^2, procedural level 0; ``--quick``: 2048^2 and 4096^2):

- **build** (in a child process, so its peak RSS is its own): MB/s of level 0 (``size^2 * 4`` bytes) beside the
  floor of only generating the same level-0 bands (no mips, no compression, no writing), and peak RSS beside the size
  of one whole level 0 (what a builder that holds a level would need at least);
- **stream** with ``budget_mb`` (default 256): for each camera path (spiral, zoom, random; ``--frames`` frames of
  feedback at 1/16 of 1920x1080 on the GPU, one update per frame): tiles/s over the update time (and until the copies
  finished on the GPU) beside the **floor**
  of reading + checking + decompressing + copying the very same tiles, batch by batch right after each update (best
  of 3, the GPU idle), with the same batch reader and decompression threads and no GPU; update p50/p99; hit rate beside the hit rate of
  an unbounded cache given the same requests and uploads per update (host simulation); level bias; thrash;
- both backends (page table; sparse residency where the device and the size allow it);
- **256-tile updates**: updates that each load 256 new level-0 tiles (``max_uploads_per_update=256``): p50/p99 ms
  beside two floors of the same batches with no GPU, measured in the same run: read + check + decompress + copy on
  all the reader's threads (what ``update()`` is compared with) and on one thread (the goal is p99 < 16 ms on an
  H100-class GPU); on the page-table backend once with the default host-cached staging ring (tiles decompressed
  straight into it) and once with plain host-visible staging (write-combined on discrete GPUs: through a cached
  page per thread), and once with ``reader="chunks"``. Once per size, both batch-reader methods' p50 at 1, 2, 4, ...
  threads beside their peer on the same batches: one thread-pool task per tile (the reader before them)
  (``--no-reader-scaling`` skips it).

Usage: ``python benchmarks/bench_vt.py [--quick] [--sizes 16384,65536] [--budget-mb 256] [--frames 300]
[--keep DIR] [--device I] [--json PATH]`` (default JSON ``benchmarks/results/vt-<device>[-quick].json``).
The 65536^2 build writes a file of about 10 GB (``--keep DIR`` chooses where; default a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vixen_assets.device import open_device  # noqa: E402
from vixen_assets.errors import UnsupportedFeatureError  # noqa: E402
from vixen_assets.vt import TileFile, build, open_virtual_texture  # noqa: E402
from vixen_assets.vt.paths import PATHS, camera_path  # noqa: E402
from vixen_assets.vt.procedural import procedural_source  # noqa: E402
from vixen_assets.vt.residency import Residency  # noqa: E402

MB = 1e6


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def child_build(size: int, out: str, tile: int) -> None:
    """Run in a child: build, then print seconds and this process's peak RSS as JSON."""
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # interpreter + imports
    t0 = time.perf_counter()
    build(procedural_source(size), out, size=size, tile=tile)
    secs = time.perf_counter() - t0
    src = procedural_source(size)
    t1 = time.perf_counter()
    for y0 in range(0, size, tile):
        src(0, y0, size, tile)
    gen = time.perf_counter() - t1
    print(json.dumps({"seconds": secs, "generate_seconds": gen, "start_rss_bytes": base_rss,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def run_build(size: int, out: Path, tile: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child-build", str(size), str(out), str(tile)],
                          capture_output=True, text=True, check=True)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    level0 = size * size * 4
    r.update(size=size, level0_bytes=level0, file_bytes=out.stat().st_size,
             mb_per_s=level0 / r["seconds"] / MB, generate_floor_mb_per_s=level0 / r["generate_seconds"] / MB)
    return r


def floor_read(tf: TileFile, batch: list[int], threads: int, staging: np.ndarray, repeat: int = 3, *,
               method: str = "zstd") -> float:
    """Seconds to read + check + decompress + copy one batch of tiles into a staging-like array with no GPU, with
    ``threads`` decompression threads (the batch reader ``update()`` uses; 1: the single-thread floor): the best of
    ``repeat`` runs, measured right after the update that loaded the same batch (same machine load, which matters on
    a shared machine)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        _nbytes, errors = tf.read_tiles(batch, staging, threads=threads, method=method)
        best = min(best, time.perf_counter() - t0)
        assert not errors, errors
    return best


def reader_scaling(tf: TileFile, batches: list[list[int]], threads: int, buf: np.ndarray) -> dict[str, float]:
    """p50 ms per batch of both batch-reader methods at 1, 2, 4, ... ``threads`` threads, beside their peer: one
    thread-pool task per tile (``read_tile`` into the row, the reader before the batch reader) on ``threads``
    workers."""
    out: dict[str, float] = {}
    for method in ("zstd", "chunks"):
        k = 1
        while True:
            out[f"{method} {k}"] = float(np.median([floor_read(tf, b, k, buf, method=method)
                                                    for b in batches]) * 1e3)
            if k >= threads:
                break
            k = min(threads, 2 * k)
    with ThreadPoolExecutor(threads) as pool:
        def per_tile(batch: list[int]) -> float:
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                list(pool.map(lambda it: tf.read_tile(it[1], buf[it[0]]), enumerate(batch)))
                best = min(best, time.perf_counter() - t0)
            return best

        out[f"pool of {threads}, one task per tile"] = float(np.median([per_tile(b) for b in batches]) * 1e3)
    return out


def run_paths(dev: Any, path: Path, size: int, args: argparse.Namespace, backend: str) -> list[dict[str, Any]]:
    rows = []
    for kind in PATHS:
        with open_virtual_texture(path, dev, budget_mb=args.budget_mb, max_uploads_per_update=args.max_tiles,
                                  backend=backend) as vt:
            threads = vt.threads  # its decompression threads
            staging = np.empty((args.max_tiles, vt.layout.raw_bytes), np.uint8)
            times = []
            tiles, floor, gpu_wait = 0, 0.0, 0.0
            # the peer of the hit rate: the same requests and uploads per update with a cache holding every tile
            unbounded = Residency(vt.layout, vt.layout.tile_count, vt.pinned_levels)
            peer_hits = peer_requested = 0
            with TileFile(path) as tf:
                for u, v, lod in camera_path(kind, args.frames, size):
                    vt.feedback(np.stack([u, v, lod], axis=1))
                    st = vt.update(max_tiles=args.max_tiles)
                    ids, counts = np.unique(vt.tile_ids(u, v, lod), return_counts=True)
                    plan = unbounded.plan(Counter(dict(zip(ids.tolist(), counts.tolist()))), args.max_tiles)
                    peer_hits += plan.hits
                    peer_requested += plan.requested
                    times.append(st.ms)
                    if st.tiles:
                        t0 = time.perf_counter()
                        vt.wait()  # the GPU idle: the floor runs under the same load as the update did
                        gpu_wait += time.perf_counter() - t0
                        tiles += len(st.tiles)
                        floor += floor_read(tf, st.tiles, max(1, min(threads, len(st.tiles) // 4)), staging)
            s = vt.stats
            upd = sum(times) / 1e3
            rows.append({"backend": backend, "path": kind, "frames": args.frames, "tiles": tiles, "slots": s.slots,
                         "tiles_per_s": tiles / upd if upd else 0.0,
                         "resident_tiles_per_s": tiles / (upd + gpu_wait) if upd else 0.0,
                         "floor_tiles_per_s": tiles / floor if floor else 0.0,
                         "update_p50_ms": float(np.percentile(times, 50)),
                         "update_p99_ms": float(np.percentile(times, 99)), "hit_rate": s.hit_rate,
                         "unbounded_cache_hit_rate": peer_hits / peer_requested if peer_requested else 1.0,
                         "level_bias": s.level_bias, "thrash": s.thrash, "evicted": s.evicted,
                         "memory_bytes": vt.nbytes})
            r = rows[-1]
            frac = r["tiles_per_s"] / r["floor_tiles_per_s"] if r["floor_tiles_per_s"] else 0.0
            # the stream does the floor's work and more: above 100% the floor run was disturbed (a shared machine)
            r["fraction_of_floor"] = frac if frac <= 1.0 else None
            shown = f"{frac:.0%}" if frac <= 1.0 else "floor disturbed, re-run"
            print(f"  {backend:9s} {kind:7s} {tiles:6d} tiles  {r['tiles_per_s']:7.0f} tiles/s (floor "
                  f"{r['floor_tiles_per_s']:6.0f}, {shown}; until resident on the GPU "
                  f"{r['resident_tiles_per_s']:6.0f})  p50 {r['update_p50_ms']:6.2f} p99 {r['update_p99_ms']:6.2f} ms  "
                  f"hit {r['hit_rate']:.1%} (unbounded cache {r['unbounded_cache_hit_rate']:.1%})  bias {r['level_bias']:.2f}  thrash {r['thrash']}", flush=True)
    return rows


def run_big_updates(dev: Any, path: Path, args: argparse.Namespace, backend: str, staging: str = "host_cached",
                    reader: str = "zstd") -> dict[str, Any]:
    """Updates of ``n`` fresh level-0 tiles each, with the staging ring in ``staging`` memory and ``reader``."""
    n = args.big_update
    with open_virtual_texture(path, dev, budget_mb=args.budget_mb, max_uploads_per_update=n, backend=backend,
                              staging=staging, reader=reader) as vt:
        direct = vt.direct
        lay = vt.layout
        side = lay.tiles_per_side(0)
        order = np.random.default_rng(0).permutation(side * side)
        times, resident, batches = [], [], []
        for k in range(min(args.big_updates, len(order) // n)):  # every batch new tiles
            ids = order[k * n:(k + 1) * n]
            ty, tx = np.divmod(ids, side)
            t0 = time.perf_counter()
            vt.request((tx + 0.5) / side, (ty + 0.5) / side, 0.0)
            st = vt.update(max_tiles=n)
            vt.wait()
            if st.uploaded != n:  # the cache is smaller than one batch: not this measurement
                break
            resident.append((time.perf_counter() - t0) * 1e3)
            times.append(st.ms)
            batches.append(st.tiles)
        threads = vt.threads
        buf = np.empty((n, vt.layout.raw_bytes), np.uint8)  # cached host memory: the floor's staging
        with TileFile(path) as tf:
            floor_mt = [floor_read(tf, b, threads, buf, method=reader) * 1e3 for b in batches]
            floor_st = [floor_read(tf, b, 1, buf, method=reader) * 1e3 for b in batches]
            once = (args.reader_scaling and backend == "pagetable" and staging == "host_cached"
                    and reader == "zstd")  # once per size
            scaling = reader_scaling(tf, batches, threads, buf) if once and batches else {}
    if not times:
        return {"backend": backend, "staging": staging, "reader": reader, "tiles_per_update": n, "updates": 0}
    r = {"backend": backend, "staging": staging, "reader": reader, "decompress_into_staging": direct and reader == "chunks",
         "tiles_per_update": n,
         "updates": len(times), "threads": threads,
         "p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
         "resident_p50_ms": float(np.percentile(resident, 50)), "resident_p99_ms": float(np.percentile(resident, 99)),
         "floor_threaded_p50_ms": float(np.percentile(floor_mt, 50)),
         "floor_threaded_p99_ms": float(np.percentile(floor_mt, 99)),
         "floor_single_thread_p50_ms": float(np.percentile(floor_st, 50)),
         "floor_single_thread_p99_ms": float(np.percentile(floor_st, 99)), "goal_p99_ms": 16.0}
    # update() does the threaded floor's work and more; a ratio under 1 means the floor run was disturbed
    r["update_over_threaded_floor_p50"] = r["p50_ms"] / r["floor_threaded_p50_ms"]
    how = ("zstd's C threads, then copied" if reader == "zstd" else
           "Python threads, " + ("straight into it" if direct else "through a cached page"))
    print(f"  {backend:9s} {n}-tile updates ({len(times)}; {staging} staging, decompressed on {how}): update() p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms; "
          f"request to resident on the GPU p50 {r['resident_p50_ms']:.2f} p99 {r['resident_p99_ms']:.2f} ms\n"
          f"  {'':9s} floor of read + check + decompress + copy per batch (no GPU): {threads} threads p50 "
          f"{r['floor_threaded_p50_ms']:.2f} p99 {r['floor_threaded_p99_ms']:.2f} ms, 1 thread p50 "
          f"{r['floor_single_thread_p50_ms']:.2f} p99 {r['floor_single_thread_p99_ms']:.2f} ms; update() p50 = "
          f"{r['update_over_threaded_floor_p50']:.2f}x the threaded floor (goal p99 < 16 ms on an H100-class GPU)",
          flush=True)
    if scaling:
        r["reader_scaling_ms"] = scaling
        print(f"  {'':9s} batch reader p50 ms by threads: "
              + ", ".join(f"{k} {v:.2f}" for k, v in scaling.items()), flush=True)
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2048^2 and 4096^2, 60 frames, 64 MB")
    ap.add_argument("--sizes", default=None, help="comma-separated sizes (default 16384,65536)")
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--budget-mb", type=float, default=None, help="cache budget (default 256, quick 64)")
    ap.add_argument("--frames", type=int, default=None, help="frames per camera path (default 300, quick 60)")
    ap.add_argument("--max-tiles", type=int, default=32, help="tiles per update on the camera paths (UE: 32)")
    ap.add_argument("--big-update", type=int, default=256, help="tiles per update in the latency measurement")
    ap.add_argument("--big-updates", type=int, default=None, help="updates in it (default 20, quick 4)")
    ap.add_argument("--keep", type=Path, default=None, help="build into this folder and keep the files")
    ap.add_argument("--reader-scaling", action=argparse.BooleanOptionalAction, default=True,
                    help="time the batch reader at 1, 2, 4, ... threads and one pool task per tile (256-tile batches)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child-build", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_build:
        child_build(int(args.child_build[0]), args.child_build[1], int(args.child_build[2]))
        return 0
    q = args.quick
    sizes = [int(s) for s in (args.sizes or ("2048,4096" if q else "16384,65536")).split(",")]
    args.budget_mb = args.budget_mb or (64 if q else 256)
    args.frames = args.frames or (60 if q else 300)
    args.big_updates = args.big_updates or (4 if q else 20)
    wall0 = time.perf_counter()
    dev = open_device(args.device, validation=False)
    results: list[dict[str, Any]] = []
    try:
        info = dev.info
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"device: {info.name} ({info.device_type}); {os.cpu_count()} CPUs, {cores} usable; budget "
              f"{args.budget_mb} MB",
              flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-vt-", dir=args.keep) as tmp:
            folder = args.keep or Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            for size in sizes:
                path = folder / f"procedural-{size}.vtex"
                print(f"-- {size}^2", flush=True)
                b = run_build(size, path, args.tile)
                print(f"  build {b['mb_per_s']:.1f} MB/s of level 0 (floor: generating the bands alone "
                      f"{b['generate_floor_mb_per_s']:.1f} MB/s), peak RSS {b['peak_rss_bytes'] / 2**20:.0f} MiB (at start "
                      f"{b['start_rss_bytes'] / 2**20:.0f} MiB; "
                      f"one whole level 0: {b['level0_bytes'] / 2**20:.0f} MiB), file {b['file_bytes'] / 2**20:.0f}"
                      f" MiB", flush=True)
                rows: list[dict[str, Any]] = []
                big: list[dict[str, Any]] = []
                skipped: dict[str, str] = {}
                for backend in ("pagetable", "sparse"):
                    try:
                        rows += run_paths(dev, path, size, args, backend)
                        big.append(run_big_updates(dev, path, args, backend))
                        if backend == "pagetable":  # peers: plain host-visible (write-combined) staging; the
                            big.append(run_big_updates(dev, path, args, backend, staging="host_visible"))
                            big.append(run_big_updates(dev, path, args, backend, reader="chunks"))  # other reader
                    except UnsupportedFeatureError as exc:
                        skipped[backend] = str(exc)
                        print(f"  {backend:9s} not available: {exc}", flush=True)
                results.append({"size": size, "build": b, "paths": rows, "big_updates": big,
                                "backends_not_available": skipped})
                if args.keep is None:
                    path.unlink()
    finally:
        dev.close()
    out = {"benchmark": "vt", "quick": q, "device": {"name": info.name, "type": info.device_type,
                                                     "unified_memory": info.unified_memory},
           "config": {"sizes": sizes, "tile": args.tile, "budget_mb": args.budget_mb, "frames": args.frames,
                      "max_tiles": args.max_tiles, "cpus": os.cpu_count(), "python": platform.python_version(),
                      "platform": platform.platform()},
           "results": results, "seconds": time.perf_counter() - wall0}
    path = args.json or (Path(__file__).resolve().parent / "results" /
                         f"vt-{slug(info.name)}{'-quick' if q else ''}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"\nwrote {path} ({out['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
