"""Ray-tracing pipelines (``VK_KHR_ray_tracing_pipeline``): shader groups, the shader binding table, trace calls.

Used where a device has acceleration structures but no ray queries (NVIDIA's driver seen here), and everywhere the
caller asks for it. Three pieces, all on plain handles (buffers and budgets live above ``vk``):

- :func:`ray_tracing_properties` reads ``VkPhysicalDeviceRayTracingPipelinePropertiesKHR`` (handle size and
  alignments, recursion and launch limits).
- :class:`RayTracingPipeline` builds the shader modules, the groups (general / triangle hit / procedural hit) and
  the pipeline over one descriptor set, and reads the group handles back.
- :class:`SbtLayout` places the handles in a shader binding table: each region starts at a multiple of
  ``shaderGroupBaseAlignment`` and its records are ``shaderGroupHandleSize`` rounded up to
  ``shaderGroupHandleAlignment``; :meth:`SbtLayout.pack` writes the table's bytes and :func:`cmd_trace_rays` records
  ``vkCmdTraceRaysKHR`` against the table's device address.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, UnsupportedFeatureError
from .enums import SHADER_UNUSED, BufferUsage, PipelineStage, RayTracingShaderGroupType, ShaderStage
from .logical import LogicalDevice
from .pipeline import DescriptorPipeline
from .shim import (
    NULL,
    PIPELINE_BIND_POINT_RAY_TRACING,
    STRUCTURE_TYPE_RAY_TRACING_PIPELINE_CREATE_INFO,
    STRUCTURE_TYPE_RAY_TRACING_SHADER_GROUP_CREATE_INFO,
    check,
    ffi,
    lib,
    vk,
)

STAGE_RAYGEN = ShaderStage.RAYGEN
STAGE_ANY_HIT = ShaderStage.ANY_HIT
STAGE_CLOSEST_HIT = ShaderStage.CLOSEST_HIT
STAGE_MISS = ShaderStage.MISS
STAGE_INTERSECTION = ShaderStage.INTERSECTION
STAGE_ALL_RAY_TRACING = STAGE_RAYGEN | STAGE_ANY_HIT | STAGE_CLOSEST_HIT | STAGE_MISS | STAGE_INTERSECTION

GROUP_GENERAL = RayTracingShaderGroupType.GENERAL
GROUP_TRIANGLES_HIT = RayTracingShaderGroupType.TRIANGLES_HIT_GROUP
GROUP_PROCEDURAL_HIT = RayTracingShaderGroupType.PROCEDURAL_HIT_GROUP

BIND_POINT_RAY_TRACING = PIPELINE_BIND_POINT_RAY_TRACING
PIPELINE_STAGE_RAY_TRACING_SHADER = PipelineStage.RAY_TRACING_SHADER
BUFFER_USAGE_SHADER_BINDING_TABLE = BufferUsage.SHADER_BINDING_TABLE


def _align(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def ray_tracing_properties(dev: LogicalDevice) -> dict[str, int]:
    """``VkPhysicalDeviceRayTracingPipelinePropertiesKHR`` of the device as a dict of snake_case names.

    :param dev: the logical device (its physical device is queried).
    """
    rtp = ffi.new("VkPhysicalDeviceRayTracingPipelinePropertiesKHR*",
                  {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_RAY_TRACING_PIPELINE_PROPERTIES_KHR})
    props2 = ffi.new("VkPhysicalDeviceProperties2*", {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                                      "pNext": rtp})
    lib.vkGetPhysicalDeviceProperties2(dev.physical, props2)
    lim = props2.properties.limits
    out = {
        "shader_group_handle_size": int(rtp.shaderGroupHandleSize),
        "shader_group_handle_alignment": int(rtp.shaderGroupHandleAlignment),
        "shader_group_base_alignment": int(rtp.shaderGroupBaseAlignment),
        "max_shader_group_stride": int(rtp.maxShaderGroupStride),
        "max_ray_recursion_depth": int(rtp.maxRayRecursionDepth),
        "max_ray_dispatch_invocation_count": int(rtp.maxRayDispatchInvocationCount),
        "max_ray_hit_attribute_size": int(rtp.maxRayHitAttributeSize),
        # vkCmdTraceRaysKHR: width <= maxComputeWorkGroupCount[0] * maxComputeWorkGroupSize[0] (and so on)
        "max_launch_width": int(lim.maxComputeWorkGroupCount[0]) * int(lim.maxComputeWorkGroupSize[0]),
        "max_launch_height": int(lim.maxComputeWorkGroupCount[1]) * int(lim.maxComputeWorkGroupSize[1]),
    }
    return out


@dataclass(frozen=True)
class ShaderGroup:
    """One shader group: ``kind`` (``GROUP_*``) and indices into the pipeline's stages (``SHADER_UNUSED``: none)."""

    kind: int
    general: int = SHADER_UNUSED
    closest_hit: int = SHADER_UNUSED
    any_hit: int = SHADER_UNUSED
    intersection: int = SHADER_UNUSED


