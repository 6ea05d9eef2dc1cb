"""The scene TLAS: one BLAS per unique mesh (cached), procedural entries' BLASes (``tlas_items``), one TLAS over
every placement, and the :class:`TlasMap` from TLAS records back to scene instances.

An instance's entry is ray traced when it is a mesh (it has an ``index_buffer``: its BLAS comes from the
acceleration-structure cacher), a voxel scene (one AABB BLAS per model, :mod:`.voxel_blas`), or when it implements
``tlas_items(scene) -> [(blas, aabb_address, local 4x4)]`` (other procedural geometry: one TLAS record per item,
placed at ``instance.transform @ local``).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Sequence

import numpy as np

from ..cachers.voxel import GpuVoxelScene
from ..errors import UnsupportedFeatureError
from .cacher import accel_cacher
from .structures import Tlas
from .voxel_blas import voxel_tlas_items

if TYPE_CHECKING:
    from ..cachers.base import TypedCacher
    from ..device import Device


class TracedScene(Protocol):
    """What the scene TLAS needs of a scene (``vixen_assets.scene.Scene`` implements it)."""

    device: Device
    instances: list[Any]

    def hold(self, cacher: TypedCacher[Any, Any], key: str) -> None:
        """Record a cache reference the scene drops at release."""

    def own(self, obj: Any) -> None:
        """Destroy ``obj`` at release."""


class TlasRecord(NamedTuple):
    """One TLAS record: the scene instance it places, its BLAS, its AABB data address (0 for triangles), its local
    transform and the first triangle of each of its geometries."""

    instance: int
    blas: Any
    aabb_address: int
    local: np.ndarray
    geometry_first: list[int]


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
    def build(cls, records: Sequence[Any], local: np.ndarray) -> TlasMap:
        """From ``(instance, blas, aabb_address, local, geometry firsts)`` records.

        :param records: :class:`TlasRecord` (or equal tuples), one per TLAS record.
        :param local: (N, 4, 4) local transforms of the records.
        """
        offsets = np.zeros(len(records) + 1, np.int64)
        firsts: list[int] = []
        for k, r in enumerate(records):
            offsets[k] = len(firsts)
            firsts.extend(r[4])
        offsets[-1] = len(firsts)
        return cls(np.array([r[0] for r in records], np.int32), np.array([r[2] for r in records], np.uint64),
                   local, offsets, np.array(firsts or [0], np.int64))


#: Instances' entries and transforms, read in C-level passes.
_MESH = operator.attrgetter("mesh")
_TRANSFORM = operator.attrgetter("transform")


@dataclass
class _Columns:
    """TLAS records as columns: the scene instance, BLAS, AABB address and local transform of each record, and the
    first triangle of each geometry (record ``k``'s are ``firsts[offsets[k]:offsets[k + 1]]``)."""

    instance: np.ndarray  # (N,) int32
    blas: list[Any]
    aabb_address: np.ndarray  # (N,) uint64
    local: np.ndarray  # (N, 4, 4) float32
    offsets: np.ndarray  # (N + 1,) int64
    firsts: np.ndarray  # int64

    def tlas_map(self) -> TlasMap:
        """The map from these records to scene instances."""
        return TlasMap(self.instance, self.aabb_address, self.local, self.offsets,
                       self.firsts if len(self.firsts) else np.zeros(1, np.int64))


def _geometry_firsts(mesh: Any) -> list[int]:
    """The first triangle of each geometry of a mesh entry (its submeshes with a triangle; ``[0]`` for none)."""
    return [s.first_index // 3 for s in getattr(mesh, "submeshes", []) if s.index_count >= 3] or [0]


def _record_columns(scene: TracedScene, compact: bool) -> _Columns:
    """The TLAS records of ``scene`` (see :func:`tlas_records`) as columns: scenes whose every placement is a mesh
    with a BLAS (the usual case) are handled in whole-array passes, others one instance at a time."""
    insts = scene.instances
    meshes = list(map(_MESH, insts))
    entries = dict(zip(map(id, meshes), meshes))  # distinct entries in first-placement order
    mesh_entries = {k: m for k, m in entries.items() if hasattr(m, "index_buffer")}
    by_mesh: dict[int, Any] = {}
    if mesh_entries:
        cacher = accel_cacher(scene.device)
        cacher.compact = compact
        good = []
        for m, problem in zip(mesh_entries.values(), cacher.check_sources(list(mesh_entries.values()))):
            if problem is None:
                good.append(m)
            else:  # a mesh without triangles: its instances are left out (a warning, never a failed scene)
                warnings = getattr(scene, "warnings", None)
                if warnings is not None:
                    warnings.append(str(problem))
        keys = [cacher.key_for(m) for m in good]
        for m, k, b in zip(good, keys, cacher.get_many(good, keys)):
            scene.hold(cacher, k)
            by_mesh[id(m)] = b
    firsts_of = {k: _geometry_firsts(entries[k]) for k in by_mesh}
    n = len(insts)
    if n and len(by_mesh) == len(entries):  # every placement is a traced mesh: one record each, in order
        row = {k: r for r, k in enumerate(by_mesh)}
        index = np.fromiter(map(row.__getitem__, map(id, meshes)), np.int64, n)
        blas = list(by_mesh.values())
        counts = np.array([len(f) for f in firsts_of.values()], dtype=np.int64)
        flat = np.array([x for f in firsts_of.values() for x in f], dtype=np.int64)
        starts = np.cumsum(counts) - counts
        per = counts[index]
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(per, out=offsets[1:])
        at = np.repeat(starts[index] - offsets[:-1], per) + np.arange(int(offsets[-1]))
        local = np.empty((n, 4, 4), np.float32)
        local[:] = np.eye(4, dtype=np.float32)
        return _Columns(np.arange(n, dtype=np.int32), [blas[i] for i in index.tolist()], np.zeros(n, np.uint64),
                        local, offsets, flat[at])
    records = _records_one_by_one(scene, by_mesh, firsts_of)
    local = np.stack([r.local for r in records]).astype(np.float32) if records else np.zeros((0, 4, 4), np.float32)
    tmap = TlasMap.build(records, local)
    return _Columns(tmap.instance, [r.blas for r in records], tmap.aabb_address, local, tmap.geometry_offsets,
                    tmap.geometry_first)


def _records_one_by_one(scene: TracedScene, by_mesh: dict[int, Any],
                        firsts_of: dict[int, list[int]]) -> list[TlasRecord]:
    """The records of ``scene`` one instance at a time (scenes with voxel or procedural entries)."""
    records: list[TlasRecord] = []
    eye = np.eye(4, dtype=np.float32)
    for i, inst in enumerate(scene.instances):
        m = inst.mesh
        if id(m) in by_mesh:
            records.append(TlasRecord(i, by_mesh[id(m)], 0, eye, list(firsts_of[id(m)])))
        elif hasattr(m, "index_buffer"):
            continue  # a mesh without triangles (see above)
        elif isinstance(m, GpuVoxelScene):
            for blas, aabb_address, local in voxel_tlas_items(scene, m):
                records.append(TlasRecord(i, blas, aabb_address, np.asarray(local, np.float32), [0]))
        elif hasattr(m, "tlas_items"):
            for blas, aabb_address, local in m.tlas_items(scene):
                records.append(TlasRecord(i, blas, aabb_address, np.asarray(local, np.float32), [0]))
        else:
            raise UnsupportedFeatureError(f"instance {inst.prim_path}: its {inst.kind!r} entry cannot be ray traced",
                                          feature="ray tracing")
    return records


def tlas_records(scene: TracedScene, *, compact: bool = True) -> list[TlasRecord]:
    """The TLAS records of ``scene``: mesh BLASes from the cacher in one batch (references held by the scene), then
    the procedural entries' items.

    :param scene: the scene.
    :param compact: compact the BLASes built for meshes.
    :raises UnsupportedFeatureError: an instance's entry can be neither triangle- nor box-traced.
    """
    cols = _record_columns(scene, compact)
    off = cols.offsets.tolist()
    firsts = cols.firsts.tolist()
    return [TlasRecord(int(i), b, int(a), cols.local[k], firsts[off[k]:off[k + 1]])
            for k, (i, b, a) in enumerate(zip(cols.instance.tolist(), cols.blas, cols.aabb_address.tolist()))]


def instance_transforms(instances: Sequence[Any]) -> np.ndarray:
    """Every instance's world transform as one (N, 4, 4) float32 array.

    :param instances: the scene's instances (anything with a (4, 4) ``transform``).
    """
    if not len(instances):
        return np.zeros((0, 4, 4), np.float32)
    return np.array(list(map(_TRANSFORM, instances)), dtype=np.float32).reshape(-1, 4, 4)


def records_world(transforms: np.ndarray, record_instance: np.ndarray, local: np.ndarray) -> np.ndarray:
    """World matrices of TLAS records from the instances' transforms as one array: their instance's transform times
    their local transform.

    :param transforms: (M, 4, 4) the instances' world transforms.
    :param record_instance: (N,) the instance of each record.
    :param local: (N, 4, 4) local transforms.
    """
    if not len(record_instance):
        return np.zeros((0, 4, 4), np.float32)
    parent = np.asarray(transforms, dtype=np.float32)[np.asarray(record_instance, dtype=np.int64)]
    return np.einsum("nij,njk->nik", parent, local).astype(np.float32)


def record_world(instances: Sequence[Any], record_instance: np.ndarray, local: np.ndarray) -> np.ndarray:
    """World matrices of TLAS records: their instance's transform times their local transform.

    :param instances: the scene's instances.
    :param record_instance: (N,) the instance of each record.
    :param local: (N, 4, 4) local transforms.
    """
    if not len(record_instance):
        return np.zeros((0, 4, 4), np.float32)
    return records_world(instance_transforms(instances), record_instance, local)


def build_scene_tlas(scene: TracedScene, *, compact: bool = True, name: str = "tlas",
                     stage_instances: bool | None = None) -> tuple[Tlas, TlasMap]:
    """Build the BLASes ``scene`` still needs and its TLAS (one submission); the scene owns the TLAS.

    :param scene: the scene.
    :param compact: compact the BLASes built for meshes.
    :param name: the TLAS's label.
    :param stage_instances: passed to :class:`Tlas` (``True`` forces the staged instance path, ``None`` picks it
        where the instance buffer is not mapped).
    :returns: the TLAS and the map from its records to scene instances.
    """
    cols = _record_columns(scene, compact)
    tmap = cols.tlas_map()
    tlas = Tlas(scene.device, cols.blas, records_world(instance_transforms(scene.instances), tmap.instance, tmap.local),
                name=name, stage_instances=stage_instances)
    scene.own(tlas)
    return tlas, tmap


__all__ = ["TlasMap", "TlasRecord", "TracedScene", "build_scene_tlas", "instance_transforms", "record_world",
           "records_world", "tlas_records"]
