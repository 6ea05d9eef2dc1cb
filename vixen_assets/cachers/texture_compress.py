"""Compression of RGBA8 pixels at load (``etcpak``), checked by measurement (``texture2ddecoder`` decodes the blocks
back and the PSNR against the source is computed).

- ``"bc1"`` / ``"bc7"``: that format; one that misses ``min_psnr`` still goes up as asked, with a
  :class:`~vixen_assets.errors.CompressionQualityWarning` naming the file and the PSNR.
- ``"auto"``: per texture, the smallest format whose measured PSNR meets ``min_psnr`` (35 dB by default): BC1 (8
  bytes per 4x4 block) when it does, else BC7 (16), else the uncompressed RGBA8. The choice and every PSNR tried are
  reported in ``GpuTexture.extra``.
- Normal maps never go to BC1 (its 5:6:5 endpoints bend normals): BC5 (two channels, the PSNR measured on R and G,
  the channels a shader reads) where the device samples it, else BC7. An explicit ``"bc1"`` on a normal map warns and
  takes that path instead.

Every function here is CPU-only and thread-safe (etcpak and texture2ddecoder release the GIL): ``load_textures``
runs them on its thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError, UnsupportedFormatError

BC1_RGBA_UNORM, BC1_RGBA_SRGB = 133, 134
BC5_UNORM = 141
BC7_UNORM, BC7_SRGB = 145, 146
COMPRESS_CHOICES = ("auto", "bc1", "bc7", "bc5")
DEFAULT_MIN_PSNR = 35.0
BLOCK_BYTES = {"bc1": 8, "bc5": 16, "bc7": 16}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 images (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def check_compress(compress: str | None, min_psnr: float) -> None:
    """Reject an unknown ``compress`` value or a meaningless bar before any file is read.

    :param compress: ``None`` or one of :data:`COMPRESS_CHOICES`.
    :param min_psnr: the PSNR bar in dB.
    :raises ConfigError: naming the option.
    """
    if compress is not None and compress not in COMPRESS_CHOICES:
        raise ConfigError(f"compress={compress!r}: use one of {', '.join(COMPRESS_CHOICES)} (or None)")
    if not (isinstance(min_psnr, (int, float)) and 0 < float(min_psnr) < float("inf")):
        raise ConfigError(f"min_psnr={min_psnr!r}: a positive number of dB is expected")


@dataclass(eq=False)
class Encoded:
    """One compression of a texture: the kind, its ``VkFormat``, the blocks and the PSNR measured from them."""

    kind: str
    vk_format: int
    blocks: np.ndarray  # uint8, the whole level 0
    psnr_db: float


def vk_format_of(kind: str, srgb: bool) -> int:
    """The ``VkFormat`` a compression kind uploads as (BC5 has no sRGB variant: normal maps are linear data)."""
    if kind == "bc1":
        return BC1_RGBA_SRGB if srgb else BC1_RGBA_UNORM
    if kind == "bc7":
        return BC7_SRGB if srgb else BC7_UNORM
    if kind == "bc5":
        return BC5_UNORM
    raise UnsupportedFormatError(f"unknown compression {kind!r}; use 'bc7', 'bc1' or 'bc5'")


def decode_blocks(blocks: bytes, kind: str, width: int, height: int) -> np.ndarray:
    """Decode ``kind`` blocks of a ``width`` x ``height`` image back to RGBA8 (``(height, width, 4)``).

    :param blocks: the blocks, rows padded to whole 4x4 blocks.
    :param kind: ``"bc1"``, ``"bc7"`` or ``"bc5"`` (R and G; B is 0, A 255).
    :param width: the image's width in texels (not padded).
    :param height: the image's height in texels.
    """
    import texture2ddecoder

    pw, ph = -(-width // 4) * 4, -(-height // 4) * 4
    fn = {"bc1": texture2ddecoder.decode_bc1, "bc7": texture2ddecoder.decode_bc7,
          "bc5": texture2ddecoder.decode_bc5}[kind]
    dec = np.frombuffer(fn(bytes(blocks), pw, ph), np.uint8).reshape(ph, pw, 4)
    return dec[:height, :width][..., [2, 1, 0, 3]]  # texture2ddecoder returns BGRA


def measured_psnr(decoded: np.ndarray, pixels: np.ndarray, kind: str) -> float:
    """PSNR of a decode against the source: all four channels, only R and G for BC5 (normal maps)."""
    if kind == "bc5":
        return psnr(decoded[..., :2], pixels[..., :2])
    return psnr(decoded, pixels)


def encode(pixels: np.ndarray, kind: str, srgb: bool) -> Encoded:
    """Compress RGBA8 ``pixels`` to ``kind`` with etcpak (edges padded by replication) and measure the PSNR.

    :param pixels: ``(height, width, 4)`` uint8.
    :param kind: ``"bc1"``, ``"bc7"`` or ``"bc5"``.
    :param srgb: colour data (sRGB formats) or linear.
    :raises UnsupportedFormatError: ``etcpak`` is not installed, or an unknown kind.
    """
    try:
        import etcpak
    except ImportError as exc:  # pragma: no cover - etcpak is a dependency
        raise UnsupportedFormatError(f"compress={kind!r} needs the 'etcpak' package ({exc})") from exc
    fmt = vk_format_of(kind, srgb)
    h, w = pixels.shape[:2]
    pw, ph = -(-w // 4) * 4, -(-h // 4) * 4
    if (pw, ph) != (w, h):
        padded = np.empty((ph, pw, 4), np.uint8)
        padded[:h, :w] = pixels
        padded[:h, w:] = pixels[:, -1:]
        padded[h:, :] = padded[h - 1:h, :]
        rgba = padded
    else:
        rgba = np.ascontiguousarray(pixels)
    fn = {"bc1": etcpak.compress_bc1, "bc7": etcpak.compress_bc7, "bc5": etcpak.compress_bc5}[kind]
    blocks = fn(rgba.tobytes(), pw, ph)  # etcpak takes RGBA rows
    decoded = decode_blocks(blocks, kind, w, h)
    return Encoded(kind, fmt, np.frombuffer(blocks, np.uint8), measured_psnr(decoded, pixels, kind))


def choose(pixels: np.ndarray, compress: str, *, srgb: bool, min_psnr: float, normal_map: bool,
           supported: Callable[[int], bool], label: str) -> tuple[Encoded | None, dict[str, Any], list[str]]:
    """Pick and encode the format for ``compress`` (see the module docstring).

    :param pixels: ``(height, width, 4)`` uint8 source pixels.
    :param compress: one of :data:`COMPRESS_CHOICES`.
    :param srgb: colour data (sRGB formats) or linear.
    :param min_psnr: the bar in dB.
    :param normal_map: the texture holds normals (never BC1).
    :param supported: whether the device samples a ``VkFormat`` at this extent.
    :param label: the file, for warnings.
    :returns: the encoding to upload (``None``: upload RGBA8 uncompressed), the ``extra`` fields to report and the
        warnings to emit (on the calling thread: this may run on a worker).
    """
    h, w = pixels.shape[:2]
    rgba8 = w * h * 4
    warnings: list[str] = []
    if compress == "auto":
        candidates = ["bc5", "bc7"] if normal_map else ["bc1", "bc7"]
    elif normal_map and compress in ("bc1", "bc5"):
        candidates = ["bc5", "bc7"]
        if compress == "bc1":
            warnings.append(f"{label}: a normal map is never compressed to BC1; BC5 (else BC7) is used instead")
    else:
        candidates = [compress]
    candidates = [k for k in candidates if supported(vk_format_of(k, srgb))]
    tried: dict[str, float] = {}
    chosen: Encoded | None = None
    for kind in candidates:
        enc = encode(pixels, kind, srgb)
        tried[kind] = enc.psnr_db
        if compress != "auto" or enc.psnr_db >= min_psnr:
            chosen = enc
            break
    extra: dict[str, Any] = {"compress": compress, "min_psnr": float(min_psnr), "psnr_tried": tried,
                             "rgba8_bytes": rgba8, "normal_map": normal_map}
    if chosen is None:  # auto and nothing met the bar (or the device samples none of the candidates)
        extra.update(compress_choice="none", psnr_db=float("inf"), compressed_bytes=rgba8, memory_saved=0.0)
        return None, extra, warnings
    extra.update(compress_choice=chosen.kind, psnr_db=chosen.psnr_db, compressed_bytes=int(chosen.blocks.size),
                 memory_saved=1 - chosen.blocks.size / rgba8)
    if compress != "auto" and chosen.psnr_db < min_psnr:
        warnings.append(f"{label}: {chosen.kind.upper()} reaches {chosen.psnr_db:.2f} dB, below the "
                        f"{min_psnr:g} dB bar (compress='auto' would pick a better format)")
    return chosen, extra, warnings
