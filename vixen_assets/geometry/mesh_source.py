"""The arrays of one UsdGeom.Mesh as read from USD, before any preparation, and their validation.

A :class:`MeshSource` is plain data (numpy arrays, strings), so it can be built by hand in tests, pickled to a
worker, or hashed (:meth:`MeshSource.content_hash`) to look a prepared mesh up in a cache before preparing it.

:func:`validate_sources` checks a batch with vectorized passes (counts, index ranges, primvar sizes) and raises
:class:`~vixen_assets.errors.FormatError` naming the file, the prim and the field of the first bad mesh.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from vixen_assets.errors import FormatError
from vixen_assets.geometry.checks import (
    MeshFinding,
    attribute_findings,
    expected_count,
    out_of_range,
    first_error,
    primvar_findings,
    shape_findings,
    topology_findings,
)

try:  # pragma: no cover - depends on the environment
    import xxhash as _xxhash
except ImportError:  # pragma: no cover
    _xxhash = None

#: Interpolations of UsdGeom primvars. ``varying`` is the same as ``vertex`` for polygonal meshes.
INTERPOLATIONS = ("constant", "uniform", "vertex", "varying", "faceVarying")

#: The vertex attributes prepared by default: ``position`` and ``normal`` are built in, anything else is a primvar.
DEFAULT_ATTRIBUTES = ("position", "normal", "st")

#: Bumped whenever the output of :func:`~vixen_assets.geometry.prepare.prepare_meshes` changes for the same input,
#: so that cached prepared meshes from older versions no longer match.
PREPARE_VERSION = 1


@dataclass(eq=False)
class PrimvarData:
    """One primvar as authored: ``values`` (``(K,)`` or ``(K, C)``), its interpolation, optional ``indices`` (an
    indexed primvar: element ``i`` is ``values[indices[i]]``) and ``element_size`` (values per element)."""

    values: np.ndarray
    interpolation: str
    indices: np.ndarray | None = None
    element_size: int = 1

    @property
    def components(self) -> int:
        """Number of scalars per element (tuple size times ``element_size``)."""
        tuple_size = 1 if self.values.ndim == 1 else int(np.prod(self.values.shape[1:]))
        return tuple_size * self.element_size

    @property
    def element_count(self) -> int:
        """Number of authored elements before index expansion."""
        return len(self.values) // max(self.element_size, 1)

    @property
    def expanded_count(self) -> int:
        """Number of elements after index expansion (what the interpolation must match)."""
        return len(self.indices) if self.indices is not None else self.element_count

    def elements(self) -> np.ndarray:
        """The authored elements as a ``(element_count, components)`` float32 array (not index-expanded)."""
        n = self.element_count
        flat = self.values.reshape(len(self.values), -1)[: n * self.element_size]
        return np.ascontiguousarray(flat.reshape(n, -1), dtype=np.float32)


@dataclass(eq=False)
class SubsetSource:
    """A face GeomSubset: its name, the faces it holds and the path of the material bound to it (or None)."""

    name: str
    indices: np.ndarray
    material_path: str | None = None
    prim_path: str = ""


@dataclass(eq=False)
class MeshSource:
    """The arrays of one UsdGeom.Mesh, as read.

    ``points`` is ``(N, 3)`` float32, ``face_vertex_counts`` and ``face_vertex_indices`` are int32. ``normals`` is
    None when none are authored (smooth normals are computed then). ``primvars`` maps names (``"st"``, ...) to
    :class:`PrimvarData`. ``subsets`` are the face GeomSubsets used for materials; ``material_path`` is the material
    bound to the mesh itself (used by the faces in no subset). ``prim_path`` and ``layer_path`` name the prim and
    the file in error messages. ``hole_indices`` lists faces that are not drawn. Arrays from
    :func:`~vixen_assets.geometry.usd_mesh.read_mesh_source` are read-only zero-copy views of USD's arrays.
    """

    points: np.ndarray
    face_vertex_counts: np.ndarray
    face_vertex_indices: np.ndarray
    normals: np.ndarray | None = None
    normals_interpolation: str | None = None
    primvars: dict[str, PrimvarData] = field(default_factory=dict)
    left_handed: bool = False
    subsets: list[SubsetSource] = field(default_factory=list)
    prim_path: str = ""
    layer_path: str = ""
    material_path: str | None = None
    hole_indices: np.ndarray | None = None
    _hashes: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    #: (the ``face_vertex_counts`` array it was counted from, its triangle count): see ``sizing.source_triangles``
    _triangles: tuple = field(default=(None, 0), init=False, repr=False, compare=False)

    @property
    def point_count(self) -> int:
        """Number of points."""
        return len(self.points)

    @property
    def face_count(self) -> int:
        """Number of faces."""
        return len(self.face_vertex_counts)

    @property
    def corner_count(self) -> int:
        """Number of face corners (face-vertex indices)."""
        return len(self.face_vertex_indices)

    def normals_primvar(self) -> PrimvarData | None:
        """The authored normals as a :class:`PrimvarData` (``vertex`` interpolation by default), or None."""
        if self.normals is None:
            return None
        return PrimvarData(self.normals, self.normals_interpolation or "vertex")

    def error(self, message: str, field: str | None = None, prim_path: str | None = None) -> FormatError:
        """A :class:`FormatError` naming this mesh's file and prim (or ``prim_path``, e.g. a subset's)."""
        return FormatError(message, path=self.layer_path or None, prim_path=prim_path or self.prim_path or None,
                           field=field)

    def content_hash(self, attributes: Sequence[str] = DEFAULT_ATTRIBUTES) -> str:
        """A hash of everything that decides the prepared mesh: the arrays, the requested ``attributes``, the
        material bindings and the preparation version. Equal sources give equal hashes whatever their prim or file.

        Uses xxHash (XXH3-128, ~31 GB/s measured) when the ``xxhash`` package is installed, else BLAKE2b-128 from
        the standard library (~0.7 GB/s); the prefix of the returned hex string (``xxh3:``/``b2:``) says which, so
        hashes from the two never compare equal. The result is remembered per ``attributes``: treat the arrays as
        immutable once hashed. It is the :meth:`geometry_hash` combined with the material paths.
        """
        key = ("content", tuple(attributes))
        cached = self._hashes.get(key)
        if cached is not None:
            return cached
        h = _xxhash.xxh3_128() if _xxhash is not None else hashlib.blake2b(digest_size=16)
        prefix = "xxh3:" if _xxhash is not None else "b2:"
        materials = [f"m:{self.material_path}"] + [f"s:{sub.name}:{sub.material_path}" for sub in self.subsets]
        h.update(f"{self.geometry_hash(attributes)}|{'|'.join(materials)}".encode())
        digest = prefix + h.hexdigest()
        self._hashes[key] = digest
        return digest

    def geometry_hash(self, attributes: Sequence[str] = DEFAULT_ATTRIBUTES) -> str:
        """A hash of everything that decides the prepared vertex and index bytes: :meth:`content_hash` without the
        material bindings (sources that differ only in their materials prepare to the same bytes, with the same
        submesh ranges). Remembered per ``attributes`` like the content hash."""
        key = tuple(attributes)
        cached = self._hashes.get(key)
        if cached is not None:
            return cached
        h = _xxhash.xxh3_128() if _xxhash is not None else hashlib.blake2b(digest_size=16)
        prefix = "xxh3:" if _xxhash is not None else "b2:"
        # One header string describes everything (metadata, dtypes and shapes, in a fixed order), then the array
        # bytes follow in the same order: few update calls per mesh.
        header = [f"vixen-mesh/{PREPARE_VERSION}/{','.join(attributes)}/{int(self.left_handed)}"]
        arrays = []
        add = header.append

        def arr(a: np.ndarray | None) -> None:
            if a is None:
                add("-")
                return
            # ascontiguousarray only where it changes something (it also makes 0-d arrays 1-d: those go through)
            if type(a) is not np.ndarray or not a.ndim or not a.flags.c_contiguous:
                a = np.ascontiguousarray(a)
            add(f"{a.dtype.str}{a.shape}")
            if a.size:
                arrays.append(a)

        arr(self.points)
        arr(self.face_vertex_counts)
        arr(self.face_vertex_indices)
        arr(self.hole_indices)
        if "normal" in attributes:
            add(f"n:{self.normals_interpolation}")
            arr(self.normals)
        for name in attributes:
            pv = self.primvars.get(name) if name not in ("position", "normal") else None
            if pv is not None:
                add(f"p:{name}:{pv.interpolation}:{pv.element_size}")
                arr(pv.values)
                arr(pv.indices)
        for sub in self.subsets:
            add(f"s:{sub.name}")
            arr(sub.indices)
        h.update("|".join(header).encode())
        for a in arrays:
            h.update(a)  # C-contiguous: hashed through the buffer protocol, no copy
        digest = prefix + h.hexdigest()
        self._hashes[key] = digest
        return digest


def _raise_first(src: MeshSource, findings: Iterator[MeshFinding]) -> None:
    """Raise the first error of ``findings`` (see :mod:`vixen_assets.geometry.checks`) as a FormatError."""
    bad = first_error(findings)
    if bad is not None:
        raise bad.error(src)


def _check_primvar(src: MeshSource, name: str, field_name: str, pv: PrimvarData, index_ranges: bool = True) -> None:
    _raise_first(src, primvar_findings(src, name, field_name, pv, index_ranges))


def check_shapes(src: MeshSource) -> None:
    """Check the dtypes and shapes of ``src``'s points, counts and indices."""
    _raise_first(src, shape_findings(src))


