"""``TypedCacher`` (``vixen_assets.cachers.base``) with a tiny test cacher on the real driver.

``BlobCacher`` uploads byte blobs, one buffer each, and records what it built and destroyed, so the tests can
check dedup by key (hits and misses), reference counts, LRU eviction (on ``evict()`` and automatically when the
budget crosses its warning threshold), exception safety, and that allocations are charged to the cacher's name in
the budget's per-category stats.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import vixen_assets
from vixen_assets.cachers import TypedCacher
from vixen_assets.errors import PluginError
from vixen_assets.testing import finish_test_device, open_test_device

MiB = 1 << 20


@dataclass(frozen=True, eq=False)
class Blob:
    """A source: bytes to upload."""

    data: np.ndarray


@dataclass(eq=False)
class GpuBlob:
    """An entry: the buffer holding a blob."""

    key: str
    buffer: Any


class BlobCacher(TypedCacher[Blob, GpuBlob]):
    """Uploads each unique blob into its own buffer; ``fail_after`` makes ``build`` raise after that many buffers."""

    name = "blob"

    def __init__(self, device: Any, **kwargs: Any) -> None:
        super().__init__(device, **kwargs)
        self.batches: list[list[str]] = []   # keys of each build call
        self.destroyed: list[str] = []       # keys in destruction order
        self.fail_after: int | None = None

    def key_for(self, source: Blob) -> str:
        return hashlib.blake2b(source.data.tobytes(), digest_size=16).hexdigest()

    def build(self, sources: Sequence[Blob], group: Any) -> list[GpuBlob]:
        self.batches.append([self.key_for(s) for s in sources])
        out = []
        for i, src in enumerate(sources):
            if self.fail_after is not None and i == self.fail_after:
                raise RuntimeError(f"build failed after {i} buffers")
            buf = group.create_buffer(src.data.nbytes, "storage", name=f"blob{i}", category=self.name)
            self.device.uploader.enqueue(buf, src.data)
            out.append(GpuBlob(self.key_for(src), buf))
        return out

    def entry_nbytes(self, entry: GpuBlob) -> int:
        return int(entry.buffer.size)

    def destroy_entry(self, entry: GpuBlob) -> None:
        self.destroyed.append(entry.key)
        entry.buffer.destroy()


def blob(seed: int, nbytes: int = 256) -> Blob:
    """Reproducible random bytes."""
    return Blob(np.frombuffer(np.random.default_rng(seed).bytes(nbytes), dtype=np.uint8).copy())


def settle(device: Any) -> None:
    """Submit pending uploads, wait for them, and run deferred destruction."""
    device.flush().wait()
    device.context.lifetime.drain()


def category_bytes(device: Any, name: str = "blob") -> int:
    """Bytes the budget charges to ``name``."""
    return int(device.budget.stats()["categories"].get(name, {}).get("bytes", 0))


@pytest.fixture
def cacher(device: Any) -> BlobCacher:
    """A ``BlobCacher`` on the validated device (cleared at device close)."""
    return BlobCacher(device)


# ---------------------------------------------------------------- dedup, refcounts, release


def test_identical_sources_are_built_once(device: Any, cacher: BlobCacher) -> None:
    a, a_again, b = blob(1), blob(1), blob(2)
    ea, ea2, eb = cacher.get_many([a, a_again, b])
    settle(device)
    assert ea is ea2 and ea is not eb
    assert cacher.batches == [[ea.key, eb.key]]  # one build call for the missing ones, each key once
    assert (cacher.stats.misses, cacher.stats.hits) == (2, 1)
    assert cacher.stats.entries == 2 and cacher.stats.bytes == 2 * 256
    np.testing.assert_array_equal(device.read_buffer(ea.buffer), a.data)
    np.testing.assert_array_equal(device.read_buffer(eb.buffer), b.data)

    assert cacher.get(blob(1)) is ea  # later requests hit the cache
    assert (cacher.stats.misses, cacher.stats.hits) == (2, 2)
    assert len(cacher.batches) == 1
    assert cacher.stats_dict()["hits"] == 2


def test_keys_given_by_the_caller_are_used(cacher: BlobCacher) -> None:
    a = blob(1)
    [e] = cacher.get_many([a], keys=["my-key"])
    assert "my-key" in cacher and cacher.refcount("my-key") == 1
    assert cacher.acquire_keys(["my-key"]) == [e]  # a warm reload re-acquires by key
    assert cacher.refcount("my-key") == 2
    assert cacher.acquire_keys(["my-key", "gone"]) is None
    assert cacher.refcount("my-key") == 2  # nothing acquired when any key is missing


def test_refcounts_and_release(cacher: BlobCacher) -> None:
    ea, _, eb = cacher.get_many([blob(1), blob(1), blob(2)])
    assert cacher.refcount(ea.key) == 2 and cacher.refcount(eb.key) == 1
    assert cacher.refcount("unknown") == -1
    cacher.release(ea.key)
    cacher.release(ea.key)
    assert cacher.refcount(ea.key) == 0
    assert ea.key in cacher and len(cacher) == 2  # unreferenced entries stay cached ...
    assert ea.buffer.alive
    with pytest.raises(KeyError, match="no reference held"):
        cacher.release(ea.key)  # ... and one release too many is an error
    with pytest.raises(KeyError):
        cacher.release("unknown")


# ---------------------------------------------------------------- LRU eviction


def test_evict_destroys_unreferenced_entries_least_recently_used_first(device: Any, cacher: BlobCacher) -> None:
    keys = {}
    for name, seed in (("a", 1), ("b", 2), ("c", 3), ("held", 4)):
        keys[name] = cacher.get(blob(seed)).key
    for name in ("a", "b", "c"):
        cacher.release(keys[name])
    cacher.get(blob(1))  # touch "a": the LRU order of unreferenced entries is now b, c, a
    cacher.release(keys["a"])
    settle(device)
    before = category_bytes(device)

    assert cacher.evict(1) == 1  # at least one byte: the least recently used entry
    assert cacher.destroyed == [keys["b"]]
    assert cacher.evict(256 + 1) == 2
    assert cacher.destroyed == [keys["b"], keys["c"], keys["a"]]
    assert cacher.evict() == 0  # the referenced entry is never evicted
    assert keys["held"] in cacher and cacher.refcount(keys["held"]) == 1
    assert (cacher.stats.evictions, cacher.stats.evicted_bytes) == (3, 3 * 256)
    assert (cacher.stats.entries, cacher.stats.bytes) == (1, 256)
    settle(device)
    assert category_bytes(device) == before - 3 * 256  # the memory went back to the budget

    cacher.release(keys["held"])
    assert cacher.evict() == 1
    assert len(cacher) == 0


def test_evicted_entry_is_rebuilt_on_next_use(device: Any, cacher: BlobCacher) -> None:
    a = blob(7)
    first = cacher.get(a)
    cacher.release(first.key)
    cacher.evict()
    again = cacher.get(a)
    settle(device)
    assert again is not first and again.key == first.key
    assert cacher.stats.misses == 2
    np.testing.assert_array_equal(device.read_buffer(again.buffer), a.data)


@pytest.fixture(params=["direct", "staging"])
def small_device(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A validated device with a 64 MiB budget and a 32 MiB warning threshold (exact bytes on any heap size).

    ``staging``: uploads go through the staging pool even where device-local memory is host-visible (lavapipe), as
    they always do on a discrete GPU; the pool then grows by the tiers the uploads take, and staging memory is
    charged to the device budget (``BudgetManager.acquire_staging``).
    """
    dev = open_test_device(budget=vixen_assets.BudgetOptions(limit_bytes=64 * MiB, warning_fraction=0.5))
    try:
        dev.uploader.direct_writes = request.param == "direct"
        yield dev
    finally:
        finish_test_device(dev)


