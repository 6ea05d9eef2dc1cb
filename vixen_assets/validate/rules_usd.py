"""Built-in USD rules: ``usd.open-failed``, ``security.outside-root`` and every validator of usd-core's
``UsdValidation`` registry wrapped as ``usd.<validator name>`` (e.g. ``usd.usdGeomValidators:SubsetFamilies``).

The selected UsdValidation validators of an asset run together in one ``ValidationContext`` (one traversal); their
errors are shared out to the rules by ``ValidationError.GetValidator()``. A Python validator that raises would make
``Validate()`` raise, so then each validator runs alone and the one that raised is reported as an error of its
own rule instead of escaping.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..hookspecs import hookimpl
from .context import AssetContext
from .model import USD_SUFFIXES, Issue

_SEVERITY = {"Error": "error", "Warn": "warning", "Info": "info"}


def _open_failed(ctx: AssetContext) -> Iterator[Issue]:
    if ctx.stage() is None and ctx.stage_error:
        yield ctx.issue("usd.open-failed", "error", "", f"the stage cannot be opened: {ctx.stage_error}")


def _outside_root(ctx: AssetContext) -> Iterator[Issue]:
    ctx.stage()
    for layer, authored, resolved in ctx.outside_root:
        yield ctx.issue("security.outside-root", "error", authored,
                        f"{layer} references {authored!r}, which resolves to {resolved}, outside "
                        f"{ctx.options.confine}; it was not opened")
    stage = ctx.stage()
    if stage is None or ctx.options.confine is None:
        return
    from pxr import Sdf

    from .context import inside

    for prim in stage.Traverse():  # asset-valued attributes (textures, .vox files)
        for attr in prim.GetAttributes():
            if attr.GetTypeName() != Sdf.ValueTypeNames.Asset:
                continue
            value = attr.Get()
            resolved = getattr(value, "resolvedPath", "") if value is not None else ""
            if resolved and not inside(resolved, ctx.options.confine):
                yield ctx.issue("security.outside-root", "error", str(attr.GetPath()),
                                f"asset {value.path!r} resolves to {resolved}, outside {ctx.options.confine}; "
                                "it is not read")


def _site_pointer(site: Any) -> str:
    if site.IsProperty():
        return str(site.GetProperty().GetPath())
    if site.IsPrim():
        return str(site.GetPrim().GetPath())
    layer = site.GetLayer()
    return layer.identifier if layer else ""


def _usd_errors(ctx: AssetContext) -> dict[str, list[Issue]]:
    """Run every selected UsdValidation validator once; issues by rule id."""
    if "usd-validation" in ctx.cache:
        return ctx.cache["usd-validation"]
    out: dict[str, list[Issue]] = {}
    ctx.cache["usd-validation"] = out
    stage = ctx.stage()
    if stage is None:
        return out
    from pxr import UsdValidation

    registry = UsdValidation.ValidationRegistry()
    names = [rid[len("usd."):] for rid in sorted(ctx.selected) if rid.startswith("usd.") and rid != "usd.open-failed"]
    validators = []
    for name in names:
        if registry.HasValidator(name):
            validators.append((name, registry.GetOrLoadValidatorByName(name)))

    def collect(errors: Any) -> None:
        for err in errors:
            v = err.GetValidator()
            rid = "usd." + (v.GetMetadata().name if v is not None else "unknown")
            sites = err.GetSites()
            pointer = _site_pointer(sites[0]) if sites else ""
            sev = _SEVERITY.get(err.GetType().displayName, "error")
            out.setdefault(rid, []).append(ctx.issue(rid, sev, pointer, f"{err.GetName()}: {err.GetMessage()}"))

    try:
        collect(UsdValidation.ValidationContext([v for _, v in validators]).Validate(stage))
    except Exception:  # a Python validator raised: run them one by one so the others still report
        out.clear()
        for name, v in validators:
            try:
                collect(UsdValidation.ValidationContext([v]).Validate(stage))
            except Exception as exc:
                rid = "usd." + name
                out.setdefault(rid, []).append(ctx.issue(rid, "error", "", f"validator raised {type(exc).__name__}: "
                                                                           f"{exc}"))
    return out


def usd_fix(ctx: AssetContext, issues: list[Issue], out_dir: str) -> list[str]:
    """Apply usd-core's own fixers (``ValidationFixer``) of the validator behind the issues' rule to ``ctx.stage()``
    (its edit target: the root layer); returns the pointers of the errors fixed. The engine exports the copy."""
    from pxr import Usd, UsdValidation

    stage = ctx.stage()
    if stage is None or not issues:
        return []
    name = issues[0].code[len("usd."):]
    validator = UsdValidation.ValidationRegistry().GetOrLoadValidatorByName(name)
    fixers = validator.GetFixers() if validator is not None else []
    if not fixers:
        return []
    fixed = []
    target, time = stage.GetEditTarget(), Usd.TimeCode.Default()
    for err in UsdValidation.ValidationContext([validator]).Validate(stage):
        for fixer in fixers:
            if fixer.CanApplyFix(err, target, time) and fixer.ApplyFix(err, target, time):
                sites = err.GetSites()
                fixed.append(f"{_site_pointer(sites[0]) if sites else ''} ({fixer.name})")
                break
    return fixed


def _wrap(rule_id: str) -> Any:
    def check(ctx: AssetContext) -> list[Issue]:
        return _usd_errors(ctx).get(rule_id, [])

    check.__name__ = f"check_{rule_id}"
    return check


@hookimpl
def vixen_register_validators(register: Any) -> None:
    """Register ``usd.open-failed``, ``security.outside-root`` and one ``usd.<name>`` rule per UsdValidation
    validator."""
    from pxr import UsdValidation

    register("usd.open-failed", severity="error", doc="the stage opens (layers parse, sublayers resolve)",
             check=_open_failed, suffixes=USD_SUFFIXES)
    register("security.outside-root", severity="error",
             doc="no layer or asset reference resolves outside the --confine root", check=_outside_root,
             suffixes=USD_SUFFIXES)
    registry = UsdValidation.ValidationRegistry()
    for md in sorted(registry.GetAllValidatorMetadata(), key=lambda m: m.name):
        if md.isSuite:
            continue
        doc = " ".join((md.doc or md.name).split())
        fixable = bool(registry.GetOrLoadValidatorByName(md.name).GetFixers())
        register(f"usd.{md.name}", severity="error", doc=doc, check=_wrap(f"usd.{md.name}"), suffixes=USD_SUFFIXES,
                 fix=usd_fix if fixable else None)
