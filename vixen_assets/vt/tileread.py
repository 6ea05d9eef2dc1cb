"""Batch tile reading (what :meth:`VirtualTexture.update` uses): read, check and decompress many tiles of a ``.vtex``
file into staging rows, on all cores.

Why: a thread pool running one Python task per tile (pread, checksum, decompress into a new ``bytes``, copy into
staging) passes the GIL between threads several times per tile; on a 16-core machine a 256-tile batch then ran at
about what one core decompresses (the H200 run: 18.6 ms for 18.9 MB). Two methods avoid that:

- :func:`read_batch` (``"zstd"``, the default): reads and checksums in the calling thread, whose GIL releases are
  uncontended; the whole batch decompressed in zstd's own C threads (``multi_decompress_to_buffer``, one GIL
  release); each page then copied into its row.
- :func:`read_chunk` on one contiguous chunk per thread (``"chunks"``): per tile one ``pread`` into the thread's
  scratch buffer, the xxh3 check, and one call of libzstd's ``ZSTD_decompressDCtx`` through python-zstandard's CFFI
  bindings (``zstandard.backend_cffi``, GIL released) that writes the page straight into its staging row: no
  intermediate ``bytes`` and no copy, but a GIL hand-off at each of those steps. Where the CFFI backend cannot be
  imported, python-zstandard's C backend decompresses and the page is copied into the row.

zstd reads back what it wrote (matches copy from earlier output), so the destination must be cached memory: on a
discrete GPU's write-combined staging memory, reads are uncached and very slow. For such destinations
(``direct=False``) each page is decompressed into the thread's cached scratch page and then copied into its row (a
streaming write, what write-combined memory is good at).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import xxhash
import zstandard

from ..errors import FormatError

if TYPE_CHECKING:
    from .tilefile import TileFile

try:  # python-zstandard's own CFFI bindings of libzstd (it ships them beside its C backend)
    from zstandard.backend_cffi import ffi as _ffi
    from zstandard.backend_cffi import lib as _zstd
except ImportError:  # pragma: no cover - wheels without the CFFI backend: the C backend path below
    _ffi = _zstd = None

#: True when pages are decompressed straight into the destination (no intermediate copy)
DIRECT = _zstd is not None
#: ``"zstd"``: :func:`read_batch`; ``"chunks"``: :func:`read_chunk` on one chunk per thread
METHODS = ("zstd", "chunks")


class _Scratch(threading.local):
    """Per-thread state: a buffer for compressed bytes and a decompression context."""

    def __init__(self) -> None:
        self.buf = bytearray(0)
        self.mv = memoryview(self.buf)
        self.src: Any = None
        self.dctx: Any = None
        self.dec: zstandard.ZstdDecompressor | None = None
        self.page = np.zeros(0, np.uint8)  # the bounce page for write-combined destinations
        self.page_ptr: Any = None

    def bounce(self, size: int) -> None:
        if len(self.page) < size:
            self.page = np.zeros(size, np.uint8)
            self.page_ptr = _ffi.from_buffer("char[]", self.page, require_writable=True) if DIRECT else None

    def ensure(self, size: int) -> None:
        if len(self.buf) < size:
            self.buf = bytearray(size)
            self.mv = memoryview(self.buf)
            self.src = _ffi.from_buffer(self.buf) if DIRECT else None
        if DIRECT and self.dctx is None:
            self.dctx = _ffi.gc(_zstd.ZSTD_createDCtx(), _zstd.ZSTD_freeDCtx)
        if not DIRECT and self.dec is None:
            self.dec = zstandard.ZstdDecompressor()


_scratch = _Scratch()


def read_chunk(tf: TileFile, fd: int, items: list[tuple[int, int, int, int, int]], out: np.ndarray,
               dst: Any, direct: bool = True) -> tuple[int, list[tuple[int, FormatError]]]:
    """Read, check and decompress ``items`` = ``(row, tile, offset, length, checksum)`` into ``out[row]`` (``dst``:
    the CFFI pointer to ``out``'s first byte, or ``None``; ``direct=False``: through the thread's cached bounce
    page). Entries are already bounds-checked. Returns the compressed bytes of the tiles that loaded and
    ``(row, FormatError)`` for the others."""
    raw = tf.layout.raw_bytes
    stride = out.strides[0]
    sc = _scratch
    sc.ensure(tf.max_length)
    if not direct:
        sc.bounce(raw)
    mv = sc.mv
    errors: list[tuple[int, FormatError]] = []
    nbytes = 0
    for row, tile, off, length, checksum in items:
        part = mv[:length]
        got = os.preadv(fd, [part], off)
        if got != length:
            errors.append((row, tf._bad(tile, f"read {got} of {length} bytes (file truncated?)")))
            continue
        if xxhash.xxh3_64_intdigest(part) != checksum:
            errors.append((row, tf._bad(tile, "checksum mismatch")))
            continue
        if dst is not None:
            target = dst + row * stride if direct else sc.page_ptr
            r = _zstd.ZSTD_decompressDCtx(sc.dctx, target, raw, sc.src, length)
            if r != raw:  # only then ask what went wrong: every CFFI call hands the GIL over and back
                if _zstd.ZSTD_isError(r):
                    why = _ffi.string(_zstd.ZSTD_getErrorName(r)).decode()
                    errors.append((row, tf._bad(tile, f"zstd: {why}")))
                else:
                    errors.append((row, tf._bad(tile, f"decompressed to {r} bytes, expected {raw}")))
                continue
            if not direct:
                np.copyto(out[row, :raw], sc.page[:raw])  # a streaming write into write-combined memory
        else:
            assert sc.dec is not None
            try:
                page = sc.dec.decompress(part, max_output_size=raw)
            except zstandard.ZstdError as exc:
                errors.append((row, tf._bad(tile, f"zstd: {exc}")))
                continue
            if len(page) != raw:
                errors.append((row, tf._bad(tile, f"decompressed to {len(page)} bytes, expected {raw}")))
                continue
            np.copyto(out[row, :raw], np.frombuffer(page, np.uint8))
        nbytes += length
    return nbytes, errors


def read_batch(tf: TileFile, fd: int, items: list[tuple[int, int, int, int, int]], out: np.ndarray, dst: Any,
               threads: int, scratch: bytearray) -> tuple[int, list[tuple[int, FormatError]]]:
    """The ``"zstd"`` method: reads and checksums in the calling thread into ``scratch`` (no other Python thread
    wants the GIL, so its releases cost nothing), the whole batch decompressed in zstd's own C threads
    (``multi_decompress_to_buffer``: one GIL release), then each page copied into its row. Frames that pass their
    checksum but do not decode are found and named tile by tile. Same items and result as :func:`read_chunk`."""
    raw = tf.layout.raw_bytes
    mv = memoryview(scratch)
    errors: list[tuple[int, FormatError]] = []
    ok: list[tuple[int, int, int, int, int]] = []
    segments = np.empty((len(items), 2), np.uint64)
    at = 0
    for item in items:
        row, tile, off, length, checksum = item
        part = mv[at:at + length]
        got = os.preadv(fd, [part], off)
        if got != length:
            errors.append((row, tf._bad(tile, f"read {got} of {length} bytes (file truncated?)")))
        elif xxhash.xxh3_64_intdigest(part) != checksum:
            errors.append((row, tf._bad(tile, "checksum mismatch")))
        else:
            segments[len(ok)] = (at, length)
            ok.append(item)
            at += length
    if not ok:
        return 0, errors
    try:
        pages = zstandard.ZstdDecompressor().multi_decompress_to_buffer(
            zstandard.BufferWithSegments(scratch, segments[:len(ok)].tobytes()),
            decompressed_sizes=np.full(len(ok), raw, np.uint64).tobytes(), threads=max(1, threads))
    except zstandard.ZstdError:  # a frame that passed its checksum but does not decode: find it tile by tile
        got, errs = read_chunk(tf, fd, ok, out, dst, direct=False)
        return got, errors + errs
    for k, item in enumerate(ok):
        np.copyto(out[item[0], :raw], np.frombuffer(pages[k], np.uint8))
    return int(segments[:len(ok), 1].sum()), errors


def destination(out: np.ndarray) -> Any:
    """The CFFI pointer to a writable array's memory for :func:`read_chunk` (``None`` without the CFFI backend).

    :param out: the destination rows.
    """
    if not DIRECT:
        return None
    return _ffi.from_buffer("char[]", out, require_writable=True)


__all__ = ["read_chunk", "read_batch", "destination", "DIRECT", "METHODS"]
