"""Cachers: ``TypedCacher`` and the built-in cachers, each registered through the ``vixen_register_cachers`` hook."""

from __future__ import annotations

from typing import Any

from .base import CacherStats, LoadContext, TypedCacher
from .registry import CacherRegistry, Registration


def cacher_for(device: Any, registration: Registration, plugin_manager: Any = None) -> TypedCacher:
    """The device's instance of a registered cacher class (created on first use, cleared at device close)."""
    cachers = device.cachers
    inst = cachers.get(registration.name)
    if inst is None or type(inst) is not registration.cacher:
        inst = cachers[registration.name] = registration.cacher(device, plugin_manager=plugin_manager)
    elif plugin_manager is not None:
        inst.plugin_manager = plugin_manager
    return inst


__all__ = ["CacherRegistry", "CacherStats", "LoadContext", "Registration", "TypedCacher", "cacher_for"]
