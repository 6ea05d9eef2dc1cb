"""Texture benchmark: KTX2 load throughput against its CPU floor, and what BC7/BC1 at load save at what PSNR.

**Throughput** (MB/s of GPU-resident texture: the bytes of every level in the format the GPU holds) of
``load_texture`` for two sets of generated KTX2 files, written by this script (no such files are among the shared
assets): natural-looking images (multi-octave smooth noise, gradients, mild grain) with full mip chains down to 4x4,

- **BC7 + Zstandard**: ``etcpak.compress_bc7`` blocks per level, each level a Zstandard frame (``zstandard``);
  ``BC7_SRGB_BLOCK`` is sampled on lavapipe and on NVIDIA, so this is the *native* path (inflate, upload);
- **ETC2 RGB8 + Zstandard**: ``etcpak.compress_etc2_rgb``; ETC2 is not sampled on lavapipe or the H100, so this is
  the *decoded* path (inflate, ``texture2ddecoder`` to RGBA8, upload 8x the bytes).

- **BC7 + Zstandard, small**: ``--small-files`` (500; quick 64) files of 256x256, the fixed cost per texture.

Each set loads ``load_texture`` file by file and through one ``load_textures`` call (``--workers`` threads, default
the CPU count). Beside them, in the same run: the floor on one thread, the floor on ``--workers`` threads (the batch's
peer; for ETC2 the threaded decode floor), ``fixed µs/tex`` (the batch's wall time beyond its threaded floor per
file) and a *peer* row, "upload alone": the same images created and filled from ready arrays (no file, no inflate),
which is what the device itself costs. The goals of issue 20 are printed as PASS/MISS lines.

Each file is checked with ``read_ktx2`` (levels, DFD, inflated data equal to the blocks written). Beside each, in
the same run: the **floor** of reading the file and inflating every level with ``zstandard`` (no parsing checks, no
GPU), expressed in MB/s of the same resident bytes so the columns compare directly; for ETC2 also the floor plus the
CPU decode (still no GPU). Times are the best of ``--repeat`` runs after a warm-up; the texture cache is emptied
between runs so every load is a miss. Validation is off.

**Memory and PSNR** of ``compress="bc7"``, ``"bc1"`` and ``"auto"`` against the plain RGBA8 load for PNG inputs:
generated natural-looking images and the PNG files under ``../shared/assets/usd`` (when present). Memory is the GPU images'
size (``GpuTexture.nbytes``) and the payload ratio the cacher reports; PSNR is the cacher's, recomputed here from the
read-back blocks. The bar (forge3d O3): 30-70% less memory at PSNR > 35 dB; a row passes when it saves at least 30%
at PSNR > 35 dB (BC7 saves 75% and BC1 87.5% of RGBA8 by construction, beyond the band's top, which is reported).

Usage: ``python benchmarks/bench_textures.py [--quick] [--size N] [--files N] [--small-files N] [--small-size N]
[--workers N] [--repeat N] [--profile PATH] [--device I] [--json PATH]`` (default JSON:
``benchmarks/results/textures-<device>[-quick].json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import struct
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import zstandard
from PIL import Image as PILImage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vixen_assets.cachers.texture import psnr, texture_cacher  # noqa: E402
from vixen_assets.cachers.texture_compress import decode_blocks  # noqa: E402
from vixen_assets.errors import CompressionQualityWarning  # noqa: E402
from vixen_assets.device import open_device  # noqa: E402
from vixen_assets.formats.ktx2 import IDENTIFIER, read_ktx2  # noqa: E402
from vixen_assets.formats.vkformat import format_info, level_size  # noqa: E402
from vixen_assets.testing import assets_dir  # noqa: E402
from vixen_assets.textures import load_texture, load_textures  # noqa: E402

MB = 1e6
BC7_SRGB, ETC2_RGB8_SRGB = 146, 148
MODEL_BC7, MODEL_ETC2 = 134, 161
ZSTD_LEVEL = 9
BAR_MIN_SAVED, BAR_MAX_SAVED, BAR_PSNR = 0.30, 0.70, 35.0
USD_PNGS = {  # path under ../shared/assets/usd -> sRGB colour (True) or raw data (False), as their stages say
    "openusd/testUsdImagingGLGeomSubsets/texture2.png": True,
    "openusd/testUsdImagingGLPreviewSurface/normalMap.png": False,
    "openusd/testUsdImagingGLPreviewSurface/texSRGB.png": True,
    "openusd/testUsdImagingGLPreviewSurface/texLinear.png": False,
}


def slug(name: str) -> str:
    """``llvmpipe (LLVM 15.0.6, 256 bits)`` -> ``llvmpipe``; ``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``."""
    base = name.split("(")[0].strip() or name
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or "device"


# --------------------------------------------------------------------------------------------- generated images


def natural_image(size: int, seed: int) -> np.ndarray:
    """A natural-looking opaque RGBA8 image: multi-octave smooth noise, a lighting gradient and mild grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.zeros((size, size, 3), np.float32)

    def smooth(cells: int) -> np.ndarray:
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        return np.asarray(PILImage.fromarray(grid, "F").resize((size, size), PILImage.BICUBIC))

    for cells, weight in ((2, 0.5), (4, 0.25), (8, 0.14), (16, 0.07), (32, 0.04)):
        shared = smooth(cells)  # luminance structure common to the channels, as in photographs
        for c in range(3):
            base[..., c] += weight * (0.7 * shared + 0.3 * smooth(cells))
    tint = rng.random(3).astype(np.float32) * 0.5 + 0.5
    light = (0.65 + 0.35 * (1 - 0.6 * x - 0.4 * y))[..., None]
    img = base / base.max() * tint * light * 255 + rng.normal(0, 1.5, (size, size, 3))
    out = np.empty((size, size, 4), np.uint8)
    out[..., :3] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    out[..., 3] = 255
    return out


