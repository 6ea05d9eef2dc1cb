"""The documentation keeps up with the code (as datasette's ``tests/test_docs.py``).

- every hook in ``vixen_assets.hookspecs`` has a section in ``docs/plugins.md`` whose heading is its exact
  signature, ``name(arg1, arg2)``;
- every public name in ``vixen_assets.__all__`` has a docstring;
- every public function and method in the ``vixen_assets`` package has a docstring and type hints on every
  parameter and on its return.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import vixen_assets
from vixen_assets import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs"


def hook_signature(name: str) -> str:
    """``name(arg1, arg2)`` of a hook spec, from its Python signature."""
    params = inspect.signature(getattr(hookspecs, name)).parameters
    return f"{name}({', '.join(params)})"


def headings(path: Path) -> list[str]:
    """Markdown headings of a file, without the leading ``#``\\ s and backticks."""
    out = []
    for line in path.read_text().splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if m:
            out.append(m.group(1).strip("`"))
    return out


@pytest.mark.parametrize("hook", hookspecs.all_hook_names())
def test_every_hook_has_a_section_headed_by_its_signature(hook: str) -> None:
    assert hook_signature(hook) in headings(DOCS / "plugins.md"), (
        f"docs/plugins.md needs a section '## {hook_signature(hook)}'")


def test_plugins_doc_links_point_to_real_files() -> None:
    text = (DOCS / "plugins.md").read_text()
    links = re.findall(r"\]\((\.\./[^)#\s]+)", text)
    assert any(link.startswith("../plugins/vixen-assets-points") for link in links)
    missing = [link for link in links if not (DOCS / link).resolve().exists()]
    assert missing == [], f"docs/plugins.md links to missing files: {missing}"


def test_plugins_doc_anchors_exist() -> None:
    text = (DOCS / "plugins.md").read_text()
    slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings(DOCS / "plugins.md")}
    missing = [a for a in re.findall(r"\]\(#([^)]+)\)", text) if a not in slugs]
    assert missing == [], f"docs/plugins.md links to missing sections: {missing}"


def test_public_names_have_docstrings() -> None:
    missing = []
    for name in vixen_assets.__all__:
        obj = getattr(vixen_assets, name)
        if isinstance(obj, (str, int, float, tuple)):
            continue  # __version__ and other plain values
        if not inspect.getdoc(obj):
            missing.append(name)
    assert missing == []


# ---------------------------------------------------------------- every public function and method


def package_modules() -> Iterator[ModuleType]:
    """Every module of the ``vixen_assets`` package."""
    yield vixen_assets
    for info in pkgutil.walk_packages(vixen_assets.__path__, prefix="vixen_assets."):
        yield importlib.import_module(info.name)


def public_functions(module: ModuleType) -> Iterator[tuple[str, Callable[..., Any], bool]]:
    """``(qualified name, function, is_method)`` for every public function and method defined in ``module``."""
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield f"{module.__name__}.{name}", obj, False
        elif inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    fn, is_method = member.__func__, isinstance(member, classmethod)
                elif isinstance(member, property):
                    if member.fget is None:
                        continue
                    fn, is_method = member.fget, True
                elif inspect.isfunction(member):
                    fn, is_method = member, True
                else:
                    continue
                if getattr(fn, "__module__", None) != module.__name__:
                    continue  # aliases of functions defined elsewhere
                yield f"{module.__name__}.{obj.__name__}.{attr}", fn, is_method


def problems_of(fn: Callable[..., Any], is_method: bool) -> list[str]:
    """What ``fn`` lacks: a docstring, parameter annotations, a return annotation."""
    out = []
    if not inspect.getdoc(fn):
        out.append("no docstring")
    params = list(inspect.signature(fn).parameters.values())
    if is_method and params:
        params = params[1:]  # self / cls
    bare = [p.name for p in params if p.annotation is inspect.Parameter.empty]
    if bare:
        out.append(f"no type hint on {', '.join(bare)}")
    if inspect.signature(fn).return_annotation is inspect.Signature.empty:
        out.append("no return type")
    return out


def test_public_functions_have_type_hints_and_docstrings() -> None:
    violations = []
    for module in package_modules():
        for qualname, fn, is_method in public_functions(module):
            problems = problems_of(fn, is_method)
            if problems:
                violations.append(f"{qualname}: {'; '.join(problems)}")
    assert violations == [], "\n".join(violations)
