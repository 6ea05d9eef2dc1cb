"""Textures on a real device: every shared KTX2 file through ``load_texture`` and back with ``Device.read_image``.

Parser-level checks (field by field, fuzzing) live in ``test_ktx2.py``; this file checks what reaches the GPU:

- every file of ``../shared/assets/ktx2`` loads by the path the device allows (lavapipe: BC and the sampled
  uncompressed formats native, ASTC and RGB8 decoded, Basis transcoded with ``alktx2`` or refused naming the scheme
  without it), and every level, layer, face (and every z slice of 3D levels) reads back equal to the file's data
  (native) or to the CPU decode (decoded/transcoded);
- images larger than a staging chunk are split and still read back exactly;
- PNG/JPEG through Pillow, and compressed to BC7/BC1 at load: memory saved, and a PSNR the read-back blocks confirm;
- malformed files fail with a ``FormatError`` naming the field before any GPU memory is allocated;
- content deduplication, ``UsdPreviewSurface`` textures of ``load_stage`` and the ``texture info`` CLI.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import texture2ddecoder
import zstandard
from PIL import Image as PILImage

from vixen_assets import load_stage, load_texture
from vixen_assets.cachers.texture import psnr, texture_cacher
from vixen_assets.errors import FormatError, UnsupportedFormatError
from vixen_assets.formats import ktx2 as k2
from vixen_assets.formats.ktx2 import decode_to_rgba8, has_basis_transcoder, read_ktx2
from vixen_assets.formats.vkformat import format_info, level_size
from vixen_assets.memory.images import IMAGE_1D, IMAGE_2D, IMAGE_3D, format_supported
from vixen_assets.testing import assets_dir
from vixen_assets.transfer.image_regions import level_copies

REPO = Path(__file__).resolve().parent.parent

# What lavapipe (BC yes, ETC2/ASTC no, no 24-bit RGB sampling) makes of each shared file. On another device the
# expected path is derived from its format support instead; on lavapipe both must agree.
LAVAPIPE_PATHS = {
    "arraytex_7_mipmap_reference_u.ktx2": "native",
    "bevy_SMAAAreaLUT.ktx2": "native",
    "bevy_tony_mc_mapface.ktx2": "native",
    "color_grid_ZLIB_9.ktx2": "native",
    "cyan_rgb_reference_uastc.ktx2": "transcoded",
    "ktx_document_basis.ktx2": "transcoded",
    "ktx_document_uastc_rdo4_zstd5.ktx2": "transcoded",
    "magnum_3d-compressed-bc7.ktx2": "native",
    "magnum_rgba-cubemap.ktx2": "transcoded",
    "output_3D_zstd.ktx2": "native",
    "output_R8G8B8A8_SRGB_2D_BLZE_to_bc1.ktx2": "native",
    "output_R8G8B8A8_UNORM_2D_UASTC_to_bc4.ktx2": "native",
    "output_R8G8B8A8_UNORM_2D_UASTC_to_bc5.ktx2": "native",
    "output_UASTC_ZSTD_bc7.ktx2": "native",
    "sponza_thorn_diff.ktx2": "transcoded",
    "texturearray_bc3_unorm.ktx2": "native",
    "valid_ASTC_6x6_SRGB_BLOCK_2D_MIP.ktx2": "decoded",
    "valid_B10G11R11_UFLOAT_PACK32_2D_ZSTD_9.ktx2": "native",
    "valid_R16G16B16A16_SFLOAT_CUBE_MIP.ktx2": "native",
    "valid_R8G8B8A8_SRGB_CUBE_ARRAY_MIP.ktx2": "native",
    "valid_R8G8B8_SRGB_1D_MIP.ktx2": "decoded",
    "valid_UASTC_HDR_4x4_2D_MIP.ktx2": "decoded",
    "wgpu_skybox_bc7.ktx2": "native",
}
BASIS_SCHEMES = {  # what an UnsupportedFormatError must name when no transcoder is installed
    "cyan_rgb_reference_uastc.ktx2": "UASTC",
    "ktx_document_basis.ktx2": "BasisLZ",
    "ktx_document_uastc_rdo4_zstd5.ktx2": "UASTC",
    "magnum_rgba-cubemap.ktx2": "BasisLZ",
    "sponza_thorn_diff.ktx2": "UASTC",
}
THREE_D = {"output_3D_zstd.ktx2": (128, 128, 6), "magnum_3d-compressed-bc7.ktx2": (5, 5, 3),
           "bevy_tony_mc_mapface.ktx2": (48, 48, 48)}


def _shared_names() -> list[str]:
    root = assets_dir()
    found = sorted(p.name for p in (root / "ktx2").glob("*.ktx2")) if root and (root / "ktx2").is_dir() else []
    return found or sorted(LAVAPIPE_PATHS)


KTX2_NAMES = _shared_names()


@pytest.fixture
def ktx_dir(vixen_assets_dir: Path) -> Path:
    """``../shared/assets/ktx2``."""
    return vixen_assets_dir / "ktx2"


@pytest.fixture
def usd_dir(vixen_assets_dir: Path) -> Path:
    """``../shared/assets/usd``."""
    return vixen_assets_dir / "usd"


# ------------------------------------------------------------------------------------------------------ helpers


def gpu_state(device: Any) -> tuple[Any, ...]:
    """What a load that allocates nothing must leave unchanged: memory calls, suballocations, budget, objects."""
    c = device.context.tracker.counts()
    return (c.allocate_memory, c.allocated_bytes, c.suballocations, device.budget.used, len(device.context.registry),
            sorted((k, v["count"]) for k, v in device.context.registry.counts().items()))


def bgra_to_rgba(raw: bytes, w: int, h: int) -> np.ndarray:
    """texture2ddecoder's BGRA output as an (h, w, 4) RGBA array."""
    return np.frombuffer(raw, np.uint8).reshape(h, w, 4)[..., [2, 1, 0, 3]]


