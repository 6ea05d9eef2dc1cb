"""The package face (``vixen_assets/__init__.py``): what plugin authors need, one import per line, every error class,
and ``__version__`` from the package metadata."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
from pathlib import Path

import vixen_assets
from vixen_assets import errors

FACE = Path(vixen_assets.__file__)


def test_plugin_author_names_are_exported() -> None:
    for name in ("TypedCacher", "LoadContext", "AllocationGroup", "CacherRegistry", "Buffer", "Image", "Scene",
                 "BudgetOptions", "HeldEntry", "hookimpl"):
        assert name in vixen_assets.__all__, name
        assert getattr(vixen_assets, name) is not None


def test_every_error_and_warning_class_is_exported() -> None:
    classes = {n for n, obj in vars(errors).items()
               if inspect.isclass(obj) and obj.__module__ == errors.__name__}
    assert classes and classes <= set(vixen_assets.__all__), sorted(classes - set(vixen_assets.__all__))


def test_all_is_sorted_resolves_and_imports_are_one_per_line() -> None:
    names = vixen_assets.__all__
    assert names == sorted(names)
    assert all(hasattr(vixen_assets, n) for n in names)
    tree = ast.parse(FACE.read_text())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            assert len(node.names) == 1, f"line {node.lineno}: one import per line"


def test_version_comes_from_metadata() -> None:
    assert vixen_assets.__version__ == importlib.metadata.version("vixen-assets")
