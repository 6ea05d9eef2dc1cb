"""Image textures of Blender materials through the core's texture cacher: every ``Image Texture`` node of the
materials the scene's instances use, files and packed images alike (generated images too).

A file image is read by the cacher from disk (``bpy.path.abspath``); a packed image's bytes
(``Image.packed_file.data``) and a generated image's pixels (``Image.pixels``, one ``foreach_get``) become a
:class:`~vixen_assets.cachers.texture.TextureSource` directly. Colour space ``Non-Color`` (and the other data
spaces) loads as linear data, everything else as sRGB.
"""

from __future__ import annotations

import hashlib
import io
from typing import TYPE_CHECKING, Any

import numpy as np
from vixen_assets.cachers import LoadContext
from vixen_assets.cachers.texture import TextureSource, texture_cacher
from vixen_assets.errors import FormatError, UnsupportedFormatError

if TYPE_CHECKING:
    from vixen_assets.device import Device
    from vixen_assets.scene import Scene

#: Blender colour spaces that hold data, not colour: loaded as UNORM (no sRGB decode).
DATA_COLOR_SPACES = ("Non-Color", "Raw", "Linear", "Generic Data")


def material_images(material: Any) -> list[Any]:
    """The images of a material's ``Image Texture`` nodes (nested node groups included), each once.

    :param material: a ``bpy.types.Material``.
    :returns: ``bpy.types.Image`` objects in node order.
    """
    out: dict[int, Any] = {}
    trees = [material.node_tree] if material.node_tree is not None else []
    seen_trees: set[int] = set()
    while trees:
        tree = trees.pop()
        if tree.as_pointer() in seen_trees:
            continue
        seen_trees.add(tree.as_pointer())
        for node in tree.nodes:
            if node.type == "TEX_IMAGE" and node.image is not None:
                out.setdefault(node.image.as_pointer(), node.image)
            elif node.type == "GROUP" and node.node_tree is not None:
                trees.append(node.node_tree)
    return list(out.values())


def image_source(image: Any, label: str, cacher: Any) -> TextureSource:
    """A texture source for one Blender image: its file, its packed bytes, or its pixels.

    :param image: a ``bpy.types.Image``.
    :param cacher: the device's :class:`~vixen_assets.cachers.texture.TextureCacher` (reads file images).
    :param label: the ``.blend`` file (names packed and generated images in messages: ``file.blend[image]``).
    :returns: the source the texture cacher builds.
    :raises FormatError: the image cannot be read or decoded (naming it).
    """
    import bpy

    srgb = image.colorspace_settings.name not in DATA_COLOR_SPACES
    name = f"{label}[{image.name}]"
    cacher_opts = {"srgb": srgb}
    if image.packed_file is not None:
        data = bytes(image.packed_file.data)
        try:
            from PIL import Image as PILImage

            with PILImage.open(io.BytesIO(data)) as im:
                pixels = np.asarray(im.convert("RGBA"), dtype=np.uint8).copy()
        except Exception as exc:
            raise FormatError(f"cannot decode packed image: {exc}", path=name) from exc
        return TextureSource(name, hashlib.blake2b(data, digest_size=16).hexdigest(), pixels=pixels, srgb=srgb)
    if image.source == "FILE":
        path = bpy.path.abspath(image.filepath, library=image.library)
        return cacher.read_file(path, LoadContext(options=cacher_opts))
    if image.source == "GENERATED":
        w, h = image.size
        if not w or not h:
            raise FormatError("generated image has no pixels", path=name)
        floats = np.empty(w * h * 4, np.float32)
        image.pixels.foreach_get(floats)
        pixels = np.ascontiguousarray(
            (np.clip(floats, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(h, w, 4)[::-1])  # bottom-up rows
        return TextureSource(name, hashlib.blake2b(pixels, digest_size=16).hexdigest(), pixels=pixels, srgb=srgb)
    raise FormatError(f"image source {image.source!r} is not loaded (file, packed and generated images are)",
                      path=name)


def load_material_images(scene: Scene, device: Device, materials: dict[str, Any], label: str, strict: bool) -> int:
    """Load the images of ``materials`` used by ``scene``'s instances (their material and their submeshes'); set
    ``Instance.textures`` and ``scene.textures``; return
    how many textures were loaded.

    :param scene: the scene being loaded (holds the cache references).
    :param device: its device.
    :param materials: material path -> ``bpy.types.Material``.
    :param label: the ``.blend`` file (messages).
    :param strict: raise on an image that cannot be loaded instead of warning.
    """
    def materials_of(inst: Any) -> list[str]:
        """The instance's material and those of its mesh's submeshes (material slots), each once, in order."""
        paths = [inst.material] + [s.material_path for s in getattr(inst.mesh, "submeshes", ())]
        return list(dict.fromkeys(p for p in paths if p))

    used = {p for i in scene.instances for p in materials_of(i)}
    if not used:
        return 0
    cacher = texture_cacher(device)
    by_image: dict[int, Any] = {}
    by_key: dict[str, Any] = {}
    by_material: dict[str, list[Any]] = {}
    for mpath in sorted(used):
        mat = materials.get(mpath)
        if mat is None:
            continue
        textures = []
        for image in material_images(mat):
            ptr = image.as_pointer()
            if ptr not in by_image:
                try:
                    src = image_source(image, label, cacher)
                except (FormatError, UnsupportedFormatError) as exc:
                    if strict:
                        raise
                    scene.warnings.append(f"{label}:{mpath}: image {image.name!r} not loaded: {exc}")
                    by_image[ptr] = None
                    continue
                key = cacher.key_for(src)
                if key not in by_key:
                    by_key[key] = cacher.get_many([src], [key])[0]
                    scene.hold(cacher, key)
                by_image[ptr] = by_key[key]
            if by_image[ptr] is not None:
                textures.append(by_image[ptr])
        by_material[mpath] = textures
    for inst in scene.instances:
        inst.textures = list({id(t): t for p in materials_of(inst) for t in by_material.get(p, [])}.values())
    scene.textures = list(by_key.values())
    return len(by_key)


__all__ = ["DATA_COLOR_SPACES", "image_source", "load_material_images", "material_images"]