def image_type_of(ktx: k2.Ktx2File) -> int:
    return IMAGE_3D if ktx.is_3d else IMAGE_1D if ktx.pixel_height == 0 else IMAGE_2D


def derived_path(device: Any, ktx: k2.Ktx2File) -> str:
    """The path the device's format support implies: transcoded (Basis), native (sampled) or decoded."""
    if ktx.format is None:
        return "transcoded"
    w, h, d = ktx.pixel_width, max(1, ktx.pixel_height), max(1, ktx.pixel_depth)
    ok = format_supported(device.context, ktx.vk_format, image_type=image_type_of(ktx), cube=ktx.is_cube, width=w, height=h,
                          depth=d, levels=len(ktx.levels), layers=max(1, ktx.layer_count) * ktx.face_count)
    return "native" if ok else "decoded"


def subresources(ktx: k2.Ktx2File) -> list[tuple[int, int, int]]:
    return [(lv.index, layer, face) for lv in ktx.levels for layer in range(max(1, ktx.layer_count))
            for face in range(ktx.face_count)]


def independent_decode(ktx: k2.Ktx2File, level: int, layer: int, face: int) -> np.ndarray | None:
    """A decode that does not go through ``decode_to_rgba8`` where one exists (ASTC LDR, plain RGB8)."""
    lv = ktx.levels[level]
    info = ktx.format
    if info is None:
        return None
    data = bytes(ktx.image_data(level, layer, face))
    if info.family == "astc" and not info.is_hdr:
        return bgra_to_rgba(texture2ddecoder.decode_astc(data + bytes(16), lv.width, lv.height, info.block_width,
                                                         info.block_height), lv.width, lv.height)
    if info.name in ("R8G8B8_SRGB", "R8G8B8_UNORM"):
        rgb = np.frombuffer(data, np.uint8).reshape(lv.height, lv.width, 3)
        return np.concatenate([rgb, np.full((lv.height, lv.width, 1), 255, np.uint8)], axis=2)
    return None


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth, natural-looking RGBA8 image: gradients and low-frequency waves, mild noise, opaque."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = x / max(1, w - 1), y / max(1, h - 1)
    r = 0.5 + 0.35 * np.sin(2 * np.pi * (u * 1.3 + 0.2)) * np.cos(2 * np.pi * v * 0.7)
    g = 0.25 + 0.6 * u * v + 0.1 * np.sin(2 * np.pi * (u + v))
    b = 0.8 - 0.5 * v + 0.1 * np.cos(2 * np.pi * u * 1.7)
    img = np.stack([r, g, b], -1) * 255 + rng.normal(0, 1.0, (h, w, 3))
    rgba = np.empty((h, w, 4), np.uint8)
    rgba[..., :3] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    rgba[..., 3] = 255
    return rgba


def write_png(path: Path, pixels: np.ndarray) -> Path:
    PILImage.fromarray(pixels, "RGBA").save(path)
    return path


def dfd_rgba8(srgb: bool) -> bytes:
    """A basic DFD for R8G8B8A8 (four 8-bit samples, RGBSDA model)."""
    samples = b"".join(struct.pack("<IIII", (8 * i) | (7 << 16) | (ch << 24), 0, 0, 255)
                       for i, ch in enumerate((0, 1, 2, 15)))
    block = struct.pack("<IIIIII", 0, 2 | (24 + 16 * 4) << 16, 1 | 1 << 8 | (2 if srgb else 1) << 16, 0, 4, 0)
    body = block + samples
    return struct.pack("<I", 4 + len(body)) + body


