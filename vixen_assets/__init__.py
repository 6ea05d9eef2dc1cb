"""vixen-assets: put USD scenes, voxels, KTX2 textures and ray-tracing structures on a Vulkan GPU."""

from .device import Device, list_devices, open_device
from .errors import VixenError
from .estimate import Estimate, estimate
from .hookspecs import hookimpl
from .usd import Instance, Scene, load_stage
from .textures import load_texture
from .trace import trace_rays
from .vk import DeviceInfo
from .voxels import VoxelScene, load_vox
from .validate import ValidationReport, validate

__version__ = "0.1.0"

__all__ = [
    "Device",
    "DeviceInfo",
    "Estimate",
    "Instance",
    "Scene",
    "ValidationReport",
    "VoxelScene",
    "VixenError",
    "__version__",
    "estimate",
    "hookimpl",
    "list_devices",
    "load_stage",
    "load_texture",
    "load_vox",
    "open_device",
    "trace_rays",
    "validate",
]
