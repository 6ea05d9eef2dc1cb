"""Scenes built with bpy for the tests, and what bpy itself says about them (the expected values).

``build_showcase(path)`` makes one scene with every case the issue lists: modifiers (subdivision, mirror, array),
n-gons (a concave one too), several material slots, two UV maps, custom split normals, linked duplicates, a
collection instance, an empty mesh, hidden objects and a packed image texture; it is saved to ``path``.

``expected(depsgraph)`` reads bpy's own answer for every visible mesh placement: the triangles of
``Mesh.loop_triangles`` and the world-space corner positions, normals and active UVs (through plain per-element
Python access where it is short, so that it does not share code with the loader).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _mesh(name: str, verts: list[tuple[float, float, float]], faces: list[tuple[int, ...]]) -> Any:
    import bpy

    me = bpy.data.meshes.new(name)
    me.from_pydata(verts, [], faces)
    me.update()
    return me


def _object(name: str, mesh: Any, location: tuple[float, float, float] = (0, 0, 0), collection: Any = None) -> Any:
    import bpy

    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    (collection or bpy.context.scene.collection).objects.link(obj)
    return obj


CUBE_V = [(-1, -1, -1), (1, -1, -1), (1, 1, -1), (-1, 1, -1), (-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)]
CUBE_F = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]


def packed_image(name: str = "checker", size: int = 8) -> tuple[Any, np.ndarray]:
    """A small image with known pixels, packed into the file (as PNG); returns it and its RGBA8 pixels, top row
    first (as the GPU image holds them)."""
    import bpy

    img = bpy.data.images.new(name, size, size, alpha=True)
    yy, xx = np.mgrid[0:size, 0:size]
    rgba = np.zeros((size, size, 4), np.float32)  # Blender rows: bottom-up
    rgba[..., 0] = xx / (size - 1)
    rgba[..., 1] = yy / (size - 1)
    rgba[..., 2] = ((xx + yy) % 2).astype(np.float32)
    rgba[..., 3] = 1.0
    img.pixels.foreach_set(rgba.ravel())
    img.pack()
    expect = (np.clip(rgba, 0, 1) * 255 + 0.5).astype(np.uint8)[::-1]
    return img, expect


def build_showcase(path: Path) -> dict[str, Any]:
    """Build the showcase scene in a fresh bpy session and save it to ``path``; return facts about it."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    facts: dict[str, Any] = {}

    sub = _object("Sub", _mesh("sub_cube", CUBE_V, CUBE_F), (0, 0, 0))
    sub.modifiers.new("subsurf", "SUBSURF").levels = 2

    half = _mesh("half", [(0.5, 0, 0), (2, 0, 0), (2, 1, 0.5), (0.5, 1, 0)], [(0, 1, 2, 3)])
    mir = _object("Mir", half, (0, 6, 0))
    mir.modifiers.new("mirror", "MIRROR")

    arr = _object("Arr", _mesh("arr_cube", CUBE_V, CUBE_F), (0, -6, 0))
    mod = arr.modifiers.new("array", "ARRAY")
    mod.count = 3
    mod.relative_offset_displace = (1.5, 0, 0)

    # n-gons: a hexagon and a concave pentagon (an arrow head)
    ngon = _mesh("ngons", [(0, 0, 0), (2, 0, 0), (3, 1, 0), (2, 2, 0), (0, 2, 0), (-1, 1, 0),
                           (5, 0, 0), (8, 1, 0), (5, 2, 0), (6, 1, 0), (5.5, 1, 1)],
                 [(0, 1, 2, 3, 4, 5), (6, 7, 8, 9), (6, 9, 10)])
    _object("Ngon", ngon, (6, 0, 0))

    # several material slots, the second with a packed image texture
    mats_mesh = _mesh("mats_cube", CUBE_V, CUBE_F)
    img, pixels = packed_image()
    for k, name in enumerate(("red", "textured", "blue")):
        mat = bpy.data.materials.new(name)
        if name == "textured":
            tex = mat.node_tree.nodes.new("ShaderNodeTexImage")
            tex.image = img
            bsdf = mat.node_tree.nodes["Principled BSDF"]
            mat.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
        mats_mesh.materials.append(mat)
    mats_mesh.polygons.foreach_set("material_index", [0, 1, 1, 2, 2, 0])
    facts["material_faces"] = {"red": 2, "textured": 2, "blue": 2}
    facts["image_pixels"] = pixels
    uv_a = mats_mesh.uv_layers.new(name="first")
    uv_b = mats_mesh.uv_layers.new(name="second")
    n = len(mats_mesh.loops)
    uv_a.uv.foreach_set("vector", np.zeros(2 * n, np.float32))
    uv_b.uv.foreach_set("vector", np.linspace(0, 1, 2 * n, dtype=np.float32))
    mats_mesh.uv_layers.active = uv_b
    _object("Mats", mats_mesh, (-6, 0, 0))

    # custom split normals: every corner points along +Z
    cn = _mesh("custom_normals", [(0, 0, 0), (1, 0, 0), (1, 1, 0.3), (0, 1, 0)], [(0, 1, 2, 3)])
    cn.normals_split_custom_set([(0.0, 0.0, 1.0)] * 4)
    _object("Custom", cn, (-6, 6, 0))

    # linked duplicates (one mesh datablock, no modifiers) -> one GPU mesh, three instances
    shared = _mesh("shared_cube", CUBE_V, CUBE_F)
    for k in range(3):
        obj = _object(f"Link{k}", shared, (k * 3.0, 12, 0))
        obj.rotation_euler = (0.3 * k, 0.1, 0.2 * k)
        obj.scale = (1 + 0.5 * k, 1, 1)

    # a collection instance: the collection is not in the scene, an empty places it twice
    coll = bpy.data.collections.new("props")
    _object("Prop", _mesh("prop_mesh", [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)],
                          [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]), (0.5, 0, 0), collection=coll)
    for k in range(2):
        emp = bpy.data.objects.new(f"PropPlacer{k}", None)
        emp.instance_type = "COLLECTION"
        emp.instance_collection = coll
        emp.location = (10, -10 + 4 * k, 2)
        emp.rotation_euler = (0, 0, 0.5 * k)
        scene.collection.objects.link(emp)

    # geometry-nodes instances: three copies of the prop's mesh on the points of a line
    _geometry_nodes_instancer(bpy.data.objects["Prop"], (-10.0, -10.0, 0.0))

    # an empty mesh (a warning, not an error) and hidden objects (skipped)
    _object("EmptyMesh", _mesh("nothing", [(0, 0, 0), (1, 0, 0)], []), (0, 0, 9))
    hidden = _object("Hidden", _mesh("hidden_cube", CUBE_V, CUBE_F), (20, 20, 20))
    hidden.hide_set(True)
    hidden_vp = _object("HiddenViewport", _mesh("hidden_cube2", CUBE_V, CUBE_F), (-20, 20, 20))
    hidden_vp.hide_viewport = True
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return facts