def validate_sources(sources: Sequence[MeshSource], *, attributes: Sequence[str] | None = None) -> None:
    """Check every source of a batch; raise :class:`FormatError` for the first bad one.

    Checked: ``points`` is ``(N, 3)`` float32; counts and indices are 1-D ints; no face has fewer than 3 vertices;
    the counts sum to the number of indices; every index is in ``[0, N)``; hole and subset indices name existing
    faces; normals and primvars (only those in ``attributes`` when given) have the size their interpolation needs.
    The array checks run once over the concatenated batch; per-mesh work is only Python attribute access.
    """
    if not sources:
        return
    for src in sources:
        if not _shapes_ok(src):
            check_shapes(src)
    m = len(sources)
    if m == 1:  # one mesh (read_mesh_source): plain reductions, none of the batch bookkeeping
        _check_one(sources[0])
        _remember_triangles(sources)
        check_attributes(sources[0], attributes)
        return
    face_n = np.fromiter((s.face_count for s in sources), dtype=np.int64, count=m)
    corner_n = np.fromiter((s.corner_count for s in sources), dtype=np.int64, count=m)
    point_n = np.fromiter((s.point_count for s in sources), dtype=np.int64, count=m)
    counts = sources[0].face_vertex_counts if m == 1 else np.concatenate([s.face_vertex_counts for s in sources])
    indices = sources[0].face_vertex_indices if m == 1 else np.concatenate([s.face_vertex_indices for s in sources])
    check_topology(sources, counts, indices, face_n, corner_n, point_n)
    _remember_triangles(sources)
    for src in sources:
        check_attributes(src, attributes)


