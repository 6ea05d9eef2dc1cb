"""The transfer system on the real driver with validation on: ``BatchedUploader`` (``Device.uploader``),
``Device.upload`` / ``read_buffer``, ``StagingBufferPool`` and ``StagingRing``.

Lavapipe's only memory type is host-visible, so the uploader would write every byte straight into mapped memory;
tests that matter for discrete GPUs run twice, once with ``uploader.direct_writes = False`` (the staging path:
pool buffers, ``vkCmdCopyBuffer``, one submission per batch). The tests also pass on a discrete GPU with a
transfer-only queue family (seen on an NVIDIA H100 with the validation layer on): there the "direct" path falls back
to staging and each flush makes two submissions (see :func:`writes_direct` and :func:`submits_per_flush`).

To hold the GPU at a chosen point, :func:`gpu_gate` submits a command buffer that waits on a host-signalled
semaphore: work submitted after it completes only once the gate opens.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from vixen_assets.errors import StagingTimeoutError, VixenError
from vixen_assets.testing import finish_test_device, open_test_device
from vixen_assets.transfer.staging import StagingBufferPool
from vixen_assets.transfer.uploader import AUTO_FLUSH_BYTES
from vixen_assets.vk import resources as vkr
from vixen_assets.vk.commands import begin, end, submit
from vixen_assets.vk.sync import TimelineSemaphore

KiB = 1 << 10
MiB = 1 << 20
STORAGE = 0x20
STAGE_ALL_COMMANDS = 0x10000

PATHS = ["direct", "staging"]


# ---------------------------------------------------------------- helpers


def use_path(device: Any, path: str) -> None:
    """Select the uploader's direct (mapped) or staging (copy) path."""
    device.uploader.direct_writes = path == "direct"


def writes_direct(device: Any, path: str) -> bool:
    """True when ``path`` writes straight into mapped memory: device-local buffers are host-visible (unified memory).

    On a discrete GPU the "direct" path falls back to staging for device-local destinations.
    """
    return path == "direct" and device.info.unified_memory


def submits_per_flush(device: Any) -> int:
    """``vkQueueSubmit`` calls per flushed batch: 1 on one queue; 2 with a separate transfer queue (the transfer
    submission, then the acquire / ordering submission on the main queue)."""
    return 2 if device.uploader.separate_queue else 1


def random_bytes(n: int, seed: int = 0) -> np.ndarray:
    """``n`` reproducible random bytes."""
    return np.frombuffer(np.random.default_rng(seed).bytes(n), dtype=np.uint8)


@contextlib.contextmanager
def gpu_gate(device: Any) -> Iterator[Callable[[], None]]:
    """Block the main queue until the yielded ``open()`` is called (also called on exit).

    An empty command buffer waits on a host-signalled semaphore and signals the device timeline's next value, under
    the lifetime's submit lock; submissions made after it (the uploader's) therefore complete only after it.
    """
    dev = device.context.logical
    lt = device.context.lifetime
    gate = TimelineSemaphore(dev, 0)
    cmd = device.context.command_pool.allocate()
    begin(cmd)
    end(cmd)
    with lt.submit_lock:
        value = lt.next_value()
        submit(dev, dev.queue, [cmd], waits=[(gate, 1, STAGE_ALL_COMMANDS)], signals=[(lt.timeline, value)])
    state = {"open": False}

    def open_gate() -> None:
        if not state["open"]:
            state["open"] = True
            gate.signal(1)

    try:
        yield open_gate
    finally:
        open_gate()
        lt.wait(value)
        device.context.command_pool.free(cmd)
        gate.destroy()


def submit_copy(device: Any, src: Any, src_off: int, dst: Any, dst_off: int, n: int, cmds: list[Any]) -> int:
    """Record and submit one ``vkCmdCopyBuffer`` on the main queue; return the timeline value it signals."""
    lt = device.context.lifetime
    cmd = device.context.command_pool.allocate()
    cmds.append(cmd)
    begin(cmd)
    regions = vkr.copy_regions(1)
    regions[0] = (src.offset + src_off, dst.offset + dst_off, n)
    vkr.cmd_copy_buffer(cmd, src.handle, dst.handle, regions)
    end(cmd)
    with lt.submit_lock:
        value = lt.next_value()
        submit(device.context.logical, device.context.logical.queue, [cmd], signals=[(lt.timeline, value)])
    return value


