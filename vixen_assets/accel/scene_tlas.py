"""The scene TLAS: one BLAS per unique mesh (cached), procedural entries' BLASes (``tlas_items``), one TLAS over
every placement, and the :class:`TlasMap` from TLAS records back to scene instances.

An instance's entry is ray traced when it is a mesh (it has an ``index_buffer``: its BLAS comes from the
acceleration-structure cacher), a voxel scene (one AABB BLAS per model, :mod:`.voxel_blas`), or when it implements
``tlas_items(scene) -> [(blas, aabb_address, local 4x4)]`` (other procedural geometry: one TLAS record per item,
placed at ``instance.transform @ local``).
"""

from __future__ import annotations

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


def tlas_records(scene: TracedScene, *, compact: bool = True) -> list[TlasRecord]:
    """The TLAS records of ``scene``: mesh BLASes from the cacher in one batch (references held by the scene), then
    the procedural entries' items.

    :param scene: the scene.
    :param compact: compact the BLASes built for meshes.
    :raises UnsupportedFeatureError: an instance's entry can be neither triangle- nor box-traced.
    """
    mesh_entries = {id(i.mesh): i.mesh for i in scene.instances if hasattr(i.mesh, "index_buffer")}
    by_mesh: dict[int, Any] = {}
    if mesh_entries:
        cacher = accel_cacher(scene.device)
        cacher.compact = compact
        meshes = list(mesh_entries.values())
        keys = [cacher.key_for(m) for m in meshes]
        for m, k, b in zip(meshes, keys, cacher.get_many(meshes, keys)):
            scene.hold(cacher, k)
            by_mesh[id(m)] = b
    records: list[TlasRecord] = []
    eye = np.eye(4, dtype=np.float32)
    for i, inst in enumerate(scene.instances):
        m = inst.mesh
        if id(m) in by_mesh:
            subs = [s.first_index // 3 for s in getattr(m, "submeshes", []) if s.index_count >= 3] or [0]
            records.append(TlasRecord(i, by_mesh[id(m)], 0, eye, subs))
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


def record_world(instances: Sequence[Any], record_instance: np.ndarray, local: np.ndarray) -> np.ndarray:
    """World matrices of TLAS records: their instance's transform times their local transform.

    :param instances: the scene's instances.
    :param record_instance: (N,) the instance of each record.
    :param local: (N, 4, 4) local transforms.
    """
    if not len(record_instance):
        return np.zeros((0, 4, 4), np.float32)
    parent = np.stack([instances[int(r)].transform for r in record_instance]).astype(np.float32)
    return np.einsum("nij,njk->nik", parent, local).astype(np.float32)


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
    records = tlas_records(scene, compact=compact)
    local = np.stack([r.local for r in records]) if records else np.zeros((0, 4, 4), np.float32)
    tmap = TlasMap.build(records, local)
    tlas = Tlas(scene.device, [r.blas for r in records], record_world(scene.instances, tmap.instance, local),
                name=name, stage_instances=stage_instances)
    scene.own(tlas)
    return tlas, tmap


__all__ = ["TlasMap", "TlasRecord", "TracedScene", "build_scene_tlas", "record_world", "tlas_records"]
