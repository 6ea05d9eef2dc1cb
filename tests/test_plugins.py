"""The plugin system (``vixen_assets.plugins``, ``vixen_assets.hookspecs``, ``vixen_assets.cachers.registry``).

Every hook in ``hookspecs`` has a test below that implements it. Each test gets a fresh plugin manager (the
``pm`` fixture, entry points off unless a test says otherwise) and registers its temporary plugins through
``add_plugin``, which unregisters them in ``finally``. Entry-point loading is tested with a throw-away distribution
(a ``*.dist-info`` folder with ``entry_points.txt``) put on ``sys.path`` for one test.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vixen_assets
from vixen_assets import hookimpl, hookspecs, plugins
from vixen_assets.cachers import LoadContext, TypedCacher
from vixen_assets.errors import PluginError
from vixen_assets.plugins import (
    DISABLE_AUTOLOAD_ENV,
    cacher_registry,
    get_plugin_manager,
    plugin_infos,
    resolve_asset_path,
)

MESH_PLUGIN = "vixen_assets.cachers.mesh"
POINTS_PLUGIN = "points"  # the example plugin under plugins/vixen-assets-points, installed by scripts/setup.sh


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def pm() -> Any:
    """A fresh plugin manager with only the built-in plugins (entry points not loaded)."""
    return get_plugin_manager(load_entrypoints=False)


@pytest.fixture
def add_plugin(pm: Any) -> Iterator[Callable[..., Any]]:
    """``add_plugin(obj, name)`` registers a temporary plugin on ``pm``; every one is unregistered in ``finally``."""
    added: list[Any] = []

    def add(plugin: Any, name: str) -> Any:
        pm.register(plugin, name=name)
        added.append(plugin)
        return plugin

    try:
        yield add
    finally:
        for plugin in reversed(added):
            if pm.is_registered(plugin):
                pm.unregister(plugin)


QUAD = """\
def Mesh "Quad"
{
    int[] faceVertexCounts = [4]
    int[] faceVertexIndices = [0, 1, 2, 3]
    point3f[] points = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]
}
"""


def write_stage(path: Path, *bodies: str) -> Path:
    """Write a ``.usda`` file holding the prim definitions ``bodies``."""
    path.write_text("#usda 1.0\n\n" + "\n".join(bodies))
    return path


def sphere(name: str, radius: float) -> str:
    """A ``Sphere`` prim definition."""
    return f'def Sphere "{name}"\n{{\n    double radius = {radius}\n}}\n'


@dataclass(eq=False)
class GpuRadius:
    """The entry of :class:`SphereCacher`: one float32 on the GPU."""

    key: str
    buffer: Any

    @property
    def nbytes(self) -> int:
        """Bytes of the buffer."""
        return int(self.buffer.size)


class SphereCacher(TypedCacher[np.ndarray, GpuRadius]):
    """A minimal cacher for the tests: a ``Sphere`` prim's radius as one float32 buffer."""

    name = "sphere"
    prim_types = ("Sphere",)

    def read_prim(self, prim: Any, context: LoadContext) -> np.ndarray:
        """The radius as a (1,) float32 array."""
        return np.array([prim.GetAttribute("radius").Get(context.time)], np.float32)

    def key_for(self, source: np.ndarray) -> str:
        """The radius bytes are the key."""
        return source.tobytes().hex()

    def build(self, sources: Sequence[np.ndarray], group: Any) -> list[GpuRadius]:
        """One 4-byte buffer per radius."""
        out = []
        for src in sources:
            buf = group.create_buffer(4, "storage", name=f"radius:{src[0]}", category=self.name)
            self.device.uploader.enqueue(buf, src)
            out.append(GpuRadius(self.key_for(src), buf))
        return out

    def entry_nbytes(self, entry: GpuRadius) -> int:
        """Bytes of the buffer."""
        return entry.nbytes

    def destroy_entry(self, entry: GpuRadius) -> None:
        """Destroy the buffer."""
        entry.buffer.destroy()


class OtherSphereCacher(SphereCacher):
    """Claims ``Sphere`` too (a duplicate registration)."""

    name = "other-sphere"


