"""``vixen-assets texture info FILE.ktx2 [--json]``: header, levels, format, supercompression, device support."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table

from ..formats.ktx2 import has_basis_transcoder, read_ktx2
from .output import console, fmt_bytes


def register(sub: Any) -> None:
    """Add the ``texture`` subcommand group."""
    p = sub.add_parser("texture", help="inspect texture files")
    tsub = p.add_subparsers(dest="texture_command", metavar="ACTION")
    tsub.required = True
    info = tsub.add_parser("info", help="show a KTX2 file's header, levels and whether the device can sample it")
    info.add_argument("file")
    info.add_argument("--device", default=None, help="device to ask about format support (index or name)")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=run_info)


def device_support(vk_format: int, device_index: Any) -> dict[str, Any]:
    """Whether the chosen device samples ``vk_format`` (opens the device briefly)."""
    from ..device import open_device
    from ..memory.images import format_supported

    with open_device(device_index, validation=False) as dev:
        return {"device": dev.name, "sampled": bool(vk_format) and format_supported(dev.context, vk_format)}


def run_info(args: argparse.Namespace) -> int:
    """Print the file's description."""
    ktx = read_ktx2(args.file)
    summary = ktx.header_summary()
    summary["device_support"] = device_support(ktx.vk_format, args.device)
    summary["basis_transcoder"] = has_basis_transcoder()
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    t = Table(title=args.file, title_justify="left", show_header=False)
    t.add_column("field")
    t.add_column("value")
    for k, v in summary.items():
        if k in ("levels", "keyValueData"):
            continue
        t.add_row(str(k), str(v))
    console.print(t)
    levels = Table(title="levels", title_justify="left")
    for col in ("level", "extent", "stored", "uncompressed"):
        levels.add_column(col)
    for lv in ktx.levels:
        levels.add_row(str(lv.index), f"{lv.width}x{lv.height}x{lv.depth}", fmt_bytes(lv.byte_length),
                       fmt_bytes(lv.uncompressed_byte_length))
    console.print(levels)
    return 0
