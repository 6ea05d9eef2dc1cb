"""The GPU side of a virtual texture: the two compute pipelines, the atlas view and sampler, command buffers that are
reused in turn, and submission on the device's timeline. Nothing here allocates memory."""

from __future__ import annotations

from importlib import resources as ilr
from typing import TYPE_CHECKING, Any

from ..vk import resources as vkr
from ..vk.commands import CommandPool, begin, end, submit
from ..vk.enums import Access, ImageLayout, PipelineStage
from ..vk.pipeline import DESC_COMBINED_IMAGE_SAMPLER, DESC_STORAGE_BUFFER, ComputePipeline
from ..vk.views import create_image_view, create_nearest_sampler, destroy_image_view, destroy_sampler

if TYPE_CHECKING:
    from ..device import Device
    from ..memory.context import GpuContext

WORKGROUP = 64
STAGE_TOP = PipelineStage.TOP_OF_PIPE
STAGE_TRANSFER = PipelineStage.TRANSFER
STAGE_COMPUTE = PipelineStage.COMPUTE_SHADER
STAGE_HOST = PipelineStage.HOST
STAGE_ALL = PipelineStage.ALL_COMMANDS
ACCESS_SHADER_READ = Access.SHADER_READ
ACCESS_SHADER_WRITE = Access.SHADER_WRITE
ACCESS_TRANSFER_WRITE = Access.TRANSFER_WRITE
ACCESS_HOST_READ = Access.HOST_READ
ACCESS_HOST_WRITE = Access.HOST_WRITE
LAYOUT_SHADER_READ = ImageLayout.SHADER_READ_ONLY
LAYOUT_TRANSFER_DST = ImageLayout.TRANSFER_DST


def context(device: Device) -> GpuContext:
    """The device's Vulkan context (``logical``, ``physical``, ``lifetime``): what the GPU side is built on."""
    return device.context


def spirv(name: str) -> bytes:
    """The shipped SPIR-V of ``vixen_assets/shaders/NAME.comp``."""
    return (ilr.files("vixen_assets") / "shaders" / f"{name}.spv").read_bytes()


class VtGpu:
    """Pipelines, sampler, atlas view and a small ring of command buffers for one virtual texture."""

    def __init__(self, device: Device, atlas: Any | None, vk_format: int, *, command_buffers: int = 3) -> None:
        """Create everything (destroyed by :meth:`destroy`, also when this constructor fails); without an
        ``atlas`` (the sparse backend) there is no page-table sampling pipeline."""
        ctx = context(device)
        self.ctx = ctx
        self.dev = ctx.logical
        self.sample_pipe: ComputePipeline | None = None
        self.feedback_pipe: ComputePipeline | None = None
        self.collect_pipe: ComputePipeline | None = None
        self.view = self.sampler = None
        self.pool: CommandPool | None = None
        try:
            self.feedback_pipe = ComputePipeline(self.dev, spirv("vt_feedback"),
                                                 [DESC_STORAGE_BUFFER] * 3, push_constant_bytes=24)
            self.collect_pipe = ComputePipeline(self.dev, spirv("vt_feedback_collect"),
                                                [DESC_STORAGE_BUFFER] * 3, push_constant_bytes=4)
            if atlas is not None:
                self.sample_pipe = ComputePipeline(self.dev, spirv("vt_sample"),
                                                   [DESC_COMBINED_IMAGE_SAMPLER, DESC_STORAGE_BUFFER,
                                                    DESC_STORAGE_BUFFER, DESC_STORAGE_BUFFER], push_constant_bytes=28)
                self.view = create_image_view(self.dev, atlas.handle, vk_format)
                self.sampler = create_nearest_sampler(self.dev)
            self.pool = CommandPool(self.dev, self.dev.queue.family)
            self.cmds = [self.pool.allocate() for _ in range(command_buffers)]
        except BaseException:
            self.destroy()
            raise
        self.values = [0] * command_buffers
        self._next = 0

    @property
    def latest(self) -> int:
        """The timeline value of the last submission through these command buffers."""
        return max(self.values)

    def record(self) -> tuple[int, Any]:
        """A command buffer whose last submission finished, reset and begun: ``(index, cmd)``."""
        i = self._next
        self._next = (i + 1) % len(self.cmds)
        self.ctx.lifetime.wait(self.values[i])
        cmd = self.cmds[i]
        begin(cmd)
        return i, cmd

    def submit(self, index: int, *, after: int = 0) -> int:
        """End and submit command buffer ``index`` on the main queue (once the timeline reached ``after``, when
        given: e.g. a sparse binding); return its timeline value."""
        cmd = self.cmds[index]
        end(cmd)
        lt = self.ctx.lifetime
        waits = [(lt.timeline, after, STAGE_ALL)] if after else []
        with lt.submit_lock:
            value = lt.next_value()
            submit(self.dev, self.dev.queue, [cmd], waits=waits, signals=[(lt.timeline, value)])
        self.values[index] = value
        return value

    def wait(self, value: int) -> None:
        """Block until the timeline reaches ``value``."""
        self.ctx.lifetime.wait(value)

    def done(self, value: int) -> bool:
        """True once the timeline reached ``value``."""
        return bool(self.ctx.lifetime.is_done(value))

    @staticmethod
    def barrier(cmd: Any, src_stage: int, dst_stage: int, src_access: int, dst_access: int) -> None:
        """A global memory barrier."""
        vkr.cmd_memory_barrier(cmd, src_stage=src_stage, dst_stage=dst_stage, src_access=src_access,
                               dst_access=dst_access)

    def destroy(self) -> None:
        """Destroy pipelines, view, sampler and command pool; safe to call twice."""
        for pipe in (self.sample_pipe, self.feedback_pipe, self.collect_pipe):
            if pipe is not None:
                pipe.destroy()
        self.sample_pipe = self.feedback_pipe = self.collect_pipe = None
        destroy_image_view(self.dev, self.view)
        destroy_sampler(self.dev, self.sampler)
        self.view = self.sampler = None
        if self.pool is not None:
            self.pool.destroy()
            self.pool = None


__all__ = ["VtGpu", "context", "spirv", "WORKGROUP"]
