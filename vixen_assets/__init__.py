"""vixen-assets: put USD scenes, voxels, KTX2 textures and ray-tracing structures on a Vulkan GPU."""

from .device import Device, list_devices, open_device
from .errors import VixenError
from .vk import DeviceInfo

__version__ = "0.1.0"

__all__ = [
    "Device",
    "DeviceInfo",
    "VixenError",
    "__version__",
    "list_devices",
    "open_device",
]
