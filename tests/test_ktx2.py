"""Tests for the KTX2 reader (``vixen_assets.formats.ktx2``): real files, hand-built files, mutations and fuzzing."""

from __future__ import annotations

import json
import os
import re
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import texture2ddecoder
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vixen_assets.errors import FormatError, UnsupportedFormatError
from vixen_assets.formats import ktx2
from vixen_assets.formats.ktx2 import IDENTIFIER, decode_to_rgba8, has_basis_transcoder, read_ktx2
from vixen_assets.formats.vkformat import format_info, level_size
from vixen_assets.testing import asset_skip_mark, missing_asset

REPO = Path(__file__).resolve().parent.parent
SCHEMES = {"none": 0, "BasisLZ": 1, "zstd": 2, "zlib": 3}


def shared_ktx2_dir() -> Path | None:
    """``$VIXEN_SHARED_ASSETS/ktx2`` or ``<repo>/../shared/assets/ktx2`` when it holds ``.ktx2`` files."""
    root = Path(os.environ.get("VIXEN_SHARED_ASSETS") or REPO.parent / "shared" / "assets")
    folder = root / "ktx2"
    return folder if any(folder.glob("*.ktx2")) else None


ASSETS = shared_ktx2_dir()
SKIP_REASON = "shared KTX2 assets not found (set VIXEN_SHARED_ASSETS or check out ../shared/assets/ktx2)"
FILES = sorted(ASSETS.glob("*.ktx2")) if ASSETS else []
FILE_PARAMS = [pytest.param(f, id=f.name) for f in FILES] or [pytest.param(None, marks=asset_skip_mark(SKIP_REASON))]
assets = pytest.mark.assets


def asset(name: str) -> Path:
    """One shared file by name, skipping the test when the shared assets are absent."""
    if ASSETS is None:
        missing_asset(SKIP_REASON)
    path = ASSETS / name
    if not path.exists():
        missing_asset(f"{name} is not in {ASSETS}")
    return path


