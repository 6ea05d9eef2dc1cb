"""Tests of ``vixen-assets memory``: the JSON report after a small workload (run as a real subprocess), and the
rich tables in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vixen_assets.cli.main import SUBCOMMANDS, main


def run_cli(*args: str, repo_root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VIXEN_VALIDATION="1", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "vixen_assets.cli.main", *args], capture_output=True, text=True,
                          cwd=repo_root, env=env, timeout=120)


def check_blocks(report: dict[str, Any]) -> None:
    for block in report["blocks"]:
        ranges = sorted(block["used_ranges"] + block["free_ranges"])
        pos = 0
        for off, size in ranges:
            assert off == pos and size > 0
            pos += size
        assert pos == block["size"] == block["used"] + block["free"]
        assert 0.0 <= block["fragmentation"] <= 1.0


def test_memory_json_after_a_workload(repo_root: Path) -> None:
    assert "memory" in SUBCOMMANDS
    proc = run_cli("memory", "--json", "--workload", "20", repo_root=repo_root)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert "validation:" not in proc.stderr and "leaked" not in proc.stderr

    assert report["device"]
    assert report["heaps"] and all(h["size"] > 0 for h in report["heaps"])
    budget = report["budget"]
    assert budget["limit"] > 0 and 0 <= budget["used"] <= budget["limit"] and budget["peak"] >= budget["used"]
    assert {"quota", "used"} <= budget["staging"].keys()

    work = report["workload"]
    assert work["created"] == 20 and work["destroyed"] == 7 and work["live"] == 13 and work["live_bytes"] > 0
    cats = report["categories"]
    workload_cats = {k: v for k, v in cats.items() if k in ("meshes", "textures", "voxels")}
    assert sum(c["count"] for c in workload_cats.values()) == 13
    assert sum(c["bytes"] for c in workload_cats.values()) == work["live_bytes"]
    assert sum(c["total_count"] for c in workload_cats.values()) == 20
    assert report["live_objects"]["Buffer"]["count"] >= 13

    # every budgeted byte sits in a block, and the blocks' ranges tile them. ``budget["used"]`` is the primary
    # (device-local) heap; on a discrete GPU the host_visible buffers are charged to the host heap they live in, so
    # the blocks hold what all heaps are charged (one heap on unified memory: the same number)
    assert report["blocks"] and sum(b["used"] for b in report["blocks"]) == sum(h["used"] for h in budget["heaps"])
    assert budget["used"] in [h["used"] for h in budget["heaps"] if h["device_local"]]
    check_blocks(report)
    assert report["allocator"]["blocks"] == len(report["blocks"])
    assert report["calls"]["workload"]["suballocations"] == 20
    assert report["calls"]["workload"]["subfrees"] == 7


def test_memory_json_without_workload(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "workload" not in report
    assert not any(k in report["categories"] for k in ("meshes", "textures", "voxels"))
    check_blocks(report)


def test_memory_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory", "--workload", "9", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    for text in ("heaps", "budget (primary heap)", "categories", "blocks", "fragmentation", "used / limit",
                 "staging used / quota", "workload: 9 buffers created, 3 destroyed, 6 live"):
        assert text in out, f"{text!r} missing from the table output"


def test_memory_rejects_a_negative_workload(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory", "--workload", "-1"]) == 2
    assert "--workload must be >= 0" in capsys.readouterr().err


def test_memory_budget_mb_is_a_byte_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory", "--json", "--budget-mb", "64"]) == 0
    budget = json.loads(capsys.readouterr().out)["budget"]
    assert budget["limit"] == 64 << 20  # no second look at the device: BudgetOptions.limit_bytes
    assert budget["warning_threshold"] == int(0.8 * (64 << 20))  # the warning is a share of the chosen limit


def test_memory_bad_budget_mb_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory", "--budget-mb", "-5"]) != 0
    err = capsys.readouterr().err.strip()
    assert "--budget-mb" in err and "-5" in err and "Traceback" not in err and len(err.splitlines()) == 1
