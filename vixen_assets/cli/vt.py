"""``vixen-assets vt info|build|stream``: virtual-texture files and a simulated streaming session.

- ``vt info FILE.vtex [--json]``: sizes, levels, tiles, format, bytes.
- ``vt build SRC -o OUT.vtex [--tile 128] [--border 4] [--fmt rgba8|bc7] [--zstd-level 3]``: ``SRC`` is a
  KTX2/PNG/JPEG file, or ``procedural:SIZE`` for a generated texture of ``SIZE``^2 (up to 65536).
- ``vt stream FILE.vtex --budget-mb N [--path spiral|zoom|random] [--frames N]``: a camera path, feedback on the GPU
  each frame, one update per frame; prints tiles/s, hit rate, level bias and update p50/p99.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import ConfigError
from .output import console, fmt_bytes, print_json


def register(sub: Any) -> None:
    """Add the ``vt`` subcommand group."""
    p = sub.add_parser("vt", help="virtual textures: build tile files, inspect them, stream them")
    vsub = p.add_subparsers(dest="vt_command", metavar="ACTION")
    vsub.required = True
    info = vsub.add_parser("info", help="show a .vtex file's sizes, levels, tiles, format and bytes")
    info.add_argument("file")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=run_info)
    build = vsub.add_parser("build", help="cut a texture into a .vtex tile file")
    build.add_argument("source", help="a KTX2/PNG/JPEG file, or procedural:SIZE")
    build.add_argument("-o", "--output", required=True)
    build.add_argument("--tile", type=int, default=128)
    build.add_argument("--border", type=int, default=4)
    build.add_argument("--fmt", choices=("rgba8", "bc7"), default="rgba8")
    build.add_argument("--zstd-level", type=int, default=3)
    build.add_argument("--threads", type=int, default=None)
    build.add_argument("--json", action="store_true")
    build.set_defaults(func=run_build)
    stream = vsub.add_parser("stream", help="stream a .vtex file along a simulated camera path")
    stream.add_argument("file")
    stream.add_argument("--budget-mb", type=float, default=256)
    stream.add_argument("--path", choices=("spiral", "zoom", "random"), default="spiral")
    stream.add_argument("--frames", type=int, default=300)
    stream.add_argument("--max-tiles", type=int, default=32, help="tiles per update")
    stream.add_argument("--cpu-requests", action="store_true", help="compute requests on the CPU, not the GPU")
    stream.add_argument("--device", default=None, help="device index or name")
    stream.add_argument("--validation", action="store_true")
    stream.add_argument("--json", action="store_true")
    stream.set_defaults(func=run_stream)


def run_info(args: argparse.Namespace) -> int:
    """Print the file's description."""
    from ..vt import info

    d = info(args.file)
    if args.json:
        print_json(d)
        return 0
    t = Table(title=args.file, title_justify="left", show_header=False)
    t.add_column("field")
    t.add_column("value", justify="right")
    t.add_row("size", f"{d['size']} x {d['size']}")
    t.add_row("tile", f"{d['tile']} + {d['border']} border ({d['page']} x {d['page']} pages)")
    t.add_row("format", str(d["format"]))
    t.add_row("levels", str(d["levels"]))
    t.add_row("tiles", f"{d['tiles']:,}")
    t.add_row("file", fmt_bytes(d["file_bytes"]))
    t.add_row("tiles raw / compressed", f"{fmt_bytes(d['raw_bytes'])} / {fmt_bytes(d['compressed_bytes'])}")
    console.print(t)
    lv = Table(title="levels", title_justify="left")
    for col in ("level", "size", "tiles", "compressed"):
        lv.add_column(col, justify="right")
    for row in d["per_level"]:
        lv.add_row(str(row["level"]), str(row["size"]), f"{row['tiles']:,}", fmt_bytes(row["compressed_bytes"]))
    console.print(lv)
    return 0


def _source(spec: str) -> tuple[Any, int | None]:
    if spec.startswith("procedural:"):
        from ..vt.procedural import procedural_source

        try:
            size = int(spec.split(":", 1)[1])
        except ValueError as exc:
            raise ConfigError(f"{spec!r}: expected procedural:SIZE", option="source") from exc
        return procedural_source(size), size
    return spec, None


