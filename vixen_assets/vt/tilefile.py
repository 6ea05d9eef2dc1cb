"""The ``.vtex`` tile file: a header, an index of (offset, length, checksum) per tile per level, zstd tiles.

Layout (little-endian)::

    header  64 bytes   magic b"VXVT", version, size, tile, border, format, levels, tiles,
                       index offset, index bytes, xxh3-64 of the index, xxh3-64 of the 56 bytes before it
    index   24 bytes per tile: offset u64, length u32, raw length u32, xxh3-64 of the compressed bytes
    tiles   each one independently zstd-compressed page of ``tile + 2 * border`` texels per side

Tiles are numbered level by level (level 0 first), row-major inside a level; the page table uses the same numbers.
Level ``L`` is ``size >> L`` texels per side; the last level is one tile. Every offset and length is checked
before anything is read; a bad tile raises :class:`~vixen_assets.errors.FormatError` naming the file, level and tile
while the other tiles stay readable.
"""

from __future__ import annotations

import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np
import xxhash
import zstandard

from ..errors import FormatError
from . import tileread

MAGIC = b"VXVT"
VERSION = 1
HEADER = struct.Struct("<4sIIIIIIIQQQQ")
HEADER_BYTES = 64
FORMATS = {"rgba8": 0, "bc7": 1}
FORMAT_NAMES = {v: k for k, v in FORMATS.items()}
INDEX_DTYPE = np.dtype([("offset", "<u8"), ("length", "<u4"), ("raw", "<u4"), ("checksum", "<u8")])
MIN_SIZE, MAX_SIZE = 256, 65536
MIN_TILE, MAX_TILE = 16, 1024