# ---------------------------------------------------------------- round trips

ROUND_TRIPS = [(1, 0), (1, 1), (3, 3), (15, 1), (16, 0), (17, 4097), (255, 3), (4096, 0), (4097, 1),
               (64 * KiB - 1, 3), (64 * KiB, 0), (64 * KiB + 1, 4097), (512 * KiB, 1), (512 * KiB + 1, 0),
               (1 * MiB + 3, 3), (4 * MiB, 4097), (4 * MiB + 1, 1), (9 * MiB + 7, 4097)]


@pytest.mark.parametrize("path", PATHS)
def test_round_trips_many_sizes_and_offsets(device: Any, path: str) -> None:
    use_path(device, path)
    for i, (size, offset) in enumerate(ROUND_TRIPS):
        total = offset + size + 5
        with device.create_buffer(total, STORAGE, name=f"rt-{size}@{offset}") as buf:
            device.upload(buf, np.full(total, 0xAB, dtype=np.uint8))
            data = random_bytes(size, seed=i)
            device.upload(buf, data, offset)
            got = device.read_buffer(buf)
            expected = np.full(total, 0xAB, dtype=np.uint8)
            expected[offset:offset + size] = data
            np.testing.assert_array_equal(got, expected, err_msg=f"{size} bytes at offset {offset} via {path}")
            np.testing.assert_array_equal(device.read_buffer(buf, size, offset), data)
    st = device.uploader.stats
    if writes_direct(device, path):
        assert st.direct_writes == 2 * len(ROUND_TRIPS) and st.submits == 0
    else:
        assert st.direct_writes == 0 and st.staged_bytes > 0
        assert st.submits == 2 * len(ROUND_TRIPS) * submits_per_flush(device)


@pytest.mark.parametrize("path", PATHS)
def test_round_trip_64_mib(device: Any, path: str) -> None:
    use_path(device, path)
    size, offset = 64 * MiB, 4097
    data = random_bytes(size, seed=64)
    with device.create_buffer(offset + size + 3, STORAGE, name="rt-64MiB") as buf:
        device.upload(buf, data, offset)
        got = device.read_buffer(buf, size, offset)
        assert np.array_equal(got, data), f"64 MiB at offset {offset} via {path}"
        if not writes_direct(device, path):  # 16 chunks of the 4 MiB tier, each one region
            assert device.uploader.stats.staged_bytes == size and device.uploader.stats.regions == 16


def test_direct_writes_split_over_fill_threads(device: Any) -> None:
    """Large direct writes are split over the fill threads where there are cores for it (forced on here)."""
    use_path(device, "direct")
    device.uploader._split_direct = True
    for size, offset in ((2 * MiB, 0), (9 * MiB + 7, 4097), (33 * MiB + 1, 3)):
        data = random_bytes(size, seed=size)
        with device.create_buffer(offset + size + 1, STORAGE, name=f"split-{size}") as buf:
            device.upload(buf, np.zeros(buf.size, dtype=np.uint8))
            device.upload(buf, data, offset)
            got = device.read_buffer(buf)
            assert np.array_equal(got[offset:offset + size], data)
            assert not got[:offset].any() and got[-1] == 0


@pytest.mark.parametrize("path", PATHS)
def test_upload_accepts_bytes_like_and_typed_arrays(device: Any, path: str) -> None:
    use_path(device, path)
    floats = np.linspace(0, 1, 1000, dtype=np.float32)
    strided = np.arange(4000, dtype=np.uint16)[::2]  # not contiguous: copied once, then staged
    with device.create_buffer(8192, STORAGE, name="typed") as buf:
        device.upload(buf, floats)
        device.upload(buf, strided, 4000)
        device.upload(buf, b"hello", 8000)
        device.upload(buf, bytearray(b"world"), 8005)
        device.upload(buf, memoryview(b"!!"), 8010)
        got = device.read_buffer(buf)
        assert np.array_equal(got[:4000].view(np.float32), floats)
        assert np.array_equal(got[4000:8000].view(np.uint16), strided)
        assert bytes(got[8000:8012]) == b"helloworld!!"


def test_create_and_upload(device: Any) -> None:
    data = random_bytes(3 * MiB + 1, seed=9)
    with device.create_and_upload("mesh", data, "vertex|index") as buf:
        assert buf.size == data.size and buf.name == "mesh"
        assert np.array_equal(device.read_buffer(buf), data)


