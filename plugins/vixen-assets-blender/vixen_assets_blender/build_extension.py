"""Build the Blender extension zip (``make blender-extension``) and validate it with Blender's own tool.

``python -m vixen_assets_blender.build_extension [-o DIR] [--no-wheels]``:

1. stage ``vixen_assets_blender/extension/`` (``blender_manifest.toml``, ``__init__.py``, ``LICENSE``) in a
   temporary folder;
2. build the two vixen wheels (``vixen-assets`` from the checkout this plugin lives in, and
   ``vixen-assets-blender``) with ``pip wheel --no-deps`` into its ``wheels/`` folder and list them in the
   manifest's ``wheels``, so Blender installs them with the extension. Their third-party dependencies (usd-core,
   vulkan, zstandard, ...) are not bundled: the README's install step puts them into Blender's Python;
3. run Blender's extension tool, ``blender_ext.py build`` then ``blender_ext.py validate`` (the code behind
   ``blender --command extension build|validate``, shipped in the ``bpy`` wheel under
   ``bpy/<version>/scripts/addons_core/bl_pkg/cli/``), with this Python.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXTENSION_SOURCE = HERE / "extension"
PLUGIN_ROOT = HERE.parent
#: The vixen-assets checkout this plugin lives in (``plugins/vixen-assets-blender`` two levels below it).
CORE_ROOT = PLUGIN_ROOT.parent.parent


class ExtensionBuildError(RuntimeError):
    """Building or validating the extension failed; the message holds the tool's output."""


def blender_ext_tool() -> Path:
    """The path of Blender's ``blender_ext.py`` inside the installed ``bpy`` wheel.

    :returns: the script's path.
    :raises ExtensionBuildError: bpy is not installed or ships no extension tool.
    """
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise ExtensionBuildError("bpy is not installed: it provides Blender's extension tool")
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise ExtensionBuildError(f"no blender_ext.py under {Path(spec.origin).parent}")
    return found[-1]


def run_tool(*args: str) -> str:
    """Run ``blender_ext.py ARGS...`` with this Python; return its output.

    :param args: the tool's command line (``validate``, path, ...).
    :returns: stdout and stderr together.
    :raises ExtensionBuildError: the tool exited with an error (its output is in the message).
    """
    proc = subprocess.run([sys.executable, str(blender_ext_tool()), *args], capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "FATAL_ERROR" in out or "Error:" in out:
        raise ExtensionBuildError(f"blender_ext.py {' '.join(args)} failed ({proc.returncode}):\n{out}")
    return out


def build_wheels(dest: Path) -> list[Path]:
    """``pip wheel --no-deps`` of vixen-assets (this checkout) and vixen-assets-blender into ``dest``.

    :param dest: the folder to write them to.
    :returns: the wheel files.
    """
    if not (CORE_ROOT / "pyproject.toml").is_file():
        raise ExtensionBuildError(f"{CORE_ROOT} is not a vixen-assets checkout: build the extension from one")
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest), str(CORE_ROOT),
                           str(PLUGIN_ROOT)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise ExtensionBuildError(f"pip wheel failed:\n{proc.stdout}{proc.stderr}")
    return sorted(dest.glob("*.whl"))


def build_extension(output_dir: Path, *, wheels: bool = True) -> Path:
    """Build and validate the extension zip.

    :param output_dir: where the zip goes (created when missing).
    :param wheels: bundle the two vixen wheels (``False``: the zip expects vixen-assets installed in Blender's
        Python already).
    :returns: the zip's path (``vixen_assets-<version>.zip``).
    :raises ExtensionBuildError: a step failed (the message says which, with the tool's output).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vixen-ext-") as tmp:
        stage = Path(tmp) / "vixen_assets"
        shutil.copytree(EXTENSION_SOURCE, stage, ignore=shutil.ignore_patterns("__pycache__"))
        manifest = (stage / "blender_manifest.toml").read_text()
        if wheels:
            files = build_wheels(stage / "wheels")
            listed = ", ".join(f'"./wheels/{w.name}"' for w in files)
            manifest = manifest.replace("# wheels = []", f"wheels = [{listed}]")
        (stage / "blender_manifest.toml").write_text(manifest)
        run_tool("validate", str(stage))
        run_tool("build", "--source-dir", str(stage), "--output-dir", str(output_dir))
    version = next(line.split("=", 1)[1].strip().strip('"') for line in manifest.splitlines()
                   if line.startswith("version"))
    zips = sorted(output_dir.glob(f"vixen_assets-{version}*.zip"))
    if not zips:
        raise ExtensionBuildError(f"blender_ext.py build wrote no vixen_assets-{version}.zip into {output_dir}")
    run_tool("validate", str(zips[-1]))
    return zips[-1]


def main(argv: list[str] | None = None) -> int:
    """Command line: build into ``-o`` (default ``dist/``) and print the zip's path."""
    ap = argparse.ArgumentParser(prog="python -m vixen_assets_blender.build_extension", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output-dir", default="dist", help="where the zip goes (default: dist)")
    ap.add_argument("--no-wheels", action="store_true", help="do not bundle the vixen wheels")
    args = ap.parse_args(argv)
    try:
        path = build_extension(Path(args.output_dir), wheels=not args.no_wheels)
    except ExtensionBuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