def sources_table() -> dict[str, dict[str, str]]:
    """Rows of ``SOURCES.md`` (written independently of this reader), keyed by file name."""
    if ASSETS is None or not (ASSETS / "SOURCES.md").exists():
        return {}
    lines = [ln for ln in (ASSETS / "SOURCES.md").read_text().splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = ([c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:])
    return {r[0]: dict(zip(header, r, strict=True)) for r in rows if len(r) == len(header)}


# ------------------------------------------------------------------------------------------ building files


def dfd_rgba8(srgb: bool = False, channels: int = 4) -> bytes:
    """A basic DFD for R8[G8[B8[A8]]] UNORM/sRGB, built from the Khronos Data Format layout."""
    samples = b"".join(
        struct.pack("<IIII", (8 * i) | (7 << 16) | ((15 if i == 3 else i) | (0x10 if i == 3 and srgb else 0)) << 24,
                    0, 0, 255) for i in range(channels))
    block = struct.pack("<IIIIII", 0, 2 | (24 + len(samples)) << 16, 1 | 1 << 8 | (2 if srgb else 1) << 16, 0,
                        channels, 0) + samples
    return struct.pack("<I", 4 + len(block)) + block


def build_ktx2(levels: list[bytes], *, vk_format: int = 37, width: int = 4, height: int = 4, depth: int = 0,
               layers: int = 0, faces: int = 1, scheme: int = 0, uncompressed: list[int] | None = None,
               dfd: bytes | None = None, kvd: dict[str, bytes] | None = None, type_size: int = 1,
               level_count: int | None = None) -> bytes:
    """Lay out a KTX2 file: header, level index, DFD, KVD, then levels smallest first (as the spec orders them)."""
    dfd = dfd if dfd is not None else dfd_rgba8()
    kv = b""
    for key, value in sorted((kvd or {}).items()):
        entry = key.encode() + b"\0" + value
        kv += struct.pack("<I", len(entry)) + entry + bytes(-len(entry) % 4)
    dfd_off = 80 + 24 * len(levels)
    kvd_off = dfd_off + len(dfd)
    pos = kvd_off + len(kv)
    offsets = [0] * len(levels)
    for i in reversed(range(len(levels))):
        pos += -pos % 16
        offsets[i] = pos
        pos += len(levels[i])
    body = bytearray(pos)
    header = struct.pack("<12s9I4I2Q", IDENTIFIER, vk_format, type_size, width, height, depth, layers, faces,
                         len(levels) if level_count is None else level_count, scheme, dfd_off, len(dfd),
                         kvd_off if kv else 0, len(kv), 0, 0)
    body[:80] = header
    for i, data in enumerate(levels):
        ulen = len(data) if uncompressed is None else uncompressed[i]
        struct.pack_into("<3Q", body, 80 + 24 * i, offsets[i], len(data), ulen)
        body[offsets[i]: offsets[i] + len(data)] = data
    body[dfd_off: dfd_off + len(dfd)] = dfd
    body[kvd_off: kvd_off + len(kv)] = kv
    return bytes(body)


def patch(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    """A copy of ``data`` with ``values`` packed at ``offset``."""
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def field_of(make: Callable[[], object]) -> str:
    """The ``field`` of the FormatError that ``make`` raises."""
    with pytest.raises(FormatError) as err:
        make()
    assert err.value.field is not None, err.value
    return err.value.field


# ------------------------------------------------------------------------------------------ hand-built files


def test_minimal_file_round_trips_every_scheme() -> None:
    """A hand-built file reads back identically uncompressed, with Zstandard and with zlib."""
    rng = np.random.default_rng(0)
    lv0, lv1, lv2 = (rng.integers(0, 256, n, np.uint8).tobytes() for n in (64, 16, 4))
    plain = read_ktx2(build_ktx2([lv0, lv1, lv2], kvd={"KTXwriter": b"test\0"}))
    assert [lv.width for lv in plain.levels] == [4, 2, 1]
    assert plain.kvd == {"KTXwriter": b"test\0"} and plain.header_summary()["keyValueData"] == {"KTXwriter": "test"}
    for scheme, pack in ((2, zstandard.ZstdCompressor().compress), (3, zlib.compress)):
        packed = [pack(d) for d in (lv0, lv1, lv2)]
        f = read_ktx2(build_ktx2(packed, scheme=scheme, uncompressed=[64, 16, 4]))
        assert [f.level_data(i) for i in range(3)] == [lv0, lv1, lv2]
        assert bytes(f.image_data(1)) == lv1
        assert decode_to_rgba8(f).tobytes() == lv0


def test_zstd_frame_declaring_another_size_is_refused_before_inflating() -> None:
    """A frame declaring 16 MiB for a 64-byte level fails before any allocation."""
    bomb = zstandard.ZstdCompressor(write_content_size=True).compress(bytes(1 << 24))  # 16 MiB of zeros
    f = read_ktx2(build_ktx2([bomb], scheme=2, uncompressed=[64]))
    tracemalloc.start()
    try:
        with pytest.raises(FormatError) as err:
            f.level_data(0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.value.field == "levels[0].uncompressedByteLength" and "declares 16777216" in str(err.value)
    assert peak < 1 << 20


def test_zstd_and_zlib_payloads_that_inflate_too_far_are_bounded() -> None:
    """Payloads hiding their size stop at the level size instead of inflating 16 MiB."""
    hidden = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(1 << 24))
    for scheme, payload in ((2, hidden), (3, zlib.compress(bytes(1 << 24)))):
        f = read_ktx2(build_ktx2([payload], scheme=scheme, uncompressed=[64]))
        tracemalloc.start()
        try:
            with pytest.raises(FormatError) as err:
                f.level_data(0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert err.value.field in ("levels[0].data", "levels[0].uncompressedByteLength"), scheme
        assert peak < 1 << 20, scheme


def test_corrupt_and_short_payloads() -> None:
    """Garbage or short payloads raise FormatError naming the level."""
    for scheme, payload in ((2, b"not a zstd frame at all"), (3, b"\x78\x9cgarbage"),
                            (2, zstandard.ZstdCompressor().compress(bytes(10))),
                            (3, zlib.compress(bytes(10)))):
        f = read_ktx2(build_ktx2([payload], scheme=scheme, uncompressed=[64]))
        assert field_of(partial(f.level_data, 0)) in ("levels[0].data", "levels[0].uncompressedByteLength")


def test_supercompressed_size_must_match_the_format() -> None:
    """uncompressedByteLength must equal what the format and extent need."""
    data = build_ktx2([zlib.compress(bytes(64))], scheme=3, uncompressed=[65])
    assert field_of(lambda: read_ktx2(data)) == "levels[0].uncompressedByteLength"


def test_absurd_totals_use_max_bytes(tmp_path: Path) -> None:
    """The total the levels imply is checked against ``max_bytes`` at parse time; files too big are not read."""
    data = build_ktx2([bytes(64)], layers=1)
    assert read_ktx2(data, max_bytes=64).layer_count == 1
    assert field_of(lambda: read_ktx2(data, max_bytes=63)) == "pixelWidth*pixelHeight*pixelDepth*layerCount*faceCount"
    big = tmp_path / "big.ktx2"
    with open(big, "wb") as fh:
        fh.write(data)
        fh.truncate(ktx2._METADATA_SLACK + 1024)  # sparse: nothing is really written
    with pytest.raises(FormatError) as err:
        read_ktx2(big, max_bytes=64)
    assert err.value.field == "fileSize" and err.value.path == str(big)


def test_schemes_and_formats_that_are_not_supported() -> None:
    """Unknown schemes/formats are UnsupportedFormatError; prohibited formats and bad typeSize FormatError."""
    base = build_ktx2([bytes(64)])
    with pytest.raises(UnsupportedFormatError, match="supercompression scheme 7") as err:
        read_ktx2(patch(base, 44, "<I", 7))
    assert err.value.field == "supercompressionScheme"
    with pytest.raises(UnsupportedFormatError) as err:
        read_ktx2(patch(base, 12, "<I", 999))
    assert err.value.field == "vkFormat"
    prohibited = build_ktx2([bytes(64)], vk_format=51, type_size=4)  # A8B8G8R8_UNORM_PACK32
    with pytest.raises(FormatError) as bad:
        read_ktx2(prohibited)
    assert bad.value.field == "vkFormat" and not isinstance(bad.value, UnsupportedFormatError)
    assert field_of(lambda: read_ktx2(build_ktx2([bytes(64)], type_size=4))) == "typeSize"


def test_kvd_errors() -> None:
    """Key/value entries that overrun, lack a key or are not UTF-8 are refused."""
    data = build_ktx2([bytes(64)], kvd={"KTXorientation": b"rd\0"})
    kvd_off = struct.unpack_from("<I", data, 56)[0]
    assert field_of(lambda: read_ktx2(patch(data, kvd_off, "<I", 1000))) == "kvd[0].keyAndValueByteLength"
    assert field_of(lambda: read_ktx2(patch(data, kvd_off + 4, "<B", 0))) == "kvd[0].key"
    assert field_of(lambda: read_ktx2(patch(data, kvd_off + 4, "<B", 0xFF))) == "kvd[0].key"


def test_image_data_indexes_layers_faces_and_slices() -> None:
    """Faces come out in order; 3D textures decode slice by slice."""
    cube = [bytes([i]) * 16 for i in range(6)]
    f = read_ktx2(build_ktx2([b"".join(cube)], width=2, height=2, faces=6))
    assert f.is_cube and not f.is_array
    assert [bytes(f.image_data(0, 0, face)) for face in range(6)] == cube
    with pytest.raises(IndexError):
        f.image_data(0, 0, 6)
    volume = read_ktx2(build_ktx2([bytes(range(2 * 2 * 3 * 4))], width=2, height=2, depth=3))
    assert volume.is_3d and decode_to_rgba8(volume).shape == (3, 2, 2, 4)


# -------------------------------------------------------------------------------------------- shared files


@assets
@pytest.mark.parametrize("path", FILE_PARAMS)
def test_every_shared_file_parses_and_inflates(path: Path) -> None:
    """Every shared file parses, agrees with SOURCES.md, and its levels have the table's sizes."""
    f = read_ktx2(path)
    assert f.path == str(path)
    row = sources_table().get(path.name)
    if row:  # SOURCES.md was written from the files by other means
        w, h, d = (int(x) for x in row["W x H x D"].split(" x "))
        assert (f.vk_format, f.pixel_width, f.pixel_height, f.pixel_depth) == (int(row["vkFormat"].split()[0]), w, h, d)
        assert (f.layer_count, f.face_count, f.level_count) == (int(row["layers"]), int(row["faces"]),
                                                                int(row["levels"]))
        assert f.supercompression_scheme == SCHEMES[row["supercompression"]]
        assert f.dfd.color_model_name == row["DFD model"]
    assert json.loads(json.dumps(f.header_summary()))["levels"][0]["width"] == f.pixel_width
    for lv in f.levels:
        assert lv.width == max(1, f.pixel_width >> lv.index) and lv.depth == max(1, f.pixel_depth >> lv.index)
        if f.format is not None:  # level sizes follow the format table
            size = level_size(f.format, lv.width, lv.height, lv.depth) * f.images_per_level
            assert lv.uncompressed_byte_length == size
        if f.supercompression_scheme == 1:
            with pytest.raises(UnsupportedFormatError, match="BasisLZ"):
                f.level_data(lv.index)
            continue
        data = f.level_data(lv.index)
        assert len(data) == lv.uncompressed_byte_length
        images = [bytes(f.image_data(lv.index, layer, face)) for layer in range(max(1, f.layer_count))
                  for face in range(f.face_count)]
        assert b"".join(images) == data


@assets
@pytest.mark.parametrize("path", FILE_PARAMS)
def test_decode_or_refuse(path: Path) -> None:
    """Each file either decodes its smallest level to RGBA8 or refuses with UnsupportedFormatError."""
    f = read_ktx2(path)
    last = f.levels[-1]
    if f.transcode_codec and not has_basis_transcoder():
        with pytest.raises(UnsupportedFormatError, match=f.transcode_codec.split("/")[0]):
            decode_to_rgba8(f, last.index)
        return
    try:
        img = decode_to_rgba8(f, last.index, clamp_hdr=True)
    except UnsupportedFormatError:
        assert f.decode_target is None and f.format is not None
        return
    shape = (last.height, last.width, 4) if not f.is_3d else (last.depth, last.height, last.width, 4)
    assert img.shape == shape and img.dtype == np.uint8
    if f.decode_target is not None:
        assert f.decode_target == (43 if f.is_srgb else 37)


@assets
def test_arraytex_header_and_kvd() -> None:
    """Known header, DFD and key/value fields of the 7-layer sRGB array."""
    f = read_ktx2(asset("arraytex_7_mipmap_reference_u.ktx2"))
    assert f.format is not None and f.format.name == "R8G8B8A8_SRGB"
    assert f.is_array and f.layer_count == 7 and len(f.levels) == 5
    assert f.kvd["KTXorientation"] == b"rd\0" and f.kvd["KTXwriter"].startswith(b"toktx")
    assert f.dfd.transfer_function_name == "SRGB" and f.dfd.color_primaries_name == "BT709"
    assert [s.channel_type for s in f.dfd.samples] == [0, 1, 2, 15]
    assert decode_to_rgba8(f, 0, 6).tobytes() == bytes(f.image_data(0, 6))


@assets
def test_supercompressed_levels_match_independent_inflation() -> None:
    """Our zlib/zstd levels equal a direct inflate of the bytes the level index names."""
    for name, inflate in (("color_grid_ZLIB_9.ktx2", zlib.decompress),
                          ("output_3D_zstd.ktx2", zstandard.ZstdDecompressor().decompress),
                          ("bevy_SMAAAreaLUT.ktx2", zstandard.ZstdDecompressor().decompress)):
        raw = asset(name).read_bytes()
        off, length, _ = struct.unpack_from("<3Q", raw, 80)
        assert read_ktx2(raw).level_data(0) == inflate(raw[off: off + length]), name


@assets
def test_bc7_cubemap_matches_direct_decode() -> None:
    """A cube face sliced by hand and decoded directly equals ``decode_to_rgba8``."""
    raw = asset("wgpu_skybox_bc7.ktx2").read_bytes()
    f = read_ktx2(raw)
    assert f.is_cube and len(f.levels) == 9
    off = struct.unpack_from("<Q", raw, 80 + 24 * 1)[0]  # level 1: 128x128, face 3 is the fourth 16 KiB image
    face3 = raw[off + 3 * 16384: off + 4 * 16384]
    bgra = np.frombuffer(texture2ddecoder.decode_bc7(face3 + bytes(16), 128, 128), np.uint8).reshape(128, 128, 4)
    assert (decode_to_rgba8(f, 1, 0, 3) == bgra[..., [2, 1, 0, 3]]).all()


@assets
def test_bc3_array_and_bc1_srgb() -> None:
    """BC3 layers match texture2ddecoder within rounding; BC1 sRGB decodes opaque to the sRGB target."""
    f = read_ktx2(asset("texturearray_bc3_unorm.ktx2"))
    for layer in (0, 6):
        data = bytes(f.image_data(0, layer)) + bytes(16)
        ref = np.frombuffer(texture2ddecoder.decode_bc3(data, 256, 256), np.uint8).reshape(256, 256, 4)
        diff = np.abs(decode_to_rgba8(f, 0, layer).astype(int) - ref[..., [2, 1, 0, 3]])
        assert diff.max() <= 1 or (diff > 1).mean() < 0.01  # texture2ddecoder rounds and uses 3-colour blocks
    bc1 = read_ktx2(asset("output_R8G8B8A8_SRGB_2D_BLZE_to_bc1.ktx2"))
    assert bc1.decode_target == 43 and (decode_to_rgba8(bc1)[..., 3] == 255).all()


@assets
def test_odd_sizes_and_3d_blocks() -> None:
    """5x5x3 BC7 and a 1D RGB8 mip chain have the right sizes and shapes."""
    f = read_ktx2(asset("magnum_3d-compressed-bc7.ktx2"))
    assert (f.pixel_width, f.pixel_height, f.pixel_depth, f.levels[0].byte_length) == (5, 5, 3, 192)
    assert decode_to_rgba8(f).shape == (3, 5, 5, 4)
    one_d = read_ktx2(asset("valid_R8G8B8_SRGB_1D_MIP.ktx2"))
    img = decode_to_rgba8(one_d)
    assert img.shape == (1, 8, 4) and (img[..., 3] == 255).all()
    assert img[..., :3].tobytes() == bytes(one_d.image_data(0))
    assert [lv.byte_length for lv in one_d.levels] == [24, 12, 6, 3]


@assets
def test_hdr_files_decode_only_when_clamped() -> None:
    """Half-float, E5B9G9R9 and ASTC HDR decode only with ``clamp_hdr``, to independently computed values."""
    half = read_ktx2(asset("valid_R16G16B16A16_SFLOAT_CUBE_MIP.ktx2"))
    with pytest.raises(UnsupportedFormatError, match="clamp_hdr"):
        decode_to_rgba8(half)
    ref = np.frombuffer(half.image_data(0, 0, 2), "<f2").reshape(8, 8, 4).astype(np.float64)
    got = decode_to_rgba8(half, 0, 0, 2, clamp_hdr=True)
    assert (got == np.round(np.clip(np.nan_to_num(ref), 0, 1) * 255)).all()
    lut = read_ktx2(asset("bevy_tony_mc_mapface.ktx2"))
    assert lut.levels[0].uncompressed_byte_length == 48 ** 3 * 4
    word = struct.unpack_from("<I", lut.image_data(0), 4 * (47 * 48 * 48 + 47 * 48 + 47))[0]  # the last texel
    red = (word & 511) * 2.0 ** ((word >> 27) - 24)
    assert decode_to_rgba8(lut, clamp_hdr=True)[47, 47, 47, 0] == round(min(red, 1.0) * 255)
    astc_hdr = read_ktx2(asset("valid_UASTC_HDR_4x4_2D_MIP.ktx2"))
    assert astc_hdr.dfd.color_model_name == "UASTC_HDR_4x4" and "KTXmapRange" in astc_hdr.kvd
    assert decode_to_rgba8(astc_hdr, 2, clamp_hdr=True).shape == (4, 4, 4)


@assets
def test_astc_ldr_matches_direct_decode() -> None:
    """ASTC 6x6 sRGB levels have the expected sizes and decode like texture2ddecoder (swizzled)."""
    f = read_ktx2(asset("valid_ASTC_6x6_SRGB_BLOCK_2D_MIP.ktx2"))
    assert f.decode_target == 43 and [lv.byte_length for lv in f.levels] == [144, 64, 16, 16, 16]
    ref = np.frombuffer(texture2ddecoder.decode_astc(f.level_data(0) + bytes(16), 16, 16, 6, 6), np.uint8)
    assert (decode_to_rgba8(f) == ref.reshape(16, 16, 4)[..., [2, 1, 0, 3]]).all()


@assets
def test_basis_files_without_a_transcoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without alktx2, BasisLZ and UASTC files parse but decoding names the scheme."""
    monkeypatch.setattr(ktx2, "_alktx2", None)
    for name, codec in (("ktx_document_basis.ktx2", "BasisLZ"), ("magnum_rgba-cubemap.ktx2", "BasisLZ"),
                        ("cyan_rgb_reference_uastc.ktx2", "UASTC"), ("sponza_thorn_diff.ktx2", "UASTC")):
        f = read_ktx2(asset(name))
        assert f.format is None and f.decode_target is None and f.header_summary()["format"] == "UNDEFINED"
        with pytest.raises(UnsupportedFormatError, match=codec) as err:
            decode_to_rgba8(f)
        assert err.value.path == f.path


@assets
def test_basis_files_with_alktx2() -> None:
    """With alktx2, UASTC and ETC1S files decode (cropped to the real size)."""
    if not has_basis_transcoder():
        pytest.skip("optional transcoder 'alktx2' not installed")
    cyan = decode_to_rgba8(read_ktx2(asset("cyan_rgb_reference_uastc.ktx2")))
    assert cyan.shape == (64, 64, 4) and (cyan == [0, 255, 255, 255]).all()
    cube = read_ktx2(asset("magnum_rgba-cubemap.ktx2"))
    assert cube.decode_target == 43
    assert {decode_to_rgba8(cube, 0, 0, face).shape for face in range(6)} == {(27, 27, 4)}  # cropped from 28x28
    doc = read_ktx2(asset("ktx_document_uastc_rdo4_zstd5.ktx2"))
    assert [decode_to_rgba8(doc, i).shape[:2] for i in (0, 10)] == [(1024, 1024), (1, 1)]


# ---------------------------------------------------------------------------------------- mutated real files

MIP_FILE = "valid_ASTC_6x6_SRGB_BLOCK_2D_MIP.ktx2"  # 5 levels, no supercompression; level 1 is 64 bytes


def level_entry(i: int, part: int = 0) -> int:
    """File offset of level ``i``'s byteOffset (part 0), byteLength (1) or uncompressedByteLength (2)."""
    return 80 + 24 * i + 8 * part


@assets
def test_truncated_files() -> None:
    """Cutting a real file short names the header, the level index or the level that no longer fits."""
    raw = asset(MIP_FILE).read_bytes()
    assert field_of(lambda: read_ktx2(raw[:50])) == "header"
    assert field_of(lambda: read_ktx2(raw[:150])) == "levelIndex"
    assert field_of(lambda: read_ktx2(raw[:-10])) == "levels[0].byteLength"  # level 0 is stored last
    assert field_of(lambda: read_ktx2(b"\0" * 100)) == "identifier"


@assets
def test_overlapping_and_out_of_range_levels() -> None:
    """Level offsets/lengths overlapping other data or past the end name the level field."""
    raw = asset(MIP_FILE).read_bytes()
    off0, off1 = (struct.unpack_from("<Q", raw, level_entry(i))[0] for i in (0, 1))
    assert field_of(lambda: read_ktx2(patch(raw, level_entry(1), "<Q", off0))) == "levels[1].byteOffset"
    assert field_of(lambda: read_ktx2(patch(raw, level_entry(2), "<Q", off1 + 16))) == "levels[2].byteOffset"
    assert field_of(lambda: read_ktx2(patch(raw, level_entry(0), "<Q", 0))) == "levels[0].byteOffset"  # the header
    assert field_of(lambda: read_ktx2(patch(raw, level_entry(2), "<Q", len(raw) + 100))) == "levels[2].byteOffset"
    assert field_of(lambda: read_ktx2(patch(raw, level_entry(2), "<Q", 2**64 - 1))) == "levels[2].byteOffset"
    assert field_of(lambda: read_ktx2(patch(raw, level_entry(3, 1), "<Q", 2**63))) == "levels[3].byteLength"
    assert field_of(lambda: read_ktx2(patch(raw, level_entry(1, 1), "<Q", 48))) == "levels[1].byteLength"
    assert field_of(lambda: read_ktx2(patch(raw, level_entry(1, 2), "<Q", 48))) == "levels[1].uncompressedByteLength"


@assets
def test_absurd_dimensions() -> None:
    """Oversized dimensions, layer/face/level counts and products name their field."""
    raw = asset(MIP_FILE).read_bytes()
    assert field_of(lambda: read_ktx2(patch(raw, 20, "<I", 1 << 20))) == "pixelWidth"
    assert field_of(lambda: read_ktx2(patch(raw, 24, "<I", 70000))) == "pixelHeight"
    assert field_of(lambda: read_ktx2(patch(raw, 28, "<I", 2**32 - 1))) == "pixelDepth"
    assert field_of(lambda: read_ktx2(patch(raw, 32, "<I", 2**31))) == "layerCount"
    assert field_of(lambda: read_ktx2(patch(raw, 36, "<I", 7))) == "faceCount"
    assert field_of(lambda: read_ktx2(patch(raw, 40, "<I", 6))) == "levelCount"  # 16x16 has 5 levels at most
    assert field_of(lambda: read_ktx2(patch(raw, 40, "<I", 2**31))) == "levelCount"
    huge = patch(raw, 20, "<4I", 65536, 65536, 0, 65536)  # 65536^2 texels x 65536 layers
    assert "layerCount" in field_of(lambda: read_ktx2(huge))
    assert field_of(lambda: read_ktx2(patch(raw, 24, "<I", 0), max_bytes=1 << 20)) != "pixelWidth"


@assets
def test_bad_dfd() -> None:
    """Each broken DFD field is named."""
    raw = asset(MIP_FILE).read_bytes()
    dfd_off, dfd_len = struct.unpack_from("<II", raw, 48)
    word2 = struct.unpack_from("<I", raw, dfd_off + 12)[0]
    cases = {
        "dfdByteLength": patch(raw, 52, "<I", 8),
        "dfdByteOffset": patch(raw, 48, "<I", len(raw) + 4),
        "dfd.dfdTotalSize": patch(raw, dfd_off, "<I", dfd_len + 4),
        "dfd.vendorId": patch(raw, dfd_off + 4, "<I", 5),
        "dfd.versionNumber": patch(raw, dfd_off + 8, "<H", 1),
        "dfd.descriptorBlockSize": patch(raw, dfd_off + 10, "<H", 30),
        "dfd.colorModel": patch(raw, dfd_off + 12, "<B", 200),
        "dfd.transferFunction": patch(raw, dfd_off + 12, "<I", (word2 & ~0xFF0000) | 1 << 16),
        "dfd.texelBlockDimension": patch(raw, dfd_off + 16, "<B", 3),
        "dfd.bytesPlane0": patch(raw, dfd_off + 20, "<B", 32),
        "dfd.samples[0].bitOffset": patch(raw, dfd_off + 28, "<H", 64),
    }
    for expected, data in cases.items():
        assert field_of(partial(read_ktx2, data)) == expected
    srgb = read_ktx2(asset("arraytex_7_mipmap_reference_u.ktx2"))
    assert srgb.dfd.is_srgb  # a UNORM file claiming the sRGB transfer is refused too
    unorm = asset("color_grid_ZLIB_9.ktx2").read_bytes()
    d_off = struct.unpack_from("<I", unorm, 48)[0]
    w2 = struct.unpack_from("<I", unorm, d_off + 12)[0]
    assert field_of(lambda: read_ktx2(patch(unorm, d_off + 12, "<I", (w2 & ~0xFF0000) | 2 << 16))) == \
        "dfd.transferFunction"


@assets
def test_bad_zstd_payload() -> None:
    """A damaged Zstandard payload fails on inflation, a wrong declared size at parse time."""
    raw = asset("bevy_SMAAAreaLUT.ktx2").read_bytes()
    off, length, _ = struct.unpack_from("<3Q", raw, 80)
    garbage = patch(raw, off, "<I", 0x12345678)  # destroy the frame magic
    assert field_of(lambda: read_ktx2(garbage).level_data(0)) == "levels[0].data"
    middle = bytearray(raw)
    middle[off + length // 2: off + length // 2 + 64] = bytes(64)
    assert field_of(lambda: read_ktx2(bytes(middle)).level_data(0)) in ("levels[0].data",
                                                                          "levels[0].uncompressedByteLength")
    assert field_of(lambda: read_ktx2(patch(raw, level_entry(0, 2), "<Q", 1 << 40))) == \
        "levels[0].uncompressedByteLength"


@assets
def test_bad_basislz_global_data() -> None:
    """BasisLZ global data must be sized for its images and describe slices inside the levels."""
    raw = asset("ktx_document_basis.ktx2").read_bytes()
    sgd_off, sgd_len = struct.unpack_from("<QQ", raw, 64)
    assert field_of(lambda: read_ktx2(patch(raw, 72, "<Q", sgd_len - 1))) == "sgdByteLength"
    assert field_of(lambda: read_ktx2(patch(raw, sgd_off + 20 + 8, "<I", 1 << 30))) == "sgd.imageDescs[0]"
    assert field_of(lambda: read_ktx2(patch(raw, 44, "<I", 2))) == "supercompressionScheme"  # ETC1S needs BasisLZ
    assert field_of(lambda: read_ktx2(patch(raw, 72, "<Q", 2**62))) == "sgdByteOffset"


# --------------------------------------------------------------------------------------------------- fuzzing

FUZZ_MAX_BYTES = 1 << 26
FUZZ_PEAK_LIMIT = 1 << 28


def _exercise(data: bytes) -> None:
    """Parse, inflate and decode a possibly corrupt file; only FormatError may escape."""
    try:
        f = read_ktx2(data, max_bytes=FUZZ_MAX_BYTES)
        f.header_summary()
    except FormatError:
        return
    for lv in f.levels:
        try:
            f.image_data(lv.index, max(1, f.layer_count) - 1, f.face_count - 1)
            if lv.width * lv.height <= 1 << 16:
                decode_to_rgba8(f, lv.index, clamp_hdr=True)
        except FormatError:
            pass


def _fuzz(originals: list[bytes]) -> Callable[..., None]:
    @given(st.data())
    def check(data: st.DataObject) -> None:
        raw = bytearray(data.draw(st.sampled_from(originals)))
        for _ in range(data.draw(st.integers(1, 12))):
            pos = data.draw(st.one_of(st.integers(0, 255), st.integers(0, len(raw) - 1)))
            raw[min(pos, len(raw) - 1)] = data.draw(st.integers(0, 255))
        if data.draw(st.booleans()):
            del raw[data.draw(st.integers(0, len(raw))):]
        tracemalloc.reset_peak()
        _exercise(bytes(raw))
        assert tracemalloc.get_traced_memory()[1] < FUZZ_PEAK_LIMIT

    return check


def _run_fuzz(examples: int) -> None:
    if ASSETS is None:
        missing_asset(SKIP_REASON)
    originals = [p.read_bytes() for p in FILES if p.stat().st_size <= 1 << 20]
    check = settings(max_examples=examples, deadline=None, derandomize=examples <= 200, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])(_fuzz(originals))
    tracemalloc.start()
    try:
        check()
    finally:
        tracemalloc.stop()


@assets
def test_fuzz_mutations_short() -> None:
    """200 deterministic random mutations of the shared files raise only FormatError."""
    _run_fuzz(200)


@assets
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fuzz_mutations_long() -> None:
    """Many more random mutations (``VIXEN_FUZZ_EXAMPLES``, default 5000)."""
    _run_fuzz(int(os.environ.get("VIXEN_FUZZ_EXAMPLES", "5000")))


def test_identifier_constant() -> None:
    """The identifier is the spec's twelve bytes."""
    assert IDENTIFIER == bytes([0xAB, 0x4B, 0x54, 0x58, 0x20, 0x32, 0x30, 0xBB, 0x0D, 0x0A, 0x1A, 0x0A])
    assert re.fullmatch(rb"\xabKTX 20\xbb\r\n\x1a\n", IDENTIFIER)
    assert format_info(37).name == "R8G8B8A8_UNORM"
