"""``vixen_assets.vt.build``: tiles with clamped borders, the mip rule, sources, streaming memory, refusals."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from vixen_assets.errors import ConfigError, FormatError
from vixen_assets.vt import TileFile, build, downsample
from vixen_assets.vt.reference import mip_chain


def _texture(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, n, 4), dtype=np.uint8)


def test_downsample_is_the_rounded_mean_of_each_2x2_block() -> None:
    a = _texture(8, 3)
    got = downsample(a)
    for y in range(4):
        for x in range(4):
            for c in range(4):
                q = [int(a[2 * y + dy, 2 * x + dx, c]) for dy in (0, 1) for dx in (0, 1)]
                assert got[y, x, c] == (sum(q) + 2) // 4


@pytest.mark.parametrize("border", [0, 1, 4])
def test_every_tile_is_its_level_with_clamped_borders(tmp_path: Path, border: int) -> None:
    a = _texture(512, 1)
    out = build(a, tmp_path / "t.vtex", tile=64, border=border, threads=2)
    with TileFile(out) as tf:
        lay = tf.layout
        assert lay.levels == 4 and lay.tile_count == 64 + 16 + 4 + 1
        for lv, img in enumerate(mip_chain(a, lay.levels)):
            pad = np.pad(img, ((border, border), (border, border), (0, 0)), mode="edge")
            n = lay.tiles_per_side(lv)
            for ty in range(n):
                for tx in range(n):
                    want = pad[ty * 64:ty * 64 + lay.page, tx * 64:tx * 64 + lay.page]
                    np.testing.assert_array_equal(tf.read_pixels(lay.tile_id(lv, tx, ty)), want)


def test_callable_source_is_read_in_bands_and_equals_the_array_build(tmp_path: Path) -> None:
    a = _texture(1024, 2)
    calls: list[tuple[int, int, int, int]] = []

    def source(x0: int, y0: int, w: int, h: int) -> np.ndarray:
        calls.append((x0, y0, w, h))
        return a[y0:y0 + h, x0:x0 + w]

    p1 = build(source, tmp_path / "proc.vtex", size=1024, tile=128, threads=2)
    p2 = build(a, tmp_path / "arr.vtex", tile=128, threads=2)
    assert max(h for *_, h in calls) == 128  # never a whole level at once
    assert sorted(y for _, y, _, _ in calls) == list(range(0, 1024, 128))
    with TileFile(p1) as t1, TileFile(p2) as t2:
        for i in range(t1.layout.tile_count):
            np.testing.assert_array_equal(t1.read_tile(i), t2.read_tile(i))


def test_png_source_and_progress(tmp_path: Path) -> None:
    from PIL import Image

    a = _texture(256, 4)
    Image.fromarray(a, "RGBA").save(tmp_path / "src.png")
    seen: list[tuple[int, int]] = []
    out = build(tmp_path / "src.png", tmp_path / "p.vtex", tile=64, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (21, 21) and [d for d, _ in seen] == list(range(1, 22))
    with TileFile(out) as tf:
        np.testing.assert_array_equal(tf.read_pixels(0)[4:-4, 4:-4], a[:64, :64])


def test_streaming_build_holds_a_few_bands_not_a_level(tmp_path: Path) -> None:
    """Peak Python/numpy memory while building 4096^2 in 64-row bands (1 MiB of level 0 each; the level is 64 of
    them) stays under 12 bands: the band being cut, its neighbours, halves, the band read ahead, tiles in flight."""
    n, tile = 4096, 64
    band = tile * n * 4
    row = (np.arange(n) * 7 & 0xFF).astype(np.uint8)

    def source(x0: int, y0: int, w: int, h: int) -> np.ndarray:
        out = np.empty((h, w, 4), np.uint8)
        out[...] = row[None, x0:x0 + w, None]
        out += ((np.arange(y0, y0 + h) * 13) & 0xFF).astype(np.uint8)[:, None, None]
        return out

    tracemalloc.start()
    try:
        build(source, tmp_path / "big.vtex", size=n, tile=tile, zstd_level=1, threads=2)
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * band, f"peak {peak / 2**20:.1f} MiB = {peak / band:.1f} bands"
    with TileFile(tmp_path / "big.vtex") as tf:
        last = tf.layout.tile_id(0, 63, 63)
        want = source(63 * tile - 4, 63 * tile - 4, tile + 4, tile + 4)
        got = tf.read_pixels(last)
        np.testing.assert_array_equal(got[:tile + 4, :tile + 4], want)
        np.testing.assert_array_equal(got[:, tile + 4:], np.repeat(got[:, tile + 3:tile + 4], 4, axis=1))  # edge


def test_bc7_tiles_decode_close_to_the_source(tmp_path: Path) -> None:
    pytest.importorskip("etcpak")
    yy, xx = np.mgrid[0:256, 0:256]
    a = np.stack([xx, yy, (xx + yy) // 2, np.full_like(xx, 255)], axis=2).astype(np.uint8)
    out = build(a, tmp_path / "b.vtex", tile=64, fmt="bc7")
    with TileFile(out) as tf:
        assert tf.layout.raw_bytes == 72 * 72
        got = tf.read_pixels(tf.layout.tile_id(0, 1, 2))[4:-4, 4:-4].astype(int)
        assert np.abs(got - a[128:192, 64:128]).max() <= 4  # BC7 on smooth gradients: a few levels at most


@pytest.mark.parametrize(("shape", "kw", "what"), [
    ((256, 512, 4), {}, "not square"),
    ((384, 384, 4), {}, "power of two"),
    ((128, 128, 4), {}, "power of two"),
    ((256, 256, 4), {"tile": 48}, "tile"),
    ((256, 256, 4), {"border": 100}, "border"),
    ((256, 256, 4), {"fmt": "bc7", "border": 3}, "even border"),
    ((256, 256, 4), {"fmt": "astc"}, "format"),
])
def test_bad_sources_and_options_are_refused(tmp_path: Path, shape: tuple[int, ...], kw: dict, what: str) -> None:
    with pytest.raises(FormatError, match=what):
        build(np.zeros(shape, np.uint8), tmp_path / "x.vtex", **kw)
    assert not (tmp_path / "x.vtex").exists()


def test_callable_needs_a_size_and_must_return_its_band(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="size="):
        build(lambda x, y, w, h: np.zeros((h, w, 4), np.uint8), tmp_path / "x.vtex")
    with pytest.raises(FormatError, match="returned"):
        build(lambda x, y, w, h: np.zeros((h, w, 3), np.uint8), tmp_path / "x.vtex", size=256)
    assert not (tmp_path / "x.vtex").exists()


def test_ktx2_source(tmp_path: Path) -> None:
    from test_ktx2 import build_ktx2  # the KTX2 layout helper of the reader's tests

    a = _texture(256, 6)
    (tmp_path / "src.ktx2").write_bytes(build_ktx2([a.tobytes()], vk_format=37, width=256, height=256))
    out = build(tmp_path / "src.ktx2", tmp_path / "k.vtex", tile=128, border=4)
    with TileFile(out) as tf:
        np.testing.assert_array_equal(tf.read_pixels(tf.layout.tile_id(0, 1, 1))[4:-4, 4:-4], a[128:, 128:])
        np.testing.assert_array_equal(tf.read_pixels(tf.layout.tile_id(1, 0, 0))[4:-4, 4:-4], downsample(a))
    with pytest.raises(FormatError, match="not found"):
        build(tmp_path / "missing.png", tmp_path / "m.vtex")
