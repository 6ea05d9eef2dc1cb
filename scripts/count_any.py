"""Count ``Any`` at the seams: in the annotations of parameters, returns and attributes of the layers under the
cachers (``vk``, ``memory``, ``transfer``) and of ``device.py``, plus every ``device`` parameter not typed
``Device`` anywhere in the package. ``make test`` prints it; ``--max-device-any N`` fails when the last number
grows past ``N``.

Usage: ``python scripts/count_any.py [--json] [--max-device-any N]``
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import Counter
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "vixen_assets"
SEAMS = ("vk", "memory", "transfer", "device.py", "stash.py")


def _any_count(ann: ast.expr | None) -> int:
    if ann is None:
        return 0
    return sum(1 for n in ast.walk(ann) if (isinstance(n, ast.Name) and n.id == "Any")
               or (isinstance(n, ast.Attribute) and n.attr == "Any")
               or (isinstance(n, ast.Constant) and isinstance(n.value, str) and "Any" in n.value))


def count_file(path: Path) -> tuple[int, int, list[str]]:
    """``(Any in annotations, Any in public signatures, untyped device parameters)`` of one module."""
    tree = ast.parse(path.read_text())
    total = public = 0
    untyped: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            args = a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]
            n = sum(_any_count(x.annotation) for x in args) + _any_count(node.returns)
            total += n
            if not node.name.startswith("_") or node.name == "__init__":
                public += n
            for x in args:
                if x.arg == "device" and (x.annotation is None or "Device" not in ast.unparse(x.annotation)):
                    untyped.append(f"{path.relative_to(PKG.parent)}:{node.lineno} {node.name}()")
        elif isinstance(node, ast.AnnAssign):
            total += _any_count(node.annotation)
    return total, public, untyped


def main(argv: list[str] | None = None) -> int:
    """Print the counts; fail when untyped ``device`` parameters exceed ``--max-device-any``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--max-device-any", type=int, default=None)
    args = ap.parse_args(argv)
    per_layer: Counter[str] = Counter()
    per_layer_public: Counter[str] = Counter()
    untyped: list[str] = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).parts
        total, public, bad = count_file(path)
        untyped += bad
        if rel[0] in SEAMS:
            layer = rel[0].removesuffix(".py")
            per_layer[layer] += total
            per_layer_public[layer] += public
    doc = {"any_in_annotations": dict(per_layer), "any_in_public_signatures": dict(per_layer_public),
           "untyped_device_parameters": untyped}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        cells = ", ".join(f"{k} {per_layer[k]} ({per_layer_public[k]} public)" for k in sorted(per_layer))
        print(f"Any at the seams: {sum(per_layer.values())} in annotations ({cells}); "
              f"device parameters not typed Device: {len(untyped)}")
        for u in untyped:
            print(f"  untyped device: {u}")
    if args.max_device_any is not None and len(untyped) > args.max_device_any:
        print(f"count_any: {len(untyped)} device parameters not typed Device (allowed {args.max_device_any})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