class ConeCacher(SphereCacher):
    """Claims ``Cone``, a type nobody else handles."""

    name = "cone"
    prim_types = ("Cone",)


class SpherePlugin:
    """A plugin object (pluggy accepts any object with hookimpl-marked methods) registering :class:`SphereCacher`."""

    @hookimpl
    def vixen_register_cachers(self, registry: Any) -> None:
        registry.register(SphereCacher)


class Recorder:
    """Implements every notification hook and records the calls."""

    def __init__(self) -> None:
        self.scenes: list[Any] = []
        self.cached: list[tuple[str, str, int]] = []
        self.progress: list[tuple[str, int, int]] = []

    @hookimpl
    def vixen_stage_loaded(self, scene: Any) -> None:
        self.scenes.append(scene)

    @hookimpl
    def vixen_asset_cached(self, cacher_name: str, key: str, nbytes: int) -> None:
        self.cached.append((cacher_name, key, nbytes))

    @hookimpl
    def vixen_progress(self, phase: str, done: int, total: int) -> None:
        self.progress.append((phase, done, total))


# ---------------------------------------------------------------- the plugin manager


def test_builtins_then_entry_points_then_check_pending() -> None:
    pm = get_plugin_manager(load_entrypoints=True)
    names = [name for name, _plugin in pm.list_name_plugin()]
    assert names[0] == MESH_PLUGIN  # built-ins first (plugins.DEFAULT_PLUGINS) ...
    assert names[: len(plugins.DEFAULT_PLUGINS)] == list(plugins.DEFAULT_PLUGINS)
    assert POINTS_PLUGIN in names  # ... then the "vixen_assets" entry points
    assert names.index(POINTS_PLUGIN) >= len(plugins.DEFAULT_PLUGINS)
    assert pm.vixen_failures == []
    pm.check_pending()  # nothing left unverified

    infos = {i.name: i for i in plugin_infos(pm)}
    assert infos[MESH_PLUGIN].builtin and infos[MESH_PLUGIN].version == vixen_assets.__version__
    assert "vixen_register_cachers" in infos[MESH_PLUGIN].hooks
    assert not infos[POINTS_PLUGIN].builtin
    assert infos[POINTS_PLUGIN].version == importlib.metadata.version("vixen-assets-points")


def test_each_call_builds_a_fresh_manager(pm: Any) -> None:
    other = get_plugin_manager(load_entrypoints=False)
    assert other is not pm
    pm.register(SpherePlugin(), name="only-in-pm")
    try:
        assert other.get_plugin("only-in-pm") is None
    finally:
        pm.unregister(name="only-in-pm")


def test_default_manager_is_built_once_and_can_be_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "_default", None)  # restored after the test
    first = plugins.default_plugin_manager()
    assert plugins.default_plugin_manager() is first
    plugins.reset_default_plugin_manager()
    assert plugins.default_plugin_manager() is not first


