"""KTX 2.0 container reader: header, indices, Data Format Descriptor, key/value data, supercompressed levels.

No usable libktx binding installs here (``pyktx`` 4.4.2 is a source archive whose build needs an installed
KTX-Software libktx and ``LIBKTX_VERSION``; there is no wheel), so the container is parsed by this project, following
the KTX 2.0 specification. Every offset and length is checked against the file
size and against the size the declared dimensions and format imply *before* anything is allocated or decompressed:
a Zstandard frame must declare the expected size (or none) and inflates with ``max_output_size`` = the level size, a
zlib stream inflates through ``decompressobj`` with ``max_length``. Anything malformed raises
:class:`~vixen_assets.errors.FormatError` naming the file and the field (``levels[2].byteOffset``, ``dfd.colorModel``).

Transcoding: BasisLZ/ETC1S and UASTC payloads (``vkFormat`` 0) are parsed but need a Basis Universal transcoder. The
optional ``alktx2`` package (PyPI, bundles basisu) is used by :func:`decode_to_rgba8` when it is installed; without it
those files raise :class:`~vixen_assets.errors.UnsupportedFormatError` naming the scheme. Other compressed formats
are decoded on the CPU with ``texture2ddecoder`` (BC4/5/6H/7, ETC2, EAC, ASTC) or numpy (BC1-3, uncompressed), so a
device lacking a format can upload RGBA8 instead (``R8G8B8A8_SRGB`` when the source is sRGB).
"""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zstandard
from PIL import Image

from vixen_assets.errors import FormatError, OutOfRangeError, UnsupportedFormatError
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

try:  # optional Basis Universal transcoder
    import alktx2 as _alktx2
except ImportError:  # pragma: no cover - depends on the environment
    _alktx2 = None  # type: ignore[assignment]

__all__ = [
    "IDENTIFIER",
    "SUPERCOMPRESSION_NAMES",
    "Ktx2Dfd",
    "Ktx2File",
    "Ktx2Index",
    "Ktx2Level",
    "Ktx2Sample",
    "decode_to_rgba8",
    "has_basis_transcoder",
    "read_ktx2",
]

IDENTIFIER = b"\xabKTX 20\xbb\r\n\x1a\n"
SUPERCOMPRESSION_NAMES = {0: "none", 1: "BasisLZ", 2: "Zstandard", 3: "ZLIB"}
MAX_DIMENSION = 65536
MAX_LAYERS = 65536
DEFAULT_MAX_BYTES = 1 << 32
"""Default cap on the decompressed bytes of all levels together (4 GiB); ``read_ktx2(max_bytes=...)`` changes it."""
_METADATA_SLACK = 1 << 26

MODEL_NAMES = {
    0: "UNSPECIFIED", 1: "RGBSDA", 2: "YUVSDA", 3: "YIQSDA", 4: "LabSDA", 5: "CMYKA", 6: "XYZW", 7: "HSVA_ANG",
    8: "HSLA_ANG", 9: "HSVA_HEX", 10: "HSLA_HEX", 11: "YCgCoA", 12: "YCCBCCRC", 13: "ICTCP", 14: "CIEXYZ",
    15: "CIEXYY", 128: "BC1A", 129: "BC2", 130: "BC3", 131: "BC4", 132: "BC5", 133: "BC6H", 134: "BC7", 160: "ETC1",
    161: "ETC2", 162: "ASTC", 163: "ETC1S", 164: "PVRTC", 165: "PVRTC2", 166: "UASTC", 167: "UASTC_HDR_4x4",
    168: "UASTC_HDR_6x6",
}
TRANSFER_NAMES = {
    0: "UNSPECIFIED", 1: "LINEAR", 2: "SRGB", 3: "ITU", 4: "NTSC", 5: "SLOG", 6: "SLOG2", 7: "BT1886", 8: "HLG_OETF",
    9: "HLG_EOTF", 10: "PQ_EOTF", 11: "PQ_OETF", 12: "DCIP3", 13: "PAL_OETF", 14: "PAL625_EOTF", 15: "ST240",
    16: "ACESCC", 17: "ACESCCT", 18: "ADOBERGB",
}
PRIMARIES_NAMES = {
    0: "UNSPECIFIED", 1: "BT709", 2: "BT601_EBU", 3: "BT601_SMPTE", 4: "BT2020", 5: "CIEXYZ", 6: "ACES", 7: "ACESCC",
    8: "NTSC1953", 9: "PAL525", 10: "DISPLAYP3", 11: "ADOBERGB",
}
MODEL_ETC1S, MODEL_UASTC, TRANSFER_SRGB = 163, 166, 2
_BC_MODELS = {"BC1": 128, "BC2": 129, "BC3": 130, "BC4": 131, "BC5": 132, "BC6H": 133, "BC7": 134}
# UASTC LDR is stored as 4x4 blocks of 16 bytes, so its level sizes are known without a transcoder.
_UASTC = FormatInfo(0, "UASTC_4x4", 4, 4, 1, 16, True, False, "uastc", "UNORM", 1)
_HEADER = struct.Struct("<12s9I4I2Q")
_UASTC_HDR_MODELS = {"ASTC_4x4_SFLOAT_BLOCK": 167, "ASTC_6x6_SFLOAT_BLOCK": 168}  # UASTC HDR is plain ASTC HDR
_NAMES = {info.name for info in FORMATS.values()}
_HAS_SRGB_VARIANT = frozenset(info.vk_format for info in FORMATS.values()
                              if "UNORM" in info.name and info.name.replace("UNORM", "SRGB", 1) in _NAMES)


def has_basis_transcoder() -> bool:
    """Whether the optional ``alktx2`` transcoder is importable (BasisLZ/ETC1S and UASTC decode)."""
    return _alktx2 is not None


@dataclass(frozen=True, slots=True)
class Ktx2Index:
    """Where the Data Format Descriptor, key/value data and supercompression global data lie in the file."""

    dfd_byte_offset: int
    dfd_byte_length: int
    kvd_byte_offset: int
    kvd_byte_length: int
    sgd_byte_offset: int
    sgd_byte_length: int


