"""Tests for :mod:`vixen_assets.formats.vox` against the shared third-party files, synthetic and hostile files."""

from __future__ import annotations

import os
import re
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vixen_assets.errors import FormatError, UnsupportedFormatError
from vixen_assets.formats.vox import DEFAULT_PALETTE, VoxFile, decode_rotation, read_vox
from vixen_assets.testing import asset_skip_mark, missing_asset


def _asset_dir() -> Path:
    """Return the shared ``.vox`` directory (``$VIXEN_SHARED_ASSETS/vox`` or ``<repo>/../shared/assets/vox``)."""
    env = os.environ.get("VIXEN_SHARED_ASSETS")
    if env:
        return Path(env) / "vox"
    return Path(__file__).resolve().parents[1].parent / "shared" / "assets" / "vox"


ASSETS = _asset_dir()
VOX_FILES = sorted(p.name for p in ASSETS.glob("*.vox")) if ASSETS.is_dir() else []
needs_assets = asset_skip_mark(f"shared .vox assets not found at {ASSETS}") if not VOX_FILES else pytest.mark.skipif(False, reason="")
asset_params = pytest.mark.parametrize("name", VOX_FILES or ["<no assets>"])


# --- an independent minimal parse: struct only, no code shared with the reader ---------------------------------------


def _raw_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Return ``(id, content)`` of MAIN's children, walking headers with struct only."""
    assert data[:4] == b"VOX "
    cid, n, m = struct.unpack_from("<4sii", data, 8)
    assert cid == b"MAIN"
    pos, end, out = 20 + n, 20 + n + m, []
    while pos < end:
        cid, n, m = struct.unpack_from("<4sii", data, pos)
        out.append((cid, data[pos + 12 : pos + 12 + n]))
        pos += 12 + n + m
    return out


def _raw_models(data: bytes) -> list[tuple[tuple[int, int, int], bytes]]:
    """Return ``(size, xyzi_bytes)`` per model from consecutive SIZE/XYZI chunks."""
    models, size = [], None
    for cid, content in _raw_chunks(data):
        if cid == b"SIZE":
            size = struct.unpack_from("<3i", content)
        elif cid == b"XYZI":
            (count,) = struct.unpack_from("<i", content)
            models.append((size, content[4 : 4 + 4 * count]))
    return models


def _raw_colour(data: bytes, index: int) -> tuple[int, int, int, int]:
    """Return the RGBA of a colour index straight from the RGBA chunk (entry ``index - 1``), or the spec formula."""
    for cid, content in _raw_chunks(data):
        if cid == b"RGBA":
            return tuple(content[4 * (index - 1) : 4 * index])
    return _spec_default_colour(index)


