"""``VkInstance`` with optional Khronos validation and a debug-utils messenger that collects its messages."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from ..errors import DeviceNotFoundError, VulkanError
from .pinning import LibraryWatch
from .shim import NULL, DebugCallback, check, cstrings, ffi, lib, to_str, translate_errors, vk

log = logging.getLogger("vixen_assets.vk")

VALIDATION_LAYER = "VK_LAYER_KHRONOS_validation"
DEBUG_UTILS = "VK_EXT_debug_utils"

SEVERITY_VERBOSE = 0x1
SEVERITY_INFO = 0x10
SEVERITY_WARNING = 0x100
SEVERITY_ERROR = 0x1000
_SEVERITY_NAMES = {SEVERITY_VERBOSE: "VERBOSE", SEVERITY_INFO: "INFO", SEVERITY_WARNING: "WARNING", SEVERITY_ERROR: "ERROR"}


@dataclass(frozen=True)
class DebugMessage:
    """One message from the validation layer or the driver."""

    severity: int
    types: int
    message_id: str
    text: str

    @property
    def severity_name(self) -> str:
        """``VERBOSE``, ``INFO``, ``WARNING`` or ``ERROR``."""
        return _SEVERITY_NAMES.get(self.severity, str(self.severity))

    @property
    def is_problem(self) -> bool:
        """True for WARNING and ERROR messages (the ones that fail a test)."""
        return self.severity >= SEVERITY_WARNING

    def __str__(self) -> str:
        return f"[{self.severity_name}] {self.message_id}: {self.text}"


def _ensure_runtime_dir() -> None:
    """Give the loader a writable ``XDG_RUNTIME_DIR`` (it warns on stderr without one)."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        path = f"/tmp/vixen-xdg-{os.getuid()}"
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = path


def available_layers() -> set[str]:
    """Return the names of the instance layers the loader can find."""
    with translate_errors("vkEnumerateInstanceLayerProperties"):
        return {to_str(p.layerName) for p in vk.vkEnumerateInstanceLayerProperties()}


def available_instance_extensions() -> set[str]:
    """Return the names of the instance extensions the loader offers."""
    with translate_errors("vkEnumerateInstanceExtensionProperties"):
        return {to_str(p.extensionName) for p in vk.vkEnumerateInstanceExtensionProperties(None)}


