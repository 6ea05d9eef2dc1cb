"""``vixen-assets load``: the JSON summary, the table, and clear errors with exit code 1."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SMALL = "samples/scenes/small_scene.usda"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="120")  # VIXEN_VALIDATION=1 is inherited from conftest
    return subprocess.run([sys.executable, "-m", "vixen_assets.cli.main", "load", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)


def test_load_json_summary():
    proc = run_cli(SMALL, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    # the bundled scene: 4 meshes, a time-sampled one, 2 instanceable references and 3 point-instancer points;
    # the invisible and the guide prims are skipped
    assert summary["prims_visited"] > 0
    assert summary["meshes"] == summary["instances"] == 10
    assert summary["unique_meshes"] == 5
    assert summary["triangle_count"] == summary["triangles"] > 0
    assert summary["bytes_uploaded"] > 0
    assert summary["seconds"]["total"] > 0
    assert summary["gb_per_s"] == pytest.approx(summary["bytes_uploaded"] / summary["seconds"]["total"] / 1e9)
    assert 0 < summary["peak_budget_bytes"] <= summary["budget_limit_bytes"]
    assert summary["warnings"] == 0 and summary["warning_messages"] == []
    assert summary["device"]
    assert not summary["warm"]
    assert "leaked" not in proc.stderr


def test_load_prints_a_table():
    proc = run_cli(SMALL)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for label in ("prims visited", "unique meshes", "instances", "triangles", "uploaded", "time", "throughput",
                  "peak budget use"):
        assert label in out, out
    assert " MB" in out and "GB/s" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_missing_file_exits_1_with_a_clear_message(tmp_path):
    missing = tmp_path / "nowhere.usda"
    proc = run_cli(str(missing))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert str(missing) in proc.stderr and "not found" in proc.stderr
    assert proc.stderr.strip().startswith("vixen-assets load: error:")


def test_budget_too_small_exits_1_with_a_clear_message(tmp_path):
    spec = importlib.util.spec_from_file_location("generate_scene", REPO / "samples" / "generate_scene.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    scene = tmp_path / "too_big.usdc"
    gen.generate_scene(scene, meshes=20, triangles=200_000)  # about 10 MB on the GPU
    proc = run_cli(str(scene), "--budget-mb", "1")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "budget exceeded" in proc.stderr and "'mesh'" in proc.stderr, proc.stderr
    assert "leaked" not in proc.stderr
    # the same scene fits a sane budget
    ok = run_cli(str(scene), "--json", "--budget-mb", "256")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["instances"] == 20
