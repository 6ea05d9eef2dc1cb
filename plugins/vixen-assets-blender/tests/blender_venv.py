"""Where the bpy virtualenv is, and whether this interpreter has bpy (shared by conftest and the driver test)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
HAS_BPY = importlib.util.find_spec("bpy") is not None
#: The tests that need bpy in this process.
BPY_TESTS = ["test_blender.py", "test_extension.py"]


def blender_python() -> Path | None:
    """The interpreter of the bpy virtualenv (``VIXEN_BLENDER_PYTHON``, else ``.venv-blender`` in the checkout), or
    ``None`` when there is none."""
    env = os.environ.get("VIXEN_BLENDER_PYTHON")
    path = Path(env) if env else REPO / ".venv-blender" / "bin" / "python"
    return path if path.exists() else None


def bpy_has_wheel() -> bool:
    """Whether PyPI has a bpy wheel for this Python (3.11 and 3.13+)."""
    return sys.version_info[:2] == (3, 11) or sys.version_info >= (3, 13)
