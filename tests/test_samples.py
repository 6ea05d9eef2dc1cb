"""The scripts under samples/ run as tests (as pygfx runs its examples), on the real driver with validation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VIXEN_VALIDATION="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def test_upload_roundtrip_sample(tmp_path: Path) -> None:
    r = _run([str(SAMPLES / "upload_roundtrip.py"), "--mib", "8", "--validation"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all round trips ok" in r.stdout


@pytest.mark.parametrize("mode", ["xform", "instanceable", "pointinstancer"])
def test_generate_scene_then_load_it(tmp_path: Path, mode: str) -> None:
    out = tmp_path / f"gen-{mode}.usda"
    r = _run([str(SAMPLES / "generate_scene.py"), "--meshes", "6", "--instances", "12", "--triangles", "3000",
              "--mode", mode, "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.exists()
    r = _run(["-m", "vixen_assets.cli.main", "load", str(out), "--json", "--validation"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    import json

    summary = json.loads(r.stdout)
    assert summary["unique_meshes"] >= 1 and summary["instances"] >= 6 and summary["warnings"] == 0


def test_bundled_scene_loads_with_the_demo_command(tmp_path: Path) -> None:
    r = _run(["-m", "vixen_assets.cli.main", "load", str(SAMPLES / "scenes" / "small_scene.usda")], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "unique meshes" in r.stdout and "triangles" in r.stdout
