"""The seam under ``Device``: ``GpuContext`` (``vixen_assets.memory.context``), the deprecated internals, the typed
``Device.stash`` (``vixen_assets.stash``) and the ``Device.stats()`` hub (``vixen_assets.memory.stats``)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from vixen_assets.errors import DeviceClosedError, VixenDeprecationWarning, VixenError
from vixen_assets.memory.context import GpuContext
from vixen_assets.memory.group import AllocationGroup
from vixen_assets.memory.images import Image
from vixen_assets.memory.stats import StatsSource
from vixen_assets.stash import DeviceStash
from vixen_assets.testing import finish_test_device, open_test_device

KiB = 1 << 10


def test_memory_objects_are_built_on_the_context(device: Any) -> None:
    ctx = device.context
    assert isinstance(ctx, GpuContext) and ctx.info is device.info and ctx.budget is device.budget
    img = Image(ctx, name="ctx-img", vk_format=37, width=4, height=4)
    with AllocationGroup(ctx) as g:
        buf = g.create_buffer(KiB, "storage", name="ctx-buf")
    try:
        assert img.ctx is ctx and img in device.live_resources() and buf in device.live_resources()
        assert not hasattr(img, "device")  # the memory layer holds no Device
    finally:
        img.destroy()
        buf.destroy()


def test_pending_flush_callbacks_run_before_retire(device: Any) -> None:
    seen: list[object] = []
    device.context.add_pending_flush(seen.append)
    try:
        buf = device.create_buffer(KiB, "storage", name="cb")
        img = device.create_image(4, 4, vk_format=37, name="cb-img")
        buf.destroy()
        img.destroy()
        assert seen == [buf, img]
    finally:
        device.context.remove_pending_flush(seen.append)


def test_old_internals_are_deprecated_properties(device: Any) -> None:
    for name, want in [("allocator", device.context.allocator), ("buffers", device.context.buffers),
                       ("suballocator", device.context.suballocator), ("lifetime", device.context.lifetime),
                       ("registry", device.context.registry), ("tracker", device.context.tracker),
                       ("logical", device.context.logical), ("command_pool", device.context.command_pool),
                       ("physical", device.context.physical)]:
        with pytest.warns(VixenDeprecationWarning, match=f"Device.{name} is deprecated"):
            assert getattr(device, name) is want
    with pytest.raises(AttributeError):
        device.budget = None  # read-only now
    with pytest.warns(VixenDeprecationWarning):
        AllocationGroup(device).rollback()  # the old spelling still works
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the supported surface warns about nothing
        assert device.budget and device.uploader and device.info and device.features is not None
        assert device.validation is True and device.cachers == device.cachers
        device.stats()


class _Thing:
    made = 0

    def __init__(self) -> None:
        _Thing.made += 1
        self.destroyed = False

    def destroy(self) -> None:
        self.destroyed = True


def test_stash_holds_one_object_per_type_until_close() -> None:
    dev = open_test_device()
    try:
        _Thing.made = 0
        assert dev.stashed(_Thing) is None  # looking makes nothing
        a = dev.stash(_Thing, _Thing)
        assert dev.stash(_Thing, _Thing) is a and _Thing.made == 1 and dev.stashed(_Thing) is a
        with pytest.raises(VixenError, match="returned a"):
            dev.stash(dict, list)  # type: ignore[arg-type]
    finally:
        finish_test_device(dev)
    assert a.destroyed
    with pytest.raises(DeviceClosedError):
        dev.stash(_Thing, _Thing)
    s = DeviceStash()
    assert s.peek(_Thing) is None and _Thing not in s


def test_stats_hub_snapshots_and_resets_every_source(device: Any) -> None:
    buf = device.create_buffer(4 * KiB, "storage", name="stats")
    try:
        device.uploader.enqueue(buf, np.ones(4 * KiB, np.uint8))
        device.flush().wait()
        stats = device.stats()
        assert set(stats) == {"budget", "allocator", "uploader", "registry", "tracker", "lifetime"}
        assert stats["budget"]["used"] == device.budget.used and stats["budget"] == device.budget.stats() | {
            k: stats["budget"][k] for k in ("uploader", "allocator", "live_objects")}
        assert stats["uploader"]["enqueues"] >= 1
        assert stats["registry"]["Buffer"]["count"] >= 1
        assert stats["tracker"]["total"]["suballocations"] >= 1
        for src in (device.budget, device.uploader, device.context.suballocator, device.context.registry,
                    device.context.tracker):
            assert isinstance(src, StatsSource)
        device.reset_stats()
        after = device.stats()
        assert after["uploader"]["enqueues"] == 0 and after["tracker"]["total"]["suballocations"] == 0
        assert after["budget"]["used"] == device.budget.used  # live numbers stay
    finally:
        buf.destroy()
