"""vixen-assets: put USD scenes, voxels, KTX2 textures and ray-tracing structures on a Vulkan GPU.

The package face: what applications and plugin authors import (``from vixen_assets import TypedCacher, ...``).
"""

import importlib.metadata

from .accel.structures import AccelerationStructure
from .accel.structures import Tlas
from .cachers.base import HeldEntry
from .cachers.base import LoadContext
from .cachers.base import TypedCacher
from .cachers.registry import CacherRegistry
from .device import Device
from .device import list_devices
from .device import open_device
from .errors import BudgetExceededError
from .errors import CompressionQualityWarning
from .errors import ConfigError
from .errors import DeviceClosedError
from .errors import DeviceLostError
from .errors import DeviceNotFoundError
from .errors import FormatError
from .errors import NotHeldError
from .errors import OutOfDeviceMemoryError
from .errors import OutOfRangeError
from .errors import PluginError
from .errors import StagingTimeoutError
from .errors import UnsupportedFeatureError
from .errors import UnsupportedFormatError
from .errors import ValidationMessageError
from .errors import VixenDeprecationWarning
from .errors import VixenError
from .estimate import Estimate
from .estimate import estimate
from .errors import VixenWarning
from .errors import VulkanError
from .hookspecs import hookimpl
from .memory.buffers import Buffer
from .memory.group import AllocationGroup
from .memory.images import Image
from .memory.options import BudgetOptions
from .scene import Instance
from .scene import Scene
from .textures import load_texture
from .textures import load_textures
from .trace import trace_rays
from .usd import load_stage
from .validate import ValidationReport
from .validate import validate
from .vk import DeviceInfo
from .voxels import VoxelScene
from .voxels import load_vox
from .vt import VirtualTexture
from .vt import open_virtual_texture

try:
    __version__ = importlib.metadata.version("vixen-assets")
except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AccelerationStructure",
    "AllocationGroup",
    "BudgetExceededError",
    "BudgetOptions",
    "Buffer",
    "CacherRegistry",
    "CompressionQualityWarning",
    "ConfigError",
    "Device",
    "DeviceClosedError",
    "DeviceInfo",
    "DeviceLostError",
    "DeviceNotFoundError",
    "Estimate",
    "FormatError",
    "HeldEntry",
    "Image",
    "Instance",
    "LoadContext",
    "NotHeldError",
    "OutOfDeviceMemoryError",
    "OutOfRangeError",
    "PluginError",
    "Scene",
    "StagingTimeoutError",
    "Tlas",
    "TypedCacher",
    "UnsupportedFeatureError",
    "UnsupportedFormatError",
    "ValidationMessageError",
    "ValidationReport",
    "VirtualTexture",
    "VixenDeprecationWarning",
    "VixenError",
    "VixenWarning",
    "VoxelScene",
    "VulkanError",
    "__version__",
    "estimate",
    "hookimpl",
    "list_devices",
    "load_stage",
    "load_texture",
    "load_textures",
    "load_vox",
    "open_device",
    "open_virtual_texture",
    "trace_rays",
    "validate",
]
