"""Batched BLAS builds with compaction: :func:`build_blases` (scratch under a budget, one command buffer per batch,
compacted copies where smaller), :func:`build_aabb_blas` (a BLAS of boxes) and :class:`AccelStats`.

Builds run inside an allocation group: a failure in the middle of a batch (budget, device error) frees everything
that batch allocated and leaves previously built structures intact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import BudgetExceededError
from ..memory.group import AllocationGroup
from ..vk import accel as vka
from ..vk.commands import one_shot
from .structures import AS_STORAGE_USAGE, SCRATCH_USAGE, AccelerationStructure, scratch_alignment

if TYPE_CHECKING:
    from ..device import Device
    from ..memory.buffers import Buffer

SCRATCH_BUDGET = 256 << 20


@dataclass
class AccelStats:
    """What the acceleration-structure builds did."""

    blas_built: int = 0
    triangles: int = 0
    batches: int = 0
    build_seconds: float = 0.0
    bytes_before_compaction: int = 0
    bytes_after_compaction: int = 0
    transient_peak_bytes: int = 0
    scratch_bytes: int = 0
    per_blas: list[tuple[int, int]] = field(default_factory=list)


def geometries_for_mesh(mesh: Any) -> list[vka.Geometry]:
    """One opaque triangle geometry per submesh of a ``GpuMesh`` (read by device address from its arenas).

    :param mesh: a mesh entry with ``vertex_address``, ``index_address``, ``stride``, ``submeshes``, counts.
    """
    isz = int(np.dtype(mesh.index_dtype).itemsize)
    itype = vka.INDEX_UINT16 if isz == 2 else vka.INDEX_UINT32
    subs = [s for s in mesh.submeshes if s.index_count] or None
    ranges = [(s.first_index, s.index_count) for s in subs] if subs else [(0, mesh.index_count)]
    return [vka.Geometry(vka.GEOMETRY_TRIANGLES, count // 3, vertex_address=mesh.vertex_address,
                         vertex_stride=mesh.stride, max_vertex=max(mesh.vertex_count - 1, 0),
                         index_address=mesh.index_address, index_type=itype, primitive_offset=first * isz)
            for first, count in ranges if count >= 3]


class ScratchPool:
    """A reusable device-address scratch buffer, grown on demand up to the scratch budget."""

    def __init__(self, device: Device, *, budget: int = SCRATCH_BUDGET) -> None:
        """Start empty.

        :param device: the device.
        :param budget: the most scratch bytes one batch may use.
        """
        self.device = device
        self.budget = budget
        self.alignment = scratch_alignment(device)
        self.buffer: Buffer | None = None

    def get(self, nbytes: int) -> Buffer:
        """A scratch buffer of at least ``nbytes`` (reused when big enough).

        :param nbytes: bytes needed.
        :raises BudgetExceededError: ``nbytes`` is over the scratch budget.
        """
        if nbytes > self.budget:
            raise BudgetExceededError(nbytes, 0, self.budget, who="acceleration-structure scratch")
        if self.buffer is None or self.buffer.size < nbytes:
            if self.buffer is not None:
                self.buffer.destroy()
                self.buffer = None
            self.buffer = self.device.create_buffer(max(nbytes, 1 << 16), SCRATCH_USAGE, name="as-scratch",
                                                    category="accel-scratch", alignment=self.alignment)
        return self.buffer

    def release(self) -> None:
        """Free the scratch buffer (after the builds that used it are done)."""
        if self.buffer is not None:
            self.buffer.destroy()
            self.buffer = None


def _align(n: int, a: int) -> int:
    return (n + a - 1) & -a


def build_blases(device: Device, items: Sequence[tuple[str, list[vka.Geometry]]], group: AllocationGroup, *,
                 compact: bool = True, stats: AccelStats | None = None, scratch_budget: int = SCRATCH_BUDGET,
                 flags: int = vka.BUILD_PREFER_FAST_TRACE) -> list[AccelerationStructure]:
    """Build one BLAS per ``(name, geometries)`` in batches under the scratch budget; compact them if asked.

    :param device: the device.
    :param items: ``(name, geometries)`` per BLAS.
    :param group: the allocation group the structures' buffers come from (rolled back by the caller on failure).
    :param compact: query compacted sizes and copy each BLAS that shrinks into a buffer of that size.
    :param stats: counters to add to.
    :param scratch_budget: the most scratch bytes one batch may use.
    :param flags: build flags (``vk.accel.BUILD_*``).
    """
    t0 = time.perf_counter()
    stats = stats or AccelStats()
    dev = device.context.logical
    pool = ScratchPool(device, budget=scratch_budget)
    bflags = flags | (vka.BUILD_ALLOW_COMPACTION if compact else 0)
    infos = [vka.BuildInfo(vka.BLAS, geoms, flags=bflags) for _name, geoms in items]
    sizes = [b.sizes(dev) for b in infos]
    out: list[AccelerationStructure] = []
    try:
        i = 0
        while i < len(items):
            batch: list[int] = []
            scratch_total = 0
            while i < len(items):
                need = _align(sizes[i][1], pool.alignment)
                if batch and scratch_total + need > scratch_budget:
                    break
                batch.append(i)
                scratch_total += need
                i += 1
            scratch = pool.get(scratch_total)
            stats.scratch_bytes = max(stats.scratch_bytes, scratch_total)
            built: list[AccelerationStructure] = []
            for j in batch:
                buf = group.create_buffer(sizes[j][0], AS_STORAGE_USAGE, name=f"blas:{items[j][0]}", category="accel",
                                          alignment=256)
                a = AccelerationStructure(device, items[j][0], vka.BLAS, buf, sizes[j][0])
                a.procedural = any(g.kind == vka.GEOMETRY_AABBS for g in items[j][1])
                group.adopt(a)
                built.append(a)
            query = vka.create_compacted_size_query(dev, len(batch)) if compact else None
            try:
                with one_shot(dev, device.context.command_pool, dev.queue) as cmd:
                    offset = 0
                    recs = []
                    for j, a in zip(batch, built):
                        recs.append((infos[j], a.handle, scratch.device_address + offset, None))
                        offset += _align(sizes[j][1], pool.alignment)
                    vka.cmd_build(dev, cmd, recs)
                    vka.cmd_build_barrier(cmd)
                    if query is not None:
                        vka.cmd_write_compacted_sizes(dev, cmd, [a.handle for a in built], query)
                compacted = vka.read_compacted_sizes(dev, query, len(batch)) if query is not None else None
            finally:
                if query is not None:
                    vka.destroy_query_pool(dev, query)
            stats.batches += 1
            before = sum(a.buffer.nbytes for a in built)
            stats.bytes_before_compaction += before
            if compacted is not None:
                built = _compact(device, group, built, compacted, stats)
            else:
                stats.bytes_after_compaction += before
            for j, a in zip(batch, built):
                stats.triangles += sum(g.primitive_count for g in items[j][1])
            stats.blas_built += len(built)
            out.extend(built)
    finally:
        device.context.lifetime.drain()
        pool.release()
    stats.build_seconds += time.perf_counter() - t0
    return out


def _compact(device: Device, group: AllocationGroup, built: list[AccelerationStructure], compacted: list[int],
             stats: AccelStats) -> list[AccelerationStructure]:
    """Copy each BLAS whose compacted size is smaller into a buffer of that size and free the original; a BLAS that
    would not shrink (lavapipe reports the full size) is kept as it is, so no copy and no transient doubling."""
    dev = device.context.logical
    out: list[AccelerationStructure] = list(built)
    pairs: list[tuple[int, AccelerationStructure, AccelerationStructure]] = []
    base = sum(a.buffer.nbytes for a in built)
    extra = 0
    for i, (a, csize) in enumerate(zip(built, compacted)):
        csize = max(int(csize), 256)
        if csize >= a.size:
            stats.per_blas.append((a.buffer.nbytes, a.buffer.nbytes))
            continue
        buf = group.create_buffer(csize, AS_STORAGE_USAGE, name=f"blas:{a.name}", category="accel", alignment=256)
        c = AccelerationStructure(device, a.name, vka.BLAS, buf, csize)
        c.procedural = a.procedural
        group.adopt(c)
        pairs.append((i, a, c))
        extra += c.buffer.nbytes
    # the batch's own peak: its originals plus the compact copies while both exist
    stats.transient_peak_bytes = max(stats.transient_peak_bytes, base + extra)
    if pairs:
        with one_shot(dev, device.context.command_pool, dev.queue) as cmd:
            for _i, a, c in pairs:
                vka.cmd_copy_compact(dev, cmd, a.handle, c.handle)
            vka.cmd_build_barrier(cmd)
    for i, a, c in pairs:
        stats.per_blas.append((a.buffer.nbytes, c.buffer.nbytes))
        out[i] = c
        a.destroy()
        group.buffers.remove(a)
        if a.buffer in group.buffers:
            group.buffers.remove(a.buffer)
    stats.bytes_after_compaction += sum(a.buffer.nbytes for a in out)
    return out


def build_aabb_blas(device: Device, aabb_buffer: Buffer, count: int, *, name: str = "aabbs", compact: bool = True,
                    group: AllocationGroup | None = None) -> AccelerationStructure:
    """Build a BLAS of ``count`` boxes (6 float32 each: min xyz, max xyz) stored in ``aabb_buffer``.

    :param device: the device.
    :param aabb_buffer: an ``accel_input|device_address`` buffer holding the boxes.
    :param count: number of boxes.
    :param name: a label for reprs and the leak report.
    :param compact: compact the BLAS when that shrinks it.
    :param group: an allocation group to allocate from (default: its own, rolled back on failure).
    """
    geom = vka.Geometry(vka.GEOMETRY_AABBS, count, aabb_address=aabb_buffer.device_address)
    own = group is None
    g = group or device.allocation_group()
    try:
        out = build_blases(device, [(name, [geom])], g, compact=compact)[0]
    except BaseException:
        if own:
            g.rollback()
        raise
    return out


__all__ = ["SCRATCH_BUDGET", "AccelStats", "ScratchPool", "build_aabb_blas", "build_blases", "geometries_for_mesh"]
