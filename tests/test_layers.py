"""The house layering: a module never imports (at run time) from a layer above its own, and nothing below
``cachers`` receives or stores a ``Device``.

Imports counted: relative (``from .x import y``, ``from . import x``) and absolute (``import vixen_assets.x``,
``from vixen_assets.x import y``, ``from vixen_assets import x``), at module level and inside functions; only
``if TYPE_CHECKING:`` blocks are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vixen_assets

#: Layer of each top-level module or package under vixen_assets (higher may import lower, never the reverse).
LAYERS = {
    "errors": 0, "hookspecs": 0, "hookcalls": 0, "formats": 0, "geometry": 0, "estimate": 0,
    "vk": 1, "memory": 2, "transfer": 3,
    "cachers": 4, "accel": 4, "plugins": 4, "device": 4, "stash": 4,
    "scene": 5, "usd": 5, "voxels": 5, "textures": 5, "trace": 5, "trace_pipeline": 5, "vt": 5,
    "testing": 6, "validate": 6, "cli": 7,
}
#: layers that must never receive, hold or import a ``Device`` (everything below ``cachers``)
NO_DEVICE = ("vk", "memory", "transfer")
PKG = Path(vixen_assets.__file__).parent


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import outside ``if TYPE_CHECKING:`` blocks (module level and function-local)."""
    out: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.append(child)
            visit(child)

    visit(tree)
    return out


def _targets(rel: tuple[str, ...], node: ast.Import | ast.ImportFrom) -> list[list[str]]:
    """The package paths (below ``vixen_assets``) an import reaches, one per imported name."""
    if isinstance(node, ast.Import):
        return [a.name.split(".")[1:] for a in node.names if a.name.split(".")[0] == "vixen_assets"]
    if node.level:
        pkg = list(rel[:-1])
        base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
    elif node.module and node.module.split(".")[0] == "vixen_assets":
        base = []
    else:
        return []
    mod = node.module.split(".") if node.module else []
    if not node.level:
        mod = mod[1:]
    target = base + mod
    if target:
        return [target]
    return [[a.name] for a in node.names]  # ``from . import x`` / ``from vixen_assets import x``: each x


def _offenders(path: Path, source: str) -> list[str]:
    rel = path.relative_to(PKG).parts if path.is_relative_to(PKG) else ("cli", path.name)
    top = rel[0].removesuffix(".py")
    out = []
    for node in _runtime_imports(ast.parse(source)):
        for target in _targets(rel, node):
            if not target:
                continue
            other = target[0].removesuffix(".py")
            if other == "__init__" or (other not in LAYERS and other in ("__version__",)):
                other = "__init__"
            if other == "__init__" and top != "__init__":
                out.append(f"{path.name}: imports the package face (vixen_assets/__init__) at line {node.lineno}")
            elif other in LAYERS and LAYERS[other] > LAYERS[top]:
                out.append(f"{'/'.join(rel)}:{node.lineno}: imports {'.'.join(target)}")
    return out


def test_no_module_imports_from_a_layer_above() -> None:
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).parts
        top = rel[0].removesuffix(".py")
        if top == "__init__":
            continue
        assert top in LAYERS, f"{top}: give this new module a layer in tests/test_layers.py"
        offenders += _offenders(path, path.read_text())
    assert not offenders, "\n".join(offenders)


def test_the_check_sees_every_kind_of_import() -> None:
    """The checker itself: absolute, ``from . import X``, function-local and the package face are all caught."""
    fake = PKG / "memory" / "fake.py"
    cases = {
        "import vixen_assets.cachers\n": True,
        "from vixen_assets.usd import load_stage\n": True,
        "from vixen_assets import device\n": True,
        "from .. import cachers\n": True,
        "def f():\n    from ..device import Device\n": True,
        "from vixen_assets import __version__\n": True,
        "from .. import __version__\n": True,
        "from ..vk import LogicalDevice\nimport vixen_assets.errors\n": False,
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..device import Device\n": False,
    }
    for source, bad in cases.items():
        assert bool(_offenders(fake, source)) is bad, source


def _device_offenders(path: Path, source: str) -> list[str]:
    """Parameters or attributes named ``device`` or annotated ``Device``, and run-time imports of ``device``."""
    rel = "/".join(path.relative_to(PKG).parts)
    tree = ast.parse(source)
    out = []

    def annotated_device(ann: ast.expr | None) -> bool:
        return ann is not None and "Device" in {n.id for n in ast.walk(ann) if isinstance(n, ast.Name)} | {
            n.value for n in ast.walk(ann) if isinstance(n, ast.Constant) and isinstance(n.value, str)}

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            for arg in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]:
                if arg.arg == "device" or annotated_device(arg.annotation):
                    out.append(f"{rel}:{node.lineno}: parameter {arg.arg!r} is a Device")
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and node.attr in ("device",
                                                                                                  "_device"):
            out.append(f"{rel}:{node.lineno}: stores .{node.attr}")
        elif isinstance(node, ast.AnnAssign) and annotated_device(node.annotation):
            out.append(f"{rel}:{node.lineno}: annotated Device")
    for node in _runtime_imports(tree):
        for target in _targets(path.relative_to(PKG).parts, node):
            if target and target[0] in ("device", "device.py"):
                out.append(f"{rel}:{node.lineno}: imports device")
    return out


def test_no_module_below_cachers_receives_or_stores_a_device() -> None:
    offenders = []
    for layer in NO_DEVICE:
        for path in (PKG / layer).rglob("*.py"):
            offenders += _device_offenders(path, path.read_text())
    assert not offenders, "\n".join(offenders)
    fake = PKG / "memory" / "fake.py"
    for source in ("def f(device): pass\n", "def f(x: Device): pass\n", "def f(x: 'Device'): pass\n",
                   "class A:\n    def __init__(self, d):\n        self.device = d\n", "from ..device import Device\n"):
        assert _device_offenders(fake, source), source


def test_only_vk_imports_the_binding() -> None:
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                 if p.relative_to(PKG).parts[0] != "vk" and any(
                     isinstance(n, (ast.Import, ast.ImportFrom)) and "vulkan" in
                     ([a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""])
                     for n in ast.walk(ast.parse(p.read_text())))]
    assert not offenders, offenders