# ---------------------------------------------------------------- batching and coalescing


@pytest.mark.parametrize("path", PATHS)
def test_many_small_uploads_one_batch_coalesce(device: Any, path: str) -> None:
    use_path(device, path)
    n, piece = 5000, 64
    data = random_bytes(n * piece, seed=5)
    up = device.uploader
    with device.create_buffer(n * piece, STORAGE, name="small-pieces") as buf:
        before = up.stats.submits
        for i in range(n):
            up.enqueue(buf, data[i * piece:(i + 1) * piece], i * piece)
        ticket = up.flush()
        ticket.wait()
        assert ticket.done
        assert np.array_equal(device.read_buffer(buf), data)
        if not writes_direct(device, path):
            assert ticket.regions == 1, "adjacent pieces from adjacent staging bytes are one region"
            assert up.stats.coalesced == n - 1
            k = submits_per_flush(device)
            assert ticket.submits == k and up.stats.submits - before == k and up.stats.flushes == 1
            assert ticket.nbytes == n * piece
        else:
            assert ticket.regions == 0 and ticket.submits == 0 and up.stats.submits == before
            assert up.stats.direct_writes == n


def test_interleaved_and_gapped_pieces_are_separate_regions(device: Any) -> None:
    use_path(device, "staging")
    up = device.uploader
    n, piece = 1000, 64
    data = random_bytes(2 * n * piece, seed=6)
    with device.create_buffer(2 * n * piece, STORAGE, name="interleaved") as buf:
        # even pieces first, then odd ones: adjacent in staging, not in the destination
        for i in list(range(0, 2 * n, 2)) + list(range(1, 2 * n, 2)):
            up.enqueue(buf, data[i * piece:(i + 1) * piece], i * piece)
        t = up.flush()
        t.wait()
        assert t.regions == 2 * n and t.submits == submits_per_flush(device)
        assert np.array_equal(device.read_buffer(buf), data)

        # gapped: every other piece, in order
        coalesced = up.stats.coalesced
        for i in range(0, 2 * n, 2):
            up.enqueue(buf, np.full(piece, i % 251, dtype=np.uint8), i * piece)
        t = up.flush()
        t.wait()
        assert t.regions == n and up.stats.coalesced == coalesced
        got = device.read_buffer(buf).reshape(2 * n, piece)
        for i in range(2 * n):
            expect = np.full(piece, i % 251, dtype=np.uint8) if i % 2 == 0 else data[i * piece:(i + 1) * piece]
            assert np.array_equal(got[i], expect)

        # runs: 10 runs of 100 adjacent pieces, with a gap between runs -> 10 regions
        for r in range(10):
            for j in range(100):
                off = r * 200 * piece + j * piece
                up.enqueue(buf, data[off:off + piece], off)
        t = up.flush()
        t.wait()
        assert t.regions == 10


def test_unaligned_adjacent_pieces_coalesce(device: Any) -> None:
    """Pieces whose sizes are not multiples of 16 still pack back to back in staging and merge."""
    use_path(device, "staging")
    up = device.uploader
    data = random_bytes(3 * 999, seed=7)
    with device.create_buffer(3 * 999 + 1, STORAGE, name="unaligned") as buf:
        for i in range(999):
            up.enqueue(buf, data[3 * i:3 * i + 3], 1 + 3 * i)
        t = up.flush()
        t.wait()
        assert t.regions == 1
        assert np.array_equal(device.read_buffer(buf, 3 * 999, 1), data)


def test_pieces_into_several_buffers_one_submit(device: Any) -> None:
    use_path(device, "staging")
    up = device.uploader
    bufs = [device.create_buffer(4 * KiB, STORAGE, name=f"multi-{i}") for i in range(20)]
    big = device.create_buffer(2 * MiB, STORAGE, name="multi-big")
    try:
        datas = [random_bytes(4 * KiB, seed=100 + i) for i in range(20)]
        big_data = random_bytes(2 * MiB, seed=99)
        for b, d in zip(bufs, datas):
            up.enqueue(b, d)
        up.enqueue(big, big_data)
        t = up.flush()
        assert t.submits == submits_per_flush(device)
        t.wait()
        for b, d in zip(bufs, datas):
            assert np.array_equal(device.read_buffer(b), d)
        assert np.array_equal(device.read_buffer(big), big_data)
    finally:
        for b in bufs + [big]:
            b.destroy()


