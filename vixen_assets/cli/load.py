"""``vixen-assets load SCENE [--device N] [--json] [--budget-mb N]``: load a USD scene with a progress bar.

Files of other suffixes go to the plugins' ``vixen_load_scene_file`` hook (``.blend`` with vixen-assets-blender).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..device import list_devices, open_device, select_device
from ..errors import ConfigError, FormatError, VixenDeprecationWarning
from ..memory.options import BudgetOptions
from ..usd import load_stage
from .output import console, fmt_bytes

MiB = 1 << 20


def register(sub: Any) -> None:
    """Add the ``load`` subcommand."""
    p = sub.add_parser("load", help="load a USD scene onto a GPU and print a summary")
    p.add_argument("scene", help="a .usd/.usda/.usdc/.usdz file, or one a plugin loads (.blend: vixen-assets-blender)")
    p.add_argument("--device", default=None, help="device index or name substring (default: VIXEN_DEVICE or 0)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--budget-mb", type=float, default=None, help="cap the device budget at this many MiB")
    p.add_argument("--strict", action="store_true", help="fail on the first bad prim instead of skipping it")
    p.add_argument("--validation", action="store_true", help="enable the Vulkan validation layer")
    p.add_argument("--accel", action="store_true", help="also build ray-tracing acceleration structures")
    p.set_defaults(func=run)


def budget_options(budget_mb: float | None) -> BudgetOptions:
    """The budget for ``--budget-mb``: a byte cap on each device-local heap (no device needs opening to compute it).

    :param budget_mb: MiB, or ``None`` for the default budget.
    :raises ConfigError: ``budget_mb`` is not a positive number.
    """
    if budget_mb is None:
        return BudgetOptions()
    try:
        return BudgetOptions.from_mib(budget_mb)
    except ConfigError:
        raise ConfigError(f"must be a positive number of MiB, got {budget_mb:g}", option="--budget-mb") from None


def budget_fraction_for(device_index: int | str | None, budget_mb: float | None) -> float:
    """Deprecated (it opens Vulkan just to read the heap size): use :func:`budget_options`.

    :param device_index: device index or name substring.
    :param budget_mb: MiB, or ``None``.
    """
    warnings.warn("budget_fraction_for is deprecated: use budget_options (BudgetOptions(limit_bytes=...))",
                  VixenDeprecationWarning, stacklevel=2)
    if budget_mb is None:
        return 0.9
    budget_options(budget_mb)
    infos = list_devices()
    info = infos[select_device(infos, device_index)]
    heap = max((h.size for h in info.heaps if h.device_local), default=max(h.size for h in info.heaps))
    return min(0.9, budget_mb * MiB / heap)


def run(args: argparse.Namespace) -> int:
    """Load the scene and print the summary."""
    budget = budget_options(args.budget_mb)  # checked before Vulkan is touched
    if not os.path.exists(args.scene):
        raise FormatError("file not found", path=args.scene)
    with open_device(args.device, validation=args.validation or None, budget=budget) as device:
        progress = Progress(TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=True, disable=args.json)
        tasks: dict[str, Any] = {}

        def on_progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total or None)
            progress.update(tasks[phase], completed=done, total=total or None)

        with progress:
            scene = load_stage(args.scene, device, progress=on_progress, strict=args.strict,
                               acceleration_structures=args.accel)
        with scene:
            summary = scene.summary()
            summary["device"] = device.name
            summary["budget_limit_bytes"] = device.budget.limit
            secs = summary["seconds"].get("total", 0.0) or 1e-9
            summary["gb_per_s"] = summary["bytes_uploaded"] / secs / 1e9
            if args.json:
                summary["warning_messages"] = list(scene.warnings)
                print(json.dumps(summary, indent=2, default=str))
                return 0
            table = Table(title=f"{args.scene} on {device.name}", title_justify="left", show_header=False)
            table.add_column("what")
            table.add_column("value", justify="right")
            rows = [
                ("prims visited", f"{summary['prims_visited']:,}"),
                ("meshes (instances of meshes)", f"{summary['meshes']:,}"),
                ("unique meshes", f"{summary['unique_meshes']:,}"),
                ("instances", f"{summary['instances']:,}"),
                ("triangles", f"{summary['triangle_count']:,}"),
                ("uploaded", f"{summary['bytes_uploaded'] / 1e6:.2f} MB"),
                ("time", f"{secs * 1e3:.1f} ms"),
                ("throughput", f"{summary['gb_per_s']:.3g} GB/s"),
                ("peak budget use", f"{fmt_bytes(summary['peak_budget_bytes'])} of {fmt_bytes(device.budget.limit)}"),
                ("cache hits / misses", f"{summary['cache_hits']} / {summary['cache_misses']}"),
                ("warnings", str(summary["warnings"])),
            ]
            for k, v in rows:
                table.add_row(k, v)
            console.print(table)
            for w in scene.warnings[:20]:
                console.print(f"[yellow]warning:[/] {w}")
            if len(scene.warnings) > 20:
                console.print(f"[yellow]... and {len(scene.warnings) - 20} more warnings")
    return 0