@dataclass(frozen=True)
class SbtRegion:
    """One region of a shader binding table: byte offset in the table, record stride, size, first group index."""

    offset: int
    stride: int
    size: int
    first_group: int
    count: int


@dataclass(frozen=True)
class SbtLayout:
    """Where each group's handle goes in a shader binding table with raygen, miss and hit regions (no callables).

    Every region starts at a multiple of ``base_alignment`` (relative to a table whose device address is itself a
    multiple of it); records are ``handle_size`` rounded up to ``handle_alignment``; the raygen region's size equals
    its stride (``VUID-vkCmdTraceRaysKHR-size-04023``).
    """

    handle_size: int
    handle_alignment: int
    base_alignment: int
    raygen: SbtRegion
    miss: SbtRegion
    hit: SbtRegion

    @classmethod
    def build(cls, props: dict[str, int], *, raygen: int = 1, miss: int = 1, hit: int = 1) -> SbtLayout:
        """Lay out ``raygen`` (must be 1), ``miss`` and ``hit`` groups, in that group order, from the properties.

        :param props: :func:`ray_tracing_properties` (or the same keys).
        :param raygen: ray-generation records (exactly 1).
        :param miss: miss records.
        :param hit: hit-group records.
        :raises ConfigError: ``raygen`` is not 1.
        :raises UnsupportedFeatureError: a record would exceed ``maxShaderGroupStride``.
        """
        if raygen != 1:
            raise ConfigError(f"{raygen} ray-generation records; a shader binding table has exactly one per trace",
                              option="raygen")
        h = props["shader_group_handle_size"]
        ha = max(1, props["shader_group_handle_alignment"])
        ba = max(1, props["shader_group_base_alignment"])
        stride = _align(h, ha)
        if stride > props.get("max_shader_group_stride", stride):
            raise UnsupportedFeatureError(f"shader group record stride {stride} exceeds the device's "
                                          f"maxShaderGroupStride {props['max_shader_group_stride']}",
                                          feature="maxShaderGroupStride")
        rg = SbtRegion(0, stride, stride, 0, 1)
        ms = SbtRegion(_align(rg.offset + rg.size, ba), stride, stride * miss, 1, miss)
        ht = SbtRegion(_align(ms.offset + ms.size, ba), stride, stride * hit, 1 + miss, hit)
        return cls(h, ha, ba, rg, ms, ht)

    @property
    def size(self) -> int:
        """Bytes of the table."""
        return self.hit.offset + self.hit.size

    @property
    def group_count(self) -> int:
        """Groups the table holds."""
        return self.raygen.count + self.miss.count + self.hit.count

    def pack(self, handles: bytes) -> bytes:
        """The table's bytes from the pipeline's group handles.

        :param handles: ``group_count`` x ``handle_size`` bytes, in group order.
        :raises ConfigError: too few bytes.
        """
        h = self.handle_size
        if len(handles) < self.group_count * h:
            raise ConfigError(f"{len(handles)} bytes of handles for {self.group_count} groups of {h} bytes",
                              option="handles")
        out = bytearray(self.size)
        for region in (self.raygen, self.miss, self.hit):
            for k in range(region.count):
                g = region.first_group + k
                at = region.offset + k * region.stride
                out[at:at + h] = handles[g * h:(g + 1) * h]
        return bytes(out)


