"""``load_blend``: a ``.blend`` file (or the open Blender session) onto the GPU as a :class:`~vixen_assets.scene.Scene`.

Two paths give the same scene:

- ``via="arrays"`` (default) walks the evaluated depsgraph (``Depsgraph.object_instances``: objects, collection
  instances, geometry-nodes instances; hidden objects are not in it). Each unique evaluated mesh datablock (with the
  materials of its slots) is read once with ``foreach_get`` (:mod:`vixen_assets_blender.arrays`) and becomes one GPU
  mesh through the core's mesh cacher; every placement becomes an :class:`~vixen_assets.scene.Instance` with its
  world matrix. Material slots become submeshes; image textures of the materials go through the texture cacher
  (packed images too).
- ``via="usd"`` exports the scene with Blender's own USD exporter to a temporary ``.usdc`` (viewport evaluation,
  subdivision tessellated, triangulated) and loads that with :func:`~vixen_assets.load_stage`.

Blender is Z-up; one Blender unit is ``scene.unit_settings.scale_length`` meters: the scene's ``up_axis`` and
``meters_per_unit`` say so (``load_stage("x.blend", device, up_axis="Y")`` converts).

bpy is one session per process: loading a file opens it in that session (``bpy.ops.wm.open_mainfile``), replacing
what was open. ``path=None`` loads the session's current data (what the Blender extension does).
"""

from __future__ import annotations

import os
import tempfile
import time as _time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from vixen_assets.cachers.mesh import MeshCacher
from vixen_assets.errors import ConfigError, FormatError, UnsupportedFeatureError
from vixen_assets.scene import Instance, Scene

from .arrays import read_mesh
from .images import load_material_images

if TYPE_CHECKING:
    from vixen_assets.device import Device

ProgressFn = Callable[[str, int, int], None]

#: How a ``.blend`` file starts: uncompressed, zstd-compressed (Blender 3.0+), gzip-compressed (older Blender).
MAGIC_PLAIN, MAGIC_ZSTD, MAGIC_GZIP = b"BLENDER", b"\x28\xb5\x2f\xfd", b"\x1f\x8b"
#: Blender writes compressed files in zstd's seekable format: they end with the seek table's magic number.
ZSTD_SEEKABLE_FOOTER = b"\xb1\xea\x92\x8f"
#: Object types whose geometry is not a mesh: not loaded (a warning names each such object).
NON_MESH_GEOMETRY = ("CURVE", "FONT", "SURFACE", "META", "CURVES", "POINTCLOUD", "VOLUME", "GREASEPENCIL")


