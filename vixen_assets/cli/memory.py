"""``vixen-assets memory [--json] [--workload N] [--html OUT.html]``: a device's memory report (heaps, budget,
categories, blocks).

``--html OUT.html`` also writes the memory map (``Device.memory_report_html``): every block a bar, ranges coloured
by category, hover for details. With ``--workload`` the page shows the blocks before and after a
``defragment()`` pass run on the workload's buffers.

With ``--workload N`` a small seeded workload runs first: N buffers of mixed sizes, usages, strategies and
categories are created and a third of them destroyed, so the report shows live ranges, holes and fragmentation;
the report is taken while the rest are live, then they are destroyed before the device closes.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from ..device import open_device
from .load import budget_options
from .output import console, fmt_bytes, print_json

if TYPE_CHECKING:
    from ..device import Device

KiB = 1 << 10
MiB = 1 << 20

#: (size, usage, strategy) choices of the workload; sizes span arena ranges and buffers with their own VkBuffer
_SIZES = (256, 4 * KiB, 20 * KiB, 64 * KiB, 256 * KiB, 1 * MiB, 3 * MiB)
_USAGES = ("vertex|index", "storage", "uniform", "storage|transfer_src")
_STRATEGIES = ("device_local", "host_visible", "auto")
_CATEGORIES = ("meshes", "textures", "voxels")


def register(sub: Any) -> None:
    """Add the ``memory`` subcommand."""
    p = sub.add_parser("memory", help="print a device's memory report: heaps, budget, categories, blocks")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    p.add_argument("--workload", type=int, default=0, metavar="N",
                   help="first create N buffers of mixed sizes (a third destroyed again) and report while they live")
    p.add_argument("--seed", type=int, default=0, help="seed of the workload's sizes and choices")
    p.add_argument("--html", type=Path, default=None, metavar="OUT.html",
                   help="also write the memory map as one self-contained HTML page (with --workload: before and "
                        "after a defragment() pass)")
    p.add_argument("--device", default=None, help="device index or name substring (default: VIXEN_DEVICE or 0)")
    p.add_argument("--budget-mb", type=float, default=None, help="cap the device budget at this many MiB")
    p.add_argument("--validation", action="store_true",
                   help="enable the Vulkan validation layer (its warnings and errors make the command fail)")
    p.set_defaults(func=run)


def run_workload(device: Device, n: int, seed: int = 0) -> tuple[list[Any], dict[str, int]]:
    """Create ``n`` buffers of mixed sizes on ``device`` and destroy every third; return the live ones and counts."""
    rng = random.Random(seed)
    made = []
    try:
        for i in range(n):
            made.append(device.create_buffer(rng.choice(_SIZES), rng.choice(_USAGES), strategy=rng.choice(_STRATEGIES),
                                             name=f"workload-{i}", category=rng.choice(_CATEGORIES)))
    except BaseException:
        for buf in made:
            buf.destroy()
        raise
    live = []
    for i, buf in enumerate(made):
        if i % 3 == 1:
            buf.destroy()
        else:
            live.append(buf)
    return live, {"created": len(made), "destroyed": len(made) - len(live), "live": len(live),
                  "live_bytes": sum(b.nbytes for b in live)}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def print_report(report: dict[str, Any]) -> None:
    """Print a memory report as rich tables."""
    budget = report["budget"]
    console.rule(f"[bold]memory of {report['device']}")

    heaps = Table(title="heaps", title_justify="left")
    for col in ("heap", "kind", "size", "budget (EXT)", "limit", "warning at", "used", "peak", "allocs"):
        heaps.add_column(col, justify="right" if col not in ("kind",) else "left")
    for h, b in zip(report["heaps"], budget["heaps"]):
        heaps.add_row(str(h["index"]), "local" if h["device_local"] else "host", fmt_bytes(h["size"]),
                      fmt_bytes(h["budget_ext"]), fmt_bytes(b["limit"]), fmt_bytes(b["warning_threshold"]),
                      fmt_bytes(b["used"]), fmt_bytes(b["peak"]), str(b["allocation_count"]))
    console.print(heaps)

    staging = budget["staging"]
    summary = Table(title="budget (primary heap)", title_justify="left", show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    used, limit = budget["used"], budget["limit"]
    rows = [
        ("used / limit", f"{fmt_bytes(used)} / {fmt_bytes(limit)} ({_pct(used / limit) if limit else '-'})"),
        ("peak", fmt_bytes(budget["peak"])),
        ("warning threshold", fmt_bytes(budget["warning_threshold"])),
        ("staging used / quota", f"{fmt_bytes(staging['used'])} / {fmt_bytes(staging['quota'])}"),
        ("overflow mode", f"{budget['overflow']} ({budget['overflow_allocations']} allocations, "
                          f"{fmt_bytes(budget['overflow_bytes'])} in host memory)"),
        ("VkDeviceMemory blocks", f"{report['allocator'].get('blocks', 0)} "
                                  f"({fmt_bytes(report['allocator'].get('block_bytes', 0))})"),
        ("fragmentation (overall)", _pct(report["allocator"].get("fragmentation", 0.0))),
    ]
    for k, v in rows:
        summary.add_row(k, v)
    console.print(summary)

    cats = Table(title="categories", title_justify="left")
    for col in ("category", "bytes", "peak", "live", "allocations since reset"):
        cats.add_column(col, justify="left" if col == "category" else "right")
    for name, c in sorted(report["categories"].items()):
        cats.add_row(name, fmt_bytes(c["bytes"]), fmt_bytes(c["peak"]), str(c["count"]), str(c["total_count"]))
    console.print(cats)

    blocks = Table(title="blocks", title_justify="left")
    for col in ("block", "purpose", "size", "used", "free", "largest free", "frag.", "ranges used/free"):
        blocks.add_column(col, justify="left" if col == "purpose" else "right")
    for b in report["blocks"]:
        purpose = f"{b['purpose']} t{b['memory_type']}{' dedicated' if b['dedicated'] else ''}"
        blocks.add_row(f"#{b['id']}", purpose, fmt_bytes(b["size"]), fmt_bytes(b["used"]), fmt_bytes(b["free"]),
                       fmt_bytes(b["largest_free"]), _pct(b["fragmentation"]),
                       f"{len(b['used_ranges'])}/{len(b['free_ranges'])}")
    if not report["blocks"]:
        blocks.add_row("-", "no blocks allocated", "", "", "", "", "", "")
    console.print(blocks)

    calls = Table(title="memory calls per phase (vkAllocateMemory, vkFreeMemory, ranges, vkCreateBuffer)",
                  title_justify="left")
    for col in ("phase", "allocate", "free", "suballocs", "subfrees", "VkBuffers"):
        calls.add_column(col, justify="left" if col == "phase" else "right")
    for phase, c in report["calls"].items():
        calls.add_row(phase, str(c["allocate_memory"]), str(c["free_memory"]), str(c["suballocations"]),
                      str(c["subfrees"]), str(c["buffers_created"]))
    console.print(calls)


def run(args: argparse.Namespace) -> int:
    """Open the device, run the optional workload, print the report, clean up."""
    if args.workload < 0:
        print("vixen-assets memory: error: --workload must be >= 0", file=sys.stderr)
        return 2
    budget = budget_options(args.budget_mb)
    device = open_device(args.device, validation=True if args.validation else None, budget=budget)
    try:
        live: list[Any] = []
        try:
            workload = None
            if args.workload:
                with device.phase("workload"):
                    live, workload = run_workload(device, args.workload, args.seed)
            report = device.memory_report()
            if args.html is not None:
                if live:
                    result = device.defragment()
                    device.memory_report_html(args.html, before=report,
                                              title=f"vixen-assets memory (workload of {args.workload}, "
                                                    f"defragment() moved {result.moved})")
                else:
                    device.memory_report_html(args.html, title="vixen-assets memory")
            if workload is not None:
                report["workload"] = workload
        finally:
            for buf in live:
                buf.destroy()
        if args.json:
            print_json(report)
        else:
            print_report(report)
            if args.html is not None:
                console.print(f"memory map written to {args.html}")
            if workload is not None:
                console.print(f"workload: {workload['created']} buffers created, {workload['destroyed']} destroyed, "
                              f"{workload['live']} live ({fmt_bytes(workload['live_bytes'])}) when the report was "
                              f"taken; all destroyed since")
    finally:
        leaks = device.close_report()
    problems = device.validation_problems()
    for line in leaks:
        print(f"vixen-assets memory: leaked at close: {line}", file=sys.stderr)
    for line in problems:
        print(f"vixen-assets memory: validation: {line}", file=sys.stderr)
    return 1 if problems or leaks else 0
