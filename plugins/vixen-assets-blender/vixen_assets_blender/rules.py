"""Validation rules for ``.blend`` files (``vixen-assets validate scene.blend``), registered through the
``vixen_register_validators(register)`` hook of the batch validation.

- ``blend.file`` (error): the file is a whole ``.blend`` (magic, ENDB block or zstd seek table; no bpy needed) that
  Blender can open;
- ``blend.empty-mesh`` (warning): a visible mesh object whose evaluated mesh has no faces (nothing to draw);
- ``blend.not-mesh`` (info): a visible object whose geometry is not a mesh (curves, text, volumes: not loaded);
- ``blend.image`` (warning): an image texture of a used material that cannot be read (missing file, bad data);
- ``blend.bpy-missing`` (info): bpy is not importable where the check ran, so only ``blend.file``'s structural
  checks were made.

Pointers are ``/<object name>`` (``/<object name>/<material>[<image>]`` for images). The hook implementation is
optional (``optionalhook``): with a vixen-assets that has no batch validation, the plugin still loads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vixen_assets import hookimpl
from vixen_assets.errors import FormatError

from .loader import NON_MESH_GEOMETRY, open_blend
from .loader import check_blend_file as _check_structure

SUFFIXES = (".blend",)

RULES: dict[str, tuple[str, str]] = {
    "blend.file": ("error", "the file is a whole .blend file that Blender can open"),
    "blend.empty-mesh": ("warning", "every visible mesh object has faces once evaluated"),
    "blend.not-mesh": ("info", "visible objects are meshes (curves, text, volumes... are not loaded)"),
    "blend.image": ("warning", "every image texture of a used material can be read"),
    "blend.bpy-missing": ("info", "bpy is importable, so that the contents could be checked"),
}


def findings(path: str) -> list[tuple[str, str, str, str]]:
    """Every finding of the ``blend.*`` rules for one file, as ``(code, severity, pointer, message)``.

    :param path: the ``.blend`` file.
    :returns: the findings (empty for a clean file).
    """
    try:
        _check_structure(path)
    except FormatError as exc:
        return [("blend.file", "error", "header", exc.reason)]
    try:
        import bpy
    except ImportError:
        return [("blend.bpy-missing", "info", "", "bpy is not installed in this Python: only the file's structure "
                 "was checked (pip install bpy: wheels exist for CPython 3.11 and 3.13+)")]
    try:
        open_blend(path)
    except FormatError as exc:
        return [("blend.file", "error", "", exc.reason)]
    out: list[tuple[str, str, str, str]] = []
    graph = bpy.context.evaluated_depsgraph_get()
    parents: set[str] = set()
    empty: list[str] = []
    materials: dict[str, Any] = {}
    seen_types: set[str] = set()
    for inst in graph.object_instances:
        obj = inst.object
        if inst.is_instance and inst.parent is not None:
            parents.add(inst.parent.name)
        if obj.type in NON_MESH_GEOMETRY and obj.name not in seen_types:
            seen_types.add(obj.name)
            out.append(("blend.not-mesh", "info", f"/{obj.name}", f"object of type {obj.type} is not loaded"))
        if obj.type != "MESH":
            continue
        if not inst.is_instance and not len(obj.data.polygons):
            empty.append(obj.name)
        for slot in obj.material_slots:
            if slot.material is not None:
                materials.setdefault(slot.material.name, (obj.name, slot.material))
    out.extend(("blend.empty-mesh", "warning", f"/{name}", "the evaluated mesh has no faces: nothing to draw")
               for name in empty if name not in parents)
    out.extend(_image_findings(materials, path))
    return out


def _image_findings(materials: dict[str, Any], path: str) -> Iterator[tuple[str, str, str, str]]:
    import bpy

    from .images import material_images

    for obj_name, mat in materials.values():
        for image in material_images(mat):
            pointer = f"/{obj_name}/{mat.name}[{image.name}]"
            if image.packed_file is not None or image.source == "GENERATED":
                continue
            if image.source != "FILE":
                yield ("blend.image", "warning", pointer, f"image source {image.source!r} is not loaded")
                continue
            file = bpy.path.abspath(image.filepath, library=image.library)
            try:
                with open(file, "rb") as fh:
                    head = fh.read(16)
            except OSError as exc:
                yield ("blend.image", "warning", pointer, f"cannot read {file}: {exc.strerror}")
                continue
            if not head:
                yield ("blend.image", "warning", pointer, f"{file} is empty")


def _check(code: str) -> Any:
    def check(ctx: Any) -> Iterator[tuple[str, str, str, str, str]]:
        cache = ctx.cache
        if "blend-findings" not in cache:
            cache["blend-findings"] = findings(ctx.path)
        return ((c, s, ctx.path, p, m) for c, s, p, m in cache["blend-findings"] if c == code)

    check.__name__ = "check_" + code.replace(".", "_").replace("-", "_")
    check.__qualname__ = check.__name__
    return check


#: One check function per rule, importable by name (validation workers pickle them by reference).
CHECKS = {code: _check(code) for code in RULES}
check_blend_file = CHECKS["blend.file"]
check_blend_empty_mesh = CHECKS["blend.empty-mesh"]
check_blend_not_mesh = CHECKS["blend.not-mesh"]
check_blend_image = CHECKS["blend.image"]
check_blend_bpy_missing = CHECKS["blend.bpy-missing"]


@hookimpl(optionalhook=True)
def vixen_register_validators(register: Any) -> None:
    """Register the ``blend.*`` rules for ``.blend`` files.

    :param register: the validation's ``register(rule_id, severity=, doc=, check=, suffixes=)``.
    """
    for code, (severity, doc) in RULES.items():
        register(code, severity=severity, doc=doc, check=CHECKS[code], suffixes=SUFFIXES)


__all__ = ["CHECKS", "RULES", "SUFFIXES", "findings", "vixen_register_validators"]
