"""Logical ``VkDevice`` creation: enables what the hardware has of the features the library uses, picks queues."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ..errors import UnsupportedFeatureError
from .faults import FaultInjector
from .pinning import keep_new_libraries_loaded
from .physical import OPTIONAL_EXTENSIONS, RAY_TRACING_PIPELINE_EXTENSION, DeviceInfo, FeatureChain
from .shim import NULL, check, cstrings, device_proc, ffi, lib, vk


@dataclass
class Queue:
    """A ``VkQueue`` with its family index and the lock that serialises submissions to it."""

    handle: Any
    family: int
    index: int
    lock: threading.Lock
    name: str

    def submit(self, submit_infos: Any, count: int, fence: Any, faults: FaultInjector | None = None) -> None:
        """``vkQueueSubmit`` under the queue's lock."""
        if faults is not None:
            faults.before_submit()
        with self.lock:
            check(lib.vkQueueSubmit(self.handle, count, submit_infos, fence if fence is not None else NULL), "vkQueueSubmit")

    def wait_idle(self) -> None:
        """``vkQueueWaitIdle`` under the queue's lock."""
        with self.lock:
            check(lib.vkQueueWaitIdle(self.handle), "vkQueueWaitIdle")


def _pick_main_family(info: DeviceInfo) -> int:
    best = None
    for fam in info.queue_families:
        if fam.flags & 0x3 == 0x3:  # graphics + compute
            return fam.index
        if fam.flags & 0x2 and best is None:
            best = fam.index
    if best is None:
        raise UnsupportedFeatureError(f"{info.name}: no compute-capable queue family", feature="compute queue")
    return best


