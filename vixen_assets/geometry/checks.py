"""The mesh checks as structured findings: one implementation for the loader and for ``vixen-assets validate``.

Each check yields :class:`MeshFinding` objects (a rule code such as ``geom.index-out-of-range``, a severity, the
USD property it concerns and a message). The loader (:func:`~vixen_assets.geometry.mesh_source.validate_sources`)
raises the first *error* of the checks it runs as a :class:`~vixen_assets.errors.FormatError`; the validator
reports every finding. Checks run in a fixed order (shapes, topology, attributes, then quality) and the generators
are lazy, so the loader pays for nothing past the first error, and nothing at all beyond its own checks.

Errors (the loader refuses the mesh): array shapes, faces with fewer than 3 vertices, counts that do not sum to the
number of indices, indices out of range, primvar sizes that do not match their interpolation. Quality findings
(only the validator asks for them): non-finite points, meshes with no faces, unused points, zero-area faces,
zero-length normals, and an authored extent that does not contain the points.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vixen_assets.errors import FormatError
    from vixen_assets.geometry.mesh_source import MeshSource, PrimvarData

__all__ = [
    "MeshFinding", "shape_findings", "topology_findings", "primvar_findings", "attribute_findings",
    "quality_findings", "extent_findings", "mesh_findings", "first_error", "GEOMETRY_CODES",
]

#: Every code a finding can carry, with its severity and a one-line description (the validator's rule docs).
GEOMETRY_CODES: dict[str, tuple[str, str]] = {
    "geom.array-type": ("error", "points are (N, 3) floats; counts and indices are 1-D integer arrays"),
    "geom.face-too-small": ("error", "every face has at least 3 vertices"),
    "geom.counts-mismatch": ("error", "faceVertexCounts sum to the number of faceVertexIndices"),
    "geom.index-out-of-range": ("error", "face, hole, subset and primvar indices name existing elements"),
    "geom.primvar-size": ("error", "normals and primvars have the number of elements their interpolation needs"),
    "geom.primvar-invalid": ("error", "primvars have a known interpolation, numeric values and a valid elementSize"),
    "geom.points-nan": ("error", "points are finite (no NaN or infinity)"),
    "geom.no-faces": ("warning", "a mesh has at least one face"),
    "geom.unused-points": ("warning", "every point is used by a face"),
    "geom.degenerate-face": ("warning", "faces have a non-zero area"),
    "geom.normals-zero": ("warning", "normals have a non-zero length"),
    "geom.extent": ("warning", "the authored extent contains every point"),
}

_umax = np.maximum.reduce
_umin = np.minimum.reduce


@dataclass(frozen=True, slots=True)
class MeshFinding:
    """One problem of one mesh: ``code`` (a key of :data:`GEOMETRY_CODES`), ``severity``, the USD property
    (``field``), a message, and ``prim_path`` when the finding concerns another prim (a GeomSubset)."""

    code: str
    severity: str
    field: str
    message: str
    prim_path: str | None = None

    def error(self, src: MeshSource) -> FormatError:
        """This finding as the :class:`FormatError` the loader raises for ``src``."""
        return src.error(self.message, self.field, prim_path=self.prim_path)


def _finding(code: str, fld: str, message: str, prim_path: str | None = None) -> MeshFinding:
    return MeshFinding(code, GEOMETRY_CODES[code][0], fld, message, prim_path)


def first_error(findings: Iterator[MeshFinding]) -> MeshFinding | None:
    """The first finding of severity ``error`` in ``findings`` (consumed lazily), or ``None``."""
    for f in findings:
        if f.severity == "error":
            return f
    return None


def expected_count(interp: str, points: int, faces: int, corners: int) -> int:
    """How many elements a primvar of interpolation ``interp`` needs on a mesh of these sizes."""
    if interp == "faceVarying":
        return corners
    if interp == "vertex" or interp == "varying":
        return points
    return faces if interp == "uniform" else 1


def out_of_range(idx: np.ndarray, n: int) -> bool:
    """Whether any of the int ``idx`` is outside ``[0, n)``: one reduction (negatives wrap to huge uint32)."""
    if not len(idx):
        return False
    if idx.dtype == np.int32:
        return int(_umax(idx.view(np.uint32))) >= n
    return int(_umin(idx)) < 0 or int(_umax(idx)) >= n


def shape_findings(src: MeshSource) -> Iterator[MeshFinding]:
    """The dtypes and shapes of ``src``'s points, counts and indices (nothing else is meaningful when these fail)."""
    p = src.points
    if not isinstance(p, np.ndarray) or p.dtype != np.float32 or p.ndim != 2 or p.shape[1] != 3:
        what = f"{p.dtype}{list(p.shape)}" if isinstance(p, np.ndarray) else type(p).__name__
        yield _finding("geom.array-type", "points", f"points must be a (N, 3) float32 array (point3f[]), got {what}")
    for name, a in (("faceVertexCounts", src.face_vertex_counts), ("faceVertexIndices", src.face_vertex_indices)):
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu" or a.ndim != 1:
            what = f"{a.dtype}{list(a.shape)}" if isinstance(a, np.ndarray) else type(a).__name__
            yield _finding("geom.array-type", name, f"{name} must be a 1-D int array, got {what}")


