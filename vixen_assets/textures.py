"""``load_texture(path, device)``: one KTX2/PNG/JPEG file on the GPU as a :class:`GpuTexture` the caller holds;
``load_textures(paths, device)``: many, read and prepared in parallel, uploaded in few batches."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Collection, Sequence

from .cachers import LoadContext
from .cachers.texture import GpuTexture, texture_cacher
from .cachers.texture_batch import TextureRequest, load_many
from .cachers.texture_compress import DEFAULT_MIN_PSNR, check_compress
from .errors import ConfigError, FormatError

if TYPE_CHECKING:
    from .device import Device


def load_texture(path: str | os.PathLike[str], device: Device, *, compress: str | None = None,
                 srgb: bool = True, min_psnr: float = DEFAULT_MIN_PSNR, normal_map: bool = False) -> GpuTexture:
    """Load a texture (deduplicated by content), holding one cache reference for the caller.

    The texture cannot be evicted (budget warnings, ``evict()``) while held: give the reference back with
    ``texture.release()`` or a ``with load_texture(...) as texture:`` block. Loading the same content again returns
    the same object with one more reference held.

    :param path: a ``.ktx2``, ``.png`` or ``.jpg`` file (``package.usdz[member]`` for a packaged file).
    :param device: the :class:`~vixen_assets.Device`.
    :param compress: compress PNG/JPEG pixels at load (needs ``etcpak``): ``"bc7"``, ``"bc1"`` (a result below
        ``min_psnr`` warns, :class:`~vixen_assets.errors.CompressionQualityWarning`), or ``"auto"``: the smallest
        format whose measured PSNR meets ``min_psnr`` (BC1, else BC7, else uncompressed); ``extra`` reports the
        choice and the PSNR.
    :param srgb: whether PNG/JPEG pixels are sRGB-encoded (colour) or linear data.
    :param min_psnr: the quality bar of ``compress`` in dB.
    :param normal_map: the pixels are a normal map: never BC1 (BC5 where the device samples it, else BC7).
    :raises FormatError: the file is missing or malformed (naming the file and field).
    :raises UnsupportedFormatError: the format cannot be sampled, decoded or transcoded here (naming the scheme).
    :raises ConfigError: an unknown ``compress`` value.
    """
    device.check_open()
    check_compress(compress, min_psnr)
    p = os.fspath(path)
    if "[" not in p and not os.path.exists(p):
        raise FormatError("file not found", path=p)
    cacher = texture_cacher(device)
    req = TextureRequest(p, srgb, compress, float(min_psnr), normal_map)
    src = cacher.read_file(p, LoadContext(options=req.options(), layer_path=p))
    tex = cacher.hand_out(src)
    try:
        device.uploader.flush().wait()
    except BaseException:
        tex.release()
        raise
    return tex


def load_textures(paths: Sequence[str | os.PathLike[str]], device: Device, *, compress: str | None = None,
                  srgb: bool | Sequence[bool] = True, workers: int | None = None,
                  progress: Callable[[str, int, int], None] | None = None, min_psnr: float = DEFAULT_MIN_PSNR,
                  normal_maps: Collection[str | os.PathLike[str]] = ()) -> list[GpuTexture]:
    """Load many textures: read, inflated, decoded or compressed on a thread pool, uploaded in few batches.

    Each result is what ``load_texture`` would return for that file (byte-identical images, same deduplication):
    a :class:`GpuTexture` holding one cache reference for the caller (``release()`` / ``with``); a file named twice
    gives the same object with two references. All uploads are finished when the call returns.

    :param paths: ``.ktx2``, ``.png`` or ``.jpg`` files (``package.usdz[member]`` for packaged files).
    :param device: the :class:`~vixen_assets.Device`.
    :param compress: as for :func:`load_texture` (``None``, ``"bc7"``, ``"bc1"``, ``"auto"``).
    :param srgb: one flag for every file, or one per file.
    :param workers: threads reading and preparing files (default: the CPU count).
    :param progress: ``progress("textures", done, total)`` after each texture.
    :param min_psnr: the quality bar of ``compress`` in dB.
    :param normal_maps: the paths among ``paths`` that hold normal maps (never BC1).
    :raises FormatError: a file is missing or malformed, naming it; nothing of the batch stays allocated.
    :raises UnsupportedFormatError: a file's format cannot be sampled, decoded or transcoded here.
    :raises ConfigError: an unknown ``compress``, or ``srgb`` flags not one per path.
    """
    device.check_open()
    check_compress(compress, min_psnr)
    names = [os.fspath(p) for p in paths]
    flags = [bool(srgb)] * len(names) if isinstance(srgb, bool) else [bool(f) for f in srgb]
    if len(flags) != len(names):
        raise ConfigError(f"load_textures: {len(flags)} srgb flags for {len(names)} paths")
    if workers is not None and workers < 1:
        raise ConfigError(f"load_textures: workers={workers!r}, at least 1 expected")
    normals = {os.fspath(p) for p in normal_maps}
    requests = [TextureRequest(p, f, compress, float(min_psnr), p in normals) for p, f in zip(names, flags)]
    out = load_many(texture_cacher(device), requests, workers=workers, progress=progress)
    return [t for t in out if isinstance(t, GpuTexture)]