class LogicalDevice:
    """A ``VkDevice`` with its main queue, an optional dedicated transfer queue, and extension entry points."""

    def __init__(self, physical: Any, info: DeviceInfo, *, separate_transfer_queue: bool | None = None) -> None:
        """Create the device.

        :param physical: the ``VkPhysicalDevice``.
        :param info: its :class:`DeviceInfo`.
        :param separate_transfer_queue: ``None`` uses a transfer-only family when one exists; ``True`` forces the
            separate-queue upload path even without one (on the main family, for testing); ``False`` never uses it.
        """
        self.physical = physical
        self.info = info
        self.faults: FaultInjector | None = None
        exts = info.extensions
        want = [ext for ext in OPTIONAL_EXTENSIONS.values() if ext in exts]
        if not info.features.get("acceleration_structure") or "VK_KHR_deferred_host_operations" not in want:
            want = [e for e in want if e not in ("VK_KHR_acceleration_structure", "VK_KHR_ray_query")]
        else:
            if not info.features.get("ray_query"):
                want = [e for e in want if e != "VK_KHR_ray_query"]
            # ray-tracing pipelines are enabled wherever they exist (trace_rays' "pipeline" backend; the only way to
            # trace on NVIDIA's driver, which has no ray queries). Acceleration-structure commands are only valid
            # with rayQuery or rayTracingPipeline enabled (VUID-vkGetAccelerationStructureBuildSizesKHR-
            # rayTracingPipeline-03617, ...): with neither, acceleration structures are off
            if info.features.get("ray_tracing_pipeline"):
                want.append(RAY_TRACING_PIPELINE_EXTENSION)
            elif not info.features.get("ray_query"):
                want = [e for e in want if e != "VK_KHR_acceleration_structure"]
        self.extensions = frozenset(want)
        self.features = {k: bool(v) for k, v in info.features.items()}
        for feat, ext in OPTIONAL_EXTENSIONS.items():
            if ext not in self.extensions:
                self.features[feat] = False
        self.features["ray_tracing_pipeline"] = RAY_TRACING_PIPELINE_EXTENSION in self.extensions

        # Enable exactly the features the library uses, where the device has them.
        supported = FeatureChain(exts)
        supported.query(physical)
        enable = FeatureChain(self.extensions)
        f = info.features
        enable.v12.bufferDeviceAddress = supported.v12.bufferDeviceAddress
        enable.v12.timelineSemaphore = supported.v12.timelineSemaphore
        enable.v12.descriptorIndexing = supported.v12.descriptorIndexing
        enable.v12.scalarBlockLayout = supported.v12.scalarBlockLayout
        enable.v12.storageBuffer8BitAccess = supported.v12.storageBuffer8BitAccess
        enable.v12.hostQueryReset = supported.v12.hostQueryReset
        enable.v13.synchronization2 = supported.v13.synchronization2
        enable.v13.maintenance4 = supported.v13.maintenance4
        if "VK_KHR_acceleration_structure" in self.extensions:
            enable.accel.accelerationStructure = 1
        if "VK_KHR_ray_query" in self.extensions:
            enable.rayq.rayQuery = 1
        if RAY_TRACING_PIPELINE_EXTENSION in self.extensions:
            enable.rtp.rayTracingPipeline = 1
        core = supported.root.features
        for name in ("shaderInt64", "textureCompressionBC", "textureCompressionETC2", "textureCompressionASTC_LDR",
                     "sparseBinding", "sparseResidencyBuffer", "sparseResidencyImage2D", "shaderResourceResidency",
                     "samplerAnisotropy",
                     "shaderInt16", "fragmentStoresAndAtomics", "vertexPipelineStoresAndAtomics"):
            setattr(enable.root.features, name, getattr(core, name))
        self.enabled_chain = enable
        self.buffer_device_address = bool(f.get("buffer_device_address"))
        self.timeline_semaphores = bool(f.get("timeline_semaphore"))
        self.synchronization2 = bool(f.get("synchronization2"))

        main_family = _pick_main_family(info)
        transfer_family = info.transfer_family
        if separate_transfer_queue is False:
            transfer_family = None
        families: dict[int, int] = {main_family: 1}
        if transfer_family is not None:
            families[transfer_family] = 1
        elif separate_transfer_queue:
            fam = info.queue_families[main_family]
            families[main_family] = min(2, fam.count)
        priorities = ffi.new("float[]", [1.0, 1.0])
        qinfos = ffi.new("VkDeviceQueueCreateInfo[]", len(families))
        for i, (fam_index, count) in enumerate(families.items()):
            qinfos[i].sType = vk.VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO
            qinfos[i].queueFamilyIndex = fam_index
            qinfos[i].queueCount = count
            qinfos[i].pQueuePriorities = priorities
        ext_arr, _keep = cstrings(sorted(self.extensions))
        dinfo = ffi.new(
            "VkDeviceCreateInfo*",
            {
                "sType": vk.VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                "pNext": enable.root,
                "queueCreateInfoCount": len(families),
                "pQueueCreateInfos": qinfos,
                "enabledExtensionCount": len(self.extensions),
                "ppEnabledExtensionNames": ext_arr,
            },
        )
        p_dev = ffi.new("VkDevice*")
        with keep_new_libraries_loaded():  # what the driver loads for a device stays too (see vk/pinning.py)
            check(lib.vkCreateDevice(physical, dinfo, NULL, p_dev), "vkCreateDevice")
        self.handle = p_dev[0]
        self._procs: dict[str, Any] = {}

        main_lock = threading.Lock()
        self.queue = Queue(self._get_queue(main_family, 0), main_family, 0, main_lock, "main")
        if transfer_family is not None:
            self.transfer_queue: Queue | None = Queue(
                self._get_queue(transfer_family, 0), transfer_family, 0, threading.Lock(), "transfer"
            )
        elif separate_transfer_queue:
            if families[main_family] > 1:
                self.transfer_queue = Queue(self._get_queue(main_family, 1), main_family, 1, threading.Lock(), "transfer")
            else:  # one queue in the family: same VkQueue, same lock, separate submission path
                self.transfer_queue = Queue(self.queue.handle, main_family, 0, main_lock, "transfer")
        else:
            self.transfer_queue = None

    def _get_queue(self, family: int, index: int) -> Any:
        p = ffi.new("VkQueue*")
        lib.vkGetDeviceQueue(self.handle, family, index, p)
        return p[0]

    @property
    def upload_queue(self) -> Queue:
        """The queue uploads are submitted to: the dedicated transfer queue when there is one."""
        return self.transfer_queue or self.queue

    def fn(self, name: str) -> Any:
        """Return (and cache) the device-level extension function ``name``; raise if the device lacks it."""
        f = self._procs.get(name)
        if f is None:
            f = device_proc(self.handle, name)
            if f is None:
                raise UnsupportedFeatureError(f"{self.info.name}: {name} is not available (extension not enabled)",
                                              feature=name)
            self._procs[name] = f
        return f

    def wait_idle(self) -> None:
        """``vkDeviceWaitIdle`` (holding every queue lock, as the spec requires)."""
        locks = {id(self.queue.lock): self.queue.lock}
        if self.transfer_queue is not None:
            locks[id(self.transfer_queue.lock)] = self.transfer_queue.lock
        for lock in locks.values():
            lock.acquire()
        try:
            check(lib.vkDeviceWaitIdle(self.handle), "vkDeviceWaitIdle")
        finally:
            for lock in locks.values():
                lock.release()

    def destroy(self) -> None:
        """Destroy the ``VkDevice``; safe to call twice."""
        if self.handle is not None:
            lib.vkDestroyDevice(self.handle, NULL)
            self.handle = None
