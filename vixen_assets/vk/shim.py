"""Every quirk of the ``vulkan`` cffi binding (realitix, 1.3.275) and its workaround, in one place.

Seen on the project's machines (``../shared/notes/vulkan.md``):

- Several ``_KHR`` / 1.2 constants are missing or ``None`` (``VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT`` is
  ``0x20000``; ``VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT`` is ``0x2``): they are defined here by value.
- Some ``VK_KHR_ray_tracing_pipeline`` constants have wrong values (computed from extension 348 where the registry
  places them under extension 151): ``VK_STRUCTURE_TYPE_RAY_TRACING_PIPELINE_CREATE_INFO_KHR`` is 1000150015, not
  1000347015; ``..._SHADER_GROUP_CREATE_INFO_KHR`` 1000150016, not 1000347016;
  ``VK_PIPELINE_BIND_POINT_RAY_TRACING_KHR`` 1000165000, not 1000347000 (the validation layer rejects the binding's
  values): defined here by value.
- Wrappers of value-returning calls that take an input struct (``vkGetBufferDeviceAddress`` and every
  ``vkGet...DeviceAddress...``) return their input struct: the raw ``lib`` function is called instead.
- Extension functions come from ``vkGetDeviceProcAddr``; the binding's own wrapper refuses names it does not know,
  so :func:`device_proc` casts the raw pointer to its ``PFN_`` type.
- Structs passed to a call must stay referenced until it returns (cffi frees temporaries): callers keep them in
  local variables; :func:`keep` helps build ``pNext`` chains that stay alive.
- The binding's debug-messenger trampoline is one module-global function; :class:`DebugCallback` installs its own
  ``ffi.callback`` and dispatches on ``pUserData`` so that several instances can coexist.
- ``vkMapMemory``'s wrapper builds an ``ffi.buffer`` of the requested size (``VK_WHOLE_SIZE`` breaks it): callers
  map explicit sizes through :func:`map_memory`.
- Error results raise binding-specific exceptions; :func:`check` and :func:`translate_errors` turn them into
  :class:`~vixen_assets.errors.VulkanError` (and its subclasses) in one place.

Everything else in ``vixen_assets.vk`` uses ``ffi`` / ``lib`` from here and never re-implements a workaround.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import vulkan as _vk

from ..errors import DeviceLostError, OutOfDeviceMemoryError, VulkanError
from .enums import QUEUE_FAMILY_IGNORED, WHOLE_SIZE, BufferUsage, MemoryAllocate

__all__ = ["QUEUE_FAMILY_IGNORED", "WHOLE_SIZE"]  # re-exported: earlier modules import them from here

ffi = _vk.ffi
lib = _vk.lib
vk = _vk  # the binding module itself, for constants and struct helpers

NULL = ffi.NULL

# --- constants the binding lacks (values from the Vulkan registry; named in vk/enums.py) --------------------------
BUFFER_USAGE_SHADER_DEVICE_ADDRESS = BufferUsage.SHADER_DEVICE_ADDRESS
BUFFER_USAGE_AS_BUILD_INPUT_READ_ONLY = BufferUsage.ACCELERATION_STRUCTURE_BUILD_INPUT_READ_ONLY
BUFFER_USAGE_AS_STORAGE = BufferUsage.ACCELERATION_STRUCTURE_STORAGE
MEMORY_ALLOCATE_DEVICE_ADDRESS = MemoryAllocate.DEVICE_ADDRESS
PIPELINE_STAGE_2_ALL_TRANSFER = 0x00001000
PIPELINE_STAGE_2_ALL_COMMANDS = 0x00010000
PIPELINE_STAGE_2_NONE = 0
ACCESS_2_TRANSFER_WRITE = 0x00001000
ACCESS_2_TRANSFER_READ = 0x00000800
ACCESS_2_MEMORY_READ = 0x00008000
ACCESS_2_MEMORY_WRITE = 0x00010000
ACCESS_2_HOST_READ = 0x00002000
STRUCTURE_TYPE_RAY_TRACING_PIPELINE_CREATE_INFO = 1000150015
STRUCTURE_TYPE_RAY_TRACING_SHADER_GROUP_CREATE_INFO = 1000150016
PIPELINE_BIND_POINT_RAY_TRACING = 1000165000

_RESULT_NAMES: dict[int, str] = {}
for _name in dir(_vk):
    if (_name.startswith("VK_ERROR_") or _name in ("VK_SUCCESS", "VK_NOT_READY", "VK_TIMEOUT", "VK_INCOMPLETE")) and (
        isinstance(getattr(_vk, _name), int)
    ):
        _RESULT_NAMES.setdefault(getattr(_vk, _name), _name)
_EXC_NAMES: dict[type, str] = {cls: _RESULT_NAMES.get(code, cls.__name__) for code, cls in _vk.exception_codes.items()}


def result_name(code: int) -> str:
    """Return the ``VkResult`` name for a result code (``VK_ERROR_DEVICE_LOST`` for -4)."""
    return _RESULT_NAMES.get(int(code), f"VkResult({int(code)})")


def error_for(result: str, call: str, detail: str = "") -> VulkanError:
    """Build the right :class:`VulkanError` subclass for a ``VkResult`` name."""
    if result == "VK_ERROR_DEVICE_LOST":
        return DeviceLostError(result, call, detail)
    if result in ("VK_ERROR_OUT_OF_DEVICE_MEMORY", "VK_ERROR_OUT_OF_HOST_MEMORY"):
        return OutOfDeviceMemoryError(result, call, detail)
    return VulkanError(result, call, detail)


def check(result: int, call: str) -> int:
    """Raise :class:`VulkanError` for a negative ``VkResult``; return the code otherwise."""
    if result < 0:
        raise error_for(result_name(result), call)
    return result


@contextlib.contextmanager
def translate_errors(call: str) -> Iterator[None]:
    """Turn the binding's exceptions raised inside the block into :class:`VulkanError`."""
    try:
        yield
    except (_vk.VkError, _vk.VkException) as exc:
        raise error_for(_EXC_NAMES.get(type(exc), type(exc).__name__), call) from exc


