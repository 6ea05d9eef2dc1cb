"""Tests for the Vulkan format table and its CPU RGBA8 decoder (``vixen_assets.formats.vkformat``)."""

from __future__ import annotations

import importlib.util
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from vixen_assets.errors import FormatError, UnsupportedFormatError
from vixen_assets.formats.vkformat import (
    FORMATS,
    KTX2_PROHIBITED,
    R8G8B8A8_SRGB,
    R8G8B8A8_UNORM,
    FormatInfo,
    can_decode,
    decode_rgba8,
    format_info,
    level_size,
)


def _vulkan_header_values() -> dict[str, int]:
    """``VK_FORMAT_*`` values read from the text of the installed ``vulkan`` binding (never imported here)."""
    spec = importlib.util.find_spec("vulkan")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the 'vulkan' package is not installed; its header is the independent reference")
    values: dict[str, int] = {}
    for folder in spec.submodule_search_locations:
        for path in Path(folder).glob("*"):
            if path.suffix in (".h", ".py"):
                for m in re.finditer(r"\bVK_FORMAT_(\w+?)\s*=\s*(\d+)\b", path.read_text(errors="replace")):
                    values.setdefault(m.group(1), int(m.group(2)))
    if not values:
        pytest.skip("no VK_FORMAT_ values found in the vulkan package")
    return values


def test_every_entry_matches_the_vulkan_headers() -> None:
    """Every table value equals the one the ``vulkan`` binding's header gives for that name."""
    values = _vulkan_header_values()
    for info in FORMATS.values():
        if info.name in values:
            assert values[info.name] == info.vk_format, info.name
    assert all(info.name in values for info in FORMATS.values() if info.vk_format <= 184)


def test_every_core_format_is_covered() -> None:
    """All core formats 1..184 and the 14 ASTC HDR formats are in the table."""
    values = _vulkan_header_values()
    core = {name: v for name, v in values.items() if 1 <= v <= 184 and "FEATURE" not in name}
    assert set(core.values()) == {v for v in FORMATS if v <= 184}
    astc_hdr = {v for name, v in values.items() if re.fullmatch(r"ASTC_\d+x\d+_SFLOAT_BLOCK", name)}
    assert len(astc_hdr) == 14 and astc_hdr <= set(FORMATS)


@pytest.mark.parametrize(
    ("value", "name", "block", "size", "srgb", "family", "target"),
    [
        (37, "R8G8B8A8_UNORM", (1, 1, 1), 4, False, "uncompressed", R8G8B8A8_UNORM),
        (43, "R8G8B8A8_SRGB", (1, 1, 1), 4, True, "uncompressed", R8G8B8A8_SRGB),
        (29, "R8G8B8_SRGB", (1, 1, 1), 3, True, "uncompressed", R8G8B8A8_SRGB),
        (16, "R8G8_UNORM", (1, 1, 1), 2, False, "uncompressed", R8G8B8A8_UNORM),
        (97, "R16G16B16A16_SFLOAT", (1, 1, 1), 8, False, "uncompressed", None),
        (109, "R32G32B32A32_SFLOAT", (1, 1, 1), 16, False, "uncompressed", None),
        (121, "R64G64B64A64_SFLOAT", (1, 1, 1), 32, False, "uncompressed", None),
        (4, "R5G6B5_UNORM_PACK16", (1, 1, 1), 2, False, "packed", R8G8B8A8_UNORM),
        (122, "B10G11R11_UFLOAT_PACK32", (1, 1, 1), 4, False, "packed", None),
        (123, "E5B9G9R9_UFLOAT_PACK32", (1, 1, 1), 4, False, "packed", None),
        (126, "D32_SFLOAT", (1, 1, 1), 4, False, "depth_stencil", None),
        (131, "BC1_RGB_UNORM_BLOCK", (4, 4, 1), 8, False, "bc", R8G8B8A8_UNORM),
        (132, "BC1_RGB_SRGB_BLOCK", (4, 4, 1), 8, True, "bc", R8G8B8A8_SRGB),
        (137, "BC3_UNORM_BLOCK", (4, 4, 1), 16, False, "bc", R8G8B8A8_UNORM),
        (139, "BC4_UNORM_BLOCK", (4, 4, 1), 8, False, "bc", R8G8B8A8_UNORM),
        (140, "BC4_SNORM_BLOCK", (4, 4, 1), 8, False, "bc", None),
        (143, "BC6H_UFLOAT_BLOCK", (4, 4, 1), 16, False, "bc", None),
        (146, "BC7_SRGB_BLOCK", (4, 4, 1), 16, True, "bc", R8G8B8A8_SRGB),
        (147, "ETC2_R8G8B8_UNORM_BLOCK", (4, 4, 1), 8, False, "etc2", R8G8B8A8_UNORM),
        (152, "ETC2_R8G8B8A8_SRGB_BLOCK", (4, 4, 1), 16, True, "etc2", R8G8B8A8_SRGB),
        (153, "EAC_R11_UNORM_BLOCK", (4, 4, 1), 8, False, "eac", R8G8B8A8_UNORM),
        (156, "EAC_R11G11_SNORM_BLOCK", (4, 4, 1), 16, False, "eac", None),
        (157, "ASTC_4x4_UNORM_BLOCK", (4, 4, 1), 16, False, "astc", R8G8B8A8_UNORM),
        (166, "ASTC_6x6_SRGB_BLOCK", (6, 6, 1), 16, True, "astc", R8G8B8A8_SRGB),
        (184, "ASTC_12x12_SRGB_BLOCK", (12, 12, 1), 16, True, "astc", R8G8B8A8_SRGB),
        (1000066000, "ASTC_4x4_SFLOAT_BLOCK", (4, 4, 1), 16, False, "astc", None),
        (1000066013, "ASTC_12x12_SFLOAT_BLOCK", (12, 12, 1), 16, False, "astc", None),
        (1000288009, "ASTC_4x4x4_UNORM_BLOCK_EXT", (4, 4, 4), 16, False, "astc", None),
        (1000054001, "PVRTC1_4BPP_UNORM_BLOCK_IMG", (4, 4, 1), 8, False, "pvrtc", None),
        (1000054004, "PVRTC1_2BPP_SRGB_BLOCK_IMG", (8, 4, 1), 8, True, "pvrtc", None),
        (1000156000, "G8B8G8R8_422_UNORM", (2, 1, 1), 4, False, "ycbcr_422", None),
        (1000340000, "A4R4G4B4_UNORM_PACK16", (1, 1, 1), 2, False, "packed", R8G8B8A8_UNORM),
    ],
)
def test_known_entries(value: int, name: str, block: tuple[int, int, int], size: int, srgb: bool, family: str,
                       target: int | None) -> None:
    """Spot checks of block size, bytes, sRGB, family and decode target, written from the Vulkan spec."""
    info = format_info(value)
    assert (info.name, (info.block_width, info.block_height, info.block_depth)) == (name, block)
    assert (info.bytes_per_block, info.is_srgb, info.family, info.decode_target) == (size, srgb, family, target)
    assert info.is_compressed == (family in ("bc", "etc2", "eac", "astc", "pvrtc"))
    assert info.vk_name == f"VK_FORMAT_{name}"