def topology_findings(src: MeshSource, *, holes: bool = True, subsets: bool = True) -> Iterator[MeshFinding]:
    """Face sizes, the counts/indices agreement, index ranges, then (optionally) hole and subset indices."""
    counts, idx = src.face_vertex_counts, src.face_vertex_indices
    total = 0
    if len(counts):
        if int(_umin(counts)) < 3:
            bad = int(np.flatnonzero(counts < 3)[0])
            yield _finding("geom.face-too-small", "faceVertexCounts",
                           f"face {bad} has {int(counts[bad])} vertices; every face needs at least 3")
        total = int(counts.sum(dtype=np.int64))
    if total != len(idx):
        yield _finding("geom.counts-mismatch", "faceVertexCounts",
                       f"faceVertexCounts sum to {total} but faceVertexIndices has {len(idx)} entries")
    n = src.point_count
    if out_of_range(idx, n):
        pos = int(np.flatnonzero((idx < 0) | (idx >= n))[0])
        yield _finding("geom.index-out-of-range", "faceVertexIndices",
                       f"index {int(idx[pos])} at position {pos} is out of range for {n} points")
    n_faces = src.face_count
    if holes and src.hole_indices is not None and len(src.hole_indices):
        if out_of_range(src.hole_indices, n_faces):
            yield _finding("geom.index-out-of-range", "holeIndices", f"hole index out of range for {n_faces} faces")
    for sub in src.subsets if subsets else ():
        s = sub.indices
        if out_of_range(s, n_faces):
            bad_i = int(np.flatnonzero((s < 0) | (s >= n_faces))[0])
            yield _finding("geom.index-out-of-range", "indices",
                           f"GeomSubset {sub.name!r}: face index {int(s[bad_i])} out of range for {n_faces} faces",
                           prim_path=sub.prim_path or f"{src.prim_path}/{sub.name}")


def primvar_findings(src: MeshSource, name: str, field_name: str, pv: PrimvarData,
                     index_ranges: bool = True) -> Iterator[MeshFinding]:
    """One primvar (or the normals): interpolation, value type, elementSize, then its size or its indices."""
    from vixen_assets.geometry.mesh_source import INTERPOLATIONS

    if pv.interpolation not in INTERPOLATIONS:
        yield _finding("geom.primvar-invalid", field_name, f"unknown interpolation {pv.interpolation!r}")
        return
    values = pv.values
    if not isinstance(values, np.ndarray) or values.dtype.kind not in "fiub":
        yield _finding("geom.primvar-invalid", field_name, f"{name} values must be a numeric array")
        return
    if pv.element_size < 1 or len(values) % pv.element_size:
        yield _finding("geom.primvar-invalid", field_name,
                       f"{len(values)} values are not a multiple of elementSize {pv.element_size}")
        return
    expected = expected_count(pv.interpolation, src.point_count, src.face_count, src.corner_count)
    n_elem = pv.element_count
    if pv.indices is not None:
        idx = pv.indices
        if len(idx) != expected:
            yield _finding("geom.primvar-size", field_name + ":indices",
                           f"{len(idx)} indices for {pv.interpolation} interpolation, expected {expected}")
        if index_ranges and out_of_range(idx, n_elem):
            bad = int(np.flatnonzero((idx < 0) | (idx >= n_elem))[0])
            yield _finding("geom.index-out-of-range", field_name + ":indices",
                           f"index {int(idx[bad])} at position {bad} is out of range for {n_elem} values")
    elif n_elem != expected and not (pv.interpolation == "constant" and n_elem >= 1):
        yield _finding("geom.primvar-size", field_name,
                       f"{n_elem} values for {pv.interpolation} interpolation, expected {expected}")


