"""The plugin's tests use vixen-assets' pytest plugin (``vixen_device``: validation on, leaks fail the test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def device(vixen_device: Any) -> Iterator[Any]:
    """The validated device of the ``vixen_device`` fixture under a short name."""
    yield vixen_device
