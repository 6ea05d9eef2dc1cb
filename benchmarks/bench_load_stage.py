"""Benchmark ``load_stage``: cold load to GPU-resident and warm reload, beside the floor of reading the same
attributes with pxr alone (no GPU), all measured in the same run.

Scenes, generated with ``samples/generate_scene.py`` into a temporary directory as ``.usdc``:

- ``meshes``: about 1M triangles over 1,000 unique meshes (``--meshes 1000 --triangles 1000000``);
- ``instances``: 10,000 instances of 100 meshes (``--mode pointinstancer`` by default; ``--instance-mode
  instanceable`` uses instanceable references instead, whose generation takes minutes at this size);
- ``chess``: the production-shaped scene of ``samples/generate_chess.py``: 12 chess sets referenced into a room,
  each piece an asset of geometry, look and payload layers, pieces instanced natively, GeomSubsets and UVs, 1.51M
  placed triangles (target: cold <= 2x the floor).

``--quick`` uses small scenes (a smoke run). Rows, each the median of ``--repeat`` (default 3) repetitions, every
repetition in a fresh process (so nothing of pxr's or the library's state carries over) with pxr's plugins warmed
up on a throwaway in-memory stage first:

- **floor**: ``Usd.Stage.Open`` plus reading into numpy what the loader must read: for every unique mesh (plain
  meshes and those inside native-instancing prototypes, each once) ``points``, ``faceVertexCounts``,
  ``faceVertexIndices``, ``normals`` and the ``st`` primvar (values and indices); the world matrix of every mesh and
  instance prim from one ``UsdGeom.XformCache``; every point instancer's ``ComputeInstanceTransformsAtTime``.
- **cold**: ``load_stage`` on a device opened fresh in that process (validation off), until the scene is
  GPU-resident (``load_stage`` returns after the upload fence). The process's one-time set-up (imports, the plugin
  manager and its cacher registry) happens before, as pxr's plugin loading does for the floor.
- **warm**: ``load_stage`` of the same file again on the same device (a reload from the cache).

Targets: cold <= 1.5x the floor (2x for ``chess``); warm <= 5% of cold (PASS/MISS printed with the ratio); the
cold/floor ratio of process CPU time (all threads) is printed too, steadier than wall time on a shared machine.
One more cold load per scene runs under cProfile; its top functions are printed (``--no-profile`` skips it) and
stored in the JSON. ``VIXEN_PREPARE_THREADS`` (default: cores - 2, up to 8; 1 below 4 cores) sets the threads that
prepare meshes, and above 1 turns on preparing while reading (``vixen_assets/geometry/pipeline.py``).

Usage::

    .venv/bin/python benchmarks/bench_load_stage.py                 # full run -> benchmarks/results/load_stage.json
    .venv/bin/python benchmarks/bench_load_stage.py --quick --json /tmp/q.json
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.util
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COLD_TARGET = 1.5   # cold <= 1.5x floor
COLD_TARGETS = {"chess": 2.0}  # the production-shaped scene: cold <= 2x its floor
WARM_TARGET = 0.05  # warm <= 5% of cold (issue 16)

FULL = {
    "meshes": dict(meshes=1000, triangles=1_000_000, instances=0, mode="xform"),
    "instances": dict(meshes=100, triangles=100_000, instances=10_000, mode="pointinstancer"),
    "chess": dict(sets=12, detail=1.0),
}
QUICK = {
    "meshes": dict(meshes=50, triangles=50_000, instances=0, mode="xform"),
    "instances": dict(meshes=10, triangles=10_000, instances=500, mode="pointinstancer"),
    "chess": dict(sets=2, detail=0.25),
}


def _generator(name: str = "generate_scene") -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "samples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------------------------
# Worker side (one fresh process per repetition)
# ----------------------------------------------------------------------------------------------------------------
def _warm_up_pxr() -> None:
    """Load pxr's plugins (schemas, file formats) outside the timings, as any long-lived process has them."""
    from pxr import Sdf, Usd, UsdGeom, UsdShade

    stage = Usd.Stage.CreateInMemory("warmup.usda")
    mesh = UsdGeom.Mesh.Define(stage, "/m")
    mesh.CreatePointsAttr([(0, 0, 0), (1, 0, 0), (0, 1, 0)])
    UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray).Set([(0, 0)] * 3)
    UsdShade.MaterialBindingAPI(mesh.GetPrim()).ComputeBoundMaterial()
    UsdGeom.XformCache().GetLocalToWorldTransform(mesh.GetPrim())
    UsdGeom.PointInstancer.Define(stage, "/pi")
    layer = Sdf.Layer.CreateAnonymous(".usdc")
    layer.TransferContent(stage.GetRootLayer())


