"""Typed, failure-isolated calls of the notification hooks (``vixen_asset_cached``, ``vixen_progress``,
``vixen_stage_loaded``): imported by the cachers and the loaders without importing the plugin manager's module, so
``cachers`` never needs ``plugins`` at run time (``plugins`` re-exports these names).

Imports only pluggy and the standard library at run time, like ``hookspecs``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .scene import Scene

log = logging.getLogger("vixen_assets.plugins")


def _impls(pm: pluggy.PluginManager, hook: str) -> list[Any]:
    caller = getattr(pm.hook, hook)
    return list(reversed(caller.get_hookimpls()))  # pluggy calls the last registered first


def _notify(pm: pluggy.PluginManager, hook: str, signature: str, warnings: list[str] | None, **kwargs: Any) -> None:
    for impl in _impls(pm, hook):
        try:
            impl.function(**{k: kwargs[k] for k in impl.argnames})
        except Exception as exc:
            msg = f"plugin {impl.plugin_name!r} hook {signature} raised {type(exc).__name__}: {exc}"
            log.warning("%s", msg)
            if warnings is not None:
                warnings.append(msg)


def notify_stage_loaded(pm: pluggy.PluginManager, scene: Scene) -> None:
    """Call ``vixen_stage_loaded(scene)``; failures go to ``scene.warnings``."""
    _notify(pm, "vixen_stage_loaded", "vixen_stage_loaded(scene)", scene.warnings, scene=scene)


def notify_asset_cached(pm: pluggy.PluginManager, cacher_name: str, key: str, nbytes: int) -> None:
    """Call ``vixen_asset_cached(cacher_name, key, nbytes)``."""
    _notify(pm, "vixen_asset_cached", "vixen_asset_cached(cacher_name, key, nbytes)", None,
            cacher_name=cacher_name, key=key, nbytes=nbytes)


def notify_progress(pm: pluggy.PluginManager, phase: str, done: int, total: int) -> None:
    """Call ``vixen_progress(phase, done, total)``."""
    _notify(pm, "vixen_progress", "vixen_progress(phase, done, total)", None, phase=phase, done=done, total=total)

__all__ = ["notify_asset_cached", "notify_progress", "notify_stage_loaded"]
