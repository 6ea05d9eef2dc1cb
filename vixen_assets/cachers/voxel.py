"""Voxel scenes on the GPU: ``VoxelSceneCacher`` (one memory block, several buffers).

GPU representation of one voxel scene (a ``.vox`` file, or a dense grid authored in USD), every buffer bound into
ONE ``VkDeviceMemory`` allocation (a :class:`~vixen_assets.memory.buffer_set.BufferSet`) at 256-byte offsets:

==============  ====================================================================================================
``meta``        uint32[16]: model count, instance count, brick count, AABB count, voxel count, AABB mode (0 brick,
                1 voxel), brick edge (8)
``models``      per model, uint32[8]: size x, y, z, voxel count, first brick, brick count, first AABB, AABB count
``instances``   per placement, 20 float32/uint32: 4x4 float32 transform (column vectors, voxel-corner model space
                to the scene's space), then uint32 model index and 3 padding words
``palette``     256 x RGBA8 (colour index c → palette[c]; 0 is empty)
``materials``   256 x float32[4]: kind (0 diffuse, 1 metal, 2 glass, 3 emit), roughness, metalness, emission
``bricks``      per solid 8x8x8 brick, uint32[8]: model, brick x, y, z, byte offset into ``brick_data``, voxels
``brick_data``  512 bytes per brick: colour index of voxel (x&7) + 8*((y&7) + 8*(z&7)); 0 = empty
``aabbs``       per solid brick (mode ``"brick"``) or voxel (``"voxel"``): float32 min xyz, max xyz in model space
==============  ====================================================================================================

``aabbs`` has a device address and acceleration-structure build-input usage: ``VoxelAABBCacher``
(:mod:`vixen_assets.accel.voxel_blas`) builds one AABB
BLAS per model from it (``VK_GEOMETRY_TYPE_AABBS_KHR``), so voxel scenes are ray traced beside meshes in one TLAS.
"""

from __future__ import annotations

import hashlib
import importlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import FormatError, VixenDeprecationWarning
from ..formats.vox import DEFAULT_PALETTE, VoxFile, read_vox
from ..hookspecs import hookimpl
from ..memory.buffer_set import BufferSet, BufferView
from ..memory.group import AllocationGroup
from .base import LoadContext, TypedCacher

