"""Many textures at once: files read, parsed, inflated, decoded or compressed on a thread pool, built and uploaded in
order on the calling thread.

- Workers run :meth:`TextureCacher.read_file` (one header parse) and :meth:`TextureCacher.prepare` (Zstandard,
  zlib, Pillow and etcpak release the GIL; texture2ddecoder does not) into one payload per texture. A worker skips
  the preparation of content that is already cached, or that another file of the batch prepares. KTX2 files of at
  most ``INLINE_BYTES`` are read and prepared on the calling thread instead, in order, ``INLINE_WINDOW`` ahead: their
  GIL-free work is shorter than the GIL hand-overs between cores that passing them to a worker and back costs.
- The calling thread takes the results in the order of the requests (a window of ``4 x workers`` files ahead, so the
  memory held by prepared payloads stays bounded), creates each image and enqueues its levels; the payload is copied
  once, into staging. Consecutive files whose workers already staged them (or that are cached) are built and handed
  out as one group (``hand_out_many``: one lock, one allocation group, one build call); a file that may still fail
  on its data goes alone, so ``errors="collect"`` names the right file. Uploads are submitted whenever ``FLUSH_BYTES`` are pending (the copies of one batch overlap the
  preparation of the next; the staging quota bounds the rest), whenever the calling thread is about to wait for a
  worker with ``WAIT_FLUSH_BYTES`` pending, and once at the end; the call returns after the GPU
  finished them.
- ``errors="raise"``: the first failing file (in request order) raises its ``FormatError`` naming it; every
  reference the call took is given back and every entry it built is destroyed: nothing of the batch stays
  allocated. ``errors="collect"``: a failing file's slot holds its exception and the rest loads (``load_stage``).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import FormatError, VixenError
from .base import LoadContext
from .texture import StagingLender
from .texture_compress import DEFAULT_MIN_PSNR

if TYPE_CHECKING:
    from .texture import GpuTexture, TextureCacher, TextureSource

FLUSH_BYTES = 16 << 20  # pending upload bytes that make the batch loader submit (the GPU starts while CPUs prepare)
GROUP = 64  # most files built and handed out in one cacher call
#: pending upload bytes that are submitted when the calling thread is about to wait for a worker (large textures:
#: the GPU copies them meanwhile; a batch of small ones still goes up in one submission)
WAIT_FLUSH_BYTES = 4 << 20
#: KTX2 files up to this size are read and prepared on the calling thread, in order, not handed to a worker: their
#: GIL-free work (a read, inflating ~100 µs of levels) is shorter than what passing them to a thread and back costs
#: (every short C call a GIL hand-over between cores: on the 2-core lavapipe VM 500 256² BC7 files took 0.25-0.31 s
#: on two workers, 0.16 s on the calling thread alone)
INLINE_BYTES = 256 << 10
INLINE_WINDOW = 32  # files prepared inline ahead of the hand-out (a group; their staging is bounded by the lender)

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TextureRequest:
    """One file of a batch and its load options (those of ``load_texture``)."""

    path: str
    srgb: bool = True
    compress: str | None = None
    min_psnr: float = DEFAULT_MIN_PSNR
    normal_map: bool = False

    def options(self) -> dict[str, Any]:
        """The ``LoadContext`` options the cacher reads."""
        return {"srgb": self.srgb, "compress": self.compress, "min_psnr": self.min_psnr,
                "normal_map": self.normal_map}


class _Claims:
    """Which content keys a worker of this batch prepares (the first to see a key)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: set[str] = set()

    def claim(self, key: str) -> bool:
        with self._lock:
            if key in self._keys:
                return False
            self._keys.add(key)
            return True


def _small_file(path: str) -> bool:
    """Whether ``path`` is a plain KTX2 file of at most ``INLINE_BYTES`` (prepared on the calling thread; PNG/JPEG
    go to the workers: a small file can still be a large image to decode and compress, GIL-free)."""
    if "[" in path or not path.lower().endswith(".ktx2"):
        return False
    try:
        return os.stat(path).st_size <= INLINE_BYTES
    except OSError:
        return True  # missing: the calling thread raises the FormatError at once