@dataclass(frozen=True, slots=True)
class Ktx2Level:
    """One mip level: its place in the file and its extent (1D/2D levels have ``height``/``depth`` 1)."""

    index: int
    byte_offset: int
    byte_length: int
    uncompressed_byte_length: int
    width: int
    height: int
    depth: int


@dataclass(frozen=True, slots=True)
class Ktx2Sample:
    """One sample of the basic descriptor block: which bits hold which channel."""

    bit_offset: int
    bit_length: int
    channel_type: int
    qualifiers: int
    """``0x80`` float, ``0x40`` signed, ``0x20`` exponent, ``0x10`` linear."""
    sample_position: tuple[int, int, int, int]
    sample_lower: int
    sample_upper: int


@dataclass(frozen=True, slots=True)
class Ktx2Dfd:
    """The basic Data Format Descriptor block (Khronos Data Format 1.3)."""

    vendor_id: int
    descriptor_type: int
    version_number: int
    descriptor_block_size: int
    color_model: int
    color_primaries: int
    transfer_function: int
    flags: int
    texel_block_dimensions: tuple[int, int, int, int]
    """Texel block size per axis (the stored value plus one)."""
    bytes_plane: tuple[int, ...]
    samples: tuple[Ktx2Sample, ...]

    @property
    def color_model_name(self) -> str:
        """``KHR_DF_MODEL_*`` name without the prefix, e.g. ``UASTC``."""
        return MODEL_NAMES.get(self.color_model, str(self.color_model))

    @property
    def transfer_function_name(self) -> str:
        """``KHR_DF_TRANSFER_*`` name without the prefix, e.g. ``SRGB``."""
        return TRANSFER_NAMES.get(self.transfer_function, str(self.transfer_function))

    @property
    def color_primaries_name(self) -> str:
        """``KHR_DF_PRIMARIES_*`` name without the prefix, e.g. ``BT709``."""
        return PRIMARIES_NAMES.get(self.color_primaries, str(self.color_primaries))

    @property
    def is_srgb(self) -> bool:
        """Whether the transfer function is sRGB."""
        return self.transfer_function == TRANSFER_SRGB

    @property
    def premultiplied_alpha(self) -> bool:
        """Whether ``KHR_DF_FLAG_ALPHA_PREMULTIPLIED`` is set."""
        return bool(self.flags & 1)


