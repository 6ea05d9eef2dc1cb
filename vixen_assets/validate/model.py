"""What a validation job is made of: :class:`Issue`, :class:`Rule`, the :class:`RuleRegistry` that the
``vixen_register_validators(register)`` hook fills, and :class:`AssetResult` (one checked asset).

Everything here is plain data that pickles, so results travel from worker processes (or Dask workers) unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, PluginError

#: Severities, most severe first (glTF-Validator also has hints; our rules use these three).
SEVERITIES = ("error", "warning", "info")

#: Status of a checked asset: ``ok`` (the rules ran; also for assets resumed from an earlier report, whose
#: ``info["resumed"]`` is true), ``crashed`` (its worker died) or ``timeout``.
STATUSES = ("ok", "crashed", "timeout")


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem: ``code`` (a rule id), ``severity``, the ``file``, a ``pointer`` inside it (a prim path with an
    optional ``.property``, a KTX2 field such as ``levels[1].byteOffset``, a .vox chunk) and a message."""

    code: str
    severity: str
    file: str
    pointer: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """The issue as glTF-Validator spells a message (plus ``file``)."""
        return {"code": self.code, "severity": self.severity, "pointer": self.pointer, "message": self.message,
                "file": self.file}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Issue:
        """Inverse of :meth:`to_dict`."""
        return cls(d["code"], d["severity"], d.get("file", ""), d.get("pointer", ""), d["message"])


#: A rule's check: ``check(ctx)`` for file and stage rules, ``check(ctx, prim)`` for prim rules; yields issues as
#: :class:`Issue` or ``(code, severity, file, pointer, message)`` tuples.
CheckFn = Callable[..., Iterable[Any]]


@dataclass(frozen=True)
class Rule:
    """A validation rule.

    ``prim_types`` (USD type names, e.g. ``("Mesh",)``) makes it a prim rule called once per matching prim of a USD
    stage; otherwise ``suffixes`` (e.g. ``(".ktx2",)``) says which files it checks, and a rule with neither checks
    every asset. ``fix(ctx, issues, out_dir)`` (optional) writes a fixed copy and returns what it fixed.
    """

    id: str
    severity: str
    doc: str
    check: CheckFn
    prim_types: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    fix: Callable[..., Any] | None = None
    plugin: str = ""

    @property
    def scope(self) -> str:
        """``prim``, ``file`` or ``asset``."""
        return "prim" if self.prim_types else ("file" if self.suffixes else "asset")

    def applies_to_suffix(self, suffix: str) -> bool:
        """Whether the rule checks a file with ``suffix`` (prim rules check USD files)."""
        if self.prim_types:
            return suffix in USD_SUFFIXES
        return not self.suffixes or suffix in self.suffixes


USD_SUFFIXES = (".usd", ".usda", ".usdc", ".usdz")


class RuleRegistry:
    """Rules by id, filled by ``vixen_register_validators(register)``; ``register`` is :meth:`register`."""

    def __init__(self) -> None:
        self.rules: dict[str, Rule] = {}
        self._plugin = ""
        self._pending: dict[str, Rule] | None = None

    def register(self, rule: Rule | str, *, severity: str = "error", doc: str = "", check: CheckFn | None = None,
                 prim_types: Iterable[str] = (), suffixes: Iterable[str] = (),
                 fix: Callable[..., Any] | None = None) -> Rule:
        """Register a rule, given as a :class:`Rule` or as its id plus keywords.

        :param rule: a :class:`Rule`, or the rule id (``"geom.points-nan"``: a dotted family and a name).
        :param severity: ``error``, ``warning`` or ``info``.
        :param doc: a one-line description.
        :param check: the check function (see :class:`Rule`).
        :param prim_types: USD prim type names the rule applies to.
        :param suffixes: file suffixes (with the dot) the rule applies to.
        :param fix: optional fixer.
        :returns: the registered rule.
        :raises ConfigError: for a malformed rule; :raises PluginError: for an id already registered.
        """
        if not isinstance(rule, Rule):
            if check is None:
                raise ConfigError(f"rule {rule!r} needs a check function", option="check")
            rule = Rule(str(rule), severity, doc, check, tuple(prim_types), tuple(s.lower() for s in suffixes), fix)
        if rule.severity not in SEVERITIES:
            raise ConfigError(f"rule {rule.id!r}: severity {rule.severity!r} is not one of {SEVERITIES}",
                              option="severity")
        if "." not in rule.id or not callable(rule.check):
            raise ConfigError(f"rule id {rule.id!r} must be 'family.name' with a callable check", option="id")
        rule = Rule(rule.id, rule.severity, rule.doc, rule.check, rule.prim_types, rule.suffixes, rule.fix,
                    self._plugin)
        target = self._pending if self._pending is not None else self.rules
        other = self.rules.get(rule.id) or target.get(rule.id)
        if other is not None:
            raise PluginError(f"rule {rule.id!r} is already registered by plugin {other.plugin!r}",
                              plugin=self._plugin, hook="vixen_register_validators(register)")
        target[rule.id] = rule
        return rule

    @contextlib.contextmanager
    def transaction(self, plugin: str) -> Iterator[None]:
        """All-or-nothing registration of one plugin's rules."""
        self._plugin, self._pending = plugin, {}
        try:
            yield
            self.rules.update(self._pending)
        finally:
            self._plugin, self._pending = "", None

    def select(self, only: Iterable[str] | None = None, skip: Iterable[str] = ()) -> list[Rule]:
        """Rules whose id matches one of ``only`` (all when ``None``) and none of ``skip``; a pattern is an id, a
        family prefix ending in ``.`` or ``*`` (``usd.*``), or an :mod:`fnmatch` glob."""
        from fnmatch import fnmatchcase

        def match(rule_id: str, pattern: str) -> bool:
            if pattern.endswith(".") or pattern.endswith(".*"):
                return rule_id.startswith(pattern.rstrip("*"))
            return rule_id == pattern or fnmatchcase(rule_id, pattern)

        only = list(only) if only is not None else None
        skip = list(skip)
        if only is not None:
            unknown = [p for p in only if not any(match(r, p) for r in self.rules)]
            if unknown:
                raise ConfigError(f"no rule matches {', '.join(map(repr, unknown))}", option="--rule")
        return [r for r in self.rules.values()
                if (only is None or any(match(r.id, p) for p in only)) and not any(match(r.id, p) for p in skip)]


@dataclass
class AssetResult:
    """One checked asset: its path, status, issues and facts (size, mtime, seconds, rule set, ``truncated``)."""

    uri: str
    status: str = "ok"
    issues: list[Issue] = field(default_factory=list)
    truncated: bool = False
    seconds: float = 0.0
    size: int = 0
    mtime_ns: int = 0
    rules_hash: str = ""
    detail: str = ""
    fixed: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Issues per severity."""
        out = dict.fromkeys(SEVERITIES, 0)
        for i in self.issues:
            out[i.severity] = out.get(i.severity, 0) + 1
        return out

    @property
    def failed(self) -> bool:
        """Whether the asset has an error, crashed or timed out."""
        return self.status in ("crashed", "timeout") or any(i.severity == "error" for i in self.issues)
