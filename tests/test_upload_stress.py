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
def pipelined() -> Iterator[Any]:
    """A validated device with a forced separate transfer queue, an 8 MiB staging quota and 16 fill threads."""
    dev = open_test_device(separate_transfer_queue=True, staging_quota=8 * MiB)
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


@pytest.mark.parametrize("seed", [1, 2])
def test_staged_pieces_read_back_exact(pipelined: Any, seed: int) -> None:
    up = pipelined.uploader
    up.direct_writes = False
    assert up.ownership_transfer
    flushes, transfers = up.stats.flushes, up.stats.ownership_transfers
    _round(pipelined, np.random.default_rng(seed), host_visible=False)
    assert up.stats.flushes - flushes > 4 and up.stats.ownership_transfers > transfers
    assert up.pool.pooled_bytes <= 8 * MiB  # the quota held: chunks were reused


def test_direct_and_staged_pieces_read_back_exact(pipelined: Any) -> None:
    """Host-visible destinations (like ReBAR): large direct writes run on the fill threads, small ones inline."""
    up = pipelined.uploader
    up.direct_writes = True
    direct = up.stats.direct_bytes
    _round(pipelined, np.random.default_rng(3), host_visible=True)
    assert up.stats.direct_bytes > direct
