"""``vixen-assets vt build|info|stream``: JSON summaries, the tables, and clear errors with their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vixen_assets.cli.main import main
from vixen_assets.vt import TileFile
from vixen_assets.vt.procedural import procedural_source


def test_build_procedural_then_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.vtex"
    assert main(["vt", "build", "procedural:1024", "-o", str(out), "--tile", "128", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["size"], summary["levels"], summary["tiles"]) == (1024, 4, 85)
    assert summary["level0_mb_per_s"] > 0
    with TileFile(out) as tf:  # the procedural source really is what was cut
        want = procedural_source(1024)(0, 0, 132, 132)
        np.testing.assert_array_equal(tf.read_pixels(0)[4:, 4:], want)
    assert main(["vt", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1024 x 1024" in text and "128 + 4 border" in text and "85" in text


def test_stream_prints_the_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.vtex"
    assert main(["vt", "build", "procedural:2048", "-o", str(out), "--json"]) == 0
    capsys.readouterr()
    for path in ("spiral", "zoom", "random"):
        assert main(["vt", "stream", str(out), "--budget-mb", "8", "--path", path, "--frames", "20",
                     "--max-tiles", "16", "--json"]) == 0
        s = json.loads(capsys.readouterr().out)
        assert s["frames"] == 20 and s["uploaded"] > 0 and 0 <= s["hit_rate"] <= 1
        assert s["memory_bytes"] <= 8 << 20 and s["update_p99_ms"] >= s["update_p50_ms"] > 0
    assert main(["vt", "stream", str(out), "--budget-mb", "8", "--frames", "5", "--cpu-requests"]) == 0
    text = capsys.readouterr().out
    assert "hit rate" in text and "update p50 / p99" in text and "level bias" in text


def test_errors_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1 for bad files and sources, 2 for usage errors (the CLI's convention)."""
    bad = tmp_path / "bad.vtex"
    bad.write_bytes(b"nope" * 100)
    assert main(["vt", "info", str(bad)]) == 1
    assert "not a .vtex file" in capsys.readouterr().err
    assert main(["vt", "build", "procedural:1000", "-o", str(tmp_path / "x.vtex")]) == 1
    assert "power of two" in capsys.readouterr().err
    assert main(["vt", "build", "procedural:big", "-o", str(tmp_path / "x.vtex")]) == 2
    assert "procedural:SIZE" in capsys.readouterr().err
