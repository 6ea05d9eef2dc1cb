"""``vixen-assets load``: the JSON summary, the table, and clear one-line errors: exit code 2 for usage errors
(bad option, unknown device, missing file), 1 for failures (budget exceeded)."""

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


def assert_one_error_line(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The command failed with ``code`` and exactly one stderr line naming every needle (no traceback); log lines
    (``WARNING logger: ...``, e.g. the budget's warning before it is exceeded) may precede it."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("WARNING vixen_assets.")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("vixen-assets load: error:"), lines[0]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_missing_file_is_a_usage_error(tmp_path):
    missing = tmp_path / "nowhere.usda"
    assert_one_error_line(run_cli(str(missing)), 2, str(missing), "not found")


def test_negative_budget_is_a_usage_error():
    """``--budget-mb -5`` is refused by name before Vulkan is opened (it used to end in a traceback)."""
    assert_one_error_line(run_cli(SMALL, "--budget-mb", "-5"), 2, "--budget-mb", "-5", "positive")
    assert_one_error_line(run_cli(SMALL, "--budget-mb", "0"), 2, "--budget-mb")


def test_unknown_device_is_a_usage_error():
    assert_one_error_line(run_cli(SMALL, "--device", "no-such-gpu"), 2, "no-such-gpu", "devices:")
    assert_one_error_line(run_cli(SMALL, "--device", "99"), 2, "99", "no device with that index")


def test_debug_shows_the_traceback():
    env = dict(os.environ, COLUMNS="120")
    argv = [sys.executable, "-m", "vixen_assets.cli.main", "--debug", "load", SMALL, "--budget-mb", "-5"]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("vixen-assets load: error: --budget-mb")


def test_main_returns_the_exit_code_in_process(capsys):
    """The same through ``main()`` (what the console script calls)."""
    from vixen_assets.cli.main import main

    assert main(["load", SMALL, "--budget-mb", "-5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--budget-mb" in err[0]


def test_budget_too_small_exits_1_with_a_clear_message(tmp_path):
    spec = importlib.util.spec_from_file_location("generate_scene", REPO / "samples" / "generate_scene.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    scene = tmp_path / "too_big.usdc"
    gen.generate_scene(scene, meshes=20, triangles=200_000)  # about 10 MB on the GPU
    proc = run_cli(str(scene), "--budget-mb", "1")
    assert_one_error_line(proc, 1, "budget exceeded", "'mesh'")
    assert "leaked" not in proc.stderr
    # the same scene fits a sane budget
    ok = run_cli(str(scene), "--json", "--budget-mb", "256")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["instances"] == 20


def test_other_commands_share_the_error_line(tmp_path, capsys):
    """``texture info`` on a missing file and ``memory`` on an unknown device: one line, exit code 2."""
    from vixen_assets.cli.main import main

    missing = tmp_path / "nope.ktx2"
    assert main(["texture", "info", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vixen-assets texture: error: {missing}: file not found"]
    assert main(["memory", "--device", "no-such-gpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vixen-assets memory: error:") and "no-such-gpu" in err[0]
