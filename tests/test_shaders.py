"""The shipped SPIR-V is current: every GLSL source under ``vixen_assets/shaders`` recompiled with glslang equals its
shipped SPIR-V: ``NAME.comp`` -> ``NAME.spv``; ray-tracing stages ``NAME.rgen`` / ``.rmiss`` / ``.rchit`` / ``.rint``
-> ``NAME.STAGE.spv`` (one pipeline's stages share a name).

Regenerate a shader with (from the repository root)::

    glslangValidator --target-env vulkan1.2 -V vixen_assets/shaders/NAME.comp -o vixen_assets/shaders/NAME.spv
    glslangValidator --target-env vulkan1.2 -V vixen_assets/shaders/NAME.rgen -o vixen_assets/shaders/NAME.rgen.spv
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SHADERS = Path(__file__).resolve().parent.parent / "vixen_assets" / "shaders"
FLAGS = ["--target-env", "vulkan1.2", "-V"]
STAGES = (".comp", ".rgen", ".rmiss", ".rchit", ".rint")
SOURCES = sorted(p for p in SHADERS.iterdir() if p.suffix in STAGES)


def spirv_of(src: Path) -> Path:
    """The shipped SPIR-V of a GLSL source."""
    return src.with_suffix(".spv") if src.suffix == ".comp" else src.with_name(src.name + ".spv")


def _glslang() -> str:
    exe = shutil.which("glslangValidator")
    if exe is None:
        msg = "glslangValidator not found (Debian: apt-get install glslang-tools)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


def _regenerate(src: Path) -> str:
    spv = spirv_of(src)
    return (f"glslangValidator {' '.join(FLAGS)} {src.relative_to(SHADERS.parent.parent)} "
            f"-o {spv.relative_to(SHADERS.parent.parent)}")


def test_there_are_shaders() -> None:
    """The package ships shaders, each with its SPIR-V, and no SPIR-V without a source."""
    assert SOURCES, f"no GLSL sources ({', '.join(STAGES)}) under {SHADERS}"
    assert {".comp", ".rgen", ".rmiss", ".rchit", ".rint"} <= {p.suffix for p in SOURCES}
    spvs = {p.name for p in SHADERS.glob("*.spv")}
    comps = {spirv_of(p).name for p in SOURCES}
    assert comps <= spvs, f"shaders without shipped SPIR-V: {sorted(comps - spvs)}"
    assert spvs <= comps, f"SPIR-V without a GLSL source: {sorted(spvs - comps)}"


@pytest.mark.parametrize("src", SOURCES, ids=[p.name for p in SOURCES])
def test_shipped_spirv_is_current(src: Path, tmp_path: Path) -> None:
    """Compile the GLSL source into ``tmp_path`` and compare the bytes with the shipped ``.spv``."""
    exe = _glslang()
    out = tmp_path / spirv_of(src).name
    proc = subprocess.run([exe, *FLAGS, str(src), "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"glslangValidator failed on {src.name}:\n{proc.stdout}\n{proc.stderr}"
    shipped = spirv_of(src)
    assert shipped.exists(), f"{shipped.name} is missing; generate it with:\n    {_regenerate(src)}"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    assert out.read_bytes() == shipped.read_bytes(), (
        f"{shipped.name} is stale: it differs from what {src.name} compiles to ({' '.join(version)}). "
        f"Regenerate it from the repository root with:\n    {_regenerate(src)}")
