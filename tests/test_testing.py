"""Tests of :mod:`vixen_assets.testing` (the pytest plugin): under ``CI=true`` every skip for a missing asset fails,
whichever way it skips (the ``vixen_assets_dir`` fixture, :func:`missing_asset`, :func:`asset_skip_mark`); other
skips stay skips."""

from __future__ import annotations

import pytest

INNER = """
import pytest
from vixen_assets.testing import asset_skip_mark, missing_asset

def test_fixture(vixen_assets_dir):
    assert vixen_assets_dir.is_dir()

def test_call():
    missing_asset("nothing here")

@asset_skip_mark("no such file")
def test_mark():
    pass

@pytest.mark.parametrize("f", [pytest.param(None, marks=asset_skip_mark("no files"))])
def test_param(f):
    pass

def test_other_skip():
    pytest.skip("an optional package is missing")
"""


@pytest.mark.parametrize("ci", ["", "true"])
def test_ci_turns_every_asset_skip_into_a_failure(pytester: pytest.Pytester, ci: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIXEN_SHARED_ASSETS", str(pytester.path / "no-assets-here"))
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-q", "-rs")
    if ci:
        outcomes = result.parseoutcomes()
        # a skip in the call fails the test; one in setup (a mark, the fixture) errors it: either way not a pass
        assert outcomes.get("failed", 0) + outcomes.get("errors", outcomes.get("error", 0)) == 4, outcomes
        assert outcomes.get("skipped") == 1 and result.ret != 0
        out = result.stdout.str()
        assert "missing asset: no such file" in out and "missing asset: no files" in out
    else:
        result.assert_outcomes(skipped=5)