def pxr_floor(path: str) -> dict[str, int]:
    """Open the stage and read what a loader must read into numpy; returns counts (for the table)."""
    import numpy as np
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(path, Usd.Stage.LoadAll)
    tc = Usd.TimeCode.Default()
    xfc = UsdGeom.XformCache(tc)
    arrays: list[Any] = []
    counts = {"meshes": 0, "xforms": 0, "instancer_points": 0}

    def read_mesh(prim: Any) -> None:
        mesh = UsdGeom.Mesh(prim)
        st = UsdGeom.PrimvarsAPI(prim).GetPrimvar("st")
        for value in (mesh.GetPointsAttr().Get(tc), mesh.GetFaceVertexCountsAttr().Get(tc),
                      mesh.GetFaceVertexIndicesAttr().Get(tc), mesh.GetNormalsAttr().Get(tc),
                      st.GetAttr().Get(tc) if st else None, st.GetIndicesAttr().Get(tc) if st else None):
            if value is not None:
                arrays.append(np.asarray(value))
        counts["meshes"] += 1

    roots = [stage.GetPseudoRoot(), *stage.GetPrototypes()]
    for r, root in enumerate(roots):
        it = iter(Usd.PrimRange(root))
        for prim in it:
            if prim.IsInstance():
                if r == 0:
                    arrays.append(np.array(xfc.GetLocalToWorldTransform(prim)))
                    counts["xforms"] += 1
                it.PruneChildren()
            elif prim.IsA(UsdGeom.PointInstancer):
                xforms = UsdGeom.PointInstancer(prim).ComputeInstanceTransformsAtTime(tc, tc)
                arrays.append(np.asarray(xforms))
                counts["instancer_points"] += len(xforms)
                if r == 0:
                    arrays.append(np.array(xfc.GetLocalToWorldTransform(prim)))
                # prototypes below the instancer are read once like any mesh (no PruneChildren)
            elif prim.IsA(UsdGeom.Mesh):
                read_mesh(prim)
                if r == 0:
                    arrays.append(np.array(xfc.GetLocalToWorldTransform(prim)))
                    counts["xforms"] += 1
    counts["bytes"] = int(sum(a.nbytes for a in arrays))
    return counts


def _time_floor(path: str) -> tuple[float, dict[str, int], float]:
    gc.collect()
    c0 = time.process_time()
    t0 = time.perf_counter()
    counts = pxr_floor(path)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    gc.collect()
    return dt, counts, cpu


def _time_load(path: str) -> dict[str, Any]:
    from vixen_assets import load_stage, open_device

    dev = open_device(validation=False)
    try:
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        scene = load_stage(path, dev)
        cold = time.perf_counter() - t0
        cold_cpu = time.process_time() - c0
        try:
            gc.collect()
            t0 = time.perf_counter()
            again = load_stage(path, dev)
            warm = time.perf_counter() - t0
            try:
                assert again.stats.warm and len(again.instances) == len(scene.instances)
                out = {"cold_s": cold, "warm_s": warm, "cold_cpu_s": cold_cpu, "phases": dict(scene.stats.seconds),
                       "instances": len(scene.instances), "unique_meshes": len(scene.meshes),
                       "triangles": scene.triangle_count, "bytes_uploaded": scene.stats.bytes_uploaded,
                       "prims_visited": scene.stats.prims_visited, "warnings": len(scene.warnings),
                       "peak_budget_bytes": dev.budget.peak, "device": dev.name}
            finally:
                again.release()
        finally:
            scene.release()
    finally:
        dev.close()
    return out


def _profile_load(path: str, top: int) -> dict[str, Any]:
    from vixen_assets import load_stage, open_device

    dev = open_device(validation=False)
    try:
        prof = cProfile.Profile()
        prof.enable()
        scene = load_stage(path, dev)
        prof.disable()
        scene.release()
    finally:
        dev.close()
    out: dict[str, Any] = {}
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(top)
        out[key] = buf.getvalue()
    stats = pstats.Stats(prof).sort_stats("tottime")
    rows = []
    table = stats.stats  # type: ignore[attr-defined]
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in table.items():
        rows.append({"function": f"{Path(file).name}:{line}({func})", "ncalls": ncalls, "tottime": tottime,
                     "cumtime": cumtime})
    rows.sort(key=lambda r: -r["tottime"])
    out["top_tottime"] = rows[:top]
    return out