def run_build(args: argparse.Namespace) -> int:
    """Build the tile file with a progress bar."""
    from ..vt import build, info

    source, size = _source(args.source)
    progress = Progress(TextColumn("tiles"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        transient=True, disable=args.json)
    task = progress.add_task("tiles", total=None)
    t0 = time.perf_counter()
    with progress:
        out = build(source, args.output, tile=args.tile, border=args.border, fmt=args.fmt,
                    zstd_level=args.zstd_level, size=size, threads=args.threads,
                    progress=lambda done, total: progress.update(task, completed=done, total=total))
    secs = time.perf_counter() - t0
    d = info(out)
    level0 = d["size"] ** 2 * 4
    summary = {"output": str(out), "seconds": secs, "level0_mb_per_s": level0 / secs / 1e6, **d}
    summary.pop("per_level")
    if args.json:
        print_json(summary)
        return 0
    console.print(f"{out}: {d['size']}^2 {d['format']}, {d['levels']} levels, {d['tiles']:,} tiles, "
                  f"{fmt_bytes(d['file_bytes'])} in {secs:.2f} s ({summary['level0_mb_per_s']:.1f} MB/s of level 0)")
    return 0


def run_stream(args: argparse.Namespace) -> int:
    """Open the device and the texture, run the camera path, print the figures."""
    import numpy as np

    from ..device import open_device
    from ..vt import TileFile, open_virtual_texture
    from ..vt.paths import camera_path

    if args.frames < 1:
        raise ConfigError(f"must be at least 1, got {args.frames}", option="--frames")
    with TileFile(args.file) as tf:
        size = tf.layout.size
    with open_device(args.device, validation=args.validation or None) as device, \
            open_virtual_texture(args.file, device, budget_mb=args.budget_mb,
                                 max_uploads_per_update=args.max_tiles) as vt:
        progress = Progress(TextColumn("frames"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[note]}"), console=console, transient=True, disable=args.json)
        task = progress.add_task("frames", total=args.frames, note="")
        update_s = 0.0
        t0 = time.perf_counter()
        with progress:
            for f, (u, v, lod) in enumerate(camera_path(args.path, args.frames, size)):
                if args.cpu_requests:
                    vt.request(u, v, lod)
                else:
                    vt.feedback(np.stack([u, v, lod], axis=1))
                st = vt.update(max_tiles=args.max_tiles)
                update_s += st.ms / 1e3
                progress.update(task, completed=f + 1, note=f"hit {st.hit_rate:.0%} bias {st.level_bias:.2f}")
        wall = time.perf_counter() - t0
        s = vt.stats
        summary = {"file": args.file, "device": device.name, "path": args.path, "frames": args.frames,
                   "budget_mb": args.budget_mb, "slots": s.slots, "pinned": s.pinned, "uploaded": s.uploaded,
                   "evicted": s.evicted, "bytes_read": s.bytes_read, "hit_rate": s.hit_rate,
                   "level_bias": s.level_bias, "thrash": s.thrash, "update_p50_ms": s.update_p50_ms,
                   "update_p99_ms": s.update_p99_ms, "seconds": wall,
                   "tiles_per_s": s.uploaded / update_s if update_s else 0.0, "memory_bytes": vt.nbytes}
    if args.json:
        print_json(summary)
        return 0
    t = Table(title=f"{args.file} on {summary['device']} ({args.path}, {args.frames} frames)", title_justify="left",
              show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("cache", f"{s.slots:,} tiles ({s.pinned} pinned) in {fmt_bytes(summary['memory_bytes'])}")
    t.add_row("tiles streamed", f"{s.uploaded:,} ({fmt_bytes(s.bytes_read)} read)")
    t.add_row("tiles/s (of update time)", f"{summary['tiles_per_s']:,.0f}")
    t.add_row("hit rate", f"{s.hit_rate:.1%}")
    t.add_row("level bias", f"{s.level_bias:.2f}")
    t.add_row("evicted / thrash", f"{s.evicted:,} / {s.thrash:,}")
    t.add_row("update p50 / p99", f"{s.update_p50_ms:.2f} / {s.update_p99_ms:.2f} ms")
    console.print(t)
    return 0
