"""The ``.vtex`` reader: every offset and length checked; corrupt tiles name file, level and tile; the rest reads."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import xxhash

from vixen_assets.errors import FormatError
from vixen_assets.vt import TileFile, build, info
from vixen_assets.vt.tilefile import HEADER, HEADER_BYTES, INDEX_DTYPE


@pytest.fixture
def vtex(tmp_path: Path) -> Path:
    a = np.random.default_rng(5).integers(0, 256, (256, 256, 4), dtype=np.uint8)
    return build(a, tmp_path / "t.vtex", tile=64, border=2, threads=1)


def _rewrite_index(path: Path, edit) -> None:
    """Apply ``edit(index)`` and re-sign the index and header, as a buggy writer would."""
    raw = bytearray(path.read_bytes())
    fields = list(HEADER.unpack(bytes(raw[:HEADER_BYTES])))
    n = fields[7]
    index = np.frombuffer(bytes(raw[HEADER_BYTES:HEADER_BYTES + n * INDEX_DTYPE.itemsize]), INDEX_DTYPE).copy()
    edit(index)
    fields[10] = xxhash.xxh3_64_intdigest(index.tobytes())
    body = HEADER.pack(*fields)[:-8]
    raw[:HEADER_BYTES] = body + struct.pack("<Q", xxhash.xxh3_64_intdigest(body))
    raw[HEADER_BYTES:HEADER_BYTES + index.nbytes] = index.tobytes()
    path.write_bytes(bytes(raw))


def test_info_describes_the_file(vtex: Path) -> None:
    d = info(vtex)
    assert (d["size"], d["tile"], d["border"], d["page"], d["format"], d["levels"], d["tiles"]) == (
        256, 64, 2, 68, "rgba8", 3, 21)
    assert d["raw_bytes"] == 21 * 68 * 68 * 4
    assert sum(lv["compressed_bytes"] for lv in d["per_level"]) == d["compressed_bytes"] < d["file_bytes"]


@pytest.mark.parametrize(("cut", "match"), [(10, "header"), (HEADER_BYTES + 100, "truncated index")])
def test_truncated_header_or_index(vtex: Path, cut: int, match: str) -> None:
    vtex.write_bytes(vtex.read_bytes()[:cut])
    with pytest.raises(FormatError, match=match) as exc:
        TileFile(vtex)
    assert str(vtex) in str(exc.value)


@pytest.mark.parametrize(("offset", "match"), [(0, "magic"), (HEADER_BYTES + 5, "index checksum"),
                                               (20, "header checksum")])
def test_corrupt_header_or_index(vtex: Path, offset: int, match: str) -> None:
    raw = bytearray(vtex.read_bytes())
    raw[offset] ^= 0x5A
    vtex.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=match):
        TileFile(vtex)


def test_bad_tile_checksum_names_level_and_tile_and_the_rest_reads(vtex: Path) -> None:
    with TileFile(vtex) as tf:
        victim = tf.layout.tile_id(1, 1, 0)
        off = int(tf.index[victim]["offset"])
    raw = bytearray(vtex.read_bytes())
    raw[off + 7] ^= 0xFF
    vtex.write_bytes(bytes(raw))
    with TileFile(vtex) as tf:
        with pytest.raises(FormatError, match=r"level 1 tile \(1, 0\).*checksum") as exc:
            tf.read_tile(victim)
        assert str(vtex) in str(exc.value)
        for t in range(tf.layout.tile_count):
            if t != victim:
                assert tf.read_tile(t).size == tf.layout.raw_bytes


@pytest.mark.parametrize(("field", "value", "match"), [
    ("length", 10 ** 7, "outside 1"),
    ("length", 0, "outside 1"),
    ("offset", 10 ** 9, "outside the tile data"),
    ("offset", 3, "outside the tile data"),
    ("raw", 5, "raw length"),
    ("length", None, "checksum"),  # a plausible but wrong length: caught by the checksum
])
def test_lying_index_entries(vtex: Path, field: str, value: int | None, match: str) -> None:
    def edit(index: np.ndarray) -> None:
        index[7][field] = value if value is not None else int(index[7][field]) - 1

    _rewrite_index(vtex, edit)
    with TileFile(vtex) as tf:
        with pytest.raises(FormatError, match=rf"level 0 tile \(3, 1\).*{match}"):
            tf.read_tile(7)
        tf.read_tile(8)


def test_truncated_tile_data(vtex: Path) -> None:
    data = vtex.read_bytes()
    vtex.write_bytes(data[:-100])
    with TileFile(vtex) as tf:
        last = int(np.argmax(tf.index["offset"]))
        with pytest.raises(FormatError, match="outside the tile data"):
            tf.read_tile(last)
        first = int(np.argmin(tf.index["offset"]))
        assert tf.read_tile(first).size == tf.layout.raw_bytes


def test_garbage_that_passes_the_checksum_is_a_zstd_error(vtex: Path) -> None:
    with TileFile(vtex) as tf:
        off = int(tf.index[4]["offset"])
    raw = bytearray(vtex.read_bytes())
    raw[off:off + 4] = b"\0\0\0\0"  # break the zstd magic, then re-sign the tile
    vtex.write_bytes(bytes(raw))

    def edit(index: np.ndarray) -> None:
        e = index[4]
        e["checksum"] = xxhash.xxh3_64_intdigest(bytes(raw[off:off + int(e["length"])]))

    _rewrite_index(vtex, edit)
    with TileFile(vtex) as tf, pytest.raises(FormatError, match="zstd"):
        tf.read_tile(4)


# -- read_tiles: the batch path update() uses ---------------------------------------------------------------------
def _batch(tf: TileFile, ids: list[int], threads: int,
           method: str = "zstd") -> tuple[np.ndarray, int, list[tuple[int, FormatError]]]:
    out = np.full((len(ids), tf.layout.raw_bytes), 0xAB, np.uint8)
    nbytes, errors = tf.read_tiles(ids, out, threads=threads, method=method)
    return out, nbytes, errors


@pytest.mark.parametrize("mode", ["zstd", "direct", "bounce", "c-backend"])
@pytest.mark.parametrize("threads", [1, 3])
def test_read_tiles_equals_read_tile(vtex: Path, threads: int, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from vixen_assets.vt import tileread

    assert tileread.DIRECT  # the wheels ship python-zstandard's CFFI backend: pages go straight into staging
    monkeypatch.setattr(tileread, "DIRECT", mode != "c-backend")  # the fallback: C backend, then a copy
    with TileFile(vtex) as tf:
        ids = [20, 3, 7, 0, 19, 7]  # any order, repeats allowed
        out = np.full((len(ids), tf.layout.raw_bytes), 0xAB, np.uint8)
        nbytes, errors = tf.read_tiles(ids, out, threads=threads, direct=mode == "direct",
                                       method="zstd" if mode == "zstd" else "chunks")
        assert errors == []
        assert nbytes == int(tf.index["length"][ids].sum())
        for row, t in zip(out, ids):
            np.testing.assert_array_equal(row, tf.read_tile(t))


@pytest.mark.parametrize("method", ["zstd", "chunks"])
def test_read_tiles_reports_bad_tiles_by_position_and_loads_the_rest(vtex: Path, method: str) -> None:
    with TileFile(vtex) as tf:
        victim = tf.layout.tile_id(1, 1, 0)
        off = int(tf.index[victim]["offset"])
    raw = bytearray(vtex.read_bytes())
    raw[off + 7] ^= 0xFF
    vtex.write_bytes(bytes(raw))
    _rewrite_index(vtex, lambda index: index[2].__setitem__("length", 10 ** 7))  # a lying length too
    with TileFile(vtex) as tf:
        ids = [0, victim, 5, 2, 9]
        out, nbytes, errors = _batch(tf, ids, threads=2, method=method)
        assert [i for i, _ in errors] == [1, 3]
        assert "checksum" in str(errors[0][1]) and r"level 1 tile (1, 0)" in str(errors[0][1])
        assert "outside 1" in str(errors[1][1]) and str(vtex) in str(errors[1][1])
        assert (out[1] == 0xAB).all() and (out[3] == 0xAB).all()  # failed rows untouched
        for k in (0, 2, 4):
            np.testing.assert_array_equal(out[k], tf.read_tile(ids[k]))
        assert nbytes == int(tf.index["length"][[0, 5, 9]].sum())


@pytest.mark.parametrize(("method", "direct"), [("zstd", True), ("chunks", True), ("chunks", False)])
def test_read_tiles_finds_the_frame_that_passes_its_checksum_but_does_not_decode(
        vtex: Path, method: str, direct: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from vixen_assets.vt import tileread

    monkeypatch.setattr(tileread, "DIRECT", direct)
    with TileFile(vtex) as tf:
        off = int(tf.index[4]["offset"])
    raw = bytearray(vtex.read_bytes())
    raw[off:off + 4] = b"\0\0\0\0"
    vtex.write_bytes(bytes(raw))

    def edit(index: np.ndarray) -> None:
        e = index[4]
        e["checksum"] = xxhash.xxh3_64_intdigest(bytes(raw[off:off + int(e["length"])]))

    _rewrite_index(vtex, edit)
    with TileFile(vtex) as tf:
        out, _nbytes, errors = _batch(tf, [1, 4, 6], threads=2, method=method)
        assert [i for i, _ in errors] == [1] and "zstd" in str(errors[0][1])
        np.testing.assert_array_equal(out[0], tf.read_tile(1))
        np.testing.assert_array_equal(out[2], tf.read_tile(6))


def test_read_tiles_checks_its_arguments(vtex: Path) -> None:
    with TileFile(vtex) as tf:
        with pytest.raises(IndexError):
            tf.read_tiles([tf.layout.tile_count], np.empty((1, tf.layout.raw_bytes), np.uint8))
        with pytest.raises(ValueError, match="cannot hold"):
            tf.read_tiles([0, 1], np.empty((1, tf.layout.raw_bytes), np.uint8))
        assert tf.read_tiles([], np.empty((0, tf.layout.raw_bytes), np.uint8)) == (0, [])
        with pytest.raises(ValueError, match="method"):
            tf.read_tiles([0], np.empty((1, tf.layout.raw_bytes), np.uint8), method="mmap")