_BASES: dict[int, list[np.ndarray]] = {}


def variant(size: int, i: int) -> np.ndarray:
    """Distinct natural-looking images cheaply: eight generated ones, rolled and flipped (content differs, so the
    cache never deduplicates two files)."""
    bases = _BASES.setdefault(size, [])
    while len(bases) < min(8, i + 1):
        bases.append(natural_image(size, seed=100 + len(bases)))
    img = bases[i % len(bases)]
    k = i // len(bases)
    if k:
        img = np.roll(img, (k * 7) % size, axis=1)
        if k % 2:
            img = img[::-1]
    return np.ascontiguousarray(img)


def mip_chain(img: np.ndarray, smallest: int = 4) -> list[np.ndarray]:
    """Box-filtered levels down to ``smallest`` texels (levels stay multiples of the 4x4 block)."""
    levels = [img]
    while levels[-1].shape[0] // 2 >= smallest and levels[-1].shape[1] // 2 >= smallest:
        a = levels[-1].astype(np.uint16)
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        down = (a[0:h:2, 0:w:2] + a[1:h:2, 0:w:2] + a[0:h:2, 1:w:2] + a[1:h:2, 1:w:2] + 2) // 4
        levels.append(down.astype(np.uint8))
    return levels


# ------------------------------------------------------------------------------------------------ KTX2 writing


def dfd_block(model: int, bytes_per_block: int, channel: int, srgb: bool) -> bytes:
    """A basic DFD (Khronos Data Format 1.3) for a 4x4 block-compressed format with one sample."""
    word2 = model | 1 << 8 | (2 if srgb else 1) << 16  # primaries BT709, transfer sRGB or linear, straight alpha
    block = struct.pack("<6I", 0, 2 | (24 + 16) << 16, word2, 3 | 3 << 8, bytes_per_block, 0)
    sample = struct.pack("<4I", 0 | (8 * bytes_per_block - 1) << 16 | channel << 24, 0, 0, 0xFFFFFFFF)
    body = block + sample
    return struct.pack("<I", 4 + len(body)) + body


