"""Voxel scenes on the GPU (``load_vox``, ``VoxelSceneCacher``, ``VoxelAABBCacher``) against the shared ``.vox`` files.

Every expectation is computed from the file's bytes by the small struct-only parser below (no code shared with
``vixen_assets.formats.vox``): voxel lists, palette, materials and the scene graph's placements. The GPU side is
read back buffer by buffer, and ray-traced hits are compared with a numpy Amanatides-Woo DDA over each model's dense
grid, walked in model space through the inverse of each placement's world transform.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vixen_assets.errors import BudgetExceededError, FormatError
from vixen_assets.testing import finish_test_device, open_test_device
from vixen_assets.trace import trace_backends, trace_rays
from vixen_assets.voxels import load_vox

pytestmark = pytest.mark.assets

ALL_FILES = (
    "bevy_vox_mesh_chicken.vox", "dotvox_placeholder-with-materials.vox", "mmmm_chr_mayor.vox", "mmmm_chr_robot.vox",
    "mmmm_obj_splatter1.vox", "mmmm_scene_store8.vox", "ogt_test_multiple_model_scene.vox",
)
MULTI = "ogt_test_multiple_model_scene.vox"
BACKENDS = ["ray_query", "pipeline"]  # trace_rays backends: the DDA comparisons run on each
BRICK = 8
BUFFER_NAMES = ("meta", "models", "instances", "palette", "materials", "bricks", "brick_data", "aabbs")


def need_backend(device: Any, backend: str) -> None:
    """Skip (fail under CI, whose lavapipe has both) where the device cannot trace with ``backend``."""
    if backend not in trace_backends(device):
        msg = f"{device.name} cannot run trace_rays(backend={backend!r})"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


# ---------------------------------------------------------------------------------------------------------------------
# An independent reader: struct only, written from the MagicaVoxel format spec
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class RawVox:
    """What the test expects of a file: models (size, (N, 4) uint8 xyzi rows), palette, materials, placements."""

    models: list[tuple[tuple[int, int, int], np.ndarray]]
    palette: np.ndarray
    materials: dict[int, dict[str, str]]
    placements: list[tuple[int, np.ndarray]] = field(default_factory=list)

    @property
    def voxel_count(self) -> int:
        return sum(len(v) for _s, v in self.models)


def _vox_dir(root: Path) -> Path:
    d = root / "vox"
    if not d.is_dir():
        pytest.skip(f"{d} is absent")
    return d


def _file(root: Path, name: str) -> Path:
    p = _vox_dir(root) / name
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return p


def _read_dict(buf: bytes, pos: int) -> tuple[dict[str, str], int]:
    (n,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    out = {}
    for _ in range(n):
        pair = []
        for _k in range(2):
            (ln,) = struct.unpack_from("<i", buf, pos)
            pair.append(buf[pos + 4 : pos + 4 + ln].decode())
            pos += 4 + ln
        out[pair[0]] = pair[1]
    return out, pos


def _spec_default_palette() -> np.ndarray:
    """MagicaVoxel's default palette by its structure: a 6x6x6 colour cube minus black, then ramps of 10
    (red, green, blue, grey)."""
    pal = np.zeros((256, 4), np.uint8)
    ramp = (0xEE, 0xDD, 0xBB, 0xAA, 0x88, 0x77, 0x55, 0x44, 0x22, 0x11)
    for c in range(1, 256):
        if c <= 215:
            k = c - 1
            pal[c] = (0xFF - 0x33 * (k // 36), 0xFF - 0x33 * ((k // 6) % 6), 0xFF - 0x33 * (k % 6), 0xFF)
        else:
            channel, step = divmod(c - 216, 10)
            rgb = [0, 0, 0] if channel < 3 else [ramp[step]] * 3
            if channel < 3:
                rgb[channel] = ramp[step]  # red ramp, then green, then blue
            pal[c] = (*rgb, 0xFF)
    return pal


def _rotation(r: int) -> np.ndarray:
    """The spec's ``_r`` byte: bits 0-1 / 2-3 give the column of row 0 / 1's non-zero entry, bits 4-6 the signs."""
    c0, c1 = r & 3, (r >> 2) & 3
    cols = (c0, c1, 3 - c0 - c1)
    m = np.zeros((3, 3))
    for row, col in enumerate(cols):
        m[row, col] = -1.0 if (r >> (4 + row)) & 1 else 1.0
    return m


def parse_vox(data: bytes) -> RawVox:
    """Parse the chunks this test checks, independently of the library's reader."""
    assert data[:4] == b"VOX "
    _cid, n, m = struct.unpack_from("<4sii", data, 8)
    pos, end = 20 + n, 20 + n + m
    models, size = [], None
    palette = None
    materials: dict[int, dict[str, str]] = {}
    nodes: dict[int, tuple] = {}
    hidden_layers: set[int] = set()
    while pos < end:
        cid, n, m = struct.unpack_from("<4sii", data, pos)
        c = data[pos + 12 : pos + 12 + n]
        pos += 12 + n + m
        if cid == b"SIZE":
            size = struct.unpack_from("<3i", c)
        elif cid == b"XYZI":
            (count,) = struct.unpack_from("<i", c)
            models.append((size, np.frombuffer(c, np.uint8, 4 * count, 4).reshape(count, 4)))
        elif cid == b"RGBA":
            palette = np.zeros((256, 4), np.uint8)
            palette[1:] = np.frombuffer(c, np.uint8, 1020).reshape(255, 4)
        elif cid == b"MATL":
            (mid,) = struct.unpack_from("<i", c)
            materials[mid % 256] = _read_dict(c, 4)[0]
        elif cid == b"LAYR":
            (lid,) = struct.unpack_from("<i", c)
            if _read_dict(c, 4)[0].get("_hidden") == "1":
                hidden_layers.add(lid)
        elif cid == b"nTRN":
            (nid,) = struct.unpack_from("<i", c)
            attrs, p = _read_dict(c, 4)
            child, _res, layer, nframes = struct.unpack_from("<4i", c, p)
            frame = _read_dict(c, p + 16)[0] if nframes else {}
            local = np.eye(4)
            if "_r" in frame:
                local[:3, :3] = _rotation(int(frame["_r"]))
            if "_t" in frame:
                local[:3, 3] = [int(v) for v in frame["_t"].split()]
            nodes[nid] = ("T", child, local, attrs.get("_hidden") == "1" or layer in hidden_layers)
        elif cid == b"nGRP":
            (nid,) = struct.unpack_from("<i", c)
            _attrs, p = _read_dict(c, 4)
            (k,) = struct.unpack_from("<i", c, p)
            nodes[nid] = ("G", struct.unpack_from(f"<{k}i", c, p + 4))
        elif cid == b"nSHP":
            (nid,) = struct.unpack_from("<i", c)
            _attrs, p = _read_dict(c, 4)
            nodes[nid] = ("S", struct.unpack_from("<i", c, p + 4)[0])
    raw = RawVox(models, palette if palette is not None else _spec_default_palette(), materials)
    if not nodes:
        raw.placements = [(i, np.eye(4)) for i in range(len(models))]
        return raw

    def walk(nid: int, mat: np.ndarray) -> None:
        node = nodes[nid]
        if node[0] == "T":
            if not node[3]:
                walk(node[1], mat @ node[2])
        elif node[0] == "G":
            for ch in node[1]:
                walk(ch, mat)
        else:
            pivot = np.eye(4)
            pivot[:3, 3] = [-(s // 2) for s in models[node[1]][0]]  # ogt_vox.h: the model's centre is floor(size/2)
            raw.placements.append((node[1], mat @ pivot))

    walk(0, np.eye(4))
    return raw


def raw_of(path: Path) -> RawVox:
    return parse_vox(path.read_bytes())


def dense(size: tuple[int, int, int], xyzi: np.ndarray) -> np.ndarray:
    g = np.zeros(size, np.uint8)
    g[xyzi[:, 0], xyzi[:, 1], xyzi[:, 2]] = xyzi[:, 3]
    return g


def brick_counts(xyzi: np.ndarray) -> dict[tuple[int, int, int], int]:
    out: dict[tuple[int, int, int], int] = {}
    for x, y, z, _c in xyzi.tolist():
        k = (x // BRICK, y // BRICK, z // BRICK)
        out[k] = out.get(k, 0) + 1
    return out


def read_all(device: Any, scene: Any) -> dict[str, np.ndarray]:
    """Every buffer of a loaded voxel scene, read back from the GPU."""
    return {name: device.read_buffer(buf) for name, buf in scene.buffer_objects.items()}


# ---------------------------------------------------------------------------------------------------------------------
# Counts, colours, every buffer
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_FILES)
def test_counts_and_colours_per_model(device, vixen_assets_dir, name):
    path = _file(vixen_assets_dir, name)
    raw = raw_of(path)
    with load_vox(path, device) as scene:
        assert scene.voxel_count == raw.voxel_count
        assert len(scene.models) == len(raw.models)
        assert np.array_equal(scene.palette, raw.palette)
        gpu = read_all(device, scene)
        pal = gpu["palette"].reshape(256, 4)
        mrec = gpu["models"].view(np.uint32).reshape(-1, 8)
        brec = gpu["bricks"].view(np.uint32).reshape(-1, 8)
        for k, ((size, xyzi), model) in enumerate(zip(raw.models, scene.models)):
            assert model.index == k and tuple(model.size) == tuple(size) and model.voxel_count == len(xyzi)
            # per-model colour histogram: independent parse vs the GPU's brick data through the GPU's palette
            want: dict[tuple, int] = {}
            for c in xyzi[:, 3].tolist():
                rgba = tuple(raw.palette[c].tolist())
                want[rgba] = want.get(rgba, 0) + 1
            got: dict[tuple, int] = {}
            first, count = int(mrec[k, 4]), int(mrec[k, 5])
            for rec in brec[first : first + count]:
                cells = gpu["brick_data"][int(rec[4]) : int(rec[4]) + BRICK ** 3]
                for c, n in zip(*np.unique(cells[cells > 0], return_counts=True)):
                    got[tuple(pal[c].tolist())] = got.get(tuple(pal[c].tolist()), 0) + int(n)
            assert got == want, f"model {k}"


@pytest.mark.parametrize("mode", ["voxel", "brick"])
@pytest.mark.parametrize("name", ALL_FILES)
def test_every_buffer_matches_the_file(device, vixen_assets_dir, name, mode):
    path = _file(vixen_assets_dir, name)
    raw = raw_of(path)
    with load_vox(path, device, aabb_mode=mode) as scene:
        assert set(scene.buffer_objects) == set(BUFFER_NAMES) == set(scene.buffers)
        gpu = read_all(device, scene)
        for k, b in scene.buffer_objects.items():
            assert len(gpu[k]) == b.size == scene.buffers[k].size

        per_model_bricks = [brick_counts(xyzi) for _s, xyzi in raw.models]
        n_bricks = sum(len(b) for b in per_model_bricks)
        n_aabbs = raw.voxel_count if mode == "voxel" else n_bricks

        meta = gpu["meta"].view(np.uint32)
        assert meta.tolist() == [len(raw.models), len(raw.placements), n_bricks, n_aabbs, raw.voxel_count,
                                 1 if mode == "voxel" else 0, BRICK] + [0] * 9

        models = gpu["models"].view(np.uint32).reshape(-1, 8)
        assert len(models) == len(raw.models)
        first_brick = first_aabb = 0
        for k, ((size, xyzi), bricks) in enumerate(zip(raw.models, per_model_bricks)):
            n_a = len(xyzi) if mode == "voxel" else len(bricks)
            assert models[k].tolist() == [*size, len(xyzi), first_brick, len(bricks), first_aabb, n_a], f"model {k}"
            first_brick += len(bricks)
            first_aabb += n_a

        inst = gpu["instances"].view(np.float32).reshape(-1, 20)
        assert len(inst) == len(raw.placements)
        for row, (m, mat) in zip(inst, raw.placements):
            assert np.array_equal(row[:16].reshape(4, 4).T, mat.astype(np.float32))  # column-major, like GLSL mat4
            assert row[16:].view(np.uint32).tolist() == [m, 0, 0, 0]

        assert np.array_equal(gpu["palette"].reshape(256, 4), raw.palette)

        kinds = {"_diffuse": 0, "_metal": 1, "_glass": 2, "_emit": 3}
        want_mat = np.zeros((256, 4), np.float32)
        for c, props in raw.materials.items():
            want_mat[c] = [kinds.get(props.get("_type"), 0), float(props.get("_rough", 0)),
                           float(props.get("_metal", 0)), float(props.get("_emit", 0))]
        assert np.array_equal(gpu["materials"].view(np.float32).reshape(256, 4), want_mat)

        brec = gpu["bricks"].view(np.uint32).reshape(-1, 8)
        data = gpu["brick_data"]
        aabbs = gpu["aabbs"].view(np.float32).reshape(-1, 6)
        assert len(brec) == n_bricks and len(data) == n_bricks * BRICK ** 3 and len(aabbs) == n_aabbs
        assert sorted(brec[:, 4].tolist()) == list(range(0, len(data), BRICK ** 3))  # every brick its own 512 bytes
        assert not brec[:, 6:].any()
        for k, ((size, xyzi), bricks) in enumerate(zip(raw.models, per_model_bricks)):
            recs = brec[models[k, 4] : models[k, 4] + models[k, 5]]
            assert (recs[:, 0] == k).all()
            coords = [tuple(r) for r in recs[:, 1:4].tolist()]
            assert len(set(coords)) == len(coords) and set(coords) == set(bricks)
            assert [bricks[c] for c in coords] == recs[:, 5].tolist()
            # brick data reproduces every voxel's colour index exactly, and holds nothing else
            offset = {c: int(r[4]) for c, r in zip(coords, recs)}
            x, y, z, col = (xyzi[:, i].astype(np.int64) for i in range(4))
            base = np.array([offset[(a // BRICK, b // BRICK, c // BRICK)] for a, b, c in zip(x, y, z)], np.int64)
            at = base + (x & 7) + BRICK * ((y & 7) + BRICK * (z & 7))
            assert np.array_equal(data[at], col.astype(np.uint8))
            model_bytes = np.concatenate([data[o : o + BRICK ** 3] for o in offset.values()])
            assert np.count_nonzero(model_bytes) == np.count_nonzero(col)
            # AABBs in model space: per voxel in file order, or per brick in brick-record order (clipped to the model)
            boxes = aabbs[models[k, 6] : models[k, 6] + models[k, 7]]
            if mode == "voxel":
                want = np.concatenate([xyzi[:, :3], xyzi[:, :3].astype(np.int64) + 1], axis=1)
            else:
                lo = recs[:, 1:4].astype(np.int64) * BRICK
                want = np.concatenate([lo, np.minimum(lo + BRICK, np.array(size))], axis=1)
            assert np.array_equal(boxes, want.astype(np.float32)), f"model {k} aabbs"


@pytest.mark.parametrize("name", ["ogt_test_multiple_model_scene.vox", "mmmm_scene_store8.vox"])
def test_one_memory_block_one_budget_charge(device, vixen_assets_dir, name):
    path = _file(vixen_assets_dir, name)
    before = device.budget.stats()["categories"].get("voxel", {"count": 0, "total_count": 0, "bytes": 0})
    with load_vox(path, device) as scene:
        cat = device.budget.stats()["categories"]["voxel"]
        assert cat["count"] - before["count"] == 1 and cat["total_count"] - before["total_count"] == 1
        assert cat["bytes"] - before["bytes"] == scene.entry.nbytes > 0
        bufs = scene.buffer_objects
        memory = scene.memory
        assert memory is not None
        base = scene.entry.buffer_set.alloc.offset
        spans = []
        for name_, b in bufs.items():
            assert b.memory is memory, name_
            assert b.memory_offset % 256 == 0, name_
            assert scene.buffers[name_].offset == b.memory_offset - base and scene.buffers[name_].size == b.size
            spans.append((b.memory_offset, b.memory_offset + b.size, name_))
        spans.sort()
        for (_s0, e0, n0), (s1, _e1, n1) in zip(spans, spans[1:]):
            assert e0 <= s1, f"{n0} overlaps {n1}"
        assert spans[0][0] >= base and spans[-1][1] <= base + scene.entry.nbytes
        # the AABB buffer is a device-address build input; its address is the one the BLAS reads
        assert bufs["aabbs"].device_address == scene.entry.aabb_address(0)
    after = device.budget.stats()["categories"]["voxel"]
    assert after["count"] == before["count"] + 1  # released, still cached (evictable)
    device.cachers["voxel"].evict()
    assert device.budget.stats()["categories"]["voxel"]["bytes"] == before["bytes"]


def test_multi_model_scene_transforms(device, vixen_assets_dir):
    path = _file(vixen_assets_dir, MULTI)
    raw = raw_of(path)
    assert len(raw.models) == 41 and len(raw.placements) == 104
    with load_vox(path, device) as scene:
        inst = device.read_buffer(scene.buffer_objects["instances"]).view(np.float32).reshape(-1, 20)
        mats = inst[:, :16].reshape(-1, 4, 4).transpose(0, 2, 1).astype(np.float64)
        idx = inst[:, 16].view(np.uint32)
        assert idx.tolist() == [m for m, _t in raw.placements]
        for (m, want), got in zip(raw.placements, mats):
            assert np.array_equal(got, want)
        assert sum(not np.array_equal(t[:3, :3], np.eye(3)) for t in mats) > 50  # rotations and reflections used
        # world cells from the GPU's transforms and the independently parsed voxels: no two voxels share a cell
        cells = []
        for m, t in zip(idx, mats):
            v = raw.models[m][1][:, :3].astype(np.float64)
            a = v @ t[:3, :3].T + t[:3, 3]
            b = (v + 1) @ t[:3, :3].T + t[:3, 3]
            assert np.array_equal(np.abs(a - b), np.ones_like(a))  # unit cells onto unit cells
            cells.append(np.minimum(a, b).astype(np.int64))
        cells = np.concatenate(cells)
        assert len(cells) == 12926 and len(np.unique(cells, axis=0)) == len(cells)
        lo, hi = scene.bounds
        assert lo.tolist() == [23, -14, 6] and hi.tolist() == [129, 92, 22]
        assert cells.min(0).tolist() >= lo.tolist() and (cells.max(0) + 1).tolist() <= hi.tolist()
        first: dict[int, np.ndarray] = {}
        for m, t in raw.placements:
            first.setdefault(m, t)
        for model in scene.models:
            assert np.array_equal(model.transform, first[model.index].astype(np.float32))


# ---------------------------------------------------------------------------------------------------------------------
# Ray tracing against a numpy DDA
# ---------------------------------------------------------------------------------------------------------------------

EDGE = 1e-3  # rays crossing a cell face this close to an edge are ambiguous in float32 and checked only loosely


def dda(solid: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Amanatides-Woo over a boolean grid in its own (voxel-corner) space, for many rays at once.

    :returns: ``hit`` (N,), entry ``t`` of the first solid cell (N,), that cell (N, 3), and the smallest distance of
        any face crossing (or near-miss of the grid box) to a cell edge, for flagging ambiguous rays.
    """
    n = len(o)
    shape = np.array(solid.shape)
    size = shape.astype(np.float64)
    hit = np.zeros(n, bool)
    t_hit = np.full(n, np.inf)
    cell_hit = np.full((n, 3), -1, np.int64)
    margin = np.full(n, np.inf)
    zero = d == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        ta, tb = -o * inv, (size - o) * inv
    inside = (o > 0) & (o < size)
    tn = np.where(zero, np.where(inside, -np.inf, np.inf), np.minimum(ta, tb))
    tf = np.where(zero, np.where(inside, np.inf, -np.inf), np.maximum(ta, tb))
    t0 = np.maximum(tn.max(1), 0.0)
    t1 = tf.min(1)
    enters = t0 < t1
    dn = np.linalg.norm(d, axis=1)
    near_miss = ~enters & np.isfinite(t0) & (t1 >= 0) & ((t0 - t1) * dn < EDGE)
    margin[near_miss] = 0.0
    r = np.flatnonzero(enters)
    if not len(r):
        return hit, t_hit, cell_hit, margin
    oo, dd, t = o[r], d[r], t0[r]
    p = oo + t[:, None] * dd
    cell = np.clip(np.floor(p).astype(np.int64), 0, shape - 1)
    step = np.sign(dd).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        tmax = np.where(dd > 0, (cell + 1 - oo) / dd, np.where(dd < 0, (cell - oo) / dd, np.inf))
        tdelta = np.where(zero[r], np.inf, np.abs(1.0 / dd))
    entry_axis = np.argmax(tn[r], axis=1)  # the face the ray enters the grid through
    cross_axis = entry_axis
    cross_point = p
    rows = np.arange(len(r))
    while len(r):
        frac = np.abs(cross_point - np.round(cross_point))
        frac[rows, cross_axis] = np.inf
        margin[r] = np.minimum(margin[r], frac.min(1))
        solid_now = solid[cell[:, 0], cell[:, 1], cell[:, 2]]
        if solid_now.any():
            hr = r[solid_now]
            hit[hr] = True
            t_hit[hr] = t[solid_now]
            cell_hit[hr] = cell[solid_now]
        axis = np.argmin(tmax, axis=1)
        t = tmax[rows, axis]
        cell[rows, axis] += step[rows, axis]
        tmax[rows, axis] += tdelta[rows, axis]
        keep = ~solid_now & (cell[rows, axis] >= 0) & (cell[rows, axis] < shape[axis])
        r, oo, dd, t, cell, tmax, tdelta, step, axis = (a[keep] for a in (r, oo, dd, t, cell, tmax, tdelta, step, axis))
        rows = np.arange(len(r))
        cross_axis = axis
        cross_point = oo + t[:, None] * dd
    return hit, t_hit, cell_hit, margin


@dataclass
class Record:
    """One TLAS record of a voxel placement: its model's grid, world matrix and expected-primitive lookup."""

    record: int
    instance: int
    model: int
    world: np.ndarray
    solid: np.ndarray
    index: np.ndarray  # voxel mode: [x, y, z] -> voxel index in the model; brick mode: [x, y, z] -> brick coords


@dataclass
class Box:
    """One TLAS record of a mesh that is an axis-aligned box in world space (the USD test's cube)."""

    record: int
    instance: int
    lo: np.ndarray
    hi: np.ndarray


def voxel_records(scene: Any, grids: dict[int, list[tuple[tuple[int, int, int], np.ndarray]]],
                  mode: str = "voxel") -> list[Record]:
    """Map every voxel TLAS record to its placement, checking ``tlas_map`` against the entries' placements.

    :param grids: scene instance index -> that entry's models as ``(size, xyzi)`` (from the independent parse).
    """
    tmap = scene.tlas_map
    out = []
    for i, inst in enumerate(scene.instances):
        if inst.kind != "voxel":
            continue
        entry = inst.mesh
        recs = np.flatnonzero(tmap.instance == i)
        placements = [(m, t) for m, t in entry.placements if entry.models[m].aabb_count]
        assert len(recs) == len(placements)
        for rec, (m, t) in zip(recs, placements):
            assert np.array_equal(tmap.local[rec], t)
            assert int(tmap.aabb_address[rec]) == entry.aabb_address(m)
            size, xyzi = grids[i][m]
            if mode == "voxel":
                solid = dense(size, xyzi) > 0
                index = np.full(size, -1, np.int64)
                index[xyzi[:, 0], xyzi[:, 1], xyzi[:, 2]] = np.arange(len(xyzi))
            else:  # a cell is "solid" where its brick is: the first such cell entered lies in the brick box hit
                occupied = np.zeros([(s + BRICK - 1) // BRICK for s in size], bool)
                for b in brick_counts(xyzi):
                    occupied[b] = True
                coords = np.meshgrid(*[np.arange(s) // BRICK for s in size], indexing="ij")
                solid = occupied[tuple(coords)]
                index = np.stack(coords, -1)
            world = inst.transform.astype(np.float64) @ t.astype(np.float64)
            out.append(Record(int(rec), i, m, world, solid, index))
    return out


def _box_hits(box: Box, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slab test of a world box: ``hit``, entry ``t``, distance of the entry point to the box's edges."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ta, tb = (box.lo - o) / d, (box.hi - o) / d
    zero = d == 0
    inside = (o > box.lo) & (o < box.hi)
    tn = np.where(zero, np.where(inside, -np.inf, np.inf), np.minimum(ta, tb))
    tf = np.where(zero, np.where(inside, np.inf, -np.inf), np.maximum(ta, tb))
    t0, t1 = tn.max(1), tf.min(1)
    hit = (t0 < t1) & (t0 > 0)
    p = o + np.where(np.isfinite(t0), t0, 0)[:, None] * d
    edge = np.minimum(np.abs(p - box.lo), np.abs(p - box.hi))
    edge[np.arange(len(o)), np.argmax(tn, axis=1)] = np.inf
    margin = np.where(hit, edge.min(1), np.inf)
    dn = np.linalg.norm(d, axis=1)
    margin[~hit & np.isfinite(t0) & (t1 > 0) & ((t0 - t1) * dn < EDGE)] = 0.0
    return hit, t0, margin


def expected_hits(targets: list[Record | Box], o: np.ndarray, d: np.ndarray) -> dict[str, np.ndarray]:
    """The closest hit over every target: ``hit``, ``t``, ``target`` (index), ``margin``; and per target ``t_all``
    (inf where missed) and ``cell_all`` (the model-space cell hit), for rays that enter two targets at once."""
    n = len(o)
    t_all = np.full((len(targets), n), np.inf)
    cell_all = np.full((len(targets), n, 3), -1, np.int64)
    margin = np.full(n, np.inf)
    for k, tgt in enumerate(targets):
        if isinstance(tgt, Box):
            hit, t, mg = _box_hits(tgt, o, d)
        else:
            inv = np.linalg.inv(tgt.world)
            om = o @ inv[:3, :3].T + inv[:3, 3]
            dm = d @ inv[:3, :3].T
            dm[np.abs(dm) < 1e-12] = 0.0  # exact zeros for axis-aligned rays through rotated placements
            hit, t, cell_all[k], mg = dda(tgt.solid, om, dm)
        margin = np.minimum(margin, mg)
        t_all[k, hit] = t[hit]
    best = np.argmin(t_all, axis=0) if len(targets) else np.zeros(n, np.int64)
    best_t = t_all.min(axis=0) if len(targets) else np.full(n, np.inf)
    hit = np.isfinite(best_t)
    return {"hit": hit, "t": best_t, "target": np.where(hit, best, -1), "margin": margin, "t_all": t_all,
            "cell_all": cell_all}


def world_bounds(records: list[Record]) -> tuple[np.ndarray, np.ndarray]:
    pts = []
    for rec in records:
        s = rec.solid.shape
        c = np.array([[x, y, z, 1.0] for x in (0, s[0]) for y in (0, s[1]) for z in (0, s[2])])
        pts.append((c @ rec.world.T)[:, :3])
    p = np.concatenate(pts)
    return p.min(0), p.max(0)


def make_rays(lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator, n_axis: int, n_oblique: int):
    """Axis-aligned rays through world cell centres (from outside, both directions, a ring of misses around) and
    oblique rays aimed at random points of the box, starting just outside it; rounded to float32 like the GPU's."""
    lo_i, hi_i = np.floor(lo).astype(int) - 1, np.ceil(hi).astype(int) + 1
    origins, dirs = [], []
    for axis in range(3):
        a, b = [k for k in range(3) if k != axis]
        grid = np.stack(np.meshgrid(np.arange(lo_i[a], hi_i[a]) + 0.5, np.arange(lo_i[b], hi_i[b]) + 0.5,
                                    indexing="ij"), -1).reshape(-1, 2)
        for sign in (1.0, -1.0):
            o = np.zeros((len(grid), 3))
            o[:, a], o[:, b] = grid[:, 0], grid[:, 1]
            o[:, axis] = lo_i[axis] - 1.0 if sign > 0 else hi_i[axis] + 1.0
            d = np.zeros_like(o)
            d[:, axis] = sign
            origins.append(o)
            dirs.append(d)
    o = np.concatenate(origins)
    d = np.concatenate(dirs)
    if len(o) > n_axis:
        keep = rng.choice(len(o), n_axis, replace=False)
        o, d = o[keep], d[keep]
    # oblique: aimed at a random point of the box, starting on a sphere around it, direction lengths 0.5..2
    centre, radius = (lo + hi) / 2, np.linalg.norm(hi - lo) / 2 + 2.0
    target = lo + rng.random((n_oblique, 3)) * (hi - lo)
    dir_ = rng.normal(size=(n_oblique, 3))
    dir_ *= rng.uniform(0.5, 2.0, (n_oblique, 1)) / np.linalg.norm(dir_, axis=1, keepdims=True)
    u = target - centre
    dd = np.einsum("ij,ij->i", dir_, dir_)
    s = np.einsum("ij,ij->i", u, dir_) / dd
    back = s + np.sqrt(s ** 2 - (np.einsum("ij,ij->i", u, u) - radius ** 2) / dd)
    ob = target - back[:, None] * dir_
    o = np.concatenate([o, ob]).astype(np.float32).astype(np.float64)
    d = np.concatenate([d, dir_]).astype(np.float32).astype(np.float64)
    return o, d


def check_trace(got: dict[str, np.ndarray], targets: list[Record | Box], o: np.ndarray, d: np.ndarray,
                traced_key: Any = None) -> dict[str, int]:
    """Compare GPU hits with the DDA: same record, same voxel (or brick, through ``traced_key``), t within 1e-4
    relative; misses agree. Rays grazing an edge closer than ``EDGE`` are only checked for a consistent ``t``."""
    want = expected_hits(targets, o, d)
    clear = want["margin"] >= EDGE
    assert clear.mean() > 0.85, f"too many ambiguous rays ({(~clear).sum()} of {len(o)})"
    n_hits = 0
    for i in np.flatnonzero(clear):
        assert bool(got["hit"][i]) == bool(want["hit"][i]), (
            f"ray {i} o={o[i]} d={d[i]}: GPU hit={got['hit'][i]} record={got['record'][i]} t={got['t'][i]}, "
            f"DDA hit={want['hit'][i]} t={want['t'][i]}")
        if not want["hit"][i]:
            continue
        n_hits += 1
        # targets entered at the closest distance: one, or several where boxes overlap (brick boxes of neighbouring
        # placements sharing a face plane); the GPU may report any of those
        tied = np.flatnonzero(want["t_all"][:, i] <= want["t"][i] + 1e-9 * max(want["t"][i], 1.0))
        rec_ok = [k for k in tied if targets[k].record == int(got["record"][i])]
        assert rec_ok, f"ray {i}: record {got['record'][i]}, expected {[targets[k].record for k in tied]}"
        tgt = targets[rec_ok[0]]
        assert int(got["instance"][i]) == tgt.instance
        if isinstance(tgt, Record):
            cell = tuple(want["cell_all"][rec_ok[0], i])
            expect = tgt.index[cell]
            key = int(got["primitive"][i]) if traced_key is None else traced_key(i)
            assert np.array_equal(key, expect), f"ray {i}: traced {key}, DDA cell {cell} -> {expect}"
        assert abs(float(got["t"][i]) - want["t"][i]) <= 1e-4 * max(want["t"][i], 1.0), (
            f"ray {i}: t {got['t'][i]} vs DDA {want['t'][i]}")
    both = ~clear & got["hit"] & want["hit"]
    if both.any():
        assert np.allclose(got["t"][both], want["t"][both], rtol=1e-3, atol=1e-3)
    return {"rays": len(o), "clear": int(clear.sum()), "hits": n_hits}


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, n_axis, n_oblique", [
    ("mmmm_chr_robot.vox", 10_000, 1500),
    ("bevy_vox_mesh_chicken.vox", 6000, 3000),
    (MULTI, 5000, 3000),
])
def test_trace_rays_hits_exactly_the_dda_voxel(device, vixen_assets_dir, name, n_axis, n_oblique, backend):
    need_backend(device, backend)
    path = _file(vixen_assets_dir, name)
    raw = raw_of(path)
    with load_vox(path, device) as scene:
        scene.build_acceleration_structures()
        records = voxel_records(scene, {0: raw.models})
        assert [r.model for r in records] == [m for m, _t in raw.placements]
        lo, hi = world_bounds(records)
        assert np.array_equal(lo, scene.bounds[0]) and np.array_equal(hi, scene.bounds[1])
        o, d = make_rays(lo, hi, np.random.default_rng(_seed(name)), n_axis, n_oblique)
        stats = check_trace(trace_rays(scene, o, d, backend=backend), records, o, d)
        assert stats["hits"] > 0.2 * stats["rays"] and stats["rays"] - stats["hits"] > 0.05 * stats["rays"], stats


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["bevy_vox_mesh_chicken.vox", MULTI])
def test_trace_rays_brick_mode(device, vixen_assets_dir, name, backend):
    """Brick mode: the hit is the first solid brick's box (clipped to the model) the ray enters."""
    need_backend(device, backend)
    path = _file(vixen_assets_dir, name)
    raw = raw_of(path)
    with load_vox(path, device, aabb_mode="brick") as scene:
        scene.build_acceleration_structures()
        records = voxel_records(scene, {0: raw.models}, mode="brick")
        lo, hi = world_bounds(records)
        o, d = make_rays(lo, hi, np.random.default_rng(_seed(name) + 1), 3000, 2000)
        brec = device.read_buffer(scene.buffer_objects["bricks"]).view(np.uint32).reshape(-1, 8)
        got = trace_rays(scene, o, d, backend=backend)
        model_of = {r.record: r.model for r in records}

        def brick_of(i: int) -> tuple[int, int, int]:
            info = scene.entry.models[model_of[int(got["record"][i])]]
            prim = int(got["primitive"][i])
            assert 0 <= prim < info.brick_count  # brick-mode AABBs are in brick-record order
            return tuple(brec[info.first_brick + prim, 1:4].tolist())

        stats = check_trace(got, records, o, d, traced_key=brick_of)
        assert stats["hits"] > 0.2 * stats["rays"], stats


# ---------------------------------------------------------------------------------------------------------------------
# Dedup, modes, failures
# ---------------------------------------------------------------------------------------------------------------------


def test_same_file_twice_uploads_once(device, vixen_assets_dir, tmp_path):
    path = _file(vixen_assets_dir, "bevy_vox_mesh_chicken.vox")
    copy = tmp_path / "chicken_copy.vox"
    copy.write_bytes(path.read_bytes())
    a = load_vox(path, device)
    try:
        cacher = device.cachers["voxel"]
        up = device.uploader.stats_dict()
        uploaded = up["staged_bytes"] + up["direct_bytes"]
        voxel_cat = dict(device.budget.stats()["categories"]["voxel"])
        b = load_vox(path, device)
        c = load_vox(copy, device)  # same content under another name: the same entry
        try:
            assert b.entry is a.entry and c.entry is a.entry
            assert b.memory is a.memory
            assert cacher.stats.misses == 1 and cacher.stats.hits == 2
            assert cacher.refcount(a.entry.key) == 3 and len(cacher) == 1
            up2 = device.uploader.stats_dict()
            assert up2["staged_bytes"] + up2["direct_bytes"] == uploaded
            assert device.budget.stats()["categories"]["voxel"] == voxel_cat
        finally:
            b.release()
            c.release()
        # another AABB mode is another entry (another allocation)
        with load_vox(path, device, aabb_mode="brick") as d:
            assert d.entry is not a.entry and d.memory is not a.memory
            assert cacher.stats.misses == 2
            assert device.budget.stats()["categories"]["voxel"]["count"] == 2
    finally:
        a.release()


@pytest.mark.parametrize("name", ["mmmm_chr_robot.vox", "ogt_test_multiple_model_scene.vox"])
def test_brick_mode_and_voxel_mode_aabb_counts(device, vixen_assets_dir, name):
    path = _file(vixen_assets_dir, name)
    raw = raw_of(path)
    n_bricks = [len(brick_counts(xyzi)) for _s, xyzi in raw.models]
    with load_vox(path, device, aabb_mode="voxel") as v, load_vox(path, device, aabb_mode="brick") as b:
        mv = device.read_buffer(v.buffer_objects["meta"]).view(np.uint32)
        mb = device.read_buffer(b.buffer_objects["meta"]).view(np.uint32)
        assert mv[3] == raw.voxel_count and mv[5] == 1
        assert mb[3] == sum(n_bricks) and mb[5] == 0
        assert mb[3] < mv[3]
        assert [m.aabb_count for m in v.entry.models] == [len(x) for _s, x in raw.models]
        assert [m.aabb_count for m in b.entry.models] == n_bricks
        assert b.buffers["aabbs"].size == 24 * sum(n_bricks) < v.buffers["aabbs"].size == 24 * raw.voxel_count
    with pytest.raises(FormatError, match="aabb_mode"):
        load_vox(path, device, aabb_mode="octree")


def _vox_bytes(models: list[tuple[tuple[int, int, int], list[list[int]]]]) -> bytes:
    """A minimal .vox file (SIZE/XYZI pairs, no palette, no scene graph)."""
    def chunk(cid: bytes, content: bytes, children: bytes = b"") -> bytes:
        return struct.pack("<4sii", cid, len(content), len(children)) + content + children

    body = b""
    for size, xyzi in models:
        body += chunk(b"SIZE", struct.pack("<3i", *size))
        body += chunk(b"XYZI", struct.pack("<i", len(xyzi)) + np.array(xyzi, np.uint8).reshape(-1).tobytes())
    return b"VOX " + struct.pack("<i", 150) + chunk(b"MAIN", b"", body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_models_get_no_tlas_record(device, tmp_path, backend):
    """Models without voxels have no AABBs and no BLAS; a scene of only empty models traces as all misses."""
    need_backend(device, backend)
    empty = tmp_path / "empty.vox"
    empty.write_bytes(_vox_bytes([((4, 4, 4), [])]))
    mixed = tmp_path / "mixed.vox"
    mixed.write_bytes(_vox_bytes([((4, 4, 4), []), ((2, 2, 2), [[0, 0, 0, 5], [1, 1, 1, 6]])]))
    o, d = np.array([[0.5, 0.5, -3.0], [1.5, 1.5, -3.0]]), np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    with load_vox(empty, device) as scene:
        assert scene.voxel_count == 0 and scene.models[0].voxel_count == 0
        scene.build_acceleration_structures()
        assert len(scene.tlas_map.instance) == 0
        got = trace_rays(scene, o, d, backend=backend)
        assert not got["hit"].any() and (got["record"] == -1).all() and (got["primitive"] == -1).all()
    with load_vox(mixed, device) as scene:
        scene.build_acceleration_structures()
        records = voxel_records(scene, {0: parse_vox(mixed.read_bytes()).models})
        assert [r.model for r in records] == [1]
        got = trace_rays(scene, o, d, backend=backend)
        assert got["hit"].all() and got["primitive"].tolist() == [0, 1] and got["record"].tolist() == [0, 0]
        assert np.allclose(got["t"], [3.0, 4.0])


def _resource_state(device: Any) -> tuple[int, int, dict]:
    cats = device.budget.stats()["categories"]
    return device.budget.used, len(device.live_resources()), {k: v["bytes"] for k, v in cats.items()}


def _still_usable(device: Any, root: Path) -> None:
    """Load a real file and ray-trace it: the device works after a failure."""
    with load_vox(_file(root, "mmmm_chr_robot.vox"), device) as scene:
        raw = raw_of(_file(root, "mmmm_chr_robot.vox"))
        scene.build_acceleration_structures()
        records = voxel_records(scene, {0: raw.models})
        o = np.array([[x + 0.5, y + 0.5, -3.0] for x in range(-1, 7) for y in range(-1, 5)])
        d = np.tile([0.0, 0.0, 1.0], (len(o), 1))
        assert check_trace(trace_rays(scene, o, d), records, o, d)["hits"] > 0


def _corrupt_cases(data: bytes) -> dict[str, bytes]:
    """Truncations and corrupted SIZE chunks of a real file."""
    size_at = data.index(b"SIZE")
    xyzi_at = data.index(b"XYZI")
    cases = {
        "truncated in the header": data[:6],
        "truncated in MAIN's header": data[:15],
        "truncated in the SIZE chunk": data[: size_at + 16],
        "truncated in the voxels": data[: xyzi_at + 40],
        "truncated by one byte": data[:-1],
    }
    sizes = {"SIZE x = 0": (0, 4, 12), "SIZE z = 300": (6, 4, 300), "SIZE too small for its voxels": (2, 2, 2),
             "SIZE negative": (-6, 4, 12)}
    for label, dims in sizes.items():
        b = bytearray(data)
        struct.pack_into("<3i", b, size_at + 12, *dims)
        cases[label] = bytes(b)
    b = bytearray(data)
    struct.pack_into("<i", b, xyzi_at + 12, 10**8)  # voxel count far beyond the chunk: no huge allocation
    cases["XYZI count 1e8"] = bytes(b)
    return cases


def test_malformed_files_fail_cleanly(device, vixen_assets_dir, tmp_path):
    good = _file(vixen_assets_dir, "mmmm_chr_robot.vox").read_bytes()
    device.uploader.flush().wait()
    baseline = _resource_state(device)
    for label, data in _corrupt_cases(good).items():
        bad = tmp_path / f"bad_{len(data)}_{abs(hash(label)) % 10000}.vox"
        bad.write_bytes(data)
        with pytest.raises(FormatError) as info:
            load_vox(bad, device)
        assert info.value.path == str(bad) and bad.name in str(info.value), label
        assert info.value.field, label
        assert _resource_state(device) == baseline, label
    with pytest.raises(FormatError, match="not found"):
        load_vox(tmp_path / "missing.vox", device)
    assert _resource_state(device) == baseline
    _still_usable(device, vixen_assets_dir)


def test_budget_too_small_fails_cleanly(device, vixen_assets_dir):
    path = _file(vixen_assets_dir, "mmmm_scene_store8.vox")
    with load_vox(path, device) as probe:
        need = probe.entry.nbytes
    heap = max(h.size for h in device.info.heaps if h.device_local)
    small = open_test_device(budget_fraction=(need // 2) / heap)
    try:
        small.uploader.flush().wait()
        baseline = _resource_state(small)
        with pytest.raises(BudgetExceededError) as info:
            load_vox(path, small)
        assert info.value.requested >= need // 2 and "voxel" in str(info.value)
        assert _resource_state(small) == baseline
        assert small.cachers["voxel"].stats.failed_builds == 1 and len(small.cachers["voxel"]) == 0
        _still_usable(small, vixen_assets_dir)
    finally:
        finish_test_device(small)


def test_budget_too_small_for_the_aabb_blas(device, vixen_assets_dir):
    """The voxel buffers fit but the AABB BLAS does not: the build fails cleanly and the device still works."""
    path = _file(vixen_assets_dir, "mmmm_scene_store8.vox")
    with load_vox(path, device) as probe:
        need = probe.entry.nbytes
    heap = max(h.size for h in device.info.heaps if h.device_local)
    small = open_test_device(budget_fraction=(need + (8 << 20)) / heap)
    try:
        with load_vox(path, small) as scene:
            small.uploader.flush().wait()
            before = _resource_state(small)
            with pytest.raises(BudgetExceededError):
                scene.build_acceleration_structures()
            assert scene.tlas is None
            after = _resource_state(small)
            assert after[:2] == before[:2] and after[2].get("accel", 0) == 0 and after[2].get("accel-scratch", 0) == 0
        small.cachers["voxel"].evict()
        _still_usable(small, vixen_assets_dir)
    finally:
        finish_test_device(small)


# ---------------------------------------------------------------------------------------------------------------------
# USD: .vox through vixen:file, dense grids through vixen:voxels, one TLAS with meshes
# ---------------------------------------------------------------------------------------------------------------------


def _write_stage(path: Path, vox: Path, grid: np.ndarray, *, missing: bool = False,
                 bad_vox: Path | None = None) -> None:
    from pxr import Gf, Sdf, Usd, UsdGeom, Vt

    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.Xform.Define(stage, "/World")
    robot = UsdGeom.Xform.Define(stage, "/World/Robot")
    robot.AddTranslateOp().Set(Gf.Vec3d(40, 0, 0))
    robot.AddRotateZOp().Set(90.0)
    robot.GetPrim().CreateAttribute("vixen:file", Sdf.ValueTypeNames.Asset).Set(Sdf.AssetPath(str(vox)))
    cube = UsdGeom.Mesh.Define(stage, "/World/Cube")
    pts = np.array([[x, y, z] for z in (0, 1) for y in (0, 1) for x in (0, 1)], np.float32) * 2 - 1
    quads = [[0, 2, 3, 1], [4, 5, 7, 6], [0, 1, 5, 4], [2, 6, 7, 3], [0, 4, 6, 2], [1, 3, 7, 5]]
    cube.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(pts))
    cube.CreateFaceVertexCountsAttr([4] * 6)
    cube.CreateFaceVertexIndicesAttr([i for q in quads for i in q])
    g = UsdGeom.Xform.Define(stage, "/World/Grid")
    g.AddTranslateOp().Set(Gf.Vec3d(0, 30, 0))
    prim = g.GetPrim()
    flat = np.ascontiguousarray(grid.transpose(2, 1, 0)).reshape(-1)  # x fastest
    prim.CreateAttribute("vixen:voxels", Sdf.ValueTypeNames.UCharArray).Set(Vt.UCharArray.FromNumpy(flat))
    prim.CreateAttribute("vixen:voxelDims", Sdf.ValueTypeNames.Int3).Set(Gf.Vec3i(*grid.shape))
    if missing:
        m = UsdGeom.Xform.Define(stage, "/World/Missing").GetPrim()
        m.CreateAttribute("vixen:file", Sdf.ValueTypeNames.Asset).Set(Sdf.AssetPath("no_such_model.vox"))
    if bad_vox is not None:
        b = UsdGeom.Xform.Define(stage, "/World/Broken").GetPrim()
        b.CreateAttribute("vixen:file", Sdf.ValueTypeNames.Asset).Set(Sdf.AssetPath(str(bad_vox)))
    stage.GetRootLayer().Save()


def _test_grid() -> np.ndarray:
    rng = np.random.default_rng(3)
    grid = np.where(rng.random((5, 3, 4)) < 0.5, rng.integers(1, 256, (5, 3, 4)), 0).astype(np.uint8)
    grid[0, 0, 0] = 9
    return grid


def test_usd_stage_with_vox_file_mesh_and_dense_grid_in_one_tlas(device, vixen_assets_dir, tmp_path):
    from vixen_assets import load_stage

    vox = _file(vixen_assets_dir, "mmmm_chr_robot.vox")
    raw = raw_of(vox)
    grid = _test_grid()
    usda = tmp_path / "voxels.usda"
    _write_stage(usda, vox, grid)
    with load_stage(usda, device) as scene:
        assert not scene.warnings, scene.warnings
        kinds = {i.prim_path: i.kind for i in scene.instances}
        assert kinds == {"/World/Robot": "voxel", "/World/Cube": "mesh", "/World/Grid": "voxel"}
        by_path = {i.prim_path: k for k, i in enumerate(scene.instances)}
        robot_i, grid_i, cube_i = by_path["/World/Robot"], by_path["/World/Grid"], by_path["/World/Cube"]
        robot, gentry = scene.instances[robot_i].mesh, scene.instances[grid_i].mesh
        assert robot.voxel_count == raw.voxel_count and gentry.voxel_count == np.count_nonzero(grid)
        # the grid prim's buffers hold the authored grid (x fastest in the array), with the default palette
        gx = np.argwhere(grid > 0)
        xyzi_grid = np.concatenate([gx, grid[grid > 0][:, None]], 1).astype(np.uint8)
        gpu = {k: device.read_buffer(b) for k, b in gentry.buffer_set.buffers.items()}
        assert np.array_equal(gpu["aabbs"].view(np.float32).reshape(-1, 6),
                              np.concatenate([gx, gx + 1], 1).astype(np.float32))
        assert np.array_equal(gpu["palette"].reshape(256, 4), _spec_default_palette())
        assert gpu["meta"].view(np.uint32)[:5].tolist() == [1, 1, len(brick_counts(xyzi_grid)), len(gx), len(gx)]
        # robot buffers are those of the file
        assert np.array_equal(device.read_buffer(robot.buffer_set["palette"]).reshape(256, 4), raw.palette)

        tlas = scene.build_acceleration_structures()
        assert tlas is scene.tlas and len(scene.tlas_map.instance) == 3  # ONE TLAS: the mesh, the robot, the grid
        assert sorted(scene.tlas_map.instance.tolist()) == sorted([robot_i, grid_i, cube_i])
        records = voxel_records(scene, {robot_i: raw.models, grid_i: [(grid.shape, xyzi_grid)]})
        assert {r.instance for r in records} == {robot_i, grid_i}
        rot = np.array([[0, -1, 0, 40], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float64)  # T(40,0,0) Rz(90)
        assert np.allclose(next(r.world for r in records if r.instance == robot_i), rot, atol=1e-6)
        assert np.allclose(next(r.world for r in records if r.instance == grid_i)[:3, 3], [0, 30, 0])
        cube_rec = int(np.flatnonzero(scene.tlas_map.instance == cube_i)[0])
        cube = Box(cube_rec, cube_i, np.full(3, -1.0), np.full(3, 1.0))  # the 2-unit cube at the origin
        targets: list[Record | Box] = [*records, cube]

        lo, hi = world_bounds(records)
        lo, hi = np.minimum(lo, cube.lo), np.maximum(hi, cube.hi)
        o, d = make_rays(lo, hi, np.random.default_rng(11), 4000, 2000)
        got = trace_rays(scene, o, d)
        stats = check_trace(got, targets, o, d)
        assert stats["hits"] > 0.03 * stats["rays"], stats
        hit_instances = got["instance"][got["hit"]]
        for inst in (robot_i, grid_i, cube_i):
            assert (hit_instances == inst).sum() > 20, inst
        on_cube = got["hit"] & (got["instance"] == cube_i)
        assert ((got["primitive"][on_cube] >= 0) & (got["primitive"][on_cube] < 12)).all()
        # a few rays at known places
        probe_o = np.array([[0.25, 0.5, 5.0], [40 - 0.5, 0.5, -3.0], [0.5, 30.5, -3.0], [100.0, 100.0, 100.0]])
        probe_d = np.array([[0.0, 0.0, -2.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
        p = trace_rays(scene, probe_o, probe_d)
        assert p["hit"].tolist() == [True, True, True, False]
        assert p["instance"][:3].tolist() == [cube_i, robot_i, grid_i]
        assert abs(p["t"][0] - 2.0) < 1e-5  # the cube's top face z = 1, 4 units below, direction length 2
        first_z = int(np.argmax(grid[0, 0] > 0))
        assert abs(p["t"][2] - (3.0 + first_z)) < 1e-5 and p["primitive"][2] == 0  # cell (0, 0, first_z)


def test_usd_unresolvable_or_bad_vox_file_warns(device, vixen_assets_dir, tmp_path):
    from vixen_assets import load_stage

    vox = _file(vixen_assets_dir, "mmmm_chr_robot.vox")
    bad = tmp_path / "truncated.vox"
    bad.write_bytes(vox.read_bytes()[:200])
    usda = tmp_path / "warns.usda"
    _write_stage(usda, vox, _test_grid(), missing=True, bad_vox=bad)
    device.uploader.flush().wait()
    with load_stage(usda, device) as scene:
        missing = [w for w in scene.warnings if "/World/Missing" in w]
        assert len(missing) == 1 and "vixen:file" in missing[0] and "no_such_model.vox" in missing[0]
        broken = [w for w in scene.warnings if "truncated.vox" in w]
        assert len(broken) == 1, scene.warnings
        assert {i.prim_path for i in scene.instances} == {"/World/Robot", "/World/Cube", "/World/Grid"}
    with pytest.raises(FormatError) as info:
        load_stage(usda, device, strict=True, warm=False)
    assert "/World/Missing" in str(info.value) or "truncated.vox" in str(info.value)
