"""``load_texture(path, device)``: one KTX2/PNG/JPEG file on the GPU as a :class:`GpuTexture` the caller holds."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .cachers import LoadContext
from .cachers.texture import GpuTexture, texture_cacher
from .errors import FormatError

if TYPE_CHECKING:
    from .device import Device


def load_texture(path: str | os.PathLike[str], device: Device, *, compress: str | None = None,
                 srgb: bool = True) -> GpuTexture:
    """Load a texture (deduplicated by content), holding one cache reference for the caller.

    The texture cannot be evicted (budget warnings, ``evict()``) while held: give the reference back with
    ``texture.release()`` or a ``with load_texture(...) as texture:`` block. Loading the same content again returns
    the same object with one more reference held.

    :param path: a ``.ktx2``, ``.png`` or ``.jpg`` file (``package.usdz[member]`` for a packaged file).
    :param device: the :class:`~vixen_assets.Device`.
    :param compress: ``"bc7"`` or ``"bc1"`` to compress PNG/JPEG pixels at load (needs ``etcpak``).
    :param srgb: whether PNG/JPEG pixels are sRGB-encoded (colour) or linear data.
    :raises FormatError: the file is missing or malformed (naming the file and field).
    :raises UnsupportedFormatError: the format cannot be sampled, decoded or transcoded here (naming the scheme).
    """
    device.check_open()
    p = os.fspath(path)
    if "[" not in p and not os.path.exists(p):
        raise FormatError("file not found", path=p)
    cacher = texture_cacher(device)
    src = cacher.read_file(p, LoadContext(options={"compress": compress, "srgb": srgb}, layer_path=p))
    tex = cacher.hand_out(src)
    try:
        device.uploader.flush().wait()
    except BaseException:
        tex.release()
        raise
    return tex