def write_ktx2(path: Path, vk_format: int, width: int, height: int, levels: list[bytes], dfd: bytes) -> int:
    """Write a 2D KTX2 file with Zstandard-supercompressed levels (level 0 first in ``levels``); return its size."""
    n = len(levels)
    frames = [zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(lv) for lv in levels]
    dfd_off = 80 + 24 * n
    pos = dfd_off + len(dfd)
    index: list[bytes] = [b""] * n
    body = bytearray()
    for i in reversed(range(n)):  # smallest level first, as KTX2 stores them; no padding under supercompression
        index[i] = struct.pack("<3Q", pos, len(frames[i]), len(levels[i]))
        body += frames[i]
        pos += len(frames[i])
    header = struct.pack("<12s9I4I2Q", IDENTIFIER, vk_format, 1, width, height, 0, 0, 1, n, 2, dfd_off, len(dfd),
                         0, 0, 0, 0)
    data = header + b"".join(index) + dfd + bytes(body)
    path.write_bytes(data)
    return len(data)


def encode_levels(img: np.ndarray, kind: str) -> list[bytes]:
    import etcpak

    out = []
    for lv in mip_chain(img):
        h, w = lv.shape[:2]
        rgba = np.ascontiguousarray(lv).tobytes()  # etcpak takes RGBA rows
        out.append(bytes(etcpak.compress_bc7(rgba, w, h) if kind == "bc7" else etcpak.compress_etc2_rgb(rgba, w, h)))
    return out


def make_set(folder: Path, kind: str, count: int, size: int, prefix: str = "") -> list[dict[str, Any]]:
    """Generate ``count`` KTX2 files of one kind; verify each with read_ktx2."""
    vk_format = BC7_SRGB if kind == "bc7" else ETC2_RGB8_SRGB
    info = format_info(vk_format)
    dfd = dfd_block(MODEL_BC7, 16, 0, True) if kind == "bc7" else dfd_block(MODEL_ETC2, 8, 2, True)
    files = []
    for i in range(count):
        levels = encode_levels(variant(size, i), kind)
        path = folder / f"{prefix or kind}_zstd_{i}.ktx2"
        fsize = write_ktx2(path, vk_format, size, size, levels, dfd)
        ktx = read_ktx2(path)  # the reader must accept what we wrote, and give the blocks back
        assert ktx.format is info and ktx.scheme_name == "Zstandard" and len(ktx.levels) == len(levels), ktx
        assert all(ktx.level_data(j) == levels[j] for j in range(len(levels))), path
        assert all(len(levels[j]) == level_size(info, lv.width, lv.height) for j, lv in enumerate(ktx.levels))
        files.append({"path": path, "file_bytes": fsize, "block_bytes": sum(map(len, levels)),
                      "levels": len(levels)})
    return files


# ------------------------------------------------------------------------------------------------------ timing


def _read_inflate_one(p: Path, decode: bool) -> int:
    """Read one file and inflate every level with zstandard (optionally CPU-decode ETC2 too); no GPU."""
    import texture2ddecoder

    dctx = zstandard.ZstdDecompressor()
    with open(p, "rb") as fh:
        data = fh.read()
    width, height, n = struct.unpack_from("<I", data, 20)[0], struct.unpack_from("<I", data, 24)[0], \
        struct.unpack_from("<I", data, 40)[0]
    total = 0
    for i in range(n):
        off, length, ulen = struct.unpack_from("<3Q", data, 80 + 24 * i)
        raw = dctx.decompress(data[off:off + length], max_output_size=ulen)
        total += len(raw)
        if decode:
            texture2ddecoder.decode_etc2(raw, max(1, width >> i), max(1, height >> i))
    return total