class Instance:
    """A ``VkInstance``; with ``validation=True`` it enables the Khronos layer and collects its messages."""

    def __init__(self, *, validation: bool = False, app_name: str = "vixen-assets") -> None:
        """Create the instance; raise :class:`DeviceNotFoundError` when no Vulkan loader or driver exists."""
        _ensure_runtime_dir()
        self.validation = validation
        self.messages: list[DebugMessage] = []
        self._lock = threading.Lock()
        self._listeners: list[Any] = []
        self._messenger = None
        self._debug_key = 0
        self.handle: Any = None
        watch = LibraryWatch()  # the loader maps the drivers from the first query on
        try:
            layers = available_layers()
            exts = available_instance_extensions()
        except OSError as exc:  # pragma: no cover - loader missing
            raise DeviceNotFoundError(f"no Vulkan loader: {exc}") from exc
        want_layers: list[str] = []
        want_exts: list[str] = []
        if validation:
            if VALIDATION_LAYER not in layers:
                raise DeviceNotFoundError(
                    f"validation requested but {VALIDATION_LAYER} is not installed (apt-get install vulkan-validationlayers)"
                )
            want_layers.append(VALIDATION_LAYER)
        use_debug = DEBUG_UTILS in exts and (validation or os.environ.get("VIXEN_DEBUG_UTILS") == "1")
        if use_debug:
            want_exts.append(DEBUG_UTILS)
        if "VK_KHR_get_physical_device_properties2" in exts:
            want_exts.append("VK_KHR_get_physical_device_properties2")
        self.extensions = set(want_exts)
        app_name_c = ffi.new("char[]", app_name.encode())
        app = ffi.new(
            "VkApplicationInfo*",
            {
                "sType": vk.VK_STRUCTURE_TYPE_APPLICATION_INFO,
                "pApplicationName": app_name_c,
                "applicationVersion": 1,
                "pEngineName": app_name_c,
                "engineVersion": 1,
                "apiVersion": vk.VK_MAKE_VERSION(1, 3, 0),
            },
        )
        layer_arr, _l = cstrings(want_layers)
        ext_arr, _e = cstrings(want_exts)
        info = ffi.new(
            "VkInstanceCreateInfo*",
            {
                "sType": vk.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                "pApplicationInfo": app,
                "enabledLayerCount": len(want_layers),
                "ppEnabledLayerNames": layer_arr,
                "enabledExtensionCount": len(want_exts),
                "ppEnabledExtensionNames": ext_arr,
            },
        )
        messenger_info = None
        if use_debug:
            self._debug_key = DebugCallback.register(self._on_message)
            messenger_info = ffi.new(
                "VkDebugUtilsMessengerCreateInfoEXT*",
                {
                    "sType": vk.VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
                    "messageSeverity": SEVERITY_VERBOSE | SEVERITY_INFO | SEVERITY_WARNING | SEVERITY_ERROR,
                    "messageType": 0x1 | 0x2 | 0x4,
                    "pfnUserCallback": DebugCallback.pointer(),
                    "pUserData": ffi.cast("void*", self._debug_key),
                },
            )
            info.pNext = messenger_info  # also catches messages from vkCreateInstance / vkDestroyInstance
        p_instance = ffi.new("VkInstance*")
        result = lib.vkCreateInstance(info, NULL, p_instance)
        watch.pin_new()  # the drivers and layers stay mapped after the last instance (see vk/pinning.py)
        if result == vk.VK_ERROR_INCOMPATIBLE_DRIVER:
            DebugCallback.unregister(self._debug_key)
            raise DeviceNotFoundError("no Vulkan driver found (VK_ERROR_INCOMPATIBLE_DRIVER); install mesa-vulkan-drivers")
        try:
            check(result, "vkCreateInstance")
        except VulkanError:
            DebugCallback.unregister(self._debug_key)
            raise
        self.handle = p_instance[0]
        if messenger_info is not None:
            create = ffi.cast(
                "PFN_vkCreateDebugUtilsMessengerEXT",
                lib.vkGetInstanceProcAddr(self.handle, b"vkCreateDebugUtilsMessengerEXT"),
            )
            p_messenger = ffi.new("VkDebugUtilsMessengerEXT*")
            check(create(self.handle, messenger_info, NULL, p_messenger), "vkCreateDebugUtilsMessengerEXT")
            self._messenger = p_messenger[0]

    # -- messages ------------------------------------------------------------------------------------------------
    def _on_message(self, severity: int, types: int, ident: str, text: str) -> None:
        msg = DebugMessage(severity, types, ident, text)
        if msg.is_problem:
            log.warning("%s", msg)
            with self._lock:
                self.messages.append(msg)
                listeners = list(self._listeners)
            for fn in listeners:
                fn(msg)
        else:
            log.debug("%s", msg)

    def add_listener(self, fn: Any) -> None:
        """Call ``fn(DebugMessage)`` for every WARNING or ERROR message from now on."""
        with self._lock:
            self._listeners.append(fn)

    def problems(self) -> list[DebugMessage]:
        """Return the WARNING and ERROR messages collected so far."""
        with self._lock:
            return list(self.messages)

    def clear_messages(self) -> None:
        """Forget collected messages."""
        with self._lock:
            self.messages.clear()

    # -- devices -------------------------------------------------------------------------------------------------
    def physical_devices(self) -> list[Any]:
        """Return the ``VkPhysicalDevice`` handles in the loader's order."""
        count = ffi.new("uint32_t*")
        check(lib.vkEnumeratePhysicalDevices(self.handle, count, NULL), "vkEnumeratePhysicalDevices")
        arr = ffi.new("VkPhysicalDevice[]", count[0])
        check(lib.vkEnumeratePhysicalDevices(self.handle, count, arr), "vkEnumeratePhysicalDevices")
        return [arr[i] for i in range(count[0])]

    def destroy(self) -> None:
        """Destroy the messenger and the instance; safe to call twice."""
        if self.handle is None:
            return
        if self._messenger is not None:
            destroy = ffi.cast(
                "PFN_vkDestroyDebugUtilsMessengerEXT",
                lib.vkGetInstanceProcAddr(self.handle, b"vkDestroyDebugUtilsMessengerEXT"),
            )
            destroy(self.handle, self._messenger, NULL)
            self._messenger = None
        lib.vkDestroyInstance(self.handle, NULL)
        self.handle = None
        DebugCallback.unregister(self._debug_key)

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()
