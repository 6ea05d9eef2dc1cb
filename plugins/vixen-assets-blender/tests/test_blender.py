"""``load_blend`` on scenes the tests build with bpy, checked against bpy's own answers and the GPU's bytes.

- triangle counts equal ``Mesh.loop_triangles`` of the evaluated meshes (per placement and per material);
- vertex positions, normals and active UVs read back from the GPU, taken to world space with each instance's
  transform, equal bpy's world-space corner positions, corner normals and UVs (as sets of rows: the GPU splits
  vertices where corners differ, and triangulates n-gons its own way);
- ``via="usd"`` (Blender's exporter, then ``load_stage``) agrees with ``via="arrays"``: triangles, bounds and every
  object's world positions;
- hidden objects are skipped, an empty mesh is a warning, linked duplicates share one GPU mesh, the packed image
  is on the GPU with its pixels;
- a corrupt or truncated ``.blend`` is a ``FormatError`` naming the file, and nothing stays on the device.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vixen_assets
import vixen_assets.plugins
import vixen_assets_blender
from vixen_assets.cachers.mesh import MeshCacher
from vixen_assets.errors import ConfigError, FormatError

bpy = pytest.importorskip("bpy", reason="bpy has no wheel for this Python (3.11 and 3.13+ have one)")

from blend_scenes import build_showcase, expected, rows  # noqa: E402


@pytest.fixture
def pm() -> Iterator[Any]:
    """A fresh plugin manager with the built-in cachers and this plugin."""
    manager = vixen_assets.plugins.get_plugin_manager(load_entrypoints=False)
    manager.register(vixen_assets_blender, name="blender")
    try:
        yield manager
    finally:
        manager.unregister(vixen_assets_blender)


@pytest.fixture(scope="module")
def showcase(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The showcase scene saved once per module."""
    path = tmp_path_factory.mktemp("blend") / "showcase.blend"
    facts = build_showcase(path)
    return path, facts


