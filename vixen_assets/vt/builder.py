"""``build(source, out)``: cut a texture into bordered, independently compressed tiles of every mip level.

Level 0 is read in bands of ``tile`` rows (from a file, an array or a callable for procedural textures far larger
than memory); each band is cut into tiles and halved into the next level's band at once, so no whole level is ever
held: each level keeps three bands (the one being cut plus its neighbours, for the borders). Each texel of level
``n + 1`` is ``(a + b + c + d + 2) // 4`` of its 2x2 parents, per channel. Tiles are compressed (BC7 optional, zstd
always) on a thread pool and written as they finish; the index and the header go in last.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Union

import numpy as np
import xxhash
import zstandard

from ..errors import ConfigError, FormatError, UnsupportedFormatError
from .tilefile import HEADER_BYTES, INDEX_DTYPE, Layout, check_layout, pack_header

#: ``source(x0, y0, w, h) -> (h, w, 4) uint8``: a procedural level 0
TileSource = Callable[[int, int, int, int], np.ndarray]
Source = Union[str, os.PathLike, np.ndarray, TileSource]
ProgressFn = Callable[[int, int], object]


def downsample(band: np.ndarray) -> np.ndarray:
    """Halve ``(2h, 2w, 4)`` uint8 texels: ``(a + b + c + d + 2) // 4`` per channel.

    :param band: texels with an even number of rows and columns.
    """
    s = band.astype(np.uint16)
    out = s[0::2, 0::2] + s[0::2, 1::2]
    out += s[1::2, 0::2]
    out += s[1::2, 1::2]
    out += 2
    out >>= 2
    return out.astype(np.uint8)


def _open_source(source: Source, size: int | None) -> tuple[int, Callable[[int, int], np.ndarray], str]:
    """Return ``(size, rows(y0, h) -> (h, size, 4) uint8, name)`` for any accepted source."""
    if callable(source) and not isinstance(source, (str, os.PathLike, np.ndarray)):
        if size is None:
            raise ConfigError("a callable source needs size= (texels per side of level 0)")
        fn = source

        def rows(y0: int, h: int) -> np.ndarray:
            block = np.asarray(fn(0, y0, size, h))
            if block.shape != (h, size, 4) or block.dtype != np.uint8:
                raise FormatError(f"source({0}, {y0}, {size}, {h}) returned {block.dtype} {block.shape}, expected "
                                  f"uint8 {(h, size, 4)}", field="source")
            return block

        return size, rows, getattr(fn, "__name__", "callable")
    if isinstance(source, (str, os.PathLike)):
        path = str(source)
        if not os.path.exists(path):
            raise FormatError("file not found", path=path)
        if path.lower().endswith(".ktx2"):
            from ..formats.ktx2 import decode_to_rgba8, read_ktx2

            arr = decode_to_rgba8(read_ktx2(path), 0)
            if arr.ndim != 3:
                raise UnsupportedFormatError("only 2D KTX2 textures can be virtual textures", path=path)
        else:
            try:
                from PIL import Image
            except ImportError as exc:  # pragma: no cover - Pillow is a dependency
                raise UnsupportedFormatError(f"reading {path} needs Pillow ({exc})", path=path) from exc
            try:
                with Image.open(path) as im:
                    arr = np.asarray(im.convert("RGBA"))
            except OSError as exc:
                raise FormatError(f"cannot decode image: {exc}", path=path) from exc
        name = path
    else:
        arr = np.asarray(source)
        name = "array"
        path = None
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
        raise FormatError(f"expected (H, W, 4) uint8 texels, got {arr.dtype} {arr.shape}", path=path, field="source")
    if arr.shape[0] != arr.shape[1]:
        raise FormatError(f"{arr.shape[1]}x{arr.shape[0]} is not square (pad it to a power of two first)", path=path,
                          field="size")
    if arr.shape[2] == 3:
        arr = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], axis=2)
    data = arr
    return arr.shape[0], (lambda y0, h: data[y0:y0 + h]), name


class _LevelCutter:
    """Cuts one level's bands (``tile`` rows each, arriving top to bottom) into bordered tiles and halves pairs of
    bands into the next level's bands."""

    def __init__(self, builder: _Build, level: int) -> None:
        self.b = builder
        self.level = level
        self.prev: np.ndarray | None = None
        self.cur: np.ndarray | None = None
        self.row = 0
        self.half: np.ndarray | None = None

    def push(self, band: np.ndarray) -> None:
        if self.cur is not None:
            self._cut(self.prev, self.cur, band)
        self.prev, self.cur = self.cur, band
        nxt = self.b.cutters[self.level + 1] if self.level + 1 < len(self.b.cutters) else None
        if nxt is not None:  # each band halves on its own; two halves make the next level's band
            half = downsample(band)
            if self.half is None:
                self.half = half
            else:
                pair = np.concatenate([self.half, half], axis=0)
                self.half = None
                nxt.push(pair)

    def finish(self) -> None:
        if self.cur is not None:
            self._cut(self.prev, self.cur, None)
        self.prev = self.cur = None

    def _cut(self, above: np.ndarray | None, band: np.ndarray, below: np.ndarray | None) -> None:
        lay = self.b.layout
        t, bd = lay.tile, lay.border
        if bd:
            top = above[-bd:] if above is not None else np.repeat(band[:1], bd, axis=0)
            bottom = below[:bd] if below is not None else np.repeat(band[-1:], bd, axis=0)
            rows = np.concatenate([top, band, bottom], axis=0)
            rows = np.concatenate([np.repeat(rows[:, :1], bd, axis=1), rows, np.repeat(rows[:, -1:], bd, axis=1)],
                                  axis=1)
        else:
            rows = band
        n = lay.tiles_per_side(self.level)
        for tx in range(n):
            page = np.ascontiguousarray(rows[:, tx * t:tx * t + lay.page])
            self.b.emit(lay.tile_id(self.level, tx, self.row), page)
        self.row += 1


