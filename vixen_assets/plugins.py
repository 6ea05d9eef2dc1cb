"""The plugin manager: built-in plugins, then the ``vixen_assets`` entry points, with typed hook-call wrappers.

``get_plugin_manager()`` builds a fresh manager each call (tests use one per test); ``default_plugin_manager()``
returns the process-wide one the library uses when none is passed. Nothing is loaded at import time.
``VIXEN_ASSETS_DISABLE_PLUGIN_AUTOLOAD=1`` turns entry-point loading off.

A plugin that fails to import is recorded in ``pm.vixen_failures`` and logged with its name; the others still load.
A notification hook that raises is reported with the plugin's name and does not stop the caller.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .cachers.registry import CacherRegistry
from .errors import PluginError
from .hookcalls import _impls, notify_asset_cached, notify_progress, notify_stage_loaded

if TYPE_CHECKING:
    from .device import Device
    from .scene import Scene

log = logging.getLogger("vixen_assets.plugins")

ENTRY_POINT_GROUP = "vixen_assets"
DISABLE_AUTOLOAD_ENV = "VIXEN_ASSETS_DISABLE_PLUGIN_AUTOLOAD"

#: The built-in behaviour, registered like any plugin (module names under ``vixen_assets``).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "vixen_assets.cachers.mesh",
    "vixen_assets.cachers.voxel",
    "vixen_assets.cachers.texture",
)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or registered."""

    name: str
    error: str


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin: name, version, the hooks it implements, and whether it is built in."""

    name: str
    version: str
    hooks: tuple[str, ...]
    builtin: bool


class VixenPluginManager(pluggy.PluginManager):
    """A pluggy ``PluginManager`` that remembers plugin versions and load failures."""

    def __init__(self) -> None:
        """Create it with the hook specifications added."""
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.vixen_failures: list[PluginFailure] = []
        self.vixen_versions: dict[str, str] = {}
        self.vixen_builtin: set[str] = set()
        self._registry: CacherRegistry | None = None

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        """Register ``plugin`` (as pluggy does) and forget the cacher registry, so the next use sees its cachers."""
        self._registry = None
        return super().register(plugin, name)

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        """Unregister a plugin (as pluggy does) and forget the cacher registry, so its cachers are no longer used."""
        self._registry = None
        return super().unregister(plugin, name)


def _load_entry_points(pm: VixenPluginManager) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken plugin must not take the others down
            msg = f"{type(exc).__name__}: {exc}"
            pm.vixen_failures.append(PluginFailure(ep.name, msg))
            log.warning("vixen-assets plugin %r failed to load: %s", ep.name, msg)
            continue
        dist = getattr(ep, "dist", None)
        pm.vixen_versions[ep.name] = getattr(dist, "version", "?") if dist is not None else "?"


def _core_version() -> str:
    """This package's version from its metadata (not from the package face, which imports this module)."""
    try:
        return importlib.metadata.version("vixen-assets")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def get_plugin_manager(*, load_entrypoints: bool | None = None) -> VixenPluginManager:
    """Build a new plugin manager: built-in plugins, then entry points (unless disabled), then ``check_pending()``."""
    pm = VixenPluginManager()
    version = _core_version()
    for modname in DEFAULT_PLUGINS:
        mod = importlib.import_module(modname)
        pm.register(mod, name=modname)
        pm.vixen_versions[modname] = version
        pm.vixen_builtin.add(modname)
    if load_entrypoints is None:
        load_entrypoints = os.environ.get(DISABLE_AUTOLOAD_ENV, "") in ("", "0")
    if load_entrypoints:
        _load_entry_points(pm)
    while True:
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as exc:  # e.g. a misspelt hook name
            name = pm.get_name(exc.plugin) if exc.plugin is not None else None
            if name is None or name in pm.vixen_builtin:
                raise PluginError(str(exc), plugin=name or "?") from exc
            # a broken third-party plugin is dropped and reported; the others stay
            pm.unregister(exc.plugin)
            pm.vixen_versions.pop(name, None)
            err = PluginError(str(exc), plugin=name)
            pm.vixen_failures.append(PluginFailure(name, str(err)))
            log.warning("%s", err)
    return pm