def test_nothing_is_loaded_at_import_time() -> None:
    code = ("import sys, vixen_assets, vixen_assets.plugins as p; "
            "assert p._default is None; assert 'vixen_assets_points' not in sys.modules; "
            f"assert {MESH_PLUGIN!r} not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_every_hook_is_named_vixen_and_documented() -> None:
    names = hookspecs.all_hook_names()
    assert set(names) >= {"vixen_register_cachers", "vixen_stage_loaded", "vixen_asset_cached", "vixen_progress",
                          "vixen_resolve_asset_path"}
    for name in names:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert ":param" in doc and ":returns:" in doc and ".. versionadded::" in doc, name
        assert "Implementing this hook" in doc, name


# ---------------------------------------------------------------- vixen_register_cachers(registry)


def test_register_cachers_hook(pm: Any, add_plugin: Callable[..., Any], device: Any, tmp_path: Path) -> None:
    add_plugin(SpherePlugin(), "spheres")
    registry = cacher_registry(pm)
    reg = registry.for_prim_type("Sphere")
    assert reg is not None and reg.cacher is SphereCacher and reg.plugin == "spheres"
    assert registry.for_prim_type("Mesh").plugin == MESH_PLUGIN  # the built-in, registered through the same hook

    path = write_stage(tmp_path / "spheres.usda", sphere("A", 2.0), sphere("B", 2.0), sphere("C", 3.5), QUAD)
    with vixen_assets.load_stage(path, device, plugin_manager=pm) as scene:
        assert scene.warnings == []
        by_path = {i.prim_path: i for i in scene.instances}
        assert by_path["/A"].kind == "sphere" and by_path["/Quad"].kind == "mesh"
        assert by_path["/A"].mesh is by_path["/B"].mesh  # the same radius is uploaded once
        for prim, radius in (("/A", 2.0), ("/C", 3.5)):
            got = device.read_buffer(by_path[prim].mesh.buffer, 4).view(np.float32)
            np.testing.assert_array_equal(got, [radius])
        assert device.cachers["sphere"].stats.misses == 2


def test_registering_after_first_use_is_seen(pm: Any, add_plugin: Callable[..., Any]) -> None:
    assert cacher_registry(pm).for_prim_type("Sphere") is None
    plugin = add_plugin(SpherePlugin(), "late")
    assert cacher_registry(pm).for_prim_type("Sphere") is not None
    pm.unregister(plugin)
    assert cacher_registry(pm).for_prim_type("Sphere") is None


def test_duplicate_prim_type_drops_the_second_plugin_and_names_both(pm: Any, add_plugin: Callable[..., Any]) -> None:
    class First:
        @hookimpl
        def vixen_register_cachers(self, registry: Any) -> None:
            registry.register(SphereCacher)

    class Second:
        @hookimpl
        def vixen_register_cachers(self, registry: Any) -> None:
            registry.register(ConeCacher)         # fine on its own ...
            registry.register(OtherSphereCacher)  # ... but this one claims "Sphere" again

    add_plugin(First(), "first")
    add_plugin(Second(), "second")
    registry = cacher_registry(pm)
    assert registry.for_prim_type("Sphere").plugin == "first"
    assert registry.for_prim_type("Cone") is None  # all-or-nothing: none of the second plugin's cachers
    assert registry.by_name("cone") is None
    [failure] = pm.vixen_failures
    assert failure.name == "second"
    assert "'second'" in failure.error and "'first'" in failure.error and "'Sphere'" in failure.error
    assert "vixen_register_cachers(registry)" in failure.error
    cacher_registry(pm)  # asking again reports nothing twice
    assert len(pm.vixen_failures) == 1


def test_claiming_a_builtin_prim_type_is_refused(pm: Any, add_plugin: Callable[..., Any]) -> None:
    class MeshThief:
        @hookimpl
        def vixen_register_cachers(self, registry: Any) -> None:
            registry.register(ConeCacher, prim_types=("Mesh",))

    add_plugin(MeshThief(), "thief")
    registry = cacher_registry(pm)
    assert registry.for_prim_type("Mesh").plugin == MESH_PLUGIN
    [failure] = pm.vixen_failures
    assert "'thief'" in failure.error and repr(MESH_PLUGIN) in failure.error


def test_registration_hook_that_raises_drops_only_that_plugin(pm: Any, add_plugin: Callable[..., Any]) -> None:
    class Broken:
        @hookimpl
        def vixen_register_cachers(self, registry: Any) -> None:
            registry.register(ConeCacher)
            raise RuntimeError("cannot find libcone")

    add_plugin(SpherePlugin(), "spheres")
    add_plugin(Broken(), "broken")
    registry = cacher_registry(pm)
    assert registry.for_prim_type("Sphere") is not None
    assert registry.for_prim_type("Cone") is None
    [failure] = pm.vixen_failures
    assert failure.name == "broken"
    assert "cannot find libcone" in failure.error and "vixen_register_cachers(registry)" in failure.error


# ---------------------------------------------------------------- notification hooks


def test_stage_loaded_hook(pm: Any, add_plugin: Callable[..., Any], device: Any, tmp_path: Path) -> None:
    rec = add_plugin(Recorder(), "recorder")
    path = write_stage(tmp_path / "quad.usda", QUAD)
    with vixen_assets.load_stage(path, device, plugin_manager=pm) as scene:
        assert rec.scenes == [scene]
        assert len(scene.meshes) == 1  # everything is on the GPU when the hook runs
    with vixen_assets.load_stage(path, device, plugin_manager=pm) as warm:
        assert warm.stats.warm
        assert rec.scenes[-1] is warm  # a warm reload is a load too


def test_asset_cached_hook(pm: Any, add_plugin: Callable[..., Any], device: Any, tmp_path: Path) -> None:
    rec = add_plugin(Recorder(), "recorder")
    path = write_stage(tmp_path / "quad.usda", QUAD, QUAD.replace('"Quad"', '"Twin"'))
    with vixen_assets.load_stage(path, device, plugin_manager=pm) as scene:
        [mesh] = scene.meshes  # the two identical quads share one entry
        assert rec.cached == [("mesh", mesh.key, mesh.nbytes)]
    with vixen_assets.load_stage(path, device, plugin_manager=pm):
        assert len(rec.cached) == 1  # cache hits are not reported


def test_progress_hook(pm: Any, add_plugin: Callable[..., Any], device: Any, tmp_path: Path) -> None:
    rec = add_plugin(Recorder(), "recorder")
    seen: list[tuple[str, int, int]] = []
    path = write_stage(tmp_path / "quad.usda", QUAD)
    with vixen_assets.load_stage(path, device, plugin_manager=pm, progress=lambda *a: seen.append(a)):
        pass
    assert rec.progress == seen  # the hook sees what the progress= callback sees
    phases = [p for p, _d, _t in rec.progress]
    assert phases[0] == "walk" and phases[-1] == "upload"
    assert {"walk", "read", "build", "upload"} <= set(phases)
    assert all(0 <= done <= total or total == 0 for _p, done, total in rec.progress)


def test_notification_hook_that_raises_is_reported_and_the_load_succeeds(
        pm: Any, add_plugin: Callable[..., Any], device: Any, tmp_path: Path) -> None:
    class Broken:
        @hookimpl
        def vixen_stage_loaded(self, scene: Any) -> None:
            raise RuntimeError("boom")

        @hookimpl
        def vixen_progress(self, phase: str, done: int, total: int) -> None:
            raise ValueError("bad progress bar")

        @hookimpl
        def vixen_asset_cached(self, cacher_name: str, key: str, nbytes: int) -> None:
            raise KeyError(key)

    add_plugin(Broken(), "broken-plugin")
    rec = add_plugin(Recorder(), "recorder")  # the other plugins still run
    path = write_stage(tmp_path / "quad.usda", QUAD)
    with vixen_assets.load_stage(path, device, plugin_manager=pm) as scene:
        assert len(scene.meshes) == 1
        [warning] = scene.warnings
        assert "'broken-plugin'" in warning and "vixen_stage_loaded(scene)" in warning and "boom" in warning
        assert rec.scenes == [scene] and rec.cached and rec.progress


# ---------------------------------------------------------------- vixen_resolve_asset_path(asset_path, anchor)


def test_resolve_asset_path_first_result_wins(pm: Any, add_plugin: Callable[..., Any]) -> None:
    assert resolve_asset_path(pm, "tex/wood.png", "/scenes/room.usda") is None  # nobody answers

    calls: list[str] = []

    class Fallback:
        @hookimpl
        def vixen_resolve_asset_path(self, asset_path: str, anchor: str) -> str | None:
            calls.append("fallback")
            return os.path.join(os.path.dirname(anchor), "fallback", asset_path)

    class Library:
        @hookimpl
        def vixen_resolve_asset_path(self, asset_path: str, anchor: str) -> str | None:
            calls.append("library")
            return "/library/" + asset_path[len("lib:"):] if asset_path.startswith("lib:") else None

    add_plugin(Fallback(), "fallback")
    add_plugin(Library(), "library")  # registered last: asked first (pluggy's LIFO order)
    assert resolve_asset_path(pm, "lib:tree.vox", "/scenes/park.usda") == "/library/tree.vox"
    assert calls == ["library"]  # firstresult: the fallback was not asked
    calls.clear()
    assert resolve_asset_path(pm, "tex/wood.png", "/scenes/room.usda") == "/scenes/fallback/tex/wood.png"
    assert calls == ["library", "fallback"]


def test_resolve_asset_path_that_raises_names_the_hook(pm: Any, add_plugin: Callable[..., Any]) -> None:
    class Broken:
        @hookimpl
        def vixen_resolve_asset_path(self, asset_path: str, anchor: str) -> str | None:
            raise OSError("library server down")

    add_plugin(Broken(), "broken")
    with pytest.raises(PluginError) as info:
        resolve_asset_path(pm, "lib:tree.vox", "/scenes/park.usda")
    assert "library server down" in str(info.value)
    assert "vixen_resolve_asset_path(asset_path, anchor)" in str(info.value)


# ---------------------------------------------------------------- vixen_load_scene_file(path, device, options)


class Tri:
    """The docs/plugins.md example: a ``.tri`` file of one triangle per line of nine numbers, through the mesh
    cacher. ``seen`` records every call (also the ones it declines)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def vixen_load_scene_file(self, path: str, device: Any, options: dict[str, Any]) -> Any:
        from vixen_assets.cachers.mesh import MeshCacher
        from vixen_assets.errors import FormatError
        from vixen_assets.geometry.mesh_source import MeshSource
        from vixen_assets.scene import Instance, Scene

        self.seen.append((path, options))
        if not path.endswith(".tri"):
            return None
        try:
            points = np.loadtxt(path, dtype=np.float32).reshape(-1, 3)
        except ValueError as exc:
            raise FormatError(f"not a .tri file: {exc}", path=path) from exc
        n = len(points) // 3
        src = MeshSource(points, np.full(n, 3, np.int32), np.arange(3 * n, dtype=np.int32), prim_path="/tri")
        scene = Scene(device, path)
        scene.up_axis, scene.meters_per_unit = "Z", 1.0
        cacher = MeshCacher.for_device(device)
        key = cacher.key_for(src)
        (mesh,) = cacher.get_many([src], [key])
        scene.hold(cacher, key)
        device.uploader.flush().wait()
        scene.meshes = [mesh]
        scene.instances = [Instance(mesh, np.eye(4, dtype=np.float32), "/tri")]
        return scene


def test_load_scene_file_hook(pm: Any, add_plugin: Callable[..., Any], device: Any, tmp_path: Path) -> None:
    tri = add_plugin(Tri(), "tri")
    rec = add_plugin(Recorder(), "recorder")
    path = tmp_path / "two.tri"
    path.write_text("0 0 0 1 0 0 0 1 0\n0 0 1 1 0 1 0 1 1\n")
    with vixen_assets.load_stage(path, device, plugin_manager=pm, up_axis="Y", meters_per_unit=0.01,
                                 acceleration_structures=True) as scene:
        assert scene.triangle_count == 2
        assert tri.seen[-1][0] == str(path) and tri.seen[-1][1]["plugin_manager"] is pm
        assert rec.scenes == [scene]  # the core notifies, once
        assert scene.tlas is not None  # and builds what was asked for
        assert (scene.up_axis, scene.meters_per_unit) == ("Y", 0.01)
        lo, hi = scene.bounds  # Z-up meters -> Y-up centimeters: (x, y, z) -> 100 * (x, z, -y)
        assert np.allclose(lo, [0, 0, -100]) and np.allclose(hi, [100, 100, 0])
    # USD files never reach the hook; unknown suffixes nobody handles fail as before, naming the file
    quad = write_stage(tmp_path / "quad.usda", QUAD)
    with vixen_assets.load_stage(quad, device, plugin_manager=pm):
        pass
    assert all(p != str(quad) for p, _o in tri.seen)
    other = tmp_path / "scene.xyz"
    other.write_text("nothing")
    from vixen_assets.errors import FormatError

    with pytest.raises(FormatError, match="scene.xyz"):
        vixen_assets.load_stage(other, device, plugin_manager=pm)
    assert tri.seen[-1][0] == str(other)  # asked, declined
    bad = tmp_path / "bad.tri"
    bad.write_text("one two three\n")
    with pytest.raises(FormatError, match="bad.tri"):
        vixen_assets.load_stage(bad, device, plugin_manager=pm)


def test_load_scene_file_that_raises_names_the_hook(pm: Any, add_plugin: Callable[..., Any], device: Any,
                                                    tmp_path: Path) -> None:
    class Broken:
        @hookimpl
        def vixen_load_scene_file(self, path: str, device: Any, options: dict[str, Any]) -> Any:
            raise RuntimeError("parser crashed")

    add_plugin(Broken(), "broken")
    path = tmp_path / "x.tri"
    path.write_text("0 0 0 1 0 0 0 1 0\n")
    with pytest.raises(PluginError, match=r"parser crashed") as info:
        vixen_assets.load_stage(path, device, plugin_manager=pm)
    assert "vixen_load_scene_file(path, device, options)" in str(info.value)


# ---------------------------------------------------------------- entry points


def make_distribution(root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Create an installed-looking distribution under ``root``: ``<name>-0.1.dist-info`` plus module files."""
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[vixen_assets]\n{lines}")
    for mod, source in modules.items():
        (root / f"{mod}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A distribution with a good plugin and three broken ones, importable for one test."""
    modules = {
        "vixen_assets_test_good": """
            from vixen_assets import hookimpl
            seen = []

            @hookimpl
            def vixen_progress(phase, done, total):
                seen.append(phase)
        """,
        "vixen_assets_test_raises": """
            raise ImportError("vixen_assets_test_raises needs libfoo")
        """,
        "vixen_assets_test_typo": """
            from vixen_assets import hookimpl

            @hookimpl
            def vixen_stage_loadd(scene):  # misspelt: check_pending() finds it
                pass
        """,
    }
    make_distribution(tmp_path, "vixen-assets-test", {
        "good": "vixen_assets_test_good",
        "missing": "vixen_assets_test_no_such_module",
        "raises": "vixen_assets_test_raises",
        "typo": "vixen_assets_test_typo",
    }, modules)
    monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates importlib's caches
    try:
        yield tmp_path
    finally:
        for mod in modules:
            sys.modules.pop(mod, None)


def test_broken_entry_points_are_recorded_and_the_others_load(fake_distribution: Path) -> None:
    pm = get_plugin_manager(load_entrypoints=True)
    failures = {f.name: f.error for f in pm.vixen_failures}
    assert set(failures) == {"missing", "raises", "typo"}
    assert "ModuleNotFoundError" in failures["missing"] and "vixen_assets_test_no_such_module" in failures["missing"]
    assert "needs libfoo" in failures["raises"]
    assert "'typo'" in failures["typo"] and "vixen_stage_loadd" in failures["typo"]
    for name in failures:
        assert pm.get_plugin(name) is None
    # the others load: the good one from the same distribution, the installed points plugin, the built-ins
    assert pm.get_plugin("good") is not None
    assert pm.vixen_versions["good"] == "0.1"
    assert pm.get_plugin(POINTS_PLUGIN) is not None
    assert cacher_registry(pm).for_prim_type("Mesh") is not None
    plugins.notify_progress(pm, "walk", 1, 1)
    assert sys.modules["vixen_assets_test_good"].seen == ["walk"]


def test_disable_autoload_env_skips_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    pm = get_plugin_manager()
    assert pm.get_plugin(POINTS_PLUGIN) is None
    assert [n for n, _p in pm.list_name_plugin()] == list(plugins.DEFAULT_PLUGINS)  # built-ins still load
    assert cacher_registry(pm).for_prim_type("Points") is None
    assert cacher_registry(pm).for_prim_type("Mesh") is not None
    # an explicit argument wins over the environment
    assert get_plugin_manager(load_entrypoints=True).get_plugin(POINTS_PLUGIN) is not None

    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "0")
    pm = get_plugin_manager()
    assert pm.get_plugin(POINTS_PLUGIN) is not None
    assert cacher_registry(pm).for_prim_type("Points").plugin == POINTS_PLUGIN


# ---------------------------------------------------------------- vixen-assets plugins


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``vixen-assets`` command (or ``python -m vixen_assets.cli.main``)."""
    exe = shutil.which("vixen-assets", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "vixen_assets.cli.main"]
    full_env = {k: v for k, v in os.environ.items() if k != DISABLE_AUTOLOAD_ENV}
    full_env.update(env or {})
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=full_env, timeout=120)


def test_cli_plugins_json_lists_plugins_versions_and_hooks() -> None:
    out = run_cli("plugins", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    mesh = by_name[MESH_PLUGIN]
    assert mesh["builtin"] is True and mesh["version"] == vixen_assets.__version__
    assert "vixen_register_cachers" in mesh["hooks"]
    points = by_name[POINTS_PLUGIN]
    assert points["builtin"] is False
    assert points["version"] == importlib.metadata.version("vixen-assets-points")
    assert points["hooks"] == ["vixen_register_cachers", "vixen_register_validators", "vixen_stage_loaded"]
    cachers = {c["cacher"]: c for c in data["cachers"]}
    assert cachers["mesh"]["prim_types"] == ["Mesh"] and cachers["mesh"]["plugin"] == MESH_PLUGIN
    assert cachers["points"]["prim_types"] == ["Points"] and cachers["points"]["plugin"] == POINTS_PLUGIN
    assert data["failures"] == []


def test_cli_plugins_table_and_disabled_autoload() -> None:
    out = run_cli("plugins")
    assert out.returncode == 0, out.stderr
    assert MESH_PLUGIN in out.stdout and POINTS_PLUGIN in out.stdout and "vixen_register_cachers" in out.stdout

    off = run_cli("plugins", "--json", env={DISABLE_AUTOLOAD_ENV: "1"})
    assert off.returncode == 0, off.stderr
    names = [p["name"] for p in json.loads(off.stdout)["plugins"]]
    assert names == list(plugins.DEFAULT_PLUGINS)


# ---------------------------------------------------------------- vixen_register_validators(register)


def test_register_validators_hook_fills_the_rule_registry_all_or_nothing(pm: Any, add_plugin: Any,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    from vixen_assets.validate.engine import build_registry

    def check(ctx: Any) -> Any:
        yield ("mine.rule", "warning", ctx.path, "", "found")

    class Mine:
        @hookimpl
        def vixen_register_validators(self, register: Any) -> None:
            register("mine.rule", severity="warning", doc="a rule", check=check, suffixes=(".mine",))
            register("mine.other", severity="info", doc="another", check=check)

    class Clash:
        @hookimpl
        def vixen_register_validators(self, register: Any) -> None:
            register("clash.fine", severity="info", doc="would be fine alone", check=check)
            register("mine.rule", severity="error", doc="the same id", check=check)

    class Broken:
        @hookimpl
        def vixen_register_validators(self, register: Any) -> None:
            raise RuntimeError("boom")

    add_plugin(Mine(), "mine")
    add_plugin(Clash(), "clash")
    add_plugin(Broken(), "broken")
    reg = build_registry(pm)
    assert reg.rules["mine.rule"].plugin == "mine" and reg.rules["mine.rule"].suffixes == (".mine",)
    assert "mine.other" in reg.rules
    assert "clash.fine" not in reg.rules  # all-or-nothing: the clash dropped every rule of that plugin
    assert "geom.points-nan" in reg.rules and "usd.open-failed" in reg.rules  # built-ins through the same hook
    assert any(r.startswith("usd.usdGeomValidators:") for r in reg.rules)
    text = caplog.text
    assert "'mine.rule' is already registered by plugin 'mine'" in text and "plugin 'clash'" in text
    assert "plugin 'broken'" in text and "RuntimeError: boom" in text
    names = [p for p, _ in plugins.validator_impls(pm)]
    assert names.index("mine") < names.index("clash") < names.index("broken")
