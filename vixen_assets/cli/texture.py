"""``vixen-assets texture info FILE.ktx2 [--json]``: header, levels, format, supercompression, device support;
``vixen-assets texture load FILE... [--compress auto|bc1|bc7] [--min-psnr DB] [--workers N] [--json]``: load files
through ``load_textures`` (a progress bar while they load) and report each texture and the load's speed."""

from __future__ import annotations

import argparse
import json
import os
import time
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
    load = tsub.add_parser("load", help="load texture files onto the device (in parallel) and report each")
    load.add_argument("files", nargs="+")
    load.add_argument("--device", default=None, help="device index or name")
    load.add_argument("--compress", choices=("auto", "bc1", "bc7"), default=None,
                      help="compress PNG/JPEG at load (auto: the smallest format meeting --min-psnr)")
    load.add_argument("--min-psnr", type=float, default=35.0, help="quality bar of --compress in dB (default 35)")
    load.add_argument("--linear", action="store_true", help="PNG/JPEG pixels are linear data, not sRGB colour")
    load.add_argument("--workers", type=int, default=None, help="threads reading and preparing files")
    load.add_argument("--json", action="store_true")
    load.set_defaults(func=run_load)


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


def run_load(args: argparse.Namespace) -> int:
    """Load the files with ``load_textures`` and print one row per texture plus the throughput."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..device import open_device
    from ..textures import load_textures

    with open_device(args.device, validation=None) as dev:
        progress = Progress(TextColumn("textures"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, transient=True, disable=args.json)
        task = progress.add_task("textures", total=len(args.files))
        t0 = time.perf_counter()
        with progress:
            texs = load_textures(args.files, dev, compress=args.compress, srgb=not args.linear, workers=args.workers,
                                 min_psnr=args.min_psnr,
                                 progress=lambda _phase, done, total: progress.update(task, completed=done))
        secs = time.perf_counter() - t0
        rows = [{"file": t.path, "path_taken": t.path_taken, "format": t.vk_format,
                 "extent": [t.width, t.height, t.depth], "levels": t.levels, "layers": t.layers, "faces": t.faces,
                 "gpu_bytes": t.nbytes, "compress": t.extra.get("compress_choice"), "psnr_db": t.extra.get("psnr_db")}
                for t in texs]
        total = sum(t.nbytes for t in texs)
        for t in texs:
            t.release()
        out = {"device": dev.name, "textures": rows, "seconds": secs, "gpu_bytes": total,
               "mb_per_s": total / 1e6 / secs if secs > 0 else None}
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    table = Table(title=f"{len(rows)} textures on {out['device']} in {secs:.3f} s ({fmt_bytes(total)})",
                  title_justify="left")
    for col in ("file", "path", "format", "extent", "levels", "GPU", "compress", "PSNR dB"):
        table.add_column(col)
    for r in rows:
        psnr = r["psnr_db"]
        table.add_row(os.path.basename(str(r["file"])), r["path_taken"], r["format"], "x".join(map(str, r["extent"])),
                      str(r["levels"]), fmt_bytes(r["gpu_bytes"]), r["compress"] or "",
                      "" if psnr is None else f"{psnr:.2f}")
    console.print(table)
    return 0