def test_empty_flush_and_ticket_covers_auto_flushed_work(device: Any) -> None:
    use_path(device, "staging")
    up = device.uploader
    t = up.flush()
    assert t.done and t.wait() and t.regions == 0 and t.submits == 0
    # more than the auto-flush threshold in one enqueue: a first batch is sealed (and submitted) inside enqueue; the
    # next flush's ticket must still cover it, so Device.upload returns only once all the bytes are on the GPU
    data = random_bytes(AUTO_FLUSH_BYTES + 8 * MiB, seed=72)
    with device.create_buffer(data.size, STORAGE, name="auto-flushed") as buf:
        with gpu_gate(device) as open_gate:
            done = threading.Event()

            def uploader_thread() -> None:
                device.upload(buf, data)
                done.set()

            t = threading.Thread(target=uploader_thread)
            t.start()
            deadline = time.monotonic() + 20
            while not (up.in_flight == 2 and up.pending_bytes == 0) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert up.in_flight == 2 and up.pending_bytes == 0, "the auto-flushed batch, then the rest"
            assert not done.wait(0.1), "Device.upload returned while its batches were still held"
            open_gate()
            t.join(10)
            assert done.is_set()
        assert buf.last_use and device.context.lifetime.is_done(buf.last_use)
        assert up.stats.flushes == 2 and up.stats.submits == 2 * submits_per_flush(device)
        assert np.array_equal(device.read_buffer(buf), data)


# ---------------------------------------------------------------- threads


@pytest.mark.parametrize("path", PATHS)
def test_concurrent_enqueues_from_8_threads(device: Any, path: str) -> None:
    use_path(device, path)
    up = device.uploader
    threads_n, per_thread = 8, 1 * MiB
    data = random_bytes(threads_n * per_thread, seed=8)
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def worker(k: int) -> None:
        try:
            base = k * per_thread
            start.wait()
            pos = 0
            rng = np.random.default_rng(k)
            # a mix of small pieces (packed) and one large piece (whole pool buffers)
            while pos < per_thread - 600 * KiB:
                n = int(rng.integers(1, 2000))
                up.enqueue(buf, data[base + pos:base + pos + n], base + pos)
                pos += n
            up.enqueue(buf, data[base + pos:base + per_thread], base + pos)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    with device.create_buffer(threads_n * per_thread, STORAGE, name="threads") as buf:
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads_n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors, errors
        ticket = up.flush()
        if not writes_direct(device, path):
            assert ticket.submits == submits_per_flush(device) and ticket.regions >= threads_n
        ticket.wait()
        assert np.array_equal(device.read_buffer(buf), data)


# ---------------------------------------------------------------- staging exhaustion


def test_staging_exhaustion_throttles_and_completes() -> None:
    dev = open_test_device(staging_quota=1 * MiB)
    try:
        up = dev.uploader
        up.direct_writes = False
        assert up.pool.max_chunk == 1 * MiB and up.pool.tiers == (64 * KiB, 256 * KiB, 1 * MiB)
        data = random_bytes(64 * MiB, seed=11)
        with dev.create_buffer(data.size, STORAGE, name="throttled") as buf:
            dev.upload(buf, data)
            assert np.array_equal(dev.read_buffer(buf), data)
            # small pieces through the same tiny pool
            small = random_bytes(3 * MiB, seed=12)
            for i in range(0, small.size, 4000):
                up.enqueue(buf, small[i:i + 4000], i)
            up.flush().wait()
            assert np.array_equal(dev.read_buffer(buf, small.size), small)
        st = up.pool.stats
        assert st.waits > 0, "a 1 MiB quota cannot hold 64 MiB: checkouts must have waited"
        assert up.pool.pooled_bytes <= 1 * MiB
        assert dev.budget.stats()["staging"]["peak"] <= 1 * MiB if "staging" in dev.budget.stats() else True
        assert up.stats.flushes > 3
    finally:
        finish_test_device(dev)


# ---------------------------------------------------------------- lifetimes