def test_type_sizes() -> None:
    """KTX2 ``typeSize`` is the component size for array/packed formats and 1 for block formats."""
    assert [format_info(v).type_size for v in (43, 97, 100, 122, 123, 4, 145, 1000066000)] == [1, 2, 4, 4, 4, 2, 1, 1]


def test_hdr_and_srgb_pairs_are_consistent() -> None:
    """sRGB formats mirror their UNORM twin; HDR formats never claim an RGBA8 target."""
    by_name = {info.name: info for info in FORMATS.values()}
    for info in FORMATS.values():
        if info.is_srgb:
            twin = by_name[info.name.replace("SRGB", "UNORM", 1)]
            assert (twin.block_width, twin.block_height, twin.bytes_per_block) == (
                info.block_width, info.block_height, info.bytes_per_block)
            assert info.decode_target in (None, R8G8B8A8_SRGB)
            assert twin.decode_target in (None, R8G8B8A8_UNORM)
        assert info.is_hdr == (info.numeric in ("SFLOAT", "UFLOAT"))
        if info.is_hdr:
            assert info.decode_target is None


@pytest.mark.parametrize("value", [0, 185, 999, 1000156002, 1000464000, -1, 2**32])
def test_unknown_formats_raise(value: int) -> None:
    """Values outside the table raise UnsupportedFormatError naming ``vkFormat``."""
    with pytest.raises(UnsupportedFormatError) as err:
        format_info(value)
    assert err.value.field == "vkFormat"
    assert isinstance(err.value, FormatError)


def test_prohibited_set() -> None:
    """The KTX2-prohibited formats are the ``*SCALED`` (<= 16 bit) and ``A8B8G8R8_*_PACK32`` ones."""
    assert {11, 12, 18, 51, 55, 57, 60, 67, 72, 93} <= KTX2_PROHIBITED
    assert not {9, 37, 43, 97, 100, 145} & KTX2_PROHIBITED


