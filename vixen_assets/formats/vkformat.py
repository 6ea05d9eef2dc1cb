"""The Vulkan format table (what a ``VkFormat`` value means for storage and size, as plain integers) and the CPU
RGBA8 decoder that backs :attr:`FormatInfo.decode_target`.

Covers every format a KTX2 file may carry: the core formats 1..184 (8/16/32/64-bit array formats, packed formats such
as ``B10G11R11_UFLOAT_PACK32`` and ``E5B9G9R9_UFLOAT_PACK32``, depth/stencil, BC1-7, ETC2/EAC, ASTC LDR) and the
extension formats KTX2 allows (ASTC HDR ``*_SFLOAT_BLOCK`` at 1000066000+, 3D ASTC, PVRTC, 4:2:2 and ``X6``/``X4``
padded formats, ``A4R4G4B4``/``A1B5G5R5``/``A8``). Names are the ``VkFormat`` enumerant without ``VK_FORMAT_``.
The values are written out here rather than taken from the ``vulkan`` binding so that this layer stays GPU-free.

Not in the table (:func:`format_info` raises :class:`~vixen_assets.errors.UnsupportedFormatError`): the multi-planar
formats (prohibited in KTX2) and the vendor ``R16G16_S10_5_NV``. Combined depth/stencil texels follow libktx's layout
(``D16_UNORM_S8_UINT`` two 16-bit words, ``D32_SFLOAT_S8_UINT`` two 32-bit words).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import texture2ddecoder

from vixen_assets.errors import ConfigError, FormatError, UnsupportedFormatError

__all__ = [
    "FORMATS",
    "KTX2_PROHIBITED",
    "R8G8B8A8_SRGB",
    "R8G8B8A8_UNORM",
    "UNDEFINED",
    "FormatInfo",
    "can_decode",
    "decode_rgba8",
    "format_info",
    "level_size",
]

UNDEFINED = 0
R8G8B8A8_UNORM = 37
R8G8B8A8_SRGB = 43


@dataclass(frozen=True, slots=True)
class FormatInfo:
    """One ``VkFormat``: its texel block, storage size, family and the RGBA8 format it decodes to."""

    vk_format: int
    name: str
    block_width: int
    block_height: int
    block_depth: int
    bytes_per_block: int
    is_compressed: bool
    is_srgb: bool
    family: str
    """One of ``uncompressed``, ``packed``, ``depth_stencil``, ``ycbcr_422``, ``bc``, ``etc2``, ``eac``, ``astc``,
    ``pvrtc``."""
    numeric: str
    """``UNORM``, ``SNORM``, ``USCALED``, ``SSCALED``, ``UINT``, ``SINT``, ``SRGB``, ``SFLOAT`` or ``UFLOAT``."""
    type_size: int
    """The KTX2 ``typeSize``: the size of the data type a big-endian reader swaps (1 for block formats; 0 where
    writers disagree, the combined depth/stencil formats ``D16_UNORM_S8_UINT`` and ``D32_SFLOAT_S8_UINT``)."""
    components: tuple[tuple[str, int], ...] = ()
    """Channels with bit widths: memory order for array formats, most-significant first for ``*_PACK*`` formats."""
    packed_bits: int = 0
    """Width of the packed word of a ``*_PACK8/16/32`` format, else 0."""
    min_blocks: int = 1
    """Smallest block count per axis of an image (2 for PVRTC1)."""
    decode_target: int | None = None
    """``R8G8B8A8_SRGB`` (43) or ``R8G8B8A8_UNORM`` (37) when the CPU decoder can turn the format into RGBA8 without
    clipping; ``None`` for HDR, signed, integer, depth and formats without a CPU decoder."""

    @property
    def vk_name(self) -> str:
        """The full enumerant name, e.g. ``VK_FORMAT_BC7_UNORM_BLOCK``."""
        return f"VK_FORMAT_{self.name}"

    @property
    def is_hdr(self) -> bool:
        """Whether texel values may exceed 1.0 (float and ASTC HDR formats)."""
        return self.numeric in ("SFLOAT", "UFLOAT")

    @property
    def is_3d_block(self) -> bool:
        """Whether the block spans several z-slices (3D ASTC)."""
        return self.block_depth > 1


FORMATS: dict[int, FormatInfo] = {}

_N8 = ("UNORM", "SNORM", "USCALED", "SSCALED", "UINT", "SINT", "SRGB")
_N16 = ("UNORM", "SNORM", "USCALED", "SSCALED", "UINT", "SINT", "SFLOAT")
_N32 = ("UINT", "SINT", "SFLOAT")
# (first value, channel letters in memory order, bits per channel, numeric variants in enum order)
_ARRAY_RUNS = (
    (9, "R", 8, _N8), (16, "RG", 8, _N8), (23, "RGB", 8, _N8), (30, "BGR", 8, _N8),
    (37, "RGBA", 8, _N8), (44, "BGRA", 8, _N8),
    (70, "R", 16, _N16), (77, "RG", 16, _N16), (84, "RGB", 16, _N16), (91, "RGBA", 16, _N16),
    (98, "R", 32, _N32), (101, "RG", 32, _N32), (104, "RGB", 32, _N32), (107, "RGBA", 32, _N32),
    (110, "R", 64, _N32), (113, "RG", 64, _N32), (116, "RGB", 64, _N32), (119, "RGBA", 64, _N32),
)
_PACKED = {
    1: "R4G4_UNORM_PACK8",
    2: "R4G4B4A4_UNORM_PACK16", 3: "B4G4R4A4_UNORM_PACK16", 4: "R5G6B5_UNORM_PACK16", 5: "B5G6R5_UNORM_PACK16",
    6: "R5G5B5A1_UNORM_PACK16", 7: "B5G5R5A1_UNORM_PACK16", 8: "A1R5G5B5_UNORM_PACK16",
    **{51 + i: f"A8B8G8R8_{n}_PACK32" for i, n in enumerate(_N8)},
    **{58 + i: f"A2R10G10B10_{n}_PACK32" for i, n in enumerate(_N8[:6])},
    **{64 + i: f"A2B10G10R10_{n}_PACK32" for i, n in enumerate(_N8[:6])},
    122: "B10G11R11_UFLOAT_PACK32", 123: "E5B9G9R9_UFLOAT_PACK32",
    1000156007: "R10X6_UNORM_PACK16", 1000156008: "R10X6G10X6_UNORM_2PACK16",
    1000156009: "R10X6G10X6B10X6A10X6_UNORM_4PACK16",
    1000156017: "R12X4_UNORM_PACK16", 1000156018: "R12X4G12X4_UNORM_2PACK16",
    1000156019: "R12X4G12X4B12X4A12X4_UNORM_4PACK16",
    1000340000: "A4R4G4B4_UNORM_PACK16", 1000340001: "A4B4G4R4_UNORM_PACK16",
    1000470000: "A1B5G5R5_UNORM_PACK16_KHR",
}
# depth/stencil: value -> (name, bytes per texel, typeSize, numeric)
_DEPTH = {
    124: ("D16_UNORM", 2, 2, "UNORM"), 125: ("X8_D24_UNORM_PACK32", 4, 4, "UNORM"),
    126: ("D32_SFLOAT", 4, 4, "SFLOAT"), 127: ("S8_UINT", 1, 1, "UINT"), 128: ("D16_UNORM_S8_UINT", 4, 0, "UNORM"),
    129: ("D24_UNORM_S8_UINT", 4, 4, "UNORM"), 130: ("D32_SFLOAT_S8_UINT", 8, 0, "SFLOAT"),
}
# 4:2:2 formats: value -> (name, bytes per 2x1 block, typeSize)
_YCBCR_422 = {
    1000156000: ("G8B8G8R8_422_UNORM", 4, 1), 1000156001: ("B8G8R8G8_422_UNORM", 4, 1),
    1000156010: ("G10X6B10X6G10X6R10X6_422_UNORM_4PACK16", 8, 2),
    1000156011: ("B10X6G10X6R10X6G10X6_422_UNORM_4PACK16", 8, 2),
    1000156020: ("G12X4B12X4G12X4R12X4_422_UNORM_4PACK16", 8, 2),
    1000156021: ("B12X4G12X4R12X4G12X4_422_UNORM_4PACK16", 8, 2),
    1000156027: ("G16B16G16R16_422_UNORM", 8, 2), 1000156028: ("B16G16R16G16_422_UNORM", 8, 2),
}
# block-compressed: value -> (name, family, bytes per 4x4 block)
_BLOCK_4X4 = {
    131: ("BC1_RGB_UNORM_BLOCK", "bc", 8), 132: ("BC1_RGB_SRGB_BLOCK", "bc", 8),
    133: ("BC1_RGBA_UNORM_BLOCK", "bc", 8), 134: ("BC1_RGBA_SRGB_BLOCK", "bc", 8),
    135: ("BC2_UNORM_BLOCK", "bc", 16), 136: ("BC2_SRGB_BLOCK", "bc", 16),
    137: ("BC3_UNORM_BLOCK", "bc", 16), 138: ("BC3_SRGB_BLOCK", "bc", 16),
    139: ("BC4_UNORM_BLOCK", "bc", 8), 140: ("BC4_SNORM_BLOCK", "bc", 8),
    141: ("BC5_UNORM_BLOCK", "bc", 16), 142: ("BC5_SNORM_BLOCK", "bc", 16),
    143: ("BC6H_UFLOAT_BLOCK", "bc", 16), 144: ("BC6H_SFLOAT_BLOCK", "bc", 16),
    145: ("BC7_UNORM_BLOCK", "bc", 16), 146: ("BC7_SRGB_BLOCK", "bc", 16),
    147: ("ETC2_R8G8B8_UNORM_BLOCK", "etc2", 8), 148: ("ETC2_R8G8B8_SRGB_BLOCK", "etc2", 8),
    149: ("ETC2_R8G8B8A1_UNORM_BLOCK", "etc2", 8), 150: ("ETC2_R8G8B8A1_SRGB_BLOCK", "etc2", 8),
    151: ("ETC2_R8G8B8A8_UNORM_BLOCK", "etc2", 16), 152: ("ETC2_R8G8B8A8_SRGB_BLOCK", "etc2", 16),
    153: ("EAC_R11_UNORM_BLOCK", "eac", 8), 154: ("EAC_R11_SNORM_BLOCK", "eac", 8),
    155: ("EAC_R11G11_UNORM_BLOCK", "eac", 16), 156: ("EAC_R11G11_SNORM_BLOCK", "eac", 16),
}
_ASTC_2D_BLOCKS = ((4, 4), (5, 4), (5, 5), (6, 5), (6, 6), (8, 5), (8, 6), (8, 8), (10, 5), (10, 6), (10, 8),
                  (10, 10), (12, 10), (12, 12))
_ASTC_3D_BLOCKS = ((3, 3, 3), (4, 3, 3), (4, 4, 3), (4, 4, 4), (5, 4, 4), (5, 5, 4), (5, 5, 5), (6, 5, 5),
                  (6, 6, 5), (6, 6, 6))

KTX2_PROHIBITED: frozenset[int] = frozenset(
    [v for v, n in _PACKED.items() if "SCALED" in n or n.startswith("A8B8G8R8")]
    + [first + i for first, _, bits, nums in _ARRAY_RUNS for i, n in enumerate(nums) if "SCALED" in n and bits <= 16]
)
"""Formats the KTX 2.0 specification forbids (``*SCALED`` up to 16 bits, ``A8B8G8R8_*_PACK32``)."""

# The CPU decoder (vixen_assets.formats.ktx2.decode_to_rgba8) handles these without clipping.
_DECODABLE_BLOCKS = {
    "BC1_RGB", "BC1_RGBA", "BC2", "BC3", "BC4_UNORM", "BC5_UNORM", "BC7",
    "ETC2_R8G8B8", "ETC2_R8G8B8A1", "ETC2_R8G8B8A8", "EAC_R11_UNORM", "EAC_R11G11_UNORM",
}


def _target(srgb: bool) -> int:
    return R8G8B8A8_SRGB if srgb else R8G8B8A8_UNORM


def _add(info: FormatInfo) -> None:
    assert info.vk_format not in FORMATS, info
    FORMATS[info.vk_format] = info


def _components(prefix: str) -> tuple[tuple[str, int], ...]:
    return tuple((c, int(b)) for c, b in re.findall(r"([RGBAXE])(\d+)", prefix))


def _build() -> None:
    for first, letters, bits, numerics in _ARRAY_RUNS:
        for i, numeric in enumerate(numerics):
            comps = tuple((c, bits) for c in letters)
            name = "".join(f"{c}{bits}" for c in letters) + f"_{numeric}"
            ldr = numeric in ("UNORM", "SRGB") and bits <= 16
            _add(FormatInfo(first + i, name, 1, 1, 1, len(letters) * bits // 8, False, numeric == "SRGB",
                            "uncompressed", numeric, bits // 8, comps,
                            decode_target=_target(numeric == "SRGB") if ldr else None))
    _add(FormatInfo(1000470001, "A8_UNORM_KHR", 1, 1, 1, 1, False, False, "uncompressed", "UNORM", 1, (("A", 8),),
                    decode_target=R8G8B8A8_UNORM))
    for value, name in _PACKED.items():
        prefix, numeric, pack = name.split("_")[:3]
        word = int(re.sub(r"^\d?PACK", "", pack))
        count = int(pack[0]) if pack[0].isdigit() else 1
        comps = _components(prefix)
        ldr = numeric in ("UNORM", "SRGB") and not any(c == "X" for c, _ in comps)
        _add(FormatInfo(value, name, 1, 1, 1, word * count // 8, False, numeric == "SRGB", "packed", numeric,
                        word // 8, comps, packed_bits=word if count == 1 else 0,
                        decode_target=_target(numeric == "SRGB") if ldr else None))
    for value, (name, size, type_size, numeric) in _DEPTH.items():
        _add(FormatInfo(value, name, 1, 1, 1, size, False, False, "depth_stencil", numeric, type_size))
    for value, (name, size, type_size) in _YCBCR_422.items():
        _add(FormatInfo(value, name, 2, 1, 1, size, False, False, "ycbcr_422", "UNORM", type_size))
    for value, (name, family, size) in _BLOCK_4X4.items():
        numeric = name.split("_")[-2]
        key = name.rsplit("_", 2)[0]
        ok = key in _DECODABLE_BLOCKS or f"{key}_{numeric}" in _DECODABLE_BLOCKS
        _add(FormatInfo(value, name, 4, 4, 1, size, True, numeric == "SRGB", family, numeric, 1,
                        decode_target=_target(numeric == "SRGB") if ok else None))
    for i, (w, h) in enumerate(_ASTC_2D_BLOCKS):
        for value, numeric in ((157 + 2 * i, "UNORM"), (158 + 2 * i, "SRGB"), (1000066000 + i, "SFLOAT")):
            srgb = numeric == "SRGB"
            _add(FormatInfo(value, f"ASTC_{w}x{h}_{numeric}_BLOCK", w, h, 1, 16, True, srgb, "astc", numeric, 1,
                            decode_target=None if numeric == "SFLOAT" else _target(srgb)))
    for i, (w, h, d) in enumerate(_ASTC_3D_BLOCKS):
        for j, numeric in enumerate(("UNORM", "SRGB", "SFLOAT")):
            _add(FormatInfo(1000288000 + 3 * i + j, f"ASTC_{w}x{h}x{d}_{numeric}_BLOCK_EXT", w, h, d, 16, True,
                            numeric == "SRGB", "astc", numeric, 1))
    for i, (gen, bpp) in enumerate(((1, 2), (1, 4), (2, 2), (2, 4))):
        for value, numeric in ((1000054000 + i, "UNORM"), (1000054004 + i, "SRGB")):
            _add(FormatInfo(value, f"PVRTC{gen}_{bpp}BPP_{numeric}_BLOCK_IMG", 8 if bpp == 2 else 4, 4, 1, 8, True,
                            numeric == "SRGB", "pvrtc", numeric, 1, min_blocks=2 if gen == 1 else 1))


_build()


def format_info(vk_format: int) -> FormatInfo:
    """The table entry for a ``VkFormat`` value.

    :param vk_format: the integer ``VkFormat``.
    :returns: its :class:`FormatInfo`.
    :raises UnsupportedFormatError: for ``VK_FORMAT_UNDEFINED`` and values outside the table (``field='vkFormat'``).
    """
    info = FORMATS.get(vk_format)
    if info is None:
        what = "VK_FORMAT_UNDEFINED has no texel layout" if vk_format == UNDEFINED else "unknown or unsupported"
        raise UnsupportedFormatError(f"VkFormat {vk_format}: {what}", field="vkFormat")
    return info


def level_size(info: FormatInfo, width: int, height: int = 1, depth: int = 1) -> int:
    """Bytes of one image (all z-slices) of ``width x height x depth`` texels, in whole blocks.

    :param info: the format.
    :param width: width in texels (0 counts as 1).
    :param height: height in texels (0, as for 1D images, counts as 1).
    :param depth: depth in texels (0, as for 2D images, counts as 1).
    :returns: ``ceil(w/bw) * ceil(h/bh) * ceil(d/bd) * bytes_per_block`` (at least ``min_blocks`` per x and y).
    """
    if width < 0 or height < 0 or depth < 0:
        raise ConfigError(f"negative extent {width}x{height}x{depth}", option="extent")
    bx = max(-(-max(width, 1) // info.block_width), info.min_blocks)
    by = max(-(-max(height, 1) // info.block_height), info.min_blocks)
    bz = -(-max(depth, 1) // info.block_depth)
    return bx * by * bz * info.bytes_per_block


# ---------------------------------------------------------------------------------------------------- decoding

_PAD = bytes(16)  # texture2ddecoder reads a few bytes past the last block
_ASTC_ERROR_BLOCK = bytes([0xFC, 0xFD]) + b"\xff" * 6 + b"\xff\xff\x00\x00\xff\xff\xff\xff"  # void-extent magenta
_W_TRITS = np.array([0, 0, 0, 3, 0, 5, 3, 0, 0, 0, 5, 3, 0, 5, 3, 0])
_W_BITS = np.array([0, 0, 1, 0, 2, 0, 1, 3, 0, 0, 1, 2, 4, 2, 3, 5])


def _hdr_decodable(info: FormatInfo) -> bool:
    if info.family == "astc":
        return info.block_depth == 1
    if info.family == "bc":
        return info.name == "BC6H_UFLOAT_BLOCK"
    if info.family == "packed":
        return info.numeric == "UFLOAT"
    return info.family == "uncompressed" and info.numeric == "SFLOAT"


def can_decode(info: FormatInfo, *, clamp_hdr: bool = False) -> None:
    """Check that :func:`decode_rgba8` handles a format.

    :param info: the format.
    :param clamp_hdr: whether HDR formats may be clipped to [0, 1].
    :raises UnsupportedFormatError: naming the format (and suggesting ``clamp_hdr`` for HDR ones).
    """
    if info.decode_target is None and not (clamp_hdr and _hdr_decodable(info)):
        hint = " (HDR: pass clamp_hdr=True to clip it to 8 bits)" if _hdr_decodable(info) else ""
        raise UnsupportedFormatError(f"no RGBA8 decoder for {info.name}{hint}", field="vkFormat")


def decode_rgba8(info: FormatInfo, data: bytes | memoryview, width: int, height: int, *,
                 clamp_hdr: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """Decode one 2D image (one z-slice) of ``info`` to RGBA8, keeping the source's encoding (sRGB stays sRGB).

    BC4/5/6H/7, ETC2, EAC and ASTC go through ``texture2ddecoder`` (whose BGRA output is swizzled to RGBA; ASTC
    blocks the spec calls illegal become the magenta error colour first, since the decoder trusts block modes);
    BC1-3 and uncompressed formats are decoded with numpy, following the Vulkan rules (BC2/BC3 colour is always
    four-colour, BC1 RGBA's index 3 is transparent black, missing channels read G=B=0, A=1).

    :param info: the format (see :attr:`FormatInfo.decode_target`).
    :param data: exactly ``level_size(info, width, height)`` bytes.
    :param width: width in texels.
    :param height: height in texels.
    :param clamp_hdr: allow HDR formats, clipping to [0, 1] (the result is then ``R8G8B8A8_UNORM``).
    :param out: a writable ``uint8`` ``(height, width, 4)`` array to decode into (a staging buffer's bytes: the
        texture2ddecoder formats swizzle straight into it, no array in between); returned.
    :returns: ``uint8`` array of shape ``(height, width, 4)``.
    :raises UnsupportedFormatError: for formats without a decoder.
    :raises ValueError: when ``data`` has the wrong size.
    """
    can_decode(info, clamp_hdr=clamp_hdr)
    if info.block_depth != 1:
        raise UnsupportedFormatError(f"{info.name}: 3D blocks are not decoded", field="vkFormat")
    need = level_size(info, width, height, 1)
    if len(data) != need:  # the native decoders read exactly this many bytes, unchecked
        raise FormatError(f"{info.name} {width}x{height} needs {need} bytes, got {len(data)}", field="data")
    if out is not None and out.shape != (height, width, 4):
        raise ValueError(f"out has shape {out.shape}, ({height}, {width}, 4) expected")
    name, t = info.name, texture2ddecoder
    if not info.is_compressed or name.startswith(("BC1", "BC2", "BC3")):
        px = _decode_plain(info, data, width, height) if not info.is_compressed else _decode_bc123(name, data, width,
                                                                                                  height)
        if out is None:
            return px
        out[...] = px
        return out
    if info.family == "astc":
        blocks = _astc_sanitize(data, info.block_width, info.block_height)
        return _t2d(t.decode_astc, blocks, width, height, info.block_width, info.block_height, out=out)
    fn = {"BC4": t.decode_bc4, "BC5": t.decode_bc5, "BC6H": t.decode_bc6, "BC7": t.decode_bc7,
          "ETC2_R8G8B8": t.decode_etc2, "ETC2_R8G8B8A1": t.decode_etc2a1, "ETC2_R8G8B8A8": t.decode_etc2a8,
          "EAC_R11": t.decode_eacr, "EAC_R11G11": t.decode_eacrg}[name.rsplit("_", 2)[0]]
    return _t2d(fn, data, width, height, out=out)


def _t2d(fn: Any, raw: bytes | memoryview, w: int, h: int, *extra: int, out: np.ndarray | None = None) -> np.ndarray:
    bgra = np.frombuffer(fn(bytes(raw) + _PAD, w, h, *extra), np.uint8).reshape(h, w, 4)
    if out is None:
        out = np.empty_like(bgra)
    # BGRA -> RGBA into ``out``: one contiguous copy of every texel, then R and B swapped (two strided passes
    # instead of four: 3.5 ms instead of 6.4 ms for 2048² on lavapipe's host, measured in one run)
    np.copyto(out, bgra)
    out[..., 0] = bgra[..., 2]
    out[..., 2] = bgra[..., 0]
    return out


def _blocks_to_image(texels: np.ndarray, w: int, h: int) -> np.ndarray:
    """(by*bx, 16, 4) texels of 4x4 blocks in row-major block order -> (h, w, 4) image."""
    bx, by = -(-w // 4), -(-h // 4)
    img = texels.reshape(by, bx, 4, 4, 4).transpose(0, 2, 1, 3, 4).reshape(by * 4, bx * 4, 4)
    return np.ascontiguousarray(img[:h, :w])


def _decode_bc123(name: str, raw: bytes | memoryview, w: int, h: int) -> np.ndarray:
    """BC1-3 in numpy: BC2/BC3 colour is always 4-colour mode, and BC1 RGBA's index 3 is transparent black."""
    size = 8 if name.startswith("BC1") else 16
    blocks = np.frombuffer(raw, np.uint8).reshape(-1, size)
    color = blocks[:, size - 8:]
    c = color[:, :4].copy().view("<u2").astype(np.int32)
    e0, e1 = (np.stack([(v >> 11 & 31) << 3 | v >> 13 & 7, (v >> 5 & 63) << 2 | v >> 9 & 3,
                        (v & 31) << 3 | v >> 2 & 7], -1) for v in (c[:, 0], c[:, 1]))  # RGB565 -> RGB888
    four = (c[:, 0] > c[:, 1])[:, None] | (size == 16)
    pal = np.empty((len(blocks), 4, 4), np.int32)
    pal[:, 0, :3], pal[:, 1, :3], pal[:, :, 3] = e0, e1, 255
    pal[:, 2, :3] = np.where(four, (2 * e0 + e1 + 1) // 3, (e0 + e1) // 2)
    pal[:, 3, :3] = np.where(four, (e0 + 2 * e1 + 1) // 3, 0)
    if name.startswith("BC1_RGBA"):
        pal[:, 3, 3] = np.where(four[:, 0], 255, 0)
    idx = color[:, 4:].copy().view("<u4")[:, 0].astype(np.int64)
    sel = (idx[:, None] >> (2 * np.arange(16))) & 3
    texels = pal[np.arange(len(blocks))[:, None], sel]
    if name.startswith("BC2"):
        bits = blocks[:, :8].copy().view("<u8")[:, 0]
        texels[:, :, 3] = ((bits[:, None] >> (4 * np.arange(16, dtype=np.uint64))) & 15).astype(np.int32) * 17
    elif name.startswith("BC3"):
        alpha = np.concatenate([blocks[:, :8], blocks[:, :8]], axis=1)  # BC3 alpha block, any colour half
        bgra = np.frombuffer(texture2ddecoder.decode_bc3(alpha.tobytes() + _PAD, -(-w // 4) * 4, -(-h // 4) * 4),
                             np.uint8).reshape(-(-h // 4) * 4, -(-w // 4) * 4, 4)
        img = _blocks_to_image(texels.astype(np.uint8), w, h)
        img[..., 3] = bgra[:h, :w, 3]
        return img
    return _blocks_to_image(texels.astype(np.uint8), w, h)


def _astc_sanitize(raw: bytes | memoryview, bw: int, bh: int) -> bytes:
    """Replace ASTC blocks the spec calls illegal with an error-colour block.

    texture2ddecoder trusts the block mode; an illegal one (weight grid over 64 entries or larger than the block,
    weight bits outside 24..96, too few bits for the colour endpoints, dual plane with four partitions) makes it read
    and write out of bounds. Legal blocks are left alone.
    """
    blocks = np.frombuffer(raw, np.uint8).reshape(-1, 16)
    v = blocks[:, :4].copy().view("<u4")[:, 0].astype(np.int64)
    mode = v & 0x7FF

    def bit(k: int) -> np.ndarray:
        return (v >> k) & 1

    void = (mode & 0x1FF) == 0x1FC
    low = mode & 3
    reserved = ((mode & 0xF) == 0) | ((low == 0) & (((mode >> 6) & 7) == 7))  # decoded as magenta by the decoder
    a, b, sel = (mode >> 5) & 3, (mode >> 7) & 3, (mode >> 2) & 3
    rng = bit(4) | bit(9) << 3 | np.where(low != 0, low << 1, sel << 1)
    dual = bit(10).astype(bool)
    # weight grid size, per the block-mode table (low bits != 0: five layouts; low bits == 0: four more)
    wide = np.where(low != 0,
                    np.select([sel == 0, sel == 1, sel == 2, bit(8) == 1], [b + 4, b + 8, a + 2, bit(7) + 2], a + 2),
                    np.select([b == 0, b == 1, b == 2], [12, a + 2, a + 6], np.where(bit(5) == 1, 10, 6)))
    high = np.where(low != 0,
                    np.select([sel < 2, sel == 2, bit(8) == 1], [a + 2, b + 8, a + 2], bit(7) + 6),
                    np.select([b == 0, b == 1, b == 2], [a + 2, 12, ((mode >> 9) & 3) + 6],
                              np.where(bit(5) == 1, 6, 10)))
    plain = (low == 0) & (b == 2)
    dual &= ~plain
    rng = np.where(plain, rng & 7, rng)
    count = wide * high * np.where(dual, 2, 1)
    trits, wbits = _W_TRITS[rng], _W_BITS[rng]
    weight_bits = count * wbits + np.where(trits == 3, (8 * count + 4) // 5,
                                           np.where(trits == 5, (7 * count + 2) // 3, 0))
    parts = ((v >> 11) & 3) + 1
    cem_sel = (v >> 23) & 3
    shared = np.where(parts == 1, (v >> 13) & 0xF, (v >> 25) & 0xF)
    classes = sum(np.where(i < parts, cem_sel - 1 + bit(25 + i), 0) + np.where(i < parts, 1, 0) for i in range(4))
    mixed = (parts > 1) & (cem_sel != 0)
    values = np.where(mixed, 2 * classes, parts * ((shared >> 2) + 1) * 2)
    config = np.where(parts == 1, 17, np.where(mixed, 25 + 3 * parts, 29)) + np.where(dual, 2, 0)
    remain = 128 - config - weight_bits
    illegal = ~void & ~reserved & ((wide > bw) | (high > bh) | (count > 64) | (weight_bits < 24) | (weight_bits > 96)
                                   | (dual & (parts == 4)) | (values > 18) | (remain < (13 * values + 4) // 5))
    if not illegal.any():
        return bytes(raw)
    fixed = blocks.copy()
    fixed[illegal] = np.frombuffer(_ASTC_ERROR_BLOCK, np.uint8)
    return fixed.tobytes()


def _decode_plain(info: FormatInfo, raw: bytes | memoryview, w: int, h: int) -> np.ndarray:
    """Uncompressed and packed formats: UNORM/sRGB to 8 bits, float clipped to [0, 1]."""
    n = w * h
    chans: dict[str, np.ndarray] = {}
    if info.name == "B10G11R11_UFLOAT_PACK32":
        word = np.frombuffer(raw, "<u4", n)
        for c, shift, width in (("R", 0, 11), ("G", 11, 11), ("B", 22, 10)):
            half = ((word >> shift) & ((1 << width) - 1)) << (15 - width)  # e5mN -> binary16 bits
            chans[c] = _float8(half.astype(np.uint16).view(np.float16))
    elif info.name == "E5B9G9R9_UFLOAT_PACK32":
        word = np.frombuffer(raw, "<u4", n)
        scale = np.ldexp(1.0, (word >> 27).astype(np.int32) - 24)
        for c, shift in (("R", 0), ("G", 9), ("B", 18)):
            chans[c] = _float8(((word >> shift) & 511) * scale)
    elif info.packed_bits:
        word = np.frombuffer(raw, f"<u{info.packed_bits // 8}", n).astype(np.uint32)
        shift = info.packed_bits
        for c, width in info.components:
            shift -= width
            chans[c] = _unorm8((word >> shift) & ((1 << width) - 1), width)
    else:
        width = info.components[0][1]
        kind = "f" if info.numeric == "SFLOAT" else "u"
        arr = np.frombuffer(raw, f"<{kind}{width // 8}", n * len(info.components)).reshape(n, -1)
        for i, (c, _) in enumerate(info.components):
            chans[c] = _float8(arr[:, i]) if kind == "f" else _unorm8(arr[:, i], width)
    out = np.zeros((n, 4), np.uint8)
    out[:, 3] = 255
    for c, col in chans.items():
        out[:, "RGBA".index(c)] = col
    return out.reshape(h, w, 4)


def _unorm8(values: np.ndarray, bits: int) -> np.ndarray:
    if bits == 8:
        return values.astype(np.uint8)
    top = (1 << bits) - 1
    return ((values.astype(np.uint32) * 255 + top // 2) // top).astype(np.uint8)


def _float8(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):  # signalling NaNs warn when widened
        x = np.nan_to_num(np.asarray(values, np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
