"""A generated validation corpus: one asset per rule violation plus clean ones (no committed binaries).

``build_corpus(root)`` writes the files and returns ``{name: (path, expected code or None, pointer substring)}``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from pxr import Sdf, Usd, UsdGeom, UsdShade, Vt

from test_ktx2 import build_ktx2
from test_vox import _chunk, _size, _vox, _xyzi

QUAD_POINTS = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]


def _stage(path: Path) -> Usd.Stage:
    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    root = UsdGeom.Xform.Define(stage, "/World")
    stage.SetDefaultPrim(root.GetPrim())
    return stage


def write_mesh(path: Path, *, points=QUAD_POINTS, counts=(4,), indices=(0, 1, 2, 3), normals=None, st=None,
               extent=None, st_interp: str = "faceVarying") -> Path:
    """A stage with one mesh ``/World/mesh``; extent computed from the points unless given."""
    stage = _stage(path)
    mesh = UsdGeom.Mesh.Define(stage, "/World/mesh")
    pts = np.asarray(points, np.float32)
    mesh.GetPointsAttr().Set(Vt.Vec3fArray.FromNumpy(pts))
    mesh.GetFaceVertexCountsAttr().Set(Vt.IntArray(list(counts)))
    mesh.GetFaceVertexIndicesAttr().Set(Vt.IntArray(list(indices)))
    if extent is None:
        finite = pts[np.isfinite(pts).all(axis=1)]
        extent = [finite.min(axis=0).tolist(), finite.max(axis=0).tolist()] if len(finite) else None
    if extent is not None:
        mesh.GetExtentAttr().Set(Vt.Vec3fArray([tuple(extent[0]), tuple(extent[1])]))
    if normals is not None:
        mesh.GetNormalsAttr().Set(Vt.Vec3fArray.FromNumpy(np.asarray(normals, np.float32)))
        mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    if st is not None:
        pv = UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray)
        pv.Set(Vt.Vec2fArray.FromNumpy(np.asarray(st, np.float32)))
        pv.GetAttr().SetMetadata("interpolation", st_interp)
    stage.Save()
    return path


def _subset_without_family_type(path: Path) -> Path:
    stage = _stage(path)
    mesh = UsdGeom.Mesh.Define(stage, "/World/mesh")
    mesh.GetPointsAttr().Set(Vt.Vec3fArray(QUAD_POINTS))
    mesh.GetFaceVertexCountsAttr().Set(Vt.IntArray([4]))
    mesh.GetFaceVertexIndicesAttr().Set(Vt.IntArray([0, 1, 2, 3]))
    mesh.GetExtentAttr().Set(Vt.Vec3fArray([(0, 0, 0), (1, 1, 0)]))
    mat = UsdShade.Material.Define(stage, "/World/Looks/m")
    sub = UsdGeom.Subset.CreateGeomSubset(mesh, "part", UsdGeom.Tokens.face, Vt.IntArray([0]), "materialBind")
    UsdShade.MaterialBindingAPI.Apply(sub.GetPrim()).Bind(mat)
    stage.Save()
    return path


def _outside(root: Path) -> Path:
    outside = root.parent.parent / "outside"
    outside.mkdir(exist_ok=True)
    write_mesh(outside / "secret.usda")
    stage = _stage(root / "refs_outside.usda")
    prim = stage.DefinePrim("/World/ref")
    prim.GetReferences().AddReference("../../outside/secret.usda")
    stage.Save()
    return root / "refs_outside.usda"


def _ktx(path: Path, **kw) -> Path:
    kvd = kw.pop("kvd", {"KTXwriter": b"vixen-tests\0"})
    levels = kw.pop("levels", [bytes(range(64))])
    path.write_bytes(build_ktx2(levels, kvd=kvd, **kw))
    return path


def _patched(path: Path, data: bytes, offset: int, fmt: str, *values: int) -> Path:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    path.write_bytes(bytes(out))
    return path


_META = '(\n    defaultPrim = "World"\n    metersPerUnit = 1\n    upAxis = "Y"\n)\n'


def _usda(path: Path, body: str, meta: bool = True) -> Path:
    path.write_text("#usda 1.0\n" + (_META if meta else "") + "\n" + body)
    return path


def uastc_ktx2() -> bytes:
    """A minimal UASTC file (vkFormat 0, DFD colour model 166): needs a Basis transcoder to reach a GPU."""
    sample = struct.pack("<IIII", 127 << 16, 0, 0, 0xFFFFFFFF)
    block = struct.pack("<IIIIII", 0, 2 | (24 + len(sample)) << 16, 166 | 1 << 8 | 2 << 16, 3 | 3 << 8, 16, 0) + sample
    dfd = struct.pack("<I", 4 + len(block)) + block
    return build_ktx2([bytes(16)], vk_format=0, dfd=dfd, kvd={"KTXwriter": b"t\0"})


def build_corpus(root: Path) -> dict[str, tuple[Path, str | None, str]]:
    """Write the corpus under ``root``; returns ``{name: (path, expected rule or None for clean, pointer part)}``."""
    root.mkdir(parents=True, exist_ok=True)
    u = root / "usd"
    u.mkdir(exist_ok=True)
    k = root / "ktx2"
    k.mkdir(exist_ok=True)
    v = root / "vox"
    v.mkdir(exist_ok=True)
    st4 = [(0, 0), (1, 0), (1, 1), (0, 1)]
    out: dict[str, tuple[Path, str | None, str]] = {}
    out["usd-clean"] = (write_mesh(u / "clean.usda", st=st4, normals=[(0, 0, 1)] * 4), None, "")
    out["points-nan"] = (write_mesh(u / "nan.usda", points=[(0, 0, 0), (1, 0, 0), (1, 1, 0), (np.nan, 1, 0)]),
                         "geom.points-nan", "/World/mesh.points")
    out["face-too-small"] = (write_mesh(u / "small_face.usda", counts=(4, 2), indices=(0, 1, 2, 3, 0, 1)),
                             "geom.face-too-small", "/World/mesh.faceVertexCounts")
    out["counts-mismatch"] = (write_mesh(u / "mismatch.usda", counts=(4,), indices=(0, 1, 2)),
                              "geom.counts-mismatch", "/World/mesh.faceVertexCounts")
    out["index-out-of-range"] = (write_mesh(u / "oor.usda", indices=(0, 1, 2, 9)), "geom.index-out-of-range",
                                 "/World/mesh.faceVertexIndices")
    out["primvar-size"] = (write_mesh(u / "st_size.usda", st=st4[:3]), "geom.primvar-size", "/World/mesh.primvars:st")
    out["primvar-invalid"] = (write_mesh(u / "st_interp.usda", st=st4, st_interp="sideways"),
                              "geom.primvar-invalid", "/World/mesh.primvars:st")
    out["degenerate-face"] = (write_mesh(u / "degenerate.usda", points=QUAD_POINTS + [(2, 0, 0)],
                                         counts=(4, 3), indices=(0, 1, 2, 3, 0, 1, 4)),
                              "geom.degenerate-face", "/World/mesh.faceVertexIndices")
    out["unused-points"] = (write_mesh(u / "unused.usda", points=QUAD_POINTS + [(0.5, 0.5, 0)]),
                            "geom.unused-points", "/World/mesh.points")
    out["extent"] = (write_mesh(u / "extent.usda", extent=[(0, 0, 0), (0.5, 0.5, 0)]), "geom.extent",
                     "/World/mesh.extent")
    out["normals-zero"] = (write_mesh(u / "normals.usda", normals=[(0, 0, 1), (0, 0, 0), (0, 0, 1), (0, 0, 1)]),
                           "geom.normals-zero", "/World/mesh.normals")
    out["no-faces"] = (write_mesh(u / "nofaces.usda", counts=(), indices=()), "geom.no-faces",
                       "/World/mesh.faceVertexCounts")
    (u / "broken.usda").write_text("#usda 1.0\ndef Xform \"World\" (\n  this is not usd\n")
    out["open-failed"] = (u / "broken.usda", "usd.open-failed", "")
    out["subset-family"] = (_subset_without_family_type(u / "subset.usda"),
                            "usd.usdShadeValidators:SubsetsMaterialBindFamily", "/World/mesh")
    out["outside-root"] = (_outside(u), "security.outside-root", "../../outside/secret.usda")

    out["stage-metadata"] = (_usda(u / "nometa.usda", 'def Xform "World"\n{\n}\n', meta=False),
                             "usd.usdGeomValidators:StageMetadataChecker", "/")
    out["default-prim"] = (u / "nometa.usda", "usd.usdValidation:StageMetadataChecker", "/")
    ref = 'def Xform "World"\n{\n    def "ref" (\n        prepend references = @./does_not_exist.usda@\n    )\n    {\n    }\n}\n'
    out["missing-reference"] = (_usda(u / "missingref.usda", ref), "usd.usdUtilsValidators:MissingReferenceValidator",
                                "missingref.usda")
    out["composition-error"] = (u / "missingref.usda", "usd.usdValidation:CompositionErrorTest", "/World/ref")
    ints = ('def Xform "World"\n{\n    def Mesh "mesh"\n    {\n        int3[] points = [(0, 0, 0), (1, 0, 0), (1, 1, 0)]\n'
            '        int[] faceVertexCounts = [3]\n        int[] faceVertexIndices = [0, 1, 2]\n    }\n}\n')
    out["attribute-type"] = (_usda(u / "intpoints.usda", ints), "usd.usdValidation:AttributeTypeMismatch",
                             "intpoints.usda")
    out["array-type"] = (u / "intpoints.usda", "geom.array-type", "/World/mesh.points")
    fam = ('def Xform "World"\n{\n    def Mesh "mesh"\n    {\n'
           '        point3f[] points = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]\n'
           '        int[] faceVertexCounts = [3, 3]\n        int[] faceVertexIndices = [0, 1, 2, 0, 2, 3]\n'
           '        float3[] extent = [(0, 0, 0), (1, 1, 0)]\n'
           '        uniform token subsetFamily:parts:familyType = "partition"\n\n'
           '        def GeomSubset "a"\n        {\n            uniform token elementType = "face"\n'
           '            uniform token familyName = "parts"\n            int[] indices = [0]\n        }\n    }\n}\n')
    out["subset-families"] = (_usda(u / "subsetfam.usda", fam), "usd.usdGeomValidators:SubsetFamilies", "/World/mesh")

    good = build_ktx2([bytes(range(64))], kvd={"KTXwriter": b"vixen-tests\0"})
    out["ktx2-clean"] = (_ktx(k / "clean.ktx2"), None, "")
    out["ktx2-identifier"] = (_patched(k / "ident.ktx2", good, 0, "<4s", b"XXXX"), "ktx2.identifier", "identifier")
    out["ktx2-header"] = (_patched(k / "faces.ktx2", good, 36, "<I", 3), "ktx2.header", "faceCount")
    out["ktx2-mip-chain"] = (_ktx(k / "mips.ktx2", levels=[bytes(range(64))], level_count=5), "ktx2.mip-chain",
                             "levelCount")
    out["ktx2-dfd"] = (_patched(k / "dfd.ktx2", good, 80 + 24, "<I", 99), "ktx2.dfd", "dfd")
    out["ktx2-kvd"] = (_ktx(k / "kvd.ktx2", kvd={"KTXbogus": b"1\0", "KTXwriter": b"t\0"}), "ktx2.kvd", "KTXbogus")
    out["ktx2-writer"] = (_ktx(k / "nowriter.ktx2", kvd={}), "ktx2.writer", "kvd")
    out["ktx2-index"] = (_patched(k / "kvdoff.ktx2", _ktx(k / "tmp.ktx2", kvd={}).read_bytes(), 56, "<I", 8),
                         "ktx2.index", "kvdByteOffset")
    two = build_ktx2([bytes(64), bytes(16)], kvd={"KTXwriter": b"t\0"})
    (o0, _, _), (o1, _, _) = struct.unpack_from("<3Q", two, 80), struct.unpack_from("<3Q", two, 104)
    out["ktx2-level-index"] = (_patched(k / "order.ktx2", two, 80, "<Q", 0), "ktx2.level-index", "levels[0]")
    (k / "tmp.ktx2").unlink()
    huge = _patched(k / "huge.ktx2", good, 20, "<2I", 65536, 65536)
    out["ktx2-sizes"] = (huge, "ktx2.sizes", "pixelWidth*pixelHeight")
    lvl = struct.unpack_from("<Q", good, 80)[0]
    out["ktx2-padding"] = (_patched(k / "padding.ktx2", good, lvl - 1, "<B", 7), "ktx2.padding", "padding")
    zbad = build_ktx2([b"\x28\xb5\x2f\xfd" + bytes(12)], scheme=2, uncompressed=[64], kvd={"KTXwriter": b"t\0"})
    out["ktx2-supercompression"] = (_patched(k / "zstd.ktx2", zbad, 0, "<B", 0xAB), "ktx2.supercompression",
                                    "levels[0]")

    out["vox-clean"] = (_write(v / "clean.vox", _vox(_size(2, 2, 2), _xyzi([(0, 0, 0, 1), (1, 1, 1, 2)]))), None, "")
    trunc = _vox(_size(2, 2, 2), _xyzi([(0, 0, 0, 1)]))
    out["vox-chunks"] = (_write(v / "trunc.vox", trunc[:-3]), "vox.chunks", "MAIN")
    out["vox-model"] = (_write(v / "coords.vox", _vox(_size(2, 2, 2), _xyzi([(5, 0, 0, 1)]))), "vox.model", "XYZI")
    out["vox-palette"] = (_write(v / "palette.vox", _vox(_size(2, 2, 2), _xyzi([(0, 0, 0, 1)]),
                                                         _chunk(b"RGBA", bytes(100)))), "vox.palette", "RGBA")
    nshp = _chunk(b"nSHP", struct.pack("<i", 0) + struct.pack("<i", 0) + struct.pack("<i", 1) + struct.pack("<i", 7)
                  + struct.pack("<i", 0))
    out["vox-scene-graph"] = (_write(v / "graph.vox", _vox(_size(2, 2, 2), _xyzi([(0, 0, 0, 1)]), nshp)),
                              "vox.scene-graph", "nSHP")
    out["vox-empty-model"] = (_write(v / "empty.vox", _vox(_size(2, 2, 2), _xyzi([]))), "vox.empty-model", "XYZI[0]")
    out["vox-duplicate"] = (_write(v / "dup.vox", _vox(_size(2, 2, 2), _xyzi([(0, 0, 0, 1), (0, 0, 0, 2)]))),
                            "vox.duplicate-voxel", "XYZI[0]")
    pal = bytearray(b"\xff" * 1024)
    pal[4 * 4 + 3] = 0  # file entry 4 = colour index 5: alpha 0
    out["vox-transparent"] = (_write(v / "clear.vox", _vox(_size(2, 2, 2), _xyzi([(0, 0, 0, 5)]),
                                                           _chunk(b"RGBA", bytes(pal)))),
                              "vox.transparent-color", "XYZI[0]")
    return out


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