def keep(*objs: Any) -> list[Any]:
    """Return a list that holds cffi objects alive for as long as the caller keeps the list."""
    return list(objs)


def device_proc(vk_device: Any, name: str) -> Any:
    """Return the raw extension function ``name`` of ``vk_device`` cast to its ``PFN_`` type, or ``None``."""
    ptr = lib.vkGetDeviceProcAddr(vk_device, name.encode())
    if ptr == NULL:
        return None
    return ffi.cast("PFN_" + name, ptr)


def instance_proc(instance: Any, name: str) -> Any:
    """Return the raw instance-level function ``name`` cast to its ``PFN_`` type, or ``None``."""
    ptr = lib.vkGetInstanceProcAddr(instance, name.encode())
    if ptr == NULL:
        return None
    return ffi.cast("PFN_" + name, ptr)


def buffer_device_address(vk_device: Any, buffer: Any) -> int:
    """Return the GPU address of ``buffer`` (the wrapper of ``vkGetBufferDeviceAddress`` returns its input)."""
    info = ffi.new(
        "VkBufferDeviceAddressInfo*", {"sType": _vk.VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO, "buffer": buffer}
    )
    return int(lib.vkGetBufferDeviceAddress(vk_device, info))


def map_memory(vk_device: Any, memory: Any, offset: int, size: int) -> tuple[int, Any]:
    """Map ``size`` bytes of ``memory``; return the host address and a writable cffi buffer over them."""
    pp = ffi.new("void**")
    check(lib.vkMapMemory(vk_device, memory, offset, size, 0, pp), "vkMapMemory")
    return int(ffi.cast("uintptr_t", pp[0])), ffi.buffer(pp[0], size)


def cstrings(names: list[str]) -> tuple[Any, list[Any]]:
    """Return a ``const char* const*`` array for ``names`` and the list keeping its strings alive."""
    owned = [ffi.new("char[]", n.encode()) for n in names]
    arr = ffi.new("const char*[]", owned) if owned else NULL
    return arr, owned


def to_str(cchar: Any) -> str:
    """Decode a fixed-size ``char[]`` field of a Vulkan struct (the binding sometimes hands back ``str`` already)."""
    if isinstance(cchar, str):
        return cchar
    return str(ffi.string(cchar).decode(errors="replace"))


def version_str(v: int) -> str:
    """Format a packed Vulkan API version as ``major.minor.patch``."""
    return f"{(v >> 22) & 0x7F}.{(v >> 12) & 0x3FF}.{v & 0xFFF}"


DebugHandler = Callable[[int, int, str, str], None]


class DebugCallback:
    """One ``PFN_vkDebugUtilsMessengerCallbackEXT`` for the process, dispatching to per-instance handlers."""

    _handlers: dict[int, DebugHandler] = {}
    _next = 1

    @staticmethod
    @ffi.callback("PFN_vkDebugUtilsMessengerCallbackEXT")  # type: ignore[untyped-decorator]  # cffi is untyped
    def _trampoline(severity: int, types: int, data: Any, user: Any) -> int:
        key = int(ffi.cast("uintptr_t", user))
        handler = DebugCallback._handlers.get(key)
        if handler is not None and data != NULL:
            msg = ffi.string(data.pMessage).decode(errors="replace") if data.pMessage != NULL else ""
            ident = ffi.string(data.pMessageIdName).decode(errors="replace") if data.pMessageIdName != NULL else ""
            try:
                handler(int(severity), int(types), ident, msg)
            except Exception:  # a callback must never unwind into the driver
                pass
        return 0

    @classmethod
    def register(cls, handler: DebugHandler) -> int:
        """Register ``handler``; return the key to pass as ``pUserData``."""
        key = cls._next
        cls._next += 1
        cls._handlers[key] = handler
        return key

    @classmethod
    def unregister(cls, key: int) -> None:
        """Forget the handler registered under ``key``."""
        cls._handlers.pop(key, None)

    @classmethod
    def pointer(cls) -> Any:
        """Return the C function pointer to put in ``pfnUserCallback``."""
        return cls._trampoline
