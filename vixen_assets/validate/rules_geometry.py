"""Built-in geometry rules (``geom.*``): the loader's own mesh checks plus the quality checks, from one
implementation (:mod:`vixen_assets.geometry.checks`). Each mesh is read and checked once; every ``geom.*`` rule
takes its share of the findings. Pointers are ``<prim path>.<property>``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import FormatError
from ..geometry.checks import GEOMETRY_CODES, MeshFinding, mesh_findings
from ..hookspecs import hookimpl
from .context import AssetContext
from .model import Issue

_ARRAY_FIELDS = {"points": "geom.array-type", "faceVertexCounts": "geom.array-type",
                 "faceVertexIndices": "geom.array-type", "holeIndices": "geom.array-type"}


_NON_NUMERIC = ("string[]", "token[]", "asset[]", "matrix2d[]", "matrix3d[]", "matrix4d[]")


def _findings(ctx: AssetContext, prim: Any) -> list[MeshFinding]:
    key = f"geom:{prim.GetPath()}"
    if key not in ctx.cache:
        from pxr import UsdGeom

        from ..geometry.usd_mesh import read_mesh_source

        try:
            src = read_mesh_source(prim, primvars=_primvar_names(prim), validate=False)
        except FormatError as exc:  # the arrays cannot even be read as a mesh (types)
            fld = exc.field or ""
            code = _ARRAY_FIELDS.get(fld, "geom.primvar-invalid")
            ctx.cache[key] = [MeshFinding(code, "error", fld, exc.reason, exc.prim_path)]
            return ctx.cache[key]
        extent = UsdGeom.Boundable(prim).GetExtentAttr().Get()
        ext = np.asarray(extent, dtype=np.float64) if extent is not None and len(extent) == 2 else None
        ctx.cache[key] = list(mesh_findings(src, ext))
    return ctx.cache[key]


def _primvar_names(prim: Any) -> tuple[str, ...]:
    from pxr import UsdGeom

    names = []
    for pv in UsdGeom.PrimvarsAPI(prim).GetAuthoredPrimvars():
        name = pv.GetPrimvarName()
        type_name = pv.GetTypeName()
        if name != "normals" and type_name.isArray and str(type_name) not in _NON_NUMERIC:
            names.append(str(name))
    return tuple(names)


def _rule(code: str) -> Any:
    def check(ctx: AssetContext, prim: Any) -> Iterator[Issue]:
        for f in _findings(ctx, prim):
            if f.code == code:
                where = f.prim_path or str(prim.GetPath())
                yield ctx.issue(code, f.severity, f"{where}.{f.field}" if f.field else where, f.message)

    check.__name__ = "check_" + code.replace(".", "_").replace("-", "_")
    return check


def fix_extents(ctx: AssetContext, issues: list[Issue], out_dir: str) -> list[str]:
    """Author each flagged mesh's extent from its points (``UsdGeom.Boundable.ComputeExtent``) in a flattened copy
    of the stage under ``out_dir``; returns the pointers fixed."""
    from pxr import Usd, UsdGeom

    stage = ctx.stage()
    if stage is None:
        return []
    fixed = []
    for issue in issues:
        prim = stage.GetPrimAtPath(issue.pointer.rsplit(".", 1)[0])
        if not prim or not prim.IsA(UsdGeom.Mesh):
            continue
        extent = UsdGeom.Boundable.ComputeExtentFromPlugins(UsdGeom.Boundable(prim), Usd.TimeCode.Default())
        if extent is None:
            continue
        UsdGeom.Boundable(prim).GetExtentAttr().Set(extent)
        fixed.append(issue.pointer)
    return fixed


@hookimpl
def vixen_register_validators(register: Any) -> None:
    """Register one ``geom.*`` rule per finding code of :data:`~vixen_assets.geometry.checks.GEOMETRY_CODES`."""
    for code, (severity, doc) in GEOMETRY_CODES.items():
        register(code, severity=severity, doc=doc, check=_rule(code), prim_types=("Mesh",),
                 fix=fix_extents if code == "geom.extent" else None)


__all__ = ["fix_extents", "vixen_register_validators"]
