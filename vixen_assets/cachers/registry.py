"""``CacherRegistry``: which cacher class handles which USD prim type and which file suffix.

Filled through the ``vixen_register_cachers`` hook. Registration is all-or-nothing per plugin: the plugin manager
opens a transaction around each plugin's hook call (:meth:`CacherRegistry.transaction`); a duplicate claim raises
:class:`~vixen_assets.errors.PluginError` naming both plugins and drops everything that plugin registered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import PluginError


@dataclass(frozen=True)
class Registration:
    """One cacher class and what it handles."""

    cacher: type
    plugin: str
    prim_types: tuple[str, ...]
    suffixes: tuple[str, ...]
    prim_attributes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The cacher's ``name``."""
        return str(getattr(self.cacher, "name", self.cacher.__name__))


class CacherRegistry:
    """Maps prim type names and file suffixes to cacher classes."""

    def __init__(self) -> None:
        """Start empty."""
        self._by_type: dict[str, Registration] = {}
        self._by_suffix: dict[str, Registration] = {}
        self._by_attribute: dict[str, Registration] = {}
        self._by_name: dict[str, Registration] = {}
        self._plugin = "<direct>"
        self._pending: list[Registration] | None = None

    @contextlib.contextmanager
    def transaction(self, plugin: str) -> Iterator[None]:
        """Collect one plugin's registrations; commit them together or none of them."""
        self._plugin = plugin
        self._pending = []
        try:
            yield
            pending = self._pending
            self._pending = None
            for reg in pending:
                self._check(reg)
            staged: set[str] = set()
            for reg in pending:
                for key in [f"type:{t}" for t in reg.prim_types] + [f"suffix:{s}" for s in reg.suffixes] + [f"name:{reg.name}"]:
                    if key in staged:
                        raise PluginError(f"registers {key.split(':', 1)[1]!r} twice", plugin=plugin,
                                          hook="vixen_register_cachers(registry)")
                    staged.add(key)
            for reg in pending:
                self._commit(reg)
        finally:
            self._pending = None
            self._plugin = "<direct>"

    def register(self, cacher: type, *, prim_types: tuple[str, ...] | None = None,
                 suffixes: tuple[str, ...] | None = None) -> None:
        """Register ``cacher`` for its ``prim_types`` and ``suffixes`` (class attributes unless given here)."""
        types = tuple(prim_types if prim_types is not None else getattr(cacher, "prim_types", ()))
        sfx = tuple(s.lower() for s in (suffixes if suffixes is not None else getattr(cacher, "suffixes", ())))
        attrs = tuple(getattr(cacher, "prim_attributes", ()))
        if not types and not sfx and not attrs:
            raise PluginError(f"cacher {cacher.__name__} handles no prim type and no suffix", plugin=self._plugin,
                              hook="vixen_register_cachers(registry)")
        reg = Registration(cacher, self._plugin, types, sfx, attrs)
        if self._pending is not None:
            self._pending.append(reg)
        else:
            self._check(reg)
            self._commit(reg)

    __call__ = register

    def _claims(self, reg: Registration) -> list[tuple[str, tuple[str, ...], dict[str, Registration]]]:
        """What a registration claims, kind by kind, with the map that records each kind."""
        return [("prim type", reg.prim_types, self._by_type), ("suffix", reg.suffixes, self._by_suffix),
                ("prim attribute", reg.prim_attributes, self._by_attribute)]

    def _check(self, reg: Registration) -> None:
        for kind, names, taken in self._claims(reg):
            for n in names:
                if n in taken:
                    other = taken[n]
                    raise PluginError(f"cacher {reg.cacher.__name__} claims {kind} {n!r}, already handled by "
                                      f"{other.cacher.__name__} of plugin {other.plugin!r}", plugin=reg.plugin,
                                      hook="vixen_register_cachers(registry)")
        if reg.name in self._by_name:
            other = self._by_name[reg.name]
            raise PluginError(f"cacher name {reg.name!r} is already used by {other.cacher.__name__} of plugin "
                              f"{other.plugin!r}", plugin=reg.plugin, hook="vixen_register_cachers(registry)")

    def _commit(self, reg: Registration) -> None:
        for _kind, names, taken in self._claims(reg):
            for n in names:
                taken[n] = reg
        self._by_name[reg.name] = reg

    # -- lookups --------------------------------------------------------------------------------------------------
    def for_prim_type(self, type_name: str) -> Registration | None:
        """The registration handling a prim type, or ``None``."""
        return self._by_type.get(type_name)

    def for_suffix(self, suffix: str) -> Registration | None:
        """The registration handling a file suffix (``".vox"``), or ``None``."""
        return self._by_suffix.get(suffix.lower())

    def by_name(self, name: str) -> Registration | None:
        """The registration of the cacher called ``name``, or ``None``."""
        return self._by_name.get(name)

    def registrations(self) -> list[Registration]:
        """Every registration, in registration order."""
        return list(self._by_name.values())

    def prim_types(self) -> dict[str, Registration]:
        """Prim type -> registration."""
        return dict(self._by_type)

    def prim_attributes(self) -> dict[str, Registration]:
        """Attribute name -> registration (prims authoring that attribute go to that cacher)."""
        return dict(self._by_attribute)

    def suffixes(self) -> dict[str, Registration]:
        """File suffix -> registration."""
        return dict(self._by_suffix)

    def describe(self) -> list[dict[str, Any]]:
        """JSON-friendly list of registrations."""
        return [{"cacher": r.name, "class": f"{r.cacher.__module__}.{r.cacher.__qualname__}", "plugin": r.plugin,
                 "prim_types": list(r.prim_types), "suffixes": list(r.suffixes),
                 "prim_attributes": list(r.prim_attributes)} for r in self.registrations()]