@pytest.mark.parametrize(
    ("value", "extent", "expected"),
    [
        (145, (5, 5, 3), 2 * 2 * 3 * 16),  # BC7 3D, size not a multiple of the block
        (166, (16, 16, 1), 3 * 3 * 16),  # ASTC 6x6
        (166, (1, 1, 1), 16),
        (29, (8, 1, 1), 24),  # RGB8 1D
        (29, (8, 0, 0), 24),  # zero means one texel
        (97, (8, 8, 1), 8 * 8 * 8),
        (123, (48, 48, 48), 48 ** 3 * 4),
        (1000054001, (1, 1, 1), 2 * 2 * 8),  # PVRTC1 images are at least 2x2 blocks
        (1000054002, (1, 1, 1), 8),  # PVRTC2 is not
        (1000288009, (4, 4, 5), 2 * 16),  # 3D ASTC 4x4x4
        (1000156000, (3, 2, 1), 2 * 2 * 4),  # 4:2:2 2x1 blocks
    ],
)
def test_level_size(value: int, extent: tuple[int, int, int], expected: int) -> None:
    """Sizes count whole blocks per axis (PVRTC1 at least 2x2 blocks)."""
    assert level_size(format_info(value), *extent) == expected


def test_level_size_rejects_negative() -> None:
    """Negative extents are a caller bug."""
    with pytest.raises(ValueError):
        level_size(format_info(37), -1, 1, 1)


# ------------------------------------------------------------------------------------------------ decoding


def _solid(info: FormatInfo, block: bytes, w: int = 8, h: int = 8) -> np.ndarray:
    count = level_size(info, w, h, 1) // info.bytes_per_block
    return decode_rgba8(info, block * count, w, h)


def test_bc1_channel_order_and_punch_through() -> None:
    """A pure-red BC1 block decodes to red; BC1 RGBA index 3 is transparent, BC1 RGB's opaque."""
    red = struct.pack("<HHI", 0xF800, 0x0000, 0)  # color0 = pure red, every index 0
    for value in (131, 132, 133):
        assert (_solid(format_info(value), red) == [255, 0, 0, 255]).all()
    transparent = struct.pack("<HHI", 0x001F, 0xF800, 0xFFFFFFFF)  # color0 <= color1, index 3 everywhere
    assert (_solid(format_info(133), transparent) == [0, 0, 0, 0]).all()  # BC1 RGBA: transparent black
    assert (_solid(format_info(131), transparent) == [0, 0, 0, 255]).all()  # BC1 RGB: opaque black


def test_bc2_bc3_colour_is_always_four_colour() -> None:
    """BC2/BC3 ignore BC1's colour0 <= colour1 three-colour mode."""
    colour = struct.pack("<HHI", 0x001F, 0xF800, 0xFFFFFFFF)  # c0 <= c1, index 3: 1/3 blue + 2/3 red in 4-colour mode
    bc2 = bytes.fromhex("ffffffffffffffff") + colour
    bc3 = bytes([128, 0]) + bytes(6) + colour
    for value, block, alpha in ((135, bc2, 255), (137, bc3, 128)):
        img = _solid(format_info(value), block)
        assert (img == [170, 0, 85, alpha]).all(), img[0, 0]


def test_single_and_two_channel_formats_fill_like_vulkan() -> None:
    """R and RG formats read G=B=0, A=255 as Vulkan samples them."""
    bc4 = bytes([200, 10]) + bytes(6)
    assert (_solid(format_info(139), bc4) == [200, 0, 0, 255]).all()
    bc5 = bc4 + bytes([50, 10]) + bytes(6)
    assert (_solid(format_info(141), bc5) == [200, 50, 0, 255]).all()
    r8 = decode_rgba8(format_info(9), bytes([7, 9]), 2, 1)
    assert r8.tolist() == [[[7, 0, 0, 255], [9, 0, 0, 255]]]
    eac = bytes([200, 0x10]) + (0o4444444444444444).to_bytes(6, "big")  # base 200, modifier +2
    img = _solid(format_info(153), eac)
    assert img[..., 0].min() > 195 and (img[..., 1:3] == 0).all() and (img[..., 3] == 255).all()


def test_astc_void_extent_is_rgba() -> None:
    """A void-extent ASTC block of known colour comes out RGBA (not the decoder's BGRA)."""
    red = bytes([0xFC, 0xFD]) + b"\xff" * 6 + struct.pack("<4H", 0xFFFF, 0, 0x8000, 0xFFFF)
    for value in (157, 166, 184):
        img = _solid(format_info(value), red, 13, 7)
        assert img.shape == (7, 13, 4)
        assert (img == [255, 0, 128, 255]).all()


