"""``Scene``: what a loader put on the GPU (USD stages, voxel files, future loaders such as Blender): unique meshes,
instances with world transforms, textures, bounds, stats, warnings, and the TLAS built on demand.

A scene holds cache references (``hold``) and owns objects (``own``, e.g. its TLAS); ``release()`` (or ``with``)
drops the references and destroys what it owns. The entries stay cached (evictable) for the next load.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .accel.scene_tlas import TlasMap, build_scene_tlas, record_world
from .accel.structures import Tlas
from .errors import VixenDeprecationWarning

if TYPE_CHECKING:
    from .cachers.base import TypedCacher
    from .device import Device


@dataclass(eq=False)
class Instance:
    """One placement of a cached asset: ``transform`` is the 4x4 float32 world matrix (column vectors:
    ``world = transform @ [x, y, z, 1]``, translation in ``transform[:3, 3]``), ``prim_path`` the prim (or object)
    it came from (instance proxies and point-instancer entries get ``<instancer>[i]`` paths), ``material`` its bound
    material path."""

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


class _LegacyExtra(MutableMapping[str, Any]):
    """The old string-keyed ``scene.extra``: ``"entries"`` is :attr:`Scene.entries`, other keys
    :attr:`Scene.plugin_data`."""

    def __init__(self, scene: Scene) -> None:
        self._scene = scene

    def __getitem__(self, key: str) -> Any:
        if key == "entries":
            return self._scene.entries
        return self._scene.plugin_data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "entries":
            self._scene.entries = list(value)
        else:
            self._scene.plugin_data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._scene.plugin_data[key]

    def __iter__(self) -> Iterator[str]:
        yield "entries"
        yield from self._scene.plugin_data

    def __len__(self) -> int:
        return 1 + len(self._scene.plugin_data)


class Scene:
    """A GPU-resident scene (from :func:`~vixen_assets.load_stage`, :func:`~vixen_assets.load_vox`, ...);
    ``release()`` (or ``with``) drops its references.

    Typed fields: ``meshes`` (unique mesh entries), ``entries`` (unique non-mesh entries: voxel scenes, plugin
    entries), ``instances``, ``textures``, ``warnings``, ``stats``, ``tlas`` / ``tlas_map`` (after
    :meth:`build_acceleration_structures`) and ``plugin_data`` (per-plugin results, keyed by the plugin's name).
    """

    def __init__(self, device: Device, path: str) -> None:
        """An empty scene on ``device`` for the source at ``path``.

        :param device: the device.
        :param path: the file (or a label) the scene was loaded from.
        """
        self.device = device
        self.path = path
        self.meshes: list[Any] = []
        self.entries: list[Any] = []
        self.instances: list[Instance] = []
        self.textures: list[Any] = []
        self.warnings: list[str] = []
        self.stats = SceneStats()
        self.tlas: Tlas | None = None
        self.tlas_map: TlasMap | None = None
        self.plugin_data: dict[str, Any] = {}
        #: the frame of the data: which axis is up (``"Y"`` or ``"Z"``) and the length of one unit in meters (USD's
        #: fallbacks until a loader sets them; ``load_stage(up_axis=, meters_per_unit=)`` converts to another frame)
        self.up_axis: str = "Y"
        self.meters_per_unit: float = 0.01
        self.entry_keys: dict[int, tuple[str, str]] = {}  # id(entry) -> (cacher name, key), for warm reloads
        self._refs: list[tuple[Any, str]] = []  # (cacher, key) references held
        self._owned: list[Any] = []             # objects destroyed at release (acceleration structures, ...)
        self._released = False

    @property
    def extra(self) -> MutableMapping[str, Any]:
        """Deprecated: use :attr:`entries` and :attr:`plugin_data`."""
        warnings.warn("Scene.extra is deprecated: use Scene.entries and Scene.plugin_data[plugin name]",
                      VixenDeprecationWarning, stacklevel=2)
        return _LegacyExtra(self)

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

    def hold(self, cacher: TypedCacher[Any, Any], key: str) -> None:
        """Record a cache reference that :meth:`release` drops.

        :param cacher: the cacher the reference was acquired on.
        :param key: the entry's key.
        """
        self._refs.append((cacher, key))

    def own(self, obj: Any) -> None:
        """Destroy ``obj`` at :meth:`release`.

        :param obj: anything with ``destroy()``.
        """
        self._owned.append(obj)

    @property
    def held_refs(self) -> list[tuple[Any, str]]:
        """The ``(cacher, key)`` references the scene holds (a copy)."""
        return list(self._refs)

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

    def build_acceleration_structures(self, *, compact: bool = True, stage_instances: bool | None = None) -> Tlas:
        """Build (cached) BLASes for the unique meshes, take procedural entries' BLASes (``tlas_items``), and one
        TLAS over every placement; returns ``self.tlas``. ``self.tlas_map`` maps TLAS records back to instances.

        :param compact: compact the BLASes built for meshes.
        :param stage_instances: write the TLAS instance records through its persistent staging buffer (``True``),
            straight into the mapped instance buffer (``False``), or whichever the memory allows (``None``: staged
            on discrete GPUs whose instance buffer is not host-visible).
        """
        if self.tlas is None:
            self.tlas, self.tlas_map = build_scene_tlas(self, compact=compact, stage_instances=stage_instances)
        return self.tlas

    def update_transforms(self, transforms: Any) -> None:
        """Set new world transforms (N, 4, 4) for the instances and refit the TLAS in place.

        :param transforms: one 4x4 float32 matrix per instance.
        """
        t = np.asarray(transforms, dtype=np.float32).reshape(len(self.instances), 4, 4)
        for inst, m in zip(self.instances, t):
            inst.transform = m.copy()
        if self.tlas is not None and self.tlas_map is not None:
            self.tlas.refit(record_world(self.instances, self.tlas_map.instance, self.tlas_map.local))

    def summary(self) -> dict[str, Any]:
        """Counts, bytes, timings and peak budget use as a JSON-friendly dict."""
        lo, hi = self.bounds
        return {"path": self.path, **self.stats.as_dict(), "triangle_count": self.triangle_count,
                "up_axis": self.up_axis, "meters_per_unit": self.meters_per_unit,
                "bounds": [lo.tolist(), hi.tolist()], "warnings": len(self.warnings),
                "peak_budget_bytes": self.device.budget.peak}

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.path!r} meshes={len(self.meshes)} instances={len(self.instances)} "
                f"triangles={self.triangle_count}>")


__all__ = ["Instance", "Scene", "SceneStats", "TlasMap"]