class RayTracingPipeline(DescriptorPipeline):
    """Shader modules + groups + a ray-tracing pipeline over one descriptor set (visible to every ray stage)."""

    bind_point = BIND_POINT_RAY_TRACING

    def __init__(self, dev: LogicalDevice, stages: Sequence[tuple[int, bytes]], groups: Sequence[ShaderGroup],
                 bindings: Sequence[int], *, push_constant_bytes: int = 0, max_recursion: int = 1) -> None:
        """Create it.

        :param dev: a logical device with ``VK_KHR_ray_tracing_pipeline`` enabled.
        :param stages: ``(STAGE_*, spirv)`` per shader stage, indexed by :class:`ShaderGroup`.
        :param groups: the shader groups, in shader-binding-table group order.
        :param bindings: ``bindings[i]`` is the descriptor type of binding ``i``.
        :param push_constant_bytes: size of the push-constant block (shared by every stage).
        :param max_recursion: ``maxPipelineRayRecursionDepth`` (1: raygen traces, hit shaders do not).
        """
        super().__init__(dev, bindings, stages=STAGE_ALL_RAY_TRACING, push_constant_bytes=push_constant_bytes)
        self.group_count = len(groups)
        try:
            name = ffi.new("char[]", b"main")
            sinfo = ffi.new("VkPipelineShaderStageCreateInfo[]", len(stages))
            for i, (stage, spirv) in enumerate(stages):
                sinfo[i].sType = vk.VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO
                sinfo[i].stage = stage
                sinfo[i].module = self.create_module(spirv)
                sinfo[i].pName = name
            ginfo = ffi.new("VkRayTracingShaderGroupCreateInfoKHR[]", len(groups))
            for i, g in enumerate(groups):
                ginfo[i].sType = STRUCTURE_TYPE_RAY_TRACING_SHADER_GROUP_CREATE_INFO
                ginfo[i].type = g.kind
                ginfo[i].generalShader = g.general
                ginfo[i].closestHitShader = g.closest_hit
                ginfo[i].anyHitShader = g.any_hit
                ginfo[i].intersectionShader = g.intersection
            cinfo = ffi.new("VkRayTracingPipelineCreateInfoKHR*", {
                "sType": STRUCTURE_TYPE_RAY_TRACING_PIPELINE_CREATE_INFO, "stageCount": len(stages),
                "pStages": sinfo, "groupCount": len(groups), "pGroups": ginfo,
                "maxPipelineRayRecursionDepth": max_recursion, "layout": self.layout})
            p_pipe = ffi.new("VkPipeline*")
            create = dev.fn("vkCreateRayTracingPipelinesKHR")
            check(create(dev.handle, NULL, NULL, 1, cinfo, NULL, p_pipe), "vkCreateRayTracingPipelinesKHR")
            self.pipeline = p_pipe[0]
        except BaseException:
            self.destroy()
            raise

    def group_handles(self) -> bytes:
        """The opaque handles of every group (``group_count`` x ``shaderGroupHandleSize`` bytes)."""
        size = ray_tracing_properties(self._dev)["shader_group_handle_size"] * self.group_count
        data = ffi.new("char[]", size)
        fn = self._dev.fn("vkGetRayTracingShaderGroupHandlesKHR")
        check(fn(self._dev.handle, self.pipeline, 0, self.group_count, size, data),
              "vkGetRayTracingShaderGroupHandlesKHR")
        return bytes(ffi.buffer(data, size))


def cmd_trace_rays(dev: LogicalDevice, cmd: Any, layout: SbtLayout, table_address: int, width: int,
                   height: int = 1, depth: int = 1) -> None:
    """Record ``vkCmdTraceRaysKHR`` with the regions of ``layout`` in a table at ``table_address``; the bound
    pipeline and descriptor set are the caller's.

    :param dev: the logical device.
    :param cmd: a command buffer in the recording state.
    :param layout: where the table's regions are.
    :param table_address: device address of the table (a multiple of ``layout.base_alignment``).
    :param width: launch width.
    :param height: launch height.
    :param depth: launch depth.
    :raises ConfigError: ``table_address`` is not aligned.
    """
    if table_address % layout.base_alignment:
        raise ConfigError(f"shader binding table address {table_address:#x} is not a multiple of "
                          f"shaderGroupBaseAlignment {layout.base_alignment}", option="table_address")
    regions = ffi.new("VkStridedDeviceAddressRegionKHR[4]")
    for i, region in enumerate((layout.raygen, layout.miss, layout.hit)):
        regions[i].deviceAddress = table_address + region.offset
        regions[i].stride = region.stride
        regions[i].size = region.size
    # regions[3]: no callable shaders (all zero)
    fn = dev.fn("vkCmdTraceRaysKHR")
    fn(cmd, regions + 0, regions + 1, regions + 2, regions + 3, width, height, depth)