def test_destination_destroyed_while_batch_in_flight_is_deferred(device: Any) -> None:
    use_path(device, "staging")
    up = device.uploader
    data = random_bytes(2 * MiB, seed=13)
    buf = device.create_buffer(data.size, STORAGE, name="doomed")
    with gpu_gate(device) as open_gate:
        up.enqueue(buf, data)
        ticket = up.flush()
        time.sleep(0.05)
        assert not ticket.done, "the gate holds the queue"
        buf.destroy()
        assert not buf.alive
        assert buf in device.context.registry.live(), "destroyed under the GPU's feet"
        device.context.lifetime.collect()
        up.collect()
        assert buf in device.context.registry.live()
        assert up.in_flight == 1
        open_gate()
        assert ticket.wait(10)
    device.context.lifetime.collect()
    assert ticket.done
    assert buf not in device.context.registry.live()
    assert up.in_flight == 0
    assert up.pool.free_count() == up.pool.stats_dict()["buffers"], "staging came back"


def test_destination_destroyed_with_copies_pending_is_flushed_then_deferred(device: Any) -> None:
    use_path(device, "staging")
    up = device.uploader
    buf = device.create_buffer(4 * KiB, STORAGE, name="pending-doomed")
    keep = device.create_buffer(4 * KiB, STORAGE, name="pending-kept")
    data = random_bytes(4 * KiB, seed=20)
    try:
        with gpu_gate(device) as open_gate:
            up.enqueue(buf, data)
            up.enqueue(keep, data)
            assert up.pending_bytes == 8 * KiB
            buf.destroy()  # the pending batch copies into it: submitted now, destruction deferred behind it
            assert up.pending_bytes == 0 and up.in_flight == 1
            assert not buf.alive and buf in device.context.registry.live()
            open_gate()
        up.flush().wait()
        device.context.lifetime.collect()
        assert buf not in device.context.registry.live()
        assert np.array_equal(device.read_buffer(keep), data)
    finally:
        keep.destroy()


def test_direct_write_waits_for_in_flight_copy_to_same_buffer(device: Any) -> None:
    up = device.uploader
    with device.create_buffer(64 * KiB, STORAGE, name="ordered") as buf:
        with gpu_gate(device) as open_gate:
            up.direct_writes = False
            up.enqueue(buf, np.full(64 * KiB, 1, dtype=np.uint8))
            ticket = up.flush()
            up.direct_writes = True
            done = threading.Event()

            def writer() -> None:
                device.upload(buf, np.full(64 * KiB, 2, dtype=np.uint8))
                done.set()

            t = threading.Thread(target=writer)
            t.start()
            assert not done.wait(0.1), "a direct write must wait for the GPU copy into the same buffer"
            open_gate()
            t.join(10)
            assert done.is_set() and ticket.done
        assert np.all(device.read_buffer(buf) == 2)


# ---------------------------------------------------------------- transfer-queue ownership path


def test_separate_transfer_queue_ownership_path() -> None:
    dev = open_test_device(separate_transfer_queue=True)
    try:
        up = dev.uploader
        assert dev.context.logical.transfer_queue is not None
        assert up.separate_queue and up.ownership_transfer
        up.direct_writes = False
        a = random_bytes(5 * MiB + 3, seed=14)
        b = random_bytes(1000, seed=15)
        with dev.create_buffer(a.size, STORAGE, name="own-a") as ba, \
                dev.create_buffer(2000, STORAGE, name="own-b") as bb:
            up.enqueue(ba, a)
            up.enqueue(bb, b, 1000)
            ticket = up.flush()
            assert ticket.submits == 2, "transfer submission + acquire submission on the main queue"
            ticket.wait()
            assert up.stats.ownership_transfers >= 2
            assert np.array_equal(dev.read_buffer(ba), a)
            assert np.array_equal(dev.read_buffer(bb, 1000, 1000), b)
            # again, to buffers the main family owns now
            dev.upload(bb, b[::-1].copy(), 0)
            assert np.array_equal(dev.read_buffer(bb, 1000), b[::-1])
            up.direct_writes = True
            dev.upload(bb, b)
            assert np.array_equal(dev.read_buffer(bb, 1000), b)
        # many small buffers side by side in one arena: released and acquired with a few merged barriers
        up.direct_writes = False
        smalls = [dev.create_buffer(1 * KiB, STORAGE, name=f"own-small-{i}") for i in range(200)]
        try:
            datas = [random_bytes(1 * KiB, seed=200 + i) for i in range(200)]
            transfers, barriers = up.stats.ownership_transfers, up.stats.ownership_barriers
            for buf, d in zip(smalls, datas):
                up.enqueue(buf, d)
            ticket = up.flush()
            assert ticket.submits == 2
            ticket.wait()
            assert up.stats.ownership_transfers - transfers == 200
            assert 1 <= up.stats.ownership_barriers - barriers <= 4, up.stats
            for buf, d in zip(smalls, datas):
                assert np.array_equal(dev.read_buffer(buf), d)
        finally:
            for buf in smalls:
                buf.destroy()
    finally:
        finish_test_device(dev)


