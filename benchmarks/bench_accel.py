"""Acceleration-structure benchmark: BLAS build rate and compaction, TLAS build/refit, trace throughput per backend.

On a generated scene (default: ``samples/generate_scene.py`` with 1,000 meshes and 1,000,000 triangles, cached
under ``benchmarks/results/`` as ``bench_prepare.py`` does) loaded with ``load_stage`` (meshes only), it reports,
best of ``--repeat`` runs after a warm-up run, validation off:

- **BLAS build** over every unique mesh with ``build_blases`` (batched, scratch pool, one command buffer per
  batch), without and with compaction: million triangles per second (wall time: size queries, allocation,
  build, wait; with compaction also the size query, the compact copies and the frees).
- **compaction**: bytes before and after, percent saved, and the transient peak of the ``accel`` budget category
  while originals and compact copies coexist (the library's ``AccelStats.transient_peak_bytes``, and the
  budget's own peak for that category).
- **floor**: uploading the same vertex + index bytes (read back from the GPU) with the device's uploader, as one
  buffer and as one vertex and one index buffer per mesh (created, enqueued, one flush): the cost of just getting
  the geometry onto the device, to set the BLAS build beside.
- **TLAS** over ``--instances`` (10,000) placements of those BLASes: build (allocation + instance upload + build),
  ``refit`` to new transforms, and a full ``rebuild``.
- **tracing**: ``trace_rays`` through the scene's own TLAS (``Scene.build_acceleration_structures``, the
  cacher path, also timed) for ``--rays`` (1,000,000) random rays with each backend, one after the other on the
  same rays: ray queries (compute shader) and the ray-tracing pipeline (``vkCmdTraceRaysKHR``). Mrays/s end to end
  (upload rays, trace, read back, map hits), the two side by side, and the share of identical answers. Where the
  device lacks a backend (NVIDIA: no ray queries), or tracing fails, that is caught and reported.

Writes a table and ``benchmarks/results/accel-<device>[-quick].json``.

Usage: ``python benchmarks/bench_accel.py [--quick] [--scene PATH] [--meshes N] [--triangles N] [--instances N]
[--rays N] [--repeat N] [--device I] [--json PATH]``
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import re
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vixen_assets.accel import AccelStats, Tlas, accel_cacher, build_blases  # noqa: E402
from vixen_assets.accel import geometries_for_mesh as _geometries_for_mesh  # noqa: E402
from vixen_assets.cachers.mesh import MESH_USAGE  # noqa: E402
from vixen_assets.device import open_device  # noqa: E402
from vixen_assets.memory.group import AllocationGroup  # noqa: E402
from vixen_assets.trace import trace_rays  # noqa: E402

BACKENDS = ("ray_query", "pipeline")  # trace_rays backends: compute + ray queries, ray-tracing pipeline
from vixen_assets.usd.walker import load_stage  # noqa: E402

MiB = 1 << 20


def slug(name: str) -> str:
    """``llvmpipe (LLVM 15.0.6, 256 bits)`` -> ``llvmpipe``; ``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``."""
    base = name.split("(")[0].strip() or name
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or "device"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_scene", ROOT / "samples" / "generate_scene.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(fn: Callable[[], Any], repeat: int, *, after: Callable[[Any], None] | None = None,
          warmup: bool = True) -> tuple[float, float, Any]:
    """(best, median, last result) of ``repeat`` runs of ``fn`` after a warm-up; ``after(result)`` runs untimed
    after each run (cleanup) except the last."""
    times = []
    result = None
    for k in range(repeat + (1 if warmup else 0)):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        if k or not warmup:
            times.append(elapsed)
        if after is not None and k < repeat + (1 if warmup else 0) - 1:
            after(result)
    return min(times), statistics.median(times), result


def random_transforms(n: int, rng: np.random.Generator, spread: float) -> np.ndarray:
    """Random rotation x uniform scale + translation, (n, 4, 4) float32 column-vector matrices."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    r = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                  2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                  2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=1).reshape(n, 3, 3)
    out = np.zeros((n, 4, 4), np.float32)
    out[:, :3, :3] = r * rng.uniform(0.5, 1.5, (n, 1, 1))
    out[:, :3, 3] = rng.uniform(-spread, spread, (n, 3))
    out[:, 3, 3] = 1
    return out


