"""``AccelerationStructureCacher``: one compacted BLAS per unique mesh, deduplicated and refcounted like every
cacher (sources are ``GpuMesh`` entries, keyed by the mesh's content key and the build options)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ..cachers.base import TypedCacher
from ..errors import FormatError, UnsupportedFeatureError
from ..memory.group import AllocationGroup
from .build import AccelStats, build_blases, geometries_for_mesh
from .structures import AccelerationStructure

if TYPE_CHECKING:
    from ..device import Device


class AccelerationStructureCacher(TypedCacher[Any, AccelerationStructure]):
    """One compacted BLAS per unique mesh (sources are ``GpuMesh`` entries; keyed by the mesh's content key)."""

    name = "accel"
    compact = True

    def __init__(self, device: Device, *, plugin_manager: Any = None) -> None:
        """Attach to ``device``; acceleration structures must be supported.

        :param device: the device.
        :param plugin_manager: the pluggy manager notified of new entries.
        :raises UnsupportedFeatureError: the device has no ``VK_KHR_acceleration_structure``.
        """
        if not device.features.get("acceleration_structure"):
            raise UnsupportedFeatureError(f"{device.name} does not support VK_KHR_acceleration_structure",
                                          feature="acceleration_structure")
        super().__init__(device, plugin_manager=plugin_manager)
        self.accel_stats = AccelStats()

    def key_for(self, source: Any) -> str:
        """The BLAS key: the mesh's content key plus the build options.

        :param source: a ``GpuMesh``.
        """
        return f"blas:{source.key}:{int(self.compact)}"

    def build(self, sources: Sequence[Any], group: AllocationGroup) -> list[AccelerationStructure]:
        """Build BLASes for the meshes in batches.

        :param sources: ``GpuMesh`` entries.
        :param group: the allocation group of this build.
        :raises FormatError: a mesh has no triangles.
        """
        items = [(m.prim_path or m.key[:12], geometries_for_mesh(m)) for m in sources]
        empty = [m for m, (_n, g) in zip(sources, items) if not g]
        if empty:
            raise FormatError("mesh has no triangles: cannot build a BLAS", prim_path=empty[0].prim_path or None,
                              path=None if empty[0].prim_path else empty[0].key)
        return build_blases(self.device, items, group, compact=self.compact, stats=self.accel_stats)

    def entry_nbytes(self, entry: AccelerationStructure) -> int:
        """Bytes of the structure's buffer.

        :param entry: a BLAS.
        """
        return entry.nbytes

    def destroy_entry(self, entry: AccelerationStructure) -> None:
        """Destroy the structure.

        :param entry: a BLAS.
        """
        entry.destroy()


def accel_cacher(device: Device) -> AccelerationStructureCacher:
    """The device's acceleration-structure cacher (created on first use).

    :param device: the device.
    """
    cacher: AccelerationStructureCacher = AccelerationStructureCacher.for_device(device)
    return cacher


__all__ = ["AccelerationStructureCacher", "accel_cacher"]
