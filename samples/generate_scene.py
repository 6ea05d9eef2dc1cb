"""Generate USD sample scenes of any size for vixen-assets tests and benchmarks.

Example::

    python samples/generate_scene.py --meshes 1000 --instances 0 --triangles 1000000 --out /tmp/big.usdc
    python samples/generate_scene.py --meshes 20 --instances 500 --mode instanceable --out /tmp/inst.usda
    python samples/generate_scene.py --small --out samples/scenes/small_scene.usda

``--triangles`` is the total triangle count of the ``--meshes`` unique meshes (instances come on top). The meshes
are varied and deterministic for a given ``--seed``:

* grids, UV spheres and tori made of quads plus some triangles (sphere poles, a split row on grids and tori);
* every tenth mesh also carries two concave polygons (an L shape and a five-pointed star) off to the side;
* ``st`` is a faceVarying primvar on every mesh (indexed on odd meshes); spheres and tori wrap without duplicated
  seam points, so their ``st`` seams split vertices as real assets do;
* normals: none on every third mesh, ``vertex`` on the next, ``faceVarying`` on the third;
* most meshes have a ``materialBind`` GeomSubset bound to one UsdPreviewSurface material while the mesh itself is
  bound to another.

``--mode`` decides how the ``--instances`` extra copies are made: ``xform`` (plain references, each a full prim),
``instanceable`` (instanceable references, native instancing) or ``pointinstancer`` (one UsdGeomPointInstancer).
The ``.usda``/``.usdc`` extension of ``--out`` picks the file format.

``--small`` writes the small bundled scene instead (``samples/scenes/small_scene.usda``): a few meshes, a subset,
an instanceable reference, a point instancer, an invisible prim, a ``guide``-purpose prim and a time-sampled xform.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, Vt

KINDS = ("grid", "sphere", "torus")
PALETTE = (
    (0.8, 0.2, 0.2),
    (0.2, 0.7, 0.3),
    (0.2, 0.3, 0.8),
    (0.9, 0.8, 0.2),
    (0.6, 0.3, 0.7),
    (0.9, 0.5, 0.1),
    (0.5, 0.5, 0.5),
    (0.1, 0.7, 0.8),
)


class MeshData:
    """Arrays of one generated mesh: points, topology, faceVarying ``st`` and optional vertex normals."""

    def __init__(self, points, counts, indices, st_fv, vertex_normals):
        self.points = np.ascontiguousarray(points, dtype=np.float32)
        self.counts = np.ascontiguousarray(counts, dtype=np.int32)
        self.indices = np.ascontiguousarray(indices, dtype=np.int32)
        self.st = np.ascontiguousarray(st_fv, dtype=np.float32)
        self.normals = None if vertex_normals is None else np.ascontiguousarray(vertex_normals, dtype=np.float32)

    @property
    def triangle_count(self) -> int:
        return int((self.counts - 2).sum())


def _quads_to_mixed(counts: np.ndarray, indices: np.ndarray, split_faces: np.ndarray):
    """Split the quads ``split_faces`` (all faces are quads) into two triangles each."""
    quads = indices.reshape(-1, 4)
    keep = np.ones(len(quads), dtype=bool)
    keep[split_faces] = False
    tris = quads[split_faces]
    tri_idx = np.concatenate([tris[:, [0, 1, 2]], tris[:, [0, 2, 3]]], axis=1).reshape(-1, 3)
    # Keep face order stable: split faces go to the end.
    new_indices = np.concatenate([quads[keep].ravel(), tri_idx.ravel()])
    new_counts = np.concatenate([np.full(int(keep.sum()), 4), np.full(len(tri_idx), 3)])
    return new_counts, new_indices


def _grid(tris: int, rng: np.random.Generator) -> MeshData:
    r = max(1, int(math.sqrt(tris / 2)))
    u, v = np.meshgrid(np.arange(r + 1), np.arange(r + 1), indexing="xy")
    height = 0.05 * np.sin(u * 0.7) * np.cos(v * 0.5) * rng.uniform(0.5, 1.5)
    pts = np.stack([u / r - 0.5, v / r - 0.5, height], axis=-1).reshape(-1, 3)
    ii, jj = np.meshgrid(np.arange(r), np.arange(r), indexing="xy")
    a = (jj * (r + 1) + ii).ravel()
    quads = np.stack([a, a + 1, a + r + 2, a + r + 1], axis=1)
    counts = np.full(len(quads), 4)
    counts, indices = _quads_to_mixed(counts, quads.ravel(), np.arange(min(r, len(quads))))
    uv = pts[:, :2] + 0.5
    return MeshData(pts, counts, indices, uv[indices], None)


def _sphere(tris: int, rng: np.random.Generator) -> MeshData:
    # triangles ~= 2 * nu * (nv - 1) with nv ~= nu / 2
    nu = max(4, int(math.sqrt(tris)))
    nv = max(3, nu // 2 + 1)
    lon = np.arange(nu) / nu * 2 * math.pi
    lat = (np.arange(1, nv) / nv) * math.pi
    lo, la = np.meshgrid(lon, lat, indexing="xy")
    ring = np.stack([np.sin(la) * np.cos(lo), np.sin(la) * np.sin(lo), np.cos(la)], axis=-1).reshape(-1, 3)
    pts = np.concatenate([[[0.0, 0.0, 1.0]], ring, [[0.0, 0.0, -1.0]]]) * 0.5
    top, bottom = 0, len(pts) - 1
    rows = nv - 1

    def ring_index(row, col):
        return 1 + row * nu + (col % nu)

    cols = np.arange(nu)
    faces_c, faces_i, faces_uv = [], [], []
    # top cap triangles
    tri = np.stack([np.full(nu, top), ring_index(0, cols), ring_index(0, cols + 1)], axis=1)
    tuv = np.stack(
        [
            np.stack([(cols + 0.5) / nu, np.ones(nu)], axis=1),
            np.stack([cols / nu, np.full(nu, 1 - 1 / nv)], axis=1),
            np.stack([(cols + 1) / nu, np.full(nu, 1 - 1 / nv)], axis=1),
        ],
        axis=1,
    )
    faces_c.append(np.full(nu, 3))
    faces_i.append(tri.ravel())
    faces_uv.append(tuv.reshape(-1, 2))
    # quads
    rr, cc = np.meshgrid(np.arange(rows - 1), cols, indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    quad = np.stack([ring_index(rr, cc), ring_index(rr + 1, cc), ring_index(rr + 1, cc + 1), ring_index(rr, cc + 1)], 1)
    v0 = 1 - (rr + 1) / nv
    v1 = 1 - (rr + 2) / nv
    quv = np.stack(
        [
            np.stack([cc / nu, v0], 1),
            np.stack([cc / nu, v1], 1),
            np.stack([(cc + 1) / nu, v1], 1),
            np.stack([(cc + 1) / nu, v0], 1),
        ],
        axis=1,
    )
    faces_c.append(np.full(len(quad), 4))
    faces_i.append(quad.ravel())
    faces_uv.append(quv.reshape(-1, 2))
    # bottom cap
    tri = np.stack([np.full(nu, bottom), ring_index(rows - 1, cols + 1), ring_index(rows - 1, cols)], axis=1)
    tuv = np.stack(
        [
            np.stack([(cols + 0.5) / nu, np.zeros(nu)], axis=1),
            np.stack([(cols + 1) / nu, np.full(nu, 1 / nv)], axis=1),
            np.stack([cols / nu, np.full(nu, 1 / nv)], axis=1),
        ],
        axis=1,
    )
    faces_c.append(np.full(nu, 3))
    faces_i.append(tri.ravel())
    faces_uv.append(tuv.reshape(-1, 2))
    normals = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    return MeshData(pts, np.concatenate(faces_c), np.concatenate(faces_i), np.concatenate(faces_uv), normals)


def _torus(tris: int, rng: np.random.Generator) -> MeshData:
    nu = max(3, int(math.sqrt(tris / 2) * 1.4))
    nv = max(3, int(tris / 2 / nu))
    big, small = 0.35, 0.12 * rng.uniform(0.8, 1.2)
    a = np.arange(nu) / nu * 2 * math.pi
    b = np.arange(nv) / nv * 2 * math.pi
    aa, bb = np.meshgrid(a, b, indexing="ij")
    pts = np.stack(
        [(big + small * np.cos(bb)) * np.cos(aa), (big + small * np.cos(bb)) * np.sin(aa), small * np.sin(bb)], -1
    ).reshape(-1, 3)
    centre = np.stack([big * np.cos(aa), big * np.sin(aa), np.zeros_like(aa)], -1).reshape(-1, 3)
    normals = pts - centre
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    ii, jj = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()

    def idx(i, j):
        return (i % nu) * nv + (j % nv)

    quads = np.stack([idx(ii, jj), idx(ii + 1, jj), idx(ii + 1, jj + 1), idx(ii, jj + 1)], 1)
    quv = np.stack(
        [
            np.stack([ii / nu, jj / nv], 1),
            np.stack([(ii + 1) / nu, jj / nv], 1),
            np.stack([(ii + 1) / nu, (jj + 1) / nv], 1),
            np.stack([ii / nu, (jj + 1) / nv], 1),
        ],
        axis=1,
    )
    split = np.arange(0, len(quads), max(1, len(quads) // 8))
    keep = np.ones(len(quads), dtype=bool)
    keep[split] = False
    t = quads[split]
    tuv = quv[split]
    counts = np.concatenate([np.full(int(keep.sum()), 4), np.full(2 * len(split), 3)])
    indices = np.concatenate([quads[keep].ravel(), np.concatenate([t[:, [0, 1, 2]], t[:, [0, 2, 3]]], 1).ravel()])
    split_uv = np.concatenate([tuv[:, [0, 1, 2]], tuv[:, [0, 2, 3]]], 1).reshape(-1, 2)
    st = np.concatenate([quv[keep].reshape(-1, 2), split_uv])
    return MeshData(pts, counts, indices, st, normals)


def _concave_extras(base: MeshData) -> MeshData:
    """Append an L-shaped hexagon and a five-pointed star (both concave) below the mesh."""
    l_shape = np.array([[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]], dtype=np.float64) * 0.1
    ang = np.arange(10) / 10 * 2 * math.pi + math.pi / 2
    rad = np.where(np.arange(10) % 2 == 0, 0.12, 0.05)
    star = np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
    polys = [l_shape + [-0.45, -0.8], star + [0.25, -0.7]]
    pts = [base.points]
    counts = [base.counts]
    indices = [base.indices]
    st = [base.st]
    normals = [base.normals] if base.normals is not None else None
    start = len(base.points)
    for poly in polys:
        p3 = np.concatenate([poly, np.zeros((len(poly), 1))], 1)
        pts.append(p3)
        counts.append([len(poly)])
        indices.append(np.arange(start, start + len(poly)))
        st.append(poly - poly.min(0))
        if normals is not None:
            normals.append(np.tile([0.0, 0.0, 1.0], (len(poly), 1)))
        start += len(poly)
    return MeshData(
        np.concatenate(pts),
        np.concatenate(counts),
        np.concatenate(indices),
        np.concatenate(st),
        None if normals is None else np.concatenate(normals),
    )


def make_mesh(index: int, triangles: int, rng: np.random.Generator) -> MeshData:
    """Build the ``index``-th mesh of a scene, about ``triangles`` triangles."""
    kind = KINDS[index % len(KINDS)]
    mesh = {"grid": _grid, "sphere": _sphere, "torus": _torus}[kind](max(triangles, 8), rng)
    if index % 10 == 0:
        mesh = _concave_extras(mesh)
    return mesh


def _define_materials(stage: Usd.Stage, root: str, count: int) -> list[UsdShade.Material]:
    mats = []
    for k in range(count):
        mat = UsdShade.Material.Define(stage, f"{root}/Material_{k}")
        shader = UsdShade.Shader.Define(stage, f"{root}/Material_{k}/PreviewSurface")
        shader.CreateIdAttr("UsdPreviewSurface")
        shader.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).Set(Gf.Vec3f(*PALETTE[k % len(PALETTE)]))
        shader.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(0.3 + 0.1 * (k % 5))
        mat.CreateSurfaceOutput().ConnectToSource(shader.ConnectableAPI(), "surface")
        mats.append(mat)
    return mats


def write_mesh(stage: Usd.Stage, path: str, data: MeshData, index: int, materials) -> UsdGeom.Mesh:
    """Author ``data`` as a UsdGeom.Mesh at ``path`` with st, optional normals, a subset and bindings."""
    mesh = UsdGeom.Mesh.Define(stage, path)
    mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(data.points))
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(data.counts))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(data.indices))
    lo, hi = data.points.min(0), data.points.max(0)
    mesh.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*map(float, lo)), Gf.Vec3f(*map(float, hi))]))
    st = UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.faceVarying)
    if index % 2 == 1:
        values, inverse = np.unique(data.st, axis=0, return_inverse=True)
        st.Set(Vt.Vec2fArray.FromNumpy(np.ascontiguousarray(values, dtype=np.float32)))
        st.SetIndices(Vt.IntArray.FromNumpy(inverse.reshape(-1).astype(np.int32)))
    else:
        st.Set(Vt.Vec2fArray.FromNumpy(data.st))
    mode = index % 3
    if mode == 1 and data.normals is not None:
        mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(data.normals))
        mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    elif mode == 2:
        normals = data.normals if data.normals is not None else np.tile(np.float32([0, 0, 1]), (len(data.points), 1))
        mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(normals[data.indices])))
        mesh.SetNormalsInterpolation(UsdGeom.Tokens.faceVarying)
    if materials:
        UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(materials[index % len(materials)])
        if index % 5 != 4:
            faces = np.arange(0, len(data.counts) // 2, dtype=np.int32)
            subset = UsdGeom.Subset.CreateGeomSubset(
                mesh, "partA", UsdGeom.Tokens.face, Vt.IntArray.FromNumpy(faces), "materialBind"
            )
            UsdShade.MaterialBindingAPI.Apply(subset.GetPrim()).Bind(materials[(index + 1) % len(materials)])
            # a materialBind family must say its faces do not overlap (usdShadeValidators:SubsetsMaterialBindFamily)
            UsdGeom.Subset.SetFamilyType(mesh, "materialBind", UsdGeom.Tokens.nonOverlapping)
    return mesh


def _place(xformable: UsdGeom.Xformable, rng: np.random.Generator, spread: float) -> None:
    xformable.AddTranslateOp().Set(Gf.Vec3d(*map(float, rng.uniform(-spread, spread, 3))))
    xformable.AddRotateXYZOp().Set(Gf.Vec3f(*map(float, rng.uniform(0, 360, 3))))
    xformable.AddScaleOp().Set(Gf.Vec3f(*([float(rng.uniform(0.5, 2.0))] * 3)))


def generate_scene(
    out: str | Path,
    *,
    meshes: int = 10,
    instances: int = 0,
    triangles: int = 100_000,
    mode: str = "xform",
    seed: int = 0,
) -> Usd.Stage:
    """Write a scene of ``meshes`` unique meshes (``triangles`` in all) and ``instances`` extra copies to ``out``.

    :param out: output path; ``.usda`` or ``.usdc`` picks the format
    :param meshes: number of unique meshes
    :param instances: number of extra instances of those meshes
    :param triangles: total triangle count of the unique meshes
    :param mode: ``xform``, ``instanceable`` or ``pointinstancer``: how instances are made
    :param seed: random seed; the same arguments write the same scene
    :returns: the saved stage
    """
    if mode not in ("xform", "instanceable", "pointinstancer"):
        raise ValueError(f"unknown mode {mode!r}")
    rng = np.random.default_rng(seed)
    stage = Usd.Stage.CreateNew(str(out))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    world = UsdGeom.Xform.Define(stage, "/World")
    stage.SetDefaultPrim(world.GetPrim())
    spread = max(2.0, (meshes + instances) ** (1 / 3) * 1.5)
    per_mesh = max(8, triangles // max(meshes, 1))
    materials = _define_materials(stage, "/World/Looks", 8)
    UsdGeom.Scope.Define(stage, "/World/Meshes")
    for i in range(meshes):
        asset = UsdGeom.Xform.Define(stage, f"/World/Meshes/asset_{i}")
        _place(asset, rng, spread)
        write_mesh(stage, f"/World/Meshes/asset_{i}/geo", make_mesh(i, per_mesh, rng), i, materials)
    if instances and meshes:
        if mode == "pointinstancer":
            pi = UsdGeom.PointInstancer.Define(stage, "/World/Instancer")
            protos = []
            for i in range(meshes):
                proto = stage.DefinePrim(f"/World/Instancer/Prototypes/proto_{i}", "Xform")
                proto.GetReferences().AddInternalReference(f"/World/Meshes/asset_{i}")
                UsdGeom.Xformable(proto).ClearXformOpOrder()
                protos.append(proto.GetPath())
            pi.CreatePrototypesRel().SetTargets(protos)
            pi.CreateProtoIndicesAttr(Vt.IntArray.FromNumpy(rng.integers(0, meshes, instances, dtype=np.int32)))
            positions = rng.uniform(-spread, spread, (instances, 3)).astype(np.float32)
            pi.CreatePositionsAttr(Vt.Vec3fArray.FromNumpy(positions))
            q = rng.normal(size=(instances, 4))
            q /= np.linalg.norm(q, axis=1, keepdims=True)
            pi.CreateOrientationsAttr(Vt.QuathArray([Gf.Quath(*map(float, row)) for row in q]))
            scales = np.repeat(rng.uniform(0.5, 2, (instances, 1)), 3, 1).astype(np.float32)
            pi.CreateScalesAttr(Vt.Vec3fArray.FromNumpy(scales))
        else:
            UsdGeom.Scope.Define(stage, "/World/Instances")
            for j in range(instances):
                inst = stage.DefinePrim(f"/World/Instances/inst_{j}", "Xform")
                inst.GetReferences().AddInternalReference(f"/World/Meshes/asset_{int(rng.integers(meshes))}")
                if mode == "instanceable":
                    inst.SetInstanceable(True)
                xf = UsdGeom.Xformable(inst)
                xf.ClearXformOpOrder()
                _place(xf, rng, spread)
    stage.GetRootLayer().Save()
    return stage


def generate_small_scene(out: str | Path) -> Usd.Stage:
    """Write the small bundled scene (a few meshes, a subset, an instanceable reference, a point instancer, an
    invisible prim, a guide prim and a time-sampled xform) to ``out``."""
    rng = np.random.default_rng(7)
    stage = Usd.Stage.CreateNew(str(out))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    stage.SetStartTimeCode(1)
    stage.SetEndTimeCode(24)
    stage.SetTimeCodesPerSecond(24)
    world = UsdGeom.Xform.Define(stage, "/World")
    stage.SetDefaultPrim(world.GetPrim())
    materials = _define_materials(stage, "/World/Looks", 3)
    UsdGeom.Scope.Define(stage, "/World/Meshes")
    datas = [make_mesh(i, t, rng) for i, t in enumerate((60, 90, 80, 40))]
    for i, data in enumerate(datas):
        asset = UsdGeom.Xform.Define(stage, f"/World/Meshes/asset_{i}")
        asset.AddTranslateOp().Set(Gf.Vec3d(1.5 * i, 0, 0))
        write_mesh(stage, f"/World/Meshes/asset_{i}/geo", data, i, materials)
    # time-sampled xform
    spin = UsdGeom.Xform.Define(stage, "/World/Spinner")
    op = spin.AddRotateZOp()
    for t in (1, 12, 24):
        op.Set(360.0 * (t - 1) / 23, Usd.TimeCode(t))
    spin.AddTranslateOp().Set(Gf.Vec3d(0, 2, 0))
    write_mesh(stage, "/World/Spinner/geo", make_mesh(5, 24, rng), 5, materials)
    # instanceable references
    for j in range(2):
        inst = stage.DefinePrim(f"/World/Instances/inst_{j}", "Xform")
        inst.GetReferences().AddInternalReference("/World/Meshes/asset_1")
        inst.SetInstanceable(True)
        xf = UsdGeom.Xformable(inst)
        xf.ClearXformOpOrder()
        xf.AddTranslateOp().Set(Gf.Vec3d(1.5 * j, -2, 0))
    # point instancer
    pi = UsdGeom.PointInstancer.Define(stage, "/World/Instancer")
    proto = stage.DefinePrim("/World/Instancer/Prototypes/proto_0", "Xform")
    proto.GetReferences().AddInternalReference("/World/Meshes/asset_2")
    UsdGeom.Xformable(proto).ClearXformOpOrder()
    pi.CreatePrototypesRel().SetTargets([proto.GetPath()])
    pi.CreateProtoIndicesAttr([0, 0, 0])
    pi.CreatePositionsAttr([Gf.Vec3f(0, -4, 0), Gf.Vec3f(1.5, -4, 0), Gf.Vec3f(3, -4, 0)])
    # invisible and guide prims
    hidden = write_mesh(stage, "/World/Hidden", make_mesh(3, 12, rng), 3, materials)
    hidden.CreateVisibilityAttr(UsdGeom.Tokens.invisible)
    guide = write_mesh(stage, "/World/Guide", make_mesh(4, 12, rng), 4, materials)
    guide.CreatePurposeAttr(UsdGeom.Tokens.guide)
    stage.GetRootLayer().Save()
    return stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meshes", type=int, default=10, help="unique meshes (default 10)")
    parser.add_argument("--instances", type=int, default=0, help="extra instances of those meshes (default 0)")
    parser.add_argument("--triangles", type=int, default=100_000, help="total triangles of the unique meshes")
    parser.add_argument("--mode", choices=("xform", "instanceable", "pointinstancer"), default="xform")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--small", action="store_true", help="write the small bundled scene instead")
    parser.add_argument("--out", required=True, help="output .usda or .usdc path")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.suffix not in (".usda", ".usdc", ".usd"):
        parser.error("--out must end in .usda, .usdc or .usd")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.small:
        generate_small_scene(out)
    else:
        generate_scene(
            out, meshes=args.meshes, instances=args.instances, triangles=args.triangles, mode=args.mode, seed=args.seed
        )
    print(f"wrote {out} ({out.stat().st_size / 1024:.1f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