def random_rays(lo: np.ndarray, hi: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rays from random points of a sphere around the bounds towards random points inside them."""
    rng = np.random.default_rng(seed)
    c = (lo + hi) / 2
    u = rng.normal(size=(n, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    o = c + (0.5 * float(np.linalg.norm(hi - lo)) * 1.25 + 1e-3) * u
    d = lo + rng.random((n, 3)) * (hi - lo) - o
    return o.astype(np.float32), d.astype(np.float32)


def device_info(device: Any) -> dict[str, Any]:
    info = device.info
    return {"name": info.name, "type": info.device_type, "driver": info.driver, "api_version": info.api_version,
            "unified_memory": info.unified_memory,
            "acceleration_structure": bool(device.features.get("acceleration_structure")),
            "ray_query": bool(device.features.get("ray_query")),
            "ray_tracing_pipeline": bool(device.features.get("ray_tracing_pipeline")),
            "heaps": [{"index": i, "size": h.size, "device_local": h.device_local} for i, h in enumerate(info.heaps)]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.scene:
        scene_path = Path(args.scene)
    else:
        scene_path = ROOT / "benchmarks" / "results" / f"bench_{args.meshes}m_{args.triangles}t.usdc"
        if not scene_path.exists():
            scene_path.parent.mkdir(parents=True, exist_ok=True)
            print(f"generating {scene_path.name} ({args.meshes} meshes, {args.triangles} triangles)...", flush=True)
            _generator().generate_scene(scene_path, meshes=args.meshes, triangles=args.triangles, seed=0)
    device = open_device(args.device, validation=False)
    result: dict[str, Any] = {"benchmark": "accel", "quick": args.quick, "device": device_info(device),
                              "host": {"python": platform.python_version(), "machine": platform.machine(),
                                       "cpus": os.cpu_count()},
                              "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                              "scene": str(scene_path.relative_to(ROOT) if scene_path.is_relative_to(ROOT)
                                           else scene_path)}
    rows: list[dict[str, Any]] = []
    result["rows"] = rows
    try:
        d = result["device"]
        print(f"device: {d['name']} ({d['type']}, {d['driver']}, Vulkan {d['api_version']}); "
              f"acceleration structures: {'yes' if d['acceleration_structure'] else 'NO'}; "
              f"ray queries: {'yes' if d['ray_query'] else 'no'}; ray-tracing pipelines: "
              f"{'yes' if d['ray_tracing_pipeline'] else 'no'}", flush=True)
        if not d["acceleration_structure"]:
            result["error"] = "device has no VK_KHR_acceleration_structure"
            return result
        t0 = time.perf_counter()
        scene = load_stage(scene_path, device)
        load_s = time.perf_counter() - t0
        meshes = list({id(i.mesh): i.mesh for i in scene.instances if hasattr(i.mesh, "index_buffer")}.values())
        tris = int(sum(m.triangle_count for m in meshes))
        geom_bytes = int(sum(m.vertex_count * m.stride + m.index_count * np.dtype(m.index_dtype).itemsize
                             for m in meshes))
        result["geometry"] = {"unique_meshes": len(meshes), "instances": len(scene.instances), "triangles": tris,
                              "placed_triangles": scene.triangle_count, "vertex_index_bytes": geom_bytes,
                              "load_stage_seconds": load_s}
        print(f"scene: {result['scene']}: {len(scene.instances)} instances of {len(meshes)} unique meshes (identical "
              f"generated meshes share one); {tris:,} unique triangles ({scene.triangle_count:,} placed), "
              f"{geom_bytes / MiB:.1f} MiB vertices+indices (load_stage {load_s:.2f} s)", flush=True)

        def row(name: str, best: float, median: float, **extra: Any) -> dict[str, Any]:
            r = {"what": name, "best_s": best, "median_s": median, **extra}
            rows.append(r)
            return r

        # ---- floor: the same bytes through the uploader
        blobs = []
        for m in meshes:
            vb = np.asarray(device.read_buffer(m.vertex_buffer, m.vertex_count * m.stride))
            ib = np.asarray(device.read_buffer(m.index_buffer, m.index_count * np.dtype(m.index_dtype).itemsize))
            blobs.append((vb, ib))
        whole = np.concatenate([b for pair in blobs for b in pair])
        one = device.create_buffer(len(whole), MESH_USAGE, name="floor-one", category="bench")
        try:
            best, med, _ = timed(lambda: device.upload(one, whole), args.repeat)
        finally:
            one.destroy()
        row("floor: upload vertex+index bytes, one buffer", best, med, bytes=len(whole),
            gbps=len(whole) / best / 1e9, mtris_per_s=tris / best / 1e6)

        def per_mesh() -> AllocationGroup:
            g = device.allocation_group()
            for vb, ib in blobs:
                device.uploader.enqueue(g.create_buffer(len(vb), MESH_USAGE, category="bench"), vb)
                device.uploader.enqueue(g.create_buffer(len(ib), MESH_USAGE, category="bench"), ib)
            device.uploader.flush().wait()
            return g

        best, med, g = timed(per_mesh, args.repeat, after=lambda g: g.rollback())
        g.rollback()
        row(f"floor: upload per mesh ({2 * len(meshes)} buffers created + enqueued, one flush)", best, med,
            bytes=len(whole), gbps=len(whole) / best / 1e9, mtris_per_s=tris / best / 1e6)
        del blobs, whole

        # ---- BLAS builds
        items = [(m.prim_path or m.key[:12], _geometries_for_mesh(m)) for m in meshes]

        def build(compact: bool) -> tuple[AllocationGroup, list[Any], AccelStats]:
            stats = AccelStats()
            group = device.allocation_group()
            out = build_blases(device, items, group, compact=compact, stats=stats)
            return group, out, stats

        def drop(res: tuple[AllocationGroup, list[Any], AccelStats]) -> None:
            for b in res[1]:
                b.destroy()
            device.context.lifetime.drain()

        best, med, res = timed(lambda: build(False), args.repeat, after=drop)
        plain_bytes = sum(b.nbytes for b in res[1])
        drop(res)
        row("BLAS build, no compaction", best, med, mtris_per_s=tris / best / 1e6, batches=res[2].batches,
            scratch_bytes=res[2].scratch_bytes, blas_bytes=plain_bytes)
        device.budget.reset_stats()
        best, med, res = timed(lambda: build(True), args.repeat, after=drop)
        st: AccelStats = res[2]
        accel_peak = device.budget.stats()["categories"].get("accel", {}).get("peak", 0)
        blases = res[1]
        saved = st.bytes_before_compaction - st.bytes_after_compaction
        row("BLAS build + compaction", best, med, mtris_per_s=tris / best / 1e6, batches=st.batches,
            scratch_bytes=st.scratch_bytes)
        result["compaction"] = {
            "bytes_before": st.bytes_before_compaction, "bytes_after": st.bytes_after_compaction,
            "saved_percent": 100.0 * saved / st.bytes_before_compaction if st.bytes_before_compaction else 0.0,
            "transient_peak_bytes": st.transient_peak_bytes, "budget_accel_peak_bytes": accel_peak,
            "per_blas_grew": int(sum(a > b for b, a in st.per_blas)),
            "uncompacted_build_bytes": plain_bytes}
        c = result["compaction"]
        print(f"compaction: {c['bytes_before'] / MiB:.2f} MiB -> {c['bytes_after'] / MiB:.2f} MiB "
              f"({c['saved_percent']:.1f}% saved); transient peak {c['transient_peak_bytes'] / MiB:.2f} MiB "
              f"(budget 'accel' peak {accel_peak / MiB:.2f} MiB)", flush=True)

        # ---- TLAS over many placements
        rng = np.random.default_rng(1)
        spread = 10.0 * max(1.0, args.instances ** (1 / 3))
        placements = random_transforms(args.instances, rng, spread)
        moved = placements.copy()
        moved[:, :3, 3] += rng.normal(scale=0.05 * spread, size=(args.instances, 3)).astype(np.float32)
        chosen = [blases[k % len(blases)] for k in range(args.instances)]
        best, med, tlas = timed(lambda: Tlas(device, chosen, placements, name="bench-tlas"), args.repeat,
                                after=lambda t: t.destroy())
        row(f"TLAS build, {args.instances:,} instances (alloc + instance upload + build)", best, med,
            instances=args.instances, tlas_bytes=tlas.nbytes)
        try:
            flip = [moved, placements]
            counter = iter(range(1 << 30))
            best, med, _ = timed(lambda: tlas.refit(flip[next(counter) % 2]), args.repeat)
            row(f"TLAS refit, {args.instances:,} instances (instance upload + update)", best, med,
                instances=args.instances)
            best, med, _ = timed(lambda: tlas.rebuild(flip[next(counter) % 2]), args.repeat)
            row(f"TLAS rebuild, {args.instances:,} instances (instance upload + build)", best, med,
                instances=args.instances)
        finally:
            tlas.destroy()
        for b in blases:
            b.destroy()
        device.context.lifetime.drain()

        # ---- ray queries through the scene's own TLAS
        t0 = time.perf_counter()
        scene.build_acceleration_structures()
        row("Scene.build_acceleration_structures (cacher: BLAS + compaction + TLAS)", time.perf_counter() - t0,
            time.perf_counter() - t0, mtris_per_s=tris / (time.perf_counter() - t0) / 1e6)
        lo, hi = scene.bounds
        o, dirs = random_rays(np.asarray(lo, np.float64), np.asarray(hi, np.float64), args.rays, 7)
        result["trace"] = {}
        answers: dict[str, dict[str, np.ndarray]] = {}
        for backend in BACKENDS:  # the same rays through each backend, one after the other in this run
            trace: dict[str, Any] = {"rays": args.rays, "ran": False, "backend": backend}
            result["trace"][backend] = trace
            try:
                trace_rays(scene, o[:4096], dirs[:4096], backend=backend)  # warm-up: pipeline creation, first trace
                times = []
                hits: dict[str, np.ndarray] = {}
                for _ in range(args.repeat):  # a software tracer can take seconds per million rays: cap the total
                    gc.collect()
                    start = time.perf_counter()
                    hits = trace_rays(scene, o, dirs, backend=backend)
                    times.append(time.perf_counter() - start)
                    if sum(times) > 20.0:
                        break
                best, med = min(times), statistics.median(times)
                trace.update(ran=True, hit_fraction=float(hits["hit"].mean()), mrays_per_s=args.rays / best / 1e6,
                             timed_runs=len(times))
                sample = np.nonzero(hits["hit"])[0][:1000]
                # sanity: the hit points lie on the reported triangles' planes (cheap plausibility check)
                trace["sane"] = bool(_plausible(device, scene, o, dirs, hits, sample))
                answers[backend] = hits
                row(f"trace_rays [{backend}], {args.rays:,} rays (upload, trace, readback; {len(times)} run(s))",
                    best, med, mrays_per_s=args.rays / best / 1e6,
                    hit_fraction=trace["hit_fraction"], backend=backend)
            except Exception as exc:  # the device lacks the backend, or the driver failed: report, don't stop
                trace["error"] = f"{type(exc).__name__}: {exc}"
                trace["traceback"] = traceback.format_exc(limit=3)
            print(f"trace_rays [{backend}]: {'RAN' if trace['ran'] else 'did not run'} on {d['name']}"
                  + (f" ({trace['hit_fraction'] * 100:.1f}% of rays hit, hits plausible: {trace['sane']})"
                     if trace["ran"] else f": {trace.get('error')}"), flush=True)
        result["ray_query"] = result["trace"]["ray_query"]  # the key earlier results used
        if len(answers) == 2:  # the backends beside each other: same answers?
            a, b = answers.values()
            result["trace_agreement"] = {k: float((a[k] == b[k]).mean()) for k in ("hit", "instance", "primitive")}
        scene.release()
        result["accel_stats_cacher"] = {k: v for k, v in vars(accel_cacher(device).accel_stats).items()
                                        if k != "per_blas"}
    finally:
        device.close()
    return result


def _plausible(device: Any, scene: Any, o: np.ndarray, d: np.ndarray, hits: dict[str, np.ndarray],
               sample: np.ndarray) -> bool:
    """The hit points of ``sample`` rays lie on the planes of the triangles reported (relative 1e-3)."""
    if not len(sample):
        return True
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    ok = 0
    for k in sample:
        inst = scene.instances[hits["instance"][k]]
        m = inst.mesh
        if id(m) not in cache:
            off, _fmt, stride = m.layout["position"]
            raw = np.asarray(device.read_buffer(m.vertex_buffer, m.vertex_count * stride))
            pos = raw.reshape(m.vertex_count, stride)[:, off:off + 12].copy().view("<f4").reshape(-1, 3)
            isz = np.dtype(m.index_dtype).itemsize
            idx = np.asarray(device.read_buffer(m.index_buffer, m.index_count * isz)).view(m.index_dtype)
            cache[id(m)] = (pos.astype(np.float64), idx.astype(np.int64).reshape(-1, 3))
        pos, tri = cache[id(m)]
        v = pos[tri[hits["primitive"][k]]] @ inst.transform[:3, :3].T.astype(np.float64) + inst.transform[:3, 3]
        p = o[k].astype(np.float64) + hits["t"][k] * d[k].astype(np.float64)
        n = np.cross(v[1] - v[0], v[2] - v[0])
        size = np.linalg.norm(v - v.mean(0), axis=1).max() + 1e-30
        ok += abs(np.dot(p - v[0], n / (np.linalg.norm(n) + 1e-300))) <= 1e-3 * max(size, 1e-3 * np.linalg.norm(p))
    return ok == len(sample)


def table(result: dict[str, Any]) -> str:
    lines = [f"{'what':<78} {'best':>10} {'median':>10}  rate"]
    for r in result.get("rows", []):
        rate = ""
        if "mtris_per_s" in r and "gbps" not in r:
            rate = f"{r['mtris_per_s']:.2f} Mtri/s"
        if "gbps" in r:
            rate = f"{r['gbps']:.2f} GB/s (= {r['mtris_per_s']:.1f} Mtri/s of geometry)"
        if "mrays_per_s" in r:
            rate = f"{r['mrays_per_s']:.3f} Mrays/s, {100 * r['hit_fraction']:.1f}% hit"
        lines.append(f"{r['what']:<78} {r['best_s'] * 1e3:>8.1f}ms {r['median_s'] * 1e3:>8.1f}ms  {rate}")
    c = result.get("compaction")
    if c:
        lines.append(f"compaction: {c['bytes_before']:,} -> {c['bytes_after']:,} bytes, {c['saved_percent']:.1f}% "
                     f"saved; transient peak {c['transient_peak_bytes']:,} bytes (originals + compact copies); "
                     f"BLASes that grew: {c['per_blas_grew']}")
    traces = result.get("trace") or ({"ray_query": result["ray_query"]} if "ray_query" in result else {})
    if traces:
        parts = [f"{b} {t['mrays_per_s']:.3f} Mrays/s" if t["ran"] else f"{b} did not run ({t.get('error')})"
                 for b, t in traces.items()]
        lines.append(f"trace_rays backends on {result['device']['name']}, same rays: " + " | ".join(parts))
        ran = [t for t in traces.values() if t["ran"]]
        if len(ran) == 2:
            agree = result.get("trace_agreement", {})
            lines.append(f"pipeline / ray_query throughput: {ran[1]['mrays_per_s'] / ran[0]['mrays_per_s']:.2f}x; "
                         "answers identical on " + ", ".join(f"{100 * v:.2f}% ({k})" for k, v in agree.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run (50 meshes, 50k triangles, ...)")
    ap.add_argument("--scene", help="USD file (default: generate one with samples/generate_scene.py)")
    ap.add_argument("--meshes", type=int, default=None, help="generated scene: unique meshes (default 1000)")
    ap.add_argument("--triangles", type=int, default=None, help="generated scene: triangles (default 1,000,000)")
    ap.add_argument("--instances", type=int, default=None, help="TLAS instances (default 10,000)")
    ap.add_argument("--rays", type=int, default=None, help="rays traced (default 1,000,000)")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs after a warm-up (default 3)")
    ap.add_argument("--device", default=None, help="device index or name substring")
    ap.add_argument("--json", type=Path, default=None,
                    help="output path (default benchmarks/results/accel-<device>[-quick].json)")
    args = ap.parse_args(argv)
    quick = dict(meshes=50, triangles=50_000, instances=1000, rays=65_536, repeat=1)
    full = dict(meshes=1000, triangles=1_000_000, instances=10_000, rays=1_000_000, repeat=3)
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    result = run(args)
    print()
    print(table(result))
    path = args.json or (ROOT / "benchmarks" / "results" /
                         f"accel-{slug(result['device']['name'])}{'-quick' if args.quick else ''}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"\nwrote {path}")
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