def validate_distinct_sources(sources: Sequence[MeshSource], *, attributes: Sequence[str]) -> None:
    """:func:`validate_sources` of the distinct geometries of ``sources`` only (:meth:`MeshSource.geometry_hash`
    over ``attributes``, which covers every array and interpolation the checks look at): an asset placed many times
    with its own copy of its materials is checked once. Raises for the first bad distinct source (callers that name
    every bad source check them one by one after that). The hashes are remembered, so the cacher's keys cost
    nothing more. Sources whose arrays are not all plain arrays of the right shape are checked as they are."""
    if len(sources) < 2 or not all(_shapes_ok(src) for src in sources):
        validate_sources(sources, attributes=attributes)
        return
    try:
        first: dict[str, MeshSource] = {}
        for src in sources:
            first.setdefault(src.geometry_hash(attributes), src)
    except Exception:  # noqa: BLE001 - arrays the hash cannot take: the full checks name the problem
        validate_sources(sources, attributes=attributes)
        return
    if len(first) == len(sources):
        validate_sources(sources, attributes=attributes)
        return
    validate_sources(list(first.values()), attributes=attributes)
    _remember_triangles(sources)


_F32 = np.dtype(np.float32)


def _shapes_ok(src: MeshSource) -> bool:
    """Whether :func:`check_shapes` has nothing to say about ``src`` (the same conditions, without the findings'
    generator: it runs once per mesh of every batch)."""
    p, c, i = src.points, src.face_vertex_counts, src.face_vertex_indices
    return (isinstance(p, np.ndarray) and p.dtype == _F32 and p.ndim == 2 and p.shape[1] == 3
            and isinstance(c, np.ndarray) and c.dtype.kind in "iu" and c.ndim == 1
            and isinstance(i, np.ndarray) and i.dtype.kind in "iu" and i.ndim == 1)


