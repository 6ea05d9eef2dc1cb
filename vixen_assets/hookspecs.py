"""Hook specifications of vixen-assets: every hook a plugin can implement, each documented for plugin authors.

Three kinds of hooks (see ``docs/plugins.md``):

- registration: the core passes a registry and owns it (``vixen_register_cachers``);
- decision: ``firstresult=True``, the first non-``None`` answer wins;
- notification: return ``None``; they report what happened (``vixen_stage_loaded``, ``vixen_asset_cached``,
  ``vixen_progress``).

This module imports only pluggy and the standard library at run time; project types are for type checkers only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .cachers.registry import CacherRegistry
    from .device import Device
    from .scene import Scene

PROJECT_NAME = "vixen_assets"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def vixen_register_cachers(registry: CacherRegistry) -> None:
    """Register cacher classes: which USD prim types and which file suffixes each one handles.

    :param registry: call ``registry.register(CacherClass)``; the class's ``prim_types`` (e.g. ``("Points",)``) and
        ``suffixes`` (e.g. ``(".vox",)``) say what it handles. ``registry.register(Cls, prim_types=..., suffixes=...)``
        overrides them.
    :returns: nothing.

    .. versionadded:: 0.1

    Implementing this hook: register every cacher your plugin provides in one call. Registration is all-or-nothing
    per plugin: if one of your classes claims a prim type or suffix that another plugin already handles, none of
    yours is registered and the error names both plugins. The built-in cachers (``Mesh`` and the others) are
    registered through this same hook.
    """


@hookspec
def vixen_stage_loaded(scene: Scene) -> None:
    """Called once a stage is loaded and every asset is on the GPU.

    :param scene: the loaded :class:`~vixen_assets.scene.Scene` (meshes, instances, warnings, stats).
    :returns: nothing.

    .. versionadded:: 0.1

    Implementing this hook: inspect or annotate the scene (statistics, checks, extra GPU work of your own). Do not
    release it: the caller owns it. An exception raised here is reported with your plugin's name as a warning in
    ``scene.warnings``; it does not fail the load.
    """


@hookspec
def vixen_asset_cached(cacher_name: str, key: str, nbytes: int) -> None:
    """Called when a cacher created a new GPU entry (a cache miss that was uploaded).

    :param cacher_name: the cacher's ``name`` (``"mesh"``, ``"points"``, ...).
    :param key: the entry's content-hash key.
    :param nbytes: bytes of GPU memory the entry holds.
    :returns: nothing.

    .. versionadded:: 0.1

    Implementing this hook: keep statistics or logs; it runs on the loading thread, so keep it quick.
    """


@hookspec
def vixen_progress(phase: str, done: int, total: int) -> None:
    """Report progress of long work (loading a stage, validating a library).

    :param phase: what is being done (``"walk"``, ``"prepare"``, ``"upload"``, ...).
    :param done: units finished so far in this phase.
    :param total: units in the phase (0 when unknown).
    :returns: nothing.

    .. versionadded:: 0.1

    Implementing this hook: drive a progress display. It can be called many times per second; do little work.
    """


@hookspec(firstresult=True)
def vixen_resolve_asset_path(asset_path: str, anchor: str) -> str | None:
    """Decide where an asset path that the stage references (a texture, a ``.vox`` file) lives on disk.

    :param asset_path: the path as authored.
    :param anchor: the path of the layer that authored it (relative paths resolve against it).
    :returns: a filesystem path, or ``None`` to let the next plugin (finally USD's resolver) decide.

    .. versionadded:: 0.1

    Implementing this hook: map custom URI schemes or asset libraries to files. The first non-``None`` answer wins.
    """


@hookspec
def vixen_register_validators(register: Callable[..., Any]) -> None:
    """Register validation rules for ``vixen-assets validate`` / :func:`vixen_assets.validate`.

    :param register: call ``register(rule_id, severity=..., doc=..., check=..., prim_types=..., suffixes=...,
        fix=...)`` (or ``register(Rule(...))``) once per rule. ``rule_id`` is ``family.name`` (``geom.points-nan``);
        ``severity`` is ``error``, ``warning`` or ``info``; ``doc`` is one line. ``prim_types`` (USD type names)
        makes ``check(ctx, prim)`` run once per matching prim; otherwise ``suffixes`` (``(".ktx2",)``) name the
        files ``check(ctx)`` runs on, and a rule with neither checks every asset. ``check`` yields issues as
        ``(code, severity, file, pointer, message)`` tuples or :class:`~vixen_assets.validate.Issue` objects;
        ``pointer`` is a prim path with an optional ``.property``, a KTX2 field or a .vox chunk.
    :returns: nothing.

    .. versionadded:: 0.2

    Implementing this hook: register every rule of your plugin in one call; registration is all-or-nothing per
    plugin, and an id another plugin already registered drops your rules with an error naming both. Checks run in
    worker processes (your plugin is imported there through its entry point), must be importable functions, and
    should be quick: an exception raised by a check is reported as an error of that rule, never stops the job. The
    built-in rules (``usd.*``, ``geom.*``, ``ktx2.*``, ``vox.*``, ``budget.*``, ``gpu.*``) register through this
    same hook.
    """


@hookspec(firstresult=True)
def vixen_load_scene_file(path: str, device: Device, options: dict[str, Any]) -> Scene | None:
    """Load a whole file that is not a USD layer (a ``.blend``, ...) as a :class:`~vixen_assets.scene.Scene`.

    :param path: the file's path, as given to ``load_stage`` (it exists; its suffix is not a USD file format's).
    :param device: the :class:`~vixen_assets.Device` to load onto.
    :param options: ``load_stage``'s options: ``progress`` (a ``progress(phase, done, total)`` callback or
        ``None``), ``strict``, ``textures``, ``time``, ``plugin_manager``. Ignore those you do not support.
    :returns: the loaded scene (its ``up_axis`` and ``meters_per_unit`` set to the frame of its data), or ``None``
        when the plugin does not handle this file.

    .. versionadded:: 0.1

    Implementing this hook: look at the suffix first and return ``None`` quickly for files that are not yours. The
    core converts the returned scene to the requested frame, builds acceleration structures when asked, and calls
    ``vixen_stage_loaded``; do not do those yourself. On bad input raise ``FormatError`` naming the file and
    release whatever you created: nothing may be left on the device.
    """


def all_hook_names() -> list[str]:
    """Names of every hook specification in this module."""
    return [name for name, obj in globals().items() if name.startswith("vixen_") and callable(obj)]

