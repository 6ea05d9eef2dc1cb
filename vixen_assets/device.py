"""``Device``: the friendly object that owns one Vulkan device and the memory and transfer systems on it.

:func:`open_device` picks a device (by index, or the ``VIXEN_DEVICE`` env var: an index or a name substring),
creates an instance (with validation when asked or when ``VIXEN_VALIDATION=1``) and a logical device, then builds the
budget manager, allocator and uploader on it. :func:`list_devices` describes every device without opening one.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .errors import DeviceClosedError, DeviceNotFoundError
from .vk import DeviceInfo, Instance, LogicalDevice, query_device_info
from .vk.commands import CommandPool


def _validation_default(validation: bool | None) -> bool:
    if validation is not None:
        return validation
    return os.environ.get("VIXEN_VALIDATION", "") not in ("", "0", "false", "no")


def list_devices() -> list[DeviceInfo]:
    """Describe every Vulkan device the loader finds (properties, heaps, queues, features)."""
    with Instance(validation=False) as inst:
        return [query_device_info(pd, i) for i, pd in enumerate(inst.physical_devices())]


def select_device(infos: list[DeviceInfo], index: int | str | None) -> int:
    """Resolve ``index`` (or ``VIXEN_DEVICE`` when ``None``) to a device index; raise ``DeviceNotFoundError``."""
    names = ", ".join(f"{i.index}: {i.name}" for i in infos) or "none"
    if not infos:
        raise DeviceNotFoundError("no Vulkan devices found (is mesa-vulkan-drivers installed? run `make setup`)")
    source = "index"
    if index is None:
        env = os.environ.get("VIXEN_DEVICE", "").strip()
        if not env:
            return 0
        index, source = env, "VIXEN_DEVICE"
    if isinstance(index, int) or (isinstance(index, str) and index.isdigit()):
        i = int(index)
        if 0 <= i < len(infos):
            return i
        raise DeviceNotFoundError(f"{source}={index!r}: no device with that index (devices: {names})")
    needle = str(index).lower()
    for info in infos:
        if needle in info.name.lower():
            return info.index
    raise DeviceNotFoundError(f"{source}={index!r}: no device name contains it (devices: {names})")


class Device:
    """One opened Vulkan device with its budget, allocator and uploader; close it (or use ``with``)."""

    def __init__(self, instance: Instance, physical: Any, info: DeviceInfo, *, separate_transfer_queue: bool | None,
                 budget_fraction: float, warning_fraction: float, staging_quota: int | None,
                 overflow: str = "error", staging_timeout_s: float = 30.0) -> None:
        """Build the device; use :func:`open_device` rather than calling this directly."""
        self.instance = instance
        self.info = info
        self.physical = physical
        self.logical = LogicalDevice(physical, info, separate_transfer_queue=separate_transfer_queue)
        self._closed = False
        self._lock = threading.RLock()
        self._close_callbacks: list[Any] = []
        self.command_pool = CommandPool(self.logical, self.logical.queue.family)
        self._setup_memory(budget_fraction=budget_fraction, warning_fraction=warning_fraction,
                           staging_quota=staging_quota, overflow=overflow, staging_timeout_s=staging_timeout_s)

    def _setup_memory(self, **kwargs: Any) -> None:
        """Hook for the memory and transfer systems (filled in by ``vixen_assets.memory`` / ``transfer``)."""

    # -- identity ------------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The device's name (``llvmpipe (LLVM 15.0.6, 256 bits)``, ``NVIDIA H100 80GB HBM3``)."""
        return self.info.name

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    @property
    def features(self) -> dict[str, bool]:
        """Capabilities enabled on this logical device."""
        return dict(self.logical.features)

    def check_open(self) -> None:
        """Raise :class:`DeviceClosedError` if the device was closed."""
        if self._closed:
            raise DeviceClosedError(f"device {self.name!r} is closed")

    def validation_problems(self) -> list[str]:
        """Validation WARNING/ERROR messages collected so far (empty without validation)."""
        return [str(m) for m in self.instance.problems()]

    def on_close(self, fn: Any) -> None:
        """Call ``fn()`` at :meth:`close`, before the Vulkan device is destroyed (last registered, first called)."""
        self._close_callbacks.append(fn)

    def wait_idle(self) -> None:
        """Wait until the GPU finished everything submitted."""
        self.check_open()
        self.logical.wait_idle()

    def close(self) -> None:
        """Wait for the GPU, free every resource (reporting leaks), destroy the device; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self.logical.handle is not None:
                    try:
                        self.logical.wait_idle()
                    except Exception:  # a lost device still has to be torn down
                        pass
                for fn in reversed(self._close_callbacks):
                    fn()
                self.command_pool.destroy()
            finally:
                self.logical.destroy()
                self.instance.destroy()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.info.device_type
        return f"<Device {self.info.index} {self.name!r} {state}>"


def open_device(index: int | str | None = None, *, validation: bool | None = None, budget_fraction: float = 0.9,
                warning_fraction: float = 0.8, staging_quota: int | None = None,
                separate_transfer_queue: bool | None = None, overflow: str = "error",
                staging_timeout_s: float = 30.0) -> Device:
    """Open a Vulkan device (``index``, else ``VIXEN_DEVICE``, else the first) with its budget and uploader.

    :param index: device index or a substring of its name.
    :param validation: enable ``VK_LAYER_KHRONOS_validation``; ``None`` follows ``VIXEN_VALIDATION=1``.
    :param budget_fraction: hard limit as a fraction of each device-local heap.
    :param warning_fraction: warning threshold as a fraction of each device-local heap.
    :param staging_quota: bytes of the budget usable for staging (default min(256 MiB, 10% of the limit)).
    :param separate_transfer_queue: ``None`` uses a transfer-only family when present; ``True`` forces that path.
    :param overflow: ``"error"`` (default) or ``"host"`` to place allocations in host memory once over budget.
    :param staging_timeout_s: how long a staging request waits for memory before ``StagingTimeoutError``.
    """
    instance = Instance(validation=_validation_default(validation))
    try:
        physicals = instance.physical_devices()
        infos = [query_device_info(pd, i) for i, pd in enumerate(physicals)]
        chosen = select_device(infos, index)
        return Device(instance, physicals[chosen], infos[chosen], separate_transfer_queue=separate_transfer_queue,
                      budget_fraction=budget_fraction, warning_fraction=warning_fraction, staging_quota=staging_quota,
                      overflow=overflow, staging_timeout_s=staging_timeout_s)
    except BaseException:
        instance.destroy()
        raise