def test_crossing_the_warning_threshold_evicts_lru_unreferenced_entries(small_device: Any) -> None:
    dev = small_device
    size = 4 * MiB
    cacher = BlobCacher(dev)
    threshold = dev.budget.warning_threshold
    assert threshold == 32 * MiB

    held = cacher.get(blob(100, size))  # the oldest entry, but referenced: never evicted
    settle(dev)
    # what the device holds besides the entries, measured after the first upload: a staged upload (discrete GPUs)
    # grew the staging pool by the 4 MiB tier it took, and staging is charged to the device budget
    staging = category_bytes(dev, "staging")
    baseline = dev.budget.used - held.buffer.nbytes
    # how many 4 MiB entries fit below the threshold, and how many the crossing one forces out
    below = (threshold - baseline - 1) // size
    assert below >= 4, "the device already uses too much for this test"
    crossing_used = baseline + (below + 1) * size
    expect_evicted = max(1, math.ceil((crossing_used - threshold) / size))

    olds = []
    for seed in range(below - 1):
        e = cacher.get(blob(seed, size))
        settle(dev)
        cacher.release(e.key)
        olds.append(e.key)
    assert dev.budget.used < threshold and cacher.stats.evictions == 0
    # touch the first old entry: the LRU order becomes olds[1:] + olds[:1]
    cacher.release(cacher.get(blob(0, size)).key)
    lru = olds[1:] + olds[:1]

    new = cacher.get(blob(1000, size))  # this allocation crosses the threshold
    settle(dev)

    assert cacher.stats.evictions == expect_evicted
    assert cacher.destroyed == lru[:expect_evicted]
    assert held.key in cacher and new.key in cacher
    assert all(k in cacher for k in lru[expect_evicted:])
    assert dev.budget.used < threshold
    assert dev.budget.stats()["warnings"] >= 1
    assert category_bytes(dev, "staging") == staging, "the staging pool reused its buffers after the first upload"
    np.testing.assert_array_equal(dev.read_buffer(new.buffer, 64), blob(1000, size).data[:64])


