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
        self.extra: dict[str, Any] = {}
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
        """Build (cached) BLASes for the unique meshes and a TLAS over the instances; returns ``self.tlas``."""
        from ..cachers.accel import Tlas, accel_cacher

        if self.tlas is not None:
            return self.tlas
        cacher = accel_cacher(self.device)
        cacher.compact = compact
        meshes = [i.mesh for i in self.instances]
        unique = {id(m): m for m in meshes}
        unique_meshes = [m for m in unique.values() if hasattr(m, "index_buffer")]
        keys = [cacher.key_for(m) for m in unique_meshes]
        blases = cacher.get_many(unique_meshes, keys)
        for k in keys:
            self.hold(cacher, k)
        by_mesh = {id(m): b for m, b in zip(unique_meshes, blases)}
        for inst in self.instances:
            if id(inst.mesh) not in by_mesh and getattr(inst.mesh, "blas", None) is not None:
                by_mesh[id(inst.mesh)] = inst.mesh.blas  # procedural entries (voxels) bring their own BLAS
        usable = [(i, inst) for i, inst in enumerate(self.instances) if id(inst.mesh) in by_mesh]
        if len(usable) != len(self.instances):
            raise VixenError("every instance needs a BLAS: some entries are neither meshes nor carry a 'blas'")
        transforms = np.stack([inst.transform for inst in self.instances]) if self.instances else np.zeros((0, 4, 4))
        self.tlas = Tlas(self.device, [by_mesh[id(inst.mesh)] for inst in self.instances], transforms)
        self.own(self.tlas)
        return self.tlas

    def update_transforms(self, transforms: Any) -> None:
        """Set new world transforms (N, 4, 4) for the instances and refit the TLAS in place."""
        t = np.asarray(transforms, dtype=np.float32).reshape(len(self.instances), 4, 4)
        for inst, m in zip(self.instances, t):
            inst.transform = m.copy()
        if self.tlas is not None:
            self.tlas.refit(t)

    def summary(self) -> dict[str, Any]:
        """Counts, bytes, timings and peak budget use as a JSON-friendly dict."""
        lo, hi = self.bounds
        return {"path": self.path, **self.stats.as_dict(), "triangle_count": self.triangle_count,
                "bounds": [lo.tolist(), hi.tolist()], "warnings": len(self.warnings),
                "peak_budget_bytes": self.device.budget.peak}

    def __repr__(self) -> str:
        return (f"<Scene {self.path!r} meshes={len(self.meshes)} instances={len(self.instances)} "
                f"triangles={self.triangle_count}>")
