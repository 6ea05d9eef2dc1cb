"""Run the bpy tests (``test_blender.py``, ``test_extension.py``) in the bpy virtualenv when this interpreter has no
bpy: one subprocess pytest, which must pass every test and skip none."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from blender_venv import BPY_TESTS, HAS_BPY, REPO, blender_python, bpy_has_wheel


@pytest.mark.skipif(HAS_BPY, reason="bpy is importable here: the bpy tests ran in this process")
def test_bpy_tests_pass_in_the_blender_venv() -> None:
    python = blender_python()
    if python is None:
        if not bpy_has_wheel():
            pytest.skip("PyPI has no bpy wheel for this Python (3.11 and 3.13+ have one)")
        pytest.fail("no bpy virtualenv: run `make setup` (it creates .venv-blender) or set VIXEN_BLENDER_PYTHON")
    tests = [str(REPO / "plugins" / "vixen-assets-blender" / "tests" / name) for name in BPY_TESTS]
    proc = subprocess.run([str(python), "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider"], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env={**os.environ})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    summary = out.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) > 0, summary
    assert "skipped" not in summary and "failed" not in summary and "error" not in summary, summary
    print(summary)


@pytest.mark.skipif(HAS_BPY, reason="bpy is importable here")
def test_without_bpy_a_blend_is_a_clear_error(device: object, tmp_path: object) -> None:
    from pathlib import Path

    import vixen_assets
    import vixen_assets.plugins
    import vixen_assets_blender
    from vixen_assets.errors import UnsupportedFeatureError

    pm = vixen_assets.plugins.get_plugin_manager(load_entrypoints=False)
    pm.register(vixen_assets_blender, name="blender")
    path = Path(str(tmp_path)) / "scene.blend"
    path.write_bytes(b"BLENDER-v300" + bytes(64) + b"ENDB" + bytes(20))
    with pytest.raises(UnsupportedFeatureError, match="needs the bpy module") as info:
        vixen_assets.load_stage(path, device, plugin_manager=pm)
    assert str(path) in str(info.value)


@pytest.mark.skipif(HAS_BPY, reason="bpy is importable here")
def test_rules_without_bpy_check_the_structure(tmp_path: object) -> None:
    from pathlib import Path

    import vixen_assets.plugins
    from vixen_assets_blender import rules

    path = Path(str(tmp_path)) / "scene.blend"
    path.write_bytes(b"BLENDER-v300" + bytes(64) + b"ENDB" + bytes(20))
    [(code, severity, _pointer, message)] = rules.findings(str(path))
    assert (code, severity) == ("blend.bpy-missing", "info") and "bpy" in message
    path.write_bytes(b"not a blend at all")
    [(code, severity, _pointer, message)] = rules.findings(str(path))
    assert (code, severity) == ("blend.file", "error") and "not a .blend file" in message
    # the rules' hook is optional: a vixen-assets without batch validation still loads the plugin
    pm = vixen_assets.plugins.get_plugin_manager()
    assert pm.get_plugin("blender") is not None
    assert not [f for f in pm.vixen_failures if f.name == "blender"]
