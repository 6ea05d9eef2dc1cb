"""Device enumeration, feature detection, queue selection, open/close, VIXEN_DEVICE selection."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import vixen_assets as va
from vixen_assets.errors import DeviceClosedError, DeviceNotFoundError, VixenError
from vixen_assets.vk.shim import vk


def test_list_devices_reports_llvmpipe_heaps_queues_features() -> None:
    infos = va.list_devices()
    assert infos, "no Vulkan device"
    names = [i.name for i in infos]
    info = infos[0]
    assert info.index == 0
    assert info.api_version.count(".") == 2
    assert info.heaps and all(h.size > 0 for h in info.heaps)
    assert any(h.device_local for h in info.heaps)
    assert info.memory_types and all(0 <= t.heap < len(info.heaps) for t in info.memory_types)
    assert any("transfer" in q.capabilities for q in info.queue_families)
    for key in ("buffer_device_address", "timeline_semaphore", "synchronization2", "acceleration_structure",
                "ray_query", "deferred_host_operations", "memory_budget"):
        assert isinstance(info.features[key], bool)
    if any("llvmpipe" in n for n in names):
        lvp = next(i for i in infos if "llvmpipe" in i.name)
        assert lvp.unified_memory
        assert lvp.features["acceleration_structure"] and lvp.features["ray_query"], "Mesa >= 25 expected"
        assert lvp.transfer_family is None


def test_open_close_twice_and_use_after_close(tmp_path) -> None:
    """Open, use, close, close again (a no-op), then every use of the device or its objects raises
    ``DeviceClosedError`` (a ``VixenError``), never a crash or a Vulkan call on destroyed handles."""
    import numpy as np
    from PIL import Image as PILImage

    from vixen_assets.testing import assert_no_validation_problems

    (tmp_path / "tri.usda").write_text('#usda 1.0\ndef Mesh "T" {\n int[] faceVertexCounts = [3]\n'
                                       ' int[] faceVertexIndices = [0, 1, 2]\n'
                                       ' point3f[] points = [(0,0,0), (1,0,0), (0,1,0)]\n}\n')
    PILImage.new("RGBA", (4, 4)).save(tmp_path / "t.png")
    for round_ in range(2):  # a second device opens fine after the first closed
        dev = va.open_device(validation=True)
        assert not dev.closed and dev.info.name
        buf = dev.create_buffer(64, "storage", name="kept")
        dev.upload(buf, np.arange(64, dtype=np.uint8))
        assert dev.read_buffer(buf).tolist() == list(range(64))
        scene = va.load_stage(tmp_path / "tri.usda", dev)
        tex = va.load_texture(tmp_path / "t.png", dev)
        buf.destroy()
        scene.release()
        tex.release()
        dev.close()
        assert dev.closed
        dev.close()  # twice: a no-op
        assert dev.closed and dev.close_report() == []
        assert_no_validation_problems(dev)
        uses = [
            lambda: dev.check_open(),
            lambda: dev.create_buffer(64, "storage"),
            lambda: dev.create_image(4, 4, vk_format=37),
            lambda: dev.upload(buf, b"1234"),
            lambda: dev.read_buffer(buf),
            lambda: dev.flush(),
            lambda: dev.allocation_group(),
            lambda: va.load_stage(tmp_path / "tri.usda", dev),
            lambda: va.load_texture(tmp_path / "t.png", dev),
            lambda: buf.handle,
            lambda: buf.mapped,
            lambda: scene.build_acceleration_structures(),
        ]
        for i, use in enumerate(uses):
            with pytest.raises(DeviceClosedError):
                use()
        buf.destroy()  # destroying after close stays safe
        scene.release()


@pytest.mark.parametrize("loader", ["texture", "stage", "upload"])
def test_device_lost_at_submit(tmp_path, loader) -> None:
    """``VK_ERROR_DEVICE_LOST`` at ``vkQueueSubmit`` (injected): the call raises ``DeviceLostError`` naming the call,
    no cache entry or budget charge is left behind, and the device closes without leaks or validation messages."""
    import numpy as np
    from PIL import Image as PILImage

    from vixen_assets.errors import DeviceLostError
    from vixen_assets.testing import finish_test_device
    from vixen_assets.vk import FaultInjector

    (tmp_path / "tri.usda").write_text('#usda 1.0\ndef Mesh "T" {\n int[] faceVertexCounts = [3]\n'
                                       ' int[] faceVertexIndices = [0, 1, 2]\n'
                                       ' point3f[] points = [(0,0,0), (1,0,0), (0,1,0)]\n}\n')
    PILImage.new("RGBA", (64, 64)).save(tmp_path / "t.png")
    dev = va.open_device(validation=True, budget=va.BudgetOptions(staging_quota=4 << 20))
    try:
        dev.uploader.direct_writes = False  # lavapipe maps everything: make the upload a real submission
        used = dev.budget.used
        faults = dev.context.logical.faults = FaultInjector(device_lost_at_submit=1)
        with pytest.raises(DeviceLostError) as info:
            if loader == "texture":
                va.load_texture(tmp_path / "t.png", dev)
            elif loader == "stage":
                va.load_stage(tmp_path / "tri.usda", dev)
            else:
                buf = dev.create_buffer(1 << 20, "storage", name="lost-upload")
                try:
                    dev.upload(buf, np.ones(1 << 20, np.uint8))
                finally:
                    buf.destroy()
        assert faults.injected >= 1 and "vkQueueSubmit" in str(info.value)
        assert isinstance(info.value, VixenError)
        assert all(len(c) == 0 for c in dev.cachers.values())
        dev.context.logical.faults = None
        dev.wait_idle()
        assert dev.budget.stats()["categories"].get("texture", {"bytes": 0})["bytes"] == 0
        assert dev.budget.stats()["categories"].get("mesh", {"bytes": 0})["bytes"] == 0
        assert dev.budget.used <= used + (4 << 20)  # at most the staging pool's buffers
    finally:
        finish_test_device(dev)


def test_open_device_context_manager_closes_on_exception() -> None:
    with pytest.raises(RuntimeError):
        with va.open_device(validation=True) as dev:
            raise RuntimeError("boom")
    assert dev.closed
    dev.close()  # second close is a no-op
    with pytest.raises(DeviceClosedError):
        dev.check_open()


def test_feature_flags_match_enabled_extensions(device) -> None:
    exts = device.context.logical.extensions
    assert device.features["acceleration_structure"] == ("VK_KHR_acceleration_structure" in exts)
    assert device.features["ray_query"] == ("VK_KHR_ray_query" in exts)
    assert device.features["memory_budget"] == ("VK_EXT_memory_budget" in exts)


def test_bad_vixen_device_is_clear(monkeypatch) -> None:
    monkeypatch.setenv("VIXEN_DEVICE", "no-such-gpu-xyz")
    with pytest.raises(DeviceNotFoundError, match="no-such-gpu-xyz"):
        va.open_device()
    monkeypatch.setenv("VIXEN_DEVICE", "99")
    with pytest.raises(DeviceNotFoundError, match="VIXEN_DEVICE='99'"):
        va.open_device()
    assert issubclass(DeviceNotFoundError, VixenError)


def test_vixen_device_picks_by_name_and_index(monkeypatch) -> None:
    first = va.list_devices()[0]
    monkeypatch.setenv("VIXEN_DEVICE", first.name.split()[0].upper())
    with va.open_device(validation=True) as dev:
        assert dev.info.name == first.name
    monkeypatch.setenv("VIXEN_DEVICE", "0")
    with va.open_device(validation=True) as dev:
        assert dev.info.index == 0


def test_forced_separate_transfer_queue() -> None:
    with va.open_device(validation=True, separate_transfer_queue=True) as dev:
        assert dev.context.logical.transfer_queue is not None
        assert dev.context.logical.upload_queue is dev.context.logical.transfer_queue
        assert not dev.validation_problems()
    with va.open_device(validation=True, separate_transfer_queue=False) as dev:
        assert dev.context.logical.transfer_queue is None
        assert dev.context.logical.upload_queue is dev.context.logical.queue


def test_validation_env_var(monkeypatch) -> None:
    monkeypatch.setenv("VIXEN_VALIDATION", "1")
    with va.open_device() as dev:
        assert dev.validation
    monkeypatch.setenv("VIXEN_VALIDATION", "0")
    with va.open_device() as dev:
        assert not dev.validation


def _invalid_copy(dev) -> None:
    """Record (never submit) a vkCmdCopyBuffer whose region runs past both buffers: a validation error."""
    from vixen_assets.vk import resources
    from vixen_assets.vk.commands import begin, end

    ld = dev.context.logical
    bufs, mems = [], []
    for _ in range(2):
        b = resources.create_buffer(ld, 256, vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT | vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT)
        size, _align, bits = resources.buffer_requirements(ld, b)
        type_index = (bits & -bits).bit_length() - 1
        m = resources.allocate_memory(ld, size, type_index)
        resources.bind_buffer(ld, b, m, 0)
        bufs.append(b)
        mems.append(m)
    cmd = dev.context.command_pool.allocate()
    begin(cmd)
    regions = resources.copy_regions(1)
    regions[0] = (0, 0, 4096)
    resources.cmd_copy_buffer(cmd, bufs[0], bufs[1], regions)
    end(cmd)
    dev.context.command_pool.free(cmd)
    for b, m in zip(bufs, mems):
        resources.destroy_buffer(ld, b)
        resources.free_memory(ld, m)


def test_fixture_catches_a_deliberately_invalid_call(pytester) -> None:
    pytester.makepyfile(
        test_inner=f"""
import sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
from test_device import _invalid_copy

def test_bad(vixen_device):
    _invalid_copy(vixen_device)

def test_good(vixen_device):
    assert vixen_device.info.name
"""
    )
    result = pytester.runpytest_subprocess("-q")
    out = result.stdout.str()
    assert "Vulkan validation reported" in out, out
    assert "vkCmdCopyBuffer" in out or "VUID-vkCmdCopyBuffer" in out, out
    result.assert_outcomes(passed=2, errors=1)


def test_cli_devices_json_and_table() -> None:
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "vixen_assets.cli.main", "devices", "--json"], capture_output=True,
                         text=True, env=env, check=True).stdout
    data = json.loads(out)
    assert data and data[0]["name"] and data[0]["heaps"] and "features" in data[0]
    table = subprocess.run([sys.executable, "-m", "vixen_assets.cli.main", "devices"], capture_output=True, text=True,
                           env=env, check=True).stdout
    assert data[0]["name"].split()[0] in table and "acceleration_structure" in table and "queue families" in table


def test_a_failure_inside_device_setup_leaves_no_vulkan_device(monkeypatch) -> None:
    """Fault injection in our own setup (not in Vulkan): the uploader fails to build after the VkDevice, the
    allocator and the command pool exist. ``open_device`` raises that error and everything built is destroyed."""
    import vixen_assets.device as device_module
    from vixen_assets.vk.logical import LogicalDevice

    destroyed: list[object] = []
    real_destroy = LogicalDevice.destroy

    def spy_destroy(self: LogicalDevice) -> None:
        destroyed.append(self.handle)
        real_destroy(self)

    class BrokenUploader:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise OSError("injected: uploader setup failed")

    monkeypatch.setattr(LogicalDevice, "destroy", spy_destroy)
    monkeypatch.setattr(device_module, "BatchedUploader", BrokenUploader)
    with pytest.raises(OSError, match="injected"):
        va.open_device(validation=True)
    assert destroyed and destroyed[0] is not None, "the VkDevice built before the failure was destroyed"
    monkeypatch.undo()
    with va.open_device(validation=True) as dev:  # the process can open a device again, cleanly
        buf = dev.create_and_upload("after", b"\x01\x02\x03\x04", "storage")
        assert bytes(dev.read_buffer(buf)) == b"\x01\x02\x03\x04"
        buf.destroy()
        assert dev.validation_problems() == []
