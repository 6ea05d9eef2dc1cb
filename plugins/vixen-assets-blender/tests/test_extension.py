"""The Blender extension: the zip ``make blender-extension`` builds passes Blender's own validator, the extension
registers and unregisters cleanly, and its operators run headless and report what ``load_blend`` reports.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vixen_assets
import vixen_assets_blender
from vixen_assets.testing import validation_problems
from vixen_assets_blender import build_extension as bx

bpy = pytest.importorskip("bpy", reason="bpy has no wheel for this Python (3.11 and 3.13+ have one)")

from blend_scenes import build_showcase  # noqa: E402


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extension built once, as ``make blender-extension`` builds it (wheels bundled, validated)."""
    return bx.build_extension(tmp_path_factory.mktemp("ext"), wheels=True)


def test_zip_holds_the_manifest_the_wheels_and_passes_blenders_validator(extension_zip: Path) -> None:
    names = zipfile.ZipFile(extension_zip).namelist()
    assert {"blender_manifest.toml", "__init__.py", "LICENSE"} <= set(names)
    wheels = [n for n in names if n.startswith("wheels/") and n.endswith(".whl")]
    assert sorted(w.split("/")[1].split("-")[0] for w in wheels) == ["vixen_assets", "vixen_assets_blender"]
    manifest = zipfile.ZipFile(extension_zip).read("blender_manifest.toml").decode()
    for w in wheels:
        assert f'"./{w}"' in manifest
    out = bx.run_tool("validate", str(extension_zip))
    assert "Success" in out or "success" in out.lower()


def test_the_validator_rejects_a_broken_manifest(tmp_path: Path) -> None:
    # the validator is real: an extension whose manifest lacks its id does not pass
    src = tmp_path / "broken"
    shutil.copytree(bx.EXTENSION_SOURCE, src, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = src / "blender_manifest.toml"
    manifest.write_text("\n".join(line for line in manifest.read_text().splitlines() if not line.startswith("id ")))
    with pytest.raises(bx.ExtensionBuildError, match="id"):
        bx.run_tool("validate", str(src))


@pytest.fixture
def extension() -> Iterator[Any]:
    """The extension package loaded from its source folder the way Blender loads it, registered; unregistered in
    ``finally`` (the GPU session's leak report must then be empty)."""
    spec = importlib.util.spec_from_file_location("bl_ext.vixen_test.vixen_assets",
                                                  bx.EXTENSION_SOURCE / "__init__.py",
                                                  submodule_search_locations=[str(bx.EXTENSION_SOURCE)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.register()
    try:
        yield module
    finally:
        from vixen_assets_blender import ui

        device = ui.SESSION.device
        problems = validation_problems(device) if device is not None else []
        module.unregister()
        del sys.modules[spec.name]
        assert problems == []
        assert ui.SESSION.device is None


def test_register_load_select_unregister(extension: Any, tmp_path: Path, device: Any) -> None:
    from vixen_assets_blender import ui

    assert hasattr(bpy.types, "VIXEN_PT_panel") and hasattr(bpy.ops.vixen, "load_to_gpu")
    path = tmp_path / "showcase.blend"
    build_showcase(path)
    bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
    settings = bpy.context.scene.vixen_assets
    settings.budget_mb = 64.0
    assert bpy.ops.vixen.load_to_gpu() == {"FINISHED"}
    with vixen_assets_blender.load_blend(None, device) as direct:  # the same open session, another device
        assert settings.triangles == direct.triangle_count > 0
        assert settings.meshes == len(direct.meshes)
        assert settings.instances == len(direct.instances)
        assert settings.warning_count == len(direct.warnings) and "EmptyMesh" in settings.warnings
    assert 0 < settings.gpu_bytes <= 64 * 2**20
    assert ui.SESSION.device.budget.limit <= 64 * 2**20 + 1
    assert ui.SESSION.scene is not None and settings.seconds > 0
    settings.via = "usd"
    assert bpy.ops.vixen.load_to_gpu() == {"FINISHED"}
    assert settings.triangles == direct.triangle_count
    # an issue pointing at an object of the exported scene selects that object
    item = settings.issues.add()
    item.code, item.severity, item.pointer = "test.rule", "warning", "/root/Sub/sub_cube"
    item.object_name = ui._object_of(item.pointer)
    assert item.object_name == "Sub"
    assert bpy.ops.vixen.select_issue(index=0) == {"FINISHED"}
    assert bpy.context.view_layer.objects.active.name == "Sub"
    assert [o.name for o in bpy.context.view_layer.objects if o.select_get()] == ["Sub"]
    assert bpy.ops.vixen.release() == {"FINISHED"} and ui.SESSION.device is None


def test_validate_operator(extension: Any, tmp_path: Path) -> None:
    path = tmp_path / "showcase.blend"
    build_showcase(path)
    bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
    settings = bpy.context.scene.vixen_assets
    has_validate = callable(getattr(vixen_assets, "validate", None))
    if not has_validate:
        with pytest.raises(RuntimeError, match=r"vixen_assets\.validate"):
            bpy.ops.vixen.validate()  # an ERROR report raises in a script, with the clear message
        assert "vixen_assets.validate" in settings.status and len(settings.issues) == 0
    else:
        assert bpy.ops.vixen.validate() == {"FINISHED"}
        assert settings.status.endswith("issue(s)")


def test_unregister_removes_everything(extension: Any) -> None:
    extension.unregister()
    try:
        assert not hasattr(bpy.types, "VIXEN_PT_panel")
        assert not hasattr(bpy.types.Scene, "vixen_assets")
    finally:
        extension.register()  # the fixture unregisters again
