"""Tests of :mod:`vixen_assets.memory.lifetime`: deferred destruction never frees what in-flight GPU work uses.

The GPU work is made deterministic with a host-signalled timeline semaphore ``gate``: an empty command buffer is
submitted waiting on ``gate`` reaching 1 and signalling the device timeline; until the test signals ``gate`` the
submission cannot finish, so a retired buffer must stay alive (registered, charged to the budget).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from vixen_assets.errors import DeviceClosedError
from vixen_assets.vk.commands import begin, end, submit
from vixen_assets.vk.enums import PipelineStage
from vixen_assets.vk.sync import TimelineSemaphore

KiB = 1 << 10
MiB = 1 << 20
ALL_COMMANDS = PipelineStage.ALL_COMMANDS


@contextmanager
def gated_submission(device: Any) -> Iterator[tuple[TimelineSemaphore, int]]:
    """Submit an empty command buffer that waits for ``gate`` = 1 and then signals the device timeline.

    Yields ``(gate, value)`` where ``value`` is the timeline value the submission signals. On exit the gate is
    signalled (if the test has not), the submission is waited for, and the semaphore and command buffer are freed.
    """
    gate = TimelineSemaphore(device.context.logical, 0)
    pool = device.context.command_pool
    cmd = pool.allocate()
    lifetime = device.context.lifetime
    try:
        begin(cmd)
        end(cmd)
        with lifetime.submit_lock:
            value = lifetime.next_value()
            submit(device.context.logical, device.context.logical.queue, [cmd], waits=[(gate, 1, ALL_COMMANDS)],
                   signals=[(lifetime.timeline, value)])
        yield gate, value
    finally:
        if gate.value < 1:
            gate.signal(1)
        lifetime.timeline.wait(value)
        pool.free(cmd)
        gate.destroy()


def test_destroy_waits_for_in_flight_work(device: Any) -> None:
    base_used = device.budget.used
    lifetime = device.context.lifetime
    for size in (4 * KiB, 2 * MiB):  # an arena range and a buffer with its own VkBuffer
        buf = device.create_buffer(size, "storage", name=f"in-use-{size}")
        charged = buf.nbytes
        with gated_submission(device) as (gate, value):
            buf.last_use = value
            buf.destroy()
            # retired, not destroyed: the GPU may still read it
            assert not buf.alive and "retired" in repr(buf)
            assert buf in device.context.registry.live()
            assert device.budget.used == base_used + charged
            assert lifetime.pending == 1 and not lifetime.is_done(value)
            assert lifetime.collect() == 0, "nothing may be destroyed while the work is blocked"
            assert buf in device.context.registry.live() and device.budget.used == base_used + charged
            buf.destroy()  # a second destroy while retired is a no-op
            assert lifetime.pending == 1

            gate.signal(1)
            assert lifetime.timeline.wait(value, timeout_s=10.0)
            assert lifetime.is_done(value)
            before = lifetime.destroyed_deferred
            assert lifetime.collect() == 1
            assert lifetime.destroyed_deferred == before + 1
        assert buf not in device.context.registry.live()
        assert device.budget.used == base_used and lifetime.pending == 0
        with pytest.raises(DeviceClosedError):
            _ = buf.handle


def test_destroy_without_gpu_use_is_immediate(device: Any) -> None:
    base_used = device.budget.used
    with gated_submission(device) as (_gate, _value):
        # work is in flight, but this buffer was never used by it (last_use == 0): freed at once
        buf = device.create_buffer(4 * KiB, "storage", name="unused")
        buf.destroy()
        assert buf not in device.context.registry.live() and device.budget.used == base_used
        assert device.context.lifetime.pending == 0


def test_device_retire_waits_for_everything_submitted(device: Any) -> None:
    base_used = device.budget.used
    lifetime = device.context.lifetime
    a = device.create_buffer(64 * KiB, "vertex", name="retired-a")
    b = device.create_buffer(1 * MiB, "vertex", name="retired-b")
    with gated_submission(device) as (gate, value):
        # Device.retire with no timeline value: after all work submitted so far (the gated submission included)
        device.retire(a)
        device.retire(a)  # retiring twice is a no-op
        device.retire(b, after=value)
        assert lifetime.pending == 2 and a in device.context.registry.live() and b in device.context.registry.live()
        assert device.budget.used == base_used + a.nbytes + b.nbytes
        assert lifetime.collect() == 0
        gate.signal(1)
        lifetime.wait(value)
        assert lifetime.collect() == 2
    assert device.budget.used == base_used
    assert a not in device.context.registry.live() and b not in device.context.registry.live()


def test_begin_frame_ring_destroys_after_frames_in_flight(device: Any) -> None:
    base_used = device.budget.used
    lifetime = device.context.lifetime
    assert lifetime.frames_in_flight == 2
    with gated_submission(device) as (gate, value):
        buf = device.create_buffer(16 * KiB, "uniform", name="per-frame")
        buf.last_use = value
        buf.destroy()
        frame = device.begin_frame()  # does not block: the gated frame is only the newest in the ring
        assert frame >= value
        assert buf in device.context.registry.live() and lifetime.pending == 1
        gate.signal(1)
        # after frames_in_flight more frames the gated one has been waited for, so the buffer is gone
        for _ in range(lifetime.frames_in_flight + 1):
            device.begin_frame()
        assert buf not in device.context.registry.live() and lifetime.pending == 0
    assert device.budget.used == base_used


def test_close_drains_retired_resources() -> None:
    from vixen_assets.testing import finish_test_device, open_test_device

    dev = open_test_device(staging_quota=0)
    try:
        buf = dev.create_buffer(8 * KiB, "storage", name="retired-at-close")
        gate = TimelineSemaphore(dev.context.logical, 0)
        cmd = dev.context.command_pool.allocate()
        begin(cmd)
        end(cmd)
        with dev.context.lifetime.submit_lock:
            value = dev.context.lifetime.next_value()
            submit(dev.context.logical, dev.context.logical.queue, [cmd], waits=[(gate, 1, ALL_COMMANDS)],
                   signals=[(dev.context.lifetime.timeline, value)])
        buf.last_use = value
        buf.destroy()
        assert dev.context.lifetime.pending == 1
        gate.signal(1)
        dev.context.lifetime.timeline.wait(value)
        dev.context.command_pool.free(cmd)
        gate.destroy()
        assert dev.context.lifetime.pending == 1 and buf in dev.context.registry.live()  # done on the GPU, not yet collected
        dev.close()  # close() drains: what was retired is destroyed, not reported as a leak
        assert dev.leaks == [] and dev.budget.used == 0 and dev.context.lifetime.pending == 0
        with pytest.raises(DeviceClosedError):
            _ = buf.handle
    finally:
        finish_test_device(dev)


# ---------------------------------------------------------------- the one lifetime protocol (memory.resource)


def test_every_gpu_object_walks_the_same_states(device: Any) -> None:
    """Buffer, Image and BufferSet: ALIVE -> RETIRING (while the GPU uses them) -> DESTROYED, through the friend API;
    a pending upload into any of them is submitted before it retires (its last use covers the copy)."""
    from vixen_assets.memory.resource import GpuResource, ResourceState

    buf = device.create_buffer(2 * MiB, "storage", name="p-buf")
    img = device.create_image(16, 16, vk_format=37, name="p-img")  # R8G8B8A8_UNORM
    bset = device.create_buffer_set({"a": (4 * KiB, "storage"), "b": (8 * KiB, "storage")}, name="p-set")
    objs = [buf, img, bset]
    assert all(isinstance(o, GpuResource) and o.state is ResourceState.ALIVE and o.alive for o in objs)
    with gated_submission(device) as (gate, value):
        for o in objs:
            o.last_use = value
            o.destroy()
            assert o.state is ResourceState.RETIRING and not o.alive
            o.destroy()  # safe twice
            assert not o._mark_retiring()  # the friend API agrees
        assert bset["a"].state is ResourceState.RETIRING  # members follow the set
        assert all(o in device.live_resources() for o in objs)
        gate.signal(1)
    device.context.lifetime.drain()
    assert all(o.state is ResourceState.DESTROYED for o in objs)
    assert bset["b"].state is ResourceState.DESTROYED
    assert not any(o in device.live_resources() for o in objs)


def test_prepare_retire_submits_pending_uploads_into_the_object(device: Any) -> None:
    import numpy as np

    buf = device.create_buffer(64 * KiB, "storage", strategy="device_local", name="pending")
    up = device.uploader
    direct = up.direct_writes
    up.direct_writes = False  # force the staged path: the copy is only recorded until a flush
    try:
        up.enqueue(buf, np.arange(64 * KiB, dtype=np.uint8))
        assert up.pending_for(buf) and up.has_pending
        assert buf._mark_retiring()
        last = buf._prepare_retire()
        assert not up.pending_for(buf) and last > 0  # submitted; the wait covers the copy
        device.retire(buf)  # already retiring: a no-op
        device.context.lifetime.retire(buf, last)
    finally:
        up.direct_writes = direct
    device.context.lifetime.drain()
    assert not buf.alive and buf not in device.live_resources()