def _spec_default_colour(index: int) -> tuple[int, int, int, int]:
    """MagicaVoxel's default palette from its structure: a 6x6x6 cube (minus black) then four 10-step ramps."""
    if index == 0:
        return (0, 0, 0, 0)
    if index <= 215:
        k = index - 1
        return (0xFF - 0x33 * (k // 36), 0xFF - 0x33 * ((k // 6) % 6), 0xFF - 0x33 * (k % 6), 0xFF)
    ramp = (0xEE, 0xDD, 0xBB, 0xAA, 0x88, 0x77, 0x55, 0x44, 0x22, 0x11)
    channel, step = divmod(index - 216, 10)
    rgb = [0, 0, 0] if channel < 3 else [ramp[step]] * 3
    if channel < 3:
        rgb[channel] = ramp[step]
    return (*rgb, 0xFF)


def _sources() -> dict[str, dict[str, str]]:
    """Parse the table in SOURCES.md into ``{file: {column: value}}``."""
    text = (ASSETS / "SOURCES.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    out = {}
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[cells[0]] = dict(zip(header, cells))
    return out


def _load(name: str) -> tuple[bytes, VoxFile]:
    """Read a shared file both raw and through the reader."""
    data = (ASSETS / name).read_bytes()
    return data, read_vox(ASSETS / name)


# --- the shared files ------------------------------------------------------------------------------------------------


@needs_assets
@pytest.mark.assets
@asset_params
def test_models_match_independent_parse(name: str) -> None:
    """Sizes, voxel lists, counts and colours per model equal a struct-only parse."""
    data, vox = _load(name)
    raw = _raw_models(data)
    assert len(vox.models) == len(raw)
    for model, (size, xyzi) in zip(vox.models, raw):
        assert model.size == size
        assert model.voxel_count == len(xyzi) // 4
        assert model.voxels.dtype == np.uint8 and model.voxels.shape == (len(xyzi) // 4, 4)
        assert model.voxels.tobytes() == xyzi
        indices = np.frombuffer(xyzi, np.uint8)[3::4]
        for c in np.unique(indices)[:32]:
            assert tuple(vox.palette[c]) == _raw_colour(data, int(c)), f"colour index {c}"
    assert vox.voxel_count == sum(len(x) // 4 for _, x in raw)


@needs_assets
@pytest.mark.assets
@asset_params
def test_counts_match_sources_md(name: str) -> None:
    """Version, model/voxel counts, first SIZE and scene-graph chunk counts agree with SOURCES.md."""
    row = _sources().get(name)
    if row is None:
        pytest.skip(f"{name} is not described in SOURCES.md")
    data, vox = _load(name)
    assert vox.version == int(row["version"])
    assert len(vox.models) == int(row["models"])
    assert vox.voxel_count == int(row["voxels"])
    assert "x".join(map(str, vox.models[0].size)) == row["first SIZE"]
    ids = [cid for cid, _ in _raw_chunks(data)]
    graph = "/".join(str(ids.count(c)) for c in (b"nTRN", b"nGRP", b"nSHP"))
    assert graph == row["scene graph (nTRN/nGRP/nSHP)"]


@needs_assets
@pytest.mark.assets
@asset_params
def test_dense_grid_matches_voxels(name: str) -> None:
    """``dense()`` puts every colour index at its coordinate and nothing else."""
    _, vox = _load(name)
    for model in vox.models[:8]:
        grid = model.dense()
        assert grid.shape == model.size and grid.dtype == np.uint8
        v = model.voxels
        assert np.array_equal(grid[v[:, 0], v[:, 1], v[:, 2]], v[:, 3])
        assert np.count_nonzero(grid) == len(np.unique(v[v[:, 3] > 0, :3], axis=0))


def _cells(vox: VoxFile, inst_index: int) -> np.ndarray:
    """World-space integer cells occupied by one instance's voxels."""
    inst = vox.instances[inst_index]
    v = vox.models[inst.model_index].voxels[:, :3].astype(np.float64)
    lo = v @ inst.transform[:3, :3].T.astype(np.float64) + inst.transform[:3, 3]
    hi = (v + 1) @ inst.transform[:3, :3].T.astype(np.float64) + inst.transform[:3, 3]
    return np.minimum(lo, hi).astype(np.int64)


def _world_bounds(vox: VoxFile) -> tuple[np.ndarray, np.ndarray]:
    """Min and max world corner over all instances' model boxes."""
    corners = []
    for inst in vox.instances:
        sx, sy, sz = vox.models[inst.model_index].size
        box = np.array([[x, y, z, 1.0] for x in (0, sx) for y in (0, sy) for z in (0, sz)])
        corners.append(box @ inst.transform.T.astype(np.float64))
    pts = np.concatenate(corners)[:, :3]
    return pts.min(axis=0), pts.max(axis=0)


@needs_assets
@pytest.mark.assets
@asset_params
def test_transforms_are_signed_permutations(name: str) -> None:
    """Every instance matrix is affine, with an orthonormal integer rotation (det +-1) and integer translation."""
    _, vox = _load(name)
    assert vox.instances
    for inst in vox.instances:
        m = inst.transform
        assert m.shape == (4, 4) and m.dtype == np.float32
        assert np.array_equal(m[3], [0, 0, 0, 1])
        r = m[:3, :3]
        assert np.array_equal(r, np.round(r)) and np.array_equal(m[:3, 3], np.round(m[:3, 3]))
        assert np.array_equal(r @ r.T, np.eye(3))
        assert round(abs(np.linalg.det(r))) == 1
        assert 0 <= inst.model_index < len(vox.models)


@needs_assets
@pytest.mark.assets
def test_multiple_model_scene_layout() -> None:
    """ogt's scene: 104 instances of 41 models, spread out, rotated, no two voxels in one world cell."""
    if "ogt_test_multiple_model_scene.vox" not in VOX_FILES:
        missing_asset("ogt_test_multiple_model_scene.vox absent")
    _, vox = _load("ogt_test_multiple_model_scene.vox")
    assert len(vox.models) == 41 and len(vox.instances) == 104
    assert {i.model_index for i in vox.instances} == set(range(41))
    translations = {tuple(i.transform[:3, 3]) for i in vox.instances}
    assert len(translations) > 50
    assert sum(not np.array_equal(i.transform[:3, :3], np.eye(3)) for i in vox.instances) > 50
    cells = np.concatenate([_cells(vox, k) for k in range(len(vox.instances))])
    # With the pivot/rotation convention right no two voxels share a cell; a transposed _r gives 49 collisions,
    # a ceil(size / 2) pivot 20 and no pivot 1448, so this pins the convention.
    assert len(np.unique(cells, axis=0)) == len(cells) == 12926
    lo, hi = _world_bounds(vox)
    assert lo.tolist() == [23, -14, 6] and hi.tolist() == [129, 92, 22]
    assert {vox.layers[k].name for k in (0, 1)} == {"assembly", "parts"}
    assert sorted({i.layer for i in vox.instances}) == [0, 1]
    assert [i.name for i in vox.instances if i.name] == ["stairs"]
    assert vox.index_map is not None and vox.index_map.shape == (256,)
    assert set(vox.materials) == set(range(256)) and vox.materials[1]["_type"] == "_diffuse"


@needs_assets
@pytest.mark.assets
def test_single_model_scenes_sit_on_the_ground() -> None:
    """MagicaVoxel places a lone model centred in x/y on z = 0: the pivot convention must reproduce that."""
    expected = {
        "bevy_vox_mesh_chicken.vox": ([-20, -20, 0], [20, 20, 40]),
        "dotvox_placeholder-with-materials.vox": ([-1, -1, 0], [1, 1, 2]),
    }
    for name, (lo_ok, hi_ok) in expected.items():
        if name not in VOX_FILES:
            continue
        _, vox = _load(name)
        assert len(vox.instances) == 1
        lo, hi = _world_bounds(vox)
        assert lo.tolist() == lo_ok and hi.tolist() == hi_ok, name
        assert len(vox.layers) == 8 and len(vox.materials) == 256


@needs_assets
@pytest.mark.assets
def test_files_without_scene_graph() -> None:
    """No nTRN/nGRP/nSHP: one identity instance per model; no RGBA: the default palette."""
    for name in ("mmmm_chr_mayor.vox", "mmmm_obj_splatter1.vox", "mmmm_scene_store8.vox", "mmmm_chr_robot.vox"):
        if name not in VOX_FILES:
            continue
        data, vox = _load(name)
        assert [i.model_index for i in vox.instances] == list(range(len(vox.models)))
        for inst in vox.instances:
            assert np.array_equal(inst.transform, np.eye(4)) and not inst.hidden and inst.layer == -1
        has_rgba = any(cid == b"RGBA" for cid, _ in _raw_chunks(data))
        assert np.array_equal(vox.palette, DEFAULT_PALETTE) != has_rgba
    if "mmmm_scene_store8.vox" in VOX_FILES:
        _, vox = _load("mmmm_scene_store8.vox")
        lo, hi = _world_bounds(vox)
        assert lo.tolist() == [0, 0, 0] and hi.tolist() == [124, 124, 68]
        assert vox.voxel_count == 441118


def test_default_palette_is_magicavoxels() -> None:
    """The built-in table equals the structure of MagicaVoxel's default palette, index by index."""
    assert DEFAULT_PALETTE.shape == (256, 4) and DEFAULT_PALETTE.dtype == np.uint8
    for c in range(256):
        assert tuple(DEFAULT_PALETTE[c]) == _spec_default_colour(c), c
    assert not DEFAULT_PALETTE.flags.writeable


# --- synthetic files -------------------------------------------------------------------------------------------------


def _chunk(cid: bytes, content: bytes = b"", children: bytes = b"") -> bytes:
    """Encode one chunk."""
    return struct.pack("<4sii", cid, len(content), len(children)) + content + children


def _vox(*chunks: bytes, version: int = 150) -> bytes:
    """Encode a file whose MAIN holds ``chunks``."""
    return b"VOX " + struct.pack("<i", version) + _chunk(b"MAIN", b"", b"".join(chunks))


def _str(s: str) -> bytes:
    """Encode a STRING."""
    raw = s.encode()
    return struct.pack("<i", len(raw)) + raw


def _dict(d: dict[str, str] | None = None) -> bytes:
    """Encode a DICT."""
    d = d or {}
    return struct.pack("<i", len(d)) + b"".join(_str(k) + _str(v) for k, v in d.items())


def _size(x: int, y: int, z: int) -> bytes:
    """A SIZE chunk."""
    return _chunk(b"SIZE", struct.pack("<3i", x, y, z))


def _xyzi(voxels: list[tuple[int, int, int, int]], count: int | None = None) -> bytes:
    """An XYZI chunk (``count`` overrides the stored count)."""
    n = len(voxels) if count is None else count
    return _chunk(b"XYZI", struct.pack("<i", n) + bytes(b for v in voxels for b in v))


def _ntrn(nid: int, child: int, frame: dict[str, str] | None = None, attrs: dict[str, str] | None = None,
          layer: int = 0) -> bytes:
    """An nTRN chunk with one frame."""
    body = struct.pack("<i", nid) + _dict(attrs) + struct.pack("<4i", child, -1, layer, 1) + _dict(frame)
    return _chunk(b"nTRN", body)


def _ngrp(nid: int, children: list[int]) -> bytes:
    """An nGRP chunk."""
    body = struct.pack("<i", nid) + _dict() + struct.pack(f"<i{len(children)}i", len(children), *children)
    return _chunk(b"nGRP", body)


def _nshp(nid: int, model: int) -> bytes:
    """An nSHP chunk with one model."""
    return _chunk(b"nSHP", struct.pack("<i", nid) + _dict() + struct.pack("<ii", 1, model) + _dict())


MODEL = _size(3, 4, 5) + _xyzi([(0, 0, 0, 1), (2, 3, 4, 7), (1, 2, 3, 255)])


def test_rgba_shift_and_dense() -> None:
    """RGBA file entry i colours index i + 1; palette[0] is transparent black."""
    rgba = b"".join(bytes((i, 255 - i, i // 2, 200)) for i in range(256))
    vox = read_vox(_vox(MODEL, _chunk(b"RGBA", rgba)))
    assert tuple(vox.palette[0]) == (0, 0, 0, 0)
    assert tuple(vox.palette[1]) == (0, 255, 0, 200)
    assert tuple(vox.palette[255]) == (254, 1, 127, 200)
    grid = vox.models[0].dense()
    assert grid.shape == (3, 4, 5) and grid[2, 3, 4] == 7 and grid[1, 2, 3] == 255 and np.count_nonzero(grid) == 3


def test_scene_graph_transform_convention() -> None:
    """world = T_parent R_parent T_child R_child (p - floor(size / 2)), corner space."""
    # _r 17 -> rows (-e1, e0, e2): a +90 degree turn about z.
    data = _vox(
        MODEL,
        _ntrn(0, 1, {"_t": "100 0 0"}),
        _ngrp(1, [2, 4]),
        _ntrn(2, 3, {"_r": "17", "_t": "10 20 30"}, {"_name": "turned", "_hidden": "1"}, layer=1),
        _nshp(3, 0),
        _ntrn(4, 3, {}, layer=0),
        _chunk(b"LAYR", struct.pack("<i", 0) + _dict({"_name": "ground", "_hidden": "1"}) + struct.pack("<i", -1)),
    )
    vox = read_vox(data)
    a, b = vox.instances
    rot = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    pivot = np.array([1, 2, 2])
    for p in ([0, 0, 0], [3, 4, 5], [1, 2, 3]):
        got = a.transform @ np.array([*p, 1.0])
        want = np.array([100, 0, 0]) + np.array([10, 20, 30]) + rot @ (np.array(p) - pivot)
        assert np.array_equal(got[:3], want)
    assert (a.name, a.layer, a.hidden) == ("turned", 1, True)
    assert np.array_equal(b.transform[:3, 3], [99, -2, -2]) and (b.name, b.layer, b.hidden) == (None, 0, True)
    assert vox.layers[0].name == "ground"


@pytest.mark.parametrize(
    ("byte", "rows"),
    [(4, [[1, 0, 0], [0, 1, 0], [0, 0, 1]]), (17, [[0, -1, 0], [1, 0, 0], [0, 0, 1]]),
     (0b1101001, [[0, 1, 0], [0, 0, -1], [-1, 0, 0]]), (0b1110100, [[-1, 0, 0], [0, -1, 0], [0, 0, -1]])],
)
def test_decode_rotation(byte: int, rows: list[list[int]]) -> None:
    """The spec's example (0b1101001: rows (0 1 0), (0 0 -1), (-1 0 0)) with its sign bits, and others."""
    assert decode_rotation(byte).tolist() == rows


def test_every_valid_rotation_byte_decodes() -> None:
    """48 of the 128 seven-bit values are signed permutations; all others are rejected."""
    good = []
    for b in range(-4, 300):
        try:
            r = decode_rotation(b)
        except ValueError:
            continue
        assert np.array_equal(r @ r.T, np.eye(3)) and abs(round(np.linalg.det(r))) == 1
        good.append(b)
    assert len(good) == 48 and max(good) < 128


def test_path_names_in_errors(tmp_path: Path) -> None:
    """Errors name the file: the path argument, the ``path`` keyword for bytes, or nothing."""
    bad = tmp_path / "bad.vox"
    bad.write_bytes(b"VOX \x96\x00\x00\x00MAIN")
    with pytest.raises(FormatError) as info:
        read_vox(bad)
    assert info.value.path == str(bad) and str(bad) in str(info.value) and info.value.field == "MAIN"
    with pytest.raises(FormatError) as info:
        read_vox(bad.read_bytes(), path="named.vox")
    assert info.value.path == "named.vox" and "named.vox" in str(info.value)
    good = read_vox(bytearray(_vox(MODEL)))
    assert good.voxel_count == 3 and len(good.instances) == 1


def _cycle() -> bytes:
    """T0 -> G1 -> T2 -> G1."""
    return _vox(MODEL, _ntrn(0, 1), _ngrp(1, [2]), _ntrn(2, 1))


def _exponential() -> bytes:
    """40 levels of a group whose two children are the same transform: 2**40 paths, no cycle."""
    chunks = [MODEL]
    for k in range(40):
        chunks += [_ntrn(2 * k, 2 * k + 1), _ngrp(2 * k + 1, [2 * k + 2, 2 * k + 2])]
    chunks += [_ntrn(80, 81), _nshp(81, 0)]
    return _vox(*chunks)


def _matl(mid: int) -> bytes:
    """A MATL chunk."""
    return _chunk(b"MATL", struct.pack("<i", mid) + _dict({"_type": "_metal"}))


HOSTILE = {
    "tiny": (b"VOX ", "header", "shorter"),
    "magic": (b"VXO " + _vox(MODEL)[4:], "header", "magic"),
    "no-main": (b"VOX \x96\x00\x00\x00" + _size(1, 1, 1), "MAIN", "MAIN"),
    "main-size-lies": (_vox(MODEL)[:-3], "MAIN", "truncated"),
    "chunk-size-lies": (_vox(_size(1, 1, 1) + b"XYZI" + struct.pack("<ii", 1000, 0) + b"\0" * 8), "XYZI", "remain"),
    "stray-bytes": (_vox(MODEL + b"\0\0\0"), "MAIN", "stray"),
    "xyzi-count": (_vox(_size(4, 4, 4), _xyzi([(0, 0, 0, 1)], count=2**30)), "XYZI", "voxel count"),
    "xyzi-count-negative": (_vox(_size(4, 4, 4), _xyzi([(0, 0, 0, 1)], count=-1)), "XYZI", "voxel count"),
    "size-zero": (_vox(_size(0, 4, 4), _xyzi([])), "SIZE", "1..256"),
    "size-257": (_vox(_size(4, 257, 4), _xyzi([])), "SIZE", "1..256"),
    "size-huge": (_vox(_size(4, 4, 2**31 - 1), _xyzi([])), "SIZE", "1..256"),
    "size-negative": (_vox(_size(-4, 4, 4), _xyzi([])), "SIZE", "1..256"),
    "size-short": (_vox(_chunk(b"SIZE", b"\1\0\0\0"), _xyzi([])), "SIZE", "remain"),
    "size-without-xyzi": (_vox(_size(1, 1, 1)), "SIZE", "not followed"),
    "size-size": (_vox(_size(1, 1, 1), MODEL), "SIZE", "not followed"),
    "xyzi-without-size": (_vox(_xyzi([(0, 0, 0, 1)])), "XYZI", "without a preceding SIZE"),
    "voxel-outside": (_vox(_size(3, 4, 5), _xyzi([(0, 0, 0, 1), (0, 4, 0, 1)])), "XYZI", "outside"),
    "rgba-short": (_vox(MODEL, _chunk(b"RGBA", b"\xff" * 1020)), "RGBA", "palette"),
    "cycle": (_cycle(), "nTRN", "cycle"),
    "self-loop": (_vox(MODEL, _ntrn(0, 0)), "nTRN", "cycle"),
    "exponential": (_exponential(), "nGRP", "node visits"),
    "missing-child": (_vox(MODEL, _ntrn(0, 1), _ngrp(1, [2, 9]), _ntrn(2, 3), _nshp(3, 0)), "nGRP", "missing node 9"),
    "missing-model": (_vox(MODEL, _ntrn(0, 1), _nshp(1, 1)), "nSHP", "references model 1"),
    "no-root": (_vox(MODEL, _ntrn(5, 1), _nshp(1, 0)), "nTRN", "root"),
    "duplicate-node": (_vox(MODEL, _ntrn(0, 1), _nshp(1, 0), _ngrp(1, [])), "nGRP", "already used"),
    "negative-node": (_vox(MODEL, _ngrp(-3, [])), "nGRP", "negative"),
    "rot-bad-column": (_vox(MODEL, _ntrn(0, 1, {"_r": "3"}), _nshp(1, 0)), "nTRN", "_r"),
    "rot-same-column": (_vox(MODEL, _ntrn(0, 1, {"_r": "5"}), _nshp(1, 0)), "nTRN", "_r"),
    "rot-bit7": (_vox(MODEL, _ntrn(0, 1, {"_r": "132"}), _nshp(1, 0)), "nTRN", "_r"),
    "rot-negative": (_vox(MODEL, _ntrn(0, 1, {"_r": "-1"}), _nshp(1, 0)), "nTRN", "_r"),
    "rot-text": (_vox(MODEL, _ntrn(0, 1, {"_r": "four"}), _nshp(1, 0)), "nTRN", "_r"),
    "t-two": (_vox(MODEL, _ntrn(0, 1, {"_t": "1 2"}), _nshp(1, 0)), "nTRN", "_t"),
    "t-text": (_vox(MODEL, _ntrn(0, 1, {"_t": "1 b 2"}), _nshp(1, 0)), "nTRN", "_t"),
    "t-int64": (_vox(MODEL, _ntrn(0, 1, {"_t": "1 2 99999999999"}), _nshp(1, 0)), "nTRN", "_t"),
    "t-long-digits": (_vox(MODEL, _ntrn(0, 1, {"_t": "1 2 " + "9" * 5000}), _nshp(1, 0)), "nTRN", "_t"),
    "dict-count": (_vox(MODEL, _chunk(b"rOBJ", struct.pack("<i", 2**31 - 1))), "rOBJ", "entry count"),
    "string-length": (_vox(MODEL, _chunk(b"rOBJ", struct.pack("<ii", 1, 2**30) + b"ab")), "rOBJ", "length"),
    "group-children": (_vox(MODEL, _chunk(b"nGRP", struct.pack("<i", 0) + _dict() + struct.pack("<i", 2**28))),
                       "nGRP", "child count"),
    "frame-count": (_vox(MODEL, _chunk(b"nTRN", struct.pack("<i", 0) + _dict() + struct.pack("<4i", 1, -1, 0, -5))),
                    "nTRN", "frame count"),
    "shape-no-model": (_vox(MODEL, _chunk(b"nSHP", struct.pack("<i", 0) + _dict() + struct.pack("<i", 0))),
                       "nSHP", "no model"),
    "matl-id": (_vox(MODEL, _matl(300)), "MATL", "material id"),
    "note-count": (_vox(MODEL, _chunk(b"NOTE", struct.pack("<i", 2**20))), "NOTE", "note count"),
    "imap-short": (_vox(MODEL, _chunk(b"IMAP", bytes(200))), "IMAP", "index map"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_raise_format_error(case: str) -> None:
    """Each malformed file raises FormatError naming the file and the chunk, and allocates next to nothing."""
    data, field, words = HOSTILE[case]
    tracemalloc.start()
    try:
        with pytest.raises(FormatError) as info:
            read_vox(data, path=f"{case}.vox")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    err = info.value
    assert err.field == field, str(err)
    assert err.path == f"{case}.vox" and f"{case}.vox" in str(err) and repr(field) in str(err)
    assert words.lower() in str(err).lower()
    assert peak < 2 * len(data) + (1 << 20), f"peak {peak} bytes for a {len(data)}-byte file"


def test_unsupported_version() -> None:
    """An unknown version is an UnsupportedFormatError (a FormatError) on the header."""
    with pytest.raises(UnsupportedFormatError) as info:
        read_vox(_vox(MODEL, version=151), path="v151.vox")
    assert info.value.field == "header" and "151" in str(info.value)
    assert read_vox(_vox(MODEL, version=200)).version == 200


def test_unknown_and_render_chunks_are_skipped() -> None:
    """Unknown, MATT, PACK, rLIT and nested-children chunks are skipped; MATL 256 folds to colour index 0."""
    data = _vox(
        _chunk(b"PACK", struct.pack("<i", 1)), MODEL, _chunk(b"ZZZZ", b"junk", _chunk(b"YYYY", b"x")),
        _chunk(b"MATT", b"\0" * 16), _chunk(b"rLIT", _dict({"_type": "_area"})), _matl(256), _matl(7),
        _chunk(b"NOTE", struct.pack("<i", 2) + _str("sky") + _str("")),
        _chunk(b"rCAM", struct.pack("<i", 3) + _dict({"_mode": "pers"})),
    )
    vox = read_vox(data)
    assert vox.voxel_count == 3 and set(vox.materials) == {0, 7} and vox.materials[7] == {"_type": "_metal"}
    assert vox.notes == ["sky", ""] and vox.cameras == {3: {"_mode": "pers"}}


@needs_assets
@pytest.mark.assets
@asset_params
def test_truncations_raise_format_error(name: str) -> None:
    """Cutting a real file anywhere before its end is a FormatError naming MAIN."""
    data = (ASSETS / name).read_bytes()
    for cut in sorted({0, 3, 8, 19, 20, 21, len(data) // 3, len(data) // 2, len(data) - 1}):
        with pytest.raises(FormatError) as info:
            read_vox(data[:cut], path=name)
        assert info.value.field in ("header", "MAIN"), str(info.value)


# --- fuzzing ---------------------------------------------------------------------------------------------------------

_INTERESTING = (0, 1, 2, 3, 4, 127, 128, 255, 256, 257, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE, 1 << 20)


def _fuzz_sources() -> list[bytes]:
    """Seeds: the shared files (the largest excluded, for speed) or synthetic files when assets are absent."""
    seeds = [(ASSETS / n).read_bytes() for n in VOX_FILES if (ASSETS / n).stat().st_size < 200_000]
    seeds.append(
        _vox(MODEL, _ntrn(0, 1), _ngrp(1, [2, 4]), _ntrn(2, 3, {"_r": "17", "_t": "1 2 3"}), _nshp(3, 0),
             _ntrn(4, 3, {"_t": "-5 0 0"}), _matl(1))
    )
    return seeds


_SEEDS = _fuzz_sources()


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A seed file with 1-4 byte-level mutations, biased towards the first KiB where the headers live."""
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        limit = len(data) - 1
        pos = draw(st.one_of(st.integers(0, min(limit, 1024)), st.integers(0, limit)))
        kind = draw(st.sampled_from(("byte", "int", "truncate", "delete", "insert")))
        if kind == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "int":
            value = draw(st.one_of(st.sampled_from(_INTERESTING), st.integers(0, 0xFFFFFFFF)))
            data[pos : pos + 4] = struct.pack("<I", value)
        elif kind == "truncate":
            del data[pos:]
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def _check_mutant(data: bytes) -> None:
    """A mutant either parses into a consistent VoxFile or raises FormatError; nothing else."""
    try:
        vox = read_vox(data, path="mutant.vox")
    except FormatError as err:
        assert err.field and "mutant.vox" in str(err)
        return
    assert vox.palette.shape == (256, 4)
    for model in vox.models:
        assert all(1 <= d <= 256 for d in model.size)
        if model.voxel_count:
            assert (model.voxels[:, :3].max(axis=0) < np.array(model.size)).all()
    for inst in vox.instances:
        assert 0 <= inst.model_index < len(vox.models)
        r = inst.transform[:3, :3]
        assert np.array_equal(r @ r.T, np.eye(3))


_FUZZ = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=200, derandomize=True, **_FUZZ)
@given(_mutated())
def test_fuzz_mutations(data: bytes) -> None:
    """~200 byte mutations of real files: only FormatError or success."""
    _check_mutant(data)


@pytest.mark.slow
@settings(max_examples=20_000, **_FUZZ)
@given(_mutated())
def test_fuzz_mutations_long(data: bytes) -> None:
    """The long form of the mutation fuzz (run with ``-m slow``)."""
    _check_mutant(data)


def test_sources_md_parser_is_sane() -> None:
    """The SOURCES.md table parser finds the documented columns (skips without assets)."""
    if not (ASSETS / "SOURCES.md").is_file():
        missing_asset(f"SOURCES.md not found at {ASSETS}")
    rows = _sources()
    assert rows and all(re.fullmatch(r"\d+", r["voxels"]) for r in rows.values())