def floor_read_inflate(paths: list[Path], decode: bool = False, threads: int = 1) -> float:
    """The floor: read each file and inflate every level (optionally CPU-decode ETC2 too), no parsing checks, no
    GPU; on one thread, or on ``threads`` (zstandard and texture2ddecoder release the GIL)."""
    t0 = time.perf_counter()
    if threads <= 1:
        for p in paths:
            _read_inflate_one(p, decode)
    else:
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(lambda p: _read_inflate_one(p, decode), paths))
    return time.perf_counter() - t0


def _fresh(dev: Any) -> None:
    """Empty the texture cache (every load a miss) and let freed images retire."""
    texture_cacher(dev).evict()
    dev.wait_idle()
    dev.context.lifetime.collect()


def time_loads(dev: Any, paths: list[Path]) -> tuple[float, list[Any]]:
    """``load_texture`` file by file (each a cache miss); return the seconds and the textures' descriptions.

    The handed-out textures are released before returning: a held texture cannot be evicted, and the next run
    would otherwise hit the cache.
    """
    _fresh(dev)
    t0 = time.perf_counter()
    texs = [load_texture(p, dev) for p in paths]
    secs = time.perf_counter() - t0
    for t in texs:
        t.release()
    return secs, texs


def time_batch(dev: Any, paths: list[Path], workers: int | None) -> tuple[float, list[Any]]:
    """One ``load_textures`` call over every file (each a cache miss); the textures released afterwards."""
    _fresh(dev)
    t0 = time.perf_counter()
    texs = load_textures(paths, dev, workers=workers)
    secs = time.perf_counter() - t0
    for t in texs:
        t.release()
    return secs, texs


def profile_batch(dev: Any, paths: list[Path], workers: int | None, out: Path) -> None:
    """One more (untimed) ``load_textures`` call under ``cProfile`` (the calling thread; small files are prepared
    there too), its statistics written to ``out`` (``python -m pstats out``) and the top entries printed."""
    import cProfile
    import pstats

    _fresh(dev)
    prof = cProfile.Profile()
    prof.enable()
    texs = load_textures(paths, dev, workers=workers)
    prof.disable()
    for t in texs:
        t.release()
    out.parent.mkdir(parents=True, exist_ok=True)
    prof.dump_stats(str(out))
    print(f"  profile of load_textures on {len(paths)} files -> {out}", flush=True)
    pstats.Stats(prof).sort_stats("tottime").print_stats(12)


def upload_only(dev: Any, texs: list[Any]) -> float:
    """The GPU side alone: images of the same formats and extents created and filled from ready arrays (no file,
    no inflate, no decode) through the uploader, flushed and waited for."""
    from vixen_assets.memory.images import Image
    from vixen_assets.transfer.image_regions import level_copies

    plans = []
    for t in texs:
        info = format_info(t.image.vk_format)
        copies, off = [], 0
        for lv in range(t.levels):
            cps = level_copies(info, max(1, t.width >> lv), max(1, t.height >> lv), 1, level=lv, base_layer=0,
                               layer_count=t.layers * t.faces, buffer_offset=off,
                               max_bytes=dev.uploader.pool.max_chunk)
            copies += cps
            off += sum(c.size for c in cps)
        plans.append((t, copies, np.zeros(off, np.uint8)))
    _fresh(dev)
    t0 = time.perf_counter()
    imgs = []
    for t, copies, data in plans:
        img = Image(dev.context, name="peer", vk_format=t.image.vk_format, width=t.width, height=t.height,
                    levels=t.levels, layers=t.layers, faces=t.faces)
        imgs.append(img)
        dev.uploader.enqueue_image(img, data, copies)
    dev.uploader.flush().wait()
    secs = time.perf_counter() - t0
    for img in imgs:
        img.destroy()
    return secs


def best_of(fn: Any, repeat: int) -> Any:
    fn()  # warm-up
    return min((fn() for _ in range(repeat)), key=lambda r: r[0] if isinstance(r, tuple) else r)


# ---------------------------------------------------------------------------------------------------- the run


