"""``prepare_meshes``: a batch of :class:`MeshSource` in, a list of :class:`PreparedMesh` out.

The batch is processed in chunks of about :data:`CHUNK_CORNERS` corners; the meshes of a chunk are concatenated
and every step runs as numpy passes over the whole chunk:

1. validate (vectorized counts/index/size checks, see :mod:`~vixen_assets.geometry.mesh_source`);
2. triangulate (:mod:`~vixen_assets.geometry.triangulate`: fan, concave faces ear-clipped), flip the winding of
   ``leftHanded`` meshes, drop hole faces;
3. normals: authored ones are flattened like any primvar, the others computed (:mod:`~vixen_assets.geometry.normals`);
4. flatten primvars and split vertices where faceVarying/uniform data differ (:mod:`~vixen_assets.geometry.primvars`);
5. reorder triangles so each GeomSubset is a contiguous index range (faces in no subset last);
6. pack interleaved vertices and uint16/uint32 indices (:mod:`~vixen_assets.geometry.packing`), one slice per mesh.

Python loops run per mesh only for bookkeeping (building the result objects, left-handed slices, subsets) and per
concave face for ear clipping. Content hashes are computed on a helper thread meanwhile. Set :data:`STAGE_TIMES`
to a dict to collect the time of each stage (``benchmarks/bench_prepare.py`` prints them).

A mesh's bytes depend on the other meshes of its chunk in two ways: the component count of an extra primvar is the
largest found in the batch, and the seam vertices of a point are ordered by a hash over every attribute that is
split (faceVarying or uniform) anywhere in the chunk (``tests/test_mesh_bytes.py`` found this when a smaller chunk
size changed the bytes of 10 of 30 meshes). So chunk boundaries are a function of the batch's order and sizes only:
the chunks are prepared on several threads where there are cores to spare (:func:`prepare_threads`), and meshes that
differ only in their material bindings are prepared once per chunk (:meth:`MeshSource.geometry_hash`), both without
changing any mesh's bytes.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.ma  # noqa: F401 - np.unique imports it on its first call (~20 ms inside the first load)

from vixen_assets.errors import ConfigError, FormatError

from vixen_assets.geometry.batch import Batch, build_batch, exclusive_cumsum, ranges
from vixen_assets.geometry.mesh_source import (
    DEFAULT_ATTRIBUTES,
    MeshSource,
    PrimvarData,
    check_attributes,
    check_shapes,
    check_topology,
)
from vixen_assets.geometry.normals import smooth_normals
from vixen_assets.geometry.packing import (
    FIXED_COMPONENTS,
    MAX_UINT16_VERTICES,
    PreparedMesh,
    Submesh,
    VertexLayout,
    build_layout,
)
from vixen_assets.geometry.primvars import (
    CLASS_OF,
    FACE_VARYING,
    UNIFORM,
    Flattened,
    VertexMap,
    flatten_attribute,
    representative_corners,
    split_vertices,
)
from vixen_assets.geometry.triangulate import triangulate

__all__ = ["prepare_meshes"]


def _normalize_attributes(attributes: Sequence[str]) -> tuple[str, ...]:
    attrs = tuple(dict.fromkeys(attributes))
    if "position" not in attrs:
        raise ConfigError("must include 'position'", option="attributes")
    return attrs


def _components(name: str, per_mesh: list[PrimvarData | None]) -> int:
    if name in FIXED_COMPONENTS:
        return FIXED_COMPONENTS[name]
    comps = [pv.components for pv in per_mesh if pv is not None]
    k = max(comps, default=1)
    if k > 4:
        raise FormatError(f"primvar has {k} components per element; at most 4 fit a vertex attribute", field=name)
    return k


def _group_triangles(batch: Batch, tri_count: np.ndarray):
    """Per-triangle submesh group (global id) and groups per mesh, or None when no mesh has subsets.

    Subset face indices are range-checked here in one vectorized pass (the error names the subset prim).
    """
    sources = batch.sources
    n_sub = np.fromiter((len(s.subsets) for s in sources), dtype=np.intp, count=len(sources))
    if not n_sub.any():
        return None
    n_groups = n_sub + 1
    group_start = exclusive_cumsum(n_groups)
    face_group = np.repeat(group_start + n_sub, batch.n_faces)  # default group: last of each mesh
    owners = [(i, s, sub) for i in np.flatnonzero(n_sub).tolist() for s, sub in enumerate(sources[i].subsets)]
    lens = np.fromiter((len(sub.indices) for _, _, sub in owners), dtype=np.intp, count=len(owners))
    if lens.any():
        mesh = np.fromiter((i for i, _, _ in owners), dtype=np.intp, count=len(owners))
        slot = np.fromiter((s for _, s, _ in owners), dtype=np.intp, count=len(owners))
        faces = np.concatenate([sub.indices for _, _, sub in owners], dtype=np.intp, casting="same_kind")
        bad = (faces < 0) | (faces >= np.repeat(batch.n_faces[mesh], lens))
        if bad.any():
            j = int(np.searchsorted(np.cumsum(lens), int(np.flatnonzero(bad)[0]), side="right"))
            i, _, sub = owners[j]
            src = sources[i]
            raise src.error(
                f"GeomSubset {sub.name!r}: face index out of range for {src.face_count} faces",
                "indices",
                prim_path=sub.prim_path or f"{src.prim_path}/{sub.name}",
            )
        faces += np.repeat(batch.face_start[mesh], lens)
        # the first subset that lists a face keeps it (materialBind subsets should not overlap, but may)
        np.minimum.at(face_group, faces, np.repeat(group_start[mesh] + slot, lens))
    return np.repeat(face_group, tri_count), n_groups, group_start


def _stable_order(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative int keys: LSD radix over 16-bit digits when the keys are badly out of order
    (numpy's stable sort of 16-bit ints is a radix sort), else timsort, which is near-linear on few runs."""
    n = len(keys)
    descents = int(np.count_nonzero(keys[1:] < keys[:-1])) if n > 1 else 0
    if descents * 64 < n:
        return np.argsort(keys, kind="stable")
    keys = keys - keys.min()
    order = np.arange(n, dtype=np.intp)
    top = int(keys.max())
    shift = 0
    while True:
        digit = ((keys[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
        shift += 16
        if top >> shift == 0:
            return order


#: When set to a dict, ``prepare_meshes`` adds the seconds spent in each stage to it (the benchmark prints them).
STAGE_TIMES: dict[str, float] | None = None


def _mark(stage: str, since: float) -> float:
    now = time.perf_counter()
    if STAGE_TIMES is not None:
        STAGE_TIMES[stage] = STAGE_TIMES.get(stage, 0.0) + now - since
    return now


#: Corners per internal chunk. Big batches are processed in chunks of about this many corners so that the
#: temporaries stay in cache and are reused (fresh memory costs ~0.4 ms/MB of page faults on a VM); measured best
#: between 2**17 and 2**19 on the 1M-triangle benchmark scene. A single larger mesh is its own chunk.
CHUNK_CORNERS = 1 << 18


#: Threads that prepare chunks of one batch at once; None: :func:`prepare_threads` decides from the core count.
PREPARE_THREADS: int | None = None


def prepare_threads() -> int:
    """Threads ``prepare_meshes`` uses: :data:`PREPARE_THREADS` when set, else ``VIXEN_PREPARE_THREADS`` from the
    environment, else one per core beyond the first two (up to 8): on 2 cores (lavapipe CI, where the caller's
    thread, the hasher and the uploader already share them) chunks are prepared one after the other."""
    if PREPARE_THREADS is not None:
        return max(1, PREPARE_THREADS)
    env = os.environ.get("VIXEN_PREPARE_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ConfigError(f"must be an integer, got {env!r}", option="VIXEN_PREPARE_THREADS") from None
    cores = os.cpu_count() or 1
    return 1 if cores < 4 else min(8, cores - 2)


def _chunks(sources: Sequence[MeshSource], limit: int):
    start, total = 0, 0
    for i, src in enumerate(sources):
        n = len(src.face_vertex_indices)
        if total and total + n > limit:
            yield start, i
            start, total = i, 0
        total += n
    if start < len(sources):
        yield start, len(sources)


def _hash_all(sources: Sequence[MeshSource], attrs: tuple[str, ...]) -> None:
    try:
        for src in sources:
            src.content_hash(attrs)
    except Exception:  # noqa: BLE001 - the caller's thread hashes again and raises with its own traceback
        return


def prepare_meshes(
    sources: Sequence[MeshSource],
    *,
    attributes: Sequence[str] = DEFAULT_ATTRIBUTES,
    validate: bool = True,
) -> list[PreparedMesh]:
    """Triangulate, flatten, split and pack a batch of meshes with vectorized passes over the whole batch.

    :param sources: the meshes (any number; larger batches amortize numpy's per-call overhead)
    :param attributes: vertex attributes in the output: ``position`` (required), ``normal``, then primvar names
        (``st`` and any other primvar read into the sources); see :mod:`~vixen_assets.geometry.packing`
    :param validate: check the sources first (vectorized; cheap). Unvalidated bad input can crash or produce garbage.
    :returns: one :class:`PreparedMesh` per source, in order; its ``vertices``/``indices`` are views into buffers
        shared by the meshes of an internal chunk
    :raises FormatError: naming the file, prim and field of the first malformed source
    :raises ValueError: when ``attributes`` lacks ``position`` or names a primvar with more than 4 components

    Content hashes (:meth:`MeshSource.content_hash`) not yet computed are computed on a helper thread while numpy
    works (``hashlib`` releases the GIL), so hashing costs little wall time on a multi-core machine.
    """
    attrs = _normalize_attributes(attributes)
    if not sources:
        return []
    if validate:
        for src in sources:
            check_shapes(src)
    comps: dict[str, int] = {"position": 3}
    for name in attrs:
        if name == "normal":
            comps[name] = 3
        elif name != "position":
            comps[name] = _components(name, [s.primvars.get(name) for s in sources])
    layout = build_layout(comps)
    hasher = None
    if len(sources) > 1:
        hasher = threading.Thread(target=_hash_all, args=(sources, attrs), daemon=True)
        hasher.start()
    out: list[PreparedMesh] = []
    try:
        spans = list(_chunks(sources, CHUNK_CORNERS))
        workers = min(prepare_threads(), len(spans))
        if workers > 1:
            # chunks are independent of each other (same boundaries, same bytes): numpy releases the GIL in its
            # kernels, so chunks prepared on several threads overlap where there are cores to spare
            def run(span: tuple[int, int]) -> list[PreparedMesh]:
                return _prepare_deduplicated(sources[span[0]:span[1]], attrs, layout, validate)

            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vixen-prepare") as pool:
                parts = list(pool.map(run, spans))
            for part in parts:
                out.extend(part)
        else:
            shared: dict[tuple[str, tuple[bool, ...]], PreparedMesh] = {}  # across the chunks (see _reuse_key)
            for a, b in spans:
                out.extend(_prepare_deduplicated(sources[a:b], attrs, layout, validate, shared))
    finally:
        if hasher is not None:
            t = time.perf_counter()
            hasher.join()
            _mark("wait for hashes", t)
    for mesh, src in zip(out, sources):
        mesh.content_hash = src.content_hash(attrs)
    return out


def _split_attributes(sources: Sequence[MeshSource], attrs: tuple[str, ...]) -> tuple[bool, ...]:
    """Per attribute of ``attrs``: whether some source of ``sources`` has it per corner or per face (``uniform`` or
    ``faceVarying``: :func:`~vixen_assets.geometry.primvars.flatten_attribute` gives it corner values, and the
    vertex split of every mesh of the chunk takes it into account)."""
    split = (UNIFORM, FACE_VARYING)
    out = []
    for name in attrs:
        if name == "position":
            out.append(False)
        elif name == "normal":
            out.append(any(s.normals is not None and CLASS_OF.get(s.normals_interpolation or "vertex") in split
                           for s in sources))
        else:
            out.append(any((pv := s.primvars.get(name)) is not None and CLASS_OF.get(pv.interpolation) in split
                           for s in sources))
    return tuple(out)


def _with_materials(pm: PreparedMesh, src: MeshSource) -> PreparedMesh:
    """``pm`` (the prepared arrays of a source of the same geometry) with ``src``'s submesh materials and prim."""
    mats = [sub.material_path for sub in src.subsets]
    subs = [Submesh(s.name, s.first_index, s.index_count, mats[k] if k < len(mats) else src.material_path)
            for k, s in enumerate(pm.submeshes)]
    return replace(pm, submeshes=subs, prim_path=src.prim_path)


def _prepare_deduplicated(
    sources: Sequence[MeshSource], attrs: tuple[str, ...], layout: VertexLayout, validate: bool,
    shared: dict[tuple[str, tuple[bool, ...]], PreparedMesh] | None = None,
) -> list[PreparedMesh]:
    """:func:`_prepare_chunk` of the distinct geometries of a chunk (:meth:`MeshSource.geometry_hash`); sources
    that differ only in material bindings (an asset referenced per placement with its own copy of its materials)
    share the arrays of the first one and get their own submesh materials.

    A mesh's bytes depend on which attributes are split (faceVarying or uniform) anywhere in its chunk (they take
    part in ordering its seam vertices), so the chunk boundaries stay those of the whole list and duplicates are
    only dropped inside a chunk: the set of geometries, and so every mesh's bytes, is the same as without it.
    ``shared`` (kept over the chunks of one batch) also reuses a geometry prepared by an earlier chunk, keyed by
    its geometry hash and the attributes split in its chunk (the same bytes it would get here): only when the
    geometries left to prepare split the same attributes as the whole chunk, else the chunk prepares all its own.
    """
    if validate or not sources or (len(sources) < 2 and shared is None):
        return _prepare_chunk(sources, attrs, layout, validate)
    first: dict[str, int] = {}
    rep = [first.setdefault(src.geometry_hash(attrs), i) for i, src in enumerate(sources)]
    reused: dict[int, PreparedMesh] = {}
    todo = list(first.values())
    if shared is not None:
        signature = _split_attributes(sources, attrs)
        hits = {i: shared[(h, signature)] for h, i in first.items() if (h, signature) in shared}
        rest = [i for i in todo if i not in hits]
        if hits and (not rest or _split_attributes([sources[i] for i in rest], attrs) == signature):
            reused, todo = hits, rest
    if len(todo) == len(sources):
        prepared = _prepare_chunk(sources, attrs, layout, validate)
        done = dict(enumerate(prepared))
    else:
        done = dict(zip(todo, _prepare_chunk([sources[i] for i in todo], attrs, layout, validate))) if todo else {}
    if shared is not None:
        signature = _split_attributes(sources, attrs)
        for i, pm in done.items():
            shared.setdefault((sources[i].geometry_hash(attrs), signature), pm)
    out = []
    for i, src in enumerate(sources):
        r = rep[i]
        if r in reused:
            out.append(_with_materials(reused[r], src))
            continue
        pm = done[r]
        if r != i:
            pm = _with_materials(pm, src)
        out.append(pm)
    return out


def _prepare_chunk(
    sources: Sequence[MeshSource], attrs: tuple[str, ...], layout: VertexLayout, validate: bool
) -> list[PreparedMesh]:
    t = time.perf_counter()
    batch = build_batch_checked(sources, attrs, validate)
    m = batch.count
    t = _mark("concatenate + validate", t)

    # -- triangulate ---------------------------------------------------------------------------------------------
    need_normals = "normal" in attrs and any(s.normals is None for s in sources)
    tri = triangulate(batch.points, batch.point_index, batch.counts, face_normals=need_normals)
    corners = tri.corners
    n_tris = batch.n_corners - 2 * batch.n_faces
    tri_start = exclusive_cumsum(n_tris)
    face_normals = tri.face_normals
    for i, src in enumerate(sources):
        if src.left_handed and n_tris[i]:
            a, b = int(tri_start[i]), int(tri_start[i] + n_tris[i])
            corners[a:b, 1:] = corners[a:b, :0:-1].copy()
            fa, fb = int(batch.face_start[i]), int(batch.face_start[i] + batch.n_faces[i])
            if face_normals is not None:
                face_normals[:, fa:fb] *= -1
    tri_count = tri.tri_count
    holes = [i for i, s in enumerate(sources) if s.hole_indices is not None and len(s.hole_indices)]
    if holes:
        face_keep = np.ones(len(batch.counts), dtype=bool)
        for i in holes:
            face_keep[np.asarray(sources[i].hole_indices, dtype=np.intp) + batch.face_start[i]] = False
        if face_normals is not None:
            face_normals[:, ~face_keep] = 0  # holes do not shade their neighbours
        corners = corners[np.repeat(face_keep, tri_count)]
        tri_count = np.where(face_keep, tri_count, 0)
        total = np.concatenate([[0], np.cumsum(tri_count)])
        n_tris = total[batch.face_start + batch.n_faces] - total[batch.face_start]
        tri_start = exclusive_cumsum(n_tris)
    t = _mark("triangulate", t)

    # -- attributes ----------------------------------------------------------------------------------------------
    flat: dict[str, Flattened] = {}
    for name, k in zip(layout.names, layout.components):
        if name == "normal":
            flat[name] = _flatten_normals(batch, face_normals)
            t = _mark("normals", t)
        elif name != "position":
            flat[name] = flatten_attribute(batch, [s.primvars.get(name) for s in sources], k, f"primvars:{name}")
            t = _mark("primvars", t)
    split = [f for f in flat.values() if f.corner_values is not None]
    split_cols = [f.corner_values for f in split]
    if split_cols:
        rep = representative_corners(batch)
        for f in flat.values():
            if f.corner_values is not None:  # per-point rows of split meshes come from each point's corner
                if len(f.split_meshes) == m:
                    f.point_values = np.take(f.corner_values, rep, axis=0)
                else:
                    rows = batch.point_ranges(f.split_meshes)
                    f.point_values[rows] = np.take(f.corner_values, rep[rows], axis=0)
        corner_sets = [None if len(f.split_meshes) == m else batch.corner_ranges(f.split_meshes) for f in split]
        vmap = split_vertices(batch, split_cols, rep, corner_sets)
    else:
        vmap = VertexMap(batch.local_index, batch.n_points, batch.point_start, None, np.zeros(0, np.intp),
                         np.zeros(0, np.intp), None)
    t = _mark("split vertices", t)

    # -- vertices ------------------------------------------------------------------------------------------------
    # Interleave per point first, then gather whole 32-byte rows per vertex (faster than a gather per attribute),
    # then give the split-off vertices their own corner values.
    n_v = int(vmap.n_vertices.sum())
    pbuf = np.empty((batch.total_points, layout.stride // 4), dtype=np.float32)
    for name, k, offset in zip(layout.names, layout.components, layout.offsets):
        pbuf[:, offset // 4 : offset // 4 + k] = batch.points if name == "position" else flat[name].point_values
    if vmap.vertex_point is None:
        buf = pbuf
    else:
        buf = np.take(pbuf, vmap.vertex_point, axis=0)
        del pbuf
        for name, k, offset in zip(layout.names, layout.components, layout.offsets):
            seam_values = None if name == "position" else flat[name].corner_values
            if seam_values is None or not len(vmap.seam_vertex):
                continue
            seam_vertex, seam_corner = vmap.seam_vertex, vmap.seam_corner
            split = flat[name].split_meshes
            if len(split) != m:
                # a seam made by *another* attribute of a mesh whose values here are per point: its new
                # vertices keep their point's value (set above); the corner rows of such meshes are zeros
                is_split = np.zeros(m, dtype=bool)
                is_split[split] = True
                mesh_of = np.searchsorted(batch.corner_start, seam_corner, side="right") - 1
                keep = is_split[mesh_of]
                seam_vertex, seam_corner = seam_vertex[keep], seam_corner[keep]
            buf[seam_vertex, offset // 4 : offset // 4 + k] = np.take(seam_values, seam_corner, axis=0)
    vertices = buf.view(layout.dtype).reshape(n_v)
    t = _mark("pack vertices", t)

    # -- indices and submeshes -----------------------------------------------------------------------------------
    # corner -> local vertex, already in the index dtype, so one gather makes the (T, 3) index buffer
    small = vmap.n_vertices <= MAX_UINT16_VERTICES
    all_small = bool(small.all())
    corner_vertex = vmap.corner_vertex.astype(np.uint16) if all_small else vmap.corner_vertex.view(np.uint32)
    tri_index = np.take(corner_vertex, corners)
    groups = None
    if any(s.subsets for s in sources):
        groups = _group_triangles(batch, tri_count)
    group_counts = None
    if groups is not None:
        tri_group, n_groups, _ = groups
        unsorted = np.flatnonzero(tri_group[1:] < tri_group[:-1])
        if len(unsorted):
            meshes = np.unique(np.searchsorted(tri_start, unsorted + 1, side="right") - 1)
            sel = ranges(tri_start[meshes], n_tris[meshes])
            order = _stable_order(tri_group[sel])
            tri_index[sel] = tri_index[sel[order]]
        group_counts = np.bincount(tri_group, minlength=int(n_groups.sum()))
    t = _mark("indices + submeshes", t)

    # -- bounds --------------------------------------------------------------------------------------------------
    lo = np.zeros((m, 3), dtype=np.float32)
    hi = np.zeros((m, 3), dtype=np.float32)
    has_points = batch.n_points > 0
    if has_points.any():
        starts = batch.point_start[has_points]
        lo[has_points] = np.minimum.reduceat(batch.points, starts, axis=0)
        hi[has_points] = np.maximum.reduceat(batch.points, starts, axis=0)

    # -- results -------------------------------------------------------------------------------------------------
    layout_dict = layout.as_dict()
    out: list[PreparedMesh] = []
    u16, u32 = np.dtype(np.uint16), np.dtype(np.uint32)
    n_vertices = vmap.n_vertices.tolist()
    v_starts = vmap.vertex_start.tolist()
    t_starts = tri_start.tolist()
    t_counts = n_tris.tolist()
    smalls = small.tolist()
    stride = layout.stride
    lo_rows, hi_rows = list(lo), list(hi)
    submeshes = _all_submeshes(sources, groups, group_counts, t_counts)
    for i, src in enumerate(sources):
        nv, nt, t0, v0 = n_vertices[i], t_counts[i], t_starts[i], v_starts[i]
        indices = tri_index[t0 : t0 + nt].reshape(-1)
        if smalls[i] and not all_small:
            indices = indices.astype(np.uint16)
        out.append(
            PreparedMesh(
                vertices=vertices[v0 : v0 + nv],
                indices=indices,
                index_dtype=u16 if smalls[i] else u32,
                vertex_count=nv,
                index_count=3 * nt,
                layout=layout_dict,
                submeshes=submeshes[i],
                bounds=(lo_rows[i], hi_rows[i]),
                triangle_count=nt,
                content_hash="",
                prim_path=src.prim_path,
                stride=stride,
            )
        )
    _mark("bounds + results", t)
    return out


def _all_submeshes(sources, groups, group_counts, n_tris: list[int]) -> list[list[Submesh]]:
    if groups is None:
        return [[Submesh("", 0, 3 * nt, s.material_path)] if nt else [] for s, nt in zip(sources, n_tris)]
    _, n_groups, group_start = groups
    counts = group_counts.tolist()
    starts = group_start.tolist()
    out = []
    for i, src in enumerate(sources):
        nt = n_tris[i]
        if not src.subsets:
            out.append([Submesh("", 0, 3 * nt, src.material_path)] if nt else [])
            continue
        g0 = starts[i]
        mesh_out = []
        first = 0
        for sub, c in zip(src.subsets, counts[g0 : g0 + len(src.subsets)]):
            mesh_out.append(Submesh(sub.name, 3 * first, 3 * c, sub.material_path))
            first += c
        rest = counts[g0 + len(src.subsets)]
        if rest:
            mesh_out.append(Submesh("", 3 * first, 3 * rest, src.material_path))
        out.append(mesh_out)
    return out


def _flatten_normals(batch: Batch, face_normals: np.ndarray) -> Flattened:
    per_mesh = [s.normals_primvar() for s in batch.sources]
    missing = [i for i, pv in enumerate(per_mesh) if pv is None]
    computed = None
    if missing:
        corners = None if len(missing) == batch.count else batch.corner_ranges(np.asarray(missing, dtype=np.intp))
        computed = smooth_normals(face_normals, batch.corner_face(), batch.point_index, batch.total_points, corners)
    return flatten_attribute(batch, per_mesh, 3, "normals", fallback=computed)


def build_batch_checked(sources: Sequence[MeshSource], attrs: tuple[str, ...], validate: bool) -> Batch:
    """Concatenate ``sources`` (validating first when asked) into a :class:`Batch`."""
    batch = build_batch(sources)
    if validate:
        check_topology(
            sources,
            batch.counts,
            batch.local_index,
            batch.n_faces,
            batch.n_corners,
            batch.n_points,
            face_sets=False,  # subset indices are checked vectorized in _group_triangles
        )
        for src in sources:
            check_attributes(src, attrs, index_ranges=False)
    return batch
