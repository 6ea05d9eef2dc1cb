"""Benchmark mesh reading and preparation against the floor of reading the same attributes with pxr alone.

Usage::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_prepare.py                 # ~1M triangles, 1,000 meshes
    PYTHONPATH=. .venv/bin/python benchmarks/bench_prepare.py --meshes 200 --triangles 200000 --repeat 3
    PYTHONPATH=. .venv/bin/python benchmarks/bench_prepare.py --scene some.usdc --json out.json
    PYTHONPATH=. .venv/bin/python benchmarks/bench_prepare.py --quick       # smoke test

The scene is generated with ``samples/generate_scene.py`` (cached under ``benchmarks/results/``) unless ``--scene``
is given. Rows of the table (best of ``--repeat`` runs, each on freshly read sources):

* ``pxr floor``: per prim, exactly the pxr calls ``read_mesh_source`` makes (attribute ``Get``s, primvar lookups,
  GeomSubsets, material bindings, prim stack), nothing else: no numpy, no validation.
* ``pxr attrs only``: just ``Get`` of points, counts, indices, normals and ``st`` (values and indices).
* ``read_mesh_source``: the floor plus numpy conversion and ``MeshSource`` construction (``validate=False`` and
  ``validate=True``).
* ``content_hash``: hashing every source on one thread (the hash ``prepare_meshes`` needs).
* ``prepare_meshes``: the whole batch (validation, triangulation, normals, primvars, splitting, packing; hashes
  computed on a helper thread meanwhile).
* ``read + prepare``: the pipeline as a loader runs it; its ratio to the floor is the number to watch.
* ``read + prepare, overlapped``: the same with batches of 250 meshes prepared on a worker thread while the next
  batch is read (numpy and hashlib release the GIL), which a multi-core loader can do.

Times are wall-clock (best and median of ``--repeat``) plus the process CPU time of the best run (all threads);
on a shared machine the CPU column is the steadier one. ``prepare_meshes`` stage times come from
``vixen_assets.geometry.prepare.STAGE_TIMES``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pxr import Usd, UsdGeom, UsdShade

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vixen_assets.geometry import prepare as prepare_module  # noqa: E402
from vixen_assets.geometry.prepare import prepare_meshes  # noqa: E402
from vixen_assets.geometry.usd_mesh import read_mesh_source  # noqa: E402

_DEFAULT = Usd.TimeCode.Default()


def _load_generator():
    spec = importlib.util.spec_from_file_location("generate_scene", ROOT / "samples" / "generate_scene.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pxr_floor(prims, primvars=("st",)):
    """The pxr calls of read_mesh_source, nothing else."""
    out = []
    tc = _DEFAULT
    for prim in prims:
        prim.GetPrimStack()
        mesh = UsdGeom.Mesh(prim)
        points = mesh.GetPointsAttr().Get(tc)
        counts = mesh.GetFaceVertexCountsAttr().Get(tc)
        indices = mesh.GetFaceVertexIndicesAttr().Get(tc)
        api = UsdGeom.PrimvarsAPI(prim)
        pvn = api.GetPrimvar("normals")
        if pvn:
            pvn.HasAuthoredValue()
        normals = mesh.GetNormalsAttr().Get(tc)
        mesh.GetNormalsInterpolation()
        values = []
        for name in primvars:
            pv = api.GetPrimvar(name)
            if pv and pv.HasAuthoredValue():
                values.append((pv.GetAttr().Get(tc), pv.GetTypeName(), pv.IsIndexed() and pv.GetIndicesAttr().Get(tc),
                               pv.GetInterpolation(), pv.GetElementSize()))
        holes = mesh.GetHoleIndicesAttr().Get(tc)
        subsets = []
        for sub in UsdGeom.Subset.GetAllGeomSubsets(mesh):
            sub.GetElementTypeAttr().Get()
            sub.GetFamilyNameAttr().Get()
            subsets.append((sub.GetIndicesAttr().Get(tc),
                            UsdShade.MaterialBindingAPI(sub.GetPrim()).ComputeBoundMaterial()[0]))
        material = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()[0]
        orientation = mesh.GetOrientationAttr().Get()
        out.append((points, counts, indices, normals, values, holes, subsets, material, orientation))
    return out


def pxr_attrs_only(prims):
    out = []
    tc = _DEFAULT
    for prim in prims:
        mesh = UsdGeom.Mesh(prim)
        st = UsdGeom.PrimvarsAPI(prim).GetPrimvar("st")
        out.append((mesh.GetPointsAttr().Get(tc), mesh.GetFaceVertexCountsAttr().Get(tc),
                    mesh.GetFaceVertexIndicesAttr().Get(tc), mesh.GetNormalsAttr().Get(tc),
                    st.GetAttr().Get(tc), st.GetIndicesAttr().Get(tc)))
    return out


def _time(fn, repeat: int, before=None):
    """Best and median wall time, best process CPU time (all threads) and the result of the last run."""
    walls, cpus = [], []
    result = None
    for _ in range(repeat):
        if before is not None:
            before()
        gc.collect()
        cpu = time.process_time()
        start = time.perf_counter()
        result = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return min(walls), statistics.median(walls), min(cpus), result


def pipelined(prims, batch: int = 250):
    """Read batches of prims on this thread while a worker thread prepares the previous batch."""
    with ThreadPoolExecutor(1) as pool:
        futures = [pool.submit(prepare_meshes, [read_mesh_source(p, validate=False) for p in prims[i : i + batch]])
                   for i in range(0, len(prims), batch)]
        return [mesh for f in futures for mesh in f.result()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene", help="USD file to read (default: generate one)")
    parser.add_argument("--meshes", type=int, default=1000)
    parser.add_argument("--triangles", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="100 meshes, 50k triangles, 2 runs (smoke test)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.meshes, args.triangles, args.repeat = 100, 50_000, 2

    if args.scene:
        scene = Path(args.scene)
    else:
        scene = ROOT / "benchmarks" / "results" / f"bench_{args.meshes}m_{args.triangles}t.usdc"
        if not scene.exists():
            scene.parent.mkdir(parents=True, exist_ok=True)
            _load_generator().generate_scene(scene, meshes=args.meshes, triangles=args.triangles, seed=0)
    stage = Usd.Stage.Open(str(scene))
    start = time.perf_counter()
    prims = [p for p in stage.Traverse(Usd.TraverseInstanceProxies()) if p.IsA(UsdGeom.Mesh)]
    traverse = time.perf_counter() - start
    pxr_floor(prims)  # warm: first reads page the crate file in
    sources = [read_mesh_source(p, validate=False) for p in prims]

    def fresh():
        for src in sources:
            src._hashes.clear()

    def timed_prepare():
        prepare_module.STAGE_TIMES = {}
        out = prepare_meshes(sources)
        timed_prepare.stages.append(prepare_module.STAGE_TIMES)
        prepare_module.STAGE_TIMES = None
        return out

    timed_prepare.stages = []
    steps = [
        ("pxr floor (read_mesh_source's pxr calls)", lambda: pxr_floor(prims), None),
        ("pxr attrs only (points/counts/indices/normals/st)", lambda: pxr_attrs_only(prims), None),
        ("read_mesh_source(validate=False)", lambda: [read_mesh_source(p, validate=False) for p in prims], None),
        ("read_mesh_source(validate=True)", lambda: [read_mesh_source(p) for p in prims], None),
        ("content_hash of every source, one thread", lambda: [s.content_hash() for s in sources], fresh),
        ("prepare_meshes (validate, hash on a 2nd thread)", timed_prepare, fresh),
        ("read(validate=False) + prepare_meshes", lambda: prepare_meshes([read_mesh_source(p, validate=False)
                                                                          for p in prims]), None),
        ("read + prepare, overlapped (batches of 250)", lambda: pipelined(prims), None),
    ]
    rows = []
    prepared = None
    for label, fn, before in steps:
        best, med, cpu, result = _time(fn, args.repeat, before)
        rows.append({"what": label, "best_s": best, "median_s": med, "cpu_s": cpu})
        if fn is timed_prepare:
            prepared = result
    floor = rows[0]["best_s"]
    stage_times = min(timed_prepare.stages, key=lambda st: sum(st.values()))

    n_tris = sum(p.triangle_count for p in prepared)
    n_verts = sum(p.vertex_count for p in prepared)
    n_points = sum(len(s.points) for s in sources)
    print(f"scene: {scene.name} ({scene.stat().st_size / 2**20:.1f} MiB), {len(prims)} meshes, {n_tris:,} triangles, "
          f"{n_points:,} points -> {n_verts:,} vertices; traversal {traverse * 1e3:.1f} ms (not counted); "
          f"hash: {sources[0].content_hash().split(':')[0]}; {os.cpu_count()} CPUs")
    print(f"{'step':52s} {'best ms':>9s} {'median ms':>10s} {'CPU ms':>8s} {'x floor':>8s}")
    for r in rows:
        print(f"{r['what']:52s} {r['best_s'] * 1e3:9.1f} {r['median_s'] * 1e3:10.1f} {r['cpu_s'] * 1e3:8.1f} "
              f"{r['best_s'] / floor:8.2f}")
    print("prepare_meshes stages (best run, ms): " + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in stage_times.items()))
    prep = next(r for r in rows if r["what"].startswith("prepare_meshes"))
    total = next(r for r in rows if r["what"].startswith("read(validate=False) + prepare"))
    over = next(r for r in rows if r["what"].startswith("read + prepare, overlapped"))
    print(f"prepare throughput: {n_tris / 1e6 / prep['best_s']:.1f} M triangles/s; read + prepare = "
          f"{total['best_s'] / floor:.2f}x the pxr floor ({over['best_s'] / floor:.2f}x overlapped on 2 threads)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "quick": args.quick, "scene": str(scene), "meshes": len(prims), "triangles": n_tris,
            "points": n_points, "vertices": n_verts, "rows": rows, "stages": stage_times,
            "hash": sources[0].content_hash().split(":")[0], "floor_s": floor,
            "ratio": total["best_s"] / floor, "ratio_overlapped": over["best_s"] / floor,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
