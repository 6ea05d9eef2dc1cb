"""Voxel benchmark: voxels per second from a ``.vox`` file to GPU-resident buffers, beside the floor of parsing alone.

For the largest shared sample (``mmmm_scene_store8.vox``, 124x124x68, ~441k voxels; found through
``$VIXEN_SHARED_ASSETS`` or ``<repo>/../shared/assets``, or ``--file``), in one run on one device:

- **floors**: reading the file's bytes (``open().read()``), and parsing it (``read_vox``: the reader's bounds-checked
  parse into numpy arrays; no GPU work);
- **layout**: the CPU layout of every buffer (``_scene_arrays``: bricks, brick data, AABBs, ...) of the parsed file,
  in voxel and brick AABB modes;
- **load_vox**: file → parse → layout → one ``BufferSet`` allocation → upload of all eight buffers → wait until
  the data is on the GPU; AABB mode ``voxel`` (one box per voxel) and ``brick`` (one box per solid 8x8x8 brick);
- **load_vox + AABB BLAS**: the same, then ``build_acceleration_structures()`` (one AABB BLAS per model, compacted,
  and the scene's one-instance TLAS), waited for;
- **cached**: ``load_vox`` of the file again while its entry is cached (parse + content hash, no upload).

Each number is the median of ``--runs`` timed runs after one warm-up; every cold run starts from an empty cache (the
voxel, voxel-AABB and acceleration-structure cachers are cleared and retired GPU objects destroyed between runs, or a
new device per run with ``--fresh-device``). Validation is off. The first run of each variant reads back the ``meta``
buffer and checks the counts. Voxels/s = the file's voxel count / median seconds.

Usage: ``python benchmarks/bench_voxels.py [--quick] [--runs N] [--file PATH] [--device I] [--fresh-device]
[--json PATH]`` (default JSON: ``benchmarks/results/voxels.json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vixen_assets.cachers.voxel import VoxelSource, _scene_arrays  # noqa: E402
from vixen_assets.device import open_device  # noqa: E402
from vixen_assets.formats.vox import read_vox  # noqa: E402
from vixen_assets.voxels import load_vox  # noqa: E402

DEFAULT_FILE = "mmmm_scene_store8.vox"
CACHERS = ("voxel", "voxel-aabb", "accel")


def find_sample(name: str = DEFAULT_FILE) -> Path:
    """The shared sample: ``$VIXEN_SHARED_ASSETS/vox/<name>`` or ``<repo>/../shared/assets/vox/<name>``."""
    env = os.environ.get("VIXEN_SHARED_ASSETS")
    root = Path(env) if env else REPO.parent / "shared" / "assets"
    path = root / "vox" / name
    if not path.is_file():
        raise SystemExit(f"bench_voxels: {path} not found (set VIXEN_SHARED_ASSETS or pass --file)")
    return path


def reset(device: Any) -> None:
    """Empty every voxel-related cache and destroy what was retired, so the next load starts cold."""
    for name in CACHERS:
        cacher = device.cachers.get(name)
        if cacher is not None:
            cacher.clear()
    device.context.lifetime.drain()
    gc.collect()


def median_run(runs: int, fn: Callable[[], float]) -> list[float]:
    """One warm-up call, then ``runs`` timed calls; ``fn`` returns its own measured seconds."""
    fn()
    return [fn() for _ in range(runs)]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.path = Path(args.file) if args.file else find_sample()
        self.vox = read_vox(self.path)
        self.voxels = self.vox.voxel_count
        self.rows: list[dict[str, Any]] = []
        self.device = self._open()
        self.checked: set[str] = set()

    def _open(self) -> Any:
        return open_device(self.args.device, validation=False)

    def fresh(self) -> None:
        """Start the next cold run: a cleared cache, or a new device with ``--fresh-device``."""
        if self.args.fresh_device:
            self.device.close()
            self.device = self._open()
        else:
            reset(self.device)

    def row(self, what: str, kind: str, times: list[float], gpu_bytes: int = 0, **extra: Any) -> None:
        med = statistics.median(times)
        self.rows.append({
            "what": what, "kind": kind, "runs": len(times), "median_s": med, "min_s": min(times), "max_s": max(times),
            "voxels": self.voxels, "voxels_per_s": self.voxels / med if med > 0 else None, "gpu_bytes": gpu_bytes,
            **extra,
        })

    def check(self, label: str, scene: Any, mode: str) -> None:
        """Once per variant: the GPU's meta buffer holds the file's counts."""
        if label in self.checked:
            return
        meta = self.device.read_buffer(scene.buffer_objects["meta"]).view(np.uint32)
        n_aabbs = sum(m.aabb_count for m in scene.entry.models)
        want = [len(self.vox.models), meta[1], meta[2], n_aabbs, self.voxels, 1 if mode == "voxel" else 0]
        if meta[:6].tolist() != [int(w) for w in want] or (mode == "voxel" and n_aabbs != self.voxels):
            raise SystemExit(f"bench_voxels: {label}: GPU meta {meta[:6].tolist()} != expected {want}")
        self.checked.add(label)

    # -- variants ------------------------------------------------------------------------------------------------
    def floors(self) -> None:
        path = str(self.path)

        def read_bytes() -> float:
            t = time.perf_counter()
            with open(path, "rb") as fh:
                fh.read()
            return time.perf_counter() - t

        def parse() -> float:
            t = time.perf_counter()
            read_vox(path)
            return time.perf_counter() - t

        runs = self.args.runs
        self.row("floor: file read (open + read)", "floor", median_run(runs * 3, read_bytes))
        self.row("floor: parse (read_vox, file -> numpy)", "floor", median_run(runs * 3, parse))
        for mode in ("voxel", "brick"):
            src = VoxelSource.from_vox(self.vox, path=path, aabb_mode=mode)

            def layout(src: VoxelSource = src) -> float:
                t = time.perf_counter()
                _scene_arrays(src)
                return time.perf_counter() - t

            self.row(f"layout: buffer arrays on the CPU ({mode} AABBs)", "cpu", median_run(runs * 3, layout))

    def load(self, mode: str, blas: bool) -> None:
        label = f"load_vox ({mode} AABBs)" + (" + AABB BLAS" if blas else "")
        gpu = {"bytes": 0, "blas_bytes": 0}
        blas_times: list[float] = []

        def once() -> float:
            self.fresh()
            dev = self.device
            t = time.perf_counter()
            scene = load_vox(self.path, dev, aabb_mode=mode)
            t_loaded = time.perf_counter()
            if blas:
                scene.build_acceleration_structures()  # waits for the build
            t_end = time.perf_counter()
            blas_times.append(t_end - t_loaded)
            gpu["bytes"] = scene.entry.nbytes
            if blas:
                gpu["blas_bytes"] = dev.cachers["voxel-aabb"].stats.bytes
            self.check(label, scene, mode)
            scene.release()
            return t_end - t

        times = median_run(self.args.runs, once)
        extra = {"blas_bytes": gpu["blas_bytes"], "blas_median_s": statistics.median(blas_times[1:])} if blas else {}
        self.row(label + ": file -> GPU-resident", "gpu", times, gpu["bytes"], mode=mode, **extra)

    def cached(self) -> None:
        self.fresh()
        keep = load_vox(self.path, self.device)

        def once() -> float:
            t = time.perf_counter()
            scene = load_vox(self.path, self.device)
            dt = time.perf_counter() - t
            scene.release()
            return dt

        try:
            self.row("load_vox again while cached (dedup hit: parse + hash)", "cached",
                     median_run(self.args.runs * 3, once), keep.entry.nbytes)
        finally:
            keep.release()

    def run(self) -> dict[str, Any]:
        try:
            self.floors()
            for blas in (False, True):
                for mode in ("voxel", "brick"):
                    self.load(mode, blas)
            self.cached()
            name = self.device.name
        finally:
            self.device.close()
        parse = next(r["median_s"] for r in self.rows if r["what"].startswith("floor: parse"))
        for r in self.rows:
            r["x_parse"] = r["median_s"] / parse if parse > 0 else None
        return {
            "benchmark": "voxels", "device": name, "validation": False, "quick": self.args.quick,
            "python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
            "file": self.path.name, "file_bytes": self.path.stat().st_size, "voxels": self.voxels,
            "models": len(self.vox.models), "size": list(self.vox.models[0].size) if self.vox.models else [],
            "runs": self.args.runs, "fresh_device": self.args.fresh_device, "rows": self.rows,
        }


def print_table(result: dict[str, Any]) -> None:
    print(f"\nvoxels: {result['file']} ({result['file_bytes'] / 1e6:.2f} MB, {result['voxels']:,} voxels, "
          f"{result['models']} model(s)) on {result['device']}; median of {result['runs']} run(s) "
          f"(floors/layout/cached: {3 * result['runs']}), validation off\n")
    head = f"{'what':<62} {'median ms':>10} {'min ms':>8} {'Mvoxels/s':>10} {'x parse':>8} {'GPU MiB':>8}"
    print(head)
    print("-" * len(head))
    for r in result["rows"]:
        gpu = f"{r['gpu_bytes'] / (1 << 20):.1f}" if r["gpu_bytes"] else "-"
        print(f"{r['what']:<62} {1e3 * r['median_s']:>10.2f} {1e3 * r['min_s']:>8.2f} "
              f"{r['voxels_per_s'] / 1e6:>10.1f} {r['x_parse']:>8.1f} {gpu:>8}")
    blas = [r for r in result["rows"] if r.get("blas_bytes")]
    for r in blas:
        print(f"  {r['mode']} mode: the BLAS build (+ 1-instance TLAS) takes {1e3 * r['blas_median_s']:.2f} ms of it "
              f"(median), {r['blas_bytes'] / (1 << 20):.1f} MiB of BLAS")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 runs per variant (a smoke run)")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per variant (default 9, quick 3)")
    ap.add_argument("--file", default=None, help=f".vox file (default: the shared {DEFAULT_FILE})")
    ap.add_argument("--device", default=None, help="device index or name substring (default: VIXEN_DEVICE or 0)")
    ap.add_argument("--fresh-device", action="store_true", help="open a new device for every cold run")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "voxels.json"), help="output JSON path")
    args = ap.parse_args(argv)
    if args.runs is None:
        args.runs = 3 if args.quick else 9
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    result = Bench(args).run()
    print_table(result)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