# ---------------------------------------------------------------- zero allocations after warm-up


def test_zero_allocation_steady_state(device: Any) -> None:
    up = device.uploader
    small = device.create_buffer(4 * KiB, STORAGE, name="steady-small")
    large = device.create_buffer(9 * MiB, STORAGE, name="steady-large")
    try:
        small_data = random_bytes(small.size, seed=16)
        large_data = random_bytes(large.size, seed=17)

        def round_trips(count: int) -> None:
            for i in range(count):
                for path in PATHS:
                    use_path(device, path)
                    device.upload(small, small_data)
                    device.upload(large, large_data)
                    up.enqueue(small, small_data[:100], 3)
                    up.enqueue(large, large_data[:700 * KiB], 1)
                    up.flush().wait()
                    assert device.read_buffer(small, 16)[3] == small_data[0]
                    assert device.read_buffer(large, 1 * MiB, 4 * MiB).size == 1 * MiB

        round_trips(2)  # warm-up
        with device.phase("steady") as c:
            round_trips(50)
        assert c.allocate_memory == 0, c
        assert c.buffers_created == 0, c
        assert np.array_equal(device.read_buffer(large, 1, 0), large_data[:1])
    finally:
        small.destroy()
        large.destroy()


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("path", PATHS)
def test_out_of_range_upload_names_the_buffer_and_enqueues_nothing(device: Any, path: str) -> None:
    use_path(device, path)
    up = device.uploader
    with device.create_buffer(100, STORAGE, name="tiny-target") as buf:
        device.upload(buf, np.zeros(100, dtype=np.uint8))
        before = (up.stats.enqueues, up.pending_bytes, up.stats.direct_writes)
        for data, offset in ((np.ones(101, dtype=np.uint8), 0), (np.ones(10, dtype=np.uint8), 91),
                             (np.ones(1, dtype=np.uint8), -1), (b"x", 100)):
            with pytest.raises(VixenError, match="tiny-target"):
                up.enqueue(buf, data, offset)
        assert (up.stats.enqueues, up.pending_bytes, up.stats.direct_writes) == before
        t = up.flush()
        assert t.regions == 0 and t.submits == 0
        assert not device.read_buffer(buf).any(), "nothing was written"
        with pytest.raises(VixenError, match="tiny-target"):
            device.read_buffer(buf, 10, 95)


# ---------------------------------------------------------------- StagingBufferPool


def test_pool_prewarm_hits_tiers_give_back(device: Any) -> None:
    pool = StagingBufferPool(device.context.buffers, quota=2 * MiB, timeout_s=5.0)
    try:
        assert pool.tiers == (64 * KiB, 256 * KiB, 1 * MiB), "tiers above the quota are dropped"
        assert pool.stats.created == 2 and pool.free_count() == 2  # 64 KiB + 256 KiB fit a quarter of the quota
        assert pool.pooled_bytes == 320 * KiB
        assert [pool.tier_for(s) for s in (1, 64 * KiB, 64 * KiB + 1, 300 * KiB, 5 * MiB)] == \
            [64 * KiB, 64 * KiB, 256 * KiB, 1 * MiB, 1 * MiB]
        a = pool.checkout(100)
        assert a.size == 64 * KiB and pool.stats.hits == 1 and a.host_visible
        b = pool.checkout(100 * KiB)
        assert b.size == 256 * KiB and pool.stats.hits == 2
        c = pool.checkout(300 * KiB)
        assert c.size == 1 * MiB and pool.stats.hits == 2 and pool.stats.created == 3
        assert pool.free_count() == 0
        d = pool.checkout(10)  # no 64 KiB free: created (1.3 MiB + 64 KiB fits)
        assert d.size == 64 * KiB and pool.stats.created == 4
        pool.give_back([a, b, c, d])
        assert pool.free_count() == 4 and pool.stats.returned == 4
        e = pool.checkout(5 * MiB)  # larger than any tier: the largest (the uploader splits)
        assert e is c and pool.stats.hits == 3
        f = pool.checkout(1)
        assert f.size == 64 * KiB and pool.stats.hits == 4
        pool.give_back([e, f])
        s = pool.stats_dict()
        assert s["checkouts"] == 6 and s["waits"] == 0 and s["quota"] == 2 * MiB and s["buffers"] == 4
        assert s["bytes_checked_out"] == 64 * KiB * 3 + 256 * KiB + 2 * MiB
    finally:
        pool.destroy()
    assert pool.pooled_bytes == 0


