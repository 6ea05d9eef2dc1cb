"""Acceleration-structure objects: :class:`AccelerationStructure` (a BLAS or TLAS in a buffer) and :class:`Tlas` (a
top-level structure over instances, its instance records and scratch, refit in place).

Both follow the shared GPU-object lifetime (``destroy()`` safe twice, deferred while the GPU uses them, listed in the
device's registry until destroyed, ``with`` destroys).

A ``Tlas`` build or refit is one submission: the instance records are written straight into mapped memory
(unified memory, resizable BAR) or into a persistent host-visible staging buffer whose copy is recorded in the same
command buffer as the build (discrete GPUs), so no separate upload round trip precedes the build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import DeviceClosedError
from ..memory.resource import TrackedResource
from ..vk import accel as vka
from ..vk import resources as vkr
from ..vk.commands import one_shot
from ..vk.enums import Access, PipelineStage

if TYPE_CHECKING:
    from ..device import Device
    from ..memory.buffers import Buffer

AS_STORAGE_USAGE = "accel_storage|device_address"
SCRATCH_USAGE = "storage|device_address"
INPUT_USAGE = "accel_input|device_address|storage|transfer_dst"
STAGING_USAGE = "transfer_src"


class AccelerationStructure(TrackedResource):
    """A BLAS or TLAS: its ``VkAccelerationStructureKHR``, the buffer it lives in, its device address."""

    def __init__(self, device: Device, name: str, kind: int, buffer: Buffer, size: int) -> None:
        """Create the structure over ``size`` bytes of ``buffer`` (build it afterwards).

        :param device: the device owning ``buffer``.
        :param name: a label for reprs and the leak report.
        :param kind: ``vk.accel.BLAS`` or ``vk.accel.TLAS``.
        :param buffer: an ``accel_storage|device_address`` buffer of at least ``size`` bytes.
        :param size: bytes of the structure.
        """
        self.kind = kind
        #: True for a BLAS of boxes (AABB geometry): a ray-tracing pipeline needs a procedural hit group for it
        self.procedural = False
        self.buffer = buffer
        self.size = size
        self.handle = vka.create_as(device.context.logical, buffer.handle, buffer.offset, size, kind)
        self.device_address = vka.as_address(device.context.logical, self.handle)
        self._track(device.context, name)

    @property
    def nbytes(self) -> int:
        """Bytes of the backing buffer."""
        return self.buffer.nbytes

    def _release(self) -> None:
        if self.ctx.logical.handle is not None:
            vka.destroy_as(self.ctx.logical, self.handle)
        self.buffer.destroy()

    def __repr__(self) -> str:
        kind = "BLAS" if self.kind == vka.BLAS else "TLAS"
        return f'<{kind} "{self.name}" {self.size} B>'


def scratch_alignment(device: Device) -> int:
    """Alignment of scratch addresses for builds on ``device`` (at least 256).

    :param device: the device.
    """
    return max(256, vka.as_properties(device.context.logical)["min_scratch_alignment"])


class Tlas(TrackedResource):
    """A top-level acceleration structure over instances; ``refit(transforms)`` updates it in place."""

    def __init__(self, device: Device, blas: Sequence[Any], transforms: np.ndarray, *,
                 custom_index: np.ndarray | None = None, name: str = "tlas", stage_instances: bool | None = None) -> None:
        """Build it over ``blas[i]`` placed by ``transforms[i]`` (column-vector 4x4) in one submission.

        :param device: the device.
        :param blas: one structure (anything with a ``device_address``) per instance.
        :param transforms: (N, 4, 4) float32 world matrices.
        :param custom_index: per-instance custom index (default ``0..N-1``).
        :param name: a label for reprs and the leak report.
        :param stage_instances: write the instance records through a host-visible staging buffer copied in the
            build's command buffer; ``None``: only when the instance buffer is not mapped (discrete GPUs); ``False``:
            straight into a mapped instance buffer (host-visible memory on a discrete GPU, read by the build).
        """
        self.name = name
        n = len(blas)
        self.count = n
        self.custom_index = (np.arange(n, dtype=np.uint32) if custom_index is None
                             else np.asarray(custom_index, np.uint32))
        # per distinct structure (a scene places few BLASes many times), then gathered per record
        distinct = dict(zip(map(id, blas), blas))
        row = {k: r for r, k in enumerate(distinct)}
        which = np.fromiter(map(row.__getitem__, map(id, blas)), np.int64, n)
        self._addresses = np.array([b.device_address for b in distinct.values()], dtype=np.uint64)[which]
        #: hit group per record for ray-tracing pipelines: 0 triangles, 1 boxes (``trace_rays(backend="pipeline")``)
        self.sbt_offset = np.array([1 if getattr(b, "procedural", False) else 0 for b in distinct.values()],
                                   dtype=np.uint32)[which]
        self.structure: AccelerationStructure | None = None
        self.instance_buffer: Buffer | None = None
        self._staging: Buffer | None = None
        self._scratch: Buffer | None = None
        self.device = device
        ctx = device.context
        with device.allocation_group() as group:
            records = self._records(transforms)
            nbytes = max(records.nbytes, 64)
            self.instance_buffer = group.create_buffer(nbytes, INPUT_USAGE, name=f"{name}-instances",
                                                       category="accel", alignment=16,
                                                       strategy="host_visible" if stage_instances is False else "auto")
            if stage_instances is None:
                stage_instances = self.instance_buffer.mapped is None
            if stage_instances:  # device-only memory: stage, copied in the build's submission
                self._staging = group.create_buffer(nbytes, STAGING_USAGE, name=f"{name}-instances-staging",
                                                    category="accel", strategy="host_visible")
            geom = vka.Geometry(vka.GEOMETRY_INSTANCES, n, instance_address=self.instance_buffer.device_address)
            self._info = vka.BuildInfo(vka.TLAS, [geom], flags=vka.BUILD_ALLOW_UPDATE | vka.BUILD_PREFER_FAST_TRACE)
            size, build_scratch, update_scratch = self._info.sizes(ctx.logical)
            buf = group.create_buffer(size, AS_STORAGE_USAGE, name=name, category="accel", alignment=256)
            self.structure = AccelerationStructure(device, name, vka.TLAS, buf, size)
            group.adopt(self.structure)
            self._scratch = group.create_buffer(max(build_scratch, update_scratch, 256), SCRATCH_USAGE,
                                                name=f"{name}-scratch", category="accel-scratch",
                                                alignment=scratch_alignment(device))
            self.ctx = ctx
            self._write_and_build(records, vka.MODE_BUILD)
        self._track(ctx, name)

    def _records(self, transforms: np.ndarray) -> np.ndarray:
        t = np.asarray(transforms, np.float32).reshape(self.count, 4, 4)
        return vka.instance_records(t, self._addresses, self.custom_index, sbt_offset=self.sbt_offset)

    def _write_and_build(self, records: np.ndarray, mode: int) -> None:
        """Write the instance records and (re)build: one command buffer, one submission, waited for."""
        dev = self.ctx.logical
        assert self.structure is not None and self.instance_buffer is not None and self._scratch is not None
        # the previous build or a trace may still read the records: wait before overwriting them
        busy = max(self.structure.last_use, self.instance_buffer.last_use,
                   self._staging.last_use if self._staging is not None else 0)
        if busy:
            self.ctx.lifetime.wait(busy)
        raw = records.view(np.uint8).reshape(-1)
        target = self._staging if self._staging is not None else self.instance_buffer
        mapped = target.mapped
        assert mapped is not None
        mapped[:raw.size] = raw
        self._info.info.mode = mode
        src = self.structure.handle if mode == vka.MODE_UPDATE else None
        with one_shot(dev, self.ctx.command_pool, dev.queue) as cmd:
            if self._staging is not None and raw.size:
                region = vkr.copy_regions(1)
                region[0] = (self._staging.offset, self.instance_buffer.offset, raw.size)
                vkr.cmd_copy_buffer(cmd, self._staging.handle, self.instance_buffer.handle, region)
                vkr.cmd_memory_barrier(cmd, src_stage=PipelineStage.TRANSFER,
                                       dst_stage=PipelineStage.ACCELERATION_STRUCTURE_BUILD,
                                       src_access=Access.TRANSFER_WRITE,
                                       dst_access=Access.ACCELERATION_STRUCTURE_READ)
            vka.cmd_build(dev, cmd, [(self._info, self.structure.handle, self._scratch.device_address, src)])
            vka.cmd_build_barrier(cmd)

    @property
    def handle(self) -> Any:
        """The ``VkAccelerationStructureKHR``."""
        assert self.structure is not None
        return self.structure.handle

    @property
    def device_address(self) -> int:
        """The TLAS's device address."""
        assert self.structure is not None
        return self.structure.device_address

    @property
    def staging_buffer(self) -> Buffer | None:
        """The persistent host-visible buffer the instance records are written to on the staged path (kept for
        refits, charged to the ``"accel"`` budget category like the instance buffer); ``None`` on the mapped path."""
        return self._staging

    @property
    def nbytes(self) -> int:
        """Bytes of the TLAS, its instance buffer, staging and scratch."""
        return sum(b.nbytes for b in (self.structure, self.instance_buffer, self._staging, self._scratch)
                   if b is not None)

    def refit(self, transforms: np.ndarray) -> None:
        """Write new instance transforms and update the TLAS in place (same instances, same BLASes), one submission.

        :param transforms: (N, 4, 4) float32 world matrices.
        """
        self._check_alive()
        self._write_and_build(self._records(transforms), vka.MODE_UPDATE)

    def rebuild(self, transforms: np.ndarray) -> None:
        """Write new transforms and rebuild the TLAS from scratch (the reference for refit), one submission.

        :param transforms: (N, 4, 4) float32 world matrices.
        """
        self._check_alive()
        self._write_and_build(self._records(transforms), vka.MODE_BUILD)

    def _check_alive(self) -> None:
        if not self.alive:
            raise DeviceClosedError(f"Tlas {self.name!r} was destroyed")

    def _prepare_retire(self) -> int:
        return max([self.last_use] + [b.last_use for b in (self.structure, self.instance_buffer, self._staging,
                                                           self._scratch) if b is not None])

    def _release(self) -> None:
        for obj in (self.structure, self.instance_buffer, self._staging, self._scratch):
            if obj is not None:
                obj.destroy()
        self.structure = self.instance_buffer = self._staging = self._scratch = None

    def __repr__(self) -> str:
        return f"<Tlas {self.name!r} instances={self.count}>"


__all__ = ["AS_STORAGE_USAGE", "INPUT_USAGE", "SCRATCH_USAGE", "AccelerationStructure", "Tlas", "scratch_alignment"]
