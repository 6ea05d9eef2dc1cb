"""Generate a production-shaped multi-asset USD scene: a room of chess sets.

Example::

    python samples/generate_chess.py --out /tmp/chess --sets 12          # about 1.25M placed triangles
    python samples/generate_chess.py --out /tmp/chess --sets 2 --detail 0.25

Layout (every asset in its own folder, as an asset pipeline publishes them)::

    <out>/chess_scene.usda              /World/Sets/set_<k>: references set.usda</Set>, one translate each
    <out>/set.usda                      /Set: a board and 32 pieces, each referencing its asset
    <out>/assets/<piece>/<piece>.usda   /<piece> (kind component) payloading <piece>_payload.usda</<piece>>
    <out>/assets/<piece>/<piece>_payload.usda   sublayers the geometry and look layers
    <out>/assets/<piece>/<piece>_geo.usdc       /<piece>/geo/body: the mesh (faceVarying st, GeomSubsets)
    <out>/assets/<piece>/<piece>_look.usda      /<piece>/Looks/*: UsdPreviewSurface materials, bindings as overs

Pieces are surfaces of revolution (quads, triangle fans at the poles) with a faceVarying ``st`` whose seam splits
vertices; the knight is bent so it is not rotationally symmetric. Pawns, rooks, knights and bishops are
instanceable references (native instancing: one prototype each); kings, queens and the board are plain
references, so each placement is a prim of its own (deduplicated by content when loaded). The rook, queen, king and
board carry ``materialBind`` GeomSubsets; the pawn has authored vertex normals, the others none.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from pxr import Gf, Kind, Sdf, Usd, UsdGeom, UsdShade, Vt

#: piece -> (profile of (radius, height) pairs from bottom to top, base segments around, base rings per span)
PROFILES: dict[str, tuple[list[tuple[float, float]], int, int]] = {
    "pawn": ([(0.0, 0.0), (0.35, 0.0), (0.35, 0.08), (0.25, 0.15), (0.14, 0.45), (0.22, 0.5), (0.12, 0.55),
              (0.2, 0.7), (0.18, 0.82), (0.0, 0.88)], 24, 6),
    "rook": ([(0.0, 0.0), (0.4, 0.0), (0.4, 0.1), (0.3, 0.2), (0.22, 0.75), (0.32, 0.8), (0.32, 1.0),
              (0.22, 1.0), (0.22, 0.92), (0.0, 0.92)], 32, 6),
    "knight": ([(0.0, 0.0), (0.4, 0.0), (0.4, 0.1), (0.3, 0.2), (0.2, 0.6), (0.3, 0.9), (0.22, 1.1),
                (0.1, 1.15), (0.0, 1.15)], 48, 8),
    "bishop": ([(0.0, 0.0), (0.4, 0.0), (0.4, 0.1), (0.28, 0.2), (0.15, 0.8), (0.24, 0.85), (0.15, 0.9),
                (0.2, 1.1), (0.12, 1.25), (0.05, 1.3), (0.0, 1.32)], 40, 6),
    "queen": ([(0.0, 0.0), (0.45, 0.0), (0.45, 0.1), (0.32, 0.2), (0.18, 0.95), (0.3, 1.0), (0.2, 1.05),
               (0.3, 1.35), (0.15, 1.4), (0.08, 1.5), (0.0, 1.52)], 48, 7),
    "king": ([(0.0, 0.0), (0.45, 0.0), (0.45, 0.1), (0.32, 0.2), (0.18, 1.0), (0.3, 1.05), (0.2, 1.1),
              (0.28, 1.4), (0.12, 1.45), (0.08, 1.65), (0.0, 1.7)], 48, 7),
}
BACK_ROW = ("rook", "knight", "bishop", "queen", "king", "bishop", "knight", "rook")
INSTANCEABLE = {"pawn", "rook", "knight", "bishop"}
WITH_SUBSETS = {"rook", "queen", "king"}


def lathe(profile: list[tuple[float, float]], segments: int, rings_per_span: int, *, bend: float = 0.0):
    """A surface of revolution: ``(points, counts, indices, st)`` with triangle fans where the radius is 0."""
    prof = np.asarray(profile, dtype=np.float64)
    t = np.linspace(0.0, 1.0, rings_per_span + 1)[:-1]
    spans = [prof[i] + (prof[i + 1] - prof[i]) * t[:, None] for i in range(len(prof) - 1)]
    rings = np.concatenate([*spans, prof[-1:]])
    v_of_ring = np.linspace(0.0, 1.0, len(rings))
    pole = rings[:, 0] <= 1e-9
    ang = np.arange(segments) / segments * 2 * math.pi
    pts, ring_first = [], []
    for (r, z), is_pole in zip(rings, pole):
        ring_first.append(sum(len(p) for p in pts))
        if is_pole:
            pts.append(np.array([[0.0, 0.0, z]]))
        else:
            x = r * np.cos(ang) + bend * z * z
            y = r * np.sin(ang) * (1.0 + 0.6 * bend * (z > 0.6))
            pts.append(np.stack([x, y, np.full(segments, z)], 1))
    points = np.concatenate(pts)
    counts, indices, st = [], [], []
    cols = np.arange(segments)
    for k in range(len(rings) - 1):
        a, b = ring_first[k], ring_first[k + 1]
        v0, v1 = v_of_ring[k], v_of_ring[k + 1]
        u0, u1 = cols / segments, (cols + 1) / segments
        if pole[k] and pole[k + 1]:
            continue
        if pole[k]:  # fan up from a pole
            idx = np.stack([np.full(segments, a), b + (cols + 1) % segments, b + cols], 1)
            uv = np.stack([np.stack([(u0 + u1) / 2, np.full(segments, v0)], 1),
                           np.stack([u1, np.full(segments, v1)], 1), np.stack([u0, np.full(segments, v1)], 1)], 1)
            counts.append(np.full(segments, 3))
        elif pole[k + 1]:  # fan into a pole
            idx = np.stack([a + cols, a + (cols + 1) % segments, np.full(segments, b)], 1)
            uv = np.stack([np.stack([u0, np.full(segments, v0)], 1), np.stack([u1, np.full(segments, v0)], 1),
                           np.stack([(u0 + u1) / 2, np.full(segments, v1)], 1)], 1)
            counts.append(np.full(segments, 3))
        else:
            idx = np.stack([a + cols, a + (cols + 1) % segments, b + (cols + 1) % segments, b + cols], 1)
            uv = np.stack([np.stack([u0, np.full(segments, v0)], 1), np.stack([u1, np.full(segments, v0)], 1),
                           np.stack([u1, np.full(segments, v1)], 1), np.stack([u0, np.full(segments, v1)], 1)], 1)
            counts.append(np.full(segments, 4))
        indices.append(idx.reshape(-1))
        st.append(uv.reshape(-1, 2))
    return (points.astype(np.float32), np.concatenate(counts).astype(np.int32),
            np.concatenate(indices).astype(np.int32), np.concatenate(st).astype(np.float32))


def board(cells: int = 8, sub: int = 4):
    """A flat board of ``cells`` x ``cells`` squares, each ``sub`` x ``sub`` quads: ``(points, counts, indices,
    st, white_faces)``."""
    n = cells * sub
    u, v = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="xy")
    points = np.stack([u / sub - cells / 2, v / sub - cells / 2, np.zeros_like(u, dtype=np.float64)], -1)
    points = points.reshape(-1, 3).astype(np.float32)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="xy")
    a = (j * (n + 1) + i).ravel()
    quads = np.stack([a, a + 1, a + n + 2, a + n + 1], 1)
    st = (points[quads.ravel(), :2] + cells / 2) / cells
    white = np.flatnonzero(((i.ravel() // sub) + (j.ravel() // sub)) % 2 == 0).astype(np.int32)
    return points, np.full(len(quads), 4, np.int32), quads.ravel().astype(np.int32), st.astype(np.float32), white


def _material(stage: Usd.Stage, path: str, color: tuple[float, float, float], roughness: float) -> UsdShade.Material:
    mat = UsdShade.Material.Define(stage, path)
    shader = UsdShade.Shader.Define(stage, f"{path}/PreviewSurface")
    shader.CreateIdAttr("UsdPreviewSurface")
    shader.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).Set(Gf.Vec3f(*color))
    shader.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(roughness)
    mat.CreateSurfaceOutput().ConnectToSource(shader.ConnectableAPI(), "surface")
    return mat


def write_asset(folder: Path, name: str, data, *, subsets: dict[str, np.ndarray], normals: np.ndarray | None) -> Path:
    """Write one asset (root, payload, geometry and look layers) into ``folder``; return its root layer."""
    folder.mkdir(parents=True, exist_ok=True)
    points, counts, indices, st = data
    root_path = f"/{name}"
    body = f"{root_path}/geo/body"
    geo = Usd.Stage.CreateNew(str(folder / f"{name}_geo.usdc"))
    UsdGeom.Xform.Define(geo, root_path)
    UsdGeom.Scope.Define(geo, f"{root_path}/geo")
    mesh = UsdGeom.Mesh.Define(geo, body)
    mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(points))
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(counts))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(indices))
    mesh.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*map(float, points.min(0))), Gf.Vec3f(*map(float, points.max(0)))]))
    UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray,
                                            UsdGeom.Tokens.faceVarying).Set(Vt.Vec2fArray.FromNumpy(st))
    if normals is not None:
        mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(normals))
        mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    for sub_name, faces in subsets.items():
        UsdGeom.Subset.CreateGeomSubset(mesh, sub_name, UsdGeom.Tokens.face, Vt.IntArray.FromNumpy(faces),
                                        "materialBind")
    geo.SetDefaultPrim(geo.GetPrimAtPath(root_path))
    geo.GetRootLayer().Save()

    look = Usd.Stage.CreateNew(str(folder / f"{name}_look.usda"))
    look.OverridePrim(root_path)
    UsdGeom.Scope.Define(look, f"{root_path}/Looks")
    wood = _material(look, f"{root_path}/Looks/wood", (0.8, 0.7, 0.5), 0.6)
    felt = _material(look, f"{root_path}/Looks/felt", (0.1, 0.4, 0.15), 0.9)
    UsdShade.MaterialBindingAPI.Apply(look.OverridePrim(body)).Bind(wood)
    for k, sub_name in enumerate(subsets):
        sub = look.OverridePrim(f"{body}/{sub_name}")
        UsdShade.MaterialBindingAPI.Apply(sub).Bind(felt if k == 0 else wood)
    look.GetRootLayer().Save()

    payload = Sdf.Layer.CreateNew(str(folder / f"{name}_payload.usda"))
    payload.subLayerPaths.append(f"./{name}_look.usda")
    payload.subLayerPaths.append(f"./{name}_geo.usdc")
    payload.defaultPrim = name
    payload.Save()

    root = Usd.Stage.CreateNew(str(folder / f"{name}.usda"))
    prim = UsdGeom.Xform.Define(root, root_path).GetPrim()
    Usd.ModelAPI(prim).SetKind(Kind.Tokens.component)
    prim.GetPayloads().AddPayload(f"./{name}_payload.usda", Sdf.Path(root_path))
    root.SetDefaultPrim(prim)
    root.GetRootLayer().Save()
    return folder / f"{name}.usda"


def _smooth_normals(points: np.ndarray, counts: np.ndarray, indices: np.ndarray) -> np.ndarray:
    acc = np.zeros_like(points, dtype=np.float64)
    start = 0
    for c in np.unique(counts):  # area-weighted fan normals (authored data; any reasonable normals will do)
        faces = np.flatnonzero(counts == c)
        first = np.concatenate([[0], np.cumsum(counts)])[faces]
        corner = first[:, None] + np.arange(c)[None, :]
        idx = indices[corner]
        p = points[idx].astype(np.float64)
        n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
        for k in range(c):
            np.add.at(acc, idx[:, k], n)
    del start
    length = np.linalg.norm(acc, axis=1, keepdims=True)
    return (acc / np.where(length > 0, length, 1)).astype(np.float32)


def generate_chess(out: str | Path, *, sets: int = 12, detail: float = 1.0, columns: int = 4) -> Path:
    """Write the chess scene into the folder ``out``; return the path of ``chess_scene.usda``.

    :param out: output folder (created)
    :param sets: chess sets placed in the room (each a board and 32 pieces; about 104k triangles at detail 1)
    :param detail: scales the segments and rings of every piece (1.0: about 11k unique triangles per piece kind)
    :param columns: sets per row of the room
    :returns: the root layer of the scene
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    assets = out / "assets"
    roots: dict[str, Path] = {}
    for name, (profile, segments, rings) in PROFILES.items():
        seg = max(6, int(round(segments * math.sqrt(detail))))
        rng = max(1, int(round(rings * math.sqrt(detail))))
        data = lathe(profile, seg, rng, bend=0.25 if name == "knight" else 0.0)
        n_faces = len(data[1])
        subsets = {}
        if name in WITH_SUBSETS:
            subsets = {"base": np.arange(0, n_faces // 4, dtype=np.int32),
                       "top": np.arange(n_faces // 4, n_faces // 2, dtype=np.int32)}
        normals = _smooth_normals(data[0], data[1], data[2]) if name == "pawn" else None
        roots[name] = write_asset(assets / name, name, data, subsets=subsets, normals=normals)
    bp, bc, bi, bst, white = board(8, max(1, int(round(4 * math.sqrt(detail)))))
    black = np.setdiff1d(np.arange(len(bc), dtype=np.int32), white).astype(np.int32)
    roots["board"] = write_asset(assets / "board", "board", (bp, bc, bi, bst),
                                 subsets={"white": white, "black": black}, normals=None)

    set_stage = Usd.Stage.CreateNew(str(out / "set.usda"))
    UsdGeom.SetStageUpAxis(set_stage, UsdGeom.Tokens.z)
    root = UsdGeom.Xform.Define(set_stage, "/Set")
    set_stage.SetDefaultPrim(root.GetPrim())
    brd = set_stage.DefinePrim("/Set/board", "Xform")
    brd.GetReferences().AddReference(f"./{roots['board'].relative_to(out).as_posix()}")
    for side, (row_back, row_pawn, turn) in enumerate(((0, 1, 0.0), (7, 6, 180.0))):
        for col in range(8):
            for piece, row in ((BACK_ROW[col], row_back), ("pawn", row_pawn)):
                prim = set_stage.DefinePrim(f"/Set/{('white', 'black')[side]}_{piece}_{col}", "Xform")
                prim.GetReferences().AddReference(f"./{roots[piece].relative_to(out).as_posix()}")
                if piece in INSTANCEABLE:
                    prim.SetInstanceable(True)
                xf = UsdGeom.Xformable(prim)
                xf.AddTranslateOp().Set(Gf.Vec3d(col - 3.5, row - 3.5, 0.0))
                xf.AddRotateZOp().Set(turn + (15.0 * col if piece == "knight" else 0.0))
                xf.AddScaleOp().Set(Gf.Vec3f(0.8, 0.8, 0.8))
    set_stage.GetRootLayer().Save()

    scene = Usd.Stage.CreateNew(str(out / "chess_scene.usda"))
    UsdGeom.SetStageUpAxis(scene, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(scene, 0.05)
    world = UsdGeom.Xform.Define(scene, "/World")
    scene.SetDefaultPrim(world.GetPrim())
    UsdGeom.Scope.Define(scene, "/World/Sets")
    for k in range(sets):
        s = UsdGeom.Xform.Define(scene, f"/World/Sets/set_{k}")
        s.GetPrim().GetReferences().AddReference("./set.usda")
        s.AddTranslateOp().Set(Gf.Vec3d(10.0 * (k % columns), 10.0 * (k // columns), 0.0))
        s.AddRotateZOp().Set(7.0 * k)
    scene.GetRootLayer().Save()
    return out / "chess_scene.usda"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--sets", type=int, default=12, help="chess sets in the room (default 12)")
    ap.add_argument("--detail", type=float, default=1.0, help="mesh detail scale (default 1.0)")
    args = ap.parse_args(argv)
    path = generate_chess(args.out, sets=args.sets, detail=args.detail)
    stage = Usd.Stage.Open(str(path), Usd.Stage.LoadAll)
    tris = 0
    for prim in stage.Traverse(Usd.TraverseInstanceProxies()):
        if prim.IsA(UsdGeom.Mesh):
            tris += int((np.asarray(UsdGeom.Mesh(prim).GetFaceVertexCountsAttr().Get()) - 2).sum())
    print(f"wrote {path}: {tris:,} placed triangles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
