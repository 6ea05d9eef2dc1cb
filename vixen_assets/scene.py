"""``Scene``: what a loader put on the GPU (USD stages, voxel files, future loaders such as Blender): unique meshes,
instances with world transforms, textures, bounds, stats, warnings, and the TLAS built on demand.

A scene holds cache references (``hold``) and owns objects (``own``, e.g. its TLAS); ``release()`` (or ``with``)
drops the references and destroys what it owns. The entries stay cached (evictable) for the next load.
"""

from __future__ import annotations

import operator
import warnings
from collections import Counter
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .accel.scene_tlas import TlasMap, build_scene_tlas, records_world
from .accel.structures import Tlas
from .errors import ConfigError, DeviceClosedError, VixenDeprecationWarning, VixenWarning

if TYPE_CHECKING:
    from .cachers.base import TypedCacher
    from .device import Device


#: Instances' entries and transforms, read in C-level passes.
_MESH = operator.attrgetter("mesh")
_TRANSFORM = operator.attrgetter("transform")
#: Instances whose bounds are transformed at once (their 8 corners each: 256 bytes per instance).
_BOUNDS_CHUNK = 65536
#: Box corner ``4 * ix + 2 * iy + iz`` takes the min (0) or max (1) of each axis: x, then y, then z, as before.
_CORNER_PICK = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.int64)


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
    """Bytes of the entries this load built (and uploaded)."""
    bytes_evicted: int = 0
    """Bytes of cached entries the load evicted to make room (counted apart from the uploads)."""
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
        meshes = list(map(_MESH, self.instances))
        placed = Counter(map(id, meshes))  # placements per entry, counted in C
        entries = dict(zip(map(id, meshes), meshes))
        return int(sum(getattr(entries[k], "triangle_count", 0) * n for k, n in placed.items()))

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World-space axis-aligned bounds ``(min, max)`` over every instance (zeros when there is none); an
        instance whose bounds are not finite is left out with a :class:`VixenWarning` naming it."""
        lo = np.full(3, np.inf, dtype=np.float64)
        hi = np.full(3, -np.inf, dtype=np.float64)
        meshes = list(map(_MESH, self.instances))
        boxes: dict[int, Any] = {}  # per distinct entry: its (2, 3) min/max box, for those that have bounds
        for key, entry in dict(zip(map(id, meshes), meshes)).items():
            b = getattr(entry, "bounds", None)
            if b is not None:
                boxes[key] = (np.asarray(b[0], np.float64), np.asarray(b[1], np.float64))
        row = {k: r for r, k in enumerate(boxes)}
        table = np.array(list(boxes.values()), dtype=np.float64).reshape(-1, 2, 3)
        insts = self.instances if all(map(row.__contains__, map(id, meshes))) else \
            [i for i in self.instances if id(i.mesh) in row]
        for start in range(0, len(insts), _BOUNDS_CHUNK):  # every instance's 8 world corners at once, in chunks
            chunk = insts[start:start + _BOUNDS_CHUNK]
            which = table[np.fromiter(map(row.__getitem__, map(id, map(_MESH, chunk))), np.int64, len(chunk))]
            corners = np.ones((len(chunk), 8, 4), dtype=np.float64)
            corners[:, :, :3] = which[:, _CORNER_PICK, [0, 1, 2]]  # corner c takes (min or max) per axis
            world = np.array(list(map(_TRANSFORM, chunk)), dtype=np.float64).reshape(-1, 4, 4)
            w = corners @ world.transpose(0, 2, 1)
            finite = np.isfinite(w).all(axis=(1, 2))
            for k in np.flatnonzero(~finite).tolist():  # never let one bad instance turn the bounds into NaN or zeros
                warnings.warn(VixenWarning(f"instance {chunk[k].prim_path}: its bounds are not finite and are left "
                                           "out of the scene bounds"), stacklevel=2)
            w = w[finite]
            if len(w):
                lo = np.minimum(lo, w[:, :, :3].min(axis=(0, 1)))
                hi = np.maximum(hi, w[:, :, :3].max(axis=(0, 1)))
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

    def check_usable(self, what: str) -> None:
        """Raise a clear error when the scene was released or its device closed.

        :param what: the call that needs the scene, for the message.
        :raises DeviceClosedError: after :meth:`release` or ``Device.close()``.
        """
        if self._released:
            raise DeviceClosedError(f"{what}: scene {self.path!r} was released (load it again)")
        self.device.check_open()

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
        :raises DeviceClosedError: the scene was released.
        """
        self.check_usable("build_acceleration_structures")
        if self.tlas is None:
            self.tlas, self.tlas_map = build_scene_tlas(self, compact=compact, stage_instances=stage_instances)
        return self.tlas

    def update_transforms(self, transforms: Any) -> None:
        """Set new world transforms (N, 4, 4) for the instances and refit the TLAS in place.

        :param transforms: one 4x4 float32 matrix per instance.
        """
        self.check_usable("update_transforms")
        try:
            t = np.asarray(transforms, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"transforms must be numbers ({exc})", option="transforms") from None
        if t.shape != (len(self.instances), 4, 4):
            raise ConfigError(f"transforms must have shape ({len(self.instances)}, 4, 4), got {t.shape}",
                              option="transforms")
        own = np.array(t, dtype=np.float32)  # one copy: each instance's matrix is a view of it, never the caller's
        for inst, m in zip(self.instances, own):
            inst.transform = m
        if self.tlas is not None and self.tlas_map is not None:
            self.tlas.refit(records_world(own, self.tlas_map.instance, self.tlas_map.local))

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