_default: VixenPluginManager | None = None
_default_lock = threading.Lock()


def default_plugin_manager() -> VixenPluginManager:
    """The process-wide plugin manager (built on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = get_plugin_manager()
        return _default


def reset_default_plugin_manager() -> None:
    """Forget the process-wide manager (the next use rebuilds it, e.g. after installing a plugin)."""
    global _default
    with _default_lock:
        _default = None


def plugin_infos(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Describe every registered plugin (name, version, hooks)."""
    out = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or []))
        out.append(PluginInfo(name, getattr(pm, "vixen_versions", {}).get(name, "?"), hooks,
                              name in getattr(pm, "vixen_builtin", set())))
    return out


# -- typed wrappers around hook calls --------------------------------------------------------------------------------

def cacher_registry(pm: pluggy.PluginManager) -> CacherRegistry:
    """The manager's cacher registry, built once by calling every ``vixen_register_cachers`` implementation."""
    reg = getattr(pm, "_registry", None)
    if reg is not None:
        return reg
    reg = CacherRegistry()
    failures = getattr(pm, "vixen_failures", [])
    for impl in reversed(_impls(pm, "vixen_register_cachers")):  # registration order: built-ins first
        try:
            with reg.transaction(impl.plugin_name):
                try:
                    impl.function(registry=reg)
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(f"{type(exc).__name__}: {exc}", plugin=impl.plugin_name,
                                      hook="vixen_register_cachers(registry)") from exc
        except PluginError as exc:  # that plugin's cachers are dropped, the others stay
            failure = PluginFailure(impl.plugin_name, str(exc))
            if failure not in failures:  # the registry is rebuilt after (un)registering a plugin
                failures.append(failure)
                log.warning("%s", exc)
    pm._registry = reg  # type: ignore[attr-defined]
    return reg


def validator_impls(pm: pluggy.PluginManager) -> list[tuple[str, Any]]:
    """``(plugin name, function)`` of every ``vixen_register_validators`` implementation, in registration order;
    the validation package calls each with its registry's ``register`` (built-in rule plugins first).

    :param pm: the plugin manager.
    :returns: the implementations, first registered first.
    """
    return [(impl.plugin_name, impl.function) for impl in reversed(_impls(pm, "vixen_register_validators"))]


def resolve_asset_path(pm: pluggy.PluginManager, asset_path: str, anchor: str) -> str | None:
    """Call ``vixen_resolve_asset_path``; the first non-``None`` answer, or ``None``."""
    try:
        return pm.hook.vixen_resolve_asset_path(asset_path=asset_path, anchor=anchor)
    except Exception as exc:
        raise PluginError(f"{type(exc).__name__}: {exc}", hook="vixen_resolve_asset_path(asset_path, anchor)") from exc


def load_scene_file(pm: pluggy.PluginManager, path: str, device: Device, options: dict[str, Any]) -> Scene | None:
    """Call ``vixen_load_scene_file``: the first plugin's ``Scene`` for a non-USD file, or ``None``.

    :param pm: the plugin manager.
    :param path: the file.
    :param device: the :class:`~vixen_assets.Device`.
    :param options: ``load_stage``'s options (see the hook's documentation).
    :returns: the scene, or ``None`` when no plugin handles the file.
    :raises VixenError: what the plugin raised (``FormatError`` naming the file, ...); any other exception becomes a
        ``PluginError`` naming the hook.
    """
    from .errors import VixenError

    try:
        return pm.hook.vixen_load_scene_file(path=path, device=device, options=options)
    except VixenError:
        raise
    except Exception as exc:
        raise PluginError(f"{type(exc).__name__}: {exc}", hook="vixen_load_scene_file(path, device, options)") from exc