def _row(kind: str, what: str, secs: float, resident: int, blocks: int, **more: Any) -> dict[str, Any]:
    return {"set": kind, "what": what, "seconds": secs, "resident_bytes": resident, "mb_s": resident / MB / secs,
            "inflated_mb_s": blocks / MB / secs, **more}


def throughput(dev: Any, args: argparse.Namespace, folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    sets: dict[str, Any] = {}
    threads = args.workers
    for kind, label, count, size in (("bc7", "BC7 + zstd", args.files, args.size),
                                     ("etc2", "ETC2 RGB8 + zstd", args.files, args.size),
                                     ("bc7_small", "BC7 + zstd, small", args.small_files, args.small_size)):
        enc = "etc2" if kind == "etc2" else "bc7"
        t0 = time.perf_counter()
        files = make_set(folder, enc, count, size, prefix=kind)
        paths = [f["path"] for f in files]
        gen_s = time.perf_counter() - t0
        secs, texs = best_of(lambda: time_loads(dev, paths), args.repeat)
        bsecs, btexs = best_of(lambda: time_batch(dev, paths, threads), args.repeat)
        if args.profile is not None:
            profile_batch(dev, paths, threads, args.profile.with_name(f"{args.profile.name}.{kind}"))
        assert [t.path_taken for t in btexs] == [t.path_taken for t in texs]
        path_taken = sorted({t.path_taken for t in texs})
        gpu_format = sorted({t.vk_format for t in texs})
        resident = sum(level_size(format_info(t.image.vk_format), max(1, t.width >> lv), max(1, t.height >> lv))
                       for t in texs for lv in range(t.levels))
        block_bytes = sum(f["block_bytes"] for f in files)
        sets[kind] = {"label": label, "files": len(files), "size": size, "levels": files[0]["levels"],
                      "file_bytes": sum(f["file_bytes"] for f in files), "block_bytes": block_bytes,
                      "resident_bytes": resident, "gpu_image_bytes": sum(t.nbytes for t in texs),
                      "path_taken": path_taken, "gpu_format": gpu_format, "generate_s": gen_s}
        floor_s = best_of(lambda: floor_read_inflate(paths), args.repeat)
        floor_n = best_of(lambda: floor_read_inflate(paths, threads=threads), args.repeat)
        rows.append(_row(kind, f"floor: read + zstd inflate ({label}, no GPU)", floor_s, resident, block_bytes))
        rows.append(_row(kind, f"floor: read + zstd inflate on {threads} threads ({label}, no GPU)", floor_n,
                         resident, block_bytes))
        dec_n = None
        if kind == "etc2":
            dec_s = best_of(lambda: floor_read_inflate(paths, decode=True), args.repeat)
            dec_n = best_of(lambda: floor_read_inflate(paths, decode=True, threads=threads), args.repeat)
            rows.append(_row(kind, f"floor: read + zstd + CPU ETC2 decode ({label}, no GPU)", dec_s, resident,
                             block_bytes))
            rows.append(_row(kind, f"floor: read + zstd + CPU ETC2 decode on {threads} threads ({label}, no GPU)",
                             dec_n, resident, block_bytes))
        up_s = best_of(lambda: upload_only(dev, btexs), args.repeat)
        rows.append(_row(kind, f"peer: upload alone (create + copy the {'/'.join(gpu_format)} images, no file)",
                         up_s, resident, block_bytes))
        fmt = f"{'/'.join(gpu_format)} ({'/'.join(path_taken)})"
        rows.append(_row(kind, f"load_texture {label} -> {fmt}, one by one", secs, resident, block_bytes,
                         vs_floor=floor_s / secs))
        # the peer of the batch: the floor of the same work on the same number of threads (the decode floor for
        # the CPU-decoded set)
        peer = dec_n if dec_n is not None else floor_n
        rows.append(_row(kind, f"load_textures {label} -> {fmt}, {threads} workers", bsecs, resident, block_bytes,
                         vs_floor=floor_s / bsecs, vs_threaded_floor=peer / bsecs,
                         fixed_us_per_texture=(bsecs - peer) / len(paths) * 1e6,
                         one_by_one_us_per_texture=secs / len(paths) * 1e6))
        _fresh(dev)
    return rows, sets


def png_inputs(args: argparse.Namespace, folder: Path) -> list[tuple[str, Path, bool]]:
    out = []
    for i in range(args.pngs):
        p = folder / f"natural_{i}.png"
        PILImage.fromarray(natural_image(args.png_size, seed=7 + i), "RGBA").save(p)
        out.append((f"generated natural {args.png_size}x{args.png_size} #{i}", p, True))
    root = assets_dir()
    if root is not None:
        for rel, srgb in USD_PNGS.items():
            p = root / "usd" / rel
            if p.is_file():
                out.append((rel.split("/", 1)[1], p, srgb))
    return out


def memory_psnr(dev: Any, args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """BC7, BC1 and ``compress="auto"`` of each PNG against its RGBA8 load; PSNR recomputed from read-back blocks."""
    rows = []
    for label, path, srgb in png_inputs(args, folder):
        plain = load_texture(path, dev, srgb=srgb)
        with PILImage.open(path) as im:
            src = np.asarray(im.convert("RGBA"))
        h, w = src.shape[:2]
        for kind in ("bc7", "bc1", "auto"):
            with warnings.catch_warnings():  # a BC1 below the bar warns: the table reports it
                warnings.simplefilter("ignore", CompressionQualityWarning)
                tex = load_texture(path, dev, compress=kind, srgb=srgb)
            ex = tex.extra
            chosen = ex.get("compress_choice", kind)
            if chosen in ("bc1", "bc7", "bc5"):
                measured = psnr(decode_blocks(dev.read_image(tex).tobytes(), chosen, w, h), src)
            else:  # auto kept RGBA8: the read-back pixels themselves
                measured = psnr(dev.read_image(tex).reshape(h, w, 4), src)
            saved_gpu = 1 - tex.nbytes / plain.nbytes
            saved = float(ex["memory_saved"])
            ok = saved >= BAR_MIN_SAVED and float(ex["psnr_db"]) > BAR_PSNR
            rows.append({"image": label, "width": w, "height": h, "kind": kind, "choice": chosen,
                         "gpu_format": tex.vk_format, "rgba8_gpu_bytes": plain.nbytes, "gpu_bytes": tex.nbytes,
                         "saved_gpu": saved_gpu, "saved_payload": saved, "psnr_db": float(ex["psnr_db"]),
                         "psnr_readback_db": measured, "psnr_tried": ex.get("psnr_tried", {}),
                         "pass": ok, "in_band": BAR_MIN_SAVED <= saved <= BAR_MAX_SAVED})
            tex.release()
        plain.release()
    texture_cacher(dev).evict()
    return rows


def print_tables(result: dict[str, Any]) -> None:
    print(f"\nTexture load throughput on {result['device']['name']} "
          f"(MB/s of GPU-resident texture; best of {result['config']['repeat']})")
    for kind, s in result["sets"].items():
        print(f"  {s['label']}: {s['files']} files {s['size']}x{s['size']}, {s['levels']} levels, "
              f"file {s['file_bytes'] / MB:.2f} MB, blocks {s['block_bytes'] / MB:.2f} MB, resident "
              f"{s['resident_bytes'] / MB:.2f} MB as {'/'.join(s['gpu_format'])} ({'/'.join(s['path_taken'])})")
    print("  floor/load: the 1-thread floor's time over the load's (above 1: faster than one thread can inflate); "
          "thr.floor/load: the same against the floor on as many threads (the decode floor for ETC2); "
          "fixed: wall time per texture beyond that floor")
    head = (f"| {'what':<78} | {'seconds':>8} | {'MB/s resident':>13} | {'MB/s blocks':>11} | {'floor/load':>10} | "
            f"{'thr.floor/load':>14} | {'fixed µs/tex':>12} |")
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|")
    for r in result["throughput"]:
        vs = f"{r['vs_floor']:.2f}x" if "vs_floor" in r else ""
        vt = f"{r['vs_threaded_floor']:.2f}x" if "vs_threaded_floor" in r else ""
        fx = r.get("fixed_us_per_texture")
        fixed = "" if fx is None else f"{fx:.0f}" if fx >= 0 else "< 0 (noise)"
        print(f"| {r['what']:<78} | {r['seconds']:8.4f} | {r['mb_s']:13.1f} | {r['inflated_mb_s']:11.1f} | "
              f"{vs:>10} | {vt:>14} | {fixed:>12} |")
    print(f"\nMemory and PSNR of compress at load vs RGBA8 (bar: {BAR_MIN_SAVED:.0%}-{BAR_MAX_SAVED:.0%} less memory "
          f"at PSNR > {BAR_PSNR:.0f} dB)")
    head = (f"| {'image':<46} | {'size':>9} | {'asked':<5} | {'fmt':<20} | {'RGBA8 B':>9} | {'GPU B':>9} | "
            f"{'saved':>6} | {'PSNR dB':>7} | {'readback':>8} | verdict |")
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|")
    for r in result["memory_psnr"]:
        verdict = "PASS" if r["pass"] else "MISS"
        print(f"| {r['image'][:46]:<46} | {r['width']:>4}x{r['height']:<4} | {r['kind']:<5} | {r['gpu_format']:<20} | "
              f"{r['rgba8_gpu_bytes']:>9} | {r['gpu_bytes']:>9} | {r['saved_gpu']:6.1%} | {r['psnr_db']:7.2f} | "
              f"{r['psnr_readback_db']:8.2f} | {verdict:<7} |")
    print("\nTargets:")
    for t in result["targets"]:
        print(f"  {'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['value']}")


def speed_targets(rows: list[dict[str, Any]], sets: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's speed goals, each measured against its floor in this run."""
    by = {(r["set"], r["what"].split(" ")[0]): r for r in rows if r["what"].startswith("load_textures")}
    out = []
    big = by.get(("bc7", "load_textures"))
    if big:
        s = sets["bc7"]
        out.append({"target": f"{s['size']}² BC7 + zstd via load_textures >= 80% of the 1-thread read + inflate floor",
                    "value": f"{big['vs_floor']:.2f}x of the floor ({big['mb_s']:.0f} MB/s resident)",
                    "pass": big["vs_floor"] >= 0.80})
    small = by.get(("bc7_small", "load_textures"))
    if small:
        s = sets["bc7_small"]
        fx = small["fixed_us_per_texture"]
        out.append({"target": f"{s['files']} x {s['size']}² via load_textures >= 50% of the all-cores read + inflate "
                              "floor",
                    "value": f"{small['vs_threaded_floor']:.2f}x of the floor; fixed cost "
                             f"{'%.0f µs' % fx if fx >= 0 else '< 0 µs (noise)'} per texture beyond it "
                             f"(load_texture one by one: {small['one_by_one_us_per_texture']:.0f} µs per texture)",
                    "pass": small["vs_threaded_floor"] >= 0.50})
    etc = by.get(("etc2", "load_textures"))
    if etc:
        out.append({"target": "ETC2 (CPU-decoded) via load_textures >= 50% of the threaded decode floor",
                    "value": f"{etc['vs_threaded_floor']:.2f}x of the floor",
                    "pass": etc["vs_threaded_floor"] >= 0.50})
    return out


def targets(mp: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for kind in ("bc7", "bc1", "auto"):
        sel = [r for r in mp if r["kind"] == kind]
        if not sel:
            continue
        worst = min(r["psnr_db"] for r in sel)
        saved = min(r["saved_gpu"] for r in sel)
        band = all(r["in_band"] for r in sel)
        choices = ", ".join(f"{r['choice']}" for r in sel)
        out.append({"target": f"O3 {kind.upper()} vs RGBA8 on {len(sel)} PNGs: >= {BAR_MIN_SAVED:.0%} less memory "
                              f"at PSNR > {BAR_PSNR:.0f} dB",
                    "value": f"min saved {saved:.1%} (GPU bytes), min PSNR {worst:.2f} dB; "
                             f"{'inside' if band else 'beyond'} the {BAR_MIN_SAVED:.0%}-{BAR_MAX_SAVED:.0%} band"
                             + (f"; chose {choices}" if kind == "auto" else ""),
                    "pass": all(r["pass"] for r in sel)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: 256x256 files, 2 per set, one repeat")
    ap.add_argument("--size", type=int, default=None, help="edge of the generated KTX2 images (default 2048)")
    ap.add_argument("--files", type=int, default=None, help="files per set (default 6, quick 2)")
    ap.add_argument("--pngs", type=int, default=None, help="generated PNG inputs (default 3, quick 1)")
    ap.add_argument("--png-size", type=int, default=None, help="edge of the generated PNGs (default 1024)")
    ap.add_argument("--small-files", type=int, default=None, help="files of the small set (default 500, quick 64)")
    ap.add_argument("--small-size", type=int, default=None, help="edge of the small set's images (default 256)")
    ap.add_argument("--workers", type=int, default=None, help="load_textures workers and floor threads "
                    "(default: the CPU count)")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs after a warm-up (default 3, quick 1)")
    ap.add_argument("--profile", type=Path, default=None, help="also run one load_textures call per set under "
                    "cProfile, written to PROFILE.<set> (untimed)")
    ap.add_argument("--device", default=None, help="device index or name substring (default: VIXEN_DEVICE or 0)")
    ap.add_argument("--json", type=Path, default=None,
                    help="output path (default benchmarks/results/textures-<device>[-quick].json)")
    args = ap.parse_args(argv)
    q = args.quick
    args.size = args.size or (256 if q else 2048)
    args.files = args.files or (2 if q else 6)
    args.pngs = args.pngs if args.pngs is not None else (1 if q else 3)
    args.png_size = args.png_size or (128 if q else 1024)
    args.repeat = args.repeat or (1 if q else 3)
    args.small_files = args.small_files or (64 if q else 500)
    args.small_size = args.small_size or 256
    args.workers = args.workers or os.cpu_count() or 1
    if args.size % 4:
        ap.error("--size must be a multiple of 4")
    wall0 = time.perf_counter()
    dev = open_device(args.device, validation=False)
    try:
        info = dev.info
        print(f"device: {info.name} ({info.device_type}, {info.driver}); {os.cpu_count()} CPUs", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-textures-") as tmp:
            folder = Path(tmp)
            print("-- throughput", flush=True)
            rows, sets = throughput(dev, args, folder)
            print("-- memory / PSNR", flush=True)
            mp = memory_psnr(dev, args, folder)
        result = {
            "benchmark": "textures",
            "quick": q,
            "device": {"name": info.name, "type": info.device_type, "driver": info.driver,
                       "api_version": info.api_version, "unified_memory": info.unified_memory},
            "config": {"size": args.size, "files": args.files, "pngs": args.pngs, "png_size": args.png_size,
                       "repeat": args.repeat, "small_files": args.small_files, "small_size": args.small_size,
                       "workers": args.workers, "zstd_level": ZSTD_LEVEL, "cpus": os.cpu_count(),
                       "python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform()},
            "sets": sets,
            "throughput": rows,
            "memory_psnr": mp,
            "targets": speed_targets(rows, sets) + targets(mp),
            "seconds": 0.0,
        }
    finally:
        dev.close()
    result["seconds"] = time.perf_counter() - wall0
    print_tables(result)
    path = args.json or (Path(__file__).resolve().parent / "results" /
                         f"textures-{slug(result['device']['name'])}{'-quick' if q else ''}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
