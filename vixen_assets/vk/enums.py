"""Named Vulkan enum and flag values: the only place outside the binding where their numbers are written.

Each class is one Vulkan type (``PipelineStage`` is ``VkPipelineStageFlagBits``, ``ShaderStage`` is
``VkShaderStageFlagBits``: the two "compute" bits are different numbers, ``PipelineStage.COMPUTE_SHADER`` 0x800 and
``ShaderStage.COMPUTE`` 0x20). Members are plain ``int`` class attributes (no ``enum`` objects: the flags are
combined on hot paths), named as in the specification without the ``VK_`` prefix, type name and ``_BIT`` suffix.
Values the Python binding lacks (Vulkan 1.2 core names) are written from the specification.
"""

from __future__ import annotations

from typing import Final

# ------------------------------------------------------------------------------------------------------------------
# memory / transfer


class PipelineStage:
    """``VkPipelineStageFlagBits``."""

    TOP_OF_PIPE: Final = 0x1
    COMPUTE_SHADER: Final = 0x800
    TRANSFER: Final = 0x1000
    BOTTOM_OF_PIPE: Final = 0x2000
    HOST: Final = 0x4000
    ALL_COMMANDS: Final = 0x10000
    ACCELERATION_STRUCTURE_BUILD: Final = 0x02000000
    # ray-tracing pipelines (trace_pipeline)
    RAY_TRACING_SHADER: Final = 0x00200000


class Access:
    """``VkAccessFlagBits``."""

    NONE: Final = 0
    SHADER_READ: Final = 0x20
    SHADER_WRITE: Final = 0x40
    TRANSFER_READ: Final = 0x800
    TRANSFER_WRITE: Final = 0x1000
    HOST_READ: Final = 0x2000
    HOST_WRITE: Final = 0x4000
    MEMORY_READ: Final = 0x8000
    MEMORY_WRITE: Final = 0x10000
    # cachers / accel / usd
    ACCELERATION_STRUCTURE_READ: Final = 0x00200000
    ACCELERATION_STRUCTURE_WRITE: Final = 0x00400000


class ImageLayout:
    """``VkImageLayout``."""

    UNDEFINED: Final = 0
    GENERAL: Final = 1
    SHADER_READ_ONLY: Final = 5
    TRANSFER_SRC: Final = 6
    TRANSFER_DST: Final = 7


class ImageType:
    """``VkImageType``."""

    TYPE_1D: Final = 0
    TYPE_2D: Final = 1
    TYPE_3D: Final = 2


class ImageUsage:
    """``VkImageUsageFlagBits``."""

    TRANSFER_SRC: Final = 0x1
    TRANSFER_DST: Final = 0x2
    SAMPLED: Final = 0x4
    STORAGE: Final = 0x8


class BufferUsage:
    """``VkBufferUsageFlagBits``."""

    TRANSFER_SRC: Final = 0x1
    TRANSFER_DST: Final = 0x2
    UNIFORM_TEXEL: Final = 0x4
    STORAGE_TEXEL: Final = 0x8
    UNIFORM: Final = 0x10
    STORAGE: Final = 0x20
    INDEX: Final = 0x40
    VERTEX: Final = 0x80
    INDIRECT: Final = 0x100
    SHADER_DEVICE_ADDRESS: Final = 0x00020000
    ACCELERATION_STRUCTURE_BUILD_INPUT_READ_ONLY: Final = 0x00080000
    ACCELERATION_STRUCTURE_STORAGE: Final = 0x00100000
    # ray-tracing pipelines (trace_pipeline)
    SHADER_BINDING_TABLE: Final = 0x00000400


class MemoryProperty:
    """``VkMemoryPropertyFlagBits``."""

    DEVICE_LOCAL: Final = 0x1
    HOST_VISIBLE: Final = 0x2
    HOST_COHERENT: Final = 0x4
    HOST_CACHED: Final = 0x8


class MemoryAllocate:
    """``VkMemoryAllocateFlagBits``."""

    DEVICE_ADDRESS: Final = 0x2


class FormatFeature:
    """``VkFormatFeatureFlagBits``."""

    SAMPLED_IMAGE: Final = 0x1
    TRANSFER_DST: Final = 0x4000


class ShaderStage:
    """``VkShaderStageFlagBits`` (not a pipeline stage: ``ShaderStage.COMPUTE`` is 0x20)."""

    COMPUTE: Final = 0x20
    # ray-tracing pipelines (vk/raytracing)
    RAYGEN: Final = 0x100
    ANY_HIT: Final = 0x200
    CLOSEST_HIT: Final = 0x400
    MISS: Final = 0x800
    INTERSECTION: Final = 0x1000
    CALLABLE: Final = 0x2000


class RayTracingShaderGroupType:
    """``VkRayTracingShaderGroupTypeKHR``."""

    GENERAL: Final = 0
    TRIANGLES_HIT_GROUP: Final = 1
    PROCEDURAL_HIT_GROUP: Final = 2


#: ``VK_QUEUE_FAMILY_IGNORED``
QUEUE_FAMILY_IGNORED: Final = 0xFFFFFFFF
#: ``VK_WHOLE_SIZE``
WHOLE_SIZE: Final = 0xFFFFFFFFFFFFFFFF
#: ``VK_SHADER_UNUSED_KHR`` (no shader of that kind in a ray-tracing shader group)
SHADER_UNUSED: Final = 0xFFFFFFFF
#: the 32 bits of ``VkMemoryRequirements.memoryTypeBits``
ALL_MEMORY_TYPES: Final = 0xFFFFFFFF