def _remember_triangles(sources: Sequence[MeshSource]) -> None:
    """After the topology checks passed (every face has 3 or more corners, the counts sum to the number of
    indices), each source's triangle count is its corners minus twice its faces: remembered for the sizing
    (:func:`~vixen_assets.geometry.sizing.source_triangles`) so that no later step sums the counts again."""
    for src in sources:
        counts = src.face_vertex_counts
        src._triangles = (counts, len(src.face_vertex_indices) - 2 * len(counts))


def _check_one(src: MeshSource) -> None:
    _raise_first(src, topology_findings(src))


def _check_face_sets(src: MeshSource, subsets: bool) -> None:
    _raise_first(src, topology_findings(src, subsets=subsets))


def check_topology(
    sources: Sequence[MeshSource],
    counts: np.ndarray,
    indices: np.ndarray,
    face_n: np.ndarray,
    corner_n: np.ndarray,
    point_n: np.ndarray,
    point_start: np.ndarray | None = None,
    *,
    face_sets: bool = True,
) -> None:
    """Vectorized topology checks over concatenated ``counts``/``indices`` of ``sources`` (see
    :func:`validate_sources`). ``face_n``/``corner_n``/``point_n`` are the per-mesh lengths; when ``point_start``
    is given, ``indices`` are global (offset by each mesh's first point) rather than per-mesh. ``face_sets`` also
    checks hole indices and subset indices (prepare_meshes checks subsets itself)."""
    if len(counts) and int(counts.min()) < 3:
        bad_face = int(np.flatnonzero(counts < 3)[0])
        mesh = int(np.searchsorted(np.cumsum(face_n), bad_face, side="right"))
        _raise_first(sources[mesh], topology_findings(sources[mesh], holes=False, subsets=False))
    face_start = np.zeros(len(face_n), dtype=np.int64)
    np.cumsum(face_n[:-1], out=face_start[1:])
    nonempty = face_n > 0
    sums = np.zeros(len(face_n), dtype=np.int64)
    if len(counts):
        sums[nonempty] = np.add.reduceat(counts, face_start[nonempty], dtype=np.int64)
    mismatch = np.flatnonzero(sums != corner_n)
    if len(mismatch):
        i = int(mismatch[0])
        _raise_first(sources[i], topology_findings(sources[i], holes=False, subsets=False))
    if len(indices):
        corner_start = np.zeros(len(corner_n), dtype=np.int64)
        np.cumsum(corner_n[:-1], out=corner_start[1:])
        has = corner_n > 0
        hi = np.full(len(corner_n), -1, dtype=np.int64)
        if indices.dtype == np.int32 and point_start is None:
            # one reduction covers both bounds: negative int32 indices wrap to huge uint32 values
            hi[has] = np.maximum.reduceat(indices.view(np.uint32), corner_start[has])
            bad = np.flatnonzero(hi >= point_n)
        else:
            lo = np.zeros(len(corner_n), dtype=np.int64)
            hi[has] = np.maximum.reduceat(indices, corner_start[has])
            lo[has] = np.minimum.reduceat(indices, corner_start[has])
            if point_start is not None:
                hi[has] -= point_start[has]
                lo[has] -= point_start[has]
            bad = np.flatnonzero((hi >= point_n) | (lo < 0))
        if len(bad):
            i = int(bad[0])
            _raise_first(sources[i], topology_findings(sources[i], holes=False, subsets=False))
    _check_all_face_sets(sources, face_n, face_sets)


