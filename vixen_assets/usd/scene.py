"""``Scene``: what ``load_stage`` put on the GPU: unique meshes, instances with world transforms, stats, warnings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import VixenError


@dataclass(eq=False)
class Instance:
    """One placement of a cached asset: ``transform`` is the 4x4 float32 world matrix (column vectors:
    ``world = transform @ [x, y, z, 1]``, translation in ``transform[:3, 3]``), ``prim_path`` the prim it came from
    (instance proxies and point-instancer entries get ``<instancer>[i]`` paths), ``material`` its bound material path."""

    mesh: Any
    transform: np.ndarray
    prim_path: str
    material: str | None = None
    kind: str = "mesh"
    textures: list[Any] = field(default_factory=list)


@dataclass
class TlasMap:
    """Per TLAS record: the scene instance it places, its AABB data address (0 for triangles), its local transform,
    and the first-triangle index of each geometry (so hits map to triangle indices of the whole mesh)."""

    instance: np.ndarray
    aabb_address: np.ndarray
    local: np.ndarray
    geometry_offsets: np.ndarray
    geometry_first: np.ndarray

    @classmethod
    def build(cls, records: list[Any], local: np.ndarray) -> TlasMap:
        """From ``(instance, blas, aabb_address, local, geometry firsts)`` records."""
        offsets = np.zeros(len(records) + 1, np.int64)
        firsts: list[int] = []
        for k, r in enumerate(records):
            offsets[k] = len(firsts)
            firsts.extend(r[4])
        offsets[-1] = len(firsts)
        return cls(np.array([r[0] for r in records], np.int32), np.array([r[2] for r in records], np.uint64),
                   local, offsets, np.array(firsts or [0], np.int64))


@dataclass
class SceneStats:
    """Numbers about one load."""

    prims_visited: int = 0
    meshes: int = 0
    unique_meshes: int = 0
    instances: int = 0
    triangles: int = 0
    bytes_uploaded: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    warm: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly copy."""
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in vars(self).items()}