def _geometry_nodes_instancer(prop: Any, location: tuple[float, float, float]) -> Any:
    """An object whose geometry-nodes modifier puts ``prop`` on the 3 points of a mesh line (as instances)."""
    import bpy

    tree = bpy.data.node_groups.new("scatter", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    line = tree.nodes.new("GeometryNodeMeshLine")
    line.inputs["Count"].default_value = 3
    line.inputs["Offset"].default_value = (0.0, 2.0, 0.0)
    info = tree.nodes.new("GeometryNodeObjectInfo")
    info.inputs["Object"].default_value = prop
    info.inputs["As Instance"].default_value = True  # what the USD exporter needs to write a point instancer
    scatter = tree.nodes.new("GeometryNodeInstanceOnPoints")
    out = tree.nodes.new("NodeGroupOutput")
    tree.links.new(line.outputs["Mesh"], scatter.inputs["Points"])
    tree.links.new(info.outputs["Geometry"], scatter.inputs["Instance"])
    tree.links.new(scatter.outputs["Instances"], out.inputs["Geometry"])
    obj = _object("Scatter", _mesh("scatter_base", [(0, 0, 0)], []), location)
    obj.modifiers.new("scatter", "NODES").node_group = tree
    return obj


@dataclass
class Placement:
    """bpy's answer for one visible mesh placement."""

    name: str
    parent: str | None
    triangles: int
    world_corners: np.ndarray  # (C, 3) float64 world position of each corner
    world_normals: np.ndarray  # (C, 3) corner normals in world space (normalized)
    uv: np.ndarray | None      # (C, 2) active UV per corner
    material_triangles: dict[str, int]


def expected(depsgraph: Any) -> list[Placement]:
    """Every visible mesh placement of the evaluated depsgraph as bpy computes it."""
    out = []
    for inst in depsgraph.object_instances:
        obj = inst.object
        if obj.type != "MESH" or (not inst.is_instance and not inst.show_self):
            continue
        me = obj.data
        if not len(me.polygons):
            continue
        m = np.array(inst.matrix_world, dtype=np.float64)
        co = np.array([v.co[:] for v in me.vertices], np.float64)
        cv = np.array([lp.vertex_index for lp in me.loops], np.int64)
        corners = co[cv] @ m[:3, :3].T + m[:3, 3]
        nrm = np.array([c.vector[:] for c in me.corner_normals], np.float64) @ np.linalg.inv(m[:3, :3])
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
        uv = None
        if me.uv_layers.active is not None:
            uv = np.array([d.vector[:] for d in me.uv_layers.active.uv], np.float64)
        me.calc_loop_triangles()
        per_mat: dict[str, int] = {}
        for tri in me.loop_triangles:
            slot = obj.material_slots[tri.material_index].material if len(obj.material_slots) else None
            key = slot.name if slot is not None else "-"
            per_mat[key] = per_mat.get(key, 0) + 1
        out.append(Placement(obj.name, inst.parent.name if inst.is_instance and inst.parent else None,
                             len(me.loop_triangles), corners, nrm, uv, per_mat))
    return out


def rows(a: np.ndarray, decimals: int = 4) -> set[tuple[float, ...]]:
    """The distinct rows of ``a`` rounded to ``decimals`` (``-0.0`` folded into ``0.0``)."""
    r = np.round(np.asarray(a, np.float64), decimals) + 0.0
    return set(map(tuple, r.tolist()))
