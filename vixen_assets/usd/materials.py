"""Textures of ``UsdPreviewSurface`` materials: every ``UsdUVTexture`` ``inputs:file`` of a bound material is
loaded through the texture cacher (paths resolved relative to the authoring layer, ``.usdz`` packages included), all
of a stage's files in one parallel batch (``cachers/texture_batch.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from pxr import Usd, UsdShade

from ..cachers.texture import GpuTexture, texture_cacher
from ..cachers.texture_batch import TextureRequest, load_many
from ..errors import FormatError

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
    """Load the textures of every material bound to the scene's instances; return how many were loaded.

    Every texture file of every material goes through one ``load_many`` call: the files are read, inflated and
    decoded in parallel and uploaded in few batches. A file that fails warns (naming the shader) and the rest load;
    with ``strict`` the first failure raises and nothing of the batch is kept.
    """
    materials = sorted({i.material for i in scene.instances if i.material})
    if not materials:
        return 0
    cacher = texture_cacher(device)
    wanted: list[tuple[str, str, str, int]] = []  # (material, shader, authored, request index)
    index: dict[tuple[str, bool], int] = {}
    requests: list[TextureRequest] = []
    for mat in materials:
        for shader, resolved, srgb, authored in material_texture_files(stage, mat, time):
            if not resolved:
                warn(shader, "inputs:file", f"cannot resolve texture @{authored}@")
                continue
            i = index.get((resolved, srgb))
            if i is None:
                i = index[(resolved, srgb)] = len(requests)
                requests.append(TextureRequest(resolved, srgb))
            wanted.append((mat, shader, authored, i))
    if not wanted:  # no material names a texture: nothing to load, no placement to touch
        return 0
    results = load_many(cacher, requests, hand_out=False, errors="raise" if strict else "collect")
    by_key: dict[str, Any] = {}
    for tex in results:  # one reference per request: the scene holds one per distinct texture
        if isinstance(tex, GpuTexture):
            if tex.key in by_key:
                cacher.release(tex.key)
            else:
                by_key[tex.key] = tex
                scene.hold(cacher, tex.key)
    by_material: dict[str, list[Any]] = {mat: [] for mat in materials}
    for mat, shader, authored, i in wanted:
        tex = results[i]
        if isinstance(tex, FormatError):
            warn(shader, "inputs:file", f"texture @{authored}@ not loaded: {tex}")
        elif tex is not None:
            by_material[mat].append(tex)
    for inst in scene.instances:
        if inst.material:
            inst.textures = list(by_material.get(inst.material, []))
    scene.textures = list(by_key.values())
    return len(by_key)
