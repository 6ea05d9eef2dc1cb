"""Built-in KTX2 rules (``ktx2.*``), after what KTX-Software's ``ktx validate`` checks (tools/ktx/validate.cpp,
validation_messages.h: header 3xxx, level index 4xxx, DFD 6xxx, key/value data 7xxx, supercompression 8xxx).

The deep parse is :func:`~vixen_assets.formats.ktx2.read_ktx2` (the loader's reader, which stops at the first
problem); its error is reported by the rule of the part it names (``identifier``, header fields, ``levels[i]``,
``dfd.*``, ``kvd[i]``, ``sgd*``). The checks here add what the reader tolerates but the specification forbids or
discourages: index layout (each part immediately after the previous, 4/8-byte alignment, zero offsets for empty
parts), level order and alignment in the file, zero padding, key order, reserved ``KTX*`` keys and their values,
a missing ``KTXwriter``, level inflation (Zstandard/ZLIB to ``uncompressedByteLength``), and whether this
installation can transcode the format (with ``--gpu``, ``gpu.round-trip`` uploads it to the device).
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

from ..formats.ktx2 import IDENTIFIER
from ..hookspecs import hookimpl
from .context import AssetContext, register_parsed_rules
from .model import Issue

_HEADER = struct.Struct("<12s9I4I2Q")
_HEADER_FIELDS = ("header", "fileSize", "vkFormat", "typeSize", "pixelWidth", "pixelHeight", "pixelDepth",
                  "layerCount", "faceCount", "levelCount", "pixelWidth*pixelHeight*pixelDepth*layerCount*faceCount")
_KNOWN_KEYS = ("KTXcubemapIncomplete", "KTXorientation", "KTXglFormat", "KTXdxgiFormat__", "KTXmetalPixelFormat",
               "KTXswizzle", "KTXwriter", "KTXwriterScParams", "KTXastcDecodeMode", "KTXanimData", "KTXmapRange")


def _rule_for_field(fld: str) -> str:
    if fld == "identifier":
        return "ktx2.identifier"
    if fld == "levelCount":
        return "ktx2.mip-chain"
    if fld.startswith("pixelWidth*") or fld == "fileSize":
        return "ktx2.sizes"
    if fld in _HEADER_FIELDS:
        return "ktx2.header"
    if fld.startswith("levels[") or fld == "levelIndex":
        return "ktx2.level-index"
    if fld.startswith("dfd"):
        return "ktx2.dfd"
    if fld.startswith("kvd"):
        return "ktx2.kvd"
    if fld.startswith("sgd") or fld == "supercompressionScheme":
        return "ktx2.supercompression"
    return "ktx2.header"


def _parse(ctx: AssetContext) -> list[Issue]:
    """All KTX2 issues of the file, computed once."""
    if "ktx2-issues" in ctx.cache:
        return ctx.cache["ktx2-issues"]
    out: list[Issue] = []
    ctx.cache["ktx2-issues"] = out
    ktx, err = ctx.ktx2()
    if err is not None:
        fld = getattr(err, "field", None) or "header"
        msg = getattr(err, "reason", None) or str(err)
        out.append(ctx.issue(_rule_for_field(fld), "error", fld, msg))
    data = ctx.data()
    if len(data) < _HEADER.size or data[:12] != IDENTIFIER:
        return out
    (_, vk_format, type_size, width, height, depth, layers, faces, level_count, scheme,
     dfd_off, dfd_len, kvd_off, kvd_len, sgd_off, sgd_len) = _HEADER.unpack_from(data)
    n_levels = max(1, level_count)
    index_end = 80 + 24 * n_levels
    if len(data) < index_end:
        return out

    def add(code: str, sev: str, fld: str, msg: str) -> None:
        out.append(ctx.issue(code, sev, fld, msg))

    # header (3xxx) rules the reader does not apply
    block = ktx.format if ktx is not None else None
    compressed = block is not None and (block.block_width > 1 or block.block_height > 1)
    if compressed and level_count == 0:
        add("ktx2.mip-chain", "error", "levelCount", "levelCount 0 (generate mips) is not allowed for "
                                                     "block-compressed formats")
    if compressed and height == 0:
        add("ktx2.header", "error", "pixelHeight", "a block-compressed format needs pixelHeight > 0")
    if depth and layers:
        add("ktx2.header", "warning", "layerCount", "a 3D array texture: no graphics API supports these")
    if faces == 6 and depth:
        add("ktx2.header", "error", "pixelDepth", "a cube map must have pixelDepth 0")
    # index layout (3020-3028)
    if dfd_len == 0 or dfd_off == 0:
        add("ktx2.index", "error", "dfdByteOffset", "the Data Format Descriptor is mandatory")
    elif dfd_off != index_end:
        add("ktx2.index", "error", "dfdByteOffset",
            f"{dfd_off}: the DFD must immediately follow the level index (at {index_end})")
    if kvd_len == 0 and kvd_off != 0:
        add("ktx2.index", "error", "kvdByteOffset", f"{kvd_off}: must be 0 when kvdByteLength is 0")
    elif kvd_len and kvd_off != dfd_off + dfd_len:
        add("ktx2.index", "error", "kvdByteOffset",
            f"{kvd_off}: the key/value data must immediately follow the DFD (at {dfd_off + dfd_len})")
    if sgd_len == 0 and sgd_off != 0:
        add("ktx2.index", "error", "sgdByteOffset", f"{sgd_off}: must be 0 when sgdByteLength is 0")
    elif sgd_len:
        after = max(index_end, dfd_off + dfd_len, kvd_off + kvd_len)
        want = after + (-after) % 8
        if sgd_off != want:
            add("ktx2.index", "error", "sgdByteOffset",
                f"{sgd_off}: the supercompression global data must follow at the next 8-byte boundary ({want})")
    if scheme == 1 and sgd_len == 0:
        add("ktx2.supercompression", "error", "sgdByteLength", "BasisLZ needs supercompression global data")
    # level index (4001-4003): data sorted smallest level first, aligned
    levels = [struct.unpack_from("<3Q", data, 80 + 24 * i) for i in range(n_levels)]
    texel_block = block.bytes_per_block if block is not None else 16
    align = 1 if scheme != 0 else math.lcm(texel_block, 4)
    for i, (off, length, _) in enumerate(levels):
        if length and off % align:
            add("ktx2.level-index", "error", f"levels[{i}].byteOffset",
                f"{off} is not aligned to {align} bytes (lcm of the texel block size and 4)")
    for i in range(1, n_levels):
        if levels[i][1] and levels[i - 1][1] and levels[i][0] >= levels[i - 1][0]:
            add("ktx2.level-index", "error", f"levels[{i}].byteOffset",
                f"level {i} data lies at or after level {i - 1}'s: levels must be stored smallest first")
            break
    # padding between parts must be zero (7011)
    spans = sorted([(0, index_end), (dfd_off, dfd_off + dfd_len), (kvd_off, kvd_off + kvd_len),
                    (sgd_off, sgd_off + sgd_len)] + [(o, o + n) for o, n, _ in levels if n])
    pos = 0
    for start, end in spans:
        if start > pos and start <= len(data) and any(data[pos:start]):
            add("ktx2.padding", "error", f"byte {pos}", f"padding bytes {pos}..{start} are not all zero")
        pos = max(pos, end)
    kpos, kend, entry = kvd_off, kvd_off + kvd_len, 0
    while kvd_len and kend - kpos >= 4 and kend <= len(data):
        (size,) = struct.unpack_from("<I", data, kpos)
        if size == 0 or kpos + 4 + size > kend:
            break
        pad_start = kpos + 4 + size
        pad_end = min(kend, pad_start + (-(4 + size)) % 4)
        if any(data[pad_start:pad_end]):
            add("ktx2.padding", "error", f"kvd[{entry}] padding", f"padding bytes {pad_start}..{pad_end} after "
                                                                 "the entry are not all zero")
        kpos, entry = pad_end, entry + 1
    # key/value data (7xxx)
    if ktx is not None:
        _check_kvd(ctx, ktx, vk_format, add)
        _inflate(ctx, ktx, scheme, add)
        _support(ctx, ktx, add)
    return out


def _check_kvd(ctx: AssetContext, ktx: Any, vk_format: int, add: Any) -> None:
    """Key order, reserved keys and the values of the known ``KTX*`` keys."""
    keys = list(ktx.kvd)
    if keys != sorted(keys, key=lambda k: k.encode("utf-8")):
        add("ktx2.kvd", "error", "kvd", "key/value entries are not sorted by key")
    for i, key in enumerate(keys):
        value = ktx.kvd[key]
        fld = f"kvd[{i}]({key})"
        if key[:3].lower() == "ktx" and key not in _KNOWN_KEYS:
            add("ktx2.kvd", "error", fld, f"unknown key {key!r}: keys starting with 'KTX'/'ktx' are reserved")
        if key == "KTXorientation":
            dims = 1 + (ktx.pixel_height > 0) + (ktx.pixel_depth > 0)
            text = value[:-1].decode("latin-1") if value.endswith(b"\0") else None
            if text is None:
                add("ktx2.kvd", "error", fld, "value is not NUL-terminated")
            elif not re.fullmatch(("[rl]", "[rl][du]", "[rl][du][oi]")[dims - 1], text):
                add("ktx2.kvd", "error", fld, f"{text!r} is not a valid orientation for a {dims}D texture")
        elif key == "KTXswizzle":
            if len(value) != 5 or not value.endswith(b"\0"):
                add("ktx2.kvd", "error", fld, "value must be 4 characters and a NUL")
            elif not re.fullmatch(b"[rgba01]{4}", value[:4]):
                add("ktx2.kvd", "error", fld, f"{value[:4]!r} does not match [rgba01]{{4}}")
        elif key in ("KTXwriter", "KTXwriterScParams", "KTXastcDecodeMode") and not value.endswith(b"\0"):
            add("ktx2.kvd", "error", fld, "value is not NUL-terminated")
        elif key == "KTXcubemapIncomplete" and (len(value) != 1 or value[0] & 0xC0 or not value[0]):
            add("ktx2.kvd", "error", fld, "value must be one byte with some of the low six bits set")
        elif key == "KTXanimData" and (len(value) != 12 or not ktx.layer_count):
            add("ktx2.kvd", "error", fld, "needs 12 bytes and an array texture")
        elif key in ("KTXglFormat", "KTXdxgiFormat__", "KTXmetalPixelFormat") and vk_format != 0:
            add("ktx2.kvd", "error", fld, f"{key} is only allowed with vkFormat 0 (UNDEFINED)")
    if "KTXwriterScParams" in ktx.kvd and "KTXwriter" not in ktx.kvd:
        add("ktx2.kvd", "error", "kvd", "KTXwriterScParams is present but KTXwriter is missing")
    elif "KTXwriter" not in ktx.kvd:
        add("ktx2.writer", "warning", "kvd", "KTXwriter is missing: writers should identify themselves")


def _inflate(ctx: AssetContext, ktx: Any, scheme: int, add: Any) -> None:
    if scheme not in (2, 3):
        return
    for lv in ktx.levels:
        try:
            ktx.level_data(lv.index)
        except Exception as exc:
            add("ktx2.supercompression", "error", f"levels[{lv.index}]",
                getattr(exc, "reason", None) or str(exc))


def _support(ctx: AssetContext, ktx: Any, add: Any) -> None:
    """Whether the level data can reach a GPU here: BasisLZ/UASTC need the Basis transcoder. (Whether this device
    samples the format is proved by the ``gpu.round-trip`` rule, which uploads the texture with ``--gpu``.)"""
    from ..formats.ktx2 import has_basis_transcoder

    if ktx.transcode_codec is not None and not has_basis_transcoder():
        add("ktx2.device-support", "error", "supercompressionScheme",
            f"{ktx.scheme_name} needs a Basis transcoder: install vixen-assets[basis]")


_RULES = {
    "ktx2.identifier": ("error", "the file starts with the KTX 2.0 identifier"),
    "ktx2.header": ("error", "header fields (vkFormat, typeSize, sizes, faceCount, levelCount) are valid"),
    "ktx2.index": ("error", "DFD, key/value data and SGD follow each other at the required offsets"),
    "ktx2.level-index": ("error", "level offsets and lengths fit the file, are aligned and stored smallest first"),
    "ktx2.mip-chain": ("error", "the mip chain fits the texture and block-compressed files store their levels"),
    "ktx2.sizes": ("error", "the levels' total size is within the reader's limit"),
    "ktx2.dfd": ("error", "the Data Format Descriptor describes the vkFormat"),
    "ktx2.kvd": ("error", "key/value entries are well formed, sorted, and reserved keys hold valid values"),
    "ktx2.writer": ("warning", "KTXwriter names the tool that wrote the file"),
    "ktx2.padding": ("error", "padding bytes between parts are zero"),
    "ktx2.supercompression": ("error", "supercompression global data and compressed levels are valid"),
    "ktx2.device-support": ("error", "the format can be sampled, decoded or transcoded here"),
}


@hookimpl
def vixen_register_validators(register: Any) -> None:
    """Register the ``ktx2.*`` rules."""
    register_parsed_rules(register, _RULES, _parse, (".ktx2",))
