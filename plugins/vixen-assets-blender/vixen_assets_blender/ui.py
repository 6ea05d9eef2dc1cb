"""The Blender side of the extension: a sidebar panel in the 3D view ("Vixen" tab) and its operators.

- ``VIXEN_OT_load_to_gpu`` (``bpy.ops.vixen.load_to_gpu()``): runs :func:`~vixen_assets_blender.load_blend` on the
  open scene's evaluated depsgraph (saved or not) onto the chosen device within the chosen budget, keeps the scene
  on the GPU until the next load (or until the extension is disabled) and shows meshes, triangles, GPU memory, time
  and warnings;
- ``VIXEN_OT_validate`` (``bpy.ops.vixen.validate()``): exports the evaluated scene to a temporary ``.usdc`` and runs
  ``vixen_assets.validate`` (the batch validation rules) on it; each issue is listed, and
  ``VIXEN_OT_select_issue`` (clicking an issue) selects the object it points at. When this vixen-assets has no
  ``validate``, the operator says so and does nothing else;
- ``VIXEN_OT_release`` frees what Load to GPU holds.

Every operator runs headless (``bpy.ops.vixen.*()`` from a script, no window), which is how the tests drive them.
The GPU session (one device, one scene) lives in :data:`SESSION`; :func:`unregister` closes it.
"""

from __future__ import annotations

import os
import tempfile
import time as _time
from dataclasses import dataclass, field
from typing import Any

import bpy

from . import loader

#: Shown when the open vixen-assets has no batch validation (``vixen_assets.validate``).
NO_VALIDATE = ("Validate needs vixen_assets.validate (the batch validation rules), which this vixen-assets "
               "({version}) does not have: update vixen-assets")


@dataclass
class Session:
    """The extension's GPU state: the open device and the scene Load to GPU put on it."""

    device: Any = None
    device_key: tuple[Any, ...] | None = None
    scene: Any = None
    devices: list[tuple[str, str, str]] = field(default_factory=list)

    def open(self, index: int, budget_mb: float) -> Any:
        """The device for these settings (reopened when they changed).

        :param index: the device index.
        :param budget_mb: the budget in MiB (``0``: the default, 90% of the device's memory).
        """
        from vixen_assets.device import open_device

        key = (index, round(budget_mb, 3))
        if self.device is not None and self.device_key == key and not getattr(self.device, "closed", False):
            return self.device
        from vixen_assets.cli.load import budget_options

        self.close()
        self.device = open_device(index, budget=budget_options(budget_mb if budget_mb > 0 else None))
        self.device_key = key
        return self.device

    def release_scene(self) -> None:
        """Release the loaded scene (its GPU entries become evictable)."""
        if self.scene is not None:
            self.scene.release()
            self.scene = None

    def close(self) -> list[str]:
        """Release the scene and close the device; return the device's leak report (empty when clean)."""
        self.release_scene()
        report: list[str] = []
        if self.device is not None:
            report = self.device.close_report()
            self.device = None
            self.device_key = None
        return report


SESSION = Session()


def _device_items(self: Any, context: Any) -> list[tuple[str, str, str]]:
    if not SESSION.devices:
        try:
            from vixen_assets import list_devices

            SESSION.devices = [(str(d.index), f"{d.index}: {d.name}", d.device_type) for d in list_devices()]
        except Exception as exc:  # no driver: the panel says so instead of failing to draw
            SESSION.devices = [("0", "no Vulkan device", str(exc))]
    return SESSION.devices


class VixenIssue(bpy.types.PropertyGroup):
    """One validation issue as the panel lists it."""

    code: bpy.props.StringProperty(name="Code")  # type: ignore[valid-type]
    severity: bpy.props.StringProperty(name="Severity")  # type: ignore[valid-type]
    message: bpy.props.StringProperty(name="Message")  # type: ignore[valid-type]
    pointer: bpy.props.StringProperty(name="Pointer")  # type: ignore[valid-type]
    object_name: bpy.props.StringProperty(name="Object")  # type: ignore[valid-type]


