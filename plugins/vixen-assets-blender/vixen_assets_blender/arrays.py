"""One Blender mesh as numpy arrays, read with ``foreach_get`` into preallocated arrays (no Python loop per vertex,
corner or face), and turned into the core's :class:`~vixen_assets.geometry.mesh_source.MeshSource`.

Blender stores faces as runs of corners in face order (``Mesh.polygons[i].loop_start`` increases with ``i``), so
the face sizes (``loop_total``) and the corner vertices (``.corner_vert``) are exactly USD's ``faceVertexCounts`` and
``faceVertexIndices``; the core triangulates the n-gons (``n - 2`` triangles each, as ``Mesh.loop_triangles``).

Normals follow ``Mesh.normals_domain``: ``POINT`` (all smooth, nothing custom) gives one normal per vertex,
``FACE`` (all flat) one per face, ``CORNER`` (sharp edges, mixed smoothing or custom split normals) one per corner:
what Blender draws. The active UV map becomes the ``st`` primvar (one value per corner).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from vixen_assets.geometry.mesh_source import MeshSource, PrimvarData, SubsetSource

#: ``Mesh.normals_domain`` -> the USD interpolation of the normals read for it.
NORMAL_INTERPOLATION = {"POINT": "vertex", "FACE": "uniform", "CORNER": "faceVarying"}


@dataclass(eq=False)
class MeshArrays:
    """The arrays of one (evaluated) Blender mesh, in the mesh's object space.

    ``points`` (N, 3) float32; ``face_sizes`` (F,) int32 corners per face; ``corner_verts`` (C,) int32 vertex of each
    corner, faces one after the other; ``normals`` with ``normals_interpolation`` (``vertex``, ``uniform`` or
    ``faceVarying``); ``uv`` (C, 2) float32 of the active UV map (``None`` without one) named ``uv_name``;
    ``material_index`` (F,) int32 material slot of each face; ``name`` the mesh datablock's name.
    """

    name: str
    points: np.ndarray
    face_sizes: np.ndarray
    corner_verts: np.ndarray
    normals: np.ndarray
    normals_interpolation: str
    material_index: np.ndarray
    uv: np.ndarray | None = None
    uv_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def triangle_count(self) -> int:
        """Triangles once every face is triangulated (``n - 2`` per face, as Blender's ``loop_triangles``)."""
        return int(self.face_sizes.sum(dtype=np.int64)) - 2 * len(self.face_sizes)

    def to_source(self, prim_path: str, layer_path: str, materials: list[str | None]) -> MeshSource:
        """The core's mesh source: faces, normals, ``st``, and one face subset per material slot in use.

        :param prim_path: the name the mesh carries in the scene and in error messages.
        :param layer_path: the ``.blend`` file (error messages).
        :param materials: the material path of each slot (``None`` for an empty slot).
        :returns: a :class:`MeshSource` whose arrays are these (no copies).
        """
        primvars = {}
        if self.uv is not None:
            primvars["st"] = PrimvarData(self.uv, "faceVarying")
        used = np.unique(self.material_index) if len(self.material_index) else np.zeros(0, np.int32)
        subsets: list[SubsetSource] = []
        material_path = None
        if len(used) == 1:
            k = int(used[0])
            material_path = materials[k] if 0 <= k < len(materials) else None
        elif len(used) > 1:
            order = np.argsort(self.material_index, kind="stable")
            bounds = np.searchsorted(self.material_index[order], used, side="left").tolist() + [len(order)]
            for n, k in enumerate(used.tolist()):
                faces = order[bounds[n]:bounds[n + 1]].astype(np.int32)
                mat = materials[k] if 0 <= k < len(materials) else None
                subsets.append(SubsetSource(f"slot{k}", faces, mat, f"{prim_path}/slot{k}"))
        return MeshSource(self.points, self.face_sizes, self.corner_verts, normals=self.normals,
                          normals_interpolation=self.normals_interpolation, primvars=primvars, subsets=subsets,
                          prim_path=prim_path, layer_path=layer_path, material_path=material_path)


def _get(collection: Any, attr: str, count: int, dtype: Any, width: int = 1) -> np.ndarray:
    """``collection.foreach_get(attr, out)`` into a new array of ``count * width`` values."""
    out = np.empty(count * width, dtype=dtype)
    if count:
        collection.foreach_get(attr, out)
    return out.reshape(count, width) if width > 1 else out


def mesh_arrays(obj: Any, depsgraph: Any = None) -> MeshArrays:
    """The arrays of a mesh object, with its modifiers applied when ``depsgraph`` is given (or the object is itself
    an evaluated object).

    :param obj: a ``bpy.types.Object`` of type ``MESH`` (original or evaluated), or a ``bpy.types.Mesh``.
    :param depsgraph: an evaluated ``bpy.types.Depsgraph``: the object's evaluated mesh is read (modifiers,
        geometry nodes). ``None``: the object's data as it is.
    :returns: the arrays in the object's local space (apply ``obj.matrix_world`` for world space).
    :raises TypeError: ``obj`` is neither a mesh object nor a mesh.
    """
    import bpy

    if isinstance(obj, bpy.types.Mesh):
        mesh = obj
    else:
        if getattr(obj, "type", None) != "MESH":
            raise TypeError(f"mesh_arrays needs a mesh object, got {getattr(obj, 'type', type(obj).__name__)!r}")
        if depsgraph is not None:
            obj = obj.evaluated_get(depsgraph)
        mesh = obj.data
    return read_mesh(mesh)


def read_mesh(mesh: Any) -> MeshArrays:
    """The arrays of one ``bpy.types.Mesh`` (see :class:`MeshArrays`); every read is one ``foreach_get``.

    :param mesh: the mesh datablock (an evaluated one to get modifiers applied).
    :returns: its arrays.
    """
    nv, nf, nc = len(mesh.vertices), len(mesh.polygons), len(mesh.loops)
    points = _get(mesh.vertices, "co", nv, np.float32, 3)
    face_sizes = _get(mesh.polygons, "loop_total", nf, np.int32)
    corner_verts = _get(mesh.loops, "vertex_index", nc, np.int32)
    domain = mesh.normals_domain if nf else "POINT"
    if domain == "POINT":
        normals = _get(mesh.vertex_normals, "vector", nv, np.float32, 3)
    elif domain == "FACE":
        normals = _get(mesh.polygon_normals, "vector", nf, np.float32, 3)
    else:
        normals = _get(mesh.corner_normals, "vector", nc, np.float32, 3)
    attr = mesh.attributes.get("material_index")
    if attr is not None and attr.domain == "FACE":
        material_index = _get(attr.data, "value", nf, np.int32)
    else:
        material_index = np.zeros(nf, np.int32)
    uv = uv_name = None
    layer = mesh.uv_layers.active
    if layer is not None:
        uv_name = layer.name
        uv = _get(layer.uv, "vector", nc, np.float32, 2)
    return MeshArrays(mesh.name, points, face_sizes, corner_verts, normals, NORMAL_INTERPOLATION[domain],
                      material_index, uv, uv_name)


__all__ = ["MeshArrays", "NORMAL_INTERPOLATION", "mesh_arrays", "read_mesh"]