BRICK = 8
_BRICK_KEYS = (256 // BRICK) ** 3  # brick-coordinate keys of the largest model (SIZE <= 256 per axis)
AABB_MODES = ("voxel", "brick")
_MATERIAL_KINDS = {"_diffuse": 0, "_metal": 1, "_glass": 2, "_emit": 3, "_blend": 0, "_media": 0}


@dataclass(eq=False)
class VoxelModelData:
    """One model as numpy arrays: ``voxels`` (N, 4) uint8 rows x, y, z, colour index."""

    size: tuple[int, int, int]
    voxels: np.ndarray

    @property
    def voxel_count(self) -> int:
        """Number of solid voxels."""
        return int(len(self.voxels))


@dataclass(eq=False)
class VoxelSource:
    """A voxel scene as read: models, placements (model index, 4x4 transform), palette, materials, the file."""

    models: list[VoxelModelData]
    placements: list[tuple[int, np.ndarray]]
    palette: np.ndarray
    materials: dict[int, dict[str, str]]
    path: str = ""
    aabb_mode: str = "voxel"

    @classmethod
    def from_vox(cls, vox: VoxFile, *, path: str = "", aabb_mode: str = "voxel") -> VoxelSource:
        """Build from a parsed ``.vox`` file (hidden instances and colour-0 entries, which mean empty, are left out)."""
        models = []
        for m in vox.models:
            v = np.asarray(m.voxels, np.uint8).reshape(-1, 4)
            if len(v) and not v[:, 3].all():
                v = v[v[:, 3] != 0]
            models.append(VoxelModelData(tuple(int(x) for x in m.size), v))
        placements = [(i.model_index, np.asarray(i.transform, np.float32)) for i in vox.instances if not i.hidden]
        return cls(models, placements, np.asarray(vox.palette, np.uint8), dict(vox.materials), path, aabb_mode)

    @classmethod
    def from_dense(cls, grid: np.ndarray, *, palette: np.ndarray | None = None, path: str = "",
                   prim_path: str = "", aabb_mode: str = "voxel") -> VoxelSource:
        """Build from a dense (X, Y, Z) grid of colour indices (0 = empty), e.g. read from a USD prim."""
        g = np.asarray(grid)
        if g.ndim != 3 or min(g.shape) < 1 or max(g.shape) > 256:
            raise FormatError(f"voxel grid must be 3-D with sides 1..256, got shape {g.shape}", path=path or None,
                              prim_path=prim_path or None, field="vixen:voxelDims")
        if g.size and (g.min() < 0 or g.max() > 255):
            raise FormatError("voxel colour indices must be 0..255", path=path or None, prim_path=prim_path or None,
                              field="vixen:voxels")
        xyz = np.argwhere(g > 0)
        vox = np.empty((len(xyz), 4), np.uint8)
        vox[:, :3] = xyz
        vox[:, 3] = g[g > 0]
        pal = DEFAULT_PALETTE if palette is None else np.asarray(palette, np.uint8).reshape(256, 4)
        return cls([VoxelModelData(tuple(int(s) for s in g.shape), vox)], [(0, np.eye(4, dtype=np.float32))],
                   np.array(pal, np.uint8), {}, path, aabb_mode)

    @property
    def voxel_count(self) -> int:
        """Solid voxels over all models."""
        return sum(m.voxel_count for m in self.models)

    def content_hash(self) -> str:
        """Hash of every array and the AABB mode (computed once per source)."""
        cached = self.__dict__.get("_hash")
        if cached is not None:
            return cached
        self.__dict__["_hash"] = digest = self._compute_hash()
        return digest

    def _compute_hash(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(self.aabb_mode.encode())
        for m in self.models:
            h.update(np.asarray(m.size, np.int32).tobytes())
            h.update(np.ascontiguousarray(m.voxels).tobytes())
        for idx, t in self.placements:
            h.update(np.int32(idx).tobytes())
            h.update(np.ascontiguousarray(t, np.float32).tobytes())
        h.update(np.ascontiguousarray(self.palette).tobytes())
        h.update(repr(sorted((k, sorted(v.items())) for k, v in self.materials.items())).encode())
        return "vox:" + h.hexdigest()


@dataclass(frozen=True)
class ModelInfo:
    """Where one model's data sits in the scene's buffers."""

    size: tuple[int, int, int]
    voxel_count: int
    first_brick: int
    brick_count: int
    first_aabb: int
    aabb_count: int


@dataclass(eq=False)
class GpuVoxelScene:
    """A voxel scene on the GPU: one :class:`BufferSet` (one memory block) plus what its buffers hold."""

    key: str
    buffer_set: BufferSet
    models: list[ModelInfo]
    placements: list[tuple[int, np.ndarray]]
    palette: np.ndarray
    voxel_count: int
    aabb_mode: str
    path: str = ""
    bounds: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: (np.zeros(3, np.float32),) * 2)
    triangle_count: int = 0

    @property
    def buffers(self) -> dict[str, BufferView]:
        """Buffer name → where it lives in :attr:`memory` (offset, size)."""
        return dict(self.buffer_set.views)

    @property
    def memory(self) -> Any:
        """The one ``VkDeviceMemory`` all the buffers are bound to."""
        return self.buffer_set.memory

    @property
    def nbytes(self) -> int:
        """Bytes of the shared allocation."""
        return self.buffer_set.nbytes

    def aabb_address(self, model: int) -> int:
        """Device address of a model's first AABB."""
        return self.buffer_set["aabbs"].device_address + 24 * self.models[model].first_aabb


def _joined(parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    """``np.concatenate(parts)`` without copying a lone part (one-model scenes); ``empty`` when there is none."""
    if not parts:
        return empty
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _scene_arrays(src: VoxelSource) -> tuple[dict[str, np.ndarray], list[ModelInfo], tuple[np.ndarray, np.ndarray]]:
    """Vectorized layout of every buffer of a voxel scene."""
    models: list[ModelInfo] = []
    brick_recs, brick_data, aabbs = [], [], []
    nb = na = 0
    for mi, m in enumerate(src.models):
        v = np.ascontiguousarray(m.voxels, np.uint8).reshape(-1, 4)
        if len(v):
            # Bricks by counting sort: a brick coordinate is < 256 / BRICK = 32 per axis, so the key
            # bx * 1024 + by * 32 + bz indexes a 32768-entry table; its non-zero entries, in key order, are the solid
            # bricks in (bx, by, bz) lexicographic order (what np.unique gave, without the O(N log N) sort). Each
            # voxel row is read as one little-endian uint32 x | y << 8 | z << 16 | c << 24 (no per-axis copies).
            w = v.view("<u4").reshape(-1)
            bkey = ((w >> 3) & 31) << 10
            bkey |= ((w >> 11) & 31) << 5
            bkey |= (w >> 19) & 31
            counts = np.bincount(bkey, minlength=_BRICK_KEYS)
            ukeys = np.flatnonzero(counts)
            n_b = len(ukeys)
            slot = np.empty(_BRICK_KEYS, np.uint32)
            slot[ukeys] = np.arange(n_b, dtype=np.uint32) * BRICK ** 3
            at = slot[bkey]  # brick's first byte (a multiple of 512), then | the voxel's x + 8 y + 64 z in the brick
            at |= w & 7
            at |= (w >> 5) & 0o70
            at |= (w >> 10) & 0o700
            data = np.zeros(n_b * BRICK ** 3, np.uint8)
            data[at] = v[:, 3]  # later duplicates win
            bc = np.stack([ukeys >> 10, (ukeys >> 5) & 31, ukeys & 31], axis=1)
            rec = np.zeros((n_b, 8), np.uint32)
            rec[:, 0] = mi
            rec[:, 1:4] = bc
            rec[:, 4] = (nb + np.arange(n_b)) * BRICK ** 3
            rec[:, 5] = counts[ukeys]
            brick_recs.append(rec)
            brick_data.append(data)
            if src.aabb_mode == "brick":
                box = np.empty((n_b, 6), np.float32)
                box[:, :3] = bc * BRICK
                np.minimum(box[:, :3] + BRICK, np.asarray(m.size, np.float32), out=box[:, 3:])
            else:
                box = np.empty((len(v), 6), np.float32)
                box[:, :3] = v[:, :3]
                np.add(box[:, :3], 1.0, out=box[:, 3:])
            aabbs.append(box)
        else:
            n_b = 0
            box = np.zeros((0, 6), np.float32)
        models.append(ModelInfo(m.size, m.voxel_count, nb, n_b, na, len(box)))
        nb += n_b
        na += len(box)
    meta = np.zeros(16, np.uint32)
    meta[:7] = [len(src.models), len(src.placements), nb, na, src.voxel_count, AABB_MODES.index(src.aabb_mode) ^ 1,
                BRICK]
    model_arr = np.array([[*mi.size, mi.voxel_count, mi.first_brick, mi.brick_count, mi.first_aabb, mi.aabb_count]
                          for mi in models] or [[0] * 8], np.uint32)
    inst = np.zeros((max(len(src.placements), 1), 20), np.float32)
    lo_w = np.full(3, np.inf)
    hi_w = np.full(3, -np.inf)
    for i, (mi, t) in enumerate(src.placements):
        inst[i, :16] = np.asarray(t, np.float32).T.reshape(-1)  # column-major like GLSL mat4
        inst[i, 16:17].view(np.uint32)[0] = mi
        size = np.asarray(src.models[mi].size, np.float64)
        corners = np.array([[x, y, z, 1.0] for x in (0, size[0]) for y in (0, size[1]) for z in (0, size[2])])
        w = corners @ np.asarray(t, np.float64).T
        lo_w = np.minimum(lo_w, w[:, :3].min(0))
        hi_w = np.maximum(hi_w, w[:, :3].max(0))
    mats = np.zeros((256, 4), np.float32)
    for idx, props in src.materials.items():
        if 0 <= idx < 256:
            mats[idx] = [_MATERIAL_KINDS.get(props.get("_type", "_diffuse"), 0), float(props.get("_rough", 0) or 0),
                         float(props.get("_metal", 0) or 0), float(props.get("_emit", 0) or 0)]
    arrays = {
        "meta": meta, "models": model_arr, "instances": inst, "palette": np.ascontiguousarray(src.palette, np.uint8),
        "materials": mats,
        "bricks": _joined(brick_recs, np.zeros((1, 8), np.uint32)),
        "brick_data": _joined(brick_data, np.zeros(BRICK ** 3, np.uint8)),
        "aabbs": _joined(aabbs, np.zeros((1, 6), np.float32)),
    }
    bounds = (lo_w.astype(np.float32), hi_w.astype(np.float32)) if np.isfinite(lo_w).all() else (
        np.zeros(3, np.float32), np.zeros(3, np.float32))
    return arrays, models, bounds


class VoxelSceneCacher(TypedCacher[VoxelSource, GpuVoxelScene]):
    """``.vox`` files (and USD prims with a dense ``vixen:voxels`` grid) → a :class:`GpuVoxelScene`."""

    name = "voxel"
    suffixes = (".vox",)
    prim_attributes = ("vixen:voxels",)
    aabb_mode = "voxel"

    def read_file(self, path: str, context: LoadContext) -> VoxelSource:
        """Parse a ``.vox`` file (``FormatError`` names the file and chunk on bad data)."""
        mode = (context.options or {}).get("aabb_mode", self.aabb_mode)
        return VoxelSource.from_vox(read_vox(path), path=path, aabb_mode=mode)

    def read_prim(self, prim: Any, context: LoadContext) -> VoxelSource:
        """Read a dense grid: ``uchar[]/int[] vixen:voxels`` (x fastest), ``int3 vixen:voxelDims``,
        optional ``color4f[] vixen:palette`` (256 entries, 0..1)."""
        path = context.layer_path
        ppath = str(prim.GetPath())
        vals = prim.GetAttribute("vixen:voxels").Get(context.time)
        dims = prim.GetAttribute("vixen:voxelDims").Get(context.time) if prim.HasAttribute("vixen:voxelDims") else None
        if vals is None or dims is None:
            raise FormatError("needs both vixen:voxels and vixen:voxelDims", path=path, prim_path=ppath,
                              field="vixen:voxelDims")
        d = tuple(int(x) for x in dims)
        arr = np.asarray(vals)
        if len(d) != 3 or any(x < 1 or x > 256 for x in d) or arr.size != d[0] * d[1] * d[2]:
            raise FormatError(f"vixen:voxels has {arr.size} values but vixen:voxelDims is {d}", path=path,
                              prim_path=ppath, field="vixen:voxels")
        grid = arr.astype(np.int64).reshape(d[2], d[1], d[0]).transpose(2, 1, 0)
        palette = None
        if prim.HasAttribute("vixen:palette"):
            pal = np.asarray(prim.GetAttribute("vixen:palette").Get(context.time), np.float64)
            if pal.shape != (256, 4):
                raise FormatError(f"vixen:palette must hold 256 color4f, got shape {pal.shape}", path=path,
                                  prim_path=ppath, field="vixen:palette")
            palette = np.clip(np.round(pal * 255), 0, 255).astype(np.uint8)
        mode = (context.options or {}).get("aabb_mode", self.aabb_mode)
        return VoxelSource.from_dense(grid, palette=palette, path=path, prim_path=ppath, aabb_mode=mode)

    def key_for(self, source: VoxelSource) -> str:
        """Content hash of the voxels, placements, palette, materials and AABB mode."""
        return source.content_hash()

    def build(self, sources: Sequence[VoxelSource], group: AllocationGroup) -> list[GpuVoxelScene]:
        """One buffer set per scene, every buffer uploaded through the batched uploader."""
        out = []
        up = self.device.uploader
        usage_plain = "storage"
        for src in sources:
            arrays, models, bounds = _scene_arrays(src)
            specs: dict[str, tuple[int, Any]] = {k: (max(a.nbytes, 16), usage_plain) for k, a in arrays.items()}
            specs["aabbs"] = (max(arrays["aabbs"].nbytes, 24), "storage|device_address|accel_input")
            label = src.path.rsplit("/", 1)[-1] if src.path else "voxels"
            bset = BufferSet(self.device.context, specs, name=f"voxels:{label}", category=self.name)
            group.adopt(bset)
            for k, a in arrays.items():
                up.enqueue(bset[k], a)
            out.append(GpuVoxelScene(src.content_hash(), bset, models, list(src.placements), src.palette.copy(),
                                     src.voxel_count, src.aabb_mode, src.path, bounds))
        return out

    def entry_nbytes(self, entry: GpuVoxelScene) -> int:
        """Bytes of the shared allocation."""
        return entry.nbytes

    def destroy_entry(self, entry: GpuVoxelScene) -> None:
        """Destroy the buffer set (deferred while the GPU uses it)."""
        entry.buffer_set.destroy()


@hookimpl
def vixen_register_cachers(registry: Any) -> None:
    """Register the built-in voxel scene cacher."""
    registry.register(VoxelSceneCacher)


_MOVED = {"VoxelAABBCacher": "vixen_assets.accel.voxel_blas", "voxel_aabb_cacher": "vixen_assets.accel.voxel_blas"}


def __getattr__(name: str) -> Any:
    """Old spellings of names that moved to :mod:`vixen_assets.accel` (deprecated; they warn)."""
    if name in _MOVED:
        warnings.warn(f"vixen_assets.cachers.voxel.{name} moved to {_MOVED[name]}", VixenDeprecationWarning,
                      stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