class VixenSettings(bpy.types.PropertyGroup):
    """The panel's settings (saved with the file) and the last results (``scene.vixen_assets``)."""

    device: bpy.props.EnumProperty(name="Device", items=_device_items)  # type: ignore[valid-type]
    budget_mb: bpy.props.FloatProperty(name="Budget (MiB)", default=0.0, min=0.0,  # type: ignore[valid-type]
                                       description="GPU memory budget; 0 = 90% of the device's memory")
    via: bpy.props.EnumProperty(name="Path", default="arrays", items=[  # type: ignore[valid-type]
        ("arrays", "Direct", "Evaluated meshes read with foreach_get"),
        ("usd", "Through USD", "Blender's USD exporter, then vixen-assets' USD loader")])
    meshes: bpy.props.IntProperty(name="Unique meshes")  # type: ignore[valid-type]
    instances: bpy.props.IntProperty(name="Instances")  # type: ignore[valid-type]
    triangles: bpy.props.IntProperty(name="Triangles")  # type: ignore[valid-type]
    gpu_bytes: bpy.props.FloatProperty(name="GPU memory (bytes)")  # type: ignore[valid-type]
    seconds: bpy.props.FloatProperty(name="Time (s)")  # type: ignore[valid-type]
    warnings: bpy.props.StringProperty(name="Warnings")  # type: ignore[valid-type]
    warning_count: bpy.props.IntProperty(name="Warnings")  # type: ignore[valid-type]
    status: bpy.props.StringProperty(name="Status")  # type: ignore[valid-type]
    issues: bpy.props.CollectionProperty(type=VixenIssue)  # type: ignore[valid-type]
    issue_index: bpy.props.IntProperty(name="Issue", default=-1)  # type: ignore[valid-type]


class VIXEN_OT_load_to_gpu(bpy.types.Operator):
    """Load the open scene (modifiers applied) onto the GPU with vixen-assets"""

    bl_idname = "vixen.load_to_gpu"
    bl_label = "Load to GPU"
    bl_options = {"REGISTER"}

    def execute(self, context: Any) -> set[str]:
        """Load; fill the settings' result fields; report.

        :param context: Blender's context (its scene is loaded).
        """
        from vixen_assets.errors import VixenError

        settings = context.scene.vixen_assets
        t0 = _time.perf_counter()
        try:
            device = SESSION.open(int(settings.device or 0), settings.budget_mb)
            SESSION.release_scene()
            SESSION.scene = loader.load_blend(None, device, via=settings.via, scene=context.scene)
        except VixenError as exc:
            settings.status = f"failed: {exc}"
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        scene = SESSION.scene
        settings.meshes = len(scene.meshes)
        settings.instances = len(scene.instances)
        settings.triangles = scene.triangle_count
        settings.gpu_bytes = float(device.budget.used)
        settings.seconds = _time.perf_counter() - t0
        settings.warning_count = len(scene.warnings)
        settings.warnings = "\n".join(scene.warnings)
        settings.status = (f"{settings.meshes} meshes, {settings.triangles:,} triangles, "
                           f"{settings.gpu_bytes / 2**20:.1f} MiB in {settings.seconds:.2f} s")
        self.report({"INFO"}, settings.status)
        for w in scene.warnings[:10]:
            self.report({"WARNING"}, w)
        return {"FINISHED"}


class VIXEN_OT_release(bpy.types.Operator):
    """Free the GPU memory the last Load to GPU holds"""

    bl_idname = "vixen.release"
    bl_label = "Release GPU scene"

    def execute(self, context: Any) -> set[str]:
        """Release the scene and close the device.

        :param context: Blender's context.
        """
        SESSION.close()
        context.scene.vixen_assets.status = "released"
        return {"FINISHED"}


def _issue_fields(issue: Any) -> tuple[str, str, str, str]:
    """``(code, severity, pointer, message)`` of an issue: an object with those attributes or a
    ``(code, severity, file, pointer, message)`` tuple."""
    if isinstance(issue, tuple) and len(issue) >= 5:
        return str(issue[0]), str(issue[1]), str(issue[3]), str(issue[4])
    return (str(getattr(issue, "code", "")), str(getattr(issue, "severity", "")),
            str(getattr(issue, "pointer", "")), str(getattr(issue, "message", "")))


def _object_of(pointer: str) -> str:
    """The Blender object a USD prim path of the exported scene names (``/root/<object>/...``)."""
    parts = [p for p in pointer.split(".")[0].split("/") if p]
    if len(parts) >= 2 and parts[0] == "root":
        name = parts[1].split("[")[0]
        for obj in bpy.data.objects:  # the exporter makes names valid USD identifiers
            if obj.name == name or _usd_name(obj.name) == name:
                return obj.name
    return ""