def test_pool_drops_small_free_buffers_to_fit_a_bigger_tier(device: Any) -> None:
    pool = StagingBufferPool(device.context.buffers, quota=1 * MiB + 256 * KiB, timeout_s=5.0)
    try:
        assert pool.pooled_bytes == 64 * KiB + 256 * KiB
        big = pool.checkout(1 * MiB)
        assert big.size == 1 * MiB and pool.pooled_bytes <= pool.quota
        pool.give_back([big])
    finally:
        pool.destroy()


def test_pool_exhausted_without_progress_times_out(device: Any) -> None:
    calls = []
    pool = StagingBufferPool(device.context.buffers, quota=128 * KiB, timeout_s=0.1, prewarm={},
                             on_exhausted=lambda: calls.append(1) or False)
    try:
        a = pool.checkout(64 * KiB)
        b = pool.checkout(64 * KiB)
        t0 = time.monotonic()
        with pytest.raises(StagingTimeoutError, match="staging pool exhausted"):
            pool.checkout(64 * KiB)
        assert time.monotonic() - t0 >= 0.1
        assert pool.stats.waits == 1 and calls
        pool.give_back([a, b])
        assert pool.checkout(1) in (a, b)
    finally:
        pool.destroy()


def test_pool_threads_wait_for_returned_buffers(device: Any) -> None:
    pool = StagingBufferPool(device.context.buffers, quota=256 * KiB, timeout_s=10.0)
    held: set[int] = set()
    lock = threading.Lock()
    errors: list[str] = []

    def worker(k: int) -> None:
        for i in range(100):
            buf = pool.checkout(60 * KiB)
            with lock:
                if id(buf) in held:
                    errors.append(f"{buf!r} handed out twice")
                held.add(id(buf))
            buf.mapped[:8] = k
            time.sleep(0)
            if not np.all(buf.mapped[:8] == k):
                errors.append("a buffer was written by two threads at once")
            with lock:
                held.discard(id(buf))
            pool.give_back([buf])

    try:
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors, errors[:3]
        assert pool.pooled_bytes <= 256 * KiB
        assert pool.stats.checkouts == 800 and pool.stats.returned == 800
        assert pool.free_count() == pool.stats_dict()["buffers"]
    finally:
        pool.destroy()


# ---------------------------------------------------------------- StagingRing


def test_ring_wraps_and_copies(device: Any) -> None:
    ring = device.staging_ring(segment_size=64 * KiB, segments=3)
    cmds: list[Any] = []
    n, piece = 12, 40 * KiB
    data = random_bytes(n * piece, seed=18)
    with device.create_buffer(n * piece, STORAGE, name="ring-dst") as dst:
        values = []
        for i in range(n):
            sl = ring.alloc(piece)
            assert sl.size == piece and sl.offset % ring.alignment == 0 and sl.offset + piece <= ring.segment_size
            sl.view[:] = data[i * piece:(i + 1) * piece]
            v = submit_copy(device, sl.buffer, sl.offset, dst, i * piece, piece, cmds)
            values.append(v)
            ring.submit(v)
        device.context.lifetime.wait(values[-1])
        assert np.array_equal(device.read_buffer(dst), data)
    for c in cmds:
        device.context.command_pool.free(c)
    s = ring.stats_dict()
    assert s["allocations"] == n and s["bytes"] == n * piece and s["submits"] == n
    assert s["wraps"] >= 3 and s["segments"] == 3 and s["segment_size"] == 64 * KiB
    with pytest.raises(VixenError, match="exceeds"):
        ring.alloc(64 * KiB + 1)


