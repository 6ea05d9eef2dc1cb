"""Benchmark ``load_blend``: ``via="arrays"`` and ``via="usd"`` beside the floor of reading the evaluated arrays with
``foreach_get`` alone and beside Blender's own USD import of the same scene, all measured in the same run.

The scene is generated with bpy into a temporary ``.blend``: ``--unique`` grid meshes with a Subdivision Surface
modifier (level 1), all in a collection that an empty instances once more (collection instancing doubles every
placement), plus ``--links`` linked duplicates of one plain mesh (shared mesh data). Full: about 1.1M triangles;
``--quick``: about 45k.

Rows (best of ``--repeat``; before each repetition the file is opened again and the caches are emptied):

- **floor**: for every unique evaluated mesh, ``foreach_get`` of what the loader needs (positions, face sizes,
  corner vertices, normals of the mesh's domain, the active UV map, material indices) into preallocated numpy
  arrays, with the world matrix of every placement; the depsgraph is evaluated before the clock starts. No GPU.
- **arrays, evaluated**: ``load_blend(None, device)`` until the scene is GPU-resident (reading, preparing,
  uploading), the depsgraph evaluated before the clock starts, as for the floor.
- **evaluation alone**: ``evaluated_depsgraph_get()`` after opening the file, then touching every evaluated mesh
  (Blender subdivides lazily, on first access): what Blender spends before anything can be read, in every path
  but the peer's.
- **arrays incl. evaluation**: ``load_blend(None, device)`` right after opening the file.
- **usd**: ``load_blend(None, device, via="usd")``: Blender's USD export to a temporary ``.usdc``, then
  ``load_stage``.
- **peer: Blender USD import**: ``bpy.ops.wm.usd_import`` of the same scene exported once beforehand (into an
  empty Blender scene): what a user would otherwise run to get the scene from USD into Blender's memory.

Targets: arrays (evaluated) <= 1.5x the floor; arrays faster than the peer (printed with and without the evaluation,
which the peer never runs: an imported USD holds the already-tessellated meshes).

Usage::

    .venv/bin/python benchmarks/bench_blender.py             # full run -> benchmarks/results/blender.json
    .venv/bin/python benchmarks/bench_blender.py --quick     # smoke run -> benchmarks/results/blender-quick.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FLOOR_TARGET = 1.5

FULL = dict(unique=25, grid=50, links=20, link_grid=50)      # 25 * 20k * 2 + 20 * 5k = 1.1M triangles
QUICK = dict(unique=10, grid=10, links=10, link_grid=10)     # 10 * 800 * 2 + 10 * 200 = 18k triangles


def generate(path: Path, unique: int, grid: int, links: int, link_grid: int) -> None:
    """Write the benchmark scene to ``path`` (see the module docstring)."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    coll = bpy.data.collections.new("set")
    scene.collection.children.link(coll)
    for k in range(unique):
        bpy.ops.mesh.primitive_grid_add(x_subdivisions=grid + k % 2, y_subdivisions=grid, size=2.0,
                                        location=((k % 5) * 3.0, (k // 5) * 3.0, 0.0))
        obj = bpy.context.active_object
        obj.name = f"grid{k}"
        for c in obj.users_collection:
            c.objects.unlink(obj)
        coll.objects.link(obj)
        obj.modifiers.new("subsurf", "SUBSURF").levels = 1
        obj.data.vertices[k % len(obj.data.vertices)].co.z += 0.1 * (k + 1)  # every mesh's content differs
    inst = bpy.data.objects.new("set_instance", None)
    inst.instance_type = "COLLECTION"
    inst.instance_collection = coll
    inst.location = (0.0, 0.0, 5.0)
    scene.collection.objects.link(inst)
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=link_grid, y_subdivisions=link_grid, size=1.0)
    base = bpy.context.active_object
    base.name = "link0"
    base.location = (-3.0, 0.0, 0.0)
    for k in range(1, links):
        dup = bpy.data.objects.new(f"link{k}", base.data)
        dup.location = (-3.0, k * 1.5, 0.0)
        scene.collection.objects.link(dup)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))


