"""Raw ``VK_KHR_acceleration_structure`` calls: geometry descriptions, build sizes, create, build, compact, refit.

Extension entry points come through ``LogicalDevice.fn`` (the binding's wrappers refuse unknown names); structs are
built with ``ffi.new`` and union members set directly, as ``../shared/notes/vulkan.md`` records as working.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .logical import LogicalDevice
from .shim import NULL, check, ffi, lib, vk

BLAS = 1  # VK_ACCELERATION_STRUCTURE_TYPE_BOTTOM_LEVEL_KHR
TLAS = 0  # VK_ACCELERATION_STRUCTURE_TYPE_TOP_LEVEL_KHR
GEOMETRY_TRIANGLES = 0
GEOMETRY_AABBS = 1
GEOMETRY_INSTANCES = 2
GEOMETRY_OPAQUE = 0x1
BUILD_ALLOW_UPDATE = 0x1
BUILD_ALLOW_COMPACTION = 0x2
BUILD_PREFER_FAST_TRACE = 0x4
MODE_BUILD = 0
MODE_UPDATE = 1
BUILD_TYPE_DEVICE = 1
COPY_MODE_COMPACT = 1
QUERY_COMPACTED_SIZE = 1000150000
FORMAT_R32G32B32_SFLOAT = 106
INDEX_UINT16 = 0
INDEX_UINT32 = 1
STAGE_AS_BUILD = 0x02000000
ACCESS_AS_READ = 0x00200000
ACCESS_AS_WRITE = 0x00400000
INSTANCE_FORCE_OPAQUE = 0x4
INSTANCE_TRIANGLE_CULL_DISABLE = 0x1

#: ``VkAccelerationStructureInstanceKHR`` as a numpy record (64 bytes).
INSTANCE_DTYPE = np.dtype([("transform", "<f4", (3, 4)), ("index_mask", "<u4"), ("sbt_flags", "<u4"),
                           ("blas", "<u8")])


@dataclass
class Geometry:
    """One geometry of a build: triangles (vertex/index addresses) or AABBs (address of 24-byte boxes)."""

    kind: int
    primitive_count: int
    vertex_address: int = 0
    vertex_stride: int = 12
    max_vertex: int = 0
    index_address: int = 0
    index_type: int = INDEX_UINT32
    primitive_offset: int = 0  # bytes into the index (or AABB) data
    aabb_address: int = 0
    instance_address: int = 0
    opaque: bool = True


def as_properties(dev: LogicalDevice) -> dict[str, int]:
    """``VkPhysicalDeviceAccelerationStructurePropertiesKHR`` as a dict."""
    p = ffi.new("VkPhysicalDeviceAccelerationStructurePropertiesKHR*",
                {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ACCELERATION_STRUCTURE_PROPERTIES_KHR})
    props2 = ffi.new("VkPhysicalDeviceProperties2*", {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                                      "pNext": p})
    lib.vkGetPhysicalDeviceProperties2(dev.physical, props2)
    return {
        "min_scratch_alignment": int(p.minAccelerationStructureScratchOffsetAlignment),
        "max_geometry_count": int(p.maxGeometryCount),
        "max_instance_count": int(p.maxInstanceCount),
        "max_primitive_count": int(p.maxPrimitiveCount),
    }


class BuildInfo:
    """A ``VkAccelerationStructureBuildGeometryInfoKHR`` with its geometries and ranges, kept alive together."""

    def __init__(self, as_type: int, geometries: Sequence[Geometry], *, flags: int, mode: int = MODE_BUILD) -> None:
        """Describe a build of ``geometries`` (all of one kind)."""
        n = len(geometries)
        self.geometries = list(geometries)
        self.geoms = ffi.new("VkAccelerationStructureGeometryKHR[]", max(n, 1))
        self.ranges = ffi.new("VkAccelerationStructureBuildRangeInfoKHR[]", max(n, 1))
        self.counts = ffi.new("uint32_t[]", [g.primitive_count for g in geometries] or [0])
        for i, g in enumerate(geometries):
            geom = self.geoms[i]
            geom.sType = vk.VK_STRUCTURE_TYPE_ACCELERATION_STRUCTURE_GEOMETRY_KHR
            geom.geometryType = g.kind
            geom.flags = GEOMETRY_OPAQUE if g.opaque else 0
            if g.kind == GEOMETRY_TRIANGLES:
                t = geom.geometry.triangles
                t.sType = vk.VK_STRUCTURE_TYPE_ACCELERATION_STRUCTURE_GEOMETRY_TRIANGLES_DATA_KHR
                t.vertexFormat = FORMAT_R32G32B32_SFLOAT
                t.vertexData.deviceAddress = g.vertex_address
                t.vertexStride = g.vertex_stride
                t.maxVertex = g.max_vertex
                t.indexType = g.index_type
                t.indexData.deviceAddress = g.index_address
                t.transformData.deviceAddress = 0
            elif g.kind == GEOMETRY_AABBS:
                a = geom.geometry.aabbs
                a.sType = vk.VK_STRUCTURE_TYPE_ACCELERATION_STRUCTURE_GEOMETRY_AABBS_DATA_KHR
                a.data.deviceAddress = g.aabb_address
                a.stride = 24
            else:
                ins = geom.geometry.instances
                ins.sType = vk.VK_STRUCTURE_TYPE_ACCELERATION_STRUCTURE_GEOMETRY_INSTANCES_DATA_KHR
                ins.arrayOfPointers = 0
                ins.data.deviceAddress = g.instance_address
            r = self.ranges[i]
            r.primitiveCount = g.primitive_count
            r.primitiveOffset = g.primitive_offset
            r.firstVertex = 0
            r.transformOffset = 0
        self.info = ffi.new("VkAccelerationStructureBuildGeometryInfoKHR*", {
            "sType": vk.VK_STRUCTURE_TYPE_ACCELERATION_STRUCTURE_BUILD_GEOMETRY_INFO_KHR, "type": as_type,
            "flags": flags, "mode": mode, "geometryCount": n, "pGeometries": self.geoms})

    def sizes(self, dev: LogicalDevice) -> tuple[int, int, int]:
        """(acceleration structure size, build scratch size, update scratch size)."""
        out = ffi.new("VkAccelerationStructureBuildSizesInfoKHR*",
                      {"sType": vk.VK_STRUCTURE_TYPE_ACCELERATION_STRUCTURE_BUILD_SIZES_INFO_KHR})
        dev.fn("vkGetAccelerationStructureBuildSizesKHR")(dev.handle, BUILD_TYPE_DEVICE, self.info, self.counts, out)
        return int(out.accelerationStructureSize), int(out.buildScratchSize), int(out.updateScratchSize)


def create_as(dev: LogicalDevice, buffer: Any, offset: int, size: int, as_type: int) -> Any:
    """``vkCreateAccelerationStructureKHR`` over ``size`` bytes of ``buffer`` at ``offset`` (256-byte aligned)."""
    info = ffi.new("VkAccelerationStructureCreateInfoKHR*", {
        "sType": vk.VK_STRUCTURE_TYPE_ACCELERATION_STRUCTURE_CREATE_INFO_KHR, "buffer": buffer, "offset": offset,
        "size": size, "type": as_type})
    p = ffi.new("VkAccelerationStructureKHR*")
    check(dev.fn("vkCreateAccelerationStructureKHR")(dev.handle, info, NULL, p), "vkCreateAccelerationStructureKHR")
    return p[0]


def destroy_as(dev: LogicalDevice, handle: Any) -> None:
    """``vkDestroyAccelerationStructureKHR``."""
    dev.fn("vkDestroyAccelerationStructureKHR")(dev.handle, handle, NULL)


def as_address(dev: LogicalDevice, handle: Any) -> int:
    """The structure's device address (for TLAS instance records)."""
    info = ffi.new("VkAccelerationStructureDeviceAddressInfoKHR*", {
        "sType": vk.VK_STRUCTURE_TYPE_ACCELERATION_STRUCTURE_DEVICE_ADDRESS_INFO_KHR, "accelerationStructure": handle})
    return int(dev.fn("vkGetAccelerationStructureDeviceAddressKHR")(dev.handle, info))


