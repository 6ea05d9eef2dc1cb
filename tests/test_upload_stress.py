"""Stress of ``BatchedUploader``'s pipelined staging path the way a discrete GPU's host runs it, forced on lavapipe:
16 real fill threads (``set_fill_threads``), a separate transfer queue (queue-family ownership transfers per batch),
a small staging quota (chunks are reused while earlier batches are in flight), sizes that are not multiples of the
fill slice or the staging chunk (partial last chunks and slices), destinations side by side in one ``VkBuffer``, and
flushes at random points. Every byte of every destination is read back and compared."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from vixen_assets.errors import ConfigError
from vixen_assets.testing import finish_test_device, open_test_device

KiB, MiB = 1 << 10, 1 << 20
STORAGE = "storage"
# non-multiples of the 1 MiB fill slice and the 4 MiB staging chunk, the benchmark's partial 100 MB tail, small
# packed pieces, pieces around the 512 KiB packing threshold
SIZES = (1, 15, 1000, 64 * KiB - 1, 512 * KiB, 512 * KiB + 1, MiB + 17, 2 * MiB - 3, 3531008, 4 * MiB,
         4 * MiB + 1, 9 * MiB + 77, 17 * MiB + 3)


@pytest.fixture
def pipelined(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A validated device with a forced separate transfer queue, 16 fill threads and a small staging quota: 8 MiB
    (less than one auto-flush batch: staging runs out and the enqueueing thread flushes) unless the test passes
    another (40 MiB: batches are sealed and submitted in the background; chunks are still reused)."""
    quota = getattr(request, "param", 8 * MiB)
    dev = open_test_device(separate_transfer_queue=True, staging_quota=quota)
    try:
        dev.uploader.set_fill_threads(16)
        yield dev
    finally:
        finish_test_device(dev)


def test_set_fill_threads_rejects_bad_counts(pipelined: Any) -> None:
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ConfigError, match="fill_threads"):
            pipelined.uploader.set_fill_threads(bad)
    assert pipelined.uploader.fill_threads == 16


def _round(dev: Any, rng: np.random.Generator, *, host_visible: bool) -> None:
    up = dev.uploader
    sizes = [int(s) for s in rng.permutation(np.array(SIZES * 2, dtype=np.int64))]
    data = np.frombuffer(rng.bytes(sum(sizes) + 64), dtype=np.uint8)
    strategy = "host_visible" if host_visible else "device_local"
    bufs, expect = [], []
    try:
        pos = 0
        for i, n in enumerate(sizes):
            offset = int(rng.integers(0, 3)) * 4  # some pieces land at an offset into their buffer
            b = dev.create_buffer(offset + n, STORAGE, strategy=strategy, name=f"stress{i}")
            bufs.append(b)
            src = data[pos:pos + n]
            if n >= 3 and rng.random() < 0.3:  # in two enqueues (adjacent: coalesced into one region)
                cut = n // 3
                up.enqueue(b, src[:cut], offset)
                up.enqueue(b, src[cut:], offset + cut)
            else:
                up.enqueue(b, src, offset)
            expect.append((offset, src))
            pos += n
            if rng.random() < 0.15:
                up.flush()  # a flush between pieces: later batches still land in order
        assert up.flush().wait(120)
        for b, (offset, want) in zip(bufs, expect):  # the bytes before ``offset`` were never written
            got = dev.read_buffer(b, want.size, offset)
            if not np.array_equal(got, want):
                bad = np.flatnonzero(got != want)
                pytest.fail(f"{b.name} ({b.size} bytes): {bad.size} bytes differ, first at {bad[0]}")
    finally:
        for b in bufs:
            b.destroy()


