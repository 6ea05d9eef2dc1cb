"""CPU reference of virtual-texture sampling: what :meth:`VirtualTexture.sample` must return, from whole mip levels.

Nearest reads texel ``min(floor(u * S), S - 1)`` of level ``L`` (``S`` texels per side); bilinear weighs the four
texels around ``u * S - 0.5`` with clamp-to-edge addressing, which is what a tile with a border of at least one texel
gives on the GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .builder import downsample


def mip_chain(level0: np.ndarray, levels: int) -> list[np.ndarray]:
    """Level 0 and the ``levels - 1`` levels below it, each ``(a + b + c + d + 2) // 4`` of its parents.

    :param level0: ``(S, S, 4)`` uint8 texels.
    :param levels: how many levels to return.
    """
    out = [np.asarray(level0, dtype=np.uint8)]
    for _ in range(levels - 1):
        out.append(downsample(out[-1]))
    return out


def reference_sample(mips: Sequence[np.ndarray], u: Any, v: Any, levels: Any, *,
                     filter: str = "nearest") -> np.ndarray:
    """Sample whole mip levels on the CPU.

    :param mips: RGBA8 levels, ``mips[L]`` of ``(S >> L, S >> L, 4)``.
    :param u: horizontal coordinates in [0, 1].
    :param v: vertical coordinates in [0, 1].
    :param levels: the level each sample reads (e.g. the resident levels :meth:`VirtualTexture.sample` reports).
    :param filter: ``"nearest"`` or ``"bilinear"``.
    :returns: ``(N, 4)`` uint8.
    """
    u = np.clip(np.asarray(u, np.float32).ravel(), 0, 1)
    v = np.clip(np.asarray(v, np.float32).ravel(), 0, 1)
    levels = np.broadcast_to(np.asarray(levels, np.int64).ravel(), u.shape)
    out = np.zeros((len(u), 4), np.uint8)
    for lv in np.unique(levels):
        m = levels == lv
        img = mips[int(lv)]
        s = img.shape[0]
        fx = u[m] * np.float32(s)
        fy = v[m] * np.float32(s)
        if filter == "nearest":
            x = np.minimum(fx.astype(np.int64), s - 1)
            y = np.minimum(fy.astype(np.int64), s - 1)
            out[m] = img[y, x]
            continue
        px = fx.astype(np.float64) - 0.5
        py = fy.astype(np.float64) - 0.5
        x0 = np.floor(px)
        y0 = np.floor(py)
        wx = (px - x0)[:, None]
        wy = (py - y0)[:, None]
        x0 = x0.astype(np.int64)
        y0 = y0.astype(np.int64)

        def at(x: np.ndarray, y: np.ndarray, img: np.ndarray = img, s: int = s) -> np.ndarray:
            return img[np.clip(y, 0, s - 1), np.clip(x, 0, s - 1)].astype(np.float64) / 255.0

        top = at(x0, y0) * (1 - wx) + at(x0 + 1, y0) * wx
        bottom = at(x0, y0 + 1) * (1 - wx) + at(x0 + 1, y0 + 1) * wx
        c = top * (1 - wy) + bottom * wy
        out[m] = np.clip(np.rint(c * 255.0), 0, 255).astype(np.uint8)
    return out


__all__ = ["mip_chain", "reference_sample"]
