"""The scene types of a USD load, now neutral (shared by every loader): see :mod:`vixen_assets.scene`; this module
keeps the old import path (``vixen_assets.usd.scene.Scene``, ``Instance``, ``SceneStats``, ``TlasMap``) working."""

from __future__ import annotations

from ..accel.scene_tlas import TlasMap
from ..scene import Instance, Scene, SceneStats

__all__ = ["Instance", "Scene", "SceneStats", "TlasMap"]
