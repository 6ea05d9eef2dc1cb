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

Also the uploader's CPU overhead excluding the memcpy, for 100 MB in 4 MiB pieces: uploader time (create+enqueue,
flush, wait) minus the memcpy floor's time for the same pieces. Targets (lavapipe, i.e. unified memory): large
uploads >= 85% of the memcpy floor, 1 KiB buffers <= 6 µs each, CPU overhead < 2 ms per 100 MB (goal < 0.5 ms);
on discrete GPUs: >= 24 GB/s for large uploads (H100's DMA floor is ~29.6 GB/s). Each time is the best of
``--repeat`` runs after a warm-up run. Validation is off. Data is checked after every uploader run.

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
TARGET_DISCRETE_GBPS = 24.0


def fmt_size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def slug(name: str) -> str:
    """``llvmpipe (LLVM 15.0.6, 256 bits)`` -> ``llvmpipe``; ``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``."""
    base = name.split("(")[0].strip() or name
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or "device"


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
        if args.auto_flush_mib is not None:  # tuning experiment: the uploader's auto-flush threshold
            uploader_module.AUTO_FLUSH_BYTES = args.auto_flush_mib * MiB
        self.rows: list[dict[str, Any]] = []
        total = args.total_mib * MiB
        self.total = total
        self.pieces = sorted({1 * KiB, 64 * KiB, 4 * MiB, total})
        rng = np.random.default_rng(1)
        self.data = np.frombuffer(rng.bytes(total), dtype=np.uint8)

    # ------------------------------------------------------------------ helpers
    def row(self, piece: int, method: str, seconds: float, count: int, nbytes: int, **extra: Any) -> dict[str, Any]:
        r = {"piece": piece, "piece_label": fmt_size(piece), "method": method, "seconds": seconds, "buffers": count,
             "bytes": nbytes, "gbps": nbytes / seconds / 1e9 if seconds > 0 else None,
             "us_per_buffer": seconds / count * 1e6 if count else None, **extra}
        self.rows.append(r)
        print(f"  {fmt_size(piece):>8}  {method:<44} {r['gbps']:8.2f} GB/s {r['us_per_buffer']:12.2f} µs/buffer",
              flush=True)
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
            if not np.array_equal(got, self.data[i * piece:(i + 1) * piece]):
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
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            bufs = []
            for i in range(count):
                b = create(piece, USAGE, strategy=strategy)
                enqueue(b, data[i * piece:(i + 1) * piece])
                bufs.append(b)
            up.flush().wait()
            dt = time.perf_counter() - t0
        finally:
            gc.enable()
        self.check(bufs, piece, f"uploader {path} create+enqueue")
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

    def run_uploader(self, piece: int) -> None:
        count = self.total // piece
        nbytes = count * piece
        variants = self.variants(piece)
        repeat = self.args.repeat
        for label, path, strategy in variants:
            t = best_of(repeat, lambda: self.uploader_create(piece, count, path, strategy))
            self.row(piece, f"uploader {label}: create+enqueue, flush", t, count, nbytes, kind="uploader", path=path,
                     strategy=strategy, variant="create+enqueue")
        for label, path, strategy in variants:
            bufs = [self.dev.create_buffer(piece, USAGE, strategy=strategy) for _ in range(count)]
            try:
                t = best_of(repeat, lambda: self.uploader_precreated(piece, count, path, bufs))
                self.row(piece, f"uploader {label}: pre-created, enqueue, flush", t, count, nbytes, kind="uploader",
                         path=path, strategy=strategy, variant="pre-created")
            finally:
                self.destroy(bufs)
        if len(variants) == 1:
            print(f"  {fmt_size(piece):>8}  uploader direct: skipped (device-local memory is not host-visible here)")

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

        return best_of(self.args.repeat, once)

    def run_floors(self, piece: int) -> None:
        count = self.total // piece
        t = self.memcpy_floor(piece)
        self.row(piece, "floor: numpy memcpy into warm memory", t, count, self.total, kind="floor", path="memcpy")
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
        t1 = best_of(self.args.repeat, lambda: once(one))
        count = self.total // piece
        many = vkr.copy_regions(count)
        offs = np.arange(count, dtype=np.uint64) * np.uint64(piece)
        many["src"] = offs + np.uint64(self._src.offset)
        many["dst"] = offs + np.uint64(self._dst.offset)
        many["size"] = piece
        tn = best_of(self.args.repeat, lambda: once(many)) if count > 1 else t1
        return t1, tn

    def teardown_copy_floor(self) -> None:
        self._fence.destroy()
        self._pool.destroy()
        self._src.destroy()
        self._dst.destroy()

    # ------------------------------------------------------------------ CPU overhead
    def run_overhead(self) -> dict[str, Any]:
        piece, nbytes = OVERHEAD_PIECE, min(OVERHEAD_BYTES, self.total)
        sizes = [min(piece, nbytes - i) for i in range(0, nbytes, piece)]
        dev, data = self.dev, self.data
        up = dev.uploader
        probe = dev.create_buffer(piece, USAGE)
        path = "direct" if probe.host_visible else "staging"
        probe.destroy()

        def uploader_once() -> float:
            up.direct_writes = path == "direct"
            t0 = time.perf_counter()
            bufs = []
            pos = 0
            for n in sizes:
                b = dev.create_buffer(n, USAGE)
                up.enqueue(b, data[pos:pos + n])
                bufs.append(b)
                pos += n
            up.flush().wait()
            dt = time.perf_counter() - t0
            self.destroy(bufs)
            return dt

        t_up = best_of(self.args.repeat + 2, uploader_once)
        t_mem = self.memcpy_floor(piece, nbytes)
        over_ms = (t_up - t_mem) * 1e3 * (100_000_000 / nbytes)
        res = {"bytes": nbytes, "piece": piece, "path": path, "uploader_ms": t_up * 1e3, "memcpy_ms": t_mem * 1e3,
               "overhead_ms_per_100MB": over_ms}
        print(f"  CPU overhead, {nbytes / 1e6:.0f} MB in {fmt_size(piece)} pieces ({path}): uploader "
              f"{t_up * 1e3:.2f} ms - memcpy {t_mem * 1e3:.2f} ms = {over_ms:.2f} ms per 100 MB", flush=True)
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
        for piece in (p for p in self.pieces if p >= 4 * MiB):
            floor = find(piece, "floor", "memcpy")
            for variant in ("pre-created", "create+enqueue"):
                r = find(piece, "uploader", default_path, variant)
                if r is None or floor is None:
                    continue
                if unified:
                    frac = r["gbps"] / floor["gbps"]
                    out.append({"target": f"{fmt_size(piece)} pieces, uploader {default_path} {variant}: "
                                          f">= {TARGET_LARGE_FRACTION:.0%} of memcpy floor",
                                "value": frac, "unit": "of floor", "pass": frac >= TARGET_LARGE_FRACTION})
                else:
                    out.append({"target": f"{fmt_size(piece)} pieces, uploader {default_path} {variant}: "
                                          f">= {TARGET_DISCRETE_GBPS} GB/s", "value": r["gbps"], "unit": "GB/s",
                                "pass": r["gbps"] >= TARGET_DISCRETE_GBPS})
                rb = find(piece, "uploader", "direct", variant, strategy="auto")
                if rb is not None:
                    out.append({"target": f"{fmt_size(piece)} pieces, uploader direct ReBAR {variant}: "
                                          f">= {TARGET_DISCRETE_GBPS} GB/s", "value": rb["gbps"], "unit": "GB/s",
                                "pass": rb["gbps"] >= TARGET_DISCRETE_GBPS})
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
              f"{os.cpu_count()} CPUs; fill threads {dev.uploader._workers}", flush=True)
        wall0 = time.perf_counter()
        self.memory = {}
        for piece in self.pieces:
            print(f"-- {fmt_size(piece)} pieces ({self.total // piece} buffers)", flush=True)
            self.run_uploader(piece)
            if piece == self.pieces[0]:
                self.setup_copy_floor()
            self.run_floors(piece)
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
                       "cpus": os.cpu_count(), "fill_threads": dev.uploader._workers,
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
    head = f"| {'piece':>8} | {'method':<46} | {'GB/s':>7} | {'µs/buffer':>10} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        print(f"| {r['piece_label']:>8} | {r['method']:<46} | {r['gbps']:7.2f} | {r['us_per_buffer']:10.2f} |")
    ov = result["cpu_overhead"]
    print(f"\nCPU overhead excluding memcpy, {ov['bytes'] / 1e6:.0f} MB in {fmt_size(ov['piece'])} pieces "
          f"({ov['path']}): {ov['overhead_ms_per_100MB']:.2f} ms per 100 MB "
          f"(uploader {ov['uploader_ms']:.2f} ms, memcpy {ov['memcpy_ms']:.2f} ms)")
    if "skipped" in result["peer"]:
        print(f"peer: {result['peer']['skipped']}")
    print("\nTargets:")
    for t in result["targets"]:
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
    ap.add_argument("--json", type=Path, default=None,
                    help="output path (default benchmarks/results/upload-<device>[-quick].json)")
    args = ap.parse_args(argv)
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
