"""Simulated camera paths: per frame, a grid of (u, v, lod) samples like a G-buffer at 1/16 of the screen's pixels
(UE's feedback resolution: one sample per 4 x 4 pixels), for ``vixen-assets vt stream`` and the benchmark.

The view is a window of ``span`` (in uv) on the texture; its level of detail is ``log2(span * size / screen)`` plus a
tilt that makes the top of the screen up to one level coarser, as a ground plane seen at an angle.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

PATHS = ("spiral", "zoom", "random")


def _frame(cx: float, cy: float, span: float, size: int, screen: tuple[int, int], grid: tuple[int, int],
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gw, gh = grid
    gx = (np.arange(gw, dtype=np.float32) + 0.5) / gw - 0.5
    gy = (np.arange(gh, dtype=np.float32) + 0.5) / gh - 0.5
    u, v = np.meshgrid(cx + gx * span, cy + gy * span * gh / gw)
    lod0 = math.log2(max(span * size / screen[0], 1e-6))
    tilt = np.broadcast_to((0.5 - (gy + 0.5))[:, None], u.shape)  # top rows: up to one level coarser
    lod = (lod0 + tilt).astype(np.float32)
    return (np.clip(u, 0, 1).ravel().astype(np.float32), np.clip(v, 0, 1).ravel().astype(np.float32), lod.ravel())


def camera_path(kind: str, frames: int, size: int, *, screen: tuple[int, int] = (1920, 1080), seed: int = 0,
                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``frames`` frames of ``(u, v, lod)`` sample arrays (one per 4 x 4 pixels of ``screen``).

    :param kind: ``"spiral"`` (a close view circling out from the centre, a turn every 150 frames), ``"zoom"`` (from
        the whole texture down to texel scale and back every 200 frames) or ``"random"`` (a close view jumping
        somewhere new every 10 frames).
    :param frames: number of frames.
    :param size: texels per side of the texture (sets the level of detail).
    :param screen: the simulated render size.
    :param seed: for ``"random"``.
    """
    if kind not in PATHS:
        raise ValueError(f"unknown camera path {kind!r}; choose one of {', '.join(PATHS)}")
    grid = (max(1, screen[0] // 4), max(1, screen[1] // 4))
    close = min(1.0, 1.5 * screen[0] / size)  # about 1.5 texels per pixel
    rng = np.random.default_rng(seed)
    cx = cy = 0.5
    for f in range(frames):  # speeds per frame, whatever the number of frames
        if kind == "spiral":  # a turn every 150 frames, out to a radius of 0.4 over 600 frames
            r = 0.4 * min(1.0, f / 600)
            a = 2 * math.pi * f / 150
            yield _frame(0.5 + r * math.cos(a), 0.5 + r * math.sin(a), close, size, screen, grid)
        elif kind == "zoom":  # whole texture -> close -> whole texture every 200 frames
            k = 1 - abs(2 * ((f % 200) / 200) - 1)
            span = math.exp(math.log(close) * k)
            yield _frame(0.37, 0.61, span, size, screen, grid)
        else:  # a close view drifting, jumping somewhere new every 10 frames
            if f % 10 == 0:
                cx, cy = rng.uniform(0.1, 0.9, 2)
            yield _frame(cx + 0.002 * (f % 10), cy, close, size, screen, grid)

__all__ = ["camera_path", "PATHS"]