def floor_read() -> dict[str, int]:
    """The floor: evaluate and ``foreach_get`` the evaluated arrays of every unique mesh (no GPU)."""
    import bpy

    graph = bpy.context.evaluated_depsgraph_get()
    seen: set[int] = set()
    triangles = 0
    matrices = []
    for inst in graph.object_instances:
        obj = inst.object
        if obj.type != "MESH":
            continue
        me = obj.data
        matrices.append(np.array(inst.matrix_world, dtype=np.float32))
        nf = len(me.polygons)
        ptr = me.as_pointer()
        if ptr in seen:
            continue
        seen.add(ptr)
        nv, nc = len(me.vertices), len(me.loops)
        co = np.empty(nv * 3, np.float32)
        me.vertices.foreach_get("co", co)
        sizes = np.empty(nf, np.int32)
        me.polygons.foreach_get("loop_total", sizes)
        cv = np.empty(nc, np.int32)
        me.loops.foreach_get("vertex_index", cv)
        domain = me.normals_domain
        src, n = {"POINT": (me.vertex_normals, nv), "FACE": (me.polygon_normals, nf),
                  "CORNER": (me.corner_normals, nc)}[domain]
        nrm = np.empty(n * 3, np.float32)
        src.foreach_get("vector", nrm)
        if me.uv_layers.active is not None:
            uv = np.empty(nc * 2, np.float32)
            me.uv_layers.active.uv.foreach_get("vector", uv)
        attr = me.attributes.get("material_index")
        if attr is not None:
            mi = np.empty(nf, np.int32)
            attr.data.foreach_get("value", mi)
        triangles += int(sizes.sum()) - 2 * nf
    return {"unique_meshes": len(seen), "placements": len(matrices), "unique_triangles": triangles}