def ktx2_rgba8(levels: list[bytes], *, width: int, height: int, depth: int = 0, layers: int = 0, srgb: bool = False,
               zstd: bool = False) -> bytes:
    """A KTX2 file of R8G8B8A8 levels (level 0 first in ``levels``), stored smallest level first."""
    n = len(levels)
    dfd = dfd_rgba8(srgb)
    dfd_off = 80 + 24 * n
    payloads = [zstandard.ZstdCompressor(level=3).compress(lv) if zstd else lv for lv in levels]
    pos = dfd_off + len(dfd)
    index = [None] * n
    body = b""
    for i in reversed(range(n)):
        pad = (-pos) % 16
        body += bytes(pad)
        pos += pad
        index[i] = struct.pack("<3Q", pos, len(payloads[i]), len(levels[i]))
        body += payloads[i]
        pos += len(payloads[i])
    header = struct.pack("<12s9I4I2Q", k2.IDENTIFIER, 43 if srgb else 37, 1, width, height, depth, layers, 1, n,
                         2 if zstd else 0, dfd_off, len(dfd), 0, 0, 0, 0)
    return header + b"".join(index) + dfd + body  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ every shared file


def test_the_expectation_table_covers_every_shared_file(ktx_dir: Path) -> None:
    """A new file in the shared folder must be given its expected path here."""
    assert sorted(p.name for p in ktx_dir.glob("*.ktx2")) == sorted(LAVAPIPE_PATHS)


@pytest.mark.parametrize("name", KTX2_NAMES)
def test_shared_file_loads_and_reads_back(device: Any, ktx_dir: Path, name: str,
                                          record_property: Any) -> None:
    """Each file loads by the expected path; every level/layer/face reads back equal to the file or its decode."""
    path = ktx_dir / name
    ktx = read_ktx2(path)
    expected = derived_path(device, ktx)
    if "llvmpipe" in device.name:
        assert LAVAPIPE_PATHS[name] == expected, f"{name}: lavapipe's format support changed"
    if ktx.format is None and not has_basis_transcoder():
        before = gpu_state(device)
        with pytest.raises(UnsupportedFormatError) as err:
            load_texture(path, device)
        assert BASIS_SCHEMES[name] in str(err.value)
        assert gpu_state(device) == before
        record_property("path_taken", "refused (no alktx2)")
        return

    tex = load_texture(path, device)
    record_property("path_taken", tex.path_taken)
    assert tex.path_taken == expected
    assert (tex.width, tex.height, tex.depth) == (ktx.pixel_width, max(1, ktx.pixel_height), max(1, ktx.pixel_depth))
    assert (tex.levels, tex.layers, tex.faces) == (len(ktx.levels), max(1, ktx.layer_count), ktx.face_count)
    assert tex.image.levels == tex.levels and tex.image.layers == tex.layers * tex.faces
    if expected == "native":
        assert tex.vk_format == ktx.format.name and tex.source_format == ktx.format.name
    else:
        assert tex.vk_format == ("R8G8B8A8_SRGB" if ktx.is_srgb else "R8G8B8A8_UNORM")
    info = format_info(tex.image.vk_format)
    payload = sum(level_size(info, *(max(1, x >> lv.index) for x in (tex.width, tex.height, tex.depth)))
                  for lv in ktx.levels) * tex.layers * tex.faces
    assert tex.nbytes >= payload

    clamp = bool(tex.extra.get("hdr_clamped"))
    assert clamp == (name == "valid_UASTC_HDR_4x4_2D_MIP.ktx2")
    for level, layer, face in subresources(ktx):
        got = device.read_image(tex, level, layer, face)
        lv = ktx.levels[level]
        where = f"{name} level {level} layer {layer} face {face}"
        if expected == "native":
            want = bytes(ktx.image_data(level, layer, face))
            assert len(got.tobytes()) == len(want), where
            assert got.tobytes() == want, where
            if not info.is_compressed:
                shape = (lv.depth, lv.height, lv.width) if ktx.is_3d else (lv.height, lv.width)
                assert got.shape == shape + (info.bytes_per_block,), where
            continue
        want_px = decode_to_rgba8(ktx, level, layer, face, clamp_hdr=clamp)
        assert got.shape == want_px.shape, where
        np.testing.assert_array_equal(got, want_px, err_msg=where)
        other = independent_decode(ktx, level, layer, face)
        if other is not None:
            np.testing.assert_array_equal(got, other, err_msg=where)


