"""Cachers: ``TypedCacher`` and the built-in cachers, each registered through the ``vixen_register_cachers`` hook."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import CacherStats, LoadContext, TypedCacher
from .registry import CacherRegistry, Registration

if TYPE_CHECKING:
    from ..device import Device


def cacher_for(device: Device, registration: Registration, plugin_manager: Any = None) -> TypedCacher:
    """The device's instance of a registered cacher class (created on first use, cleared at device close)."""
    return registration.cacher.for_device(device, plugin_manager)


__all__ = ["CacherRegistry", "CacherStats", "LoadContext", "Registration", "TypedCacher", "cacher_for"]
