"""Ray-tracing acceleration structures: a BLAS per unique mesh (cached), TLAS over instances, compaction, refit.

- ``AccelerationStructureCacher`` builds one bottom-level structure per unique ``GpuMesh`` (triangle geometry read
  by device address straight from the mesh arenas, opaque, one geometry per submesh), deduplicated and refcounted
  like every cacher. Builds are batched into one command buffer; scratch memory comes from a reusable scratch
  buffer under a scratch budget (256 MiB by default, nvpro's cap): larger sets are split into several batches.
  With compaction (default) the compacted sizes are queried, compact copies made and the originals freed; the
  bytes saved and the transient peak (original and compact copies coexisting) are recorded in ``stats``.
- ``build_tlas`` builds a top-level structure over instances (custom index = instance index); ``Tlas.refit``
  updates it in place when transforms change.
- ``build_aabb_blas`` builds a BLAS of axis-aligned boxes (``VK_GEOMETRY_TYPE_AABBS_KHR``), used for voxels.

A failure in the middle of a batch (budget, device error) frees everything that batch allocated and leaves
previously built structures intact: builds run inside an allocation group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import VixenError
from ..memory.group import AllocationGroup
from ..memory.resource import TrackedResource
from ..vk import accel as vka
from ..vk.commands import one_shot
from .base import TypedCacher

SCRATCH_BUDGET = 256 << 20
AS_STORAGE_USAGE = "accel_storage|device_address"
SCRATCH_USAGE = "storage|device_address"
INPUT_USAGE = "accel_input|device_address|storage"


class AccelerationStructure(TrackedResource):
    """A BLAS or TLAS: its ``VkAccelerationStructureKHR``, the buffer it lives in, its device address."""

    def __init__(self, device: Any, name: str, kind: int, buffer: Any, size: int) -> None:
        """Create the structure over ``size`` bytes of ``buffer`` (build it afterwards)."""
        self.kind = kind
        #: True for a BLAS of boxes (AABB geometry): a ray-tracing pipeline needs a procedural hit group for it
        self.procedural = False
        self.buffer = buffer
        self.size = size
        self.handle = vka.create_as(device.logical, buffer.handle, buffer.offset, size, kind)
        self.device_address = vka.as_address(device.logical, self.handle)
        self.extra: dict[str, Any] = {}
        self._track(device, name)

    @property
    def nbytes(self) -> int:
        """Bytes of the backing buffer."""
        return self.buffer.nbytes

    def _release(self) -> None:
        if self.device.logical.handle is not None:
            vka.destroy_as(self.device.logical, self.handle)
        self.buffer.destroy()

    def __repr__(self) -> str:
        kind = "BLAS" if self.kind == vka.BLAS else "TLAS"
        return f'<{kind} "{self.name}" {self.size} B>'


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


def _geometries_for_mesh(mesh: Any) -> list[vka.Geometry]:
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

    def __init__(self, device: Any, *, budget: int = SCRATCH_BUDGET) -> None:
        """Start empty."""
        self.device = device
        self.budget = budget
        self.alignment = max(256, vka.as_properties(device.logical)["min_scratch_alignment"])
        self.buffer: Any = None

    def get(self, nbytes: int) -> Any:
        """A scratch buffer of at least ``nbytes`` (reused when big enough)."""
        if nbytes > self.budget:
            raise VixenError(f"acceleration-structure build needs {nbytes} bytes of scratch, over the "
                             f"{self.budget}-byte scratch budget")
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


def build_blases(device: Any, items: Sequence[tuple[str, list[vka.Geometry]]], group: AllocationGroup, *,
                 compact: bool = True, stats: AccelStats | None = None, scratch_budget: int = SCRATCH_BUDGET,
                 flags: int = vka.BUILD_PREFER_FAST_TRACE) -> list[AccelerationStructure]:
    """Build one BLAS per ``(name, geometries)`` in batches under the scratch budget; compact them if asked."""
    import time

    t0 = time.perf_counter()
    stats = stats or AccelStats()
    dev = device.logical
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
                with one_shot(dev, device.command_pool, dev.queue) as cmd:
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
        device.lifetime.drain()
        pool.release()
    stats.build_seconds += time.perf_counter() - t0
    return out


def _compact(device: Any, group: AllocationGroup, built: list[AccelerationStructure], compacted: list[int],
             stats: AccelStats) -> list[AccelerationStructure]:
    """Copy each BLAS whose compacted size is smaller into a buffer of that size and free the original; a BLAS that
    would not shrink (lavapipe reports the full size) is kept as it is, so no copy and no transient doubling."""
    dev = device.logical
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
        with one_shot(dev, device.command_pool, dev.queue) as cmd:
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


class AccelerationStructureCacher(TypedCacher[Any, AccelerationStructure]):
    """One compacted BLAS per unique mesh (sources are ``GpuMesh`` entries; keyed by the mesh's content key)."""

    name = "accel"
    compact = True

    def __init__(self, device: Any, *, plugin_manager: Any = None) -> None:
        """Attach to ``device``; acceleration structures must be supported."""
        if not device.features.get("acceleration_structure"):
            raise VixenError(f"{device.name} does not support VK_KHR_acceleration_structure")
        super().__init__(device, plugin_manager=plugin_manager)
        self.accel_stats = AccelStats()

    def key_for(self, source: Any) -> str:
        """The BLAS key: the mesh's content key plus the build options."""
        return f"blas:{source.key}:{int(self.compact)}"

    def build(self, sources: Sequence[Any], group: AllocationGroup) -> list[AccelerationStructure]:
        """Build BLASes for the meshes in batches."""
        items = [(m.prim_path or m.key[:12], _geometries_for_mesh(m)) for m in sources]
        empty = [m for m, (_n, g) in zip(sources, items) if not g]
        if empty:
            raise VixenError(f"mesh {empty[0].prim_path or empty[0].key} has no triangles: cannot build a BLAS")
        return build_blases(self.device, items, group, compact=self.compact, stats=self.accel_stats)

    def entry_nbytes(self, entry: AccelerationStructure) -> int:
        """Bytes of the structure's buffer."""
        return entry.nbytes

    def destroy_entry(self, entry: AccelerationStructure) -> None:
        """Destroy the structure."""
        entry.destroy()


def accel_cacher(device: Any) -> AccelerationStructureCacher:
    """The device's acceleration-structure cacher (created on first use)."""
    return AccelerationStructureCacher.for_device(device)


class Tlas:
    """A top-level acceleration structure over instances; ``refit(transforms)`` updates it in place."""

    def __init__(self, device: Any, blas: Sequence[AccelerationStructure], transforms: np.ndarray, *,
                 custom_index: np.ndarray | None = None, name: str = "tlas") -> None:
        """Build it over ``blas[i]`` placed by ``transforms[i]`` (column-vector 4x4)."""
        self.device = device
        self.name = name
        n = len(blas)
        self.count = n
        self.custom_index = np.arange(n, dtype=np.uint32) if custom_index is None else np.asarray(custom_index, np.uint32)
        self._addresses = np.array([b.device_address for b in blas], dtype=np.uint64)
        #: hit group per record for ray-tracing pipelines: 0 triangles, 1 boxes (``trace_rays(backend="pipeline")``)
        self.sbt_offset = np.array([1 if getattr(b, "procedural", False) else 0 for b in blas], dtype=np.uint32)
        self.structure: AccelerationStructure | None = None
        self.instance_buffer: Any = None
        self._scratch: Any = None
        self._info: vka.BuildInfo | None = None
        with AllocationGroup(device) as group:
            records = vka.instance_records(np.asarray(transforms, np.float32).reshape(n, 4, 4), self._addresses,
                                           self.custom_index, sbt_offset=self.sbt_offset)
            self.instance_buffer = group.create_buffer(max(records.nbytes, 64), INPUT_USAGE, name=f"{name}-instances",
                                                       category="accel", alignment=16, strategy="auto")
            if n:
                device.upload(self.instance_buffer, records)
            geom = vka.Geometry(vka.GEOMETRY_INSTANCES, n, instance_address=self.instance_buffer.device_address)
            self._info = vka.BuildInfo(vka.TLAS, [geom],
                                       flags=vka.BUILD_ALLOW_UPDATE | vka.BUILD_PREFER_FAST_TRACE)
            size, build_scratch, update_scratch = self._info.sizes(device.logical)
            buf = group.create_buffer(size, AS_STORAGE_USAGE, name=name, category="accel", alignment=256)
            self.structure = AccelerationStructure(device, name, vka.TLAS, buf, size)
            group.adopt(self.structure)
            align = max(256, vka.as_properties(device.logical)["min_scratch_alignment"])
            self._scratch = group.create_buffer(max(build_scratch, update_scratch, 256), SCRATCH_USAGE,
                                                name=f"{name}-scratch", category="accel-scratch", alignment=align)
            self._build(vka.MODE_BUILD)
        device.registry.add(self)

    def _build(self, mode: int) -> None:
        dev = self.device.logical
        assert self._info is not None and self.structure is not None
        self._info.info.mode = mode
        src = self.structure.handle if mode == vka.MODE_UPDATE else None
        with one_shot(dev, self.device.command_pool, dev.queue) as cmd:
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
    def nbytes(self) -> int:
        """Bytes of the TLAS, its instance buffer and its scratch."""
        return sum(b.nbytes for b in (self.structure, self.instance_buffer, self._scratch) if b is not None)

    def refit(self, transforms: np.ndarray) -> None:
        """Write new instance transforms and update the TLAS in place (same instances, same BLASes)."""
        t = np.asarray(transforms, np.float32).reshape(self.count, 4, 4)
        records = vka.instance_records(t, self._addresses, self.custom_index, sbt_offset=self.sbt_offset)
        self.device.upload(self.instance_buffer, records)
        self._build(vka.MODE_UPDATE)

    def rebuild(self, transforms: np.ndarray) -> None:
        """Write new transforms and rebuild the TLAS from scratch (the reference for refit)."""
        t = np.asarray(transforms, np.float32).reshape(self.count, 4, 4)
        self.device.upload(self.instance_buffer, vka.instance_records(t, self._addresses, self.custom_index,
                                                                       sbt_offset=self.sbt_offset))
        self._build(vka.MODE_BUILD)

    def destroy(self) -> None:
        """Destroy the TLAS, its instance buffer and scratch; safe to call twice."""
        for obj in (self.structure, self.instance_buffer, self._scratch):
            if obj is not None:
                obj.destroy()
        self.structure = self.instance_buffer = self._scratch = None
        self.device.registry.remove(self)

    def _destroy_now(self) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"<Tlas {self.name!r} instances={self.count}>"


def build_aabb_blas(device: Any, aabb_buffer: Any, count: int, *, name: str = "aabbs", compact: bool = True,
                    group: AllocationGroup | None = None) -> AccelerationStructure:
    """Build a BLAS of ``count`` boxes (6 float32 each: min xyz, max xyz) stored in ``aabb_buffer``."""
    geom = vka.Geometry(vka.GEOMETRY_AABBS, count, aabb_address=aabb_buffer.device_address)
    own = group is None
    g = group or AllocationGroup(device)
    try:
        out = build_blases(device, [(name, [geom])], g, compact=compact)[0]
    except BaseException:
        if own:
            g.rollback()
        raise
    return out
