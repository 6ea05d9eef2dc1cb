"""The house layering: a module never imports (at run time) from a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

import vixen_assets

#: Layer of each top-level module or package under vixen_assets (higher may import lower, never the reverse).
LAYERS = {
    "errors": 0, "hookspecs": 0, "formats": 0, "geometry": 0, "estimate": 0,
    "vk": 1, "memory": 2, "transfer": 3,
    "cachers": 4, "plugins": 4, "device": 4,
    "usd": 5, "voxels": 5, "textures": 5, "trace": 5,
    "testing": 6, "validate": 6, "cli": 7,
}
PKG = Path(vixen_assets.__file__).parent


def _runtime_imports(tree: ast.Module) -> list[ast.ImportFrom]:
    """Relative imports outside ``if TYPE_CHECKING:`` blocks."""
    out: list[ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.level:
                out.append(child)
            visit(child)

    visit(tree)
    return out


def test_no_module_imports_from_a_layer_above() -> None:
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).parts
        top = rel[0].removesuffix(".py")
        if top == "__init__":
            continue
        assert top in LAYERS, f"{top}: give this new module a layer in tests/test_layers.py"
        for node in _runtime_imports(ast.parse(path.read_text())):
            pkg = list(rel[:-1])
            base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
            target = base + (node.module.split(".") if node.module else [])
            if not target:
                continue
            other = target[0]
            if other in LAYERS and LAYERS[other] > LAYERS[top]:
                offenders.append(f"{path.relative_to(PKG)}: imports {'.'.join(target)}")
    assert not offenders, "\n".join(offenders)


def test_only_vk_imports_the_binding() -> None:
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                 if p.relative_to(PKG).parts[0] != "vk" and any(
                     isinstance(n, (ast.Import, ast.ImportFrom)) and "vulkan" in
                     ([a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""])
                     for n in ast.walk(ast.parse(p.read_text())))]
    assert not offenders, offenders
