"""Textures of ``UsdPreviewSurface`` materials: every ``UsdUVTexture`` ``inputs:file`` of a bound material is
loaded through the texture cacher (paths resolved relative to the authoring layer, ``.usdz`` packages included)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from pxr import Usd, UsdShade

from ..cachers import LoadContext
from ..cachers.texture import texture_cacher
from ..errors import FormatError, UnsupportedFormatError

if TYPE_CHECKING:
    from ..device import Device
    from ..scene import Scene


def material_texture_files(stage: Any, material_path: str, time: Any) -> list[tuple[str, str, bool, str]]:
    """``(shader path, resolved file, srgb, authored path)`` of every UsdUVTexture under a material, plus any other
    shader whose asset-valued ``inputs:file`` does not resolve (resolved file ``""``: reported, never loaded)."""
    prim = stage.GetPrimAtPath(material_path)
    if not prim:
        return []
    out = []
    for p in Usd.PrimRange(prim):
        sh = UsdShade.Shader(p)
        if not sh:
            continue
        inp = sh.GetInput("file")
        if not inp:
            continue
        value = inp.Get(time)
        authored = getattr(value, "path", "") if value is not None else ""
        if not authored:
            continue
        if sh.GetShaderId() != "UsdUVTexture":
            # other texture nodes (Ptex, MaterialX image) are not loaded, but a file they name that is missing is
            # still reported: the caller warns about entries whose resolved path is empty
            if not getattr(value, "resolvedPath", ""):
                out.append((str(p.GetPath()), "", True, authored))
            continue
        cs = sh.GetInput("sourceColorSpace")
        space = str(cs.Get(time)) if cs and cs.Get(time) is not None else "auto"
        out.append((str(p.GetPath()), getattr(value, "resolvedPath", "") or "", space != "raw", authored))
    return out


def load_material_textures(stage: Any, scene: Scene, device: Device, time: Any,
                           warn: Callable[[str, str | None, str], None], strict: bool) -> int:
    """Load the textures of every material bound to the scene's instances; return how many were loaded."""
    materials = sorted({i.material for i in scene.instances if i.material})
    if not materials:
        return 0
    cacher = texture_cacher(device)
    by_material: dict[str, list[Any]] = {}
    by_key: dict[str, Any] = {}
    for mat in materials:
        textures = []
        for shader, resolved, srgb, authored in material_texture_files(stage, mat, time):
            if not resolved:
                warn(shader, "inputs:file", f"cannot resolve texture @{authored}@")
                continue
            try:
                src = cacher.read_file(resolved, LoadContext(time=time, options={"srgb": srgb}))
                key = cacher.key_for(src)
                if key not in by_key:
                    by_key[key] = cacher.get_many([src], [key])[0]
                    scene.hold(cacher, key)
                textures.append(by_key[key])
            except (FormatError, UnsupportedFormatError) as exc:
                if strict:
                    raise
                warn(shader, "inputs:file", f"texture @{authored}@ not loaded: {exc}")
        by_material[mat] = textures
    for inst in scene.instances:
        if inst.material:
            inst.textures = list(by_material.get(inst.material, []))
    scene.textures = list(by_key.values())
    return len(by_key)