def _usd_name(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return "_" + out if out[:1].isdigit() else out


class VIXEN_OT_validate(bpy.types.Operator):
    """Check the open scene with vixen-assets' validation rules"""

    bl_idname = "vixen.validate"
    bl_label = "Validate"

    def execute(self, context: Any) -> set[str]:
        """Export to a temporary .usdc, validate it, list the issues.

        :param context: Blender's context (its scene is validated).
        """
        import vixen_assets

        settings = context.scene.vixen_assets
        settings.issues.clear()
        validate = getattr(vixen_assets, "validate", None)
        if not callable(validate):
            try:
                from vixen_assets import validate as validate_module  # a package named validate, if any

                validate = getattr(validate_module, "validate", None)
            except ImportError:
                validate = None
        if not callable(validate):
            settings.status = NO_VALIDATE.format(version=vixen_assets.__version__)
            self.report({"ERROR"}, settings.status)
            return {"CANCELLED"}
        with tempfile.TemporaryDirectory(prefix="vixen-validate-") as tmp:
            usd_path = os.path.join(tmp, "scene.usdc")
            loader.export_usd(usd_path, context.scene)
            report = validate([usd_path])
            issues = list(getattr(report, "issues", report))
        for issue in issues:
            code, severity, pointer, message = _issue_fields(issue)
            item = settings.issues.add()
            item.code, item.severity, item.pointer, item.message = code, severity, pointer, message
            item.object_name = _object_of(pointer)
        settings.status = f"{len(issues)} issue(s)"
        self.report({"INFO"}, settings.status)
        return {"FINISHED"}


class VIXEN_OT_select_issue(bpy.types.Operator):
    """Select the object this issue is about"""

    bl_idname = "vixen.select_issue"
    bl_label = "Select"

    index: bpy.props.IntProperty()  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        """Select (only) the issue's object and make it active.

        :param context: Blender's context.
        """
        settings = context.scene.vixen_assets
        if not 0 <= self.index < len(settings.issues):
            return {"CANCELLED"}
        settings.issue_index = self.index
        obj = bpy.data.objects.get(settings.issues[self.index].object_name)
        if obj is None:
            self.report({"WARNING"}, "this issue names no object of the scene")
            return {"CANCELLED"}
        for other in context.view_layer.objects:
            other.select_set(False)
        if obj.name in context.view_layer.objects:
            obj.select_set(True)
            context.view_layer.objects.active = obj
        return {"FINISHED"}


class VIXEN_PT_panel(bpy.types.Panel):
    """The sidebar panel (N panel, "Vixen" tab) of the 3D view."""

    bl_idname = "VIXEN_PT_panel"
    bl_label = "vixen-assets"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Vixen"

    def draw(self, context: Any) -> None:
        """Settings, the two buttons, the last results and the issues.

        :param context: Blender's context.
        """
        s = context.scene.vixen_assets
        col = self.layout.column()
        col.prop(s, "device")
        col.prop(s, "budget_mb")
        col.prop(s, "via")
        row = col.row()
        row.operator(VIXEN_OT_load_to_gpu.bl_idname)
        row.operator(VIXEN_OT_validate.bl_idname)
        col.operator(VIXEN_OT_release.bl_idname)
        if s.status:
            col.label(text=s.status)
        if s.triangles:
            box = col.box()
            box.label(text=f"meshes {s.meshes}  instances {s.instances}")
            box.label(text=f"triangles {s.triangles:,}")
            box.label(text=f"GPU memory {s.gpu_bytes / 2**20:.1f} MiB  time {s.seconds:.2f} s")
            box.label(text=f"warnings {s.warning_count}")
            for line in s.warnings.splitlines()[:5]:
                box.label(text=line, icon="ERROR")
        for k, issue in enumerate(s.issues):
            op = col.operator(VIXEN_OT_select_issue.bl_idname, text=f"[{issue.severity}] {issue.code}: {issue.message}",
                              depress=(k == s.issue_index))
            op.index = k


CLASSES = (VixenIssue, VixenSettings, VIXEN_OT_load_to_gpu, VIXEN_OT_release, VIXEN_OT_validate,
           VIXEN_OT_select_issue, VIXEN_PT_panel)


def register() -> None:
    """Register the classes and ``Scene.vixen_assets``."""
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.vixen_assets = bpy.props.PointerProperty(type=VixenSettings)


def unregister() -> list[str]:
    """Close the GPU session, remove ``Scene.vixen_assets`` and unregister the classes; return the device's leak
    report (empty when everything was freed)."""
    report = SESSION.close()
    SESSION.devices.clear()
    del bpy.types.Scene.vixen_assets
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    return report


__all__ = ["CLASSES", "NO_VALIDATE", "SESSION", "Session", "register", "unregister"]
