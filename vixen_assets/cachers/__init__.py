"""Cachers: ``TypedCacher`` and the built-in cachers, each registered through the ``vixen_register_cachers`` hook."""

from __future__ import annotations

from typing import Any

from .base import CacherStats, LoadContext, TypedCacher
from .registry import CacherRegistry, Registration


def cacher_for(device: Any, registration: Registration, plugin_manager: Any = None) -> TypedCacher:
    """The device's instance of a registered cacher class (created on first use, cleared at device close)."""
    return registration.cacher.for_device(device, plugin_manager)


__all__ = ["CacherRegistry", "CacherStats", "LoadContext", "Registration", "TypedCacher", "cacher_for"]
