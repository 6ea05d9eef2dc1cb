"""GPU memory an asset will need, from headers and counts alone: :func:`estimate`.

Nothing is decoded, inflated, prepared or uploaded: a KTX2 file's header and level index give its level sizes, a
``.vox`` file's SIZE/XYZI chunk headers give voxel counts, a USD stage's mesh counts give vertex and index bytes
(and bound textures and ``.vox`` files are estimated from their own headers). The figures are upper bounds of what
the loaders allocate (vertex splitting for face-varying data is assumed, transcoded textures count their GPU
format), so a budget check before loading (``--budget-mb``) errs on the safe side.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .device import Device

__all__ = ["Estimate", "estimate"]

#: Bytes per vertex of the default layout (position, normal, st); see ``geometry/packing.py``.
VERTEX_STRIDE = 32
#: Bytes of a bottom-level acceleration structure per triangle (lavapipe and NVIDIA both stay under this, measured
#: on the bundled scenes with compaction off) and per AABB primitive.
BLAS_BYTES_PER_TRIANGLE = 64
BLAS_BYTES_PER_AABB = 64
_BRICK = 8


@dataclass
class Estimate:
    """Estimated GPU bytes of one asset, by category (``meshes``, ``textures``, ``voxels``, ``accel``), with the
    counts they come from in ``counts`` (``triangles``, ``vertices``, ``texels``, ``voxels``)."""

    path: str
    meshes: int = 0
    textures: int = 0
    voxels: int = 0
    accel: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Sum of the categories (acceleration structures included)."""
        return self.meshes + self.textures + self.voxels + self.accel

    def as_dict(self) -> dict[str, Any]:
        """The estimate as plain data."""
        return {"path": self.path, "meshes": self.meshes, "textures": self.textures, "voxels": self.voxels,
                "accel": self.accel, "total": self.total, "counts": dict(self.counts)}

    def add(self, other: Estimate) -> None:
        """Add ``other``'s bytes and counts to this one."""
        self.meshes += other.meshes
        self.textures += other.textures
        self.voxels += other.voxels
        self.accel += other.accel
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v


def estimate(path_or_stage: str | os.PathLike[str] | Any, device: Device | None = None) -> Estimate:
    """Estimate the GPU memory an asset (a USD stage, a ``.ktx2`` or ``.vox`` file) will need once loaded.

    :param path_or_stage: a file path or an open ``Usd.Stage``.
    :param device: reserved for device-specific sizes (alignment, formats decoded on the CPU); ``None`` uses the
        formats' own sizes.
    :returns: an :class:`Estimate` (bytes per category).
    :raises FormatError: when a header cannot be read.
    """
    del device  # the estimate is device-independent today; issue 19 may refine it with alignment
    if not isinstance(path_or_stage, (str, os.PathLike)):
        return _estimate_stage(path_or_stage)
    path = os.fspath(path_or_stage)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".ktx2":
        return _estimate_ktx2(path)
    if suffix == ".vox":
        return _estimate_vox(path)
    if suffix in (".usd", ".usda", ".usdc", ".usdz"):
        from pxr import Usd

        return _estimate_stage(Usd.Stage.Open(path))
    return _estimate_image(path)


def _estimate_ktx2(path: str) -> Estimate:
    from .formats.ktx2 import read_ktx2
    from .formats.vkformat import level_size

    ktx = read_ktx2(path)  # header, index and DFD only: no level is inflated
    sizing = ktx.format if ktx.format is not None else _bc7()
    images = max(1, ktx.layer_count) * ktx.face_count
    total = sum(level_size(sizing, lv.width, lv.height, lv.depth) for lv in ktx.levels) * images
    texels = ktx.pixel_width * max(1, ktx.pixel_height) * max(1, ktx.pixel_depth) * images
    return Estimate(path, textures=total, counts={"textures": 1, "texels": texels})


def _bc7() -> Any:
    from .formats.vkformat import format_info

    return format_info(145)  # VK_FORMAT_BC7_UNORM_BLOCK: what BasisLZ/UASTC transcode to


def _estimate_image(path: str) -> Estimate:
    from PIL import Image

    with Image.open(path) as im:  # reads the header only
        w, h = im.size
    return Estimate(path, textures=w * h * 4 * 4 // 3, counts={"textures": 1, "texels": w * h})


def _estimate_vox(path: str) -> Estimate:
    """Scan chunk headers: SIZE gives a model's grid, XYZI's first word its voxel count."""
    from .errors import FormatError

    with open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 20 or data[:4] != b"VOX ":
        raise FormatError("not a .vox file", path=path, field="header")
    pos, end = 20 + struct.unpack_from("<I", data, 12)[0], min(len(data), 20 + sum(struct.unpack_from("<II", data, 12)))
    voxels = bricks = shapes = models = 0
    size = (1, 1, 1)
    while pos + 12 <= end:
        cid, n, m = struct.unpack_from("<4sII", data, pos)
        if cid == b"SIZE" and n >= 12:
            size = struct.unpack_from("<3i", data, pos + 12)
        elif cid == b"XYZI" and n >= 4:
            count = struct.unpack_from("<I", data, pos + 12)[0]
            voxels += count
            models += 1
            dense = 1
            for d in size:
                dense *= -(-max(d, 1) // _BRICK)
            bricks += min(count, dense)
        elif cid == b"nSHP":
            shapes += 1
        pos += 12 + n + m
    nbytes = bricks * (_BRICK ** 3 + 32) + voxels * 24 + max(shapes, models) * 80 + 256 * 20 + 64 + models * 32
    accel = voxels * BLAS_BYTES_PER_AABB
    return Estimate(path, voxels=nbytes, accel=accel, counts={"voxels": voxels, "models": models})


def _estimate_stage(stage: Any) -> Estimate:
    from pxr import Sdf, Usd, UsdGeom

    root = stage.GetRootLayer()
    out = Estimate(root.realPath or root.identifier)
    files: set[str] = set()
    prims = list(stage.Traverse())
    for proto in stage.GetPrototypes():
        prims.extend(Usd.PrimRange(proto))
    for prim in prims:
        if prim.IsInstance():
            continue  # its prototype is counted once
        if prim.IsA(UsdGeom.Mesh):
            mesh = UsdGeom.Mesh(prim)
            counts = mesh.GetFaceVertexCountsAttr().Get()
            if not counts:
                continue
            import numpy as np

            c = np.asarray(counts, dtype=np.int64)
            corners = int(c.sum())
            tris = int(np.maximum(c - 2, 0).sum())
            verts = corners  # face-varying data splits vertices: at most one per corner
            index_bytes = 2 if verts <= 65535 else 4
            out.meshes += verts * VERTEX_STRIDE + 3 * tris * index_bytes
            out.accel += tris * BLAS_BYTES_PER_TRIANGLE
            out.counts["meshes"] = out.counts.get("meshes", 0) + 1
            out.counts["triangles"] = out.counts.get("triangles", 0) + tris
            out.counts["vertices"] = out.counts.get("vertices", 0) + verts
        for attr in prim.GetAuthoredAttributes():  # textures and .vox files are authored asset paths
            if attr.GetTypeName() != Sdf.ValueTypeNames.Asset:
                continue
            value = attr.Get()
            resolved = getattr(value, "resolvedPath", "") if value is not None else ""
            if resolved and resolved not in files and os.path.splitext(resolved)[1].lower() in (
                    ".ktx2", ".vox", ".png", ".jpg", ".jpeg"):
                files.add(resolved)
                try:
                    out.add(estimate(resolved))
                except Exception:  # noqa: BLE001 - an unreadable texture is reported by its own rule
                    continue
    return out