def cmd_build(dev: LogicalDevice, cmd: Any, builds: Sequence[tuple[BuildInfo, Any, int, Any]]) -> None:
    """Record one ``vkCmdBuildAccelerationStructuresKHR`` for ``(info, dst, scratch_address, src)`` tuples."""
    n = len(builds)
    infos = ffi.new("VkAccelerationStructureBuildGeometryInfoKHR[]", n)
    pranges = ffi.new("VkAccelerationStructureBuildRangeInfoKHR*[]", n)
    for i, (b, dst, scratch, src) in enumerate(builds):
        infos[i] = b.info[0]
        infos[i].dstAccelerationStructure = dst
        infos[i].srcAccelerationStructure = src if src is not None else NULL
        infos[i].scratchData.deviceAddress = scratch
        pranges[i] = b.ranges
    dev.fn("vkCmdBuildAccelerationStructuresKHR")(cmd, n, infos, pranges)


def cmd_build_barrier(cmd: Any) -> None:
    """Order acceleration-structure builds/writes before later builds, copies, queries and shader reads."""
    barrier = ffi.new("VkMemoryBarrier*", {"sType": vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                                           "srcAccessMask": ACCESS_AS_WRITE,
                                           "dstAccessMask": ACCESS_AS_READ | ACCESS_AS_WRITE})
    lib.vkCmdPipelineBarrier(cmd, STAGE_AS_BUILD, STAGE_AS_BUILD | 0x800 | 0x1000, 0, 1, barrier, 0, NULL, 0, NULL)