@pytest.mark.parametrize("pipelined", [8 * MiB, 40 * MiB], indirect=True, ids=["quota8M", "quota40M"])
@pytest.mark.parametrize("slice_mib", [4, 1])  # whole chunks (the default), slices (bench --fill-slice-mib 1)
@pytest.mark.parametrize("seed", [1, 2])
def test_staged_pieces_read_back_exact(pipelined: Any, seed: int, slice_mib: int,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import vixen_assets.transfer.uploader as uploader_module

    monkeypatch.setattr(uploader_module, "FILL_SLICE", slice_mib * MiB)
    up = pipelined.uploader
    up.direct_writes = False
    assert up.ownership_transfer
    flushes, transfers = up.stats.flushes, up.stats.ownership_transfers
    _round(pipelined, np.random.default_rng(seed), host_visible=False)
    assert up.stats.flushes - flushes > 4 and up.stats.ownership_transfers > transfers
    assert up.pool.pooled_bytes <= up.pool.quota  # the quota held: chunks were reused


def test_direct_and_staged_pieces_read_back_exact(pipelined: Any) -> None:
    """Host-visible destinations (like ReBAR): large direct writes run on the fill threads, small ones inline."""
    up = pipelined.uploader
    up.direct_writes = True
    direct = up.stats.direct_bytes
    _round(pipelined, np.random.default_rng(3), host_visible=True)
    assert up.stats.direct_bytes > direct


def test_direct_write_after_a_running_direct_write_lands_last(pipelined: Any) -> None:
    """A small direct write into a destination whose large direct write still runs on the fill threads waits for it
    (else the running slices overwrite the newer bytes)."""
    up = pipelined.uploader
    up.direct_writes = True
    rng = np.random.default_rng(4)
    big = np.frombuffer(rng.bytes(8 * MiB), dtype=np.uint8)
    patch = np.frombuffer(rng.bytes(1000), dtype=np.uint8)
    with pipelined.create_buffer(8 * MiB, STORAGE, strategy="host_visible", name="patched") as buf:
        at = 8 * MiB - 5000  # in the last slice: the one least likely to be written already
        for _ in range(3):
            up.enqueue(buf, big)  # split over the fill threads, enqueue returns at once
            up.enqueue(buf, patch, at)  # inline: must land after the slice under it
            up.flush().wait()
            got = pipelined.read_buffer(buf)
            assert np.array_equal(got[at:at + 1000], patch)
            assert np.array_equal(got[:at], big[:at]) and np.array_equal(got[at + 1000:], big[at + 1000:])


def test_direct_write_after_a_pending_staged_copy_lands_last(pipelined: Any) -> None:
    up = pipelined.uploader
    rng = np.random.default_rng(5)
    old = np.frombuffer(rng.bytes(2 * MiB), dtype=np.uint8)
    new = np.frombuffer(rng.bytes(3000), dtype=np.uint8)
    with pipelined.create_buffer(2 * MiB, STORAGE, strategy="host_visible", name="restaged") as buf:
        up.direct_writes = False
        up.enqueue(buf, old)  # staged, not yet submitted
        up.direct_writes = True
        up.enqueue(buf, new, 100)  # a direct write: the staged copy must not land over it later
        up.flush().wait()
        got = pipelined.read_buffer(buf)
        assert np.array_equal(got[100:3100], new)
        assert np.array_equal(got[:100], old[:100]) and np.array_equal(got[3100:], old[3100:])


@pytest.mark.parametrize("pipelined", [40 * MiB], indirect=True)
def test_read_while_a_sealed_batch_is_submitted_waits_for_it(pipelined: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read (no flush) while the submitter thread is submitting the sealed batch that writes the buffer: the read
    must see the batch as pending and wait for it (it read stale bytes when the batch left ``_sealed`` before its
    ``last_use`` was set). The window is widened by delaying that submission."""
    import threading
    import time

    import vixen_assets.transfer.uploader as uploader_module

    up = pipelined.uploader
    up.direct_writes = False
    size = uploader_module.AUTO_FLUSH_BYTES  # exactly one batch: it is sealed, the open batch stays empty
    data = np.frombuffer(np.random.default_rng(6).bytes(size), dtype=np.uint8)
    entered, main = threading.Event(), threading.current_thread()
    original, copy = up._submit_batch, uploader_module._timed_copy

    def slow_copy(dst: Any, src: Any) -> float:  # the fills end after ``enqueue`` returned: not submitted by it
        time.sleep(0.05)
        return copy(dst, src)

    def slow_submit(batch: Any, prev: Any = None) -> Any:
        if threading.current_thread() is not main:
            entered.set()
            time.sleep(0.3)
        return original(batch, prev)

    with pipelined.create_buffer(size, STORAGE, name="sealed") as buf:
        pipelined.upload(buf, np.zeros(size, dtype=np.uint8))
        up.flush().wait()
        monkeypatch.setattr(up, "_submit_batch", slow_submit)
        monkeypatch.setattr(uploader_module, "_timed_copy", slow_copy)
        up.enqueue(buf, data)
        assert entered.wait(30), "the sealed batch was not submitted in the background"
        got = pipelined.read_buffer(buf)
        monkeypatch.undo()
        up.flush().wait()
        assert np.array_equal(got, data)
