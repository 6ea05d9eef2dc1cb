"""``load_texture`` hands out a reference the caller holds: budget-warning eviction never destroys a held texture
(the GPU use-after-free of the earlier ``load_texture``), while textures given back stay evictable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

import vixen_assets
from vixen_assets import load_texture
from vixen_assets.cachers.texture import texture_cacher
from vixen_assets.errors import NotHeldError
from vixen_assets.testing import finish_test_device, open_test_device

MiB = 1 << 20


@pytest.fixture
def small_device() -> Iterator[Any]:
    """A validated device with a 64 MiB budget and a 16 MiB warning threshold."""
    info = vixen_assets.list_devices()[0]
    heap = max(h.size for h in info.heaps if h.device_local)
    dev = open_test_device(budget_fraction=64 * MiB / heap, warning_fraction=16 * MiB / heap)
    try:
        yield dev
    finally:
        finish_test_device(dev)


def _png(path: Path, seed: int, size: int = 256) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
    PILImage.fromarray(px, "RGBA").save(path)
    return path, px


def test_held_texture_survives_budget_warning_eviction(small_device: Any, tmp_path: Path) -> None:
    """Hold one texture, give another back, push the budget over its warning threshold: the given-back texture is
    evicted, the held one is not, and it reads back bit-exact afterwards."""
    dev = small_device
    held_path, held_px = _png(tmp_path / "held.png", 1)
    free_path, _ = _png(tmp_path / "free.png", 2)
    held = load_texture(held_path, dev, srgb=False)
    assert held.held == 1
    free = load_texture(free_path, dev, srgb=False)
    free.release()
    cacher = texture_cacher(dev)
    assert cacher.refcount(held.key) == 1 and cacher.refcount(free.key) == 0
    over = dev.budget.warning_threshold - dev.budget.used + 2 * MiB
    filler = dev.create_buffer(over, "storage", name="filler")  # crosses the warning threshold: eviction runs
    try:
        assert cacher.stats.evictions >= 1 and free.key not in cacher  # eviction did run
        assert held.key in cacher and held.image.alive
        np.testing.assert_array_equal(dev.read_image(held), held_px)
    finally:
        filler.destroy()
    held.release()
    assert cacher.refcount(held.key) == 0
    with pytest.raises(NotHeldError, match="without a reference held"):
        held.release()


def test_each_load_holds_one_reference_and_with_gives_it_back(device: Any, tmp_path: Path) -> None:
    """Two loads of one content: one object, two references; each ``with`` exit gives one back; nothing taken from
    a scene or another holder."""
    path, px = _png(tmp_path / "a.png", 3, 32)
    cacher = texture_cacher(device)
    with load_texture(path, device, srgb=False) as a:
        with load_texture(path, device, srgb=False) as b:
            assert a is b and cacher.refcount(a.key) == 2 and a.held == 2
            np.testing.assert_array_equal(device.read_image(b), px)
        assert cacher.refcount(a.key) == 1
    assert cacher.refcount(a.key) == 0 and a.key in cacher  # cached, evictable
    assert cacher.evict() == 1 and a.key not in cacher