def attribute_findings(src: MeshSource, attributes: Sequence[str] | None = None, *,
                       index_ranges: bool = True) -> Iterator[MeshFinding]:
    """The normals and the primvars (those named in ``attributes`` when given)."""
    if src.normals is not None and (attributes is None or "normal" in attributes):
        n = src.normals
        if not isinstance(n, np.ndarray) or n.ndim != 2 or n.shape[1] != 3:
            yield _finding("geom.primvar-invalid", "normals", "normals must be a (N, 3) array")
        else:
            yield from primvar_findings(src, "normals", "normals", src.normals_primvar(), index_ranges)
    for name, pv in src.primvars.items():
        if attributes is None or name in attributes:
            yield from primvar_findings(src, f"primvar {name!r}", f"primvars:{name}", pv, index_ranges)


def _face_areas(points: np.ndarray, counts: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Vector area (length of the summed fan cross products / 2) of every face; faces must have >= 3 corners."""
    p = points.astype(np.float64)
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    tris = counts.astype(np.int64) - 2
    face_of = np.repeat(np.arange(len(counts)), tris)
    k = np.arange(len(face_of)) - np.repeat(np.cumsum(tris) - tris, tris) + 1
    base = starts[face_of]
    a = p[indices[base]]
    u = p[indices[base + k]] - a
    v = p[indices[base + k + 1]] - a
    n = len(counts)
    cx = np.bincount(face_of, weights=u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1], minlength=n)
    cy = np.bincount(face_of, weights=u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2], minlength=n)
    cz = np.bincount(face_of, weights=u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0], minlength=n)
    return 0.5 * np.sqrt(cx * cx + cy * cy + cz * cz)


def quality_findings(src: MeshSource) -> Iterator[MeshFinding]:
    """What the loader accepts but a library should not hold: non-finite points, no faces, unused points,
    zero-area faces and zero-length normals. Run only on a mesh whose topology checks passed."""
    p = src.points
    finite = np.isfinite(p).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        yield _finding("geom.points-nan", "points",
                       f"{len(bad)} of {len(p)} points are not finite (first: point {int(bad[0])})")
    if src.face_count == 0:
        yield _finding("geom.no-faces", "faceVertexCounts", "the mesh has no faces")
    elif src.point_count:
        used = np.zeros(src.point_count, dtype=bool)
        used[src.face_vertex_indices] = True
        if not used.all():
            unused = np.flatnonzero(~used)
            yield _finding("geom.unused-points", "points",
                           f"{len(unused)} of {len(p)} points are used by no face (first: point {int(unused[0])})")
        if finite.all():
            areas = _face_areas(p, src.face_vertex_counts, src.face_vertex_indices)
            span = p.max(axis=0) - p.min(axis=0) if len(p) else np.zeros(3)
            tiny = (float(np.linalg.norm(span)) * 1e-7) ** 2
            zero = np.flatnonzero(areas <= tiny)
            if len(zero):
                yield _finding("geom.degenerate-face", "faceVertexIndices",
                               f"{len(zero)} of {src.face_count} faces have zero area (first: face {int(zero[0])})")
    if src.normals is not None and isinstance(src.normals, np.ndarray) and src.normals.ndim == 2:
        lengths = np.linalg.norm(src.normals.astype(np.float64), axis=1)
        zero = np.flatnonzero(~(lengths > 1e-12))
        if len(zero):
            yield _finding("geom.normals-zero", "normals",
                           f"{len(zero)} of {len(lengths)} normals have zero length (first: normal {int(zero[0])})")


def extent_findings(src: MeshSource, extent: np.ndarray | None) -> Iterator[MeshFinding]:
    """Whether the authored ``extent`` (``(2, 3)``: min, max; ``None`` when not authored) contains the points."""
    p = src.points
    if extent is None or not len(p):
        return
    ext = np.asarray(extent, dtype=np.float64).reshape(2, 3)
    finite = p[np.isfinite(p).all(axis=1)].astype(np.float64)
    if not len(finite):
        return
    lo, hi = finite.min(axis=0), finite.max(axis=0)
    tol = 1e-5 * max(1.0, float(np.abs(np.concatenate([lo, hi])).max()))
    if (lo < ext[0] - tol).any() or (hi > ext[1] + tol).any():
        yield _finding("geom.extent", "extent",
                       f"authored extent {ext[0].tolist()}..{ext[1].tolist()} does not contain the points' bounds "
                       f"{lo.tolist()}..{hi.tolist()}")


def mesh_findings(src: MeshSource, extent: np.ndarray | None = None) -> Iterator[MeshFinding]:
    """Every finding for one mesh, in order: shapes (stop if bad), topology, attributes, then, when the topology
    is sound, quality and extent."""
    shapes = list(shape_findings(src))
    if shapes:
        yield from shapes
        return
    topology = list(topology_findings(src))
    yield from topology
    yield from attribute_findings(src)
    if not topology:
        yield from quality_findings(src)
    yield from extent_findings(src, extent)