def worker(args: argparse.Namespace) -> int:
    os.environ["VIXEN_VALIDATION"] = "0"
    _warm_up_pxr()
    # process-wide, once-only set-up outside the timings too: imports, the plugin manager and its cacher registry
    from vixen_assets.plugins import cacher_registry, default_plugin_manager

    cacher_registry(default_plugin_manager())

    result: dict[str, Any] = {}
    if args.worker == "profile":
        result["profile"] = _profile_load(args.scene, args.top)
    else:
        # alternate the order between repetitions so neither side always finds the file warmer
        if args.order == "floor-first":
            result["floor_s"], result["floor_counts"], result["floor_cpu_s"] = _time_floor(args.scene)
            result.update(_time_load(args.scene))
        else:
            result.update(_time_load(args.scene))
            result["floor_s"], result["floor_counts"], result["floor_cpu_s"] = _time_floor(args.scene)
    print("RESULT " + json.dumps(result))
    return 0


# ----------------------------------------------------------------------------------------------------------------
# Driver side
# ----------------------------------------------------------------------------------------------------------------
def _run_worker(scene: Path, mode: str, *, order: str = "floor-first", top: int = 25) -> dict[str, Any]:
    env = dict(os.environ, VIXEN_VALIDATION="0")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, "--scene", str(scene), "--order", order,
           "--top", str(top)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    line = next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small scenes, one repetition (a smoke run)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="repetitions, each in a fresh process (default 3, quick 1)")
    ap.add_argument("--instance-mode", choices=("pointinstancer", "instanceable"), default="pointinstancer",
                    help="how the 10,000 instances are made (instanceable generation takes minutes)")
    ap.add_argument("--json", type=Path, default=None,
                    help="where to write results (default benchmarks/results/load_stage.json; "
                         "quick: load_stage-quick.json)")
    ap.add_argument("--keep", type=Path, default=None, help="generate the scenes into this folder and keep them")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    ap.add_argument("--scenes", nargs="+", choices=("meshes", "instances", "chess"), default=None,
                    help="run only these scenes (default: all three)")
    ap.add_argument("--top", type=int, default=25, help="functions shown from the profile (default 25)")
    ap.add_argument("--worker", choices=("time", "profile"), help=argparse.SUPPRESS)
    ap.add_argument("--scene", help=argparse.SUPPRESS)
    ap.add_argument("--order", default="floor-first", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    repeat = args.repeat or (1 if args.quick else 3)
    specs = {k: dict(v) for k, v in (QUICK if args.quick else FULL).items()}
    specs["instances"]["mode"] = args.instance_mode
    if args.scenes:
        specs = {k: v for k, v in specs.items() if k in args.scenes}
    default_name = "load_stage-quick.json" if args.quick else "load_stage.json"
    out_path = args.json or ROOT / "benchmarks" / "results" / default_name
    gen = _generator()
    chess = _generator("generate_chess")

    tmp = None
    if args.keep:
        folder = args.keep
        folder.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="vixen-bench-load-")
        folder = Path(tmp.name)
    results: dict[str, Any] = {
        "benchmark": "load_stage", "quick": args.quick, "repeat": repeat, "validation": False,
        "targets": {"cold_over_floor_max": COLD_TARGET, "warm_over_cold_max": WARM_TARGET},
        "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "scenes": {},
    }
    try:
        for name, spec in specs.items():
            if name == "chess":
                scene = folder / f"chess_{spec['sets']}s_{spec['detail']}d" / "chess_scene.usda"
            else:
                stem = f"{name}_{spec['meshes']}m_{spec['triangles']}t_{spec['instances']}{spec['mode'][:1]}"
                scene = folder / f"{stem}.usdc"
            t0 = time.perf_counter()
            if not scene.exists():
                if name == "chess":
                    chess.generate_chess(scene.parent, **spec)
                else:
                    gen.generate_scene(scene, seed=0, **spec)
            gen_s = time.perf_counter() - t0
            print(f"[{name}] {scene.name}: {scene.stat().st_size / 2**20:.1f} MiB, generated in {gen_s:.1f} s",
                  flush=True)
            reps = []
            for r in range(repeat):
                reps.append(_run_worker(scene, "time", order="floor-first" if r % 2 == 0 else "load-first"))
                print(f"  rep {r + 1}/{repeat}: floor {reps[-1]['floor_s'] * 1e3:.0f} ms, cold "
                      f"{reps[-1]['cold_s'] * 1e3:.0f} ms, warm {reps[-1]['warm_s'] * 1e3:.1f} ms", flush=True)
            floor = statistics.median(r["floor_s"] for r in reps)
            cold = statistics.median(r["cold_s"] for r in reps)
            warm = statistics.median(r["warm_s"] for r in reps)
            # CPU time of the process (all threads): steadier than wall time on a shared machine
            cpu_ratio = statistics.median(r["cold_cpu_s"] / r["floor_cpu_s"] for r in reps)
            phases = {k: statistics.median(r["phases"].get(k, 0.0) for r in reps)
                      for k in reps[0]["phases"]}
            entry = {
                "file": scene.name, "spec": spec, "generate_s": gen_s, "file_bytes": scene.stat().st_size,
                "floor_s": floor, "cold_s": cold, "warm_s": warm,
                "cold_over_floor": cold / floor, "warm_over_cold": warm / cold, "cold_cpu_over_floor_cpu": cpu_ratio,
                "cold_target": COLD_TARGETS.get(name, COLD_TARGET),
                "cold_pass": cold / floor <= COLD_TARGETS.get(name, COLD_TARGET),
                "warm_pass": warm / cold <= WARM_TARGET,
                "cold_phases_s": phases, "repetitions": reps,
                **{k: reps[0][k] for k in ("instances", "unique_meshes", "triangles", "bytes_uploaded",
                                           "prims_visited", "warnings", "peak_budget_bytes", "device")},
                "floor_counts": reps[0]["floor_counts"],
            }
            if not args.no_profile:
                entry["profile"] = _run_worker(scene, "profile", top=args.top)["profile"]
            results["scenes"][name] = entry
    finally:
        if tmp is not None:
            tmp.cleanup()

    device = next(iter(results["scenes"].values()))["device"]
    results["device"] = {"name": device}
    print()
    print(f"load_stage on {device} (validation off; median of {repeat}, each in a fresh process)")
    header = (f"{'scene':10s} {'triangles':>10s} {'unique':>7s} {'instances':>9s} {'floor ms':>9s} {'cold ms':>9s} "
              f"{'cold/floor':>10s} {'target':>8s} {'warm ms':>8s} {'warm/cold':>9s} {'<=5%':>6s}")
    print(header)
    print("-" * len(header))
    for name, e in results["scenes"].items():
        print(f"{name:10s} {e['triangles']:>10,} {e['unique_meshes']:>7,} {e['instances']:>9,} "
              f"{e['floor_s'] * 1e3:9.1f} {e['cold_s'] * 1e3:9.1f} {e['cold_over_floor']:9.2f}x "
              f"{_verdict(e['cold_pass']) + ' ' + format(e['cold_target'], '.1f'):>8s} {e['warm_s'] * 1e3:8.1f} "
              f"{e['warm_over_cold'] * 100:8.1f}% "
              f"{_verdict(e['warm_pass']):>6s}")
    print()
    for name, e in results["scenes"].items():
        ph = e["cold_phases_s"]
        parts = ", ".join(f"{k} {v * 1e3:.0f}" for k, v in ph.items() if k != "total")
        print(f"{name}: cold/floor in process CPU time (all threads) {e['cold_cpu_over_floor_cpu']:.2f}x; "
              f"cold phases (ms): {parts}; uploaded {e['bytes_uploaded'] / 1e6:.1f} MB, "
              f"peak budget {e['peak_budget_bytes'] / 2**20:.1f} MiB")
    if not args.no_profile:
        for name, e in results["scenes"].items():
            print(f"\n{name}: top functions of a cold load under cProfile (by own time; pxr calls count as the "
                  f"Python function that makes them)")
            for row in e["profile"]["top_tottime"][: min(args.top, 15)]:
                print(f"  {row['tottime'] * 1e3:8.1f} ms own {row['cumtime'] * 1e3:8.1f} ms cum "
                      f"{row['ncalls']:>7} calls  {row['function']}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nTargets: cold <= {COLD_TARGET}x the pxr floor ({COLD_TARGETS} per scene); "
          f"warm reload <= {WARM_TARGET:.0%} of cold. "
          f"Wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