def best_of(repeat: int, setup: Callable[[], None], fn: Callable[[], Any]) -> tuple[float, Any]:
    """The best wall time of ``fn`` over ``repeat`` runs, ``setup`` (untimed) before each; and its last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        setup()
        gc.collect()
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small scene, one repetition (a smoke run)")
    ap.add_argument("--repeat", type=int, default=None, help="repetitions per row (default 3; quick: 1)")
    ap.add_argument("--json", type=Path, default=None,
                    help="where to write results (default benchmarks/results/blender.json; quick: blender-quick.json)")
    ap.add_argument("--device", default=None, help="device index or name substring")
    args = ap.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    params = QUICK if args.quick else FULL

    import bpy

    from vixen_assets.device import open_device
    from vixen_assets_blender import load_blend
    from vixen_assets_blender.loader import export_usd, open_blend

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-blender-") as tmp:
        blend = Path(tmp) / "bench.blend"
        t = time.perf_counter()
        generate(blend, **params)
        gen_s = time.perf_counter() - t
        size = blend.stat().st_size

        def reopen() -> None:
            open_blend(str(blend))

        def evaluate() -> int:
            """Evaluate the depsgraph and realize every evaluated mesh (Blender subdivides lazily, on first access
            to the evaluated mesh's data)."""
            graph = bpy.context.evaluated_depsgraph_get()
            return sum(len(i.object.data.vertices) for i in graph.object_instances if i.object.type == "MESH")

        def evaluated() -> None:  # the file opened again and its depsgraph evaluated (modifiers), untimed
            reopen()
            evaluate()

        open_s, _ = best_of(repeat, lambda: None, reopen)
        eval_s, _ = best_of(repeat, reopen, evaluate)
        floor_s, facts = best_of(repeat, evaluated, floor_read)
        with open_device(args.device, validation=False) as device:
            dev_name = device.name

            def arrays() -> dict[str, Any]:
                with load_blend(None, device) as scene:
                    return {"triangles": scene.triangle_count, "instances": len(scene.instances),
                            "unique_meshes": len(scene.meshes), "bytes": scene.stats.bytes_uploaded,
                            "phases_s": dict(scene.stats.seconds)}

            def via_usd() -> dict[str, Any]:
                with load_blend(None, device, via="usd") as scene:
                    return {"triangles": scene.triangle_count, "instances": len(scene.instances),
                            "unique_meshes": len(scene.meshes), "phases_s": dict(scene.stats.seconds)}

            def evict() -> None:  # every repetition a cold load: nothing left in the caches
                reopen()
                for cacher in list(device.cachers.values()):
                    cacher.evict()

            def evict_evaluated() -> None:
                evict()
                evaluate()

            arrays_s, arrays_info = best_of(repeat, evict_evaluated, arrays)
            arrays_cold_s, _ = best_of(repeat, evict, arrays)
            usd_s, usd_info = best_of(repeat, evict, via_usd)
        usd_file = Path(tmp) / "exported.usdc"
        reopen()
        export_usd(str(usd_file), bpy.context.scene)

        def empty() -> None:
            bpy.ops.wm.read_factory_settings(use_empty=True)

        def peer() -> int:
            bpy.ops.wm.usd_import(filepath=str(usd_file))
            return len(bpy.data.objects)

        peer_s, peer_objects = best_of(repeat, empty, peer)

    def row(what: str, seconds: float, **extra: Any) -> None:
        rows.append({"what": what, "best_s": seconds, "x_floor": seconds / floor_s, **extra})

    row("floor: foreach_get of the evaluated arrays", floor_s, **facts)
    row("load_blend via arrays, evaluated (GPU-resident)", arrays_s, **arrays_info)
    row("Blender's depsgraph evaluation (modifiers) alone", eval_s)
    row("load_blend via arrays incl. evaluation", arrays_cold_s)
    row("load_blend via usd incl. evaluation + export", usd_s, **usd_info)
    row("peer: Blender's own USD import of the same scene", peer_s, objects=peer_objects)
    targets = {
        "arrays <= 1.5x floor": {"ratio": arrays_s / floor_s, "pass": arrays_s <= FLOOR_TARGET * floor_s},
        "arrays faster than Blender's USD import": {"ratio": arrays_s / peer_s, "pass": arrays_s < peer_s},
        "arrays incl. evaluation faster than Blender's USD import": {"ratio": arrays_cold_s / peer_s,
                                                                     "pass": arrays_cold_s < peer_s},
    }
    print(f"scene: {params} -> {arrays_info['triangles']:,} triangles, {arrays_info['instances']} placements, "
          f"{arrays_info['unique_meshes']} unique meshes, .blend {size / 1e6:.1f} MB (generated in {gen_s:.1f} s; "
          f"opening it takes {open_s * 1e3:.0f} ms, not in the rows)")
    print(f"device: {dev_name}; bpy {bpy.app.version_string}; best of {repeat}")
    print(f"{'what':<52} {'best':>10} {'x floor':>8}")
    for r in rows:
        print(f"{r['what']:<52} {r['best_s'] * 1e3:>8.1f} ms {r['x_floor']:>7.2f}x")
    print("Targets:")
    for name, t in targets.items():
        print(f"  {name}: {'PASS' if t['pass'] else 'MISS'} (ratio {t['ratio']:.2f})")
    result = {"quick": args.quick, "params": params, "device": {"name": dev_name}, "bpy": bpy.app.version_string,
              "python": platform.python_version(), "cpus": os.cpu_count(), "repeat": repeat, "rows": rows,
              "targets": targets, "open_s": open_s, "generate_s": gen_s, "blend_bytes": size}
    out = args.json or ROOT / "benchmarks" / "results" / ("blender-quick.json" if args.quick else "blender.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
