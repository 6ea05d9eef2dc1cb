"""The ray-tracing-pipeline backend of :func:`vixen_assets.trace.trace_rays` (where ray queries are absent).

Four shaders (``shaders/trace_rays.rgen`` / ``.rmiss`` / ``.rchit`` / ``.rint``, SPIR-V shipped beside them) read
and write the same buffers as the ray-query compute shader: the ray-generation shader traces one ray per launch
index, the miss and closest-hit shaders fill the payload the ray-generation shader stores, and procedural (AABB)
geometry such as voxels is confirmed by the intersection shader with the ray-query shader's slab test. Shader groups:
raygen, miss, a triangle hit group and a procedural hit group; the TLAS gives box instances SBT record offset 1
(:attr:`~vixen_assets.accel.structures.Tlas.sbt_offset`) so each instance runs the hit group of its geometry type.

The shader binding table lives in a budgeted buffer from the device's allocator (category ``trace``) whose device
address is rounded up to ``shaderGroupBaseAlignment``; the pipeline and the table are made once per device, kept in
``Device.stash`` and destroyed at :meth:`~vixen_assets.Device.close`.
"""

from __future__ import annotations

from importlib import resources as ilr
from typing import TYPE_CHECKING, Any

import numpy as np

from .vk import resources as vkr
from .vk.enums import Access, BufferUsage, PipelineStage
from .vk.pipeline import DESC_ACCELERATION_STRUCTURE, DESC_STORAGE_BUFFER
from .vk.raytracing import (
    BUFFER_USAGE_SHADER_BINDING_TABLE,
    GROUP_GENERAL,
    GROUP_PROCEDURAL_HIT,
    GROUP_TRIANGLES_HIT,
    PIPELINE_STAGE_RAY_TRACING_SHADER,
    STAGE_CLOSEST_HIT,
    STAGE_INTERSECTION,
    STAGE_MISS,
    STAGE_RAYGEN,
    RayTracingPipeline,
    SbtLayout,
    ShaderGroup,
    cmd_trace_rays,
    ray_tracing_properties,
)

if TYPE_CHECKING:
    from .device import Device

SHADER = "trace_rays"
#: stage file suffix -> Vulkan stage, in the pipeline's stage order (ShaderGroup indices below refer to it)
STAGES = (("rgen", STAGE_RAYGEN), ("rmiss", STAGE_MISS), ("rchit", STAGE_CLOSEST_HIT), ("rint", STAGE_INTERSECTION))
GROUPS = (
    ShaderGroup(GROUP_GENERAL, general=0),                                  # raygen region
    ShaderGroup(GROUP_GENERAL, general=1),                                  # miss region
    ShaderGroup(GROUP_TRIANGLES_HIT, closest_hit=2),                        # hit record 0: triangle BLASes
    ShaderGroup(GROUP_PROCEDURAL_HIT, closest_hit=2, intersection=3),       # hit record 1: box BLASes
)
#: rays per launch row and rows per launch (a launch is ``LAUNCH_WIDTH`` x rows, far below every device's launch
#: limits; more rays take several launches)
LAUNCH_WIDTH = 1 << 14
LAUNCH_ROWS = 1 << 14


def stage_spirv(stage: str, name: str = SHADER) -> bytes:
    """The shipped SPIR-V of one ray-tracing stage of a shader.

    :param stage: the file suffix: ``rgen``, ``rmiss``, ``rchit`` or ``rint``.
    :param name: the shader's name under ``vixen_assets/shaders``.
    """
    return (ilr.files("vixen_assets") / "shaders" / f"{name}.{stage}.spv").read_bytes()


class PipelineTracer:
    """The ray-tracing pipeline of ``trace_rays`` on one device and its shader binding table."""

    def __init__(self, device: Device) -> None:
        """Create the pipeline, read its group handles and upload the table (budget checked before Vulkan)."""
        self.device = device
        dev = device.context.logical
        self.properties = ray_tracing_properties(dev)
        self.layout = SbtLayout.build(self.properties, miss=1, hit=2)
        align = self.layout.base_alignment
        # the table's own buffer: room to round its device address up to the base alignment (the allocator
        # aligns the memory offset, which is what the address follows; the padding makes it certain)
        self.sbt = device.create_buffer(self.layout.size + align, BUFFER_USAGE_SHADER_BINDING_TABLE
                                        | BufferUsage.SHADER_DEVICE_ADDRESS | BufferUsage.TRANSFER_DST, strategy="auto",
                                        name="trace-sbt", category="trace", alignment=align)
        self.pipeline: RayTracingPipeline | None = None
        try:
            self.pipeline = RayTracingPipeline(
                dev, [(stage, stage_spirv(suffix)) for suffix, stage in STAGES], GROUPS,
                [DESC_ACCELERATION_STRUCTURE, DESC_STORAGE_BUFFER, DESC_STORAGE_BUFFER, DESC_STORAGE_BUFFER],
                push_constant_bytes=8, max_recursion=1)
            table = self.layout.pack(self.pipeline.group_handles())
            base = int(self.sbt.device_address)
            self.table_address = -(-base // align) * align
            device.upload(self.sbt, np.frombuffer(table, np.uint8), self.table_address - base)
        except BaseException:
            self.destroy()
            raise

    def write(self, resources: list[Any]) -> None:
        """Point the descriptor set at the TLAS and the ray, hit and AABB-table buffers (as the compute shader's).

        :param resources: the TLAS handle, then ``(buffer_handle, offset, size)`` of the ray, hit and AABB buffers.
        """
        assert self.pipeline is not None
        self.pipeline.write(resources)

    def cmd_trace(self, cmd: Any, count: int) -> None:
        """Record the launches for ``count`` rays and a barrier making the hits visible to transfers and the host.

        :param cmd: a command buffer in the recording state.
        :param count: rays in the ray buffer.
        """
        assert self.pipeline is not None
        dev = self.device.context.logical
        per_launch = min(self.properties["max_ray_dispatch_invocation_count"], LAUNCH_WIDTH * LAUNCH_ROWS)
        row = min(LAUNCH_WIDTH, per_launch)
        per_launch -= per_launch % row  # whole rows: width x height never exceeds the invocation limit
        first = 0
        while first < count:
            n = min(count - first, per_launch)
            width = min(n, row)
            self.pipeline.cmd_bind(cmd, np.array([first + n, first], np.uint32).tobytes())
            cmd_trace_rays(dev, cmd, self.layout, self.table_address, width, -(-n // width))
            first += n
        vkr.cmd_memory_barrier(cmd, src_stage=PIPELINE_STAGE_RAY_TRACING_SHADER,
                               dst_stage=PipelineStage.TRANSFER | PipelineStage.HOST, src_access=Access.SHADER_WRITE,
                               dst_access=Access.TRANSFER_READ | Access.HOST_READ)

    def mark_used(self, value: int) -> None:
        """The table is read by the submission signalling timeline ``value``.

        :param value: the lifetime timeline value of that submission.
        """
        self.sbt.last_use = value

    def destroy(self) -> None:
        """Destroy the pipeline and free the table; safe to call twice."""
        if self.pipeline is not None:
            self.pipeline.destroy()
            self.pipeline = None
        if self.sbt is not None:
            self.sbt.destroy()
            self.sbt = None