def test_uncompressed_swizzles_and_packing() -> None:
    """BGRA swizzle, 565/2-10-10-10 bit fields and 16-bit UNORM rounding."""
    bgra = decode_rgba8(format_info(44), bytes([1, 2, 3, 4]), 1, 1)
    assert bgra.tolist() == [[[3, 2, 1, 4]]]
    rgb565 = decode_rgba8(format_info(4), struct.pack("<H", (31 << 11) | (32 << 5) | 0), 1, 1)
    assert rgb565.tolist() == [[[255, 130, 0, 255]]]
    r16 = decode_rgba8(format_info(70), struct.pack("<2H", 65535, 32896), 2, 1)
    assert r16[0, :, 0].tolist() == [255, 128]
    a2 = decode_rgba8(format_info(64), struct.pack("<I", (3 << 30) | (1023 << 20) | (0 << 10) | 512), 1, 1)
    assert a2.tolist() == [[[128, 0, 255, 255]]]  # A2B10G10R10: R in the low bits


def test_hdr_needs_clamp() -> None:
    """Float formats decode only with ``clamp_hdr`` and clip to [0, 1]."""
    half = np.array([0.5, 2.0, -1.0, 1.0], np.float16).tobytes()
    info = format_info(97)
    with pytest.raises(UnsupportedFormatError, match="clamp_hdr"):
        decode_rgba8(info, half, 1, 1)
    assert decode_rgba8(info, half, 1, 1, clamp_hdr=True).tolist() == [[[128, 255, 0, 255]]]
    # B10G11R11: R = 1.0 (e15 m0), G = 0.5 (e14), B = 2.0 (e16)
    word = (15 << 6) | ((14 << 6) << 11) | ((16 << 5) << 22)
    assert decode_rgba8(format_info(122), struct.pack("<I", word), 1, 1, clamp_hdr=True).tolist() == [
        [[255, 128, 255, 255]]]
    # E5B9G9R9: exponent 16 scales mantissa 256 to 1.0 and 64 to 0.25
    word = 256 | (64 << 9) | (0 << 18) | (16 << 27)
    assert decode_rgba8(format_info(123), struct.pack("<I", word), 1, 1, clamp_hdr=True).tolist() == [
        [[255, 64, 0, 255]]]


def test_wrong_size_is_refused_before_the_native_decoder() -> None:
    """A short buffer never reaches texture2ddecoder (which does not check sizes)."""
    with pytest.raises(ValueError):
        decode_rgba8(format_info(145), bytes(16), 8, 8)


def test_every_decodable_format_decodes_random_data() -> None:
    """Every format with a decoder handles arbitrary bytes and odd sizes; the rest refuse."""
    rng = np.random.default_rng(7)
    for info in FORMATS.values():
        for clamp in (False, True):
            try:
                can_decode(info, clamp_hdr=clamp)
            except UnsupportedFormatError:
                assert info.decode_target is None
                continue
            w, h = 13, 6
            data = rng.integers(0, 256, level_size(info, w, h, 1), np.uint8).tobytes()
            img = decode_rgba8(info, data, w, h, clamp_hdr=clamp)
            assert img.shape == (h, w, 4) and img.dtype == np.uint8, info.name
        if info.decode_target is not None:
            assert info.block_depth == 1


def test_astc_illegal_blocks_do_not_reach_the_native_decoder() -> None:
    """Random ASTC blocks (most of them illegal encodings) must decode without crashing the interpreter."""
    rng = np.random.default_rng(2024)
    for info in FORMATS.values():
        if info.family == "astc" and info.block_depth == 1:
            w, h = info.block_width * 16, info.block_height * 16
            data = rng.integers(0, 256, level_size(info, w, h, 1), np.uint8).tobytes()
            img = decode_rgba8(info, data, w, h, clamp_hdr=True)
            magenta = (img == [255, 0, 255, 255]).all(axis=-1).mean()
            assert 0.3 < magenta < 1.0, (info.name, magenta)  # illegal blocks become the error colour


def test_etc2_bc7_round_trip_with_etcpak() -> None:
    """Images compressed by etcpak decode close to the source, channels in place."""
    etcpak = pytest.importorskip("etcpak")
    y, x = np.mgrid[0:32, 0:32]
    rgba = np.stack([x * 8, y * 8, 255 - x * 4, 255 - y * 8], -1).astype(np.uint8)
    # etcpak 0.9.15 reads RGBA for every encoder (its README still says BGRA for ETC; fed BGRA, red and blue swap)
    cases = [
        (147, etcpak.compress_etc2_rgb(rgba.tobytes(), 32, 32), 3),
        (151, etcpak.compress_etc2_rgba(rgba.tobytes(), 32, 32), 4),
        (131, etcpak.compress_bc1(rgba.tobytes(), 32, 32), 3),
        (137, etcpak.compress_bc3(rgba.tobytes(), 32, 32), 4),
        (145, etcpak.compress_bc7(rgba.tobytes(), 32, 32, None), 4),
    ]
    for value, data, channels in cases:
        img = decode_rgba8(format_info(value), data, 32, 32)
        err = np.abs(img[..., :channels].astype(int) - rgba[..., :channels]).mean()
        assert err < 6, (format_info(value).name, err)
