"""Checking one asset: build the rule registry (built-in rule plugins and every plugin's
``vixen_register_validators``), then run the selected rules on one file. :func:`check_asset` is what a worker
process (local pool or Dask) runs; it never raises for a bad asset or a failing rule."""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import PluginError
from .context import AssetContext, CheckOptions, inside
from .model import USD_SUFFIXES, AssetResult, Issue, Rule, RuleRegistry

if TYPE_CHECKING:
    from ..device import Device

log = logging.getLogger("vixen_assets.validate")

#: The built-in rules, registered as plugins through the same hook as third-party rules.
BUILTIN_RULE_PLUGINS: tuple[str, ...] = (
    "vixen_assets.validate.rules_usd",
    "vixen_assets.validate.rules_geometry",
    "vixen_assets.validate.rules_ktx2",
    "vixen_assets.validate.rules_vox",
    "vixen_assets.validate.rules_budget",
    "vixen_assets.validate.rules_gpu",
)

_REGISTRIES: dict[tuple[str, ...], RuleRegistry] = {}


def build_registry(pm: Any = None, plugins: Sequence[str] = ()) -> RuleRegistry:
    """A registry of every rule: the built-in rule plugins, the manager's plugins (entry points) and the extra
    plugin modules ``plugins`` (importable names), each registered all-or-nothing; a plugin whose registration
    fails is logged and dropped.

    :param pm: a plugin manager (default: a new one from :func:`~vixen_assets.plugins.get_plugin_manager`).
    :param plugins: module names to register as plugins first (e.g. test rules).
    :returns: the registry.
    """
    from ..plugins import get_plugin_manager, validator_impls

    if pm is None:
        pm = get_plugin_manager()
    for name in (*BUILTIN_RULE_PLUGINS, *plugins):
        module = importlib.import_module(name)
        if pm.get_plugin(name) is None and not pm.is_registered(module):  # e.g. already loaded by entry point
            pm.register(module, name=name)
    reg = RuleRegistry()
    impls = validator_impls(pm)
    impls.sort(key=lambda item: item[0] not in BUILTIN_RULE_PLUGINS)  # built-ins first, then registration order
    for plugin_name, fn in impls:
        try:
            with reg.transaction(plugin_name):
                try:
                    fn(register=reg.register)
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(f"{type(exc).__name__}: {exc}", plugin=plugin_name,
                                      hook="vixen_register_validators(register)") from exc
        except PluginError as exc:
            log.warning("%s", exc)
    return reg


def registry_for(plugins: Sequence[str] = ()) -> RuleRegistry:
    """The process's registry for ``plugins`` (built once per process)."""
    key = tuple(plugins)
    if key not in _REGISTRIES:
        _REGISTRIES[key] = build_registry(plugins=key)
    return _REGISTRIES[key]


def rules_hash(rule_ids: Iterable[str], options: CheckOptions) -> str:
    """A short hash of the rule set and the options that change results (what ``--resume`` compares)."""
    text = "|".join(sorted(rule_ids)) + f"|{options.budget_bytes}|{options.gpu}|{options.confine}|{options.max_issues}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class AssetTask:
    """One asset to check: the path, the selected rule ids, extra plugin modules and the options."""

    path: str
    rule_ids: tuple[str, ...]
    options: CheckOptions = field(default_factory=CheckOptions)
    plugins: tuple[str, ...] = ()


_DEVICE: list[Device] = []
_VALIDATION_SEEN = [0]  # validation messages of the worker's device already reported


def _worker_device() -> Device:
    if not _DEVICE:
        from ..device import open_device

        _DEVICE.append(open_device())
    return _DEVICE[0]


def close_worker_device() -> list[str]:
    """Close the worker's device (if one was opened); returns what its close report lists (leaked objects)."""
    if not _DEVICE:
        return []
    device = _DEVICE.pop()
    report = device.close_report()
    device.close()
    return report


def _as_issue(ctx: AssetContext, rule: Rule, item: Any) -> Issue:
    if isinstance(item, Issue):
        return item
    code, severity, file, pointer, message = item
    return Issue(str(code), str(severity), str(file or ctx.path), str(pointer), str(message))


