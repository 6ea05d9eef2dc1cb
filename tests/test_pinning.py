"""Drivers stay loaded for the life of the process (``vixen_assets.vk.pinning``): the static-TLS fix.

NVIDIA's driver cannot be unloaded and reloaded ~56 times in one process (its initial-exec TLS exhausts glibc's
static TLS surplus). glibc never unloads lavapipe (it defines ``STB_GNU_UNIQUE`` symbols), but the loader
on this machine also maps Mesa's other ICDs (intel, radeon) and the layers, and unloads those when the last instance
goes: that is what these tests watch. A fresh interpreter runs each scenario so that the first load happens inside
the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from vixen_assets.device import open_device
from vixen_assets.vk import pinning

SCRIPT = r"""
import json, sys
from vixen_assets.device import open_device
from vixen_assets.vk import pinning
from vixen_assets.vk.instance import Instance

start = pinning.loaded_libraries()
inst = Instance(validation=True)
during = pinning.loaded_libraries() - start
inst.destroy()
after_instance = pinning.loaded_libraries()
dev = open_device(validation=True)
problems, leaks = dev.validation_problems(), dev.close_report()
after_device = pinning.loaded_libraries()
print(json.dumps({"during": sorted(during), "after_instance": sorted(after_instance),
                  "after_device": sorted(after_device), "pinned": pinning.pinned(), "enabled": pinning.enabled(),
                  "problems": problems, "leaks": leaks}))
"""


def _run(keep: str) -> dict[str, Any]:
    env = dict(os.environ, VIXEN_KEEP_DRIVERS_LOADED=keep)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_drivers_and_layers_stay_mapped_after_the_last_instance() -> None:
    """With pinning on, every library the first instance mapped (drivers, layers, their dependencies) is still
    mapped after that instance and a whole device are gone; with it off, the loader unmaps some of them (on this
    machine: the ICDs not linked with ``-z nodelete``), which is what reloads NVIDIA's driver."""
    if not pinning.enabled():
        pytest.skip("library pinning works on Linux only")
    on = _run("1")
    assert on["enabled"] and not on["problems"] and not on["leaks"]
    during = set(on["during"])
    assert any("vulkan" in os.path.basename(p) or "VkLayer" in p for p in during), during
    assert during <= set(on["pinned"]), f"not pinned: {sorted(during - set(on['pinned']))}"
    gone = sorted(during - set(on["after_instance"]))
    assert not gone, f"unmapped after the instance: {gone}"
    assert during <= set(on["after_device"])
    off = _run("0")
    assert not off["enabled"] and off["pinned"] == [] and not off["problems"]
    unloaded = set(off["during"]) - set(off["after_instance"])
    if not unloaded:
        pytest.skip("every driver and layer here is linked -z nodelete: nothing to show the difference with")
    # the same libraries the loader unmaps without pinning stay with it
    assert unloaded <= set(on["after_instance"])


def test_open_and_close_many_devices_in_one_process() -> None:
    """120 devices opened and closed one after another with validation on: each works (a buffer round trip), none
    leaks or draws a validation message, and the process maps no more libraries at the end than after the first."""
    import numpy as np

    first: set[str] | None = None
    for i in range(120):
        dev = open_device(validation=True)
        try:
            data = np.arange(64, dtype=np.uint32) * (i + 1)
            buf = dev.create_and_upload(f"round-trip-{i}", data, "storage")
            assert np.array_equal(dev.read_buffer(buf).view(np.uint32)[:64], data)
            buf.destroy()
        finally:
            leaks = dev.close_report()
        assert not leaks, leaks
        assert not dev.validation_problems(), dev.validation_problems()
        if first is None:
            first = pinning.loaded_libraries()
    assert pinning.loaded_libraries() - first == set()
