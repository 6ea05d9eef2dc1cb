"""The fuzz harness (``scripts/fuzz_loaders.py``): mutated KTX2, ``.vox`` and USD files through the public loaders
on the device, each input in a child process with an RSS and a time limit; every outcome must be a load or a
``VixenError``, with nothing left behind.

The short run is part of ``make test``; the long one is ``-m slow`` (``VIXEN_FUZZ_COUNT`` inputs per format,
100000 by default, over ``VIXEN_FUZZ_WORKERS`` processes)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from vixen_assets.testing import assets_dir

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("fuzz_loaders", REPO / "scripts" / "fuzz_loaders.py")
assert _spec is not None and _spec.loader is not None
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_loaders"] = fuzz
_spec.loader.exec_module(fuzz)

SHORT = 300


def _report(summary: dict[str, Any]) -> str:
    return (f"{summary['format']}: {summary['inputs']} inputs in {summary['seconds']} s, slowest {summary['max_ms']} ms "
            f"(limit {summary['time_limit_s'] * 1000:.0f}), peak RSS +{summary['max_rss_mb']} MiB (limit "
            f"{summary['rss_limit_mb']}), {summary['outcomes']}")


@pytest.mark.parametrize("fmt", fuzz.FORMATS)
def test_fuzz_short(fmt: str, tmp_path: Path) -> None:
    summary = fuzz.run(fmt, count=SHORT, seed=0, workers=1, time_limit=20.0, rss_mb=512, out=tmp_path,
                       assets=assets_dir())
    print(_report(summary))
    assert summary["inputs"] == SHORT
    assert not summary["failures"], summary["failures"][:5]
    assert summary["outcomes"].get("ok", 0) > 0  # some mutants still load: the device path is exercised
    assert sum(v for k, v in summary["outcomes"].items() if k != "ok") > SHORT // 4  # and many are refused


def test_the_harness_records_every_kind_of_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash, a hang, a memory hog and a non-VixenError are each recorded against their input, and the run resumes
    after each (the harness can fail)."""
    monkeypatch.setenv("VIXEN_FUZZ_SELFTEST", "crash:2,hang:4,hog:6,raise:8")
    summary = fuzz.run("vox", count=10, seed=0, workers=1, time_limit=8.0, rss_mb=256, out=tmp_path)
    got = {f["i"]: f["outcome"] for f in summary["failures"]}
    assert summary["inputs"] == 10, summary
    assert got[2].startswith("CRASH rc=77") and got[4].startswith("TIMEOUT")
    assert got[6].startswith(("RSS:", "CRASH", "BAD:MemoryError")) and got[8].startswith("BAD:KeyError")
    assert sorted(got) == [2, 4, 6, 8]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"vox-0-{i}.vox" for i in (2, 4, 6, 8)]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", fuzz.FORMATS)
def test_fuzz_long(fmt: str, tmp_path: Path) -> None:
    count = int(os.environ.get("VIXEN_FUZZ_COUNT", "100000"))
    workers = int(os.environ.get("VIXEN_FUZZ_WORKERS", str(os.cpu_count() or 2)))
    summary = fuzz.run(fmt, count=count, seed=int(os.environ.get("VIXEN_FUZZ_SEED", "1")), workers=workers,
                       out=tmp_path / "failures", assets=assets_dir())
    print(_report(summary))
    results = os.environ.get("VIXEN_FUZZ_JSON")
    if results:
        Path(results).with_suffix(f".{fmt}.json").write_text(json.dumps(summary, indent=1))
    assert summary["inputs"] == count
    assert not summary["failures"], summary["failures"][:10]