class Scene:
    """The GPU-resident result of :func:`~vixen_assets.load_stage`; ``release()`` (or ``with``) drops its references."""

    def __init__(self, device: Any, path: str) -> None:
        """An empty scene on ``device`` for the stage at ``path``."""
        self.device = device
        self.path = path
        self.meshes: list[Any] = []
        self.instances: list[Instance] = []
        self.textures: list[Any] = []
        self.warnings: list[str] = []
        self.stats = SceneStats()
        self.tlas: Any = None
        self.tlas_map: TlasMap | None = None
        self.extra: dict[str, Any] = {}
        #: the frame of the data: which axis is up (``"Y"`` or ``"Z"``) and the length of one unit in meters (USD's
        #: fallbacks until a loader sets them; ``load_stage(up_axis=, meters_per_unit=)`` converts to another frame)
        self.up_axis: str = "Y"
        self.meters_per_unit: float = 0.01
        self._refs: list[tuple[Any, str]] = []  # (cacher, key) references held
        self._owned: list[Any] = []             # objects destroyed at release (acceleration structures, ...)
        self._released = False

    @property
    def triangle_count(self) -> int:
        """Triangles over all instances (an instanced mesh counts once per instance)."""
        return int(sum(getattr(i.mesh, "triangle_count", 0) for i in self.instances))

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World-space axis-aligned bounds ``(min, max)`` over every instance (zeros when empty)."""
        lo = np.full(3, np.inf, dtype=np.float64)
        hi = np.full(3, -np.inf, dtype=np.float64)
        for inst in self.instances:
            b = getattr(inst.mesh, "bounds", None)
            if b is None:
                continue
            mn, mx = np.asarray(b[0], np.float64), np.asarray(b[1], np.float64)
            corners = np.array([[x, y, z, 1.0] for x in (mn[0], mx[0]) for y in (mn[1], mx[1]) for z in (mn[2], mx[2])])
            w = corners @ inst.transform.astype(np.float64).T
            lo = np.minimum(lo, w[:, :3].min(axis=0))
            hi = np.maximum(hi, w[:, :3].max(axis=0))
        if not np.isfinite(lo).all():
            return np.zeros(3, np.float32), np.zeros(3, np.float32)
        return lo.astype(np.float32), hi.astype(np.float32)

    def hold(self, cacher: Any, key: str) -> None:
        """Record a cache reference that :meth:`release` drops."""
        self._refs.append((cacher, key))

    def own(self, obj: Any) -> None:
        """Destroy ``obj`` at :meth:`release`."""
        self._owned.append(obj)

    @property
    def released(self) -> bool:
        """True after :meth:`release`."""
        return self._released

    def release(self) -> None:
        """Drop every cache reference and destroy owned objects; entries stay cached (evictable); safe twice."""
        if self._released:
            return
        self._released = True
        for obj in reversed(self._owned):
            obj.destroy()
        self._owned.clear()
        for cacher, key in self._refs:
            if key in cacher:
                cacher.release(key)
        self._refs.clear()

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def build_acceleration_structures(self, *, compact: bool = True) -> Any:
        """Build (cached) BLASes for the unique meshes, take voxel BLASes from their entries, and one TLAS over
        every placement; returns ``self.tlas``. ``self.tlas_map`` maps TLAS records back to instances."""
        from ..cachers.accel import Tlas, accel_cacher

        if self.tlas is not None:
            return self.tlas
        mesh_entries = {id(i.mesh): i.mesh for i in self.instances if hasattr(i.mesh, "index_buffer")}
        by_mesh: dict[int, Any] = {}
        if mesh_entries:
            cacher = accel_cacher(self.device)
            cacher.compact = compact
            meshes = list(mesh_entries.values())
            keys = [cacher.key_for(m) for m in meshes]
            for m, k, b in zip(meshes, keys, cacher.get_many(meshes, keys)):
                self.hold(cacher, k)
                by_mesh[id(m)] = b
        records: list[tuple[int, Any, int, np.ndarray, list[int]]] = []
        for i, inst in enumerate(self.instances):
            m = inst.mesh
            if id(m) in by_mesh:
                subs = [s.first_index // 3 for s in getattr(m, "submeshes", []) if s.index_count >= 3] or [0]
                records.append((i, by_mesh[id(m)], 0, np.eye(4, dtype=np.float32), subs))
            elif hasattr(m, "tlas_items"):
                for blas, aabb_address, local in m.tlas_items(self):
                    records.append((i, blas, aabb_address, np.asarray(local, np.float32), [0]))
            else:
                raise VixenError(f"instance {inst.prim_path}: its {inst.kind!r} entry cannot be ray traced")
        local = np.stack([r[3] for r in records]) if records else np.zeros((0, 4, 4), np.float32)
        world = self._record_world(records, local)
        self.tlas_map = TlasMap.build(records, local)
        self.tlas = Tlas(self.device, [r[1] for r in records], world)
        self.own(self.tlas)
        return self.tlas

    def _record_world(self, records: list[Any], local: np.ndarray) -> np.ndarray:
        if not records:
            return np.zeros((0, 4, 4), np.float32)
        parent = np.stack([self.instances[r[0]].transform for r in records]).astype(np.float32)
        return np.einsum("nij,njk->nik", parent, local).astype(np.float32)

    def update_transforms(self, transforms: Any) -> None:
        """Set new world transforms (N, 4, 4) for the instances and refit the TLAS in place."""
        t = np.asarray(transforms, dtype=np.float32).reshape(len(self.instances), 4, 4)
        for inst, m in zip(self.instances, t):
            inst.transform = m.copy()
        if self.tlas is not None:
            records = [(int(i),) for i in self.tlas_map.instance]
            self.tlas.refit(self._record_world(records, self.tlas_map.local))

    def summary(self) -> dict[str, Any]:
        """Counts, bytes, timings and peak budget use as a JSON-friendly dict."""
        lo, hi = self.bounds
        return {"path": self.path, **self.stats.as_dict(), "triangle_count": self.triangle_count,
                "up_axis": self.up_axis, "meters_per_unit": self.meters_per_unit,
                "bounds": [lo.tolist(), hi.tolist()], "warnings": len(self.warnings),
                "peak_budget_bytes": self.device.budget.peak}

    def __repr__(self) -> str:
        return (f"<Scene {self.path!r} meshes={len(self.meshes)} instances={len(self.instances)} "
                f"triangles={self.triangle_count}>")
