"""``geometry/checks.py``: the mesh checks as findings, shared by the loader and the validator."""

from __future__ import annotations

import numpy as np
import pytest

from vixen_assets.errors import FormatError
from vixen_assets.geometry.checks import GEOMETRY_CODES, extent_findings, first_error, mesh_findings
from vixen_assets.geometry.mesh_source import MeshSource, PrimvarData, validate_sources

QUAD = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)


def mesh(points=QUAD, counts=(4,), indices=(0, 1, 2, 3), **kw) -> MeshSource:
    pts = points if isinstance(points, np.ndarray) else np.asarray(points, np.float32)
    return MeshSource(pts, np.asarray(counts, np.int32), np.asarray(indices, np.int32),
                      prim_path="/m", layer_path="m.usda", **kw)


def codes(src: MeshSource, extent=None) -> list[str]:
    return [f.code for f in mesh_findings(src, extent)]


def test_clean_mesh_has_no_findings() -> None:
    assert codes(mesh(), np.array([[0, 0, 0], [1, 1, 0]])) == []


@pytest.mark.parametrize(("src", "code"), [
    (mesh(counts=(4, 2), indices=(0, 1, 2, 3, 0, 1)), "geom.face-too-small"),
    (mesh(indices=(0, 1, 2)), "geom.counts-mismatch"),
    (mesh(indices=(0, 1, 2, 7)), "geom.index-out-of-range"),
    (mesh(indices=(0, 1, 2, -1)), "geom.index-out-of-range"),
    (mesh(points=np.vstack([QUAD[:3], [[np.nan, 0, 0]]]).astype(np.float32)), "geom.points-nan"),
    (mesh(counts=(), indices=()), "geom.no-faces"),
    (mesh(points=np.vstack([QUAD, [[5, 5, 5]]]).astype(np.float32)), "geom.unused-points"),
    (mesh(points=[[0, 0, 0], [1, 0, 0], [2, 0, 0]], counts=(3,), indices=(0, 1, 2)), "geom.degenerate-face"),
    (mesh(normals=np.array([[0, 0, 1], [0, 0, 0], [0, 0, 1], [0, 0, 1]], np.float32), normals_interpolation="vertex"),
     "geom.normals-zero"),
    (mesh(primvars={"st": PrimvarData(np.zeros((3, 2), np.float32), "faceVarying")}), "geom.primvar-size"),
    (mesh(primvars={"st": PrimvarData(np.zeros((4, 2), np.float32), "sideways")}), "geom.primvar-invalid"),
    (mesh(points=QUAD.astype(np.float64)), "geom.array-type"),
])
def test_each_code(src: MeshSource, code: str) -> None:
    assert code in codes(src)
    assert code in GEOMETRY_CODES


def test_extent_must_contain_the_points() -> None:
    assert [f.code for f in extent_findings(mesh(), np.array([[0, 0, 0], [0.5, 1, 0]]))] == ["geom.extent"]
    assert list(extent_findings(mesh(), None)) == []


def test_loader_raises_the_first_error_of_the_same_findings() -> None:
    bad = mesh(counts=(4, 2), indices=(0, 1, 2, 3, 0, 7))  # too small and out of range
    first = first_error(mesh_findings(bad))
    assert first is not None and first.code == "geom.face-too-small"
    with pytest.raises(FormatError) as exc:
        validate_sources([bad])
    assert str(exc.value) == str(first.error(bad))
    with pytest.raises(FormatError) as exc2:  # the vectorized batch path names the same mesh and message
        validate_sources([mesh(), bad])
    assert str(exc2.value) == str(first.error(bad))
    # quality findings never make the loader fail
    validate_sources([mesh(points=np.vstack([QUAD, [[5, 5, 5]]]).astype(np.float32))])