def create_compacted_size_query(dev: LogicalDevice, count: int) -> Any:
    """A query pool for ``count`` compacted-size queries."""
    info = ffi.new("VkQueryPoolCreateInfo*", {"sType": vk.VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                              "queryType": QUERY_COMPACTED_SIZE, "queryCount": count})
    p = ffi.new("VkQueryPool*")
    check(lib.vkCreateQueryPool(dev.handle, info, NULL, p), "vkCreateQueryPool")
    return p[0]


def destroy_query_pool(dev: LogicalDevice, pool: Any) -> None:
    """``vkDestroyQueryPool``."""
    lib.vkDestroyQueryPool(dev.handle, pool, NULL)


def cmd_write_compacted_sizes(dev: LogicalDevice, cmd: Any, handles: Sequence[Any], pool: Any) -> None:
    """Reset the pool and record ``vkCmdWriteAccelerationStructuresPropertiesKHR`` for ``handles``."""
    lib.vkCmdResetQueryPool(cmd, pool, 0, len(handles))
    arr = ffi.new("VkAccelerationStructureKHR[]", list(handles))
    dev.fn("vkCmdWriteAccelerationStructuresPropertiesKHR")(cmd, len(handles), arr, QUERY_COMPACTED_SIZE, pool, 0)


def read_compacted_sizes(dev: LogicalDevice, pool: Any, count: int) -> list[int]:
    """Read ``count`` 64-bit results (waiting for them)."""
    out = ffi.new("uint64_t[]", count)
    check(lib.vkGetQueryPoolResults(dev.handle, pool, 0, count, 8 * count, out, 8, 0x1 | 0x2),
          "vkGetQueryPoolResults")
    return [int(out[i]) for i in range(count)]


def cmd_copy_compact(dev: LogicalDevice, cmd: Any, src: Any, dst: Any) -> None:
    """Record a compacting copy ``src`` → ``dst``."""
    info = ffi.new("VkCopyAccelerationStructureInfoKHR*", {
        "sType": vk.VK_STRUCTURE_TYPE_COPY_ACCELERATION_STRUCTURE_INFO_KHR, "src": src, "dst": dst,
        "mode": COPY_MODE_COMPACT})
    dev.fn("vkCmdCopyAccelerationStructureKHR")(cmd, info)


def instance_records(transforms: np.ndarray, blas_addresses: np.ndarray, custom_index: np.ndarray, *,
                     mask: int = 0xFF, flags: int = INSTANCE_TRIANGLE_CULL_DISABLE,
                     sbt_offset: np.ndarray | int = 0) -> np.ndarray:
    """Build ``VkAccelerationStructureInstanceKHR`` records from (N,4,4) column-vector transforms.

    :param sbt_offset: ``instanceShaderBindingTableRecordOffset`` per record (or one for all): the hit group a
        ray-tracing pipeline runs for the instance (ray queries ignore it).
    """
    n = len(blas_addresses)
    rec = np.zeros(n, dtype=INSTANCE_DTYPE)
    rec["transform"] = np.asarray(transforms, dtype=np.float32)[:, :3, :4]
    rec["index_mask"] = (np.asarray(custom_index, dtype=np.uint32) & 0xFFFFFF) | np.uint32(mask << 24)
    rec["sbt_flags"] = (np.asarray(sbt_offset, dtype=np.uint32) & 0xFFFFFF) | np.uint32((flags & 0xFF) << 24)
    rec["blas"] = np.asarray(blas_addresses, dtype=np.uint64)
    return rec
