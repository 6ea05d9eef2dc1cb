"""Upload benchmark: the batched uploader against its floors and a peer (wgpu-py), side by side in one run.

For a total (default 256 MiB) cut into pieces of 1 KiB, 64 KiB, 4 MiB and the whole total, it reports GB/s and
µs per buffer for:

- **uploader**, per piece ``device.create_buffer(piece, usage)`` + ``device.uploader.enqueue(buf, data)``, then one
  ``flush().wait()`` (``create+enqueue``); and the same into buffers created and written once before the timing
  (``pre-created``, so their memory is warm, like the memcpy floor's). Both uploader paths run and are labelled:
  ``direct`` writes straight into mapped destination memory (only where the destination is host-visible: unified
  memory, resizable BAR), ``staging`` (``direct_writes = False``) packs into pool buffers and records
  ``vkCmdCopyBuffer`` (what a discrete GPU does). Where the destination is not host-visible, ``direct`` is skipped.
- **floors**: ``numpy.copyto`` of the same pieces into a pre-touched array (memcpy into warm memory), and one raw
  ``vkCmdCopyBuffer`` of the same bytes from a host-visible buffer into a device-local one, timed from
  ``vkQueueSubmit`` to the fence (one region; and one region per piece, in one command).
- **peer**: wgpu-py ``device.create_buffer(size=piece, usage=COPY_DST|STORAGE|COPY_SRC)`` + ``device.queue.write_buffer``
  per piece, then ``queue.on_submitted_work_done_sync()``; skipped with a message when ``import wgpu`` fails or it
  finds no adapter.

Each uploader row also prints its share of the floor of its piece size measured in the same run: the memcpy floor
on unified memory (where the uploader writes directly), the DMA floor (raw ``vkCmdCopyBuffer``, 1 region) on
discrete GPUs. A share above 100% means the floor was disturbed (a busy machine): it prints as such, never as a
pass. Floors take the best of at least 5 runs. Also a host-side floor of the staging path: the uploader's fill
threads copying the bytes into staging-type (host-visible) memory, no GPU work.

The uploader's CPU overhead for 100 MB in 4 MiB pieces is CPU time, not wall time: the process CPU time
(``time.process_time``: every thread, fill threads included) from the first ``create_buffer`` until ``flush()``
returned (all fills done, all copies submitted; the GPU wait after it is not CPU work of the uploader), minus the
thread CPU time the uploader's own host copies of those bytes took (``UploadStats.copy_cpu_s``, measured around
each copy on the thread that ran it). It is the CPU the uploader spends beyond the memcpy of the same bytes, so it
cannot be negative (a negative difference would be a measurement error and stops the benchmark). A plain one-thread
memcpy of the same bytes (CPU time) prints beside it.

Targets (lavapipe, i.e. unified memory): large uploads >= 85% of the memcpy floor, 1 KiB buffers <= 6 µs each, CPU
overhead < 2 ms per 100 MB (goal < 0.5 ms); on discrete GPUs: large uploads (4 MiB pieces and the whole total)
>= 80% of the DMA floor through the default path (``create_buffer`` device-local + ``enqueue`` + ``flush``). Each
time is the best of ``--repeat`` runs after a warm-up run. Validation is off. Data is checked after every uploader
run.

Usage: ``python benchmarks/bench_upload.py [--quick] [--total-mib N] [--repeat N] [--device I] [--json PATH]``
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import vixen_assets.transfer.uploader as uploader_module  # noqa: E402
from vixen_assets.device import open_device  # noqa: E402
from vixen_assets.vk import resources as vkr  # noqa: E402
from vixen_assets.vk.commands import CommandPool, begin, end, submit  # noqa: E402
from vixen_assets.vk.physical import flag_names  # noqa: E402
from vixen_assets.vk.sync import Fence  # noqa: E402

KiB = 1 << 10
MiB = 1 << 20
USAGE = 0x20 | 0x80  # STORAGE | VERTEX (TRANSFER_SRC/DST are added by the library)
MEMORY_FLAGS = {0x1: "DEVICE_LOCAL", 0x2: "HOST_VISIBLE", 0x4: "HOST_COHERENT", 0x8: "HOST_CACHED",
                0x10: "LAZILY_ALLOCATED", 0x20: "PROTECTED"}
QUEUE_FLAGS = {0x1: "GRAPHICS", 0x2: "COMPUTE", 0x4: "TRANSFER", 0x8: "SPARSE_BINDING"}
OVERHEAD_BYTES = 100_000_000
OVERHEAD_PIECE = 4 * MiB

TARGET_LARGE_FRACTION = 0.85
TARGET_SMALL_US = 6.0
TARGET_OVERHEAD_MS = 2.0
GOAL_OVERHEAD_MS = 0.5
TARGET_DISCRETE_FRACTION = 0.80  # of the DMA floor (raw vkCmdCopyBuffer, one region) measured in the same run
FLOOR_REPEAT = 5  # floors are cheap: at least this many timed runs each


def fmt_size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def slug(name: str) -> str:
    """``llvmpipe (LLVM 15.0.6, 256 bits)`` -> ``llvmpipe``; ``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``."""
    base = name.split("(")[0].strip() or name
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or "device"


def share_text(r: dict[str, Any]) -> str:
    """``83.1% of DMA floor``; above 100% the floor was disturbed (a busy machine), and it says so."""
    name = "DMA floor" if "vkCmdCopyBuffer" in r["floor"] else "memcpy floor"
    if r["of_floor"] > 1.0:
        return f"above the {name} of this run: the floor was disturbed, rerun"
    return f"{r['of_floor']:.1%} of {name}"


def best_of(repeat: int, fn: Callable[[], float]) -> float:
    """Run ``fn`` (which returns seconds) once to warm up, then ``repeat`` times; return the fastest."""
    fn()
    return min(fn() for _ in range(max(1, repeat)))


class Bench:
    """One opened device and the measurements taken on it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # rebar=True only lets strategy="auto" use a resizable-BAR heap (the "direct ReBAR" rows of discrete GPUs)
        self.dev = open_device(args.device, validation=False, rebar=True)
        # the uploader rows switch direct writes on and off; the API rows run with the uploader as opened
        self.default_direct_writes = self.dev.uploader.direct_writes
        if args.auto_flush_mib is not None:  # tuning experiment: the uploader's auto-flush threshold
            uploader_module.AUTO_FLUSH_BYTES = args.auto_flush_mib * MiB
        if args.fill_slice_mib is not None:  # tuning experiment: bytes per staging fill task (default: a 4 MiB chunk)
            uploader_module.FILL_SLICE = args.fill_slice_mib * MiB
        if args.fill_threads is not None:  # tuning experiment: the uploader's fill-thread count (default: CPUs, <= 16)
            self.dev.uploader.set_fill_threads(args.fill_threads)
        self.rows: list[dict[str, Any]] = []
        total = args.total_mib * MiB
        self.total = total
        self.pieces = sorted({1 * KiB, 64 * KiB, 4 * MiB, total})
        rng = np.random.default_rng(1)
        self.data = np.frombuffer(rng.bytes(total), dtype=np.uint8)

    # ------------------------------------------------------------------ helpers
    def row(self, piece: int, method: str, seconds: float, count: int, nbytes: int, *,
            floor: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """Record and print one row; with ``floor`` (a floor row of the same run), also its share of that floor."""
        r = {"piece": piece, "piece_label": fmt_size(piece), "method": method, "seconds": seconds, "buffers": count,
             "bytes": nbytes, "gbps": nbytes / seconds / 1e9 if seconds > 0 else None,
             "us_per_buffer": seconds / count * 1e6 if count else None, **extra}
        if floor is not None and floor["gbps"] and r["gbps"]:
            r["floor"] = floor["method"]
            r["of_floor"] = r["gbps"] / floor["gbps"]
        self.rows.append(r)
        print(f"  {fmt_size(piece):>8}  {method:<44} {r['gbps']:8.2f} GB/s {r['us_per_buffer']:12.2f} µs/buffer"
              f"{'  ' + share_text(r) if 'of_floor' in r else ''}", flush=True)
        return r

    def memory_of(self, buf: Any) -> dict[str, Any]:
        info = self.dev.info
        t = buf.allocation.block.type_index
        mt = info.memory_types[t]
        heap = info.heaps[mt.heap]
        return {"memory_type": t, "flags": flag_names(mt.flags, MEMORY_FLAGS), "heap": mt.heap,
                "heap_size": heap.size, "heap_device_local": heap.device_local, "host_visible": buf.host_visible}

    def check(self, bufs: list[Any], piece: int, what: str) -> None:
        """Read back the first and last buffers (and one in the middle) and compare with the source."""
        for i in sorted({0, len(bufs) // 2, len(bufs) - 1}):
            got = self.dev.read_buffer(bufs[i])
            # buffer i holds the bytes from i * piece on; the last one may be shorter (the overhead run's tail)
            want = self.data[i * piece:i * piece + bufs[i].size]
            if got.size != bufs[i].size or not np.array_equal(got, want):
                raise SystemExit(f"data mismatch after {what}: buffer {i} of {len(bufs)} ({fmt_size(piece)} pieces)")

    def destroy(self, bufs: list[Any]) -> None:
        for b in bufs:
            b.destroy()
        self.dev.uploader.collect()
        self.dev.context.lifetime.drain()

    # ------------------------------------------------------------------ uploader
    def uploader_create(self, piece: int, count: int, path: str, strategy: str) -> float:
        dev, data = self.dev, self.data
        up = dev.uploader
        up.direct_writes = path == "direct"
        create, enqueue = dev.create_buffer, up.enqueue
        bufs: list[Any] = []
        try:  # the buffers are destroyed whatever happens (a failed check included): no leak report at close
            gc.collect()
            gc.disable()
            try:
                t0 = time.perf_counter()
                for i in range(count):
                    b = create(piece, USAGE, strategy=strategy)
                    bufs.append(b)
                    enqueue(b, data[i * piece:(i + 1) * piece])
                up.flush().wait()
                dt = time.perf_counter() - t0
            finally:
                gc.enable()
            self.check(bufs, piece, f"uploader {path} create+enqueue")
        finally:
            self.destroy(bufs)
        return dt

    def uploader_precreated(self, piece: int, count: int, path: str, bufs: list[Any]) -> float:
        dev, data = self.dev, self.data
        up = dev.uploader
        up.direct_writes = path == "direct"
        enqueue = up.enqueue
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            for i in range(count):
                enqueue(bufs[i], data[i * piece:(i + 1) * piece])
            up.flush().wait()
            dt = time.perf_counter() - t0
        finally:
            gc.enable()
        self.check(bufs, piece, f"uploader {path} pre-created")
        return dt

    def variants(self, piece: int) -> list[tuple[str, str, str]]:
        """``(label, path, strategy)`` of the uploader rows: direct and staging into device-local memory where that
        is host-visible; else staging, plus direct writes into the resizable BAR (``strategy="auto"``, opened with
        ``rebar=True``) where the device has one."""
        dev = self.dev
        with dev.create_buffer(piece, USAGE) as probe:
            self.memory.setdefault("destination", self.memory_of(probe))
            if probe.host_visible:
                return [("direct", "direct", "device_local"), ("staging", "staging", "device_local")]
        out = [("staging", "staging", "device_local")]
        with dev.create_buffer(piece, USAGE, strategy="auto") as probe:
            if probe.host_visible:
                self.memory.setdefault("destination_rebar", self.memory_of(probe))
                out.append(("direct ReBAR (strategy=auto)", "direct", "auto"))
        return out

    def floor_for(self, piece: int) -> dict[str, Any] | None:
        """The floor the uploader rows of ``piece`` are compared with: memcpy on unified memory, else the DMA floor."""
        path = "memcpy" if self.dev.info.unified_memory else "vkCmdCopyBuffer"
        for r in self.rows:
            if r["piece"] == piece and r["kind"] == "floor" and r["path"] == path and r.get("regions", 1) == 1:
                return r
        return None

    def run_uploader(self, piece: int) -> None:
        count = self.total // piece
        nbytes = count * piece
        variants = self.variants(piece)
        repeat = self.args.repeat
        floor = self.floor_for(piece)
        for label, path, strategy in variants:
            t = best_of(repeat, lambda: self.uploader_create(piece, count, path, strategy))
            self.row(piece, f"uploader {label}: create+enqueue, flush", t, count, nbytes, kind="uploader", path=path,
                     strategy=strategy, variant="create+enqueue", floor=floor)
        for label, path, strategy in variants:
            bufs = [self.dev.create_buffer(piece, USAGE, strategy=strategy) for _ in range(count)]
            try:
                t = best_of(repeat, lambda: self.uploader_precreated(piece, count, path, bufs))
                self.row(piece, f"uploader {label}: pre-created, enqueue, flush", t, count, nbytes, kind="uploader",
                         path=path, strategy=strategy, variant="pre-created", floor=floor)
            finally:
                self.destroy(bufs)
        if len(variants) == 1:
            print(f"  {fmt_size(piece):>8}  uploader direct: skipped (device-local memory is not host-visible here)")

    def create_and_upload_once(self, piece: int, count: int) -> float:
        """``Device.create_and_upload`` with its default strategy, ``count`` buffers of ``piece`` bytes (each call
        waits for its upload), then destroyed."""
        dev, data = self.dev, self.data
        dev.uploader.direct_writes = self.default_direct_writes  # the default API: the uploader as opened
        bufs: list[Any] = []
        try:
            gc.collect()
            gc.disable()
            try:
                t0 = time.perf_counter()
                for i in range(count):
                    bufs.append(dev.create_and_upload("bench", data[i * piece:(i + 1) * piece], USAGE))
                dt = time.perf_counter() - t0
            finally:
                gc.enable()
            self.memory.setdefault(f"create_and_upload_{piece}", dict(self.memory_of(bufs[0]), strategy=bufs[0].strategy))
            self.check(bufs, piece, "create_and_upload")
        finally:
            self.destroy(bufs)
        return dt

    def run_create_and_upload(self, piece: int) -> None:
        """The one-call API with its defaults (on a discrete GPU with a resizable BAR, uploads of at least
        ``DeviceOptions.rebar_upload_min_bytes`` are written straight into the BAR)."""
        count = self.total // piece
        t = best_of(self.args.repeat, lambda: self.create_and_upload_once(piece, count))
        strategy = self.memory[f"create_and_upload_{piece}"]["strategy"]
        self.row(piece, f"create_and_upload (default; went to {strategy})", t, count, count * piece, kind="api",
                 path="create_and_upload", strategy=strategy, floor=self.floor_for(piece))

    # ------------------------------------------------------------------ floors
    def memcpy_floor(self, piece: int, nbytes: int | None = None) -> float:
        nbytes = self.total if nbytes is None else nbytes
        data = self.data[:nbytes]
        if getattr(self, "_warm", None) is None or self._warm.size < self.total:
            self._warm = np.empty(self.total, dtype=np.uint8)
            self._warm.fill(1)  # touch every page
        dst = self._warm

        def once() -> float:
            t0 = time.perf_counter()
            for i in range(0, nbytes, piece):
                j = min(i + piece, nbytes)
                np.copyto(dst[i:j], data[i:j])
            return time.perf_counter() - t0

        return best_of(max(self.args.repeat, FLOOR_REPEAT), once)

    def fill_floor(self, piece: int) -> float:
        """The host side of the staging path alone: the uploader's fill threads copy the bytes, in the uploader's
        fill slices of each staging chunk, into host-visible staging-type memory (the copy floor's source buffer)."""
        up = self.dev.uploader
        dst, data = self._src.mapped, self.data
        step = min(up._fill_slice(), up.pool.max_chunk)
        chunk = up.pool.max_chunk

        def once() -> float:
            t0 = time.perf_counter()
            futs = []
            for start in range(0, self.total, piece):
                for c in range(start, start + piece, chunk):
                    end = min(c + chunk, start + piece)
                    futs += [up._threads.submit(np.copyto, dst[i:min(i + step, end)], data[i:min(i + step, end)])
                             for i in range(c, end, step)]
            for f in futs:
                f.result()
            return time.perf_counter() - t0

        return best_of(max(self.args.repeat, FLOOR_REPEAT), once)

    def run_floors(self, piece: int) -> None:
        count = self.total // piece
        t = self.memcpy_floor(piece)
        self.row(piece, "floor: numpy memcpy into warm memory", t, count, self.total, kind="floor", path="memcpy")
        if piece >= 4 * MiB:
            t = self.fill_floor(piece)
            self.row(piece, f"floor: staging fill only, {self.dev.uploader.fill_threads} fill threads", t, count,
                     self.total, kind="floor", path="fill")
        t1, tn = self.copy_floor(piece)
        self.row(piece, "floor: raw vkCmdCopyBuffer, 1 region", t1, count, self.total, kind="floor",
                 path="vkCmdCopyBuffer", regions=1)
        if count > 1:
            self.row(piece, f"floor: raw vkCmdCopyBuffer, {count} regions", tn, count, self.total, kind="floor",
                     path="vkCmdCopyBuffer", regions=count)

    def setup_copy_floor(self) -> None:
        dev = self.dev
        self._src = dev.create_buffer(self.total, 0x1, strategy="host_visible", dedicated=True, name="bench-staging")
        self._dst = dev.create_buffer(self.total, USAGE, strategy="device_local", dedicated=True, name="bench-dst")
        mapped = self._src.mapped
        np.copyto(mapped, self.data)
        queue = dev.context.logical.upload_queue
        self._queue = queue
        self._pool = CommandPool(dev.context.logical, queue.family)
        self._cmd = self._pool.allocate()
        self._fence = Fence(dev.context.logical)
        self.memory["staging"] = self.memory_of(self._src)
        self.memory["copy_floor_destination"] = self.memory_of(self._dst)

    def copy_floor(self, piece: int) -> tuple[float, float]:
        def once(regions: np.ndarray) -> float:
            cmd = self._cmd
            begin(cmd)
            vkr.cmd_copy_buffer(cmd, self._src.handle, self._dst.handle, regions)
            end(cmd)
            self._fence.reset()
            t0 = time.perf_counter()
            submit(self.dev.context.logical, self._queue, [cmd], fence=self._fence)
            self._fence.wait()
            return time.perf_counter() - t0

        one = vkr.copy_regions(1)
        one[0] = (self._src.offset, self._dst.offset, self.total)
        repeat = max(self.args.repeat, FLOOR_REPEAT)
        t1 = best_of(repeat, lambda: once(one))
        count = self.total // piece
        many = vkr.copy_regions(count)
        offs = np.arange(count, dtype=np.uint64) * np.uint64(piece)
        many["src"] = offs + np.uint64(self._src.offset)
        many["dst"] = offs + np.uint64(self._dst.offset)
        many["size"] = piece
        tn = best_of(repeat, lambda: once(many)) if count > 1 else t1
        return t1, tn

    def teardown_copy_floor(self) -> None:
        self._fence.destroy()
        self._pool.destroy()
        self._src.destroy()
        self._dst.destroy()

    # ------------------------------------------------------------------ CPU overhead
    def run_overhead(self) -> dict[str, Any]:
        """CPU time per 100 MB beyond the memcpy of the same bytes (see the module docstring)."""
        # 100 MB: 23 pieces of 4 MiB and a partial one; a short total (--quick) keeps that shape (25/32 of it)
        piece, nbytes = OVERHEAD_PIECE, min(OVERHEAD_BYTES, self.total * 25 // 32)
        sizes = [min(piece, nbytes - i) for i in range(0, nbytes, piece)]
        dev, data = self.dev, self.data
        up = dev.uploader
        probe = dev.create_buffer(piece, USAGE)
        path = "direct" if probe.host_visible else "staging"
        probe.destroy()

        def uploader_once() -> tuple[float, float, float, float]:
            """(process CPU s until flush returned, CPU s of the uploader's copies, main-thread CPU s, wait CPU s)"""
            up.direct_writes = path == "direct"
            up.collect()
            gc.collect()
            gc.disable()
            bufs: list[Any] = []
            try:  # the buffers are destroyed whatever happens (a failed check included)
                try:
                    copies0 = up.stats.copy_cpu_s
                    main0 = time.thread_time()
                    cpu0 = time.process_time()
                    pos = 0
                    for n in sizes:
                        b = dev.create_buffer(n, USAGE)
                        bufs.append(b)
                        up.enqueue(b, data[pos:pos + n])
                        pos += n
                    ticket = up.flush()  # every fill is done and every copy submitted when it returns
                    cpu1 = time.process_time()
                    main1 = time.thread_time()
                    copies = up.stats.copy_cpu_s - copies0
                    ticket.wait()
                    wait = time.process_time() - cpu1
                finally:
                    gc.enable()
                self.check(bufs, piece, f"overhead run ({path})")
            finally:
                self.destroy(bufs)
            return cpu1 - cpu0, copies, main1 - main0, wait

        uploader_once()  # warm-up
        runs = [uploader_once() for _ in range(self.args.repeat + 2)]
        for total, copies, _main, _wait in runs:
            if copies <= 0 or total < copies:
                raise SystemExit(f"CPU overhead measurement is inconsistent: process CPU {total * 1e3:.3f} ms, "
                                 f"of which copies {copies * 1e3:.3f} ms; nothing printed")
        total, copies, main, wait = min(runs, key=lambda r: r[0] - r[1])

        def memcpy_cpu() -> float:  # one thread, into warm memory: the same bytes in the same pieces
            dst = self._warm if getattr(self, "_warm", None) is not None else np.empty(nbytes, dtype=np.uint8)
            dst[:nbytes].fill(1)
            t0 = time.process_time()
            for i in range(0, nbytes, piece):
                np.copyto(dst[i:min(i + piece, nbytes)], data[i:min(i + piece, nbytes)])
            return time.process_time() - t0

        plain = min(memcpy_cpu() for _ in range(FLOOR_REPEAT))
        scale = 100_000_000 / nbytes
        res = {"bytes": nbytes, "piece": piece, "path": path, "measure": "CPU time (process_time), not wall time",
               "uploader_cpu_ms": total * 1e3, "copy_cpu_ms": copies * 1e3, "main_thread_cpu_ms": main * 1e3,
               "wait_cpu_ms": wait * 1e3, "plain_memcpy_cpu_ms": plain * 1e3,
               "overhead_ms_per_100MB": (total - copies) * 1e3 * scale,
               "copy_cpu_ms_per_100MB": copies * 1e3 * scale, "plain_memcpy_cpu_ms_per_100MB": plain * 1e3 * scale}
        print(f"  CPU time, {nbytes / 1e6:.0f} MB in {fmt_size(piece)} pieces ({path}): uploader {total * 1e3:.2f} ms "
              f"until flush returned (main thread {main * 1e3:.2f} ms), of which its host copies "
              f"{copies * 1e3:.2f} ms (a plain one-thread memcpy of the same bytes: {plain * 1e3:.2f} ms); beyond "
              f"the copies {res['overhead_ms_per_100MB']:.2f} ms per 100 MB; the GPU wait after flush "
              f"{wait * 1e3:.2f} ms CPU (not counted)", flush=True)
        return res

    # ------------------------------------------------------------------ peer
    def run_wgpu(self) -> dict[str, Any]:
        if self.args.no_wgpu:
            return {"skipped": "--no-wgpu"}
        os.environ.setdefault("WGPU_BACKEND_TYPE", "Vulkan")
        try:
            import wgpu
        except Exception as e:  # noqa: BLE001 - any import failure means: no peer here
            msg = f"wgpu-py not available ({type(e).__name__}: {e}); peer skipped (pip install wgpu)"
            print("  " + msg)
            return {"skipped": msg}
        try:
            adapters = wgpu.gpu.enumerate_adapters_sync()
            want = self.dev.name.split("(")[0].strip().lower()
            vk_adapters = [a for a in adapters if a.info.get("backend_type") == "Vulkan"]
            adapter = next((a for a in vk_adapters if want in a.info.get("device", "").lower()), None)
            adapter = adapter or (vk_adapters[0] if vk_adapters else None)
            if adapter is None:
                raise RuntimeError(f"no Vulkan adapter among {[a.info.get('device') for a in adapters]}")
            limits = {"max-buffer-size": min(adapter.limits["max-buffer-size"], max(self.total, 256 * MiB))}
            device = adapter.request_device_sync(required_limits=limits)
        except Exception as e:  # noqa: BLE001
            msg = f"wgpu-py found no usable adapter ({type(e).__name__}: {e}); peer skipped"
            print("  " + msg)
            return {"skipped": msg}
        # COPY_SRC too, so that the data can be checked (vixen buffers always have TRANSFER_SRC | TRANSFER_DST)
        usage = wgpu.BufferUsage.COPY_DST | wgpu.BufferUsage.STORAGE | wgpu.BufferUsage.COPY_SRC
        data = self.data
        queue = device.queue
        info = dict(adapter.info)
        # sync: queue.on_submitted_work_done_sync(); where that is broken (wgpu-py 0.32 with its wgpu-native: a
        # callback signature mismatch), read back a small buffer written last, which waits for all earlier work
        sync_buf = device.create_buffer(size=256, usage=wgpu.BufferUsage.COPY_DST | wgpu.BufferUsage.COPY_SRC)
        sync_data = np.zeros(256, dtype=np.uint8)

        def sync_readback() -> None:
            queue.write_buffer(sync_buf, 0, sync_data)
            queue.read_buffer(sync_buf)

        sync: Callable[[], None] = queue.on_submitted_work_done_sync
        sync_how = "queue.on_submitted_work_done_sync()"
        try:
            sync()
        except Exception as e:  # noqa: BLE001
            sync, sync_how = sync_readback, f"queue.read_buffer of a 256-byte buffer (on_submitted_work_done: {e})"
            sync()
        print(f"  wgpu-py {wgpu.__version__} on {info.get('device')} ({info.get('backend_type')}); sync: "
              f"{sync_how[:60]}", flush=True)
        for piece in self.pieces:
            count = self.total // piece
            if piece > limits["max-buffer-size"]:
                print(f"  {fmt_size(piece):>8}  wgpu-py: skipped (above max-buffer-size)")
                continue

            def create_once() -> float:
                t0 = time.perf_counter()
                bufs = []
                for i in range(count):
                    b = device.create_buffer(size=piece, usage=usage)
                    queue.write_buffer(b, 0, data[i * piece:(i + 1) * piece])
                    bufs.append(b)
                sync()
                dt = time.perf_counter() - t0
                got = np.frombuffer(queue.read_buffer(bufs[-1]), dtype=np.uint8)
                if not np.array_equal(got, data[(count - 1) * piece:count * piece]):
                    raise SystemExit("wgpu-py data mismatch")
                for b in bufs:
                    b.destroy()
                return dt

            t = best_of(self.args.repeat, create_once)
            self.row(piece, "peer wgpu-py: create_buffer+write_buffer", t, count, count * piece, kind="peer",
                     path="wgpu", variant="create+enqueue")
            bufs = [device.create_buffer(size=piece, usage=usage) for _ in range(count)]

            def pre_once() -> float:
                t0 = time.perf_counter()
                for i in range(count):
                    queue.write_buffer(bufs[i], 0, data[i * piece:(i + 1) * piece])
                sync()
                return time.perf_counter() - t0

            t = best_of(self.args.repeat, pre_once)
            self.row(piece, "peer wgpu-py: pre-created, write_buffer", t, count, count * piece, kind="peer",
                     path="wgpu", variant="pre-created")
            for b in bufs:
                b.destroy()
        sync_buf.destroy()
        device.destroy()
        return {"version": wgpu.__version__, "sync": sync_how,
                "adapter": {k: info.get(k) for k in ("device", "vendor", "backend_type", "adapter_type", "description")}}

    # ------------------------------------------------------------------ targets
    def targets(self, overhead: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        unified = self.dev.info.unified_memory

        def find(piece: int, kind: str, path: str, variant: str | None = None,
                 strategy: str = "device_local") -> dict[str, Any] | None:
            for r in self.rows:
                if r["piece"] == piece and r["kind"] == kind and r["path"] == path and (
                        variant is None or r.get("variant") == variant) and r.get("strategy", strategy) == strategy:
                    return r
            return None

        default_path = "direct" if find(1 * KiB, "uploader", "direct") else "staging"
        want, name = (TARGET_LARGE_FRACTION, "memcpy floor") if unified else (TARGET_DISCRETE_FRACTION, "DMA floor")

        def share_target(label: str, r: dict[str, Any]) -> None:
            frac = r.get("of_floor")
            if frac is None:
                return
            disturbed = frac > 1.0  # the floor was not a floor in this run: neither a pass nor a figure over 100%
            out.append({"target": f"{label}: >= {want:.0%} of the {name}", "value": None if disturbed else frac,
                        "unit": "of floor", "pass": None if disturbed else frac >= want})

        for piece in (p for p in self.pieces if p >= 4 * MiB):
            for variant in ("pre-created", "create+enqueue"):
                r = find(piece, "uploader", default_path, variant)
                if r is not None:
                    share_target(f"{fmt_size(piece)} pieces, uploader {default_path} {variant}", r)
                rb = find(piece, "uploader", "direct", variant, strategy="auto")
                if rb is not None:
                    share_target(f"{fmt_size(piece)} pieces, uploader direct ReBAR {variant}", rb)
            for r in self.rows:
                if r["piece"] == piece and r["kind"] == "api":
                    share_target(f"{fmt_size(piece)} pieces, create_and_upload (default, {r['strategy']})", r)
        for path in ("direct", "staging"):
            r = find(1 * KiB, "uploader", path, "create+enqueue")
            if r is not None:
                out.append({"target": f"1 KiB buffers, uploader {path} create+enqueue: <= {TARGET_SMALL_US} µs each",
                            "value": r["us_per_buffer"], "unit": "µs", "pass": r["us_per_buffer"] <= TARGET_SMALL_US})
        ov = overhead["overhead_ms_per_100MB"]
        out.append({"target": f"CPU overhead per 100 MB (4 MiB pieces, {overhead['path']}): < {TARGET_OVERHEAD_MS} ms",
                    "value": ov, "unit": "ms", "pass": ov < TARGET_OVERHEAD_MS})
        out.append({"target": f"CPU overhead per 100 MB: goal < {GOAL_OVERHEAD_MS} ms", "value": ov, "unit": "ms",
                    "pass": ov < GOAL_OVERHEAD_MS})
        return out

    # ------------------------------------------------------------------ main
    def run(self) -> dict[str, Any]:
        dev = self.dev
        info = dev.info
        upq = dev.context.logical.upload_queue
        fam = info.queue_families[upq.family]
        print(f"device: {info.name} ({info.device_type}, {info.driver}, Vulkan {info.api_version}); "
              f"unified memory: {info.unified_memory}; upload queue: family {upq.family} "
              f"{'/'.join(flag_names(fam.flags, QUEUE_FLAGS))}"
              f"{' (dedicated transfer queue)' if dev.context.logical.transfer_queue is not None else ''}", flush=True)
        print(f"total {fmt_size(self.total)} per row, best of {self.args.repeat} after a warm-up; "
              f"{os.cpu_count()} CPUs; fill threads {dev.uploader.fill_threads}", flush=True)
        wall0 = time.perf_counter()
        self.memory = {}
        self.setup_copy_floor()
        try:
            for piece in self.pieces:
                print(f"-- {fmt_size(piece)} pieces ({self.total // piece} buffers)", flush=True)
                self.run_floors(piece)
                self.run_uploader(piece)
                if piece >= 4 * MiB:
                    self.run_create_and_upload(piece)
        finally:
            self.teardown_copy_floor()
        pool_bufs = list(dev.uploader.pool._all)
        if pool_bufs:
            self.memory["uploader_staging_pool"] = self.memory_of(pool_bufs[-1])
        print("-- CPU overhead", flush=True)
        overhead = self.run_overhead()
        print("-- peer", flush=True)
        peer = self.run_wgpu()
        targets = self.targets(overhead)
        result = {
            "benchmark": "upload",
            "quick": self.args.quick,
            "device": {"name": info.name, "type": info.device_type, "driver": info.driver,
                       "api_version": info.api_version, "unified_memory": info.unified_memory,
                       "heaps": [{"index": h.index, "size": h.size, "device_local": h.device_local} for h in info.heaps],
                       "memory_types": [{"index": t.index, "heap": t.heap, "flags": flag_names(t.flags, MEMORY_FLAGS)}
                                        for t in info.memory_types]},
            "queue": {"upload_family": upq.family, "upload_family_flags": flag_names(fam.flags, QUEUE_FLAGS),
                      "dedicated_transfer_queue": dev.context.logical.transfer_queue is not None,
                      "main_family": dev.context.logical.queue.family,
                      "ownership_transfers": dev.uploader.ownership_transfer},
            "memory": self.memory,
            "config": {"total": self.total, "pieces": self.pieces, "repeat": self.args.repeat, "usage": USAGE,
                       "auto_flush_bytes": uploader_module.AUTO_FLUSH_BYTES,
                       "cpus": os.cpu_count(), "fill_threads": dev.uploader.fill_threads,
                       "fill_slice": dev.uploader._fill_slice(), "gil_switch_interval_s": sys.getswitchinterval(),
                       "python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform()},
            "results": self.rows,
            "cpu_overhead": overhead,
            "peer": peer,
            "targets": targets,
            "uploader_stats": dev.uploader.stats_dict(),
            "seconds": time.perf_counter() - wall0,
        }
        return result

    def close(self) -> None:
        self.dev.close()


def print_table(result: dict[str, Any]) -> None:
    rows = result["results"]
    print()
    print(f"Upload benchmark on {result['device']['name']} (total {fmt_size(result['config']['total'])} per row)")
    head = f"| {'piece':>8} | {'method':<46} | {'GB/s':>7} | {'µs/buffer':>10} | {'share of floor':<44} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        share = share_text(r) if "of_floor" in r else ""
        print(f"| {r['piece_label']:>8} | {r['method']:<46} | {r['gbps']:7.2f} | {r['us_per_buffer']:10.2f} | "
              f"{share:<44} |")
    ov = result["cpu_overhead"]
    print(f"\nCPU time beyond the memcpy, {ov['bytes'] / 1e6:.0f} MB in {fmt_size(ov['piece'])} pieces "
          f"({ov['path']}): {ov['overhead_ms_per_100MB']:.2f} ms per 100 MB (uploader {ov['uploader_cpu_ms']:.2f} ms "
          f"CPU until flush returned, its copies {ov['copy_cpu_ms']:.2f} ms; plain one-thread memcpy of the same "
          f"bytes {ov['plain_memcpy_cpu_ms']:.2f} ms)")
    if "skipped" in result["peer"]:
        print(f"peer: {result['peer']['skipped']}")
    print("\nTargets:")
    for t in result["targets"]:
        if t["value"] is None:
            print(f"  ----  {t['target']}: not judged, the floor was disturbed in this run (rerun)")
            continue
        val = f"{t['value']:.1%}" if t["unit"] == "of floor" else f"{t['value']:.2f} {t['unit']}"
        print(f"  {'PASS' if t['pass'] else 'MISS'}  {t['target']}: {val}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: 16 MiB totals, one repeat")
    ap.add_argument("--total-mib", type=int, default=None, help="bytes per row in MiB (default 256, quick 16)")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per row after a warm-up (default 3, quick 1)")
    ap.add_argument("--device", default=None, help="device index or name substring (default: VIXEN_DEVICE or 0)")
    ap.add_argument("--no-wgpu", action="store_true", help="skip the wgpu-py peer")
    ap.add_argument("--auto-flush-mib", type=int, default=None,
                    help="override the uploader's auto-flush threshold (a tuning experiment; default: the library's)")
    ap.add_argument("--fill-threads", type=int, default=None,
                    help="replace the uploader's fill threads by this many (a tuning experiment)")
    ap.add_argument("--fill-slice-mib", type=int, default=None,
                    help="override the bytes per staging fill task in MiB (a tuning experiment; default 4: a chunk)")
    ap.add_argument("--json", type=Path, default=None,
                    help="output path (default benchmarks/results/upload-<device>[-quick].json)")
    args = ap.parse_args(argv)
    if args.fill_slice_mib is not None and args.fill_slice_mib < 1:
        ap.error(f"--fill-slice-mib must be >= 1, got {args.fill_slice_mib}")
    if args.fill_threads is not None and args.fill_threads < 1:
        ap.error(f"--fill-threads must be >= 1, got {args.fill_threads}")
    if args.total_mib is None:
        args.total_mib = 16 if args.quick else 256
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    bench = Bench(args)
    try:
        result = bench.run()
    finally:
        bench.close()
    print_table(result)
    path = args.json or (Path(__file__).resolve().parent / "results" /
                         f"upload-{slug(result['device']['name'])}{'-quick' if args.quick else ''}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
