"""The thin layer over the ``vulkan`` cffi binding: the only package that imports ``vulkan``.

``shim`` holds every binding quirk; ``instance``, ``physical``, ``logical``, ``commands``, ``sync`` and
``resources`` wrap the calls the layers above need. Nothing here tracks budgets or lifetimes beyond one object.
"""

from .faults import FaultInjector
from .instance import DebugMessage, Instance
from .logical import LogicalDevice, Queue
from .physical import DeviceInfo, HeapInfo, MemoryTypeInfo, QueueFamilyInfo, query_device_info

__all__ = [
    "DebugMessage",
    "DeviceInfo",
    "FaultInjector",
    "HeapInfo",
    "Instance",
    "LogicalDevice",
    "MemoryTypeInfo",
    "Queue",
    "QueueFamilyInfo",
    "query_device_info",
]
