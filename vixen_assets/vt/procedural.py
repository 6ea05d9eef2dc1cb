"""A procedural level 0 of any size (up to 65536^2) for builds and benchmarks: computed band by band, never held."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def procedural_source(size: int, *, seed: int = 0) -> Callable[[int, int, int, int], np.ndarray]:
    """A ``source(x0, y0, w, h) -> (h, w, 4) uint8`` for :func:`vixen_assets.vt.build`: smooth colour ramps, a grid
    every 256 texels and hashed per-texel noise (so that tiles compress like real detail, not like flat colour).

    :param size: texels per side (the ramps span the whole texture).
    :param seed: changes the noise.
    """
    salt = np.uint32((seed * 0x9E3779B1 + 0x85EBCA6B) & 0xFFFFFFFF)

    def source(x0: int, y0: int, w: int, h: int) -> np.ndarray:
        x = np.arange(x0, x0 + w, dtype=np.uint32)[None, :]
        y = np.arange(y0, y0 + h, dtype=np.uint32)[:, None]
        hsh = (x * np.uint32(0x27D4EB2D)) ^ (y * np.uint32(0x165667B1)) ^ salt
        hsh ^= hsh >> np.uint32(15)
        hsh *= np.uint32(0x2C1B3C6D)
        hsh ^= hsh >> np.uint32(12)
        noise = (hsh & np.uint32(31)).astype(np.uint8)
        out = np.empty((h, w, 4), np.uint8)
        out[..., 0] = ((x * 224) // size).astype(np.uint8) + noise
        out[..., 1] = ((y * 224) // size).astype(np.uint8) + noise
        grid = ((x & 255) < 3) | ((y & 255) < 3)
        out[..., 2] = np.where(grid, np.uint8(255), noise * np.uint8(4))
        out[..., 3] = 255
        return out

    return source


__all__ = ["procedural_source"]
