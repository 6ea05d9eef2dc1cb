"""``vixen_assets.vk.enums``: every named value equals the binding's constant where the binding has it, and no
memory/transfer module or ``device.py`` writes a Vulkan value as a bare number any more."""

from __future__ import annotations

import re
from pathlib import Path

import vulkan as vk

import vixen_assets
from vixen_assets.vk import enums

#: class -> (binding prefix, binding suffix)
PREFIX = {
    "PipelineStage": ("VK_PIPELINE_STAGE_", "_BIT"), "Access": ("VK_ACCESS_", "_BIT"),
    "ImageLayout": ("VK_IMAGE_LAYOUT_", "_OPTIMAL"), "ImageUsage": ("VK_IMAGE_USAGE_", "_BIT"),
    "BufferUsage": ("VK_BUFFER_USAGE_", "_BIT"), "MemoryProperty": ("VK_MEMORY_PROPERTY_", "_BIT"),
    "FormatFeature": ("VK_FORMAT_FEATURE_", "_BIT"), "ShaderStage": ("VK_SHADER_STAGE_", "_BIT"),
    "MemoryAllocate": ("VK_MEMORY_ALLOCATE_", "_BIT"),
    "RayTracingShaderGroupType": ("VK_RAY_TRACING_SHADER_GROUP_TYPE_", "_KHR"),
}
PKG = Path(vixen_assets.__file__).parent


def test_values_match_the_binding() -> None:
    checked = 0
    for cls_name, (prefix, suffix) in PREFIX.items():
        cls = getattr(enums, cls_name)
        for name, value in vars(cls).items():
            if name.startswith("_"):
                continue
            spellings = [prefix + name + suffix, prefix + name, prefix + name + suffix + "_KHR",
                         prefix + name + "_IMAGE" + suffix, prefix + name + "_KHR"]
            if cls_name == "ImageType":
                spellings = ["VK_IMAGE_TYPE_" + name.removeprefix("TYPE_")]
            found = [getattr(vk, s) for s in spellings if isinstance(getattr(vk, s, None), int)]
            if found:
                assert value == found[0], f"{cls_name}.{name} = {value:#x}, binding says {found[0]:#x}"
                checked += 1
    assert enums.ImageType.TYPE_3D == vk.VK_IMAGE_TYPE_3D
    assert enums.SHADER_UNUSED == vk.VK_SHADER_UNUSED_KHR
    assert enums.ShaderStage.RAYGEN == vk.VK_SHADER_STAGE_RAYGEN_BIT_KHR  # the ray-tracing members are checked too
    assert checked >= 30
    assert enums.PipelineStage.COMPUTE_SHADER != enums.ShaderStage.COMPUTE  # the two "compute" bits


def test_no_vulkan_hex_in_memory_transfer_or_device() -> None:
    pattern = re.compile(r"\b0x[0-9A-Fa-f]+\b")
    offenders = []
    files = [*(PKG / "memory").glob("*.py"), *(PKG / "transfer").glob("*.py"), PKG / "device.py"]
    for path in files:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code) and "~0xFFFF" not in code:  # 64 KiB rounding of a block size, not Vulkan
                offenders.append(f"{path.relative_to(PKG)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