def _check_all_face_sets(sources: Sequence[MeshSource], face_n: np.ndarray, subsets: bool) -> None:
    """Hole (and, with ``subsets``, GeomSubset) face indices of every source in range: one vectorized pass over
    the integer ones; the first source (in order) with a bad one raises through its findings, as the loop over
    :func:`_check_face_sets` it replaces would."""
    owners: list[int] = []
    arrays: list[np.ndarray] = []
    loose: list[int] = []  # sources whose face sets are not all integer arrays: checked one by one
    for i, src in enumerate(sources):
        if not ((subsets and src.subsets) or src.hole_indices is not None):
            continue
        sets = [src.hole_indices] if src.hole_indices is not None else []
        if subsets:
            sets.extend(sub.indices for sub in src.subsets)
        if all(isinstance(a, np.ndarray) and a.ndim == 1 and a.dtype.kind in "iu" for a in sets):
            for a in sets:
                if len(a):
                    owners.append(i)
                    arrays.append(a)
        else:
            loose.append(i)
    first_bad = len(sources)
    if arrays:
        lens = np.fromiter((len(a) for a in arrays), dtype=np.intp, count=len(arrays))
        mesh = np.asarray(owners, dtype=np.intp)
        idx = np.concatenate(arrays, dtype=np.int64, casting="unsafe")
        bad = (idx < 0) | (idx >= np.repeat(face_n[mesh], lens))
        if bad.any():
            first_bad = int(mesh[np.searchsorted(np.cumsum(lens), int(np.flatnonzero(bad)[0]), side="right")])
    for i in sorted([*loose, first_bad] if first_bad < len(sources) else loose):
        _check_face_sets(sources[i], subsets)


def check_attributes(
    src: MeshSource, attributes: Sequence[str] | None = None, *, index_ranges: bool = True
) -> None:
    """Check the sizes of ``src``'s normals and primvars (those named in ``attributes`` when given); with
    ``index_ranges`` also that indexed primvars' indices are in range (prepare_meshes checks those vectorized)."""
    if not _attributes_ok(src, attributes, index_ranges):
        _raise_first(src, attribute_findings(src, attributes, index_ranges=index_ranges))


def _primvar_ok(pv: PrimvarData, points: int, faces: int, corners: int, index_ranges: bool) -> bool:
    """Whether ``primvar_findings`` has nothing to say about ``pv`` (its conditions, without the generator)."""
    interp = pv.interpolation
    if interp not in INTERPOLATIONS:
        return False
    values = pv.values
    if not isinstance(values, np.ndarray) or values.dtype.kind not in "fiub":
        return False
    es = pv.element_size
    if es < 1 or len(values) % es:
        return False
    expected = expected_count(interp, points, faces, corners)
    n_elem = len(values) // es
    idx = pv.indices
    if idx is not None:
        return len(idx) == expected and not (index_ranges and out_of_range(idx, n_elem))
    return n_elem == expected or (interp == "constant" and n_elem >= 1)


def _attributes_ok(src: MeshSource, attributes: Sequence[str] | None, index_ranges: bool) -> bool:
    """Whether ``attribute_findings`` has nothing to say about ``src``: checked without building findings (once
    per mesh of every batch); only a source that fails here goes through the findings, which name the problem."""
    points, faces, corners = len(src.points), len(src.face_vertex_counts), len(src.face_vertex_indices)
    n = src.normals
    if n is not None and (attributes is None or "normal" in attributes):
        if not isinstance(n, np.ndarray) or n.ndim != 2 or n.shape[1] != 3:
            return False
        if not _primvar_ok(PrimvarData(n, src.normals_interpolation or "vertex"), points, faces, corners,
                           index_ranges):
            return False
    for name, pv in src.primvars.items():
        if (attributes is None or name in attributes) and not _primvar_ok(pv, points, faces, corners, index_ranges):
            return False
    return True
