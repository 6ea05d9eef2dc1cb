"""``vixen-assets plugins [--json]``: every plugin with its version, hooks and the cachers it registered."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table

from ..plugins import cacher_registry, get_plugin_manager, plugin_infos
from .output import console


def register(sub: Any) -> None:
    """Add the ``plugins`` subcommand."""
    p = sub.add_parser("plugins", help="list plugins, their versions, hooks and cachers")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List the plugins."""
    pm = get_plugin_manager()
    registry = cacher_registry(pm)
    infos = plugin_infos(pm)
    cachers = registry.describe()
    failures = [{"plugin": f.name, "error": f.error} for f in pm.vixen_failures]
    if args.json:
        print(json.dumps({"plugins": [vars(i) | {"hooks": list(i.hooks)} for i in infos], "cachers": cachers,
                          "failures": failures}, indent=2))
        return 0
    table = Table(title="plugins", title_justify="left")
    for col in ("plugin", "version", "hooks", "built in"):
        table.add_column(col)
    for i in infos:
        table.add_row(i.name, i.version, ", ".join(i.hooks), "yes" if i.builtin else "")
    console.print(table)
    ct = Table(title="cachers", title_justify="left")
    for col in ("cacher", "prim types", "suffixes", "plugin"):
        ct.add_column(col)
    for c in cachers:
        ct.add_row(c["cacher"], ", ".join(c["prim_types"]), ", ".join(c["suffixes"]), c["plugin"])
    console.print(ct)
    for f in failures:
        console.print(f"[red]failed:[/] {f['plugin']}: {f['error']}")
    return 1 if failures else 0
