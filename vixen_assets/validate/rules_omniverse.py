"""NVIDIA's Omniverse Asset Validator rules as ``omni.<Checker>`` validation rules (optional: ``pip install
'vixen-assets[omniverse]'``, then ``vixen-assets validate --plugin vixen_assets.validate.rules_omniverse`` or
``validate(..., plugins=("vixen_assets.validate.rules_omniverse",))``).

Not registered by default: importing the package costs about half a second per worker and several of its 40 rules
overlap ours (extents, zero-area faces, subsets). The selected checkers of an asset run in one
``ValidationEngine``; each issue keeps the checker's fix suggestion in its message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from ..hookspecs import hookimpl
from .context import AssetContext
from .model import USD_SUFFIXES, Issue

_SEVERITY = {"FAILURE": "error", "ERROR": "error", "WARNING": "warning", "INFO": "info", "NONE": "info"}


def _import() -> Any:
    logging.getLogger("omni.asset_validator").setLevel(logging.WARNING)
    import omni.asset_validator as av

    return av


def _pointer(at: Any) -> str:
    path = getattr(at, "path", None)
    if path is not None:
        return str(path)
    return str(getattr(getattr(at, "layer_id", None), "identifier", "") or "")


def _issues(ctx: AssetContext) -> dict[str, list[Issue]]:
    if "omni" in ctx.cache:
        return ctx.cache["omni"]
    out: dict[str, list[Issue]] = {}
    ctx.cache["omni"] = out
    stage = ctx.stage()
    if stage is None:
        return out
    av = _import()
    wanted = {rid[len("omni."):] for rid in ctx.selected if rid.startswith("omni.")}
    engine = av.ValidationEngine(init_rules=False)
    for rule in av.CategoryRuleRegistry().rules:
        if rule.__name__ in wanted:
            engine.enable_rule(rule)
    try:
        results = engine.validate(stage)
    except Exception as exc:  # noqa: BLE001 - the package's failure is reported, not raised
        for name in sorted(wanted):
            out.setdefault(f"omni.{name}", []).append(ctx.issue(f"omni.{name}", "error", "",
                                                                f"Omniverse Asset Validator raised {exc!r}"))
        return out
    for issue in results.issues():
        rid = f"omni.{issue.rule.__name__ if issue.rule else 'unknown'}"
        sev = _SEVERITY.get(getattr(issue.severity, "name", "FAILURE"), "error")
        msg = str(issue.message)
        if issue.suggestion is not None:
            msg += f" (fix: {issue.suggestion.message})"
        out.setdefault(rid, []).append(ctx.issue(rid, sev, _pointer(issue.at), msg))
    return out


def _rule(rule_id: str) -> Any:
    def check(ctx: AssetContext) -> Iterator[Issue]:
        return iter(_issues(ctx).get(rule_id, []))

    return check


@hookimpl
def vixen_register_validators(register: Any) -> None:
    """Register one ``omni.<Checker>`` rule per Omniverse Asset Validator rule (nothing when not installed)."""
    try:
        av = _import()
    except ImportError:
        return
    reg = av.CategoryRuleRegistry()
    for rule in reg.rules:
        doc = " ".join((rule.__doc__ or rule.__name__).split()).split(". ")[0]
        register(f"omni.{rule.__name__}", severity="error", doc=f"[{reg.get_category(rule)}] {doc}",
                 check=_rule(f"omni.{rule.__name__}"), suffixes=USD_SUFFIXES)
