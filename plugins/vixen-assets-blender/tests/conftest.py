"""The plugin's tests use vixen-assets' pytest plugin (``vixen_device``: validation on, leaks fail the test).

bpy pins numpy < 2, so ``scripts/setup.sh`` installs it in its own virtualenv, ``.venv-blender``, not in the
project's ``.venv``. Under an interpreter without bpy, the bpy tests are not collected here; ``test_in_blender_venv``
runs them in ``.venv-blender`` (through a subprocess pytest) instead, so ``make test`` still runs every one of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from blender_venv import BPY_TESTS, HAS_BPY

collect_ignore = [] if HAS_BPY else BPY_TESTS


@pytest.fixture
def device(vixen_device: Any) -> Iterator[Any]:
    """The validated device of the ``vixen_device`` fixture under a short name."""
    yield vixen_device
