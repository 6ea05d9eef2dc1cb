"""Built-in budget pre-flight rules: the GPU memory an asset will need (:func:`vixen_assets.estimate`, from
headers and counts, no device needed) and whether it fits ``--budget-mb``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..estimate import Estimate, estimate
from ..hookspecs import hookimpl
from .context import AssetContext
from .model import Issue

SUFFIXES = (".usd", ".usda", ".usdc", ".usdz", ".ktx2", ".vox")


def asset_estimate(ctx: AssetContext) -> Estimate | None:
    """The asset's estimate (computed once; ``None`` when it cannot be read: another rule reports that)."""
    if "estimate" not in ctx.cache:
        try:
            stage = ctx.stage() if ctx.suffix in (".usd", ".usda", ".usdc", ".usdz") else None
            if stage is None and ctx.suffix in (".usd", ".usda", ".usdc", ".usdz"):
                ctx.cache["estimate"] = None
            else:
                ctx.cache["estimate"] = estimate(stage if stage is not None else ctx.path)
        except Exception:  # noqa: BLE001 - malformed files are reported by the format rules
            ctx.cache["estimate"] = None
    return ctx.cache["estimate"]


def _fmt(n: int) -> str:
    return f"{n / (1 << 20):.2f} MiB"


def _estimate_rule(ctx: AssetContext) -> Iterator[Issue]:
    est = asset_estimate(ctx)
    if est is not None:
        ctx.cache["estimate-dict"] = est.as_dict()
        yield ctx.issue("budget.estimate", "info", "",
                        f"needs about {_fmt(est.total)} of GPU memory (meshes {_fmt(est.meshes)}, textures "
                        f"{_fmt(est.textures)}, voxels {_fmt(est.voxels)}, acceleration structures {_fmt(est.accel)})")


def _fits_rule(ctx: AssetContext) -> Iterator[Issue]:
    limit = ctx.options.budget_bytes
    est = asset_estimate(ctx)
    if limit is None or est is None:
        return
    if est.total - est.accel > limit:
        yield ctx.issue("budget.exceeds", "error", "",
                        f"needs about {_fmt(est.total - est.accel)} without acceleration structures, over the "
                        f"{_fmt(limit)} budget")
    elif est.total > limit:
        yield ctx.issue("budget.exceeds", "warning", "",
                        f"fits the {_fmt(limit)} budget, but not with acceleration structures "
                        f"({_fmt(est.total)})")


@hookimpl
def vixen_register_validators(register: Any) -> None:
    """Register ``budget.estimate`` and ``budget.exceeds``."""
    register("budget.estimate", severity="info", doc="the GPU memory the asset will need, from headers and counts",
             check=_estimate_rule, suffixes=SUFFIXES)
    register("budget.exceeds", severity="error", doc="the asset fits the --budget-mb budget",
             check=_fits_rule, suffixes=SUFFIXES)