def is_pow2(n: int) -> bool:
    """True for 1, 2, 4, ...

    :param n: the number.
    """
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class Layout:
    """Geometry of a virtual texture: sizes, levels, tiles per level and the page size."""

    size: int
    tile: int
    border: int
    fmt: str

    @property
    def page(self) -> int:
        """Texels per side of a stored tile (``tile + 2 * border``)."""
        return self.tile + 2 * self.border

    @property
    def levels(self) -> int:
        """Mip levels from ``size`` down to one tile."""
        return (self.size // self.tile).bit_length()

    def level_size(self, level: int) -> int:
        """Texels per side of ``level``.

        :param level: a level, 0 the finest.
        """
        return self.size >> level

    def tiles_per_side(self, level: int) -> int:
        """Tiles per side of ``level``.

        :param level: a level, 0 the finest.
        """
        return max(1, (self.size >> level) // self.tile)

    @cached_property
    def level_base(self) -> list[int]:
        """The tile number of each level's first tile, plus the total at the end."""
        out = [0]
        for lv in range(self.levels):
            out.append(out[-1] + self.tiles_per_side(lv) ** 2)
        return out

    @property
    def tile_count(self) -> int:
        """Tiles over all levels."""
        return self.level_base[-1]

    @property
    def raw_bytes(self) -> int:
        """Bytes of one decompressed page (RGBA8 texels or BC7 blocks)."""
        return self.page * self.page * (4 if self.fmt == "rgba8" else 1)

    def tile_id(self, level: int, tx: int, ty: int) -> int:
        """The number of tile ``(tx, ty)`` of ``level``.

        :param level: the level.
        :param tx: the column.
        :param ty: the row.
        :raises IndexError: for a tile outside the level.
        """
        n = self.tiles_per_side(level)
        if not (0 <= level < self.levels and 0 <= tx < n and 0 <= ty < n):
            raise IndexError(f"no tile ({tx}, {ty}) in level {level} ({n} x {n} tiles, {self.levels} levels)")
        return self.level_base[level] + ty * self.tiles_per_side(level) + tx

    def tile_coords(self, tile_id: int) -> tuple[int, int, int]:
        """``(level, tx, ty)`` of a tile number.

        :param tile_id: the tile number.
        """
        base = self.level_base
        for lv in range(self.levels):
            if tile_id < base[lv + 1]:
                n = self.tiles_per_side(lv)
                i = tile_id - base[lv]
                return lv, i % n, i // n
        raise IndexError(f"tile {tile_id} out of range ({self.tile_count} tiles)")


def check_layout(size: int, tile: int, border: int, fmt: str, *, path: str | None = None) -> Layout:
    """Validate the geometry (square power of two 256..65536, tile power of two, border fits) and return it.

    :param size: texels per side of level 0.
    :param tile: texels per side of a tile.
    :param border: texels of border around each tile.
    :param fmt: ``"rgba8"`` or ``"bc7"``.
    :param path: the file named in errors.
    :raises FormatError: naming the field that is out of range.
    """
    if fmt not in FORMATS:
        raise FormatError(f"format {fmt!r} is not one of {sorted(FORMATS)}", path=path, field="fmt")
    if not (is_pow2(size) and MIN_SIZE <= size <= MAX_SIZE):
        raise FormatError(f"size {size} is not a power of two from {MIN_SIZE} to {MAX_SIZE}", path=path, field="size")
    if not (is_pow2(tile) and MIN_TILE <= tile <= min(MAX_TILE, size)):
        raise FormatError(f"tile {tile} is not a power of two from {MIN_TILE} to {min(MAX_TILE, size)}", path=path,
                          field="tile")
    if not 0 <= border <= tile // 2:
        raise FormatError(f"border {border} is not from 0 to {tile // 2}", path=path, field="border")
    if fmt == "bc7" and border % 2:
        raise FormatError(f"bc7 needs an even border (pages of whole 4x4 blocks), got {border}", path=path,
                          field="border")
    return Layout(size, tile, border, fmt)


def pack_header(layout: Layout, index: np.ndarray) -> bytes:
    """The 64-byte header for ``layout`` and its index.

    :param layout: the texture's geometry.
    :param index: the finished index (its checksum goes into the header).
    """
    body = HEADER.pack(MAGIC, VERSION, layout.size, layout.tile, layout.border, FORMATS[layout.fmt], layout.levels,
                       layout.tile_count, HEADER_BYTES, index.nbytes, xxhash.xxh3_64_intdigest(index.tobytes()), 0)
    return body[:-8] + struct.pack("<Q", xxhash.xxh3_64_intdigest(body[:-8]))


class TileFile:
    """An opened ``.vtex`` file: its :class:`Layout`, index and thread-safe :meth:`read_tile`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open and validate the header and the index (every entry's bounds); no tile is read.

        :param path: the ``.vtex`` file.
        :raises FormatError: for a bad header or a truncated or corrupt index, naming the file.
        """
        self.path = str(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._scratch = bytearray(0)  # compressed bytes of a batch ("zstd" method), reused
        try:
            self._parse()
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise

    def _parse(self) -> None:
        p = self.path
        self.file_size = os.fstat(self._fd).st_size
        head = os.pread(self._fd, HEADER_BYTES, 0)
        if len(head) < HEADER_BYTES:
            raise FormatError(f"file of {len(head)} bytes is shorter than the {HEADER_BYTES}-byte header", path=p,
                              field="header")
        (magic, version, size, tile, border, fmt, levels, tiles, index_offset, index_bytes, index_sum,
         head_sum) = HEADER.unpack(head)
        if magic != MAGIC:
            raise FormatError(f"not a .vtex file (magic {magic!r}, expected {MAGIC!r})", path=p, field="magic")
        if version != VERSION:
            raise FormatError(f"version {version} is not supported (expected {VERSION})", path=p, field="version")
        if xxhash.xxh3_64_intdigest(head[:56]) != head_sum:
            raise FormatError("header checksum mismatch", path=p, field="header")
        if fmt not in FORMAT_NAMES:
            raise FormatError(f"unknown format code {fmt}", path=p, field="format")
        self.layout = check_layout(size, tile, border, FORMAT_NAMES[fmt], path=p)
        lay = self.layout
        if levels != lay.levels or tiles != lay.tile_count:
            raise FormatError(f"header says {levels} levels / {tiles} tiles; size {size} with tile {tile} has "
                              f"{lay.levels} / {lay.tile_count}", path=p, field="levels")
        if index_offset != HEADER_BYTES or index_bytes != tiles * INDEX_DTYPE.itemsize:
            raise FormatError(f"index at {index_offset} of {index_bytes} bytes; expected {HEADER_BYTES} and "
                              f"{tiles * INDEX_DTYPE.itemsize}", path=p, field="index")
        if index_offset + index_bytes > self.file_size:
            raise FormatError(f"truncated index: {index_bytes} bytes at {index_offset} exceed the file's "
                              f"{self.file_size} bytes", path=p, field="index")
        raw = os.pread(self._fd, index_bytes, index_offset)
        if len(raw) != index_bytes or xxhash.xxh3_64_intdigest(raw) != index_sum:
            raise FormatError("index checksum mismatch (corrupt or truncated index)", path=p, field="index")
        self.index = np.frombuffer(raw, dtype=INDEX_DTYPE)
        self.data_start = index_offset + index_bytes
        #: largest compressed tile zstd can produce from one page (its documented bound) plus the frame header
        self.max_length = lay.raw_bytes + (lay.raw_bytes >> 8) + 512
        self.compressed_bytes = int(self.index["length"].sum())

    def where(self, tile_id: int) -> str:
        """``level L tile (x, y)`` for messages.

        :param tile_id: the tile number.
        """
        lv, tx, ty = self.layout.tile_coords(tile_id)
        return f"level {lv} tile ({tx}, {ty})"

    def _bad(self, tile_id: int, why: str) -> FormatError:
        lv, tx, ty = self.layout.tile_coords(tile_id)
        err = FormatError(f"level {lv} tile ({tx}, {ty}) (#{tile_id}): {why}", path=self.path, field="tile")
        err.level, err.tile = lv, (tx, ty)  # type: ignore[attr-defined]
        return err

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        return d

    def read_compressed(self, tile_id: int) -> bytes:
        """The compressed bytes of one tile, bounds- and checksum-checked.

        :param tile_id: the tile number (see :meth:`Layout.tile_id`).
        :raises FormatError: naming the file, level and tile when its entry or bytes are bad.
        """
        if not 0 <= tile_id < self.layout.tile_count:
            raise IndexError(f"tile {tile_id} out of range ({self.layout.tile_count} tiles)")
        e = self.index[tile_id]
        off, length, raw = int(e["offset"]), int(e["length"]), int(e["raw"])
        if raw != self.layout.raw_bytes:
            raise self._bad(tile_id, f"raw length {raw} is not the page's {self.layout.raw_bytes} bytes")
        if not 0 < length <= self.max_length:
            raise self._bad(tile_id, f"length {length} is outside 1..{self.max_length}")
        if off < self.data_start or off + length > self.file_size:
            raise self._bad(tile_id, f"{length} bytes at offset {off} lie outside the tile data "
                                     f"({self.data_start}..{self.file_size})")
        if self._fd < 0:
            raise FormatError("file is closed", path=self.path)
        data = os.pread(self._fd, length, off)
        if len(data) != length:
            raise self._bad(tile_id, f"read {len(data)} of {length} bytes (file truncated?)")
        if xxhash.xxh3_64_intdigest(data) != int(e["checksum"]):
            raise self._bad(tile_id, "checksum mismatch")
        return data

    def read_tile(self, tile_id: int, out: np.ndarray | None = None) -> np.ndarray:
        """Read, check and decompress one tile; return its raw page bytes (written into ``out`` when given).

        :param tile_id: the tile number.
        :param out: a uint8 array of ``layout.raw_bytes`` to fill (e.g. a staging slice).
        :raises FormatError: naming the file, level and tile.
        """
        data = self.read_compressed(tile_id)
        expected = self.layout.raw_bytes
        try:
            page = self._decompressor().decompress(data, max_output_size=expected)
        except zstandard.ZstdError as exc:
            raise self._bad(tile_id, f"zstd: {exc}") from exc
        if len(page) != expected:
            raise self._bad(tile_id, f"decompressed to {len(page)} bytes, expected {expected}")
        arr = np.frombuffer(page, dtype=np.uint8)
        if out is None:
            return arr
        np.copyto(out[:expected], arr)
        return out

    def read_tiles(self, tile_ids: Sequence[int] | np.ndarray, out: np.ndarray, *,
                   threads: int = 1, direct: bool = True,
                   method: str = "zstd") -> tuple[int, list[tuple[int, FormatError]]]:
        """Read, check and decompress a batch of tiles into the rows of ``out`` (e.g. a mapped staging range) on
        ``threads`` cores (see :mod:`vixen_assets.vt.tileread`). A tile that fails its checks is skipped (its row is
        not written) and reported; the others are still loaded.

        :param tile_ids: the tile numbers.
        :param out: C-contiguous uint8 rows of at least ``raw_bytes`` each; row ``i`` receives tile ``tile_ids[i]``.
        :param threads: threads to use (1: only the calling thread).
        :param direct: (``"chunks"``) decompress straight into ``out`` (cached memory); ``False`` for write-combined
            memory (a discrete GPU's plain host-visible staging): through a cached page per thread, then copied.
        :param method: ``"zstd"``: reads in this thread, the batch decompressed in zstd's own C threads (no GIL
            hand-offs), pages copied into ``out``; ``"chunks"``: one chunk of the batch per Python thread (a pool
            the file keeps), each tile decompressed straight into its row (one GIL hand-off per step).
        :returns: ``(compressed bytes read, [(position in tile_ids, FormatError), ...])`` in position order.
        :raises FormatError: when the file was closed.
        """
        ids = np.asarray(tile_ids, dtype=np.int64).ravel()
        n = len(ids)
        raw_bytes = self.layout.raw_bytes
        if out.ndim != 2 or out.shape[0] < n or out.shape[1] < raw_bytes or not out.flags.c_contiguous:
            raise ValueError(f"out {out.shape} cannot hold {n} pages of {raw_bytes} bytes in C-contiguous rows")
        if n == 0:
            return 0, []
        if ids.min() < 0 or ids.max() >= self.layout.tile_count:
            raise IndexError(f"tile numbers outside 0..{self.layout.tile_count - 1}")
        e = self.index[ids]
        off, length = e["offset"].astype(np.int64), e["length"].astype(np.int64)
        good = ((e["raw"] == raw_bytes) & (length > 0) & (length <= self.max_length) & (off >= self.data_start)
                & (off + length <= self.file_size))
        errors: list[tuple[int, FormatError]] = []
        for i in np.flatnonzero(~good).tolist():  # the one-tile path says what is wrong
            try:
                self.read_compressed(int(ids[i]))
            except FormatError as exc:
                errors.append((i, exc))
        pos = np.flatnonzero(good)
        items = list(zip(pos.tolist(), ids[pos].tolist(), off[pos].tolist(), length[pos].tolist(),
                         e["checksum"][pos].tolist()))
        if method not in tileread.METHODS:
            raise ValueError(f"method {method!r} is not one of {tileread.METHODS}")
        threads = max(1, min(int(threads), len(items)))
        nbytes = 0
        with self._lock:
            if self._fd < 0:
                raise FormatError("file is closed", path=self.path)
            dst = tileread.destination(out)
            if method == "zstd":
                need = int(length[pos].sum())
                if len(self._scratch) < need:
                    self._scratch = bytearray(need)
                got, errs = tileread.read_batch(self, self._fd, items, out, dst, threads, self._scratch)
                return got, sorted(errors + errs, key=lambda p: p[0])
            chunks = [items[k * len(items) // threads:(k + 1) * len(items) // threads] for k in range(threads)]
            futures = []
            if threads > 1:
                if self._pool is None or self._pool_size < threads - 1:
                    if self._pool is not None:
                        self._pool.shutdown(wait=True)
                    self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="vixen-vt-read")
                    self._pool_size = threads - 1
                futures = [self._pool.submit(tileread.read_chunk, self, self._fd, c, out, dst, direct)
                           for c in chunks[1:]]
            results = [tileread.read_chunk(self, self._fd, chunks[0], out, dst, direct)]  # this thread reads too
            results += [f.result() for f in futures]
        for got, errs in results:
            nbytes += got
            errors += errs
        return nbytes, sorted(errors, key=lambda p: p[0])

    def read_pixels(self, tile_id: int) -> np.ndarray:
        """An RGBA8 tile as ``(page, page, 4)`` (BC7 tiles decoded with texture2ddecoder).

        :param tile_id: the tile number.
        :raises FormatError: naming the file, level and tile.
        """
        lay = self.layout
        raw = self.read_tile(tile_id)
        if lay.fmt == "rgba8":
            return raw.reshape(lay.page, lay.page, 4)
        import texture2ddecoder

        bgra = np.frombuffer(texture2ddecoder.decode_bc7(raw.tobytes(), lay.page, lay.page), dtype=np.uint8)
        return bgra.reshape(lay.page, lay.page, 4)[:, :, [2, 1, 0, 3]]

    def close(self) -> None:
        """Close the file; safe to call twice."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> TileFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        lay = self.layout
        return (f"<TileFile {Path(self.path).name!r} {lay.size}^2 tile={lay.tile}+{lay.border} {lay.fmt} "
                f"levels={lay.levels} tiles={lay.tile_count}>")


def info(path: str | os.PathLike[str]) -> dict[str, object]:
    """Describe a ``.vtex`` file: sizes, levels, tiles per level, format, bytes (raw and compressed).

    :param path: the file.
    :raises FormatError: for a bad header or index.
    """
    with TileFile(path) as tf:
        lay = tf.layout
        base = lay.level_base
        levels = []
        for lv in range(lay.levels):
            part = tf.index[base[lv]:base[lv + 1]]
            levels.append({"level": lv, "size": lay.level_size(lv), "tiles": lay.tiles_per_side(lv) ** 2,
                           "compressed_bytes": int(part["length"].sum())})
        return {"path": str(path), "size": lay.size, "tile": lay.tile, "border": lay.border, "page": lay.page,
                "format": lay.fmt, "levels": lay.levels, "tiles": lay.tile_count, "file_bytes": tf.file_size,
                "raw_bytes": lay.raw_bytes * lay.tile_count, "compressed_bytes": tf.compressed_bytes,
                "per_level": levels}


__all__ = ["TileFile", "Layout", "check_layout", "info", "pack_header", "INDEX_DTYPE", "FORMATS", "HEADER_BYTES"]
