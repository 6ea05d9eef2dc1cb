"""``load_texture(path, device)``: one KTX2/PNG/JPEG file on the GPU as a :class:`GpuTexture`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .cachers import LoadContext
from .cachers.texture import GpuTexture, texture_cacher
from .errors import FormatError

if TYPE_CHECKING:
    from .device import Device


def load_texture(path: str | os.PathLike[str], device: Device, *, compress: str | None = None, srgb: bool = True) -> GpuTexture:
    """Load a texture (deduplicated by content); the device keeps it cached until evicted or closed.

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
    key = cacher.key_for(src)
    tex = cacher.get_many([src], [key])[0]
    cacher.release(key)  # the cache keeps it; callers that need pinning use the cacher directly
    device.uploader.flush().wait()
    return tex
