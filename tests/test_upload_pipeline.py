"""The staging pipeline of ``BatchedUploader`` as it runs on a discrete GPU's host (many fill threads), forced on
lavapipe: staging path (``direct_writes = False``) and the fill-thread count of a 16-core host; sealed batches are
submitted by the submitter thread once their fills are done. Data is read back and compared; the copies' thread
CPU time is counted in ``UploadStats.copy_cpu_s``. (``test_upload_stress.py`` runs 16 real fill threads.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import vixen_assets.transfer.uploader as uploader_module

MiB = 1 << 20
STORAGE = "storage"


@pytest.fixture
def many_threads(device: Any) -> Iterator[Any]:
    """The device's uploader on the staging path, with the fill-thread count of a 16-core host."""
    up = device.uploader
    workers, direct = up._workers, up.direct_writes
    up._workers, up.direct_writes = 16, False
    try:
        yield up
    finally:
        up._workers, up.direct_writes = workers, direct


def random_bytes(n: int, seed: int) -> np.ndarray:
    return np.frombuffer(np.random.default_rng(seed).bytes(n), dtype=np.uint8)


def test_fill_tasks_are_whole_staging_chunks(device: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    up = device.uploader
    workers = up._workers
    try:
        for up._workers in (2, 16, 64):  # one task per staging chunk whatever the thread count
            assert up._fill_slice() == uploader_module.FILL_SLICE == up.pool.max_chunk
        monkeypatch.setattr(uploader_module, "FILL_SLICE", 1 << 20)  # the tuning knob (bench --fill-slice-mib)
        assert up._fill_slice() == 1 << 20
        monkeypatch.setattr(uploader_module, "FILL_SLICE", 4096)
        assert up._fill_slice() == uploader_module.FILL_SPLIT  # never below the split size
    finally:
        up._workers = workers


def test_sealed_batches_are_submitted_in_the_background(device: Any, many_threads: Any) -> None:
    up = many_threads
    size, offset = 48 * MiB + 123, 4099
    data = random_bytes(size, seed=18)
    with device.create_buffer(offset + size + 5, STORAGE, name="pipelined") as buf:
        device.upload(buf, np.zeros(buf.size, dtype=np.uint8))
        flushes, cpu = up.stats.flushes, up.stats.copy_cpu_s
        up.enqueue(buf, data, offset)  # 13 staging chunks, 4 per batch: sealed batches, fills on the threads
        # no flush: the submitter thread submits each sealed batch once its fills are done
        deadline = time.monotonic() + 30
        while up._sealed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not up._sealed, "sealed batches were left waiting for the enqueueing thread"
        assert up.stats.flushes - flushes >= size // uploader_module.AUTO_FLUSH_BYTES
        ticket = up.flush()  # the rest: the batch still open
        assert ticket.wait(30)
        got = device.read_buffer(buf)
        assert np.array_equal(got[offset:offset + size], data)
        assert not got[:offset].any() and not got[offset + size:].any()
        assert up.stats.copy_cpu_s > cpu  # the fills were timed


def test_pipelined_pieces_and_interleaved_flushes_read_back_exact(device: Any, many_threads: Any) -> None:
    up = many_threads
    pieces = [random_bytes(n, seed=n) for n in (3 * MiB + 1, 4 * MiB, 17 * MiB + 9, 700 << 10, 9 * MiB)]
    bufs = [device.create_buffer(p.size, STORAGE, name=f"piece{i}") for i, p in enumerate(pieces)]
    try:
        for i, (b, p) in enumerate(zip(bufs, pieces)):
            up.enqueue(b, p)
            if i == 2:
                up.flush()  # a flush in the middle: later batches still go in order
        up.flush().wait()
        for b, p in zip(bufs, pieces):
            assert np.array_equal(device.read_buffer(b), p), b.name
    finally:
        for b in bufs:
            b.destroy()


def test_direct_writes_on_the_fill_threads_are_waited_for(device: Any) -> None:
    """Large direct writes run on the fill threads (forced on here, as on a many-core host) and ``enqueue`` returns
    at once; a read, a flush, a staged copy or a retire of the destination waits for them."""
    up = device.uploader
    split, workers = up._split_direct, up._workers
    up._split_direct, up._workers = True, 16
    try:
        pieces = [random_bytes(n, seed=n) for n in (4 * MiB, 2 * MiB + 3, 9 * MiB + 77)]
        # host_visible: mapped on every device (host memory on a discrete GPU, like a ReBAR destination)
        bufs = [device.create_buffer(p.size + 64, STORAGE, strategy="host_visible", name=f"direct{i}")
                for i, p in enumerate(pieces)]
        try:
            assert all(b.host_visible for b in bufs)
            cpu = up.stats.copy_cpu_s
            for b, p in zip(bufs, pieces):
                up.enqueue(b, p, 64)
            assert up.has_pending and up.pending_for(bufs[1])
            # a read waits for the writes into it
            assert np.array_equal(device.read_buffer(bufs[1], pieces[1].size, 64), pieces[1])
            assert not up.has_pending and up.stats.copy_cpu_s > cpu
            # a staged copy enqueued after a direct write lands after it
            up.enqueue(bufs[0], pieces[2][:4 * MiB], 64)
            up.direct_writes = False
            up.enqueue(bufs[0], pieces[0][:1024], 64)
            up.direct_writes = True
            up.flush().wait()
            got = device.read_buffer(bufs[0], 4 * MiB, 64)
            assert np.array_equal(got[:1024], pieces[0][:1024]) and np.array_equal(got[1024:], pieces[2][1024:4 * MiB])
            # destroying a destination with writes still running waits for them (then the memory is freed)
            up.enqueue(bufs[2], pieces[2], 64)
            bufs[2].destroy()
            assert not up.pending_for(bufs[2])
        finally:
            for b in bufs:
                b.destroy()
    finally:
        up._split_direct, up._workers = split, workers
        up.direct_writes = True


@pytest.mark.parametrize("min_bytes", [4 * MiB, None])
def test_create_and_upload_routes_large_uploads_by_the_device_layout(min_bytes: int | None) -> None:
    """``create_and_upload`` with its default strategy: on a discrete GPU with a resizable BAR (the H200) an upload of
    at least ``rebar_upload_min_bytes`` lands in the BAR type (device-local and host-visible) and is written there by
    the fill threads; anywhere else (lavapipe: unified memory) and with the routing off it stays ``device_local``.
    Either way the bytes read back exact and the budget charges the buffer to a device-local heap."""
    from vixen_assets.memory.strategies import has_rebar
    from vixen_assets.testing import finish_test_device, open_test_device

    dev = open_test_device(rebar_upload_min_bytes=min_bytes)
    try:
        data = random_bytes(6 * MiB, 7)
        small = dev.create_and_upload("small", data[:MiB], STORAGE)
        big = dev.create_and_upload("big", data, STORAGE)
        routed = (min_bytes is not None and has_rebar(dev.info) and not dev.info.unified_memory
                  and dev.uploader.splits_direct_writes)
        assert big.strategy == ("rebar" if routed else "device_local") and small.strategy == "device_local"
        if routed:
            assert big.host_visible and dev.uploader.stats.direct_bytes >= data.size
        heap = dev.info.memory_types[big.allocation.block.type_index].heap
        assert dev.info.heaps[heap].device_local
        assert np.array_equal(dev.read_buffer(big), data) and np.array_equal(dev.read_buffer(small), data[:MiB])
        big.destroy()
        small.destroy()
    finally:
        finish_test_device(dev)