def check_blend_file(path: str) -> None:
    """Check, without bpy, that ``path`` looks like a whole ``.blend`` file.

    :param path: the file.
    :raises FormatError: missing, empty, not a ``.blend`` file, or visibly truncated; the message names the file.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(12)
            fh.seek(max(0, size - 32))
            tail = fh.read(32)
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror}", path=path) from exc
    if head.startswith(MAGIC_PLAIN):
        if b"ENDB" not in tail:
            raise FormatError("truncated .blend file (no ENDB block at the end)", path=path)
    elif head.startswith(MAGIC_ZSTD):
        if not tail.endswith(ZSTD_SEEKABLE_FOOTER):
            raise FormatError("truncated .blend file (compressed, its seek table is missing)", path=path)
    elif not head.startswith(MAGIC_GZIP):
        raise FormatError(f"not a .blend file (starts with {head[:8]!r})", path=path)


def open_blend(path: str) -> None:
    """Open ``path`` in bpy's session (replacing what was open).

    :param path: a ``.blend`` file.
    :raises FormatError: the file is not a readable ``.blend`` file (checked first without bpy, then by Blender).
    """
    import bpy

    check_blend_file(path)
    try:
        result = bpy.ops.wm.open_mainfile(filepath=os.path.abspath(path), load_ui=False)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FormatError(f"Blender cannot read the file: {detail}", path=path) from exc
    if "FINISHED" not in result:
        raise FormatError(f"Blender cannot read the file ({', '.join(sorted(result))})", path=path)


def _blender_scene(scene: Any, path: str) -> Any:
    import bpy

    if scene is None:
        return bpy.context.scene
    if isinstance(scene, str):
        got = bpy.data.scenes.get(scene)
        if got is None:
            names = ", ".join(s.name for s in bpy.data.scenes)
            raise ConfigError(f"{path}: no Blender scene named {scene!r} (scenes: {names})")
        return got
    return scene


def _depsgraph(bscene: Any, evaluated: bool) -> Any:
    import bpy

    if bscene == bpy.context.scene:
        return bpy.context.evaluated_depsgraph_get()
    layer = bscene.view_layers[0]
    graph = layer.depsgraph
    graph.update()
    return graph


def _material_path(mat: Any) -> str | None:
    return f"/materials/{mat.name}" if mat is not None else None


def load_blend(path: str | os.PathLike[str] | None, device: Device, *, via: str = "arrays", scene: Any = None,
               evaluated: bool = True, progress: ProgressFn | None = None, textures: bool = True,
               strict: bool = False, plugin_manager: Any = None) -> Scene:
    """Load a ``.blend`` file onto ``device``; return the :class:`~vixen_assets.scene.Scene` (release it, or use
    ``with``).

    :param path: the ``.blend`` file; ``None`` loads bpy's current session (the file open in Blender, saved or not).
    :param device: the :class:`~vixen_assets.Device`.
    :param via: ``"arrays"`` (evaluated meshes read with ``foreach_get``) or ``"usd"`` (Blender's USD exporter to a
        temporary ``.usdc``, then ``load_stage``).
    :param scene: the Blender scene (a name or a ``bpy.types.Scene``); ``None``: the file's active scene.
    :param evaluated: apply modifiers and geometry nodes (what Blender shows); ``False`` reads the meshes as
        authored (``via="arrays"`` only).
    :param progress: ``progress(phase, done, total)`` callback.
    :param textures: load the image textures of the materials.
    :param strict: raise on the first bad mesh instead of skipping it with a warning.
    :param plugin_manager: the pluggy manager ``via="usd"`` loads with (default: the process-wide one).
    :returns: the scene: Z-up, ``meters_per_unit`` from the Blender scene's unit scale.
    :raises FormatError: the file is missing, not a ``.blend`` file, truncated or corrupt (naming it).
    :raises ConfigError: a bad ``via`` or an unknown scene name.
    """
    from vixen_assets.plugins import default_plugin_manager, notify_stage_loaded

    scene_out = _load(path, device, via=via, scene=scene, evaluated=evaluated, progress=progress, textures=textures,
                      strict=strict, plugin_manager=plugin_manager)
    pm = plugin_manager if plugin_manager is not None else default_plugin_manager()
    notify_stage_loaded(pm, scene_out)
    return scene_out


def _load(path: Any, device: Device, *, via: str, scene: Any, evaluated: bool, progress: ProgressFn | None,
          textures: bool, strict: bool, plugin_manager: Any) -> Scene:
    """``load_blend`` without the ``vixen_stage_loaded`` notification (the core sends it for ``load_stage``)."""
    if via not in ("arrays", "usd"):
        raise ConfigError(f"via must be 'arrays' or 'usd', got {via!r}")
    if via == "usd" and not evaluated:
        raise UnsupportedFeatureError("via='usd' exports what Blender shows: evaluated=False needs via='arrays'")
    device.check_open()
    t0 = _time.perf_counter()
    try:
        import bpy
    except ImportError as exc:
        raise UnsupportedFeatureError(
            f"{path or '.blend'}: loading Blender files needs the bpy module (pip install bpy; wheels exist for "
            f"CPython 3.11 and 3.13+): {exc}") from exc

    if path is not None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FormatError("file not found", path=path)
        open_blend(path)
    label = path if path is not None else (bpy.data.filepath or "<unsaved Blender session>")
    bscene = _blender_scene(scene, label)
    t_open = _time.perf_counter()
    if via == "usd":
        out = _load_via_usd(label, device, bscene, progress, textures, strict, plugin_manager)
    else:
        out = _load_via_arrays(label, device, bscene, evaluated, progress, textures, strict)
    out.stats.seconds["open"] = t_open - t0
    out.stats.seconds["total"] = _time.perf_counter() - t0
    out.plugin_data["blender"] = {"via": via, "scene": bscene.name, "version": bpy.app.version_string,
                            "evaluated": evaluated}
    return out


def export_usd(usd_path: str, bscene: Any) -> None:
    """Export ``bscene`` with Blender's USD exporter as ``via="usd"`` does: what the viewport shows (evaluated,
    subdivision tessellated), triangulated, meshes and materials only, linked duplicates as USD instances.

    :param usd_path: the ``.usdc`` to write (textures go to a ``textures`` folder beside it).
    :param bscene: the ``bpy.types.Scene``.
    """
    import bpy

    with bpy.context.temp_override(scene=bscene):
        bpy.ops.wm.usd_export(
            filepath=usd_path, evaluation_mode="VIEWPORT", export_subdivision="TESSELLATE",
            triangulate_meshes=True, selected_objects_only=False, export_animation=False,
            export_materials=True, export_textures_mode="NEW", export_uvmaps=True, export_normals=True,
            export_armatures=False, export_shapekeys=False, export_hair=False, export_curves=False,
            export_points=False, export_volumes=False, export_lights=False, export_cameras=False,
            use_instancing=True, convert_orientation=False)


def exporter_prototype_overs(usd_path: str) -> list[str]:
    """Prims Blender's USD exporter writes as templates of a point instancer's prototypes and does not mean to draw.

    For geometry-nodes instances the exporter writes ``over "<object>" (instanceable, references=</root/prototypes/
    ...>)`` beside the PointInstancer, and prototypes that reference it; its ``doc`` says the ``over`` keeps it from
    being drawn, but an ``over`` on top of a referenced ``def`` is defined, so USD draws it once more at the
    instancer's origin. These are the internal reference targets of prims beneath a PointInstancer whose own spec in
    the file is such an ``over`` beside the instancer (the exporter sometimes reuses a real placement elsewhere as
    the template instead: that one stays, it is meant to be drawn).

    :param usd_path: the exported layer.
    :returns: their prim paths.
    """
    from pxr import Sdf

    layer = Sdf.Layer.FindOrOpen(usd_path)
    if layer is None:
        return []
    instancers: list[Any] = []

    def visit(path: Any) -> None:
        if path.IsPrimPath():
            spec = layer.GetPrimAtPath(path)
            if spec is not None and spec.typeName == "PointInstancer":
                instancers.append(path)

    layer.Traverse(Sdf.Path.absoluteRootPath, visit)
    stray: set[str] = set()
    for inst_path in instancers:
        def targets(path: Any) -> None:
            if not path.IsPrimPath():
                return
            spec = layer.GetPrimAtPath(path)
            if spec is None:
                return
            for ref in spec.referenceList.GetAddedOrExplicitItems():
                if ref.assetPath or ref.primPath.isEmpty:
                    continue
                target = layer.GetPrimAtPath(ref.primPath)
                # only a template the exporter added beside the instancer: it may also pick a real placement
                # elsewhere (a collection instance of the same object) as the template, and that one is drawn
                if (target is not None and target.specifier == Sdf.SpecifierOver
                        and ref.primPath.GetParentPath() == inst_path.GetParentPath()):
                    stray.add(str(ref.primPath))

        layer.Traverse(inst_path, targets)
    return sorted(stray)


def _load_via_usd(label: str, device: Device, bscene: Any, progress: ProgressFn | None, textures: bool,
                  strict: bool, plugin_manager: Any) -> Scene:
    from vixen_assets.usd import load_stage

    with tempfile.TemporaryDirectory(prefix="vixen-blend-") as tmp:
        usd_path = os.path.join(tmp, "scene.usdc")
        t = _time.perf_counter()
        export_usd(usd_path, bscene)
        t_export = _time.perf_counter() - t
        if progress is not None:
            progress("export", 1, 1)
        out = load_stage(usd_path, device, progress=progress, strict=strict, textures=textures, warm=False,
                         plugin_manager=plugin_manager)
        stray = exporter_prototype_overs(usd_path)
    if stray:
        # the exporter's copies of point-instancer prototypes are meant as templates, not drawn (see below)
        keep = [i for i in out.instances if not any(i.prim_path == p or i.prim_path.startswith(p + "/") for p in stray)]
        out.instances = keep
        placed = {id(i.mesh) for i in keep}
        out.meshes = [m for m in out.meshes if id(m) in placed]
        out.stats.instances = len(keep)
        out.stats.meshes = sum(1 for i in keep if i.kind == "mesh")
        out.stats.unique_meshes = len(out.meshes)
        out.stats.triangles = out.triangle_count
    out.path = label
    out.stats.seconds["export"] = t_export
    # the exporter (convert_scene_units="METERS", the default) writes Blender units as they are and calls them
    # meters, whatever the scene's unit scale: state the unit as via="arrays" does (1 unit = scale_length m)
    if out.up_axis == "Z" and out.meters_per_unit == 1.0:
        out.meters_per_unit = float(bscene.unit_settings.scale_length) or 1.0
    # as via="arrays": a mesh without faces draws nothing and is not placed (a warning names it)
    empty = [i for i in out.instances if i.kind == "mesh" and getattr(i.mesh, "triangle_count", 1) == 0]
    for inst in empty:
        out.warnings.append(str(FormatError("mesh has no faces: nothing to load", path=label, prim_path=inst.prim_path)))
    if empty:
        drop = {id(i) for i in empty}
        out.instances = [i for i in out.instances if id(i) not in drop]
        placed = {id(i.mesh) for i in out.instances}
        out.meshes = [m for m in out.meshes if id(m) in placed]
        out.stats.instances = len(out.instances)
        out.stats.meshes = sum(1 for i in out.instances if i.kind == "mesh")
        out.stats.unique_meshes = len(out.meshes)
    return out


def _load_via_arrays(label: str, device: Device, bscene: Any, evaluated: bool, progress: ProgressFn | None,
                     textures: bool, strict: bool) -> Scene:
    t = _time.perf_counter()
    graph = _depsgraph(bscene, evaluated)
    out = Scene(device, label)
    out.up_axis = "Z"
    out.meters_per_unit = float(bscene.unit_settings.scale_length) or 1.0
    try:
        _fill(out, device, graph, label, evaluated, progress, textures, strict, t)
    except BaseException:
        out.release()
        raise
    return out


def _fill(out: Scene, device: Device, graph: Any, label: str, evaluated: bool, progress: ProgressFn | None,
          textures: bool, strict: bool, t0: float) -> None:
    def report(phase: str, done: int, total: int) -> None:
        if progress is not None:
            progress(phase, done, total)

    def warn(obj_name: str, message: str) -> None:
        err = FormatError(message, path=label, prim_path=f"/{obj_name}")
        if strict:
            raise err
        out.warnings.append(str(err))

    sources: dict[Any, Any] = {}          # (mesh pointer, materials) -> MeshSource, or None for an empty mesh
    placements: list[tuple[Any, np.ndarray, str, str | None]] = []
    materials_used: dict[str, Any] = {}  # material path -> bpy material
    per_parent: dict[str, int] = {}
    skipped_types: set[tuple[str, str]] = set()
    empty: list[tuple[str, str]] = []     # (object, mesh) of meshes without faces
    parents: set[str] = set()             # objects that place instances (collections, geometry nodes)
    visited = 0
    for inst in graph.object_instances:
        visited += 1
        obj = inst.object
        if obj.type != "MESH":
            if obj.type in NON_MESH_GEOMETRY and (obj.name, obj.type) not in skipped_types:
                skipped_types.add((obj.name, obj.type))
                warn(obj.name, f"object of type {obj.type} is not a mesh: not loaded")
            continue
        if not inst.is_instance and not inst.show_self:
            continue
        if evaluated:
            mesh = obj.data
        else:
            orig = obj.original
            if orig is None or orig.type != "MESH":
                continue
            mesh = orig.data
        slots = [_material_path(s.material) for s in obj.material_slots]
        for s in obj.material_slots:
            if s.material is not None:
                materials_used[_material_path(s.material)] = s.material
        key = (mesh.as_pointer(), tuple(slots))
        if key not in sources:
            arrays = read_mesh(mesh)
            if not len(arrays.face_sizes):
                empty.append((obj.name, mesh.name))  # reported at the end unless the object is an instancer
                sources[key] = None
            else:
                sources[key] = arrays.to_source(f"/{obj.name}", label, slots)
            if len(sources) % 64 == 0:
                report("read", len(sources), 0)
        if sources[key] is None:
            continue
        if inst.is_instance:
            parent = inst.parent.name if inst.parent is not None else "instances"
            parents.add(parent)
            n = per_parent[parent] = per_parent.get(parent, -1) + 1
            name = f"/{parent}/{obj.name}[{n}]"
        else:
            name = f"/{obj.name}"
        first = next((s for s in slots if s is not None), None)
        placements.append((key, np.array(inst.matrix_world, dtype=np.float32), name, first))
    out.stats.prims_visited = visited
    for obj_name, mesh_name in empty:
        # an instancer's own geometry is often empty (geometry nodes that output only instances): not worth a word
        if obj_name not in parents:
            warn(obj_name, f"mesh {mesh_name!r} has no faces: nothing to load")
    keys = [k for k, s in sources.items() if s is not None]
    srcs = [sources[k] for k in keys]
    report("read", len(srcs), len(srcs))
    t_read = _time.perf_counter()

    cacher = MeshCacher.for_device(device)
    errors = cacher.check_sources(srcs)
    for k, src, err in zip(keys, srcs, errors):
        if err is not None:
            if strict:
                raise err
            out.warnings.append(str(err))
            sources[k] = None
    keys = [k for k in keys if sources[k] is not None]
    srcs = [sources[k] for k in keys]
    hits0, misses0, bytes0 = cacher.stats.hits, cacher.stats.misses, cacher.stats.bytes
    ckeys = [cacher.key_for(s) for s in srcs]
    entries = cacher.get_many(srcs, ckeys) if srcs else []
    for ck in ckeys:
        out.hold(cacher, ck)
    report("build", len(srcs), len(srcs))
    t_build = _time.perf_counter()
    device.uploader.flush().wait()
    report("upload", 1, 1)
    t_upload = _time.perf_counter()

    by_key = dict(zip(keys, entries))
    out.instances.extend(Instance(by_key[k], m, name, mat) for k, m, name, mat in placements if k in by_key)
    out.meshes = list({id(e): e for e in entries}.values())
    if textures and out.instances:
        t_tex = _time.perf_counter()
        if load_material_images(out, device, materials_used, label, strict):
            device.uploader.flush().wait()
        out.stats.seconds["textures"] = _time.perf_counter() - t_tex
    st = out.stats
    st.meshes = len(out.instances)
    st.unique_meshes = len(out.meshes)
    st.instances = len(out.instances)
    st.triangles = out.triangle_count
    st.cache_hits = cacher.stats.hits - hits0
    st.cache_misses = cacher.stats.misses - misses0
    st.bytes_uploaded = cacher.stats.bytes - bytes0
    st.seconds.update(read=t_read - t0, build=t_build - t_read, upload=t_upload - t_build)


__all__ = ["check_blend_file", "export_usd", "exporter_prototype_overs", "load_blend", "open_blend"]