@dataclass(eq=False, repr=False)
class Ktx2File:
    """A parsed, validated KTX2 file; level data is sliced or inflated on demand.

    Header fields keep their spec names in snake case (``layer_count`` 0 means "not an array", ``pixel_depth`` 0
    "not 3D", ``level_count`` 0 "generate mips", so :attr:`levels` then holds one level). For UASTC files
    :meth:`level_data` returns the UASTC blocks (16 bytes per 4x4 texels); only a transcoder makes texels of them.
    """

    path: str | None
    vk_format: int
    type_size: int
    pixel_width: int
    pixel_height: int
    pixel_depth: int
    layer_count: int
    face_count: int
    level_count: int
    supercompression_scheme: int
    index: Ktx2Index
    dfd: Ktx2Dfd
    kvd: dict[str, bytes]
    sgd: bytes
    levels: list[Ktx2Level]
    format: FormatInfo | None
    """The table entry of ``vk_format``; ``None`` for ``VK_FORMAT_UNDEFINED`` (BasisLZ/UASTC payloads)."""
    max_bytes: int
    _data: bytes = field(repr=False)
    _block: FormatInfo | None = field(repr=False)
    _cache: tuple[int, bytes] | None = field(default=None, repr=False)
    _declared: int | None = field(default=None, repr=False)  # ``declared_bytes()``, computed by the parser

    def __repr__(self) -> str:
        name = self.format.name if self.format else self.transcode_codec
        dims = "x".join(str(d) for d in (self.pixel_width, self.pixel_height, self.pixel_depth) if d)
        return (f'<Ktx2File "{self.path or "<bytes>"}" {name} {dims} layers={self.layer_count} '
                f"faces={self.face_count} levels={len(self.levels)} {self.scheme_name}>")

    @property
    def is_cube(self) -> bool:
        """Whether the texture is a cube map (six faces)."""
        return self.face_count == 6

    @property
    def is_array(self) -> bool:
        """Whether the texture is an array texture (``layerCount`` > 0)."""
        return self.layer_count > 0

    @property
    def is_3d(self) -> bool:
        """Whether the texture is a 3D texture (``pixelDepth`` > 0)."""
        return self.pixel_depth > 0

    @property
    def scheme_name(self) -> str:
        """The supercompression scheme's name (``none``, ``BasisLZ``, ``Zstandard``, ``ZLIB``)."""
        return SUPERCOMPRESSION_NAMES[self.supercompression_scheme]

    @property
    def transcode_codec(self) -> str | None:
        """``BasisLZ/ETC1S`` or ``UASTC`` when the payload needs a Basis Universal transcoder, else ``None``."""
        if self.vk_format != 0:
            return None
        return "BasisLZ/ETC1S" if self.dfd.color_model == MODEL_ETC1S else MODEL_NAMES[self.dfd.color_model]

    @property
    def is_srgb(self) -> bool:
        """Whether texel values are sRGB-encoded."""
        return self.format.is_srgb if self.format else self.dfd.is_srgb

    @property
    def decode_target(self) -> int | None:
        """The ``VkFormat`` :func:`decode_to_rgba8` yields by default (43 sRGB, 37 UNORM), or ``None`` if it can't."""
        if self.format is None:
            ok = _alktx2 is not None and self.dfd.color_model in (MODEL_ETC1S, MODEL_UASTC)
            return (R8G8B8A8_SRGB if self.dfd.is_srgb else R8G8B8A8_UNORM) if ok else None
        return self.format.decode_target

    @property
    def images_per_level(self) -> int:
        """Number of 2D/3D images in each level: ``max(1, layerCount) * faceCount``."""
        return max(1, self.layer_count) * self.face_count

    def _level(self, level: int) -> Ktx2Level:
        if not 0 <= level < len(self.levels):
            raise OutOfRangeError(f"level {level} out of range (the file has {len(self.levels)})")
        return self.levels[level]

    def image_size(self, level: int) -> int:
        """Bytes of one image (all z-slices of one layer and face) of ``level`` after supercompression is undone.

        :param level: mip level index.
        """
        lv = self._level(level)
        if self._block is None:
            return lv.uncompressed_byte_length // self.images_per_level
        return level_size(self._block, lv.width, lv.height, lv.depth)

    def declared_bytes(self) -> int:
        """Bytes of every level together once supercompression is undone, as the header declares them (what
        inflating the file takes in memory and what a native upload takes on the GPU), computed without inflating.
        BasisLZ files (no declared size) count 16 bytes per 4x4 block, the transcoded size."""
        if self._declared is not None:
            return self._declared
        if self._block is None:
            return sum(level_size(_UASTC, lv.width, lv.height, lv.depth) for lv in self.levels) * \
                self.images_per_level
        return sum(level_size(self._block, lv.width, lv.height, lv.depth) for lv in self.levels) * \
            self.images_per_level

    def decoded_bytes(self) -> int:
        """Bytes of every level decoded to RGBA8 (4 bytes a texel): the memory :func:`decode_to_rgba8` needs for the
        whole file and the GPU bytes of the decoded image, computed from the header alone."""
        return sum(lv.width * lv.height * lv.depth * 4 for lv in self.levels) * self.images_per_level

    def level_data(self, level: int) -> bytes:
        """The whole level (every layer, face and z-slice, in KTX2 order) with supercompression undone.

        :param level: mip level index.
        :raises UnsupportedFormatError: for BasisLZ, whose ETC1S slices only a transcoder can expand.
        :raises FormatError: when the supercompressed payload is corrupt or inflates to the wrong size.
        """
        if self._cache is not None and self._cache[0] == level:
            return self._cache[1]
        lv = self._level(level)
        raw = memoryview(self._data)[lv.byte_offset: lv.byte_offset + lv.byte_length]
        where = f"levels[{level}]"
        scheme = self.supercompression_scheme
        if scheme == 0:
            return bytes(raw)
        if scheme == 1:
            raise UnsupportedFormatError(
                "BasisLZ supercompression: the level holds ETC1S slices that need a Basis Universal transcoder; "
                "use decode_to_rgba8 (needs the optional 'alktx2' package)",
                path=self.path, field="supercompressionScheme")
        expected = lv.uncompressed_byte_length
        out = _inflate_zstd(raw, expected, self.path, where) if scheme == 2 else _inflate_zlib(
            raw, expected, self.path, where)
        self._cache = (level, out)
        return out

    def level_into(self, level: int, out: Any) -> None:
        """Write the whole level, as :meth:`level_data` returns it, into ``out`` (a writable buffer of exactly the
        level's uncompressed size): Zstandard inflates straight into it, no intermediate copy of the level.

        :param level: mip level index.
        :param out: the destination (for example a slice of a texture's payload array).
        :raises UnsupportedFormatError: for BasisLZ (see :meth:`level_data`).
        :raises FormatError: when the payload is corrupt or inflates to another size than ``out``.
        """
        out = memoryview(out).cast("B")  # numpy slices too (a staging buffer's mapped bytes)
        lv = self._level(level)
        scheme = self.supercompression_scheme
        expected = lv.uncompressed_byte_length
        if scheme == 2 and expected <= SMALL_LEVEL and len(out) == expected:
            # the common case in one call (a file of hundreds of small textures pays this per level, under the
            # GIL): a frame that inflates to exactly the declared size is valid; anything else takes the checked
            # path below, which names what is wrong
            frame = memoryview(self._data)[lv.byte_offset:lv.byte_offset + lv.byte_length]
            try:
                data = _decompressor().decompress(frame, max_output_size=expected)
            except zstandard.ZstdError:
                data = b""
            if len(data) == expected:
                out[:] = data
                return
        if scheme != 2 or (self._cache is not None and self._cache[0] == level):
            # no supercompression: a view of the file, copied once into ``out``; zlib / cached: the inflated bytes
            data = (memoryview(self._data)[lv.byte_offset: lv.byte_offset + lv.byte_length] if scheme == 0
                    else self.level_data(level))
            if len(data) != len(out):
                raise FormatError(f"level holds {len(data)} bytes, {len(out)} expected", path=self.path,
                                  field=f"levels[{level}].uncompressedByteLength")
            out[:] = data
            return
        raw = memoryview(self._data)[lv.byte_offset: lv.byte_offset + lv.byte_length]
        where = f"levels[{level}]"
        expected = lv.uncompressed_byte_length
        if len(out) != expected:
            raise FormatError(f"level holds {expected} bytes, {len(out)} expected", path=self.path,
                              field=f"{where}.uncompressedByteLength")
        try:
            declared = zstandard.frame_content_size(raw)
        except zstandard.ZstdError as exc:
            raise FormatError(f"not a Zstandard frame ({exc})", path=self.path, field=f"{where}.data") from None
        if declared not in (-1, expected):
            raise FormatError(f"Zstandard frame declares {declared} bytes, expected {expected}", path=self.path,
                              field=f"{where}.uncompressedByteLength")
        dctx = _decompressor()
        if expected <= SMALL_LEVEL:  # small levels: one call (a stream reader's setup costs more than the copy)
            try:
                data = dctx.decompress(raw, max_output_size=expected)
            except zstandard.ZstdError as exc:
                raise FormatError(f"corrupt Zstandard data ({exc})", path=self.path, field=f"{where}.data") from None
            if len(data) != expected:
                raise FormatError(f"corrupt Zstandard data (inflated to {len(data)} of {expected} bytes)",
                                  path=self.path, field=f"{where}.data")
            out[:] = data
            return
        done = 0
        try:
            # the whole frame handed over at once (read_size): with the default 128 KiB input steps a 4 MiB BC7
            # level inflated in 9.1 ms, with one step in 6.7 ms, and two threads then run 1.7x as fast as one
            with dctx.stream_reader(raw, read_size=max(1, len(raw)), read_across_frames=False) as reader:
                while done < expected:
                    n = reader.readinto(out[done:])
                    if not n:
                        break
                    done += n
                extra = reader.read(1) if done == expected else b""
        except zstandard.ZstdError as exc:
            raise FormatError(f"corrupt Zstandard data ({exc})", path=self.path, field=f"{where}.data") from None
        if extra:
            raise FormatError(f"inflated to more than {expected} bytes", path=self.path,
                              field=f"{where}.uncompressedByteLength")
        if done != expected:  # the frame declared the right size (checked above): its data is cut short
            raise FormatError(f"corrupt Zstandard data (truncated: {done} of {expected} bytes)", path=self.path,
                              field=f"{where}.data")

    def image_data(self, level: int, layer: int = 0, face: int = 0) -> memoryview:
        """One image of a level: the 2D image, or every z-slice of a 3D level, of one layer and face.

        :param level: mip level index.
        :param layer: array layer (0 for non-array textures).
        :param face: cube face 0..5 (+X, -X, +Y, -Y, +Z, -Z), 0 for non-cube textures.
        :returns: a read-only view (of the file buffer itself when there is no supercompression).
        """
        lv = self._level(level)
        if not 0 <= layer < max(1, self.layer_count):
            raise OutOfRangeError(f"layer {layer} out of range (layerCount {self.layer_count})")
        if not 0 <= face < self.face_count:
            raise OutOfRangeError(f"face {face} out of range (faceCount {self.face_count})")
        size = self.image_size(level)
        start = (layer * self.face_count + face) * size
        if self.supercompression_scheme == 0:
            return memoryview(self._data)[lv.byte_offset + start: lv.byte_offset + start + size]
        return memoryview(self.level_data(level))[start: start + size]

    def header_summary(self) -> dict[str, Any]:
        """A JSON-ready description of the header, DFD, key/value data and levels (for ``texture info``)."""
        kind = "3D" if self.is_3d else "cube" if self.is_cube else "1D" if self.pixel_height == 0 else "2D"
        return {
            "path": self.path,
            "fileSize": len(self._data),
            "vkFormat": self.vk_format,
            "format": self.format.name if self.format else "UNDEFINED",
            "typeSize": self.type_size,
            "pixelWidth": self.pixel_width,
            "pixelHeight": self.pixel_height,
            "pixelDepth": self.pixel_depth,
            "layerCount": self.layer_count,
            "faceCount": self.face_count,
            "levelCount": self.level_count,
            "supercompressionScheme": self.scheme_name,
            "textureType": f"{kind} array" if self.is_array else kind,
            "colorModel": self.dfd.color_model_name,
            "colorPrimaries": self.dfd.color_primaries_name,
            "transferFunction": self.dfd.transfer_function_name,
            "premultipliedAlpha": self.dfd.premultiplied_alpha,
            "texelBlockDimensions": list(self.dfd.texel_block_dimensions[:3]),
            "bytesPlane0": self.dfd.bytes_plane[0],
            "samples": len(self.dfd.samples),
            "transcode": self.transcode_codec,
            "decodeTarget": self.decode_target,
            "keyValueData": {k: _kv_text(v) for k, v in self.kvd.items()},
            "sgdByteLength": self.index.sgd_byte_length,
            "levels": [
                {"level": lv.index, "width": lv.width, "height": lv.height, "depth": lv.depth,
                 "byteOffset": lv.byte_offset, "byteLength": lv.byte_length,
                 "uncompressedByteLength": lv.uncompressed_byte_length}
                for lv in self.levels
            ],
        }


