"""Benchmark ``vixen_assets.validate`` on a generated mixed library (USD, KTX2, .vox).

Usage::

    .venv/bin/python benchmarks/bench_validate.py            # 500 assets
    .venv/bin/python benchmarks/bench_validate.py --quick    # 60 assets, smoke test
    .venv/bin/python benchmarks/bench_validate.py --assets 2000 --json out.json

Rows, all measured in this run on the same library:

* ``floor: pxr Usd.Stage.Open + Traverse`` per USD asset, in this process (what any USD validator must pay);
  ``floor: read bytes`` per KTX2/.vox asset.
* ``check_asset, all rules, in-process``: the per-asset work of a worker (every rule, no ``--gpu``), by kind,
  printed beside its floor with the ratio (goal for USD: <= 2x the floor). Medians of process CPU time; floor
  and check are timed interleaved per asset so that both see the same load and file cache.
* ``validate(workers=1)``, ``validate(workers=<cores>)``, ``Dask LocalCluster 2 workers``: assets/s of whole jobs
  (worker start-up included), with the speed-up over one worker.

Writes JSON to ``benchmarks/results/validate.json`` (or ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from pxr import Usd, UsdGeom, Vt  # noqa: E402

IDENTIFIER = b"\xabKTX 20\xbb\r\n\x1a\n"


def _dfd_rgba8() -> bytes:
    samples = b"".join(struct.pack("<IIII", (8 * i) | (7 << 16) | (15 if i == 3 else i) << 24, 0, 0, 255)
                       for i in range(4))
    block = struct.pack("<IIIIII", 0, 2 | (24 + len(samples)) << 16, 1 | 1 << 8 | 1 << 16, 0, 4, 0) + samples
    return struct.pack("<I", 4 + len(block)) + block


def write_ktx2(path: Path, size: int) -> None:
    """An RGBA8 texture with a full mip chain and a KTXwriter entry."""
    dfd = _dfd_rgba8()
    entry = b"KTXwriter\0bench\0"
    kv = struct.pack("<I", len(entry)) + entry + bytes(-len(entry) % 4)
    n = size.bit_length()
    levels = [bytes(((size >> i) or 1) ** 2 * 4) for i in range(n)]
    dfd_off = 80 + 24 * n
    pos = dfd_off + len(dfd) + len(kv)
    offsets = [0] * n
    for i in reversed(range(n)):
        pos += -pos % 4
        offsets[i] = pos
        pos += len(levels[i])
    body = bytearray(pos)
    body[:80] = struct.pack("<12s9I4I2Q", IDENTIFIER, 37, 1, size, size, 0, 0, 1, n, 0, dfd_off, len(dfd),
                            dfd_off + len(dfd), len(kv), 0, 0)
    for i, data in enumerate(levels):
        struct.pack_into("<3Q", body, 80 + 24 * i, offsets[i], len(data), len(data))
        body[offsets[i]: offsets[i] + len(data)] = data
    body[dfd_off: dfd_off + len(dfd)] = dfd
    body[dfd_off + len(dfd): dfd_off + len(dfd) + len(kv)] = kv
    path.write_bytes(bytes(body))


def _chunk(cid: bytes, content: bytes) -> bytes:
    return struct.pack("<4sii", cid, len(content), 0) + content


def write_vox(path: Path, rng: np.random.Generator) -> None:
    n = int(rng.integers(50, 400))
    v = rng.integers(0, 32, size=(n, 3)).astype(np.uint8)
    c = rng.integers(1, 255, size=(n, 1)).astype(np.uint8)
    xyzi = struct.pack("<i", n) + np.hstack([v, c]).tobytes()
    main = _chunk(b"SIZE", struct.pack("<3i", 32, 32, 32)) + _chunk(b"XYZI", xyzi)
    path.write_bytes(b"VOX " + struct.pack("<i", 150) + struct.pack("<4sii", b"MAIN", 0, len(main)) + main)


def write_usd(path: Path, rng: np.random.Generator) -> None:
    """A stage with a few grid meshes (a few hundred triangles each)."""
    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    stage.SetDefaultPrim(UsdGeom.Xform.Define(stage, "/World").GetPrim())
    for m in range(int(rng.integers(2, 6))):
        k = int(rng.integers(6, 16))
        xs, ys = np.meshgrid(np.arange(k + 1, dtype=np.float32), np.arange(k + 1, dtype=np.float32))
        pts = np.stack([xs.ravel(), ys.ravel(), rng.random((k + 1) ** 2).astype(np.float32)], axis=1)
        q = np.arange(k * (k + 1)).reshape(k, k + 1)[:, :k].ravel()
        idx = np.stack([q, q + 1, q + k + 2, q + k + 1], axis=1).ravel().astype(np.int32)
        mesh = UsdGeom.Mesh.Define(stage, f"/World/mesh_{m}")
        mesh.GetPointsAttr().Set(Vt.Vec3fArray.FromNumpy(pts))
        mesh.GetFaceVertexCountsAttr().Set(Vt.IntArray([4] * (k * k)))
        mesh.GetFaceVertexIndicesAttr().Set(Vt.IntArray.FromNumpy(idx))
        mesh.GetExtentAttr().Set(Vt.Vec3fArray([tuple(pts.min(0).tolist()), tuple(pts.max(0).tolist())]))
    stage.Save()


def build_library(root: Path, count: int) -> dict[str, list[Path]]:
    rng = np.random.default_rng(7)
    kinds: dict[str, list[Path]] = {"usd": [], "ktx2": [], "vox": []}
    for i in range(count):
        r = i % 20
        if r < 12:
            p = root / f"a{i:05d}.usda"
            write_usd(p, rng)
            kinds["usd"].append(p)
        elif r < 17:
            p = root / f"t{i:05d}.ktx2"
            write_ktx2(p, int(rng.choice([16, 32, 64, 128])))
            kinds["ktx2"].append(p)
        else:
            p = root / f"v{i:05d}.vox"
            write_vox(p, rng)
            kinds["vox"].append(p)
    return kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="60 assets (smoke test)")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster row")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "validate.json"))
    args = parser.parse_args(argv)
    count = 60 if args.quick else args.assets
    from vixen_assets import validate
    from vixen_assets.validate.context import CheckOptions
    from vixen_assets.validate.engine import AssetTask, check_asset, registry_for

    tmp = Path(tempfile.mkdtemp(prefix="vixen-bench-validate-"))
    try:
        t0 = time.perf_counter()
        kinds: dict[str, list[Path]] = build_library(tmp, count)
        print(f"library: {count} assets ({len(kinds['usd'])} USD, {len(kinds['ktx2'])} KTX2, {len(kinds['vox'])} "
              f".vox) generated in {time.perf_counter() - t0:.1f} s")
        rule_ids = tuple(registry_for().rules)
        rows = []

        def open_stage(p: Path) -> None:
            stage = Usd.Stage.Open(str(p))
            for _ in stage.Traverse():
                pass

        ours = tuple(r for r in rule_ids if not r.startswith("usd.") or r == "usd.open-failed")
        floor_fns = {"usd": open_stage, "ktx2": lambda p: p.read_bytes(), "vox": lambda p: p.read_bytes(),
                     "usd without UsdValidation": open_stage}
        for kind in ("usd", "usd without UsdValidation", "ktx2", "vox"):
            ids = ours if kind == "usd without UsdValidation" else rule_ids
            check = lambda p, ids=ids: check_asset(AssetTask(str(p), ids, CheckOptions()))  # noqa: E731
            kinds.setdefault(kind, kinds["usd"])
            for p in kinds[kind][:2]:  # warm imports, the registry, UsdValidation's plugins
                floor_fns[kind](p)
                check(p)
            floor_t, check_t = [], []
            for i, p in enumerate(kinds[kind]):
                # interleaved, alternating which goes first, so that both see the same machine load and cache
                order = ((floor_fns[kind], floor_t), (check, check_t))
                for fn, out in (order if i % 2 == 0 else order[::-1]):
                    t0 = time.process_time()  # CPU time: steadier than wall time on a shared machine
                    fn(p)
                    out.append(time.process_time() - t0)
            per, floor = statistics.median(check_t), statistics.median(floor_t)
            what = "pxr Usd.Stage.Open + Traverse" if kind.startswith("usd") else "read bytes"
            label = f"check_asset {kind}" + (", all rules" if kind != "usd without UsdValidation" else "")
            rows.append({"what": f"{label}, in-process", "ms_per_asset": per * 1e3,
                         "floor": f"floor: {what}", "floor_ms": floor * 1e3, "ratio": per / floor if floor else None})
        cores = os.cpu_count() or 1
        jobs: list[dict] = []
        paths = [tmp]
        def job(label: str, **kw: object) -> None:
            stamps: list[float] = []
            t0 = time.perf_counter()
            rep = validate(paths, on_result=lambda r: stamps.append(time.perf_counter()), **kw)
            secs = time.perf_counter() - t0
            # steady state: from the first result to the last (worker start-up excluded)
            steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] \
                else None
            jobs.append({"what": label, "seconds": secs, "assets_per_s": len(rep.assets) / secs,
                         "steady_assets_per_s": steady, "first_result_s": stamps[0] - t0 if stamps else None,
                         "errors": rep.counts["error"], "crashed": rep.counts["crashed"], "assets": len(rep.assets)})

        job("validate(workers=1)", workers=1)
        job(f"validate(workers={cores})", workers=cores)
        if not args.no_dask:
            try:
                import distributed  # noqa: F401

                job("Dask LocalCluster 2 workers", scheduler="local", workers=2)
            except ImportError:
                print("Dask not installed: pip install 'vixen-assets[cluster]'")
        base = jobs[0]["assets_per_s"]
        steady_base = jobs[0]["steady_assets_per_s"]
        for j in jobs:
            j["speedup_vs_1_worker"] = j["assets_per_s"] / base
            j["steady_speedup_vs_1_worker"] = (j["steady_assets_per_s"] / steady_base
                                               if j["steady_assets_per_s"] and steady_base else None)
        print(f"\nper-asset CPU time (median), every rule ({len(rule_ids)}), no --gpu, this process:")
        for r in rows:
            print(f"  {r['what']:50s} {r['ms_per_asset']:8.2f} ms   {r['floor']:35s} {r['floor_ms']:8.3f} ms   "
                  f"{r['ratio']:6.1f}x the floor")
        print(f"\njobs on {jobs[0]['assets']} assets ({cores} cores): whole job (start-up included), then steady "
              "state (first result to last):")
        for j in jobs:
            steady = j["steady_assets_per_s"]
            print(f"  {j['what']:30s} {j['seconds']:6.2f} s {j['assets_per_s']:7.1f} assets/s "
                  f"({j['speedup_vs_1_worker']:.2f}x)   steady {steady or 0:7.1f} assets/s "
                  f"({j['steady_speedup_vs_1_worker'] or 0:.2f}x vs 1 worker), first result after "
                  f"{j['first_result_s'] or 0:.2f} s")
        usd = rows[0]
        print(f"\nTargets: per-asset overhead <= 2x the pxr floor: {usd['ratio']:.1f}x "
              f"({'met' if usd['ratio'] <= 2 else 'NOT met'}); linear speed-up: "
              f"{jobs[1]['steady_speedup_vs_1_worker'] or 0:.2f}x steady state with {cores} workers (ideal "
              f"{cores:.0f}x; the machine's cores may be shared)")
        out = {"quick": args.quick, "assets": count, "cores": cores, "rules": len(rule_ids), "per_asset": rows,
               "jobs": jobs}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
