"""The exception tree of vixen-assets: every error the library raises derives from :class:`VixenError`.

Subclasses carry what a user needs to act (``path``, ``prim_path``, ``field``, ``plugin``) and their messages name
them. Where a builtin fits, the error inherits it too (``BudgetExceededError`` is also a ``MemoryError``).
"""

from __future__ import annotations


class VixenError(Exception):
    """Base class of every error raised by vixen-assets."""


class VulkanError(VixenError):
    """A Vulkan call returned an error ``VkResult``; ``result`` holds its name (e.g. ``VK_ERROR_OUT_OF_DEVICE_MEMORY``)."""

    def __init__(self, result: str, call: str = "", detail: str = "") -> None:
        self.result = result
        self.call = call
        msg = f"{call} failed: {result}" if call else result
        if detail:
            msg = f"{msg} ({detail})"
        super().__init__(msg)


class DeviceLostError(VulkanError):
    """The device was lost (``VK_ERROR_DEVICE_LOST``); the ``Device`` must be closed and reopened."""


class OutOfDeviceMemoryError(VulkanError, MemoryError):
    """The driver refused an allocation (``VK_ERROR_OUT_OF_DEVICE_MEMORY`` / ``VK_ERROR_OUT_OF_HOST_MEMORY``)."""


class DeviceNotFoundError(VixenError, LookupError):
    """No Vulkan device matches the requested index or name (``VIXEN_DEVICE``), or no driver is installed."""


class DeviceClosedError(VixenError):
    """A resource or device was used after ``Device.close()`` or ``destroy()``."""


class BudgetExceededError(VixenError, MemoryError):
    """An allocation would take the device over its budget; raised before any Vulkan call is made."""

    def __init__(self, requested: int, used: int, limit: int, who: str = "", heap: int | None = None) -> None:
        self.requested = requested
        self.used = used
        self.limit = limit
        self.who = who
        self.heap = heap
        where = f" on heap {heap}" if heap is not None else ""
        asker = f" for {who!r}" if who else ""
        super().__init__(
            f"budget exceeded{where}: requested {requested} bytes{asker}, {used} bytes used of a "
            f"{limit}-byte limit ({limit - used} bytes free)"
        )


class StagingTimeoutError(VixenError, TimeoutError):
    """Staging memory stayed exhausted for longer than the configured wait; nothing was returned in time."""


class FormatError(VixenError, ValueError):
    """An input file or prim is malformed; the message names the file, the prim path and the field where known."""

    def __init__(
        self, message: str, *, path: str | None = None, prim_path: str | None = None, field: str | None = None
    ) -> None:
        self.path = path
        self.prim_path = prim_path
        self.field = field
        self.reason = message
        parts = [str(p) for p in (path, prim_path) if p]
        where = ":".join(parts)
        if field:
            where = f"{where} field {field!r}" if where else f"field {field!r}"
        super().__init__(f"{where}: {message}" if where else message)


class UnsupportedFormatError(FormatError):
    """The input is well formed but uses a format or scheme this installation cannot handle."""


class PluginError(VixenError):
    """A plugin failed to load or a hook implementation raised; names the plugin and the hook."""

    def __init__(self, message: str, *, plugin: str = "", hook: str = "") -> None:
        self.plugin = plugin
        self.hook = hook
        where = " ".join(p for p in (f"plugin {plugin!r}" if plugin else "", f"hook {hook}" if hook else "") if p)
        super().__init__(f"{where}: {message}" if where else message)


class ValidationMessageError(VixenError):
    """The Vulkan validation layer reported a warning or error (raised by the test harness)."""


class ConfigError(VixenError, ValueError):
    """An argument or option is out of range or of the wrong kind (a negative budget, an unknown usage name).

    ``option`` names the argument; the message says what was given and what is accepted.
    """

    def __init__(self, message: str, *, option: str = "") -> None:
        self.option = option
        super().__init__(f"{option}: {message}" if option else message)


class UnsupportedFeatureError(VixenError):
    """The device lacks a capability the call needs (e.g. ray queries, sparse residency); ``feature`` names it."""

    def __init__(self, message: str, *, feature: str = "") -> None:
        self.feature = feature
        super().__init__(message)


class OutOfRangeError(ConfigError, IndexError):
    """An index argument (a level, layer or face of a texture) is outside what the object has."""


class NotHeldError(VixenError, KeyError):
    """A cache reference was released that is not held (``release()`` called more often than the entry was handed
    out, or ``TypedCacher.release`` on a key without references)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class VixenWarning(UserWarning):
    """Base class of every warning vixen-assets emits (deprecated names, skipped prims, lossy compression)."""


class CompressionQualityWarning(VixenWarning):
    """A texture compressed at load (an explicit ``compress="bc1"``, ...) misses the PSNR bar (``min_psnr``), or a
    requested format was replaced (normal maps never go to BC1)."""


class VixenDeprecationWarning(VixenWarning, DeprecationWarning):
    """A public name was renamed; the old spelling still works for now and says what to use instead."""