def _kv_text(value: bytes) -> str:
    text = value[:-1] if value.endswith(b"\0") else value
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return value.hex()
    return decoded if decoded.isprintable() else value.hex()


# ----------------------------------------------------------------------------------------------------------- parsing


def read_ktx2(
    path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    path: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Ktx2File:
    """Parse and validate a KTX2 file without inflating any level.

    :param path_or_bytes: a file path, or the file's bytes.
    :param path: the name used in error messages (defaults to the path given).
    :param max_bytes: largest total the levels may inflate to; a file implying more raises :class:`FormatError`.
    :returns: the parsed file.
    :raises FormatError: for anything malformed, naming the field.
    :raises UnsupportedFormatError: for a well-formed file using a format or scheme this reader cannot handle.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
    else:
        path = path if path is not None else os.fspath(path_or_bytes)
        try:
            fh = open(path_or_bytes, "rb")
        except FileNotFoundError:
            raise FormatError("file not found", path=path) from None
        except OSError as exc:
            raise FormatError(f"cannot read the file: {exc.strerror}", path=path) from exc
        with fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes + _METADATA_SLACK:  # levels are at most max_bytes; headers, KVD and SGD are small
                raise FormatError(f"{size} bytes is more than a KTX2 file within max_bytes={max_bytes} can hold",
                                  path=path, field="fileSize")
            data = fh.read()
    return _Parser(data, path, max_bytes).parse()


class _Parser:
    """Checks one file in order: header, level index, DFD, format, key/value data, sgd, levels."""

    def __init__(self, data: bytes, path: str | None, max_bytes: int) -> None:
        self.data, self.path, self.max_bytes = data, path, max_bytes

    def fail(self, message: str, fld: str) -> FormatError:
        return FormatError(message, path=self.path, field=fld)

    def span(self, offset: int, length: int, fld: str) -> None:
        if offset > len(self.data):
            raise self.fail(f"offset {offset} is past the end of the {len(self.data)}-byte file", fld)
        if offset + length > len(self.data):
            raise self.fail(f"{length} bytes at offset {offset} run past the end of the {len(self.data)}-byte file",
                            fld)

    def parse(self) -> Ktx2File:
        data = self.data
        if len(data) < _HEADER.size:
            raise self.fail(f"file is {len(data)} bytes, shorter than the 80-byte KTX2 header", "header")
        (ident, vk_format, type_size, width, height, depth, layers, faces, level_count, scheme,
         dfd_off, dfd_len, kvd_off, kvd_len, sgd_off, sgd_len) = _HEADER.unpack_from(data)
        if ident != IDENTIFIER:
            raise self.fail("not a KTX2 file (bad identifier)", "identifier")
        self.check_header(vk_format, width, height, depth, layers, faces, level_count, scheme)
        n_levels = max(1, level_count)
        self.span(80, 24 * n_levels, "levelIndex")
        index = Ktx2Index(dfd_off, dfd_len, kvd_off, kvd_len, sgd_off, sgd_len)
        # a DFD (and KVD) seen before with the same format fields passed every check below then: the parsed,
        # immutable results are reused (hundreds of files written by one tool share them; ~15 µs a file)
        dfd_key = (data[dfd_off:dfd_off + dfd_len], vk_format, type_size, scheme)
        seen = _SEEN_DFDS.get(dfd_key) if dfd_len >= 28 and dfd_off + dfd_len <= len(data) else None
        if seen is None:
            dfd = self.parse_dfd(dfd_off, dfd_len)
            info, block = self.resolve_format(vk_format, type_size, scheme, dfd)
            self.check_dfd(dfd, info, scheme)
            _remember(_SEEN_DFDS, dfd_key, (dfd, info, block))
        else:
            dfd, info, block = seen
        self.span(kvd_off, kvd_len, "kvdByteOffset")
        kvd_bytes = data[kvd_off:kvd_off + kvd_len]
        seen_kvd = _SEEN_KVDS.get(kvd_bytes) if kvd_len <= 4096 else None
        if seen_kvd is None:
            kvd = self.parse_kvd(kvd_off, kvd_len)
            if kvd_len <= 4096:
                _remember(_SEEN_KVDS, kvd_bytes, dict(kvd))
        else:
            kvd = dict(seen_kvd)  # a copy: the file's dict is its own
        self.span(sgd_off, sgd_len, "sgdByteOffset")
        if scheme != 1 and sgd_len:
            raise self.fail(f"{SUPERCOMPRESSION_NAMES[scheme]} files carry no supercompression global data",
                            "sgdByteLength")
        images = max(1, layers) * faces
        sizing = block or _UASTC
        shape_key = (width, height, depth, n_levels, sizing)
        shape = _SEEN_SHAPES.get(shape_key)
        if shape is None:  # the level extents and sizes of one shape, computed once (the checks below reuse them)
            extents = tuple((max(1, width >> i), max(1, height >> i), max(1, depth >> i)) for i in range(n_levels))
            shape = (extents, tuple(level_size(sizing, *e) for e in extents))
            _remember(_SEEN_SHAPES, shape_key, shape)
        extents, per_image = shape
        total = sum(per_image) * images
        if total > self.max_bytes:
            raise self.fail(f"{width}x{height}x{depth} texels x {images} images x {n_levels} levels make {total} "
                            f"bytes, over the {self.max_bytes}-byte limit",
                            "pixelWidth*pixelHeight*pixelDepth*layerCount*faceCount")
        regions = [(0, 80, "header"), (80, 80 + 24 * n_levels, "levelIndex"),
                   (dfd_off, dfd_off + dfd_len, "dfdByteOffset"), (kvd_off, kvd_off + kvd_len, "kvdByteOffset"),
                   (sgd_off, sgd_off + sgd_len, "sgdByteOffset")]
        levels = []
        for i, (w, h, d) in enumerate(extents):
            off, length, ulen = struct.unpack_from("<3Q", data, 80 + 24 * i)
            expected = None if block is None else per_image[i] * images  # sizing is block when block is set
            self.check_level(i, off, length, ulen, expected, scheme)
            levels.append(Ktx2Level(i, off, length, ulen, w, h, d))
        self.check_overlaps(regions, levels)
        sgd = data[sgd_off: sgd_off + sgd_len]
        if scheme == 1:
            self.check_basislz_sgd(sgd, levels, images)
        return Ktx2File(self.path, vk_format, type_size, width, height, depth, layers, faces, level_count, scheme,
                        index, dfd, kvd, sgd, levels, info, self.max_bytes, data, block, _declared=total)

    def check_header(self, vk_format: int, width: int, height: int, depth: int, layers: int, faces: int,
                     level_count: int, scheme: int) -> None:
        for name, value in (("pixelWidth", width), ("pixelHeight", height), ("pixelDepth", depth)):
            if value > MAX_DIMENSION:
                raise self.fail(f"{value} is over the {MAX_DIMENSION}-texel limit", name)
        if width == 0:
            raise self.fail("must be at least 1", "pixelWidth")
        if depth and not height:
            raise self.fail("a 3D texture (pixelDepth > 0) needs pixelHeight > 0", "pixelHeight")
        if layers > MAX_LAYERS:
            raise self.fail(f"{layers} is over the {MAX_LAYERS}-layer limit", "layerCount")
        if faces not in (1, 6):
            raise self.fail(f"{faces}: must be 1 or 6", "faceCount")
        if faces == 6 and (width != height or depth):
            raise self.fail(f"a cube map needs square 2D faces, got {width}x{height}x{depth}", "faceCount")
        most = max(width, height, depth).bit_length()
        if level_count > most:
            raise self.fail(f"{level_count} levels, but a {width}x{height}x{depth} texture has at most {most}",
                            "levelCount")
        if scheme not in SUPERCOMPRESSION_NAMES:
            raise UnsupportedFormatError(f"supercompression scheme {scheme} is not supported (known: "
                                         f"{SUPERCOMPRESSION_NAMES})", path=self.path, field="supercompressionScheme")
        if scheme == 1 and vk_format != 0:
            raise self.fail("BasisLZ requires vkFormat 0 (VK_FORMAT_UNDEFINED)", "supercompressionScheme")

    def parse_dfd(self, off: int, length: int) -> Ktx2Dfd:
        if length < 28:
            raise self.fail(f"{length} bytes cannot hold a basic descriptor block (28 at least)", "dfdByteLength")
        self.span(off, length, "dfdByteOffset")
        total, w0, w1, w2, w3, w4, w5 = struct.unpack_from("<7I", self.data, off)
        if total != length:
            raise self.fail(f"dfdTotalSize {total} differs from dfdByteLength {length}", "dfd.dfdTotalSize")
        vendor, dtype, version, size = w0 & 0x1FFFF, w0 >> 17, w1 & 0xFFFF, w1 >> 16
        if vendor != 0:
            raise self.fail(f"first descriptor block has vendor {vendor}, not Khronos (0)", "dfd.vendorId")
        if dtype != 0:
            raise self.fail(f"first descriptor block has type {dtype}, not basic (0)", "dfd.descriptorType")
        if version != 2:
            raise self.fail(f"version {version}, KTX2 requires 2 (Khronos Data Format 1.3)", "dfd.versionNumber")
        if size < 24 or (size - 24) % 16 or size > length - 4:
            raise self.fail(f"block size {size} is not 24 + 16 * samples within {length - 4} bytes",
                            "dfd.descriptorBlockSize")
        samples = []
        for i in range((size - 24) // 16):
            s0, pos, lower, upper = struct.unpack_from("<4I", self.data, off + 28 + 16 * i)
            samples.append(Ktx2Sample(s0 & 0xFFFF, ((s0 >> 16) & 0xFF) + 1, (s0 >> 24) & 0xF, (s0 >> 24) & 0xF0,
                                      tuple((pos >> k) & 0xFF for k in (0, 8, 16, 24)), lower, upper))
        return Ktx2Dfd(vendor, dtype, version, size, w2 & 0xFF, (w2 >> 8) & 0xFF, (w2 >> 16) & 0xFF, w2 >> 24,
                       tuple(((w3 >> k) & 0xFF) + 1 for k in (0, 8, 16, 24)),
                       tuple((w >> k) & 0xFF for w in (w4, w5) for k in (0, 8, 16, 24)), tuple(samples))

    def resolve_format(self, vk_format: int, type_size: int, scheme: int,
                       dfd: Ktx2Dfd) -> tuple[FormatInfo | None, FormatInfo | None]:
        if vk_format == 0:
            if type_size != 1:
                raise self.fail(f"{type_size}: must be 1 for vkFormat 0", "typeSize")
            model = dfd.color_model
            if scheme == 1 and model != MODEL_ETC1S:
                raise self.fail(f"BasisLZ needs DFD color model ETC1S, got {dfd.color_model_name}", "dfd.colorModel")
            if model == MODEL_ETC1S and scheme != 1:
                raise self.fail("ETC1S payloads must use BasisLZ supercompression", "supercompressionScheme")
            if model == MODEL_UASTC:
                return None, _UASTC
            if model == MODEL_ETC1S:
                return None, None
            raise UnsupportedFormatError(f"vkFormat 0 (UNDEFINED) with DFD color model {dfd.color_model_name} is not "
                                         "supported", path=self.path, field="dfd.colorModel")
        if vk_format in KTX2_PROHIBITED:
            raise self.fail(f"VkFormat {vk_format} ({format_info(vk_format).name}) is prohibited in KTX2",
                            "vkFormat")
        try:
            info = format_info(vk_format)
        except UnsupportedFormatError as exc:
            raise UnsupportedFormatError(exc.reason, path=self.path, field="vkFormat") from None
        if info.type_size and type_size != info.type_size:
            raise self.fail(f"{type_size}: {info.name} requires {info.type_size}", "typeSize")
        return info, info

    def check_dfd(self, dfd: Ktx2Dfd, info: FormatInfo | None, scheme: int) -> None:
        plane0, planes = dfd.bytes_plane[0], sum(dfd.bytes_plane)
        for i, s in enumerate(dfd.samples):
            if planes and s.bit_offset + s.bit_length > 8 * planes:
                raise self.fail(f"bits {s.bit_offset}+{s.bit_length} lie outside the {planes}-byte block",
                                f"dfd.samples[{i}].bitOffset")
        if info is None:
            return
        if info.family == "bc":
            models = {_BC_MODELS[info.name.split("_")[0]]}
        elif info.family in ("etc2", "eac"):
            models = {160, 161} if info.name.startswith("ETC2_R8G8B8_") else {161}  # ETC1 data is valid ETC2
        elif info.family == "astc":
            models = {162, _UASTC_HDR_MODELS.get(info.name, 162)}
        elif info.family == "pvrtc":
            models = {164 if info.name.startswith("PVRTC1") else 165}
        else:
            models = {2} if info.family == "ycbcr_422" else {1}
        if dfd.color_model not in models:
            raise self.fail(f"{dfd.color_model_name} does not describe {info.name}", "dfd.colorModel")
        if dfd.texel_block_dimensions[:3] != (info.block_width, info.block_height, info.block_depth):
            raise self.fail(f"texel block {dfd.texel_block_dimensions[:3]} differs from {info.name}'s "
                            f"{info.block_width}x{info.block_height}x{info.block_depth}", "dfd.texelBlockDimension")
        if plane0 != info.bytes_per_block and (scheme == 0 or plane0):
            raise self.fail(f"{plane0} bytes per block, {info.name} has {info.bytes_per_block}", "dfd.bytesPlane0")
        if info.is_srgb != dfd.is_srgb and (info.is_srgb or info.vk_format in _HAS_SRGB_VARIANT):
            raise self.fail(f"transfer {dfd.transfer_function_name} contradicts {info.name}", "dfd.transferFunction")

    def parse_kvd(self, off: int, length: int) -> dict[str, bytes]:
        kvd: dict[str, bytes] = {}
        pos, end = off, off + length
        while end - pos >= 4:
            (size,) = struct.unpack_from("<I", self.data, pos)
            fld = f"kvd[{len(kvd)}]"
            if size == 0 and not any(self.data[pos:end]):
                break  # zero padding after the last entry
            if size == 0 or pos + 4 + size > end:
                raise self.fail(f"entry of {size} bytes does not fit the {end - pos - 4} left",
                                f"{fld}.keyAndValueByteLength")
            key, nul, value = self.data[pos + 4: pos + 4 + size].partition(b"\0")
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail("key is not UTF-8", f"{fld}.key") from None
            if not nul or not name:
                raise self.fail("key is empty or not NUL-terminated", f"{fld}.key")
            if name in kvd:
                raise self.fail(f"duplicate key {name!r}", f"{fld}.key")
            kvd[name] = value
            pos += 4 + size
            pos += (-(pos - off)) % 4
        if pos < end and any(self.data[pos:end]):
            raise self.fail(f"{end - pos} stray bytes after the last entry", "kvdByteLength")
        return kvd

    def check_level(self, i: int, off: int, length: int, ulen: int, expected: int | None, scheme: int) -> None:
        where = f"levels[{i}]"
        self.span(off, 0, f"{where}.byteOffset")
        self.span(off, length, f"{where}.byteLength")
        if length == 0:
            raise self.fail("level has no data", f"{where}.byteLength")
        if scheme == 0:
            if expected is not None and length != expected:
                raise self.fail(f"{length} bytes, the format and extent need {expected}", f"{where}.byteLength")
            if ulen != length:
                raise self.fail(f"{ulen} differs from byteLength {length} without supercompression",
                                f"{where}.uncompressedByteLength")
        elif scheme == 1:
            if ulen != 0:
                raise self.fail(f"{ulen}: must be 0 for BasisLZ", f"{where}.uncompressedByteLength")
        elif expected is not None and ulen != expected:
            raise self.fail(f"{ulen} bytes, the format and extent need {expected}", f"{where}.uncompressedByteLength")
        elif ulen == 0 or ulen > self.max_bytes:
            raise self.fail(f"{ulen} bytes is outside 1..{self.max_bytes}", f"{where}.uncompressedByteLength")

    def check_overlaps(self, regions: list[tuple[int, int, str]], levels: list[Ktx2Level]) -> None:
        spans = sorted([(a, b) for a, b, _n in regions if b > a]
                       + [(lv.byte_offset, lv.byte_offset + lv.byte_length) for lv in levels])
        end = 0
        for a, b in spans:  # one sorted pass finds whether any two overlap; the pairwise search below names them
            if a < end:
                break
            end = max(end, b)
        else:
            return
        fixed = [r for r in regions if r[1] > r[0]]
        for a in range(len(fixed)):
            for b in range(a + 1, len(fixed)):
                if fixed[a][0] < fixed[b][1] and fixed[b][0] < fixed[a][1]:
                    raise self.fail(f"overlaps {fixed[a][2]}", fixed[b][2])
        seen = list(fixed)
        for lv in levels:
            start, end = lv.byte_offset, lv.byte_offset + lv.byte_length
            for s, e, name in seen:
                if start < e and s < end:
                    other = name.replace(".byteOffset", "")
                    raise self.fail(f"level {lv.index} data [{start}, {end}) overlaps {other} [{s}, {e})",
                                    f"levels[{lv.index}].byteOffset")
            seen.append((start, end, f"levels[{lv.index}].byteOffset"))

    def check_basislz_sgd(self, sgd: bytes, levels: list[Ktx2Level], images: int) -> None:
        depth = levels[0].depth
        count = sum(images * max(1, depth >> lv.index) for lv in levels)
        if len(sgd) < 20:
            raise self.fail(f"{len(sgd)} bytes cannot hold the BasisLZ global header", "sgdByteLength")
        _, _, e_len, s_len, t_len, x_len = struct.unpack_from("<2H4I", sgd)
        need = 20 + 20 * count + e_len + s_len + t_len + x_len
        if need != len(sgd):
            raise self.fail(f"BasisLZ global data needs {need} bytes for {count} images, has {len(sgd)}",
                            "sgdByteLength")
        k = 0
        for lv in levels:
            for _ in range(images * max(1, depth >> lv.index)):
                _, rgb_off, rgb_len, a_off, a_len = struct.unpack_from("<5I", sgd, 20 + 20 * k)
                if rgb_off + rgb_len > lv.byte_length or a_off + a_len > lv.byte_length:
                    raise self.fail(f"slice lies outside level {lv.index}'s {lv.byte_length} bytes",
                                    f"sgd.imageDescs[{k}]")
                k += 1


# --------------------------------------------------------------------------------------------------- inflating


SMALL_LEVEL = 256 << 10  # levels up to this inflate in one call, then one copy (see ``Ktx2File.level_into``)
_local = threading.local()

#: DFDs that passed (with the header's format fields) -> (dfd, format, block); KVD bytes -> parsed entries
_SEEN_DFDS: dict[tuple[bytes, int, int, int], tuple[Ktx2Dfd, FormatInfo | None, FormatInfo | None]] = {}
_SEEN_KVDS: dict[bytes, dict[str, bytes]] = {}
#: (width, height, depth, levels, block format) -> (level extents, bytes of one image per level)
_SEEN_SHAPES: dict[tuple[int, int, int, int, FormatInfo], tuple[tuple[tuple[int, int, int], ...], tuple[int, ...]]] = {}


def _remember(table: dict[Any, Any], key: Any, value: Any) -> None:
    """Store ``key -> value`` in a bounded table (cleared at 256 entries; thread-safe under the GIL)."""
    if len(table) >= 256:
        table.clear()
    table[key] = value


def _decompressor() -> zstandard.ZstdDecompressor:
    """This thread's Zstandard decompression context (creating one per level cost ~15 µs, a fixed cost per level)."""
    dctx = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    return dctx


def _inflate_zstd(raw: memoryview, expected: int, path: str | None, where: str) -> bytes:
    try:
        declared = zstandard.frame_content_size(raw)
    except zstandard.ZstdError as exc:
        raise FormatError(f"not a Zstandard frame ({exc})", path=path, field=f"{where}.data") from None
    if declared not in (-1, expected):
        raise FormatError(f"Zstandard frame declares {declared} bytes, expected {expected}", path=path,
                          field=f"{where}.uncompressedByteLength")
    try:
        out = zstandard.ZstdDecompressor().decompress(raw, max_output_size=expected)
    except zstandard.ZstdError as exc:
        raise FormatError(f"corrupt Zstandard data ({exc})", path=path, field=f"{where}.data") from None
    if len(out) != expected:
        raise FormatError(f"inflated to {len(out)} bytes, expected {expected}", path=path,
                          field=f"{where}.uncompressedByteLength")
    return out


def _inflate_zlib(raw: memoryview, expected: int, path: str | None, where: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(raw, expected)
        extra = inflater.decompress(inflater.unconsumed_tail, 1) if not inflater.eof else b""
    except zlib.error as exc:
        raise FormatError(f"corrupt zlib data ({exc})", path=path, field=f"{where}.data") from None
    if extra or len(out) != expected or not inflater.eof:
        size = "more than" if extra else f"{len(out)}, not"
        raise FormatError(f"inflated to {size} {expected} bytes", path=path, field=f"{where}.uncompressedByteLength")
    return out


# ---------------------------------------------------------------------------------------------------- decoding


def decode_to_rgba8(ktx: Ktx2File, level: int = 0, layer: int = 0, face: int = 0, *,
                    clamp_hdr: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """Decode one image to RGBA8 for a device that lacks the file's format.

    Values stay in the source's encoding: an sRGB source yields sRGB bytes for ``R8G8B8A8_SRGB``
    (:attr:`Ktx2File.decode_target` says which). Rows are in file order (see ``kvd['KTXorientation']``).

    :param ktx: the parsed file.
    :param level: mip level index.
    :param layer: array layer.
    :param face: cube face.
    :param clamp_hdr: allow HDR formats (float, BC6H UFLOAT, ASTC HDR), clipping them to [0, 1] as UNORM.
    :param out: a writable ``uint8`` array of the result's shape to decode into (Basis: copied into it).
    :returns: ``uint8`` array of shape ``(height, width, 4)``, or ``(depth, height, width, 4)`` for a 3D texture.
    :raises UnsupportedFormatError: when no decoder handles the format (or ``alktx2`` is missing for Basis).
    :raises FormatError: when the data is corrupt.
    """
    lv = ktx._level(level)
    if ktx.format is None:
        px = _decode_basis(ktx, lv, layer, face)
        if out is None:
            return px
        out[...] = px
        return out
    info = ktx.format
    try:
        can_decode(info, clamp_hdr=clamp_hdr)
    except UnsupportedFormatError as exc:
        raise UnsupportedFormatError(exc.reason, path=ktx.path, field="vkFormat") from None
    data = ktx.image_data(level, layer, face)
    slice_size = level_size(info, lv.width, lv.height, 1)
    if not ktx.is_3d:  # one slice: no stacking copy (``out``: decoded straight into the caller's array)
        return decode_rgba8(info, data[:slice_size], lv.width, lv.height, clamp_hdr=clamp_hdr, out=out)
    if out is not None:
        for z in range(lv.depth):
            decode_rgba8(info, data[z * slice_size:(z + 1) * slice_size], lv.width, lv.height, clamp_hdr=clamp_hdr,
                         out=out[z])
        return out
    out = np.stack([decode_rgba8(info, data[z * slice_size:(z + 1) * slice_size], lv.width, lv.height,
                                 clamp_hdr=clamp_hdr) for z in range(lv.depth)])
    return out if ktx.is_3d else out[0]


def _decode_basis(ktx: Ktx2File, lv: Ktx2Level, layer: int, face: int) -> np.ndarray:
    codec = ktx.transcode_codec
    scheme = {0: f"{codec}", 1: "BasisLZ/ETC1S"}.get(ktx.supercompression_scheme, f"{codec} + {ktx.scheme_name}")
    if _alktx2 is None:
        raise UnsupportedFormatError(f"{scheme} needs a Basis Universal transcoder; install the optional 'alktx2' "
                                     "package", path=ktx.path, field="supercompressionScheme")
    if ktx.dfd.color_model not in (MODEL_ETC1S, MODEL_UASTC):
        raise UnsupportedFormatError(f"no transcoder for {codec}", path=ktx.path, field="dfd.colorModel")
    if ktx.supercompression_scheme == 3:
        raise UnsupportedFormatError(f"{scheme}: the Basis Universal transcoder reads only none/Zstandard",
                                     path=ktx.path, field="supercompressionScheme")
    if not (0 <= layer < max(1, ktx.layer_count) and 0 <= face < ktx.face_count):
        raise OutOfRangeError(f"layer {layer} / face {face} out of range")
    if lv.width * lv.height * 4 > ktx.max_bytes:
        raise FormatError(f"{lv.width}x{lv.height} RGBA8 exceeds {ktx.max_bytes} bytes", path=ktx.path,
                          field="pixelWidth")
    try:
        tga, _ = _alktx2.decode_ktx2_to_bytes(ktx._data, format="tga", level=lv.index, layer=layer, face=face)
        with Image.open(io.BytesIO(tga)) as img:
            rgba = np.asarray(img.convert("RGBA"))
    except Exception as exc:  # the transcoder raises RuntimeError; Pillow its own errors
        raise FormatError(f"{scheme} transcoding failed ({exc})", path=ktx.path, field=f"levels[{lv.index}].data"
                          ) from None
    if rgba.shape[0] < lv.height or rgba.shape[1] < lv.width:
        raise FormatError(f"transcoder returned {rgba.shape[1]}x{rgba.shape[0]}, expected {lv.width}x{lv.height}",
                          path=ktx.path, field=f"levels[{lv.index}].data")
    return np.ascontiguousarray(rgba[: lv.height, : lv.width])
