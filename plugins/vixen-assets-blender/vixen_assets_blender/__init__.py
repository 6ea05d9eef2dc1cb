"""vixen-assets-blender: Blender ``.blend`` files onto the GPU, directly or through Blender's USD exporter.

- :func:`load_blend` loads a ``.blend`` file (or bpy's open session) as a :class:`~vixen_assets.scene.Scene`;
- :func:`mesh_arrays` gives one mesh object's arrays as numpy, without a device;
- as a vixen-assets plugin (entry point ``blender``) it answers the ``vixen_load_scene_file`` hook for ``.blend``
  files, so ``load_stage("scene.blend", device)`` and ``vixen-assets load scene.blend`` work, and registers the
  ``blend.*`` validation rules (:mod:`vixen_assets_blender.rules`) for ``vixen-assets validate``;
- ``vixen_assets_blender.extension`` is the Blender extension (a 3D-view sidebar panel), built into a zip by
  ``make blender-extension``.

Importing this package does not import bpy (every program that uses vixen-assets loads its plugins); bpy is
imported by the functions that need it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from vixen_assets import hookimpl

from .arrays import MeshArrays, mesh_arrays, read_mesh
from .loader import check_blend_file, load_blend
from .rules import vixen_register_validators

if TYPE_CHECKING:
    from vixen_assets.device import Device
    from vixen_assets.scene import Scene

#: The file suffixes this plugin loads.
SUFFIXES = (".blend",)


@hookimpl
def vixen_load_scene_file(path: str, device: Device, options: dict[str, Any]) -> Scene | None:
    """Load ``.blend`` files for ``load_stage`` (``via="arrays"``); ``None`` for every other suffix.

    :param path: the file.
    :param device: the device.
    :param options: ``load_stage``'s options (``progress``, ``strict``, ``textures`` are used).
    :returns: the scene, or ``None``.
    """
    if os.path.splitext(path)[1].lower() not in SUFFIXES:
        return None
    from .loader import _load

    return _load(path, device, via="arrays", scene=None, evaluated=True, progress=options.get("progress"),
                 textures=bool(options.get("textures", True)), strict=bool(options.get("strict", False)),
                 plugin_manager=options.get("plugin_manager"))


__all__ = ["SUFFIXES", "MeshArrays", "check_blend_file", "load_blend", "mesh_arrays", "read_mesh",
           "vixen_load_scene_file", "vixen_register_validators"]