def gpu_corners(device: Any, inst: Any) -> dict[str, np.ndarray]:
    """The instance's mesh read back from the GPU: world positions, world normals and st of every triangle
    corner (3 per triangle, in index order), plus the raw indices."""
    m = inst.mesh
    raw_v = device.read_buffer(m.vertex_buffer, m.vertex_count * m.stride).view(np.float32)
    floats = raw_v.reshape(m.vertex_count, m.stride // 4)
    idx = device.read_buffer(m.index_buffer, m.index_count * np.dtype(m.index_dtype).itemsize)
    idx = idx.view(m.index_dtype).astype(np.int64)
    t = inst.transform.astype(np.float64)

    def attr(name: str, n: int) -> np.ndarray:
        off = m.layout[name][0] // 4
        return floats[:, off:off + n].astype(np.float64)

    pos = attr("position", 3) @ t[:3, :3].T + t[:3, 3]
    nrm = attr("normal", 3) @ np.linalg.inv(t[:3, :3])
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    return {"pos": pos[idx], "nrm": nrm[idx], "st": attr("st", 2)[idx], "indices": idx}


def test_arrays_path_matches_bpy(device: Any, showcase: tuple[Path, dict[str, Any]]) -> None:
    path, facts = showcase
    with vixen_assets_blender.load_blend(path, device) as scene:
        want = expected(bpy.context.evaluated_depsgraph_get())
        assert (scene.up_axis, scene.meters_per_unit) == ("Z", 1.0)
        # every visible placement, nothing hidden, the empty mesh only as a warning
        names = Counter(i.prim_path.split("/")[-1].split("[")[0] for i in scene.instances)
        assert names == Counter(p.name for p in want)
        assert not {"Hidden", "HiddenViewport", "EmptyMesh"} & set(names)
        [warning] = [w for w in scene.warnings if "EmptyMesh" in w]
        assert "no faces" in warning and str(path) in warning
        assert scene.triangle_count == sum(p.triangles for p in want)
        by_name: dict[str, list[Any]] = {}
        for inst in scene.instances:
            by_name.setdefault(inst.prim_path.split("/")[-1].split("[")[0], []).append(inst)
        for p in want:
            candidates = by_name[p.name]
            got = [gpu_corners(device, inst) for inst in candidates]
            # the placement bpy reports is one of the instances of that object (collection instances: two)
            match = [g for g, inst in zip(got, candidates) if rows(g["pos"]) == rows(p.world_corners)]
            assert match, f"{p.name}: no GPU instance has bpy's world positions"
            g = match[0]
            assert len(g["indices"]) == 3 * p.triangles, p.name
            # (position, normal) pairs: what Blender draws, custom split normals included
            assert rows(np.hstack([g["pos"], g["nrm"]]), 3) == rows(np.hstack([p.world_corners, p.world_normals]), 3), p.name
            if p.uv is not None:
                assert rows(np.hstack([g["pos"], g["st"]])) == rows(np.hstack([p.world_corners, p.uv])), p.name
        # linked duplicates share one GPU mesh; the modified objects each have their own
        links = [i.mesh for i in scene.instances if i.prim_path.startswith("/Link")]
        assert len(links) == 3 and len({id(m) for m in links}) == 1
        props = [i for i in scene.instances if i.prim_path.startswith("/PropPlacer")]
        assert len(props) == 2 and props[0].mesh is props[1].mesh
        assert {i.prim_path.split("/")[1] for i in props} == {"PropPlacer0", "PropPlacer1"}
        assert scene.stats.unique_meshes == len(scene.meshes) == len({id(i.mesh) for i in scene.instances})
        # geometry-nodes instances: three placements of the prop's mesh, one row apart along y
        scattered = [i for i in scene.instances if i.prim_path.startswith("/Scatter/")]
        assert len(scattered) == 3 and all(i.mesh is props[0].mesh for i in scattered)
        ys = sorted(float(i.transform[1, 3]) for i in scattered)
        assert np.allclose(np.diff(ys), 2.0)


def test_material_slots_are_submeshes_and_the_packed_image_is_on_the_gpu(
        device: Any, showcase: tuple[Path, dict[str, Any]]) -> None:
    path, facts = showcase
    with vixen_assets_blender.load_blend(path, device) as scene:
        want = {p.name: p for p in expected(bpy.context.evaluated_depsgraph_get())}
        [inst] = [i for i in scene.instances if i.prim_path == "/Mats"]
        subs = {s.material_path: s.index_count // 3 for s in inst.mesh.submeshes if s.index_count}
        assert subs == {f"/materials/{k}": v for k, v in want["Mats"].material_triangles.items()}
        assert sum(subs.values()) == want["Mats"].triangles
        [tex] = scene.textures
        assert tex in inst.textures
        pixels = device.read_image(tex)
        assert pixels.shape == facts["image_pixels"].shape
        assert np.abs(pixels.astype(int) - facts["image_pixels"].astype(int)).max() <= 1


def test_usd_path_agrees_with_arrays(device: Any, showcase: tuple[Path, dict[str, Any]]) -> None:
    path, _facts = showcase
    with vixen_assets_blender.load_blend(path, device, via="arrays") as arrays:
        a_tris, a_bounds = arrays.triangle_count, arrays.bounds
        a_objects = _world_rows_by_object(device, arrays, lambda p: p.split("/")[1].split("[")[0])
    with vixen_assets_blender.load_blend(path, device, via="usd") as usd:
        assert usd.path == str(path)
        assert usd.up_axis == "Z" and usd.meters_per_unit == 1.0
        assert usd.triangle_count == a_tris
        assert np.allclose(usd.bounds[0], a_bounds[0], atol=1e-4) and np.allclose(usd.bounds[1], a_bounds[1], atol=1e-4)
        u_objects = _world_rows_by_object(device, usd, lambda p: p.split("/")[2])  # /root/<object>/...
    for name, pts in a_objects.items():
        assert u_objects.get(name) == pts, f"{name}: the two paths put different vertices in the world"


def _world_rows_by_object(device: Any, scene: Any, object_of: Any) -> dict[str, set[tuple[float, ...]]]:
    out: dict[str, set[tuple[float, ...]]] = {}
    for inst in scene.instances:
        out.setdefault(object_of(inst.prim_path), set()).update(rows(gpu_corners(device, inst)["pos"], 3))
    return out


def test_load_stage_and_cli_accept_blend(device: Any, pm: Any, showcase: tuple[Path, dict[str, Any]]) -> None:
    path, _facts = showcase
    with vixen_assets.load_stage(path, device, plugin_manager=pm, up_axis="Y", acceleration_structures=True) as scene:
        with vixen_assets_blender.load_blend(path, device) as direct:
            assert scene.triangle_count == direct.triangle_count
            lo, hi = direct.bounds
        assert scene.up_axis == "Y" and scene.tlas is not None
        # Z-up to Y-up: (x, y, z) -> (x, z, -y)
        assert np.allclose(scene.bounds[0], [lo[0], lo[2], -hi[1]], atol=1e-4)
        assert np.allclose(scene.bounds[1], [hi[0], hi[2], -lo[1]], atol=1e-4)


def test_cli_loads_a_blend(showcase: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from vixen_assets.cli.main import main

    path, _facts = showcase
    assert main(["load", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    vixen_assets_blender.loader.open_blend(str(path))
    want = expected(bpy.context.evaluated_depsgraph_get())
    assert summary["triangle_count"] == sum(p.triangles for p in want)
    assert summary["instances"] == len(want) and summary["up_axis"] == "Z"
    assert any("EmptyMesh" in w for w in summary["warning_messages"])


def test_evaluated_false_reads_meshes_as_authored(device: Any, showcase: tuple[Path, dict[str, Any]]) -> None:
    path, _facts = showcase
    with vixen_assets_blender.load_blend(path, device, evaluated=False) as scene:
        [sub] = [i for i in scene.instances if i.prim_path == "/Sub"]
        assert sub.mesh.triangle_count == 12  # the cube without its subdivision modifier
        [arr] = [i for i in scene.instances if i.prim_path == "/Arr"]
        assert arr.mesh.triangle_count == 12


def test_mesh_arrays_without_a_device(showcase: tuple[Path, dict[str, Any]]) -> None:
    path, _facts = showcase
    vixen_assets_blender.loader.open_blend(str(path))
    graph = bpy.context.evaluated_depsgraph_get()
    obj = bpy.data.objects["Sub"]
    a = vixen_assets_blender.mesh_arrays(obj, graph)
    ev = obj.evaluated_get(graph).data
    ev.calc_loop_triangles()
    assert a.triangle_count == len(ev.loop_triangles) == 6 * 16 * 2
    assert a.points.shape == (len(ev.vertices), 3) and a.points.dtype == np.float32
    assert np.array_equal(a.corner_verts, [lp.vertex_index for lp in ev.loops])
    raw = vixen_assets_blender.mesh_arrays(obj)
    assert raw.triangle_count == 12
    ngon = vixen_assets_blender.mesh_arrays(bpy.data.objects["Ngon"])
    assert ngon.face_sizes.tolist() == [6, 4, 3] and ngon.triangle_count == 4 + 2 + 1
    with pytest.raises(TypeError, match="mesh object"):
        vixen_assets_blender.mesh_arrays(bpy.data.objects["PropPlacer0"])


@pytest.mark.parametrize("damage", ["junk", "truncated-half", "truncated-tail", "empty"])
def test_corrupt_blend_is_a_format_error_and_leaves_nothing(device: Any, tmp_path: Path,
                                                            showcase: tuple[Path, dict[str, Any]], damage: str) -> None:
    good = showcase[0].read_bytes()
    bad = tmp_path / f"{damage}.blend"
    bad.write_bytes({"junk": b"this is not a blend file" * 40, "truncated-half": good[: len(good) // 2],
                     "truncated-tail": good[:-7], "empty": b""}[damage])
    cacher = MeshCacher.for_device(device)
    used = device.budget.used
    with pytest.raises(FormatError) as info:
        vixen_assets_blender.load_blend(bad, device)
    assert str(bad) in str(info.value)
    assert device.budget.used == used and cacher.stats.entries == 0
    with pytest.raises(FormatError, match="not found"):
        vixen_assets_blender.load_blend(tmp_path / "missing.blend", device)
    # the device is still usable
    with vixen_assets_blender.load_blend(showcase[0], device) as scene:
        assert scene.triangle_count > 0


def test_bad_arguments(device: Any, showcase: tuple[Path, dict[str, Any]]) -> None:
    with pytest.raises(ConfigError, match="via"):
        vixen_assets_blender.load_blend(showcase[0], device, via="fbx")
    with pytest.raises(ConfigError, match="no Blender scene named 'Nope'"):
        vixen_assets_blender.load_blend(showcase[0], device, scene="Nope")


def test_strict_raises_on_the_empty_mesh(device: Any, showcase: tuple[Path, dict[str, Any]]) -> None:
    with pytest.raises(FormatError, match="EmptyMesh"):
        vixen_assets_blender.load_blend(showcase[0], device, strict=True)


def test_file_image_and_scene_units(device: Any, tmp_path: Path) -> None:
    """An image texture read from a file (not packed), and a scene whose unit is a centimetre: both paths agree
    once converted to meters, and ``meters_per_unit`` follows ``unit_settings.scale_length``."""
    from PIL import Image

    from blend_scenes import CUBE_F, CUBE_V, _mesh, _object
    from vixen_assets.usd.frame import convert_scene_frame

    png = tmp_path / "stripes.png"
    pixels = np.zeros((4, 6, 4), np.uint8)
    pixels[..., 0] = np.arange(6) * 40
    pixels[..., 1] = (np.arange(4) * 60)[:, None]
    pixels[..., 3] = 255
    Image.fromarray(pixels, "RGBA").save(png)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.unit_settings.scale_length = 0.01
    mat = bpy.data.materials.new("striped")
    tex = mat.node_tree.nodes.new("ShaderNodeTexImage")
    tex.image = bpy.data.images.load(str(png))
    mat.node_tree.links.new(tex.outputs["Color"], mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
    me = _mesh("box", CUBE_V, CUBE_F)
    me.materials.append(mat)
    obj = _object("Box", me, (100.0, 0.0, 0.0))
    obj.scale = (50.0, 50.0, 50.0)
    path = tmp_path / "units.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    with vixen_assets_blender.load_blend(path, device) as arrays:
        assert arrays.meters_per_unit == pytest.approx(0.01)
        [t] = arrays.textures
        assert t.width == 6 and t.height == 4
        assert np.array_equal(device.read_image(t), pixels)
        convert_scene_frame(arrays, None, 1.0)
        a_lo, a_hi = arrays.bounds
    assert np.allclose(a_lo, [0.5, -0.5, -0.5], atol=1e-5) and np.allclose(a_hi, [1.5, 0.5, 0.5], atol=1e-5)
    with vixen_assets_blender.load_blend(path, device, via="usd") as usd:
        [t] = usd.textures  # the exporter's copy of the file, through the USD path's material loading
        assert np.array_equal(device.read_image(t), pixels)
        convert_scene_frame(usd, None, 1.0)
        assert np.allclose(usd.bounds[0], a_lo, atol=1e-4) and np.allclose(usd.bounds[1], a_hi, atol=1e-4)


def test_missing_image_file_is_a_warning(device: Any, tmp_path: Path) -> None:
    from blend_scenes import CUBE_F, CUBE_V, _mesh, _object

    bpy.ops.wm.read_factory_settings(use_empty=True)
    mat = bpy.data.materials.new("lost")
    img = bpy.data.images.new("lost_image", 4, 4)
    img.source = "FILE"
    img.filepath = str(tmp_path / "gone.png")
    mat.node_tree.nodes.new("ShaderNodeTexImage").image = img
    me = _mesh("box", CUBE_V, CUBE_F)
    me.materials.append(mat)
    _object("Box", me)
    path = tmp_path / "lost.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    with vixen_assets_blender.load_blend(path, device) as scene:
        assert scene.triangle_count == 12 and scene.textures == []
        [warning] = scene.warnings
        assert "lost_image" in warning and "gone.png" in warning
    with pytest.raises(FormatError, match="gone.png"):
        vixen_assets_blender.load_blend(path, device, strict=True)


def test_validation_rules_find_what_the_loader_warns_about(showcase: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    from vixen_assets_blender import rules

    found = rules.findings(str(showcase[0]))
    assert ("blend.empty-mesh", "warning", "/EmptyMesh") in [f[:3] for f in found]
    assert not [f for f in found if f[1] == "error"]
    assert not [f for f in found if f[2] == "/Scatter"]  # an instancer's own empty mesh is not a finding
    bad = tmp_path / "cut.blend"
    bad.write_bytes(showcase[0].read_bytes()[:-9])
    assert [f[0] for f in rules.findings(str(bad))] == ["blend.file"]

    class Ctx:  # what the batch validation hands a check: the file, a cache shared by the rules of one asset
        path = str(showcase[0])
        cache: dict[str, Any] = {}

    issues = list(rules.CHECKS["blend.empty-mesh"](Ctx()))
    assert issues == [("blend.empty-mesh", "warning", str(showcase[0]), "/EmptyMesh",
                       "the evaluated mesh has no faces: nothing to draw")]
    registered: list[tuple[str, dict[str, Any]]] = []
    rules.vixen_register_validators(lambda code, **kw: registered.append((code, kw)))
    assert {c for c, _ in registered} == set(rules.RULES)
    assert all(kw["suffixes"] == (".blend",) and kw["check"] is rules.CHECKS[c] for c, kw in registered)