def test_reaching_the_threshold_exactly_evicts_only_what_is_needed(small_device: Any) -> None:
    dev = small_device
    cacher = BlobCacher(dev)
    olds = []
    for seed in range(3):
        e = cacher.get(blob(seed, 4 * MiB))
        settle(dev)
        cacher.release(e.key)
        olds.append(e.key)
    exact = dev.budget.warning_threshold - dev.budget.used
    assert exact > 0
    cacher.get(blob(99, exact))  # usage lands exactly on the threshold: the warning fires, one entry goes
    settle(dev)
    assert cacher.destroyed == olds[:1]
    assert dev.budget.used < dev.budget.warning_threshold


# ---------------------------------------------------------------- exception safety


def test_failed_build_leaves_no_entry_and_no_memory(device: Any, cacher: BlobCacher) -> None:
    settle(device)
    baseline_used = device.budget.used
    baseline_live = len(device.live_resources())
    cacher.fail_after = 2  # two buffers made (uploads enqueued), then the build raises
    with pytest.raises(RuntimeError, match="build failed after 2 buffers"):
        cacher.get_many([blob(1), blob(2), blob(3)])
    settle(device)
    assert len(cacher) == 0
    assert cacher.stats.failed_builds == 1
    assert (cacher.stats.entries, cacher.stats.bytes, cacher.stats.misses) == (0, 0, 0)
    assert category_bytes(device) == 0
    assert device.budget.used == baseline_used
    assert len(device.live_resources()) == baseline_live

    cacher.fail_after = None  # the device and the cacher stay usable
    a = blob(1)
    e = cacher.get(a)
    settle(device)
    np.testing.assert_array_equal(device.read_buffer(e.buffer), a.data)


def test_build_returning_the_wrong_count_is_an_error_and_leaks_nothing(device: Any, cacher: BlobCacher) -> None:
    class Short(BlobCacher):
        name = "short"

        def build(self, sources: Sequence[Blob], group: Any) -> list[GpuBlob]:
            return super().build(sources, group)[:-1]

    short = Short(device)
    with pytest.raises(PluginError, match="returned 1 entries for 2 sources"):
        short.get_many([blob(1), blob(2)])
    settle(device)
    assert len(short) == 0
    assert category_bytes(device, "short") == 0


# ---------------------------------------------------------------- stats and budget categories


def test_allocations_are_tagged_with_the_cacher_name(device: Any, cacher: BlobCacher) -> None:
    cacher.get_many([blob(1, 1000), blob(2, 3000)])
    settle(device)
    cats = device.budget.stats()["categories"]
    assert cats["blob"]["bytes"] == cacher.stats.bytes == 4000
    assert cats["blob"]["count"] == 2


def test_subclass_without_a_name_is_refused(device: Any) -> None:
    class Nameless(BlobCacher):
        name = ""

    with pytest.raises(PluginError, match="must set a class attribute 'name'"):
        Nameless(device)


def test_clear_at_device_close_destroys_every_entry() -> None:
    dev = open_test_device()
    try:
        cacher = BlobCacher(dev)
        cacher.get_many([blob(1), blob(2)])  # still referenced at close
    finally:
        finish_test_device(dev)  # fails the test on leaks
    assert len(cacher) == 0 and len(cacher.destroyed) == 2
