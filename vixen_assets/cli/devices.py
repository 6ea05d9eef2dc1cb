"""``vixen-assets devices [--json]``: every Vulkan device with its heaps, queue families and features."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from ..device import list_devices
from .output import console, fmt_bytes, print_json


def register(sub: Any) -> None:
    """Add the ``devices`` subcommand."""
    p = sub.add_parser("devices", help="list Vulkan devices, their heaps, queues and features")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List the devices."""
    infos = list_devices()
    if args.json:
        print_json([i.to_dict() for i in infos])
        return 0
    if not infos:
        console.print("no Vulkan devices found")
        return 1
    for info in infos:
        console.rule(f"[bold]{info.index}: {info.name}")
        console.print(f"type {info.device_type}   API {info.api_version}   driver {info.driver}"
                      f"   unified memory {'yes' if info.unified_memory else 'no'}")
        heaps = Table(title="memory heaps", title_justify="left")
        for col in ("heap", "size", "kind", "budget (EXT)"):
            heaps.add_column(col, no_wrap=True)
        heaps.add_column("memory types", overflow="fold")
        for h in info.heaps:
            kinds = [f"{t.index}: {'|'.join(t.properties) or '-'}" for t in info.memory_types if t.heap == h.index]
            heaps.add_row(str(h.index), fmt_bytes(h.size), "device-local" if h.device_local else "host",
                          fmt_bytes(h.budget), "\n".join(kinds))
        console.print(heaps)
        queues = Table(title="queue families", title_justify="left")
        for col in ("family", "capabilities", "queues", "note"):
            queues.add_column(col)
        for q in info.queue_families:
            queues.add_row(str(q.index), ", ".join(q.capabilities), str(q.count), "transfer-only (DMA)" if q.transfer_only else "")
        console.print(queues)
        feats = Table(title="features", title_justify="left")
        feats.add_column("feature")
        feats.add_column("supported")
        for name, ok in info.features.items():
            feats.add_row(name, "[green]yes" if ok else "[red]no")
        console.print(feats)
    return 0
