"""``VoxelAABBCacher``: one AABB BLAS per model of a voxel scene (``VK_GEOMETRY_TYPE_AABBS_KHR``, built from the
scene's ``aabbs`` buffer by device address), and :func:`voxel_tlas_items`, a voxel scene's TLAS records (one per
placement of a non-empty model)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..cachers.base import TypedCacher
from ..cachers.voxel import GpuVoxelScene
from ..memory.group import AllocationGroup
from ..vk import accel as vka
from .build import build_blases
from .structures import AccelerationStructure

if TYPE_CHECKING:
    from ..device import Device
    from .scene_tlas import TracedScene


class VoxelAABBCacher(TypedCacher[GpuVoxelScene, list]):
    """One AABB BLAS per model of a voxel scene (built from its ``aabbs`` buffer by device address)."""

    name = "voxel-aabb"

    def key_for(self, source: GpuVoxelScene) -> str:
        """The voxel scene's key.

        :param source: a voxel scene entry.
        """
        return "aabb-blas:" + source.key

    def build(self, sources: Sequence[GpuVoxelScene], group: AllocationGroup) -> list[list]:
        """Build every model's BLAS of every scene in one batched build; models without voxels get ``None``.

        :param sources: voxel scene entries.
        :param group: the allocation group of this build.
        """
        self.device.uploader.flush().wait()  # the AABB data must be on the GPU before the build reads it
        items: list[tuple[str, list[vka.Geometry]]] = []
        where: list[tuple[int, int]] = []
        for s, scene in enumerate(sources):
            for m, info in enumerate(scene.models):
                if info.aabb_count:
                    geom = vka.Geometry(vka.GEOMETRY_AABBS, info.aabb_count, aabb_address=scene.aabb_address(m))
                    items.append((f"{scene.path or 'voxels'}#{m}", [geom]))
                    where.append((s, m))
        built = build_blases(self.device, items, group) if items else []
        out: list[list[Any]] = [[None] * len(scene.models) for scene in sources]
        for (s, m), b in zip(where, built):
            out[s][m] = b
        return out

    def entry_nbytes(self, entry: list) -> int:
        """Bytes of all the model BLASes.

        :param entry: the per-model BLASes.
        """
        return sum(b.nbytes for b in entry if b is not None)

    def destroy_entry(self, entry: list) -> None:
        """Destroy every model BLAS.

        :param entry: the per-model BLASes.
        """
        for b in entry:
            if b is not None:
                b.destroy()


def voxel_aabb_cacher(device: Device) -> VoxelAABBCacher:
    """The device's voxel AABB-BLAS cacher (created on first use).

    :param device: the device.
    """
    cacher: VoxelAABBCacher = VoxelAABBCacher.for_device(device)
    return cacher


def voxel_tlas_items(scene: TracedScene, entry: GpuVoxelScene) -> list[tuple[AccelerationStructure, int, np.ndarray]]:
    """``(blas, aabb_address, local transform)`` per placement of a non-empty model (BLASes cached per scene entry,
    the reference held by ``scene``).

    :param scene: the scene placing ``entry``.
    :param entry: a voxel scene entry.
    """
    cacher = voxel_aabb_cacher(scene.device)
    key = cacher.key_for(entry)
    blases = cacher.get_many([entry], [key])[0]
    scene.hold(cacher, key)
    return [(blases[m], entry.aabb_address(m), t) for m, t in entry.placements if entry.models[m].aabb_count]


__all__ = ["VoxelAABBCacher", "voxel_aabb_cacher", "voxel_tlas_items"]
