"""Shared fixtures: the validated ``device`` (from the ``vixen_assets.testing`` plugin) and asset paths."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("VIXEN_VALIDATION", "1")
os.environ.setdefault("VIXEN_ASSETS_DISABLE_PLUGIN_AUTOLOAD", "0")

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def device(vixen_device: Any) -> Iterator[Any]:
    """The validated device of the ``vixen_device`` fixture under a short name."""
    yield vixen_device


@pytest.fixture
def repo_root() -> Path:
    """The repository root."""
    return REPO