def _inline(cacher: TextureCacher, req: TextureRequest, claims: _Claims,
            lender: StagingLender | None) -> Future[TextureSource]:
    """:func:`_read_and_prepare` on the calling thread, as a finished future."""
    fut: Future[TextureSource] = Future()
    try:
        fut.set_result(_read_and_prepare(cacher, req, claims, lender))
    except Exception as exc:  # raised again where the result is taken, as a worker's would be
        fut.set_exception(exc)
    return fut


def _read_and_prepare(cacher: TextureCacher, req: TextureRequest, claims: _Claims,
                      lender: StagingLender | None) -> TextureSource:
    """Worker: read and parse the file; prepare it (straight into staging where the lender lends) unless cached or
    prepared by another file of the batch."""
    if "[" not in req.path and not os.path.exists(req.path):
        raise FormatError("file not found", path=req.path)
    src = cacher.read_file(req.path, LoadContext(options=req.options(), layer_path=req.path))
    key = cacher.key_for(src)
    if key not in cacher and claims.claim(key):
        cacher.prepare(src, lender)
    return src


def load_many(cacher: TextureCacher, requests: Sequence[TextureRequest], *, workers: int | None = None,
              progress: ProgressFn | None = None, hand_out: bool = True,
              errors: str = "raise") -> list[GpuTexture | FormatError]:
    """Load ``requests`` in parallel (see the module docstring); one entry (or exception) per request, in order.

    :param cacher: the device's texture cacher.
    :param requests: the files and their options.
    :param workers: threads reading and preparing (default: the CPU count).
    :param progress: ``progress("textures", done, total)`` after each texture.
    :param hand_out: hand each texture out (``GpuTexture.release()``) rather than acquire a plain cache reference
        (``cacher.release(key)``, as ``load_stage`` holds its textures).
    :param errors: ``"raise"`` (the first failing file raises, nothing of the batch is left) or ``"collect"`` (a
        ``FormatError`` / ``UnsupportedFormatError`` takes the file's slot; any other error still raises).
    :raises FormatError: a file is missing or malformed (``errors="raise"``), naming it.
    """
    device = cacher.device
    device.check_open()
    n = len(requests)
    out: list[Any] = [None] * n
    if not n:
        return out
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    window = 4 * workers  # files the workers prepare ahead (bounds the memory prepared payloads hold)
    reach = max(window, INLINE_WINDOW)
    claims = _Claims()
    taken: list[tuple[str, Any]] = []  # (key, entry) of every reference this call took
    built: list[str] = []  # keys this call built (destroyed again on failure)
    up = device.uploader
    pool = cacher.thread_pool(workers)
    # workers write levels straight into staging while at most half the quota is lent and not yet enqueued
    lender = StagingLender(up.pool, up.pool.quota // 2)
    futures: dict[int, Future[TextureSource]] = {}
    src: TextureSource | None = None
    group: list[TextureSource] = []  # sources taken for one hand-out that have not been handed out yet
    # which files go inline: asked of the file system before any worker runs (a stat between two GIL-holding
    # decodes waited up to 4 ms for the GIL)
    smalls = [_small_file(r.path) for r in requests]
    ahead = 0
    i = 0
    try:
        while i < n:
            while ahead < n and ahead < i + reach:
                req = requests[ahead]
                small = smalls[ahead]
                if small and ahead < i + INLINE_WINDOW:
                    futures[ahead] = _inline(cacher, req, claims, lender)
                elif not small and ahead < i + window:
                    futures[ahead] = pool.submit(_read_and_prepare, cacher, req, claims, lender)
                else:
                    break
                ahead += 1
            src = None
            if not futures[i].done() and up.pending_bytes >= WAIT_FLUSH_BYTES:
                # about to wait for a worker: the GPU copies what is enqueued meanwhile (three 2048² BC7 files,
                # 17 MB, stayed under FLUSH_BYTES and were all copied after the last was ready: a 10 ms tail)
                up.flush()
            try:
                src = futures.pop(i).result()
                key = cacher.key_for(src)
            except FormatError as exc:  # UnsupportedFormatError included; budget errors etc. always raise
                if src is not None:
                    lender.drop(src.prepared)
                if errors != "collect":
                    raise
                out[i] = exc
                src = None
                i += 1
                _after(up, progress, i, n)
                continue
            if _groupable(cacher, src, key):
                # this file and the next ones already prepared and staged: built and handed out together (one
                # lock, one allocation group, one build call), a fixed cost paid once per group, not per file
                group, keys = [src], [key]
                src = None
                while i + len(group) < n and len(group) < GROUP:
                    fut = futures.get(i + len(group))
                    if fut is None or not fut.done() or fut.exception() is not None:
                        break
                    nxt = fut.result()
                    nkey = cacher.key_for(nxt)
                    if not _groupable(cacher, nxt, nkey):
                        break
                    futures.pop(i + len(group))
                    group.append(nxt)
                    keys.append(nkey)
                fresh = {k for k in keys if k not in cacher}
                entries = cacher.hand_out_many(group, keys) if hand_out else cacher.get_many(group, keys)
                for g, key, entry in zip(group, keys, entries):
                    _settle(lender, g)
                    taken.append((key, entry))
                    if key in fresh:
                        fresh.discard(key)
                        built.append(key)
                    out[i] = entry
                    i += 1
                    if progress is not None:
                        progress("textures", i, n)
                group = []
                if up.pending_bytes >= FLUSH_BYTES:
                    up.flush()
                continue
            try:
                fresh_one = key not in cacher
                entry = cacher.hand_out(src, key) if hand_out else cacher.get_many([src], [key])[0]
                _settle(lender, src)
            except FormatError as exc:
                lender.drop(src.prepared)
                if errors != "collect":
                    raise
                out[i] = exc
            else:
                taken.append((key, entry))
                if fresh_one:
                    built.append(key)
                out[i] = entry
            src = None  # the payload goes once its upload is staged
            i += 1
            _after(up, progress, i, n)
        up.flush().wait()
    except BaseException:
        for fut in futures.values():
            fut.cancel()
        if src is not None:
            lender.drop(src.prepared)
        for g in group:
            lender.drop(g.prepared)
        for fut in futures.values():  # the workers still running finish; what they staged goes back
            if not fut.cancelled() and fut.exception() is None:
                lender.drop(fut.result().prepared)
        for key, entry in taken:
            if hand_out:
                entry.release()
            else:
                cacher.release(key)
        cacher.discard(built)
        try:  # let the discarded images retire now (their copies may be in flight): the call leaves nothing behind
            up.flush().wait()
            device.context.lifetime.collect()
        except VixenError:
            pass  # the original error is the one to report
        raise
    return out


def _groupable(cacher: TextureCacher, src: TextureSource, key: str) -> bool:
    """Whether ``src`` can join a grouped hand-out: cached already, or staged by its worker (its build cannot
    fail on its data, so a ``FormatError`` never has to be told apart inside a group)."""
    prep = src.prepared
    return key in cacher or (prep is not None and prep.staged is not None)


def _settle(lender: StagingLender, src: TextureSource) -> None:
    """After ``src``'s hand-out: staging it wrote goes back when unused (a cache hit), else it is enqueued."""
    prep = src.prepared
    if prep is not None and prep.staged_bytes:
        if prep.staged is not None:
            lender.drop(prep)  # a cache hit after all: its staging was not needed
        else:
            lender.settle(prep.staged_bytes)  # enqueued: the batch gives the buffers back


def _after(up: Any, progress: ProgressFn | None, done: int, n: int) -> None:
    """Submit what is pending once ``FLUSH_BYTES`` are; report progress."""
    if up.pending_bytes >= FLUSH_BYTES:
        up.flush()
    if progress is not None:
        progress("textures", done, n)
