"""Tests of :mod:`vixen_assets.memory.images`: image parameters are checked against Vulkan's rules and the device's
limits, and the budget is charged, before ``vkCreateImage`` (counted by ``FaultInjector.images``)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from vixen_assets import BudgetOptions, load_texture
from vixen_assets.errors import (
    BudgetExceededError,
    ConfigError,
    UnsupportedFeatureError,
    UnsupportedFormatError,
)
from vixen_assets.formats import ktx2 as k2
from vixen_assets.memory.images import image_bytes
from vixen_assets.testing import finish_test_device, open_test_device
from vixen_assets.vk import FaultInjector

R8_UNORM, R8G8B8A8_UNORM = 9, 37


def _dfd(channels: int) -> bytes:
    samples = b"".join(struct.pack("<IIII", (8 * i) | (7 << 16) | (i << 24), 0, 0, 255) for i in range(channels))
    block = struct.pack("<IIIIII", 0, 2 | (24 + len(samples)) << 16, 1 | 1 << 8 | 1 << 16, 0, channels, 0) + samples
    return struct.pack("<I", 4 + len(block)) + block


def _ktx2(level: bytes, *, vk_format: int, channels: int, width: int, height: int, depth: int = 0,
          layers: int = 0) -> bytes:
    dfd = _dfd(channels)
    dfd_off = 80 + 24
    off = dfd_off + len(dfd)
    off += -off % 16
    header = struct.pack("<12s9I4I2Q", k2.IDENTIFIER, vk_format, 1, width, height, depth, layers, 1, 1, 0, dfd_off,
                         len(dfd), 0, 0, 0, 0)
    body = header + struct.pack("<3Q", off, len(level), len(level)) + dfd
    return body + bytes(off - len(body)) + level


def _count_images(device: Any) -> FaultInjector:
    faults = FaultInjector()
    device.context.logical.faults = faults
    return faults


def test_a_texture_over_max_image_dimension_is_refused_before_vulkan(device: Any, tmp_path: Path) -> None:
    """An R8 20000x4 texture (over maxImageDimension2D on lavapipe and most GPUs) passes the reader but never
    reaches ``vkCreateImage``: an UnsupportedFormatError naming the file and the limit."""
    most = device.info.limits["max_image_dimension_2d"]
    width = most + 3616 if most < 20000 else most + 1
    path = tmp_path / "wide.ktx2"
    path.write_bytes(_ktx2(bytes(width * 4), vk_format=R8_UNORM, channels=1, width=width, height=4))
    assert k2.read_ktx2(path).pixel_width == width  # the file itself is well formed
    faults = _count_images(device)
    try:
        with pytest.raises(UnsupportedFormatError) as info:
            load_texture(path, device)
        assert "wide.ktx2" in str(info.value) and "max_image_dimension_2d" in str(info.value)
        assert faults.images == 0
    finally:
        device.context.logical.faults = None


def test_a_3d_texture_with_array_layers_is_refused_before_vulkan(device: Any, tmp_path: Path) -> None:
    path = tmp_path / "vol_array.ktx2"
    path.write_bytes(_ktx2(bytes(4 * 4 * 4 * 4 * 2), vk_format=R8G8B8A8_UNORM, channels=4, width=4, height=4, depth=4,
                           layers=2))
    faults = _count_images(device)
    try:
        with pytest.raises(UnsupportedFormatError) as info:
            load_texture(path, device)
        assert "vol_array.ktx2" in str(info.value) and "3D" in str(info.value)
        assert faults.images == 0
    finally:
        device.context.logical.faults = None


@pytest.mark.parametrize(("kwargs", "error", "text"), [
    ({"width": 4, "height": 4, "depth": 4, "layers": 2}, ConfigError, "3D image cannot have array layers"),
    ({"width": 4, "height": 4, "levels": 4}, ConfigError, "at most 3"),
    ({"width": 4, "height": 8, "faces": 6}, ConfigError, "square"),
    ({"width": 4, "height": 4, "faces": 3}, ConfigError, "faces"),
    ({"width": True, "height": 4}, ConfigError, "int"),
    ({"width": 4.0, "height": 4}, ConfigError, "int"),
    ({"width": 0, "height": 4}, ConfigError, "empty"),
    ({"width": 1 << 20, "height": 1}, UnsupportedFeatureError, "max_image_dimension_2d"),
    ({"width": 4, "height": 4, "layers": 1 << 20}, UnsupportedFeatureError, "max_image_array_layers"),
    ({"width": 4, "height": 4, "vk_format": 1_000_000}, UnsupportedFormatError, "1000000"),
    ({"width": 4, "height": 4, "vk_format": 157}, UnsupportedFeatureError, "ASTC_4x4"),  # lavapipe, NVIDIA: no ASTC
    ({"width": 4, "height": 4, "vk_format": 126}, UnsupportedFeatureError, "depth/stencil"),  # D32_SFLOAT (fuzzing)
])
def test_create_image_checks_parameters_first(device: Any, kwargs: dict[str, Any], error: type, text: str) -> None:
    kwargs = dict(kwargs)
    kwargs.setdefault("vk_format", R8G8B8A8_UNORM)
    faults = _count_images(device)
    try:
        with pytest.raises(error) as info:
            device.create_image(name="bad", **kwargs)
        assert text in str(info.value) and "'bad'" in str(info.value)
        assert faults.images == 0
    finally:
        device.context.logical.faults = None


def test_the_budget_is_charged_before_vkCreateImage() -> None:
    dev = open_test_device(budget=BudgetOptions(limit_bytes=8 << 20, staging_quota=0))
    try:
        faults = _count_images(dev)
        with pytest.raises(BudgetExceededError):
            dev.create_image(2048, 2048, vk_format=R8G8B8A8_UNORM, name="too-big")  # 16 MiB on an 8 MiB budget
        assert faults.images == 0 and dev.budget.used == 0
        img = dev.create_image(256, 256, vk_format=R8G8B8A8_UNORM, levels=9, name="fits")
        assert faults.images == 1 and img.nbytes >= image_bytes(R8G8B8A8_UNORM, 256, 256, levels=9)
        img.destroy()
        dev.context.logical.faults = None
    finally:
        finish_test_device(dev)


def test_image_bytes_counts_every_level_and_layer() -> None:
    assert image_bytes(R8G8B8A8_UNORM, 4, 4) == 64
    assert image_bytes(R8G8B8A8_UNORM, 4, 4, levels=3) == 64 + 16 + 4
    assert image_bytes(R8G8B8A8_UNORM, 4, 4, layers=6) == 6 * 64
    assert image_bytes(133, 5, 5) == 4 * 8  # BC1: 2x2 blocks of 8 bytes
