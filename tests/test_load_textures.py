"""``load_textures``: many files read and prepared on a thread pool, uploaded in few batches, and ``compress="auto"``.

- every shared KTX2/PNG/JPEG file gives, through one ``load_textures`` call, images byte-identical (read back level
  by level, layer by layer, face by face) to ``load_texture`` one file at a time;
- a failing file in a batch raises a ``FormatError`` naming it and leaves nothing of the batch allocated;
- ``compress="auto"`` picks BC7 where BC1 misses 35 dB (the palette-like PNGs of the shared USD assets) and BC1
  where it meets it, and the PSNR it reports is the one recomputed from the read-back blocks; an explicit ``"bc1"``
  below the bar warns; normal maps never go to BC1;
- the fixed cost's structure: a batch of small textures is suballocated from shared memory blocks and goes up in
  one submission.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import texture2ddecoder
from PIL import Image as PILImage

from vixen_assets import load_texture, load_textures
from vixen_assets.cachers.texture import texture_cacher
from vixen_assets.cachers.texture_compress import decode_blocks, psnr
from vixen_assets.errors import (CompressionQualityWarning, ConfigError, FormatError, NotHeldError,
                                 UnsupportedFormatError)
from vixen_assets.formats.ktx2 import has_basis_transcoder, read_ktx2

PALETTE_PNGS = {  # shared PNG -> sRGB as its stage says; BC1 misses 35 dB on the first three
    "openusd/testUsdImagingGLPreviewSurface/texSRGB.png": True,
    "openusd/testUsdImagingGLPreviewSurface/texLinear.png": False,
    "openusd/testUsdImagingGLPreviewSurface/normalMap.png": False,
}
BC1_OK_PNG = "openusd/testUsdImagingGLGeomSubsets/texture2.png"


def gpu_state(device: Any) -> tuple[Any, ...]:
    """Live suballocations, budget and live objects: what a call that leaves nothing behind must not change (an
    emptied memory block may stay for reuse: the suballocator's policy, not the batch's leftovers)."""
    c = device.context.tracker.counts()
    pool = device.uploader.pool.stats_dict()  # the staging pool may grow (and keeps its buffers): not the batch's
    counts = dict((k, v["count"]) for k, v in device.context.registry.counts().items())
    counts["Buffer"] = counts.get("Buffer", 0) - pool["buffers"]
    return (c.suballocations - c.subfrees - pool["buffers"], device.budget.used - pool["pooled_bytes"],
            sorted(counts.items()))


def shared_files(root: Path) -> list[Path]:
    """Every shared KTX2 file this installation can load, and every shared PNG/JPEG."""
    out = []
    for p in sorted((root / "ktx2").glob("*.ktx2")):
        if read_ktx2(p).format is None and not has_basis_transcoder():
            continue  # Basis without a transcoder: refused by both paths (test_textures checks the refusal)
        out.append(p)
    for ext in ("*.png", "*.jpg", "*.jpeg"):
        out.extend(sorted((root / "usd").rglob(ext)))
    return out


def read_all(device: Any, tex: Any) -> list[bytes]:
    """Every level, layer and face of a texture, read back."""
    return [device.read_image(tex, level, layer, face).tobytes() for level in range(tex.levels)
            for layer in range(tex.layers) for face in range(tex.faces)]


def write_png(path: Path, pixels: np.ndarray) -> Path:
    PILImage.fromarray(pixels, "RGBA").save(path)
    return path


def noise_png(path: Path, seed: int, size: int = 64) -> Path:
    return write_png(path, np.random.default_rng(seed).integers(0, 256, (size, size, 4), dtype=np.uint8))


def smooth_png(path: Path, size: int = 128) -> Path:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    rgba = np.empty((size, size, 4), np.uint8)
    rgba[..., 0] = 40 + 150 * x
    rgba[..., 1] = 60 + 120 * y
    rgba[..., 2] = 128 + 60 * np.sin(3 * x + 2 * y)
    rgba[..., 3] = 255
    return write_png(path, rgba)


# ------------------------------------------------------------------------------------ byte-identical to one by one


def test_batch_equals_one_by_one_on_every_shared_file(device: Any, vixen_assets_dir: Path) -> None:
    """One ``load_textures`` call over every shared file, then ``load_texture`` file by file after the cache was
    emptied: same paths taken, formats, extents, and byte-identical images."""
    files = shared_files(vixen_assets_dir)
    assert len(files) >= 30 and any(p.suffix == ".jpg" for p in files) and any(p.suffix == ".png" for p in files)
    cacher = texture_cacher(device)
    seen: list[tuple[str, int]] = []
    prestaged = device.uploader.stats.prestaged_bytes
    batch = load_textures(files, device, workers=4, progress=lambda phase, done, total: seen.append((phase, done)))
    assert len(batch) == len(files) and seen[-1] == ("textures", len(files)) and len(seen) == len(files)
    # the KTX2 levels went straight from the inflater / decoder into staging (no payload array in between)
    assert device.uploader.stats.prestaged_bytes - prestaged > 0
    got = {}
    for path, tex in zip(files, batch):
        got[path] = (tex.path_taken, tex.vk_format, tex.width, tex.height, tex.depth, tex.levels, tex.layers,
                     tex.faces, read_all(device, tex))
        tex.release()
    cacher.evict()
    assert len(cacher) == 0
    prestaged = device.uploader.stats.prestaged_bytes
    for path in files:
        with load_texture(path, device) as tex:
            one = (tex.path_taken, tex.vk_format, tex.width, tex.height, tex.depth, tex.levels, tex.layers,
                   tex.faces, read_all(device, tex))
        assert one[:8] == got[path][:8], path.name
        assert one[8] == got[path][8], f"{path.name}: images differ"
    assert device.uploader.stats.prestaged_bytes == prestaged  # load_texture: the payload path


def test_same_file_twice_is_one_texture_held_twice(device: Any, tmp_path: Path) -> None:
    a = noise_png(tmp_path / "a.png", 1)
    b = noise_png(tmp_path / "b.png", 2)
    t1, t2, t3 = load_textures([a, b, a], device, workers=2)
    assert t1 is t3 and t1 is not t2 and t1.held == 2 and t2.held == 1
    for t in (t1, t2, t3):
        t.release()
    assert texture_cacher(device).refcount(t1.key) == 0


def test_staged_files_handed_out_in_groups_hold_one_reference_each(device: Any, vixen_assets_dir: Path,
                                                                    tmp_path: Path) -> None:
    """KTX2 files a worker staged are built and handed out together (``hand_out_many``); the same file twice in
    one group is one texture held twice, and releasing every hand-out leaves no reference."""
    ktx = vixen_assets_dir / "ktx2"
    a, b = ktx / "output_3D_zstd.ktx2", ktx / "magnum_3d-compressed-bc7.ktx2"
    cacher = texture_cacher(device)
    texs = load_textures([a, b, a, b, a], device, workers=2)
    assert texs[0] is texs[2] is texs[4] and texs[1] is texs[3] and texs[0] is not texs[1]
    assert texs[0].held == 3 and texs[1].held == 2
    with load_texture(a, device) as one:
        assert one is texs[0] and read_all(device, one) == read_all(device, texs[2])
    for t in texs:
        t.release()
    assert cacher.refcount(texs[0].key) == 0 and cacher.refcount(texs[1].key) == 0
    with pytest.raises(NotHeldError):  # every hand-out was given back: one more release is an error
        texs[0].release()


def test_small_batch_is_suballocated_and_uploaded_in_one_submission(device: Any, tmp_path: Path) -> None:
    """64 small textures: their images share memory blocks (a handful of vkAllocateMemory calls, not 64) and every
    copy goes up in one upload batch."""
    paths = [noise_png(tmp_path / f"n{i}.png", i, 32) for i in range(64)]
    before = device.context.tracker.counts().allocate_memory
    flushes = device.uploader.stats.flushes
    texs = load_textures(paths, device)
    assert device.context.tracker.counts().allocate_memory - before <= 2
    assert device.uploader.stats.flushes - flushes == 1
    offsets = {(id(t.image.allocation.block), t.image.allocation.offset) for t in texs}
    assert len(offsets) == 64  # distinct ranges of shared blocks
    for i in (0, 31, 63):
        with PILImage.open(paths[i]) as im:
            np.testing.assert_array_equal(device.read_image(texs[i]), np.asarray(im.convert("RGBA")))
    for t in texs:
        t.release()


# ------------------------------------------------------------------------------------------------ failures


def truncated_ktx2(src: Path, dst: Path) -> Path:
    """A copy of a Zstandard KTX2 whose level 0 frame is cut in half (the index still claims the full length)."""
    data = bytearray(src.read_bytes())
    ktx = read_ktx2(src)
    lv = ktx.levels[0]
    cut = lv.byte_length // 2
    data[lv.byte_offset + cut: lv.byte_offset + lv.byte_length] = bytes(lv.byte_length - cut)
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_failing_file_raises_naming_it_and_leaves_nothing(device: Any, vixen_assets_dir: Path, tmp_path: Path,
                                                          where: str) -> None:
    good = [noise_png(tmp_path / f"g{i}.png", 10 + i, 64) for i in range(6)]
    good.append(vixen_assets_dir / "ktx2" / "output_3D_zstd.ktx2")
    bad = truncated_ktx2(vixen_assets_dir / "ktx2" / "bevy_tony_mc_mapface.ktx2", tmp_path / "bad_frame.ktx2")
    batch = list(good)
    batch.insert({"first": 0, "middle": 3, "last": len(batch)}[where], bad)
    cacher = texture_cacher(device)
    before, entries = gpu_state(device), len(cacher)
    with pytest.raises(FormatError) as err:
        load_textures(batch, device, workers=3)
    assert "bad_frame.ktx2" in str(err.value) and err.value.field == "levels[0].data"
    device.wait_idle()
    device.context.lifetime.collect()
    assert gpu_state(device) == before and len(cacher) == entries
    device.uploader.collect()
    pool = device.uploader.pool.stats_dict()
    assert pool["free_buffers"] == pool["buffers"]  # every staging buffer a worker wrote into came back
    # the device is still usable and the good files load
    texs = load_textures(good, device)
    assert [t.path for t in texs] == [str(p) for p in good]
    for t in texs:
        t.release()


def test_missing_and_non_image_files_in_a_batch(device: Any, tmp_path: Path) -> None:
    ok = noise_png(tmp_path / "ok.png", 3)
    junk = tmp_path / "junk.png"
    junk.write_bytes(zlib.compress(b"not a png"))
    before = gpu_state(device)
    for bad, words in ((tmp_path / "missing.png", "not found"), (junk, "cannot decode")):
        with pytest.raises(FormatError) as err:
            load_textures([ok, bad, ok], device)
        assert bad.name in str(err.value) and words in str(err.value)
        device.wait_idle()
        device.context.lifetime.collect()
        assert gpu_state(device) == before
    with pytest.raises(ConfigError):
        load_textures([ok], device, compress="bc9")
    with pytest.raises(ConfigError):
        load_textures([ok, ok], device, srgb=[True])


def test_basis_without_transcoder_fails_the_batch(device: Any, vixen_assets_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from vixen_assets.formats import ktx2 as k2

    monkeypatch.setattr(k2, "_alktx2", None)
    before = gpu_state(device)
    with pytest.raises(UnsupportedFormatError) as err:
        load_textures([noise_png(tmp_path / "a.png", 4), vixen_assets_dir / "ktx2" / "ktx_document_basis.ktx2"],
                      device)
    assert "ktx_document_basis.ktx2" in str(err.value) and "BasisLZ" in str(err.value)
    device.wait_idle()
    device.context.lifetime.collect()
    assert gpu_state(device) == before


# ------------------------------------------------------------------------------------------- compress="auto"


def readback_psnr(device: Any, tex: Any, src: np.ndarray, kind: str) -> float:
    """Decode the read-back blocks independently of the loader and measure them against the source pixels."""
    h, w = src.shape[:2]
    dec = decode_blocks(device.read_image(tex).tobytes(), kind, w, h)
    return psnr(dec[..., :2], src[..., :2]) if kind == "bc5" else psnr(dec, src)


def source_pixels(path: Path) -> np.ndarray:
    with PILImage.open(path) as im:
        return np.asarray(im.convert("RGBA"))


def test_auto_picks_bc7_where_bc1_misses_and_bc1_where_it_meets(device: Any, vixen_assets_dir: Path,
                                                                 tmp_path: Path) -> None:
    usd = vixen_assets_dir / "usd"
    paths = [usd / rel for rel in PALETTE_PNGS] + [usd / BC1_OK_PNG, smooth_png(tmp_path / "smooth.png")]
    flags = list(PALETTE_PNGS.values()) + [True, True]
    texs = load_textures(paths, device, compress="auto", srgb=flags)
    import etcpak

    for path, tex in zip(paths, texs):
        src = source_pixels(path)
        h, w = src.shape[:2]
        # BC1 measured here, independently of the loader (etcpak + texture2ddecoder)
        bc1 = psnr(np.frombuffer(texture2ddecoder.decode_bc1(etcpak.compress_bc1(src.tobytes(), w, h), w, h),
                                 np.uint8).reshape(h, w, 4)[..., [2, 1, 0, 3]], src)
        ex = tex.extra
        want = "bc1" if bc1 >= 35.0 else "bc7"
        assert ex["compress_choice"] == want, (path.name, bc1, ex)
        assert tex.vk_format == {"bc1": "BC1_RGBA", "bc7": "BC7"}[want] + ("_SRGB_BLOCK" if flags[paths.index(path)]
                                                                           else "_UNORM_BLOCK")
        assert abs(ex["psnr_tried"]["bc1"] - bc1) < 1e-9
        assert ex["psnr_db"] >= 35.0
        assert readback_psnr(device, tex, src, want) == pytest.approx(ex["psnr_db"], abs=1e-9)
        assert ex["memory_saved"] == (0.875 if want == "bc1" else 0.75)
    chosen = [t.extra["compress_choice"] for t in texs]
    assert chosen[:3] == ["bc7"] * 3 and chosen[3:] == ["bc1", "bc1"]  # both cases are exercised
    for t in texs:
        t.release()


def test_auto_falls_back_to_rgba8_when_nothing_meets_the_bar(device: Any, tmp_path: Path) -> None:
    path = noise_png(tmp_path / "noise.png", 5, 64)  # white noise: no block format reaches 60 dB
    with load_texture(path, device, compress="auto", min_psnr=60.0) as tex:
        assert tex.extra["compress_choice"] == "none" and tex.vk_format == "R8G8B8A8_SRGB"
        assert tex.path_taken == "native" and set(tex.extra["psnr_tried"]) == {"bc1", "bc7"}
        assert max(tex.extra["psnr_tried"].values()) < 60.0
        np.testing.assert_array_equal(device.read_image(tex), source_pixels(path))


def test_explicit_bc1_below_the_bar_warns(device: Any, vixen_assets_dir: Path) -> None:
    path = vixen_assets_dir / "usd" / "openusd/testUsdImagingGLPreviewSurface/texSRGB.png"
    with pytest.warns(CompressionQualityWarning, match=r"texSRGB.png: BC1 reaches 2\d\.\d\d dB"):
        tex = load_texture(path, device, compress="bc1")
    with tex:
        assert tex.vk_format == "BC1_RGBA_SRGB_BLOCK" and tex.extra["psnr_db"] < 35.0
        assert readback_psnr(device, tex, source_pixels(path), "bc1") == pytest.approx(tex.extra["psnr_db"],
                                                                                      abs=1e-9)


def test_normal_maps_never_go_to_bc1(device: Any, vixen_assets_dir: Path) -> None:
    path = vixen_assets_dir / "usd" / "openusd/testUsdImagingGLPreviewSurface/normalMap.png"
    src = source_pixels(path)
    with pytest.warns(CompressionQualityWarning, match="never compressed to BC1"):
        asked_bc1 = load_texture(path, device, compress="bc1", srgb=False, normal_map=True)
    (auto,) = load_textures([path], device, compress="auto", srgb=False, normal_maps=[path])
    for tex in (asked_bc1, auto):
        assert tex.extra["compress_choice"] in ("bc5", "bc7") and "BC1" not in tex.vk_format
        kind = tex.extra["compress_choice"]
        assert tex.vk_format == ("BC5_UNORM_BLOCK" if kind == "bc5" else "BC7_UNORM_BLOCK")
        assert readback_psnr(device, tex, src, kind) == pytest.approx(tex.extra["psnr_db"], abs=1e-9)
        tex.release()
    assert auto.extra["compress_choice"] == "bc5"  # lavapipe samples BC5


def test_batch_images_never_share_a_granularity_page_with_buffers(tmp_path: Path) -> None:
    """With a coarse ``bufferImageGranularity`` (forced to 4096), textures loaded in a batch between buffers in the
    same memory blocks never share a 4096-byte page with a buffer (images are optimal, buffers linear)."""
    from vixen_assets.testing import finish_test_device, open_test_device

    dev = open_test_device(buffer_image_granularity=4096)
    try:
        paths = [noise_png(tmp_path / f"p{i}.png", 40 + i, 20) for i in range(12)]
        bufs = [dev.create_buffer((1 << 20) + 300 + 64 * i, "storage", name=f"b{i}") for i in range(6)]
        texs = load_textures(paths[:6], dev)
        bufs += [dev.create_buffer((1 << 20) + 500, "storage", name=f"c{i}") for i in range(6)]
        texs += load_textures(paths[6:], dev)
        pages: dict[tuple[int, int], set[str]] = {}
        for kind, allocs in (("image", [t.image.allocation for t in texs]), ("buffer", [b.allocation for b in bufs])):
            for a in allocs:
                for page in range(a.offset // 4096, (a.offset + a.size - 1) // 4096 + 1):
                    pages.setdefault((id(a.block), page), set()).add(kind)
        assert all(len(kinds) == 1 for kinds in pages.values()), "an image and a buffer share a granularity page"
        per_block: dict[int, set[str]] = {}
        for (blk, _page), kinds in pages.items():
            per_block.setdefault(blk, set()).update(kinds)
        assert any(kinds == {"image", "buffer"} for kinds in per_block.values())  # they do share blocks
        assert len({id(t.image.allocation.block) for t in texs}) <= 2  # suballocated, not a block per image
        for t, p in zip(texs, paths):
            np.testing.assert_array_equal(dev.read_image(t), source_pixels(p))
            t.release()
        for b in bufs:
            b.destroy()
    finally:
        finish_test_device(dev)


def test_cli_texture_load(vixen_assets_dir: Path) -> None:
    """``vixen-assets texture load`` loads several files in one batch and reports each (compress=auto)."""
    import json
    import os
    import subprocess
    import sys

    usd = vixen_assets_dir / "usd"
    files = [str(usd / BC1_OK_PNG), str(usd / "openusd/testUsdImagingGLPreviewSurface/texSRGB.png"),
             str(vixen_assets_dir / "ktx2" / "wgpu_skybox_bc7.ktx2")]
    env = dict(os.environ, VIXEN_VALIDATION="1")  # validation messages and leaks are logged to stderr
    proc = subprocess.run([sys.executable, "-m", "vixen_assets.cli.main", "texture", "load", *files, "--compress",
                           "auto", "--json"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not any(w in proc.stderr for w in ("[ERROR]", "[WARNING]", "leaked")), proc.stderr
    out = json.loads(proc.stdout)
    assert [r["file"] for r in out["textures"]] == files
    assert [r["compress"] for r in out["textures"]] == ["bc1", "bc7", None]
    assert out["textures"][2]["faces"] == 6 and out["gpu_bytes"] > 0 and out["seconds"] > 0
    proc = subprocess.run([sys.executable, "-m", "vixen_assets.cli.main", "texture", "load", files[0], "missing.png"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and "missing.png: file not found" in proc.stderr  # main: missing input -> 2


def test_batch_over_a_separate_transfer_queue(vixen_assets_dir: Path, tmp_path: Path) -> None:
    """With a dedicated transfer queue, a batch's images are released by the transfer family and acquired by the
    main family in one barrier per transition for the whole batch (validation on: any wrong layout or ownership
    shows), and read back exactly."""
    from vixen_assets.testing import finish_test_device, open_test_device

    dev = open_test_device(separate_transfer_queue=True)
    try:
        assert dev.uploader.ownership_transfer
        paths = [noise_png(tmp_path / f"q{i}.png", 70 + i, 48) for i in range(5)]
        ktx = vixen_assets_dir / "ktx2" / "wgpu_skybox_bc7.ktx2"
        texs = load_textures([*paths, ktx], dev, workers=2)
        for t, p in zip(texs, paths):
            np.testing.assert_array_equal(dev.read_image(t), source_pixels(p))
        k = read_ktx2(ktx)
        assert dev.read_image(texs[-1], 0, 0, 3).tobytes() == bytes(k.image_data(0, 0, 3))
        for t in texs:
            t.release()
    finally:
        finish_test_device(dev)


# ----------------------------------------------------------------------------- decoded levels larger than a chunk


def etc2_ktx2(path: Path, width: int, heights: list[int], seed: int) -> Path:
    """An ETC2 RGB8 sRGB + Zstandard KTX2 of ``len(heights)`` levels (``width >> i`` x ``heights[i]``)."""
    import struct

    import etcpak
    import zstandard

    from vixen_assets.formats.ktx2 import IDENTIFIER

    rng = np.random.default_rng(seed)
    levels = []
    for i, h in enumerate(heights):
        w, hp = width >> i, -(-h // 4) * 4  # whole blocks: the partial last block row is encoded padded
        levels.append(bytes(etcpak.compress_etc2_rgb(rng.integers(0, 256, (hp, w, 4), dtype=np.uint8).tobytes(),
                                                     w, hp)))
    word2 = 161 | 1 << 8 | 2 << 16  # ETC2 model, BT709, sRGB
    dfd_body = struct.pack("<6I", 0, 2 | 40 << 16, word2, 3 | 3 << 8, 8, 0) + struct.pack("<4I", 63 << 16 | 2 << 24,
                                                                                            0, 0, 0xFFFFFFFF)
    dfd = struct.pack("<I", 4 + len(dfd_body)) + dfd_body
    frames = [zstandard.ZstdCompressor(level=3).compress(lv) for lv in levels]
    pos = 80 + 24 * len(levels) + len(dfd)
    index, body = [b""] * len(levels), b""
    for i in reversed(range(len(levels))):
        index[i] = struct.pack("<3Q", pos, len(frames[i]), len(levels[i]))
        body += frames[i]
        pos += len(frames[i])
    header = struct.pack("<12s9I4I2Q", IDENTIFIER, 148, 1, width, heights[0], 0, 0, 1, len(levels), 2,
                         80 + 24 * len(levels), len(dfd), 0, 0, 0, 0)
    path.write_bytes(header + b"".join(index) + dfd + body)
    return path


def test_decoded_level_larger_than_a_chunk_goes_to_staging_in_bands(device: Any, tmp_path: Path) -> None:
    """ETC2 (not sampled on lavapipe) decoded to RGBA8: a 2048 x 1026 level is 8.4 MB, more than a 4 MiB staging
    chunk; the workers decode it band by band straight into staging (the last band 2 rows of a partial block
    row), and the images equal ``load_texture``'s (decoded into one payload) byte for byte."""
    paths = [etc2_ktx2(tmp_path / f"e{i}.ktx2", 2048, [1026, 513], seed=i) for i in range(2)]
    if texture_cacher(device).supported(148, width=2048, height=1026, levels=2):
        pytest.skip("the device samples ETC2: nothing is decoded")
    assert 2048 * 1026 * 4 > device.uploader.pool.max_chunk
    prestaged = device.uploader.stats.prestaged_bytes
    texs = load_textures(paths, device, workers=2)
    assert all(t.path_taken == "decoded" for t in texs)
    staged = device.uploader.stats.prestaged_bytes - prestaged
    assert staged == 2 * (2048 * 1026 + 1024 * 513) * 4  # every level of both files went straight into staging
    batch = [read_all(device, t) for t in texs]
    for t in texs:
        t.release()
    texture_cacher(device).evict()
    for p, want in zip(paths, batch):
        with load_texture(p, device) as t:
            assert read_all(device, t) == want
