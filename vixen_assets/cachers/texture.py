"""``TextureCacher``: KTX2, PNG and JPEG files to GPU images, by the best path the device allows.

- KTX2 whose ``vkFormat`` the device samples (BC on lavapipe and the H100, uncompressed formats): the level data is
  uploaded as it is (``path_taken == "native"``), every level, layer, face and z slice.
- KTX2 in a format the device cannot sample (ETC2/EAC/ASTC here): each image is decoded on the CPU with
  ``texture2ddecoder`` to RGBA8, sRGB kept (``"decoded"``).
- BasisLZ/ETC1S and UASTC payloads need a Basis Universal transcoder: ``UnsupportedFormatError`` naming the scheme
  when none is installed.
- PNG/JPEG (and what else Pillow opens): RGBA8, sRGB; with ``compress="bc7"`` or ``"bc1"`` (needs ``etcpak``) the
  pixels are compressed at load (``"transcoded"``), and the memory saved and PSNR against the source are recorded.

Every image goes through the batched uploader as buffer-to-image copies with layout transitions, split into pieces
that fit a staging chunk. Assets inside ``.usdz`` packages (``pkg.usdz[tex.png]``) are read through USD's resolver.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import FormatError, UnsupportedFormatError
from ..formats import ktx2 as k2
from ..formats.vkformat import format_info
from ..hookspecs import hookimpl
from ..memory.group import AllocationGroup
from ..memory.images import IMAGE_1D, IMAGE_2D, IMAGE_3D, Image, format_supported
from ..transfer.image_regions import level_copies, mip_extent
from .base import HeldEntry, LoadContext, TypedCacher

if TYPE_CHECKING:
    from ..device import Device

R8G8B8A8_UNORM = 37
R8G8B8A8_SRGB = 43
BC1_RGBA_UNORM, BC1_RGBA_SRGB = 133, 134
BC7_UNORM, BC7_SRGB = 145, 146
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tga", ".bmp")


def read_asset_bytes(path: str) -> bytes:
    """Bytes of a file, or of a file inside a package (``a.usdz[b.png]``) through USD's asset resolver."""
    if "[" in path and path.endswith("]"):
        from pxr import Ar

        asset = Ar.GetResolver().OpenAsset(Ar.ResolvedPath(path))
        if asset is None:
            raise FormatError("cannot open packaged asset", path=path)
        return bytes(asset.GetBuffer())
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror}", path=path) from exc


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 images (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@dataclass(eq=False)
class TextureSource:
    """A texture as read: a parsed KTX2 file or decoded RGBA8 pixels, plus the load options."""

    path: str
    digest: str
    ktx: k2.Ktx2File | None = None
    pixels: np.ndarray | None = None  # (h, w, 4) uint8 for PNG/JPEG
    srgb: bool = True
    compress: str | None = None


@dataclass(eq=False)
class GpuTexture(HeldEntry):
    """A texture on the GPU: its :class:`Image`, format name, extent, levels, layers, faces and the path taken.

    ``load_texture`` hands it out holding one cache reference: ``release()`` it (or use ``with``) when done; until
    then the cache never evicts it.
    """

    key: str
    image: Image
    vk_format: str
    width: int
    height: int
    depth: int
    levels: int
    layers: int
    faces: int
    path_taken: str
    path: str = ""
    source_format: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of GPU memory the image takes."""
        return self.image.nbytes

    def __repr__(self) -> str:
        return (f"<GpuTexture {os.path.basename(self.path) or self.key[:12]} {self.vk_format} {self.width}x{self.height}"
                f"x{self.depth} levels={self.levels} layers={self.layers} faces={self.faces} {self.path_taken}>")


def _compress(pixels: np.ndarray, kind: str, srgb: bool) -> tuple[int, bytes, np.ndarray]:
    """Compress RGBA8 pixels with etcpak; return (vkFormat, blocks, decoded pixels for PSNR)."""
    try:
        import etcpak
        import texture2ddecoder
    except ImportError as exc:  # pragma: no cover - etcpak is in the test extra
        raise UnsupportedFormatError(f"compress={kind!r} needs the 'etcpak' package ({exc})") from exc
    h, w = pixels.shape[:2]
    pw, ph = -(-w // 4) * 4, -(-h // 4) * 4
    padded = np.zeros((ph, pw, 4), np.uint8)
    padded[:h, :w] = pixels
    padded[:h, w:] = pixels[:, -1:]
    padded[h:, :] = padded[h - 1:h, :]
    rgba = padded.tobytes()  # etcpak's BC encoders take RGBA rows (texture2ddecoder returns BGRA)
    if kind == "bc7":
        blocks = etcpak.compress_bc7(rgba, pw, ph)
        fmt = BC7_SRGB if srgb else BC7_UNORM
        dec = texture2ddecoder.decode_bc7(blocks, pw, ph)
    elif kind == "bc1":
        blocks = etcpak.compress_bc1(rgba, pw, ph)
        fmt = BC1_RGBA_SRGB if srgb else BC1_RGBA_UNORM
        dec = texture2ddecoder.decode_bc1(blocks, pw, ph)
    else:
        raise UnsupportedFormatError(f"unknown compression {kind!r}; use 'bc7' or 'bc1'")
    decoded = np.frombuffer(dec, np.uint8).reshape(ph, pw, 4)[:h, :w][..., [2, 1, 0, 3]]
    return fmt, bytes(blocks), decoded


class TextureCacher(TypedCacher[TextureSource, GpuTexture]):
    """KTX2/PNG/JPEG files → :class:`GpuTexture`, deduplicated by file content and options."""

    name = "texture"
    suffixes = (".ktx2",) + IMAGE_SUFFIXES
    compress: str | None = None

    def read_file(self, path: str, context: LoadContext) -> TextureSource:
        """Parse (KTX2) or decode (PNG/JPEG) the file; every field is checked before anything is allocated."""
        opts = context.options or {}
        data = read_asset_bytes(path)
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        compress = opts.get("compress", self.compress)
        base = path.split("[", 1)[-1].rstrip("]") if path.endswith("]") else path
        if base.lower().endswith(".ktx2"):
            return TextureSource(path, digest, ktx=k2.read_ktx2(data, path=path))
        try:
            from PIL import Image as PILImage

            with PILImage.open(io.BytesIO(data)) as im:
                pixels = np.asarray(im.convert("RGBA"), dtype=np.uint8).copy()
        except Exception as exc:
            raise FormatError(f"cannot decode image: {exc}", path=path) from exc
        # colour textures are sRGB-encoded unless the caller says raw (UsdUVTexture sourceColorSpace = "raw")
        return TextureSource(path, digest, pixels=pixels, srgb=bool(opts.get("srgb", True)), compress=compress)

    def key_for(self, source: TextureSource) -> str:
        """File digest plus options."""
        return f"tex:{source.digest}:{source.compress}:{int(source.srgb)}"

    def build(self, sources: Sequence[TextureSource], group: AllocationGroup) -> list[GpuTexture]:
        """Create each image and enqueue its uploads."""
        return [self._build_one(src, group) for src in sources]

    def _build_one(self, src: TextureSource, group: AllocationGroup) -> GpuTexture:
        if src.ktx is not None:
            return self._build_ktx2(src, group)
        assert src.pixels is not None
        pixels = src.pixels
        h, w = pixels.shape[:2]
        extra: dict[str, Any] = {}
        if src.compress:
            fmt, blocks, decoded = _compress(pixels, src.compress, src.srgb)
            if not format_supported(self.device.context, fmt, width=w, height=h):
                fmt = 0
            if fmt:
                data = np.frombuffer(blocks, np.uint8)
                extra.update(psnr_db=psnr(decoded, pixels), rgba8_bytes=w * h * 4, compressed_bytes=len(blocks),
                             memory_saved=1 - len(blocks) / (w * h * 4))
                return self._upload(src, group, fmt, w, h, 1, 1, 1, 1, [(0, data)], "transcoded", "RGBA8", extra,
                                    IMAGE_2D)
        fmt = R8G8B8A8_SRGB if src.srgb else R8G8B8A8_UNORM
        return self._upload(src, group, fmt, w, h, 1, 1, 1, 1, [(0, pixels.reshape(-1))], "native", "RGBA8", extra,
                            IMAGE_2D)

    def _build_ktx2(self, src: TextureSource, group: AllocationGroup) -> GpuTexture:
        ktx = src.ktx
        assert ktx is not None
        w, h, d = ktx.pixel_width, max(1, ktx.pixel_height), max(1, ktx.pixel_depth)
        layers, faces, levels = max(1, ktx.layer_count), ktx.face_count, len(ktx.levels)
        itype = IMAGE_3D if ktx.is_3d else IMAGE_1D if ktx.pixel_height == 0 else IMAGE_2D
        source_name = ktx.format.name if ktx.format else (ktx.transcode_codec or "?")
        if ktx.format is not None and format_supported(self.device.context, ktx.vk_format, image_type=itype, cube=faces == 6,
                                                       width=w, height=h, depth=d, levels=levels,
                                                       layers=layers * faces):
            data = [(lv.index, np.frombuffer(ktx.level_data(lv.index), np.uint8)) for lv in ktx.levels]
            return self._upload(src, group, ktx.vk_format, w, h, d, levels, layers, faces, data, "native", source_name,
                                {}, itype)
        target = ktx.decode_target
        clamp = False
        if target is None and ktx.format is not None and ktx.format.is_hdr:
            # no HDR decoder: clip to [0, 1] (visible in extra["hdr_clamped"]) rather than refuse the file
            target, clamp = R8G8B8A8_UNORM, True
        if target is None:
            raise UnsupportedFormatError(
                f"{source_name} cannot be sampled by {self.device.name} and no decoder handles it"
                + (f" ({source_name}" + ("" if ktx.supercompression_scheme in (0, 1) else f" + {ktx.scheme_name}")
                   + " needs a Basis Universal transcoder: install the optional 'alktx2' package)"
                   if ktx.format is None else ""), path=src.path, field="vkFormat")
        levels_data = []
        for lv in ktx.levels:
            parts = [k2.decode_to_rgba8(ktx, lv.index, layer, face, clamp_hdr=clamp).reshape(-1)
                     for layer in range(layers) for face in range(faces)]
            levels_data.append((lv.index, np.concatenate(parts)))
        path_taken = "transcoded" if ktx.format is None else "decoded"
        return self._upload(src, group, target, w, h, d, levels, layers, faces, levels_data, path_taken, source_name,
                            {"hdr_clamped": True} if clamp else {}, itype)

    def _upload(self, src: TextureSource, group: AllocationGroup, fmt: int, w: int, h: int, d: int, levels: int,
                layers: int, faces: int, data: list[tuple[int, np.ndarray]], path_taken: str, source_name: str,
                extra: dict[str, Any], itype: int) -> GpuTexture:
        label = os.path.basename(src.path.rstrip("]").split("[")[-1]) or src.digest[:12]
        image = Image(self.device.context, name=f"tex:{label}", vk_format=fmt, width=w, height=h, depth=d, levels=levels,
                      layers=layers, faces=faces, image_type=itype, category=self.name)
        group.adopt(image)
        info = format_info(fmt)
        up = self.device.uploader
        for level, arr in data:
            lw, lh, ld = mip_extent(w, h, d, level)
            copies = level_copies(info, lw, lh, ld, level=level, base_layer=0, layer_count=layers * faces,
                                  buffer_offset=0, max_bytes=up.pool.max_chunk)
            expected = sum(c.size for c in copies)
            if arr.size < expected:
                raise FormatError(f"level {level} holds {arr.size} bytes, {expected} expected", path=src.path,
                                  field=f"levels[{level}]")
            up.enqueue_image(image, arr, copies)
        return GpuTexture(self.key_for(src), image, info.name, w, h, d, levels, layers, faces, path_taken, src.path,
                          source_name, extra)

    def entry_nbytes(self, entry: GpuTexture) -> int:
        """Bytes of the image."""
        return entry.nbytes

    def destroy_entry(self, entry: GpuTexture) -> None:
        """Destroy the image (deferred while in use)."""
        entry.image.destroy()


def texture_cacher(device: Device) -> TextureCacher:
    """The device's texture cacher (created on first use)."""
    return TextureCacher.for_device(device)


@hookimpl
def vixen_register_cachers(registry: Any) -> None:
    """Register the built-in texture cacher."""
    registry.register(TextureCacher)