class _Capped(list):
    """The asset's issues; stops growing at ``cap`` (0: no cap) so that a flood of messages cannot exhaust memory."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap
        self.truncated = False

    @property
    def full(self) -> bool:
        return bool(self.cap) and len(self) >= self.cap


def _run(rule: Rule, ctx: AssetContext, out: _Capped, *args: Any) -> None:
    if out.full:
        out.truncated = True
        return
    try:
        for item in rule.check(ctx, *args) or ():
            if out.full:  # stop consuming the check: the cap is reached
                out.truncated = True
                return
            out.append(_as_issue(ctx, rule, item))
    except Exception as exc:  # a failing rule is an issue of that rule, never a failed job
        where = str(args[0].GetPath()) if args else ""
        out.append(Issue(rule.id, "error", ctx.path, where, f"rule raised {type(exc).__name__}: {exc}"))


def _prims(stage: Any) -> Iterable[Any]:
    from pxr import Usd

    yield from stage.Traverse()
    for proto in stage.GetPrototypes():
        yield from Usd.PrimRange(proto)


def check_asset(task: AssetTask) -> AssetResult:
    """Run the task's rules on its file and return the result (never raises for the asset's content).

    :param task: what to check.
    :returns: the :class:`AssetResult` (status ``ok``; crashes and timeouts are decided by the pool).
    """
    t0 = time.perf_counter()
    result = AssetResult(uri=task.path, rules_hash=rules_hash(task.rule_ids, task.options))
    try:
        st = os.stat(task.path)
        result.size, result.mtime_ns = st.st_size, st.st_mtime_ns
    except OSError as exc:
        result.issues.append(Issue("io.unreadable", "error", task.path, "", f"cannot read the file: {exc}"))
        return result
    if task.options.confine is not None and not inside(task.path, task.options.confine):
        result.issues.append(Issue("security.outside-root", "error", task.path, "",
                                   f"the asset resolves outside {task.options.confine}; it was not opened"))
        return result
    registry = registry_for(task.plugins)
    ctx = AssetContext(task.path, task.options, frozenset(task.rule_ids),
                       _worker_device if task.options.gpu else None)
    rules = [registry.rules[r] for r in task.rule_ids if r in registry.rules]
    rules = [r for r in rules if r.applies_to_suffix(ctx.suffix)]
    issues = _Capped(task.options.max_issues)
    for rule in rules:
        if rule.scope != "prim":
            _run(rule, ctx, issues)
    prim_rules = [r for r in rules if r.scope == "prim"]
    if prim_rules and ctx.suffix in USD_SUFFIXES and ctx.stage() is not None:
        by_type: dict[str, list[Rule]] = {}
        for r in prim_rules:
            for t in r.prim_types:
                by_type.setdefault(t, []).append(r)
        for prim in _prims(ctx.stage()):
            for r in by_type.get(str(prim.GetTypeName()), ()):
                _run(r, ctx, issues, prim)
    if task.options.gpu and _DEVICE:
        problems = _DEVICE[0].validation_problems()
        for msg in problems[_VALIDATION_SEEN[0]:]:
            if issues.full:
                issues.truncated = True
                break
            issues.append(Issue("gpu.round-trip", "error", task.path, "", f"Vulkan validation: {msg}"))
        _VALIDATION_SEEN[0] = len(problems)
    if task.options.fix_dir:
        _fix(ctx, registry, issues, task.options.fix_dir, result)
    result.truncated = issues.truncated
    result.issues = list(issues)
    if "estimate-dict" in ctx.cache:
        result.info["estimate"] = ctx.cache["estimate-dict"]
    result.info.update(ctx.cache.get("info", {}))
    result.seconds = time.perf_counter() - t0
    return result


def _fix(ctx: AssetContext, registry: RuleRegistry, issues: list[Issue], fix_dir: str, result: AssetResult) -> None:
    """Apply every fixer whose rule reported issues; write the fixed stage under ``fix_dir`` (never in place)."""
    by_rule: dict[str, list[Issue]] = {}
    for i in issues:
        by_rule.setdefault(i.code, []).append(i)
    fixed: list[str] = []
    for rid, found in by_rule.items():
        rule = registry.rules.get(rid)
        if rule is None or rule.fix is None:
            continue
        try:
            for pointer in rule.fix(ctx, found, fix_dir) or ():
                fixed.append(f"{rid}: {pointer}")
        except Exception as exc:  # noqa: BLE001 - a failing fixer leaves the issue unfixed and says why
            result.detail += f"fixer of {rid} raised {type(exc).__name__}: {exc}\n"
    if fixed and ctx.stage() is not None:
        # the folder's hash keeps same-named inputs from different folders apart
        tag = hashlib.blake2b(os.path.dirname(ctx.path).encode(), digest_size=4).hexdigest()
        out = os.path.join(fix_dir, f"{os.path.splitext(os.path.basename(ctx.path))[0]}.{tag}.usda")
        os.makedirs(fix_dir, exist_ok=True)
        ctx.stage().Export(out)  # flattened: the copy does not depend on relative paths next to the original
        result.info["fixed_path"] = out
    result.fixed = fixed