class _Build:
    """State of one build: the output file, the index, the compression pool and the in-flight tiles."""

    def __init__(self, layout: Layout, out: Path, zstd_level: int, threads: int, progress: ProgressFn | None) -> None:
        self.layout = layout
        self.out = out
        self.zstd_level = zstd_level
        self.progress = progress
        self.index = np.zeros(layout.tile_count, dtype=INDEX_DTYPE)
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vixen-vt-build")
        self.inflight: deque[tuple[int, Future[bytes]]] = deque()
        self.limit = max(8, threads * 4)
        self.done = 0
        self.pos = HEADER_BYTES + self.index.nbytes
        self.fh = open(out, "wb")  # noqa: SIM115 - closed in finish()/abort()
        self.fh.seek(self.pos)
        self.cutters = [_LevelCutter(self, lv) for lv in range(layout.levels)]
        self.raw_bytes = 0

    def _compress(self, page: np.ndarray) -> bytes:
        lay = self.layout
        if lay.fmt == "bc7":
            import etcpak

            raw = etcpak.compress_bc7(page.tobytes(), lay.page, lay.page)
        else:
            raw = page.tobytes()
        return zstandard.ZstdCompressor(level=self.zstd_level).compress(raw)

    def emit(self, tile_id: int, page: np.ndarray) -> None:
        self.inflight.append((tile_id, self.pool.submit(self._compress, page)))
        while len(self.inflight) > self.limit:
            self._write_one()

    def _write_one(self) -> None:
        tile_id, fut = self.inflight.popleft()
        blob = fut.result()
        self.fh.write(blob)
        e = self.index[tile_id]
        e["offset"], e["length"], e["raw"] = self.pos, len(blob), self.layout.raw_bytes
        e["checksum"] = xxhash.xxh3_64_intdigest(blob)
        self.pos += len(blob)
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.layout.tile_count)

    def finish(self) -> None:
        for c in self.cutters:
            c.finish()
        while self.inflight:
            self._write_one()
        if self.done != self.layout.tile_count:  # pragma: no cover - a bug in the cutter, never bad input
            raise FormatError(f"wrote {self.done} of {self.layout.tile_count} tiles", path=str(self.out))
        self.fh.seek(0)
        self.fh.write(pack_header(self.layout, self.index))
        self.fh.write(self.index.tobytes())
        self.fh.close()
        self.pool.shutdown(wait=True)

    def abort(self) -> None:
        for _t, f in self.inflight:
            f.cancel()
        self.pool.shutdown(wait=True)
        self.fh.close()
        self.out.unlink(missing_ok=True)


def build(source: Source, out: str | os.PathLike[str], *, tile: int = 128, border: int = 4, fmt: str = "rgba8",
          zstd_level: int = 3, size: int | None = None, threads: int | None = None,
          progress: ProgressFn | None = None) -> Path:
    """Build a ``.vtex`` tile file from ``source``.

    :param source: a KTX2/PNG/JPEG path, an ``(H, W, 4)`` uint8 array, or a callable ``source(x0, y0, w, h) ->
        (h, w, 4) uint8`` giving level 0 (called in bands of ``tile`` rows, top to bottom, one call at a time from a
        helper thread that reads a band ahead: textures larger than memory).
    :param out: the file to write (replaced; removed again if the build fails).
    :param tile: texels per side of a tile (power of two, 16..1024).
    :param border: texels copied from the neighbours around each tile (clamped at the texture's edges); 1 or more
        makes bilinear filtering inside one tile exact.
    :param fmt: ``"rgba8"`` or ``"bc7"`` (BC7 needs ``etcpak``, the ``compress`` extra).
    :param zstd_level: zstd level of every tile.
    :param size: texels per side of a callable source's level 0.
    :param threads: compression threads (default: the CPU count).
    :param progress: ``progress(tiles_done, tiles_total)`` after each tile written.
    :returns: the output path.
    :raises FormatError: for a source that is not square, not a power of two from 256 to 65536, or not RGBA8.
    """
    n, rows, name = _open_source(source, size)
    layout = check_layout(n, tile, border, fmt, path=name if name != "array" else None)
    if fmt == "bc7":
        try:
            import etcpak  # noqa: F401
        except ImportError as exc:
            raise UnsupportedFormatError(f"fmt='bc7' needs the 'etcpak' package (the compress extra): {exc}") from exc
    path = Path(out)
    b = _Build(layout, path, zstd_level, threads or max(1, os.cpu_count() or 1), progress)
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vixen-vt-source")
    try:  # the next band is read (or generated) while this one is cut, halved and compressed
        ahead = reader.submit(rows, 0, tile)
        for y0 in range(0, n, tile):
            band = np.ascontiguousarray(ahead.result())
            if y0 + tile < n:
                ahead = reader.submit(rows, y0 + tile, tile)
            b.cutters[0].push(band)
        b.finish()
    except BaseException:
        b.abort()
        raise
    finally:
        reader.shutdown(wait=True)
    return path


__all__ = ["build", "downsample", "Source", "TileSource"]
