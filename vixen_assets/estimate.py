"""``estimate(path_or_stage, device=None)``: the GPU bytes an asset will need, from its header or counts alone.

The same size math the cachers charge to the budget before inflating, decoding or preparing (their pre-flight):

- KTX2: the levels' declared sizes (:meth:`~vixen_assets.formats.ktx2.Ktx2File.declared_bytes`), or their RGBA8
  size (:meth:`~vixen_assets.formats.ktx2.Ktx2File.decoded_bytes`) where ``device`` cannot sample the format;
- PNG/JPEG: width x height x 4 from the header;
- ``.vox``: :meth:`~vixen_assets.cachers.voxel.VoxelSource.gpu_bytes` (a lower bound);
- USD: every ``Mesh`` prim's :func:`~vixen_assets.geometry.sizing.mesh_gpu_bytes` (vertices x layout + indices; a
  lower bound where faceVarying values split points), each unique prim once.

Nothing is inflated, decoded, prepared or allocated; only headers, counts and (for USD) the mesh arrays are read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .arguments import path_argument
from .errors import FormatError, UnsupportedFormatError

if TYPE_CHECKING:
    from .device import Device

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tga", ".bmp")
USD_SUFFIXES = (".usd", ".usda", ".usdc", ".usdz")


@dataclass
class Estimate:
    """What an asset will take on the GPU: ``gpu_bytes`` in all, ``kind`` of asset, and the parts (``items``:
    ``{name: bytes}``, a prim path per mesh, ``"levels"`` for a texture)."""

    path: str
    kind: str
    gpu_bytes: int
    items: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def fits(self, device: Device) -> bool:
        """Whether ``gpu_bytes`` fit what the device's budget has free now.

        :param device: the device.
        """
        return self.gpu_bytes <= device.budget.available()


def ktx2_gpu_bytes(ktx: Any, device: Device | None = None) -> tuple[int, str]:
    """GPU bytes of a parsed KTX2 file and the path the texture cacher would take (``native`` or ``decoded``).

    :param ktx: a :class:`~vixen_assets.formats.ktx2.Ktx2File`.
    :param device: the device (``None``: assume it samples the format).
    """
    if device is None or ktx.format is None:
        return (ktx.declared_bytes(), "native") if ktx.format is not None else (ktx.decoded_bytes(), "decoded")
    from .memory.images import IMAGE_1D, IMAGE_2D, IMAGE_3D, format_supported

    itype = IMAGE_3D if ktx.is_3d else IMAGE_1D if ktx.pixel_height == 0 else IMAGE_2D
    native = format_supported(device.context, ktx.vk_format, image_type=itype, cube=ktx.face_count == 6,
                              width=ktx.pixel_width, height=max(1, ktx.pixel_height), depth=max(1, ktx.pixel_depth),
                              levels=len(ktx.levels), layers=ktx.images_per_level)
    return (ktx.declared_bytes(), "native") if native else (ktx.decoded_bytes(), "decoded")


def estimate(path_or_stage: Any, device: Device | None = None) -> Estimate:
    """The GPU bytes ``path_or_stage`` will need once loaded (see the module docstring for what is counted).

    :param path_or_stage: a ``.ktx2``, PNG/JPEG, ``.vox`` or USD file, or an open ``Usd.Stage``.
    :param device: the device that will load it (decides a texture's native or decoded path); optional.
    :returns: an :class:`Estimate`.
    :raises FormatError: the file is missing or its header is malformed (naming file and field).
    :raises UnsupportedFormatError: no estimate exists for the file type.
    """
    try:
        from pxr import Usd
    except ImportError:  # pragma: no cover - usd-core is a dependency
        Usd = None
    if Usd is not None and isinstance(path_or_stage, Usd.Stage):
        return _usd(path_or_stage, path_or_stage.GetRootLayer().identifier)
    path = path_argument(path_or_stage, "path_or_stage")
    if not os.path.exists(path):
        raise FormatError("file not found", path=path)
    low = path.lower()
    if low.endswith(".ktx2"):
        from .formats.ktx2 import read_ktx2

        ktx = read_ktx2(path)
        nbytes, how = ktx2_gpu_bytes(ktx, device)
        return Estimate(path, f"texture ({how})", nbytes)
    if low.endswith(IMAGE_SUFFIXES):
        from PIL import Image as PILImage

        try:
            with PILImage.open(path) as im:
                w, h = im.size
        except Exception as exc:
            raise FormatError(f"cannot read the image header: {exc}", path=path) from None
        return Estimate(path, "texture (RGBA8)", w * h * 4)
    if low.endswith(".vox"):
        from .cachers.voxel import VoxelSource
        from .formats.vox import read_vox

        src = VoxelSource.from_vox(read_vox(path), path=path)
        return Estimate(path, "voxels", src.gpu_bytes(), notes=["a lower bound (bricks are counted as full)"])
    if low.endswith(USD_SUFFIXES) and Usd is not None:
        from .usd.walker import _open

        stage, p = _open(path)
        return _usd(stage, p)
    raise UnsupportedFormatError("no size estimate for this file type", path=path)


def _usd(stage: Any, path: str) -> Estimate:
    from pxr import Usd, UsdGeom

    from .errors import VixenError
    from .geometry.sizing import mesh_gpu_bytes
    from .geometry.usd_mesh import read_mesh_source

    items: dict[str, int] = {}
    notes: list[str] = []
    for prim in stage.Traverse(Usd.TraverseInstanceProxies(Usd.PrimDefaultPredicate)):
        if not prim.IsA(UsdGeom.Mesh) or prim.IsInstanceProxy():
            continue
        try:
            src = read_mesh_source(prim, Usd.TimeCode.Default(), validate=False)
        except VixenError as exc:
            notes.append(str(exc))
            continue
        items[str(prim.GetPath())] = mesh_gpu_bytes(src)
    for proto in stage.GetPrototypes():
        for prim in Usd.PrimRange(proto):
            if prim.IsA(UsdGeom.Mesh):
                try:
                    src = read_mesh_source(prim, Usd.TimeCode.Default(), validate=False)
                except VixenError as exc:
                    notes.append(str(exc))
                    continue
                items[str(prim.GetPath())] = mesh_gpu_bytes(src)
    return Estimate(path, "stage", sum(items.values()), items, notes)


__all__ = ["Estimate", "estimate", "ktx2_gpu_bytes"]
