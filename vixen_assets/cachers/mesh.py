"""``MeshCacher``: ``UsdGeomMesh`` prims to GPU vertex and index buffers (a built-in plugin).

Reading is per prim (attribute reads only); preparation (triangulation, normals, primvar flattening, splitting,
packing) runs vectorized over all meshes of a batch (``vixen_assets.geometry``). Each mesh's vertices and indices
are ranges of shared arena ``VkBuffer``\\ s (small meshes never get a ``VkBuffer`` each, as Hydra Storm aggregates
its buffers); large ones get their own. The vertex layout is documented in ``vixen_assets.geometry.packing``:
position float32x3, normal float32x3, st float32x2 (stride 32), extra primvars appended.

``GpuMesh.vertex_offset`` is the byte offset of the first vertex inside ``vertex_buffer.handle`` (what
``vkCmdBindVertexBuffers`` takes); ``first_index`` counts indices from the start of ``index_buffer.handle`` (what
``vkCmdDrawIndexed`` takes, with ``vkCmdBindIndexBuffer`` at offset 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import FormatError, SkippedPrimWarning
from ..geometry.mesh_source import MeshSource, validate_distinct_sources, validate_sources
from ..geometry.packing import Submesh
from ..geometry.pipeline import PreparePipeline
from ..geometry.prepare import prepare_meshes, prepare_threads
from ..geometry.sizing import mesh_gpu_bytes, source_triangles
from ..geometry.usd_mesh import read_mesh_source, read_mesh_sources
from ..hookspecs import hookimpl
from ..memory.buffers import Buffer
from ..memory.group import AllocationGroup
from .base import LoadContext, TypedCacher

#: Buffer usage of mesh data: vertex/index input, storage reads, device address and BLAS build input.
MESH_USAGE = "vertex|index|storage|device_address|accel_input"


@dataclass(eq=False)
class GpuMesh:
    """One unique mesh on the GPU (shared by every instance that references the same data)."""

    key: str
    vertex_buffer: Buffer
    index_buffer: Buffer
    vertex_offset: int
    first_index: int
    index_count: int
    vertex_count: int
    index_dtype: np.dtype
    layout: dict[str, tuple[int, str, int]]
    submeshes: list[Submesh]
    bounds: tuple[np.ndarray, np.ndarray]
    triangle_count: int
    stride: int
    prim_path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: entries sharing these two buffers (built in one batch from the same prepared bytes), one list object for
    #: all of them: the last one destroyed destroys the buffers (see ``MeshCacher.destroy_entry``)
    _buffer_users: list[int] | None = field(default=None, repr=False)
    #: False for an entry that reuses another entry's buffers: the cache counts those bytes once (see entry_nbytes)
    _owns_buffers: bool = field(default=True, repr=False)

    @property
    def nbytes(self) -> int:
        """Bytes of vertex and index data."""
        return self.vertex_buffer.size + self.index_buffer.size

    @property
    def vertex_address(self) -> int:
        """GPU address of the first vertex (for acceleration-structure builds)."""
        return self.vertex_buffer.device_address

    @property
    def index_address(self) -> int:
        """GPU address of the first index."""
        return self.index_buffer.device_address

    def __repr__(self) -> str:
        return f"<GpuMesh {self.prim_path or self.key[:12]} {self.triangle_count} tris {self.vertex_count} verts>"


class MeshCacher(TypedCacher[MeshSource, GpuMesh]):
    """Caches ``UsdGeomMesh`` data on the GPU, deduplicated by content."""

    name = "mesh"
    prim_types = ("Mesh",)
    attributes: tuple[str, ...] = ("position", "normal", "st")
    _pipeline: tuple[LoadContext, PreparePipeline] | None = None  # (the load it serves, the pipeline)
    _ahead_bytes = 0  # GPU bytes (from counts) of the sources fed to the pipeline

    def read_prim(self, prim: Any, context: LoadContext) -> MeshSource:
        """Read the mesh's arrays and check them (FormatError names file, prim and field)."""
        primvars = tuple(a for a in self.attributes if a not in ("position", "normal"))
        return read_mesh_source(prim, context.time, primvars=primvars, validate=False)  # see check_sources

    def read_prims(self, prims: Sequence[Any], context: LoadContext) -> list[MeshSource | Exception]:
        """Read many prims at once (material bindings resolved in one batched call); per prim its source or the
        :class:`FormatError` reading it raised."""
        primvars = tuple(a for a in self.attributes if a not in ("position", "normal"))
        return list(read_mesh_sources(prims, context.time, primvars=primvars))

    def prepare_ahead(self, sources: Sequence[MeshSource], context: LoadContext) -> None:
        """Start preparing ``sources`` (the next ones the loader read, in order) on a worker thread while it reads
        on; :meth:`build` uses the results when it is handed exactly those sources (see
        :mod:`~vixen_assets.geometry.pipeline`). Only where there are cores to spare (``prepare_threads() > 1``)."""
        pipeline = self._pipeline
        if pipeline is not None and pipeline[0] is not context:  # left over from a load that failed before build
            pipeline[1].close()
            pipeline = self._pipeline = None
        if pipeline is None and prepare_threads() < 2:
            return  # no cores to spare (see below): nothing to size
        # the size pre-flight before any preparation: meshes that together could never fit the budget are left to
        # build(), which refuses them before preparing
        ahead = sum(mesh_gpu_bytes(src, self.attributes) for src in sources)
        if pipeline is not None:
            ahead += self._ahead_bytes
        if ahead > self.device.budget.limit:
            return
        self._ahead_bytes = ahead
        if pipeline is None:
            try:
                pipeline = self._pipeline = (context, PreparePipeline(self.attributes, self.__contains__))
            except ValueError:  # attributes of batch-dependent component counts: prepare at build time
                return
        pipeline[1].feed(sources)

    def clear(self) -> None:
        """Destroy every entry, referenced or not (device close), and stop a pipeline left by a failed load."""
        if self._pipeline is not None:
            self._pipeline[1].close()
            self._pipeline = None
        super().clear()

    def check_sources(self, sources: Sequence[MeshSource]) -> list[Exception | None]:
        """One vectorized check over the whole batch (only when it fails, mesh by mesh to find the bad ones); then,
        per mesh, a :class:`SkippedPrimWarning` for a mesh without faces and a :class:`FormatError` naming the field
        for non-finite points or normals."""
        out: list[Exception | None] = [None] * len(sources)
        try:
            validate_distinct_sources(sources, attributes=self.attributes)  # each distinct geometry once
        except FormatError:
            for i, src in enumerate(sources):
                try:
                    validate_sources([src], attributes=self.attributes)
                except FormatError as exc:
                    out[i] = exc
        clean: dict[str, bool] = {}  # geometry hash -> its content passed (a geometry placed again passes again)
        for i, src in enumerate(sources):
            if out[i] is None:
                h = src.geometry_hash(self.attributes)  # remembered (the key below hashes on from it)
                if clean.get(h):
                    continue
                out[i] = self._check_content(src)
                if out[i] is None:
                    clean[h] = True
        return out

    def _check_content(self, src: MeshSource) -> Exception | None:
        if source_triangles(src) == 0:
            return SkippedPrimWarning(f"mesh has no faces ({src.face_count} faces, {src.point_count} points): "
                                      "skipped", path=src.layer_path or None, prim_path=src.prim_path or None,
                                      field="faceVertexCounts")
        checks = [("points", src.points)]
        if src.normals is not None and "normal" in self.attributes:
            checks.append(("normals", src.normals))
        for fld, values in checks:
            if np.isfinite(values.sum()):  # a NaN or an infinity makes the sum one: all finite (the common case)
                continue
            finite = np.isfinite(values)
            if not finite.all():
                bad = int(np.count_nonzero(~finite.all(axis=-1))) if finite.ndim > 1 else int((~finite).sum())
                return src.error(f"{bad} of {len(values)} values are not finite (NaN or infinity)", field=fld)
        return None

    def key_for(self, source: MeshSource) -> str:
        """Content hash of the arrays and the requested attributes."""
        return source.content_hash(self.attributes)

    def build(self, sources: Sequence[MeshSource], group: AllocationGroup) -> list[GpuMesh]:
        """Prepare all sources in one vectorized pass, allocate arena ranges, enqueue the uploads."""
        estimate = sum(mesh_gpu_bytes(src, self.attributes) for src in sources)
        what = sources[0].prim_path if len(sources) == 1 else f"{len(sources)} meshes from {sources[0].prim_path}"
        with self.preflight(estimate, what):  # the budget before preparing (counts x layout)
            prepared = None
            if self._pipeline is not None:
                pipeline, self._pipeline = self._pipeline[1], None
                prepared = pipeline.take(sources, self.attributes)
            if prepared is None:
                prepared = prepare_meshes(sources, attributes=self.attributes, validate=False)
        up = self.device.uploader
        out = []
        # sources of one geometry (an asset placed with its own copy of its materials) come back from preparation
        # as views of the same arrays: their entries share one pair of buffers, created and uploaded once
        made: dict[tuple[int, int, int, int], tuple[Buffer, Buffer, list[int]]] = {}
        for src, pm in zip(sources, prepared):
            same = (pm.vertices.__array_interface__["data"][0], pm.vertices.nbytes,
                    pm.indices.__array_interface__["data"][0], pm.indices.nbytes)
            got = made.get(same) if pm.vertices.nbytes and pm.indices.nbytes else None
            if got is None:
                label = src.prim_path or pm.content_hash[:12]
                vb = group.create_buffer(max(pm.vertices.nbytes, 4), MESH_USAGE, name=f"vb:{label}",
                                         category=self.name)
                ib = group.create_buffer(max(pm.indices.nbytes, 4), MESH_USAGE, name=f"ib:{label}",
                                         category=self.name)
                if pm.vertices.nbytes:
                    up.enqueue(vb, pm.vertices)
                if pm.indices.nbytes:
                    up.enqueue(ib, pm.indices)
                users = [1]
                if pm.vertices.nbytes and pm.indices.nbytes:
                    made[same] = (vb, ib, users)
            else:
                vb, ib, users = got
                users[0] += 1
            owns = got is None
            out.append(GpuMesh(
                key=pm.content_hash, vertex_buffer=vb, index_buffer=ib, vertex_offset=vb.offset,
                first_index=ib.offset // pm.indices.itemsize, index_count=pm.index_count, vertex_count=pm.vertex_count,
                index_dtype=pm.index_dtype, layout=pm.layout, submeshes=list(pm.submeshes), bounds=pm.bounds,
                triangle_count=pm.triangle_count, stride=pm.stride or pm.vertices.itemsize, prim_path=src.prim_path,
                _buffer_users=users, _owns_buffers=owns))
        return out

    def entry_nbytes(self, entry: GpuMesh) -> int:
        """Vertex plus index bytes; 0 for an entry whose buffers another entry of the same geometry created (the
        bytes are created, uploaded and counted once: ``SceneStats.bytes_uploaded`` and the cache's size stay what the
        GPU holds while the entries live together, as they are built and evicted)."""
        return entry.nbytes if entry._owns_buffers else 0

    def destroy_entry(self, entry: GpuMesh) -> None:
        """Destroy both buffers (deferred while the GPU uses them); buffers shared with other entries of the same
        geometry only once the last of them goes."""
        users = entry._buffer_users
        if users is not None:
            users[0] -= 1
            if users[0] > 0:
                return
        entry.vertex_buffer.destroy()
        entry.index_buffer.destroy()


@hookimpl
def vixen_register_cachers(registry: Any) -> None:
    """Register the built-in mesh cacher."""
    registry.register(MeshCacher)