@pytest.mark.parametrize("name", sorted(THREE_D))
def test_3d_textures_read_back_per_level_and_slice(device: Any, ktx_dir: Path, name: str) -> None:
    """3D textures: one 3D image of the file's depth; the level reads back whole, each z slice where it should be."""
    ktx = read_ktx2(ktx_dir / name)
    tex = load_texture(ktx_dir / name, device)
    assert tex.image.image_type == IMAGE_3D and (tex.width, tex.height, tex.depth) == THREE_D[name]
    info = format_info(tex.image.vk_format)
    for lv in ktx.levels:
        got = device.read_image(tex, lv.index).tobytes()
        data = bytes(ktx.image_data(lv.index))
        assert got == data
        slice_bytes = level_size(info, lv.width, lv.height, 1)
        slices = -(-lv.depth // info.block_depth)
        assert len(got) == slice_bytes * slices
        for z in range(slices):  # slice z of the read-back is slice z of the file
            assert got[z * slice_bytes:(z + 1) * slice_bytes] == data[z * slice_bytes:(z + 1) * slice_bytes]


def test_cube_and_cube_array_faces_are_distinct_layers(device: Any, ktx_dir: Path) -> None:
    """Faces and cube layers land in their own array layers (no face read back where another was written)."""
    for name, cubes in (("wgpu_skybox_bc7.ktx2", 1), ("valid_R8G8B8A8_SRGB_CUBE_ARRAY_MIP.ktx2", 2),
                        ("valid_R16G16B16A16_SFLOAT_CUBE_MIP.ktx2", 1)):
        ktx = read_ktx2(ktx_dir / name)
        tex = load_texture(ktx_dir / name, device)
        assert tex.faces == 6 and tex.layers == cubes and tex.image.layers == 6 * cubes
        faces = {(layer, face): device.read_image(tex, 0, layer, face).tobytes()
                 for layer in range(cubes) for face in range(6)}
        for (layer, face), got in faces.items():
            assert got == bytes(ktx.image_data(0, layer, face)), (name, layer, face)
        if name == "wgpu_skybox_bc7.ktx2":  # a real skybox: six different pictures
            assert len(set(faces.values())) == 6


@pytest.mark.skipif(not has_basis_transcoder(), reason="alktx2 (the 'basis' extra) is not installed")
@pytest.mark.parametrize("name", sorted(BASIS_SCHEMES))
def test_basis_files_refused_without_a_transcoder(device: Any, ktx_dir: Path, name: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With alktx2 hidden, Basis payloads raise UnsupportedFormatError naming the scheme, allocating nothing.

    (Without alktx2 installed, ``test_shared_file_loads_and_reads_back`` checks the same on the real environment.)
    """
    monkeypatch.setattr(k2, "_alktx2", None)
    assert not has_basis_transcoder()
    before = gpu_state(device)
    with pytest.raises(UnsupportedFormatError) as err:
        load_texture(ktx_dir / name, device)
    assert BASIS_SCHEMES[name] in str(err.value) and "alktx2" in str(err.value)
    assert gpu_state(device) == before
    assert len(texture_cacher(device)) == 0


# ------------------------------------------------------------------------------------ large images, staging


def test_large_png_is_split_across_staging_chunks(device: Any, tmp_path: Path) -> None:
    """A 2048x2048 RGBA8 image (16 MiB, four 4 MiB staging chunks) goes up in bands and reads back exactly."""
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (2048, 2048, 4), dtype=np.uint8)  # noise: any misplaced band shows
    path = write_png(tmp_path / "big.png", pixels)
    chunk = device.uploader.pool.max_chunk
    copies = level_copies(format_info(43), 2048, 2048, 1, level=0, base_layer=0, layer_count=1, buffer_offset=0,
                          max_bytes=chunk)
    assert pixels.nbytes > chunk and len(copies) >= pixels.nbytes // chunk
    before = device.uploader.stats.image_copies
    tex = load_texture(path, device)
    assert device.uploader.stats.image_copies - before == len(copies)
    assert tex.vk_format == "R8G8B8A8_SRGB" and tex.path_taken == "native"
    np.testing.assert_array_equal(device.read_image(tex), pixels)


def test_large_3d_and_array_levels_are_split_by_slices_and_layers(device: Any, tmp_path: Path) -> None:
    """A 3D level bigger than a chunk goes up in groups of z slices, an array level in single layers (zstd)."""
    rng = np.random.default_rng(3)
    chunk = device.uploader.pool.max_chunk
    vol = rng.integers(0, 256, (40, 128, 256, 4), dtype=np.uint8)  # 5 MiB, 128 KiB per slice
    mip = vol.reshape(20, 2, 64, 2, 128, 2, 4).mean(axis=(1, 3, 5)).astype(np.uint8)
    assert vol.nbytes > chunk
    p3 = tmp_path / "vol.ktx2"
    p3.write_bytes(ktx2_rgba8([vol.tobytes(), mip.tobytes()], width=256, height=128, depth=40, zstd=True))
    tex = load_texture(p3, device)
    assert tex.image.image_type == IMAGE_3D and tex.levels == 2
    np.testing.assert_array_equal(device.read_image(tex, 0), vol)
    np.testing.assert_array_equal(device.read_image(tex, 1), mip)

    layers = rng.integers(0, 256, (3, 1024, 512, 4), dtype=np.uint8)  # 2 MiB per layer, 6 MiB per level
    p2 = tmp_path / "array.ktx2"
    p2.write_bytes(ktx2_rgba8([layers.tobytes()], width=512, height=1024, layers=3, srgb=True))
    tex = load_texture(p2, device)
    assert tex.layers == 3 and tex.vk_format == "R8G8B8A8_SRGB"
    for i in range(3):
        np.testing.assert_array_equal(device.read_image(tex, 0, i), layers[i])


# ------------------------------------------------------------------------------------------------- PNG / JPEG


def test_png_loads_as_srgb_rgba8_pixel_exact(device: Any, tmp_path: Path) -> None:
    """A PNG with alpha and odd size: R8G8B8A8_SRGB (or UNORM for raw data), pixels identical."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    path = write_png(tmp_path / "odd.png", pixels)
    tex = load_texture(path, device)
    assert (tex.vk_format, tex.path_taken, tex.width, tex.height, tex.levels) == ("R8G8B8A8_SRGB", "native", 53, 37, 1)
    np.testing.assert_array_equal(device.read_image(tex), pixels)
    raw = load_texture(path, device, srgb=False)
    assert raw.vk_format == "R8G8B8A8_UNORM" and raw.image is not tex.image
    np.testing.assert_array_equal(device.read_image(raw), pixels)


def test_jpeg_and_grey_png_match_pillow(device: Any, tmp_path: Path) -> None:
    """JPEG and a single-channel PNG come out as Pillow's RGBA conversion of the same file."""
    src = smooth_image(48, 80, seed=2)
    jpg = tmp_path / "img.jpg"
    PILImage.fromarray(src[..., :3], "RGB").save(jpg, quality=90)
    grey = tmp_path / "grey.png"
    PILImage.fromarray(src[..., 1], "L").save(grey)
    for path in (jpg, grey):
        with PILImage.open(path) as im:
            want = np.asarray(im.convert("RGBA"))
        tex = load_texture(path, device)
        assert tex.vk_format == "R8G8B8A8_SRGB"
        np.testing.assert_array_equal(device.read_image(tex), want)


@pytest.mark.parametrize("kind, vk_name, saved", [("bc7", "BC7_SRGB_BLOCK", 0.75),
                                                  ("bc1", "BC1_RGBA_SRGB_BLOCK", 0.875)])
def test_compress_at_load_reports_memory_and_psnr(device: Any, tmp_path: Path, kind: str, vk_name: str,
                                                  saved: float) -> None:
    """compress="bc7"/"bc1": 75% / 87.5% less than RGBA8, PSNR > 35 dB, and the GPU blocks decode to that PSNR."""
    src = smooth_image(256, 256, seed=5)
    path = write_png(tmp_path / "smooth.png", src)
    tex = load_texture(path, device, compress=kind)
    assert (tex.vk_format, tex.path_taken, tex.source_format) == (vk_name, "transcoded", "RGBA8")
    ex = tex.extra
    assert ex["rgba8_bytes"] == src.nbytes and ex["compressed_bytes"] == src.nbytes * (1 - saved)
    assert ex["memory_saved"] == pytest.approx(saved)
    assert ex["psnr_db"] > 35, ex
    blocks = device.read_image(tex).tobytes()
    assert len(blocks) == ex["compressed_bytes"]
    decoder = texture2ddecoder.decode_bc7 if kind == "bc7" else texture2ddecoder.decode_bc1
    decoded = bgra_to_rgba(decoder(blocks, 256, 256), 256, 256)
    assert psnr(decoded, src) == pytest.approx(ex["psnr_db"], abs=1e-9)
    # the channels are where they belong: red stays red (a swapped R/B would cost ~20 dB here)
    assert abs(float(decoded[..., 0].mean()) - float(src[..., 0].mean())) < 2


def test_compress_odd_size_pads_blocks(device: Any, tmp_path: Path) -> None:
    """A size that is not a multiple of 4: whole blocks on the GPU, the claimed PSNR holds on the visible texels."""
    src = smooth_image(30, 45, seed=9)
    tex = load_texture(write_png(tmp_path / "odd.png", src), device, compress="bc7")
    blocks = device.read_image(tex).tobytes()
    assert len(blocks) == 12 * 8 * 16 == tex.extra["compressed_bytes"]
    decoded = bgra_to_rgba(texture2ddecoder.decode_bc7(blocks, 45, 30), 45, 30)
    assert psnr(decoded, src) == pytest.approx(tex.extra["psnr_db"], abs=1e-9) and tex.extra["psnr_db"] > 35


# ------------------------------------------------------------------------------------------- malformed files


def _patch(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def _level(i: int, part: int = 0) -> int:
    return 80 + 24 * i + 8 * part


def _dfd(raw: bytes) -> int:
    return struct.unpack_from("<I", raw, 48)[0]


def _cut_frame(raw: bytes) -> bytes:
    """Level 0's Zstandard frame cut in half (byteLength halved). Flipped bytes inside a frame are not always
    detectable: libktx writes frames without a checksum, so damaged literals inflate to wrong texels of the right
    size; a frame that ends early, a bad magic or a wrong declared size are always caught."""
    return _patch(raw, _level(0, 1), "<Q", struct.unpack_from("<Q", raw, _level(0, 1))[0] // 2)


# (file, mutation, the field the FormatError must name)
MALFORMED = {
    "truncated header": ("wgpu_skybox_bc7.ktx2", lambda r: r[:60], "header"),
    "truncated level index": ("wgpu_skybox_bc7.ktx2", lambda r: r[:100], "levelIndex"),
    "truncated level data": ("wgpu_skybox_bc7.ktx2", lambda r: r[:-100], "levels[0].byteLength"),
    "level offset past the end": ("wgpu_skybox_bc7.ktx2", lambda r: _patch(r, _level(3), "<Q", len(r) + 64),
                                  "levels[3].byteOffset"),
    "level offset 2**64-1": ("texturearray_bc3_unorm.ktx2", lambda r: _patch(r, _level(0), "<Q", 2**64 - 1),
                             "levels[0].byteOffset"),
    "level length 2**63": ("arraytex_7_mipmap_reference_u.ktx2", lambda r: _patch(r, _level(2, 1), "<Q", 2**63),
                           "levels[2].byteLength"),
    "overlapping levels": ("arraytex_7_mipmap_reference_u.ktx2",
                           lambda r: _patch(r, _level(1), "<Q", struct.unpack_from("<Q", r, _level(0))[0]),
                           "levels[1].byteOffset"),
    "level over the header": ("wgpu_skybox_bc7.ktx2", lambda r: _patch(r, _level(8), "<Q", 16),
                              "levels[8].byteOffset"),
    "absurd width": ("color_grid_ZLIB_9.ktx2", lambda r: _patch(r, 20, "<I", 2**32 - 1), "pixelWidth"),
    "absurd layer count": ("output_UASTC_ZSTD_bc7.ktx2", lambda r: _patch(r, 32, "<I", 2**31), "layerCount"),
    "absurd total (65536^2 RGBA8 x 4096 layers)": (
        "color_grid_ZLIB_9.ktx2", lambda r: _patch(r, 20, "<4I", 65536, 65536, 0, 4096),
        "pixelWidth*pixelHeight*pixelDepth*layerCount*faceCount"),
    "absurd 3D depth": ("bevy_tony_mc_mapface.ktx2", lambda r: _patch(r, 28, "<I", 1 << 20), "pixelDepth"),
    "bad DFD total size": ("wgpu_skybox_bc7.ktx2", lambda r: _patch(r, _dfd(r), "<I", 9999), "dfd.dfdTotalSize"),
    "bad DFD colour model": ("wgpu_skybox_bc7.ktx2", lambda r: _patch(r, _dfd(r) + 12, "<B", 128), "dfd.colorModel"),
    "bad DFD bytesPlane0": ("texturearray_bc3_unorm.ktx2", lambda r: _patch(r, _dfd(r) + 20, "<B", 32),
                            "dfd.bytesPlane0"),
    "bad DFD block size": ("valid_ASTC_6x6_SRGB_BLOCK_2D_MIP.ktx2", lambda r: _patch(r, _dfd(r) + 16, "<B", 3),
                           "dfd.texelBlockDimension"),
    "bad zstd magic": ("bevy_tony_mc_mapface.ktx2",
                       lambda r: _patch(r, struct.unpack_from("<Q", r, 80)[0], "<I", 0xDEADBEEF), "levels[0].data"),
    "bad zstd declared size": ("bevy_SMAAAreaLUT.ktx2", lambda r: _patch(r, _level(0, 2), "<Q", 1 << 40),
                               "levels[0].uncompressedByteLength"),
    "bad zstd frame cut short": ("bevy_tony_mc_mapface.ktx2", _cut_frame, "levels[0].data"),
    "bad zlib stream": ("color_grid_ZLIB_9.ktx2",
                        lambda r: _patch(r, struct.unpack_from("<Q", r, 80)[0], "<H", 0xFFFF), "levels[0].data"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_names_the_field_and_allocates_nothing(device: Any, ktx_dir: Path, tmp_path: Path,
                                                              case: str) -> None:
    """Mutated real files: FormatError naming the field; no vkAllocateMemory, no budget, no new object, no entry."""
    name, mutate, fld = MALFORMED[case]
    bad = tmp_path / f"bad-{name}"
    bad.write_bytes(mutate((ktx_dir / name).read_bytes()))
    texture_cacher(device)  # created up front so that only the load is measured
    before = gpu_state(device)
    with pytest.raises(FormatError) as err:
        load_texture(bad, device)
    exc = err.value
    assert exc.field is not None and exc.field.startswith(fld), (case, exc.field, str(exc))
    assert exc.field in str(exc) and str(bad) in str(exc)
    assert gpu_state(device) == before, case
    assert len(texture_cacher(device)) == 0
    # the device is still fine: the intact file loads afterwards
    load_texture(ktx_dir / name, device)


def test_missing_and_non_image_files(device: Any, tmp_path: Path) -> None:
    """A missing file and bytes Pillow cannot open are FormatErrors naming the file, allocating nothing."""
    texture_cacher(device)
    before = gpu_state(device)
    with pytest.raises(FormatError, match="not found"):
        load_texture(tmp_path / "nope.ktx2", device)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(FormatError) as err:
        load_texture(junk, device)
    assert str(junk) in str(err.value)
    assert gpu_state(device) == before


# ------------------------------------------------------------------------------------------------------ dedup


def test_same_content_loads_once(device: Any, ktx_dir: Path, tmp_path: Path) -> None:
    """Loading a file twice, or a copy of it, returns the same texture: one image, no new allocation."""
    a = load_texture(ktx_dir / "wgpu_skybox_bc7.ktx2", device)
    before = gpu_state(device)
    b = load_texture(ktx_dir / "wgpu_skybox_bc7.ktx2", device)
    copy = tmp_path / "copy.ktx2"
    shutil.copyfile(ktx_dir / "wgpu_skybox_bc7.ktx2", copy)
    c = load_texture(copy, device)
    assert a is b is c and a.image is c.image
    assert gpu_state(device) == before
    cacher = texture_cacher(device)
    assert len(cacher) == 1 and cacher.stats.hits == 2 and cacher.stats.misses == 1
    assert sum(1 for o in device.context.registry.live() if o is a.image) == 1
    # other options are another entry
    png = write_png(tmp_path / "p.png", smooth_image(16, 16))
    t1, t2, t3 = (load_texture(png, device, **kw) for kw in ({}, {"compress": "bc7"}, {"srgb": False}))
    assert len({id(t.image) for t in (t1, t2, t3)}) == 3 and len(cacher) == 4
    assert load_texture(png, device, compress="bc7") is t2


# -------------------------------------------------------------------------------------------------------- USD


def _pixels_of(data: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGBA"))


def test_usd_source_color_space(device: Any, usd_dir: Path) -> None:
    """texSRGB.png (sourceColorSpace sRGB) → R8G8B8A8_SRGB, texLinear.png (raw) → R8G8B8A8_UNORM, per instance."""
    folder = usd_dir / "openusd" / "testUsdImagingGLPreviewSurface"
    with load_stage(folder / "testPreviewSurfaceSourceColorSpace.usda", device) as scene:
        assert not scene.warnings
        by_name = {os.path.basename(t.path): t for t in scene.textures}
        assert sorted(by_name) == ["texLinear.png", "texSRGB.png"]
        assert by_name["texSRGB.png"].vk_format == "R8G8B8A8_SRGB"
        assert by_name["texLinear.png"].vk_format == "R8G8B8A8_UNORM"
        per_material = {i.material: [os.path.basename(t.path) for t in i.textures] for i in scene.instances
                        if i.material}
        assert per_material == {"/Scene/Looks/Material1": ["texLinear.png"],
                                "/Scene/Looks/Material2": ["texSRGB.png"]}
        for fname, tex in by_name.items():
            np.testing.assert_array_equal(device.read_image(tex), _pixels_of((folder / fname).read_bytes()))


def test_usdz_package_textures(device: Any, usd_dir: Path) -> None:
    """Textures inside RoughnessTest.usdz load through the resolver; each material lists its three (or two)."""
    pkg = usd_dir / "usd-wg" / "RoughnessTest" / "RoughnessTest.usdz"
    spec, tga = "0/roughness-spec.png", "0/roughness.tga"
    S, U = "R8G8B8A8_SRGB", "R8G8B8A8_UNORM"
    expected = {
        "Tex000": [(spec, S), (tga, S), (spec, U)],
        "Tex033": [(spec, S), (tga, U), (spec, S)],
        "Tex066": [(spec, S), (tga, S), (spec, U)],
        "Const000": [(spec, S), (spec, U)],
        "Const033": [(spec, S), (spec, U)],
        "Const066": [(spec, S), (spec, U)],
    }
    with zipfile.ZipFile(pkg) as z:
        members = {m: _pixels_of(z.read(m)) for m in (spec, tga)}
    with load_stage(pkg, device) as scene:
        assert not [w for w in scene.warnings if "texture" in w], scene.warnings
        got = {(t.path, t.vk_format) for t in scene.textures}
        assert got == {(f"{pkg}[{m}]", f) for m in (spec, tga) for f in (S, U)}
        assert len({id(t.image) for t in scene.textures}) == 4
        mats = {}
        for inst in scene.instances:
            mats[inst.material.rsplit("/", 1)[-1]] = [(t.path.split("[", 1)[1].rstrip("]"), t.vk_format)
                                                      for t in inst.textures]
            assert all(any(t is s for s in scene.textures) for t in inst.textures)
        assert mats == expected
        for tex in scene.textures:
            member = tex.path.split("[", 1)[1].rstrip("]")
            np.testing.assert_array_equal(device.read_image(tex), members[member])


def test_usd_missing_texture_warns_and_loads(device: Any, usd_dir: Path) -> None:
    """GeomSubsets: texture.ptx is absent upstream: one warning naming the shader and inputs:file; the rest loads."""
    folder = usd_dir / "openusd" / "testUsdImagingGLGeomSubsets"
    with load_stage(folder / "testUsdImagingGLGeomSubsets.usda", device) as scene:
        missing = [w for w in scene.warnings if "texture.ptx" in w]
        assert len(missing) == 1, scene.warnings
        assert "/Materials/PtexMat/PtexTexture" in missing[0] and "inputs:file" in missing[0]
        assert [os.path.basename(t.path) for t in scene.textures] == ["texture2.png"]
        tex2 = scene.textures[0]
        assert tex2.vk_format == "R8G8B8A8_SRGB"
        np.testing.assert_array_equal(device.read_image(tex2), _pixels_of((folder / "texture2.png").read_bytes()))
        textured = {i.prim_path: i.textures for i in scene.instances if i.material == "/Materials/FaceVaryingUVs"}
        assert sorted(textured) == ["/Geom/QuadFaceVaryingUVs", "/Geom/TriangleFaceVaryingUVs"]
        assert all(len(ts) == 1 and ts[0] is tex2 for ts in textured.values())
        ptex = [i for i in scene.instances if i.material == "/Materials/PtexMat"]
        assert ptex and all(i.textures == [] for i in ptex)
        assert all(i.textures == [] for i in scene.instances if i.material is None)


# -------------------------------------------------------------------------------------------------------- CLI


def _alktx2_installed() -> bool:
    """Whether a fresh interpreter (the CLI's) finds alktx2 (a test may hide it from this one)."""
    try:
        importlib.metadata.version("alktx2")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VIXEN_VALIDATION="0")
    return subprocess.run([sys.executable, "-m", "vixen_assets.cli.main", "texture", "info", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("name, fmt, scheme, levels", [
    ("output_UASTC_ZSTD_bc7.ktx2", "BC7_UNORM_BLOCK", "Zstandard", 1),
    ("valid_ASTC_6x6_SRGB_BLOCK_2D_MIP.ktx2", "ASTC_6x6_SRGB_BLOCK", "none", 5),
    ("ktx_document_basis.ktx2", "UNDEFINED", "BasisLZ", 11),
])
def test_cli_texture_info_json(device: Any, ktx_dir: Path, name: str, fmt: str, scheme: str, levels: int) -> None:
    """``texture info --json``: format, levels, supercompression and whether the device samples the format."""
    proc = _cli(str(ktx_dir / name), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    ktx = read_ktx2(ktx_dir / name)
    assert (info["format"], info["supercompressionScheme"], info["levelCount"]) == (fmt, scheme, levels)
    assert len(info["levels"]) == levels
    assert [(lv["width"], lv["height"]) for lv in info["levels"]] == [(lv.width, lv.height) for lv in ktx.levels]
    assert [lv["byteLength"] for lv in info["levels"]] == [lv.byte_length for lv in ktx.levels]
    support = info["device_support"]
    assert support["device"] == device.name
    assert support["sampled"] == (bool(ktx.vk_format) and format_supported(device.context, ktx.vk_format))
    if "llvmpipe" in device.name:
        assert support["sampled"] == fmt.startswith("BC7")
    assert info["basis_transcoder"] == _alktx2_installed()
    if fmt == "UNDEFINED":
        assert info["transcode"] == "BasisLZ/ETC1S"


def test_cli_texture_info_table_and_malformed(ktx_dir: Path, tmp_path: Path) -> None:
    """The table form names the format and scheme; a malformed file exits 1 naming the field."""
    proc = _cli(str(ktx_dir / "bevy_SMAAAreaLUT.ktx2"))
    assert proc.returncode == 0, proc.stderr
    assert "R8G8_UNORM" in proc.stdout and "Zstandard" in proc.stdout and "levels" in proc.stdout
    bad = tmp_path / "bad.ktx2"
    raw = (ktx_dir / "wgpu_skybox_bc7.ktx2").read_bytes()
    bad.write_bytes(_patch(raw, _level(3), "<Q", len(raw) + 64))
    proc = _cli(str(bad), "--json")
    assert proc.returncode == 1 and "levels[3].byteOffset" in proc.stderr
