"""Physical-device enumeration: properties, features, memory heaps and types, queue families, format support."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .shim import NULL, check, ffi, lib, to_str, version_str, vk

DEVICE_TYPES = {0: "other", 1: "integrated-gpu", 2: "discrete-gpu", 3: "virtual-gpu", 4: "cpu"}

#: Extensions the library enables when present (feature name -> extension).
OPTIONAL_EXTENSIONS = {
    "acceleration_structure": "VK_KHR_acceleration_structure",
    "ray_query": "VK_KHR_ray_query",
    "deferred_host_operations": "VK_KHR_deferred_host_operations",
    "memory_budget": "VK_EXT_memory_budget",
}

#: Enabled with acceleration structures wherever present (``trace_rays(backend="pipeline")``); on devices without ray
#: queries it is also what makes acceleration-structure commands valid: they need the ``rayQuery`` or the
#: ``rayTracingPipeline`` feature enabled (VUID-vkGetAccelerationStructureBuildSizesKHR-rayTracingPipeline-03617 and
#: the matching VUIDs of the build, copy and property commands).
RAY_TRACING_PIPELINE_EXTENSION = "VK_KHR_ray_tracing_pipeline"

_MEMORY_PROPERTY_NAMES = {
    0x1: "DEVICE_LOCAL",
    0x2: "HOST_VISIBLE",
    0x4: "HOST_COHERENT",
    0x8: "HOST_CACHED",
    0x10: "LAZILY_ALLOCATED",
    0x20: "PROTECTED",
}
_QUEUE_NAMES = {0x1: "graphics", 0x2: "compute", 0x4: "transfer", 0x8: "sparse", 0x20: "video-decode"}


def flag_names(flags: int, names: dict[int, str]) -> list[str]:
    """Return the names of the bits set in ``flags``."""
    return [name for bit, name in names.items() if flags & bit]


@dataclass(frozen=True)
class HeapInfo:
    """One memory heap: size, flags, and the VK_EXT_memory_budget budget/usage when the device reports them."""

    index: int
    size: int
    device_local: bool
    flags: int
    budget: int | None = None
    usage: int | None = None


@dataclass(frozen=True)
class MemoryTypeInfo:
    """One memory type: its heap and property flags (``DEVICE_LOCAL``, ``HOST_VISIBLE``, ...)."""

    index: int
    heap: int
    flags: int
    properties: tuple[str, ...]


@dataclass(frozen=True)
class QueueFamilyInfo:
    """One queue family: capabilities, queue count, and timestamp bits."""

    index: int
    flags: int
    capabilities: tuple[str, ...]
    count: int
    timestamp_valid_bits: int

    @property
    def transfer_only(self) -> bool:
        """True for a family with transfer but neither graphics nor compute (a DMA engine)."""
        return bool(self.flags & 0x4) and not self.flags & 0x3


@dataclass(frozen=True)
class DeviceInfo:
    """What a physical device is and can do; returned by :func:`vixen_assets.list_devices`."""

    index: int
    name: str
    device_type: str
    api_version: str
    driver: str
    vendor_id: int
    device_id: int
    heaps: tuple[HeapInfo, ...]
    memory_types: tuple[MemoryTypeInfo, ...]
    queue_families: tuple[QueueFamilyInfo, ...]
    features: dict[str, bool]
    extensions: frozenset[str] = field(repr=False, default=frozenset())
    limits: dict[str, int] = field(default_factory=dict)

    @property
    def unified_memory(self) -> bool:
        """True when every device-local heap's memory is also host-visible (lavapipe, integrated GPUs)."""
        local = [t for t in self.memory_types if t.flags & 0x1]
        return bool(local) and all(t.flags & 0x2 for t in local)

    @property
    def transfer_family(self) -> int | None:
        """Index of a transfer-only queue family, or ``None``."""
        for fam in self.queue_families:
            if fam.transfer_only:
                return fam.index
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (for ``vixen-assets devices --json``)."""
        d = asdict(self)
        d["extensions"] = sorted(self.extensions)
        d["unified_memory"] = self.unified_memory
        d["transfer_family"] = self.transfer_family
        return d


def _device_extensions(pd: Any) -> frozenset[str]:
    count = ffi.new("uint32_t*")
    check(lib.vkEnumerateDeviceExtensionProperties(pd, NULL, count, NULL), "vkEnumerateDeviceExtensionProperties")
    arr = ffi.new("VkExtensionProperties[]", count[0])
    check(lib.vkEnumerateDeviceExtensionProperties(pd, NULL, count, arr), "vkEnumerateDeviceExtensionProperties")
    return frozenset(to_str(arr[i].extensionName) for i in range(count[0]))


class FeatureChain:
    """The ``VkPhysicalDeviceFeatures2`` chain the library queries and enables (kept alive as one object)."""

    def __init__(self, extensions: frozenset[str]) -> None:
        """Build the chain, linking the extension structs only when their extension is present."""
        self.v11 = ffi.new("VkPhysicalDeviceVulkan11Features*", {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES})
        self.v12 = ffi.new("VkPhysicalDeviceVulkan12Features*", {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES})
        self.v13 = ffi.new("VkPhysicalDeviceVulkan13Features*", {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES})
        self.accel = ffi.new(
            "VkPhysicalDeviceAccelerationStructureFeaturesKHR*",
            {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ACCELERATION_STRUCTURE_FEATURES_KHR},
        )
        self.rayq = ffi.new(
            "VkPhysicalDeviceRayQueryFeaturesKHR*", {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_RAY_QUERY_FEATURES_KHR}
        )
        self.rtp = ffi.new(
            "VkPhysicalDeviceRayTracingPipelineFeaturesKHR*",
            {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_RAY_TRACING_PIPELINE_FEATURES_KHR},
        )
        self.root = ffi.new("VkPhysicalDeviceFeatures2*", {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2})
        chain: list[Any] = [self.v11, self.v12, self.v13]
        if OPTIONAL_EXTENSIONS["acceleration_structure"] in extensions:
            chain.append(self.accel)
        if OPTIONAL_EXTENSIONS["ray_query"] in extensions:
            chain.append(self.rayq)
        if RAY_TRACING_PIPELINE_EXTENSION in extensions:
            chain.append(self.rtp)
        self.root.pNext = chain[0]
        for a, b in zip(chain, chain[1:]):
            a.pNext = b
        chain[-1].pNext = NULL
        self.linked = chain

    def query(self, pd: Any) -> None:
        """Fill the chain from the physical device."""
        lib.vkGetPhysicalDeviceFeatures2(pd, self.root)


def _heap_budgets(pd: Any, heap_count: int) -> tuple[list[int], list[int]]:
    budget = ffi.new(
        "VkPhysicalDeviceMemoryBudgetPropertiesEXT*",
        {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT},
    )
    props2 = ffi.new(
        "VkPhysicalDeviceMemoryProperties2*",
        {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2, "pNext": budget},
    )
    lib.vkGetPhysicalDeviceMemoryProperties2(pd, props2)
    return [int(budget.heapBudget[i]) for i in range(heap_count)], [int(budget.heapUsage[i]) for i in range(heap_count)]


def memory_budgets(pd: Any) -> tuple[list[int], list[int]]:
    """Return the current ``VK_EXT_memory_budget`` (budget, usage) per heap."""
    mem = ffi.new("VkPhysicalDeviceMemoryProperties*")
    lib.vkGetPhysicalDeviceMemoryProperties(pd, mem)
    return _heap_budgets(pd, mem.memoryHeapCount)


def query_device_info(pd: Any, index: int) -> DeviceInfo:
    """Read everything the library needs to know about one physical device."""
    props = ffi.new("VkPhysicalDeviceProperties*")
    lib.vkGetPhysicalDeviceProperties(pd, props)
    driver_props = ffi.new("VkPhysicalDeviceDriverProperties*", {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES})
    props2 = ffi.new("VkPhysicalDeviceProperties2*", {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, "pNext": driver_props})
    lib.vkGetPhysicalDeviceProperties2(pd, props2)
    extensions = _device_extensions(pd)
    chain = FeatureChain(extensions)
    chain.query(pd)

    mem = ffi.new("VkPhysicalDeviceMemoryProperties*")
    lib.vkGetPhysicalDeviceMemoryProperties(pd, mem)
    budgets: list[int | None] = [None] * mem.memoryHeapCount
    usages: list[int | None] = [None] * mem.memoryHeapCount
    if OPTIONAL_EXTENSIONS["memory_budget"] in extensions:
        b, u = _heap_budgets(pd, mem.memoryHeapCount)
        budgets, usages = list(b), list(u)
    heaps = tuple(
        HeapInfo(
            index=i,
            size=int(mem.memoryHeaps[i].size),
            device_local=bool(mem.memoryHeaps[i].flags & 0x1),
            flags=int(mem.memoryHeaps[i].flags),
            budget=budgets[i],
            usage=usages[i],
        )
        for i in range(mem.memoryHeapCount)
    )
    types = tuple(
        MemoryTypeInfo(
            index=i,
            heap=int(mem.memoryTypes[i].heapIndex),
            flags=int(mem.memoryTypes[i].propertyFlags),
            properties=tuple(flag_names(int(mem.memoryTypes[i].propertyFlags), _MEMORY_PROPERTY_NAMES)),
        )
        for i in range(mem.memoryTypeCount)
    )
    qcount = ffi.new("uint32_t*")
    lib.vkGetPhysicalDeviceQueueFamilyProperties(pd, qcount, NULL)
    qarr = ffi.new("VkQueueFamilyProperties[]", qcount[0])
    lib.vkGetPhysicalDeviceQueueFamilyProperties(pd, qcount, qarr)
    families = tuple(
        QueueFamilyInfo(
            index=i,
            flags=int(qarr[i].queueFlags),
            capabilities=tuple(flag_names(int(qarr[i].queueFlags), _QUEUE_NAMES)),
            count=int(qarr[i].queueCount),
            timestamp_valid_bits=int(qarr[i].timestampValidBits),
        )
        for i in range(qcount[0])
    )
    has = extensions.__contains__
    features = {
        "buffer_device_address": bool(chain.v12.bufferDeviceAddress),
        "timeline_semaphore": bool(chain.v12.timelineSemaphore),
        "synchronization2": bool(chain.v13.synchronization2),
        "acceleration_structure": has(OPTIONAL_EXTENSIONS["acceleration_structure"]) and bool(chain.accel.accelerationStructure),
        "ray_query": has(OPTIONAL_EXTENSIONS["ray_query"]) and bool(chain.rayq.rayQuery),
        "ray_tracing_pipeline": has(RAY_TRACING_PIPELINE_EXTENSION) and bool(chain.rtp.rayTracingPipeline),
        "deferred_host_operations": has(OPTIONAL_EXTENSIONS["deferred_host_operations"]),
        "memory_budget": has(OPTIONAL_EXTENSIONS["memory_budget"]),
        "sparse_binding": bool(chain.root.features.sparseBinding),
        "sparse_residency_image2d": bool(chain.root.features.sparseResidencyImage2D),
        "shader_resource_residency": bool(chain.root.features.shaderResourceResidency),
        "texture_compression_bc": bool(chain.root.features.textureCompressionBC),
        "texture_compression_etc2": bool(chain.root.features.textureCompressionETC2),
        "texture_compression_astc_ldr": bool(chain.root.features.textureCompressionASTC_LDR),
        "shader_int64": bool(chain.root.features.shaderInt64),
    }
    lim = props.limits
    limits = {
        "buffer_image_granularity": int(lim.bufferImageGranularity),
        "non_coherent_atom_size": int(lim.nonCoherentAtomSize),
        "min_storage_buffer_offset_alignment": int(lim.minStorageBufferOffsetAlignment),
        "min_uniform_buffer_offset_alignment": int(lim.minUniformBufferOffsetAlignment),
        "optimal_buffer_copy_offset_alignment": int(lim.optimalBufferCopyOffsetAlignment),
        "max_memory_allocation_count": int(lim.maxMemoryAllocationCount),
        "max_storage_buffer_range": int(lim.maxStorageBufferRange),
        "max_image_dimension_2d": int(lim.maxImageDimension2D),
        "max_image_dimension_3d": int(lim.maxImageDimension3D),
        "max_image_array_layers": int(lim.maxImageArrayLayers),
        "max_compute_work_group_invocations": int(lim.maxComputeWorkGroupInvocations),
    }
    driver_name = to_str(driver_props.driverName)
    driver_info = to_str(driver_props.driverInfo)
    return DeviceInfo(
        index=index,
        name=to_str(props.deviceName),
        device_type=DEVICE_TYPES.get(int(props.deviceType), "other"),
        api_version=version_str(int(props.apiVersion)),
        driver=f"{driver_name} {driver_info}".strip(),
        vendor_id=int(props.vendorID),
        device_id=int(props.deviceID),
        heaps=heaps,
        memory_types=types,
        queue_families=families,
        features=features,
        extensions=extensions,
        limits=limits,
    )


def format_properties(pd: Any, vk_format: int) -> tuple[int, int, int]:
    """Return (linear tiling, optimal tiling, buffer) ``VkFormatFeatureFlags`` for a format."""
    props = ffi.new("VkFormatProperties*")
    lib.vkGetPhysicalDeviceFormatProperties(pd, vk_format, props)
    return int(props.linearTilingFeatures), int(props.optimalTilingFeatures), int(props.bufferFeatures)
