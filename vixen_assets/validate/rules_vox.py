"""Built-in MagicaVoxel rules (``vox.*``). The deep parse is :func:`~vixen_assets.formats.vox.read_vox` (the
loader's reader: every chunk checked against its parent and the file, SIZE vs XYZI coordinates, scene-graph
references and cycles); its error is reported by the rule of the chunk it names. Added here: empty models,
duplicate voxels, voxels coloured with a fully transparent palette entry."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..hookspecs import hookimpl
from .context import AssetContext, register_parsed_rules
from .model import Issue

_BY_CHUNK = {"header": "vox.chunks", "MAIN": "vox.chunks", "SIZE": "vox.model", "XYZI": "vox.model",
             "RGBA": "vox.palette", "MATL": "vox.palette", "IMAP": "vox.palette", "nTRN": "vox.scene-graph",
             "nGRP": "vox.scene-graph", "nSHP": "vox.scene-graph", "LAYR": "vox.scene-graph"}

_RULES = {
    "vox.chunks": ("error", "the header and every chunk's content and children sizes fit their parent"),
    "vox.model": ("error", "model sizes are 1..256 and voxel coordinates lie inside their model"),
    "vox.palette": ("error", "palette and material chunks are well formed"),
    "vox.scene-graph": ("error", "scene-graph nodes reference existing nodes and models, without cycles"),
    "vox.empty-model": ("warning", "every model holds at least one voxel"),
    "vox.duplicate-voxel": ("warning", "no two voxels of a model share a cell"),
    "vox.transparent-color": ("warning", "voxels do not use a fully transparent palette entry"),
}


def _parse(ctx: AssetContext) -> list[Issue]:
    if "vox-issues" in ctx.cache:
        return ctx.cache["vox-issues"]
    out: list[Issue] = []
    ctx.cache["vox-issues"] = out
    vox, err = ctx.vox()
    if err is not None:
        fld = getattr(err, "field", None) or "header"
        out.append(ctx.issue(_BY_CHUNK.get(fld, "vox.chunks"), "error", fld,
                             getattr(err, "reason", None) or str(err)))
        return out
    for i, model in enumerate(vox.models):
        v = model.voxels
        if not len(v):
            out.append(ctx.issue("vox.empty-model", "warning", f"XYZI[{i}]", f"model {i} has no voxels"))
            continue
        cells = (v[:, 0].astype(np.int64) << 16) | (v[:, 1].astype(np.int64) << 8) | v[:, 2]
        dup = len(cells) - len(np.unique(cells))
        if dup:
            out.append(ctx.issue("vox.duplicate-voxel", "warning", f"XYZI[{i}]",
                                 f"model {i}: {dup} voxels repeat a cell already filled (the last one wins)"))
        alpha = vox.palette[v[:, 3], 3]
        clear = np.flatnonzero((alpha == 0) & (v[:, 3] != 0))
        if len(clear):
            c = int(v[clear[0], 3])
            out.append(ctx.issue("vox.transparent-color", "warning", f"XYZI[{i}]",
                                 f"model {i}: {len(clear)} voxels use colour index {c}, whose palette alpha is 0"))
    return out


@hookimpl
def vixen_register_validators(register: Any) -> None:
    """Register the ``vox.*`` rules."""
    register_parsed_rules(register, _RULES, _parse, (".vox",))