def test_ring_packs_small_slices_into_one_segment(device: Any) -> None:
    ring = device.staging_ring(segment_size=64 * KiB, segments=3)
    slices = [ring.alloc(100) for _ in range(10)]
    assert len({id(s.buffer) for s in slices}) == 1
    offsets = [s.offset for s in slices]
    assert offsets == sorted(offsets) and all(o % 16 == 0 for o in offsets)
    assert all(b.offset - a.offset >= 100 for a, b in zip(slices, slices[1:]))
    ring.submit(device.context.lifetime.submitted)
    assert ring.alloc(100).buffer is not slices[0].buffer, "a submitted segment is not reused at once"


def test_ring_waits_when_the_gpu_still_uses_a_segment(device: Any) -> None:
    ring = device.staging_ring(segment_size=64 * KiB, segments=3)
    cmds: list[Any] = []
    data = random_bytes(4 * 32 * KiB, seed=19)
    with device.create_buffer(data.size, STORAGE, name="ring-wait") as dst:
        with gpu_gate(device) as open_gate:
            first = None
            for i in range(3):
                sl = ring.alloc(32 * KiB)
                sl.view[:] = data[i * 32 * KiB:(i + 1) * 32 * KiB]
                v = submit_copy(device, sl.buffer, sl.offset, dst, i * 32 * KiB, 32 * KiB, cmds)
                ring.submit(v)  # must not block: the ring only waits when it has to reuse memory
                first = first or sl.buffer
            assert ring.stats.waits == 0
            timer = threading.Timer(0.3, open_gate)
            timer.start()
            t0 = time.monotonic()
            sl = ring.alloc(32 * KiB)  # wraps onto segment 0, which the gated copy still reads
            waited = time.monotonic() - t0
            timer.join()
            assert sl.buffer is first
            assert waited >= 0.2 and ring.stats.waits == 1 and ring.stats.wraps == 1
            sl.view[:] = data[3 * 32 * KiB:]
            v = submit_copy(device, sl.buffer, sl.offset, dst, 3 * 32 * KiB, 32 * KiB, cmds)
            ring.submit(v)
        device.context.lifetime.wait(v)
        assert np.array_equal(device.read_buffer(dst), data)
    for c in cmds:
        device.context.command_pool.free(c)


def test_ring_marks_every_segment_a_submission_reads(device: Any) -> None:
    """Slices that spill into the next segment before one submit: both segments are guarded by its value."""
    ring = device.staging_ring(segment_size=64 * KiB, segments=3)
    with gpu_gate(device) as open_gate:
        a = ring.alloc(48 * KiB)
        b = ring.alloc(48 * KiB)  # does not fit: next segment
        assert a.buffer is not b.buffer
        gated = device.context.lifetime.submitted  # the gate's value: not reached until it opens
        ring.submit(gated)
        ring.alloc(48 * KiB)  # segment 2
        ring.submit(0)
        timer = threading.Timer(0.2, open_gate)
        timer.start()
        t0 = time.monotonic()
        c = ring.alloc(48 * KiB)  # wraps onto segment 0, read by the gated submission
        assert time.monotonic() - t0 >= 0.15 and c.buffer is a.buffer
        timer.join()
    ring.submit(device.context.lifetime.submitted)


def test_ring_overrun_without_submit_is_an_error(device: Any) -> None:
    ring = device.staging_ring(segment_size=64 * KiB, segments=2)
    ring.alloc(40 * KiB)
    ring.alloc(40 * KiB)  # spills into segment 1; segment 0 waits for the next submit
    with pytest.raises(VixenError, match="overrun"):
        ring.alloc(40 * KiB)  # would reuse segment 0 before any submit covers it
    ring.submit(device.context.lifetime.submitted)
    assert ring.alloc(40 * KiB).buffer is ring.segments[0]


def test_ring_creation_is_all_or_nothing() -> None:
    """A segment that fails to allocate frees the segments created before it."""
    from vixen_assets.vk.faults import FaultInjector

    device = open_test_device(block_size=1 << 20)  # each 1 MiB segment needs a block of its own
    try:
        before = {id(o) for o in device.live_resources()}
        device.context.logical.faults = FaultInjector(fail_allocation_at=2)
        try:
            with pytest.raises(VixenError):
                device.staging_ring(segment_size=1 << 20, segments=3)
        finally:
            device.context.logical.faults = None
        assert {id(o) for o in device.live_resources()} == before
    finally:
        finish_test_device(device)
