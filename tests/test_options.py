"""``BudgetOptions`` (``vixen_assets.memory.options``) and how ``open_device`` takes it.

Every bad option raises ``ConfigError`` naming it, before any Vulkan call; the earlier keywords of ``open_device``
still work; a byte limit needs no look at the device first; the warning threshold is a share of the limit in force,
so a cache evicts before the limit with the default warning fraction, with a fraction and with a byte limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import FrozenInstanceError, dataclass
from typing import Any

import numpy as np
import pytest

import vixen_assets
from vixen_assets.cachers import TypedCacher
from vixen_assets.device import DeviceOptions, device_options
from vixen_assets.errors import ConfigError, VixenError
from vixen_assets.memory.group import AllocationGroup
from vixen_assets.memory.options import BudgetOptions
from vixen_assets.testing import finish_test_device, open_test_device

MiB = 1 << 20


@pytest.mark.parametrize(("kwargs", "option"), [
    ({"fraction": -0.1}, "fraction"),
    ({"fraction": 1.5}, "fraction"),
    ({"fraction": "half"}, "fraction"),
    ({"warning_fraction": 0.0}, "warning_fraction"),
    ({"warning_fraction": 1.01}, "warning_fraction"),
    ({"limit_bytes": 0}, "limit_bytes"),
    ({"limit_bytes": -5 * MiB}, "limit_bytes"),
    ({"limit_bytes": 1.5}, "limit_bytes"),
    ({"staging_quota": -1}, "staging_quota"),
    ({"limit_bytes": MiB, "staging_quota": 2 * MiB}, "staging_quota"),
    ({"overflow": "swap"}, "overflow"),
    ({"staging_timeout_s": -1.0}, "staging_timeout_s"),
])
def test_bad_options_raise_config_error_naming_the_option(kwargs: dict[str, Any], option: str) -> None:
    with pytest.raises(ConfigError) as info:
        BudgetOptions(**kwargs)
    assert info.value.option == option and option in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, VixenError)


def test_options_are_frozen_and_normalised() -> None:
    opts = BudgetOptions(limit_bytes=64.0 * MiB, staging_quota=MiB)  # type: ignore[arg-type]
    assert opts.limit_bytes == 64 * MiB and isinstance(opts.limit_bytes, int)
    with pytest.raises(FrozenInstanceError):
        opts.fraction = 0.5  # type: ignore[misc]
    assert opts.with_changes(overflow="host").overflow == "host" and opts.overflow == "error"
    assert BudgetOptions.from_mib(1.5).limit_bytes == 3 * MiB // 2
    for bad in (-5, 0, float("nan")):
        with pytest.raises(ConfigError, match="limit_bytes|MiB"):
            BudgetOptions.from_mib(bad)


def test_old_keywords_map_into_budget_options() -> None:
    opts = device_options(budget_fraction=0.5, warning_fraction=0.25, staging_quota=MiB, overflow="host",
                          staging_timeout_s=2.0)
    assert opts.budget == BudgetOptions(fraction=0.5, warning_fraction=0.5, staging_quota=MiB, overflow="host",
                                        staging_timeout_s=2.0)  # the old warning was a share of the heap
    assert device_options().budget == BudgetOptions()
    with pytest.raises(ConfigError, match="budget_fractoin"):
        device_options(budget_fractoin=0.5)
    with pytest.raises(ConfigError) as info:
        device_options(budget_fraction=2.0)
    assert info.value.option == "fraction"
    with pytest.raises(ConfigError) as info:
        DeviceOptions(block_size=-1)
    assert info.value.option == "block_size"
    for bad in (0, -1, 1.5, True, "32M"):
        with pytest.raises(ConfigError) as info:
            DeviceOptions(rebar_upload_min_bytes=bad)  # type: ignore[arg-type]
        assert info.value.option == "rebar_upload_min_bytes"
    assert device_options(rebar_upload_min_bytes=None).rebar_upload_min_bytes is None
    assert DeviceOptions().rebar_upload_min_bytes == 32 * MiB


def test_bad_options_fail_before_vulkan(monkeypatch: pytest.MonkeyPatch) -> None:
    import vixen_assets.device as device_mod

    def no_instance(*_a: Any, **_k: Any) -> None:
        raise AssertionError("a Vulkan instance was created for a bad option")

    monkeypatch.setattr(device_mod, "Instance", no_instance)
    with pytest.raises(ConfigError):
        vixen_assets.open_device(budget=BudgetOptions(), budget_fraction=-1)
    with pytest.raises(ConfigError):
        vixen_assets.open_device(overflow="nope")


def _heap() -> int:
    info = vixen_assets.list_devices()[0]
    return max(h.size for h in info.heaps if h.device_local)


@pytest.mark.parametrize("how", ["limit_bytes", "budget_fraction", "from_mib"])
def test_limit_and_warning_threshold(how: str) -> None:
    heap = _heap()
    if how == "limit_bytes":
        dev = open_test_device(budget=BudgetOptions(limit_bytes=64 * MiB))
    elif how == "from_mib":
        dev = open_test_device(budget=BudgetOptions.from_mib(64))
    else:
        dev = open_test_device(budget_fraction=64 * MiB / heap)
    try:
        assert abs(dev.budget.limit - 64 * MiB) <= 1
        # the default warning fraction (0.8) is a share of the limit in force, not of the heap
        assert dev.budget.warning_threshold == int(0.8 * dev.budget.limit)
        assert dev.budget.warning_threshold < dev.budget.limit
        assert dev.options.budget.warning_fraction == 0.8
    finally:
        finish_test_device(dev)


def test_default_budget_threshold_is_a_share_of_the_limit() -> None:
    dev = open_test_device()
    try:
        b = dev.budget
        assert b.limit == int(0.9 * _heap()) or b.limit < 0.9 * _heap()  # the EXT budget may be tighter
        assert b.warning_threshold == int(0.8 * b.limit)
    finally:
        finish_test_device(dev)


# ---------------------------------------------------------------- eviction before the limit


@dataclass(eq=False)
class _Entry:
    key: str
    buffer: Any


class _BlobCacher(TypedCacher[np.ndarray, _Entry]):
    name = "blob"

    def key_for(self, source: np.ndarray) -> str:
        return hashlib.blake2b(source.tobytes(), digest_size=16).hexdigest()

    def build(self, sources: Sequence[np.ndarray], group: AllocationGroup) -> list[_Entry]:
        out = []
        for src in sources:
            buf = group.create_buffer(src.nbytes, "storage", name="blob", category=self.name)
            self.device.uploader.enqueue(buf, src)
            out.append(_Entry(self.key_for(src), buf))
        return out

    def entry_nbytes(self, entry: _Entry) -> int:
        return int(entry.buffer.size)

    def destroy_entry(self, entry: _Entry) -> None:
        entry.buffer.destroy()


@pytest.mark.parametrize("how", ["default_warning_with_fraction", "limit_bytes"])
def test_cache_evicts_before_the_limit(how: str) -> None:
    """With the default warning fraction and a tight budget (the CLI's ``--budget-mb``), unreferenced cache
    entries are evicted at 80% of the limit, so loading far more than the limit in total never fails."""
    if how == "limit_bytes":
        dev = open_test_device(budget=BudgetOptions(limit_bytes=48 * MiB, staging_quota=4 * MiB))
    else:
        dev = open_test_device(budget_fraction=48 * MiB / _heap(), staging_quota=4 * MiB)
    try:
        cacher = _BlobCacher(dev)
        rng = np.random.default_rng(7)
        size = 4 * MiB
        held = rng.integers(0, 255, size, dtype=np.uint8)
        keep = cacher.get(held)  # referenced: never evicted
        for i in range(40):  # 160 MiB through a 48 MiB budget
            data = rng.integers(0, 255, size, dtype=np.uint8)
            e = cacher.get(data)
            dev.flush().wait()
            np.testing.assert_array_equal(dev.read_buffer(e.buffer, 4096), data[:4096])
            cacher.release(e.key)
            assert dev.budget.used <= dev.budget.limit
        assert cacher.stats.evictions >= 25
        assert dev.budget.stats()["warnings"] >= 1
        assert keep.key in cacher
        np.testing.assert_array_equal(dev.read_buffer(keep.buffer), held)
        cacher.release(keep.key)
    finally:
        finish_test_device(dev)
