"""Benchmarks run as smoke tests: ``--quick`` exits 0 and writes its JSON (numbers are not checked here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bench_upload_quick(tmp_path: Path) -> None:
    out = tmp_path / "upload.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_upload.py"), "--quick", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["quick"] and result["device"]["name"]
    methods = {r["method"] for r in result["results"]}
    assert any(m.startswith("uploader staging") for m in methods)
    assert any(m.startswith("floor: numpy memcpy") for m in methods)
    assert any(m.startswith("floor: raw vkCmdCopyBuffer") for m in methods)
    assert all(r["gbps"] and r["gbps"] > 0 for r in result["results"])
    assert result["cpu_overhead"]["overhead_ms_per_100MB"] is not None
    assert result["targets"] and "memory" in result and "queue" in result
    assert "Targets:" in proc.stdout


def test_bench_accel_quick(tmp_path: Path) -> None:
    out = tmp_path / "accel.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_accel.py"), "--quick", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    log = proc.stdout[-3000:]
    assert result["quick"] and result["device"]["name"] and result["geometry"]["triangles"] > 0, log
    whats = [r["what"] for r in result["rows"]]
    for prefix in ("floor: upload", "BLAS build, no compaction", "BLAS build + compaction", "TLAS build",
                   "TLAS refit", "TLAS rebuild"):
        assert any(w.startswith(prefix) for w in whats), f"{prefix!r} missing:\n{log}"
    assert all(r["best_s"] > 0 for r in result["rows"]), log
    c = result["compaction"]
    assert 0 < c["bytes_after"] <= c["bytes_before"] and c["per_blas_grew"] == 0, c
    assert result["ray_query"] is result["trace"]["ray_query"] or result["ray_query"] == result["trace"]["ray_query"]
    for backend in ("ray_query", "pipeline"):  # both backends, same rays, same run
        tr = result["trace"][backend]
        assert tr["ran"] or tr.get("error"), f"the {backend} result must say whether it ran"
        if tr["ran"]:
            assert tr["mrays_per_s"] > 0 and tr["sane"], f"{tr}\n{log}"
    if all(result["trace"][b]["ran"] for b in ("ray_query", "pipeline")):
        assert min(result["trace_agreement"].values()) > 0.99, result["trace_agreement"]
    assert "trace_rays backends" in proc.stdout


def test_bench_voxels_quick(tmp_path: Path, vixen_assets_dir: Path) -> None:
    out = tmp_path / "voxels.json"
    env = {**os.environ, "VIXEN_SHARED_ASSETS": str(vixen_assets_dir)}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_voxels.py"), "--quick", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["quick"] and result["device"] and not result["validation"]
    assert result["file"] == "mmmm_scene_store8.vox" and result["voxels"] == 441118
    whats = [r["what"] for r in result["rows"]]
    assert any(w.startswith("floor: parse") for w in whats)
    for mode in ("voxel", "brick"):
        assert any(w.startswith(f"load_vox ({mode} AABBs): file -> GPU") for w in whats)
        assert any(w.startswith(f"load_vox ({mode} AABBs) + AABB BLAS") for w in whats)
    assert all(r["median_s"] > 0 and r["voxels_per_s"] > 0 and r["runs"] >= 3 for r in result["rows"])
    assert "Mvoxels/s" in proc.stdout


def test_bench_textures_quick(tmp_path: Path) -> None:
    out = tmp_path / "textures.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_textures.py"), "--quick", "--json",
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["quick"] and result["device"]["name"]
    assert set(result["sets"]) == {"bc7", "etc2", "bc7_small"}
    assert result["sets"]["bc7"]["gpu_format"] == ["BC7_SRGB_BLOCK"]
    assert result["sets"]["bc7_small"]["files"] == 64
    whats = [r["what"] for r in result["throughput"]]
    for prefix in ("floor: read + zstd inflate (BC7", "load_texture BC7", "floor: read + zstd inflate (ETC2",
                   "floor: read + zstd + CPU ETC2 decode", "load_texture ETC2", "load_textures BC7 + zstd ->",
                   "load_textures ETC2", "load_textures BC7 + zstd, small", "peer: upload alone",
                   "floor: read + zstd inflate on "):
        assert any(w.startswith(prefix) for w in whats), prefix
    assert all(r["mb_s"] > 0 and r["seconds"] > 0 for r in result["throughput"])
    for r in result["throughput"]:
        if r["what"].startswith("load_textures"):  # each beside its floors, measured in the same run
            assert r["vs_floor"] > 0 and r["vs_threaded_floor"] > 0 and r["one_by_one_us_per_texture"] > 0
    goals = [t["target"] for t in result["targets"]]
    assert any("all-cores read + inflate floor" in g for g in goals)
    assert any("threaded decode floor" in g for g in goals)
    assert "fixed µs/tex" in proc.stdout
    rows = result["memory_psnr"]
    assert {r["kind"] for r in rows} == {"bc7", "bc1", "auto"}
    for r in rows:
        assert r["psnr_readback_db"] == r["psnr_db"] or abs(r["psnr_readback_db"] - r["psnr_db"]) < 1e-6
        assert r["saved_payload"] == {"bc7": 0.75, "bc1": 0.875}.get(r["choice"], 0.0)
    generated = [r for r in rows if r["image"].startswith("generated") and r["kind"] == "bc7"]
    assert generated and all(r["pass"] for r in generated)
    assert "O3 BC7" in proc.stdout and ("PASS" in proc.stdout or "MISS" in proc.stdout)


def test_bench_load_stage_quick(tmp_path: Path) -> None:
    out = tmp_path / "load_stage.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_load_stage.py"), "--quick", "--top", "5",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["quick"] and result["device"]["name"] and result["validation"] is False
    assert set(result["scenes"]) == {"meshes", "instances", "chess"}
    assert result["scenes"]["chess"]["cold_target"] == 2.0 and result["scenes"]["meshes"]["cold_target"] == 1.5
    for name, scene in result["scenes"].items():
        assert scene["floor_s"] > 0 and scene["cold_s"] > 0 and scene["warm_s"] > 0, name
        assert scene["cold_over_floor"] == scene["cold_s"] / scene["floor_s"]
        assert isinstance(scene["cold_pass"], bool) and isinstance(scene["warm_pass"], bool)
        assert scene["instances"] > 0 and scene["triangles"] > 0 and scene["warnings"] == 0
        assert scene["profile"]["top_tottime"]
    assert result["scenes"]["instances"]["instances"] > result["scenes"]["instances"]["unique_meshes"]
    assert "cold/floor" in proc.stdout and ("PASS" in proc.stdout or "MISS" in proc.stdout)


def test_bench_validate_quick(tmp_path: Path) -> None:
    out = tmp_path / "validate.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_validate.py"), "--quick", "--no-dask",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["quick"] and result["assets"] == 60
    assert {r["what"].split(",")[0] for r in result["per_asset"]} == {
        "check_asset usd", "check_asset usd without UsdValidation", "check_asset ktx2", "check_asset vox"}
    assert all(r["floor_ms"] > 0 and r["ratio"] > 0 for r in result["per_asset"])
    assert [j["what"].split("(")[0] for j in result["jobs"]] == ["validate", "validate"]
    assert all(j["crashed"] == 0 and j["assets"] == 60 and j["errors"] == 0 for j in result["jobs"])
    assert "Targets:" in proc.stdout


def test_bench_blender_quick(tmp_path: Path) -> None:
    import importlib.util

    import pytest

    # bpy lives in its own virtualenv (.venv-blender, made by scripts/setup.sh: it pins numpy < 2)
    python = os.environ.get("VIXEN_BLENDER_PYTHON") or str(REPO / ".venv-blender" / "bin" / "python")
    if importlib.util.find_spec("bpy") is not None:
        python = sys.executable
    elif not Path(python).exists():
        if sys.version_info[:2] != (3, 11) and sys.version_info < (3, 13):
            pytest.skip("PyPI has no bpy wheel for this Python (3.11 and 3.13+ have one)")
        pytest.fail("no bpy virtualenv: run `make setup` (it creates .venv-blender) or set VIXEN_BLENDER_PYTHON")
    out = tmp_path / "blender.json"
    proc = subprocess.run([python, str(REPO / "benchmarks" / "bench_blender.py"), "--quick", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    whats = [r["what"] for r in result["rows"]]
    for prefix in ("floor: foreach_get", "load_blend via arrays, evaluated", "load_blend via usd",
                   "peer: Blender's own USD import"):
        assert any(w.startswith(prefix) for w in whats), f"{prefix!r} missing:\n{proc.stdout[-3000:]}"
    assert all(r["best_s"] > 0 and r["x_floor"] > 0 for r in result["rows"])
    arrays = next(r for r in result["rows"] if r["what"].startswith("load_blend via arrays, evaluated"))
    usd = next(r for r in result["rows"] if r["what"].startswith("load_blend via usd"))
    assert arrays["triangles"] == usd["triangles"] > 0  # the two paths load the same scene
    assert "Targets:" in proc.stdout


def test_bench_vt_quick(tmp_path: Path) -> None:
    out = tmp_path / "vt.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_vt.py"), "--quick", "--sizes", "1024",
                           "--frames", "10", "--budget-mb", "48", "--big-update", "32", "--big-updates", "2",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    (r,) = result["results"]
    assert r["build"]["mb_per_s"] > 0 and r["build"]["peak_rss_bytes"] > 0
    rows = r["paths"]
    assert {row["path"] for row in rows} == {"spiral", "zoom", "random"}
    assert all(row["tiles"] > 0 and row["floor_tiles_per_s"] > 0 and 0 <= row["hit_rate"] <= 1 for row in rows)
    assert {b["backend"] for b in r["big_updates"]} | set(r["backends_not_available"]) == {"pagetable", "sparse"}
    assert "tiles/s (floor" in proc.stdout


def test_bench_churn_device_quick(tmp_path: Path) -> None:
    out = tmp_path / "churn_device.json"
    page = tmp_path / "churn.html"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_churn.py"), "--device", "--quick",
                           "--json", str(out), "--html", str(page)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    dev, vma = result["device"], result["vma_simulation"]
    assert result["ops"] == 20_000 and dev["ops"] == 20_000 and dev["device"]
    for key in ("at_end", "worst", "after_incremental", "after_full_pass"):
        assert dev[key]["held_bytes"] > 0 and dev[key]["overhead"] >= 1.0
    assert dev["vk_allocate_memory_per_1000_ops"] > 0 and vma["at_end"]["overhead"] >= 1.0
    assert "VMA policy (sim)" in proc.stdout and "vkAllocateMemory per 1,000 ops" in proc.stdout
    assert page.read_text().startswith("<!DOCTYPE html>")
