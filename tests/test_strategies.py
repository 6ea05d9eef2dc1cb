"""``memory.strategies`` on the memory layouts the project runs on, without a GPU: lavapipe's one unified heap and
the NVIDIA H200's discrete layout (as reported by its driver, 580.159), plus what the budget charges where."""

from __future__ import annotations

import pytest

from vixen_assets.errors import ConfigError, UnsupportedFeatureError
from vixen_assets.memory.budget import BudgetManager, HeapBudgetInput
from vixen_assets.memory.strategies import find_memory_type, has_rebar, upload_strategy
from vixen_assets.vk.physical import DeviceInfo, HeapInfo, MemoryTypeInfo

GiB = 1 << 30
MiB = 1 << 20
DL, HV, HC, HCACHED = 0x1, 0x2, 0x4, 0x8


def device_info(heaps: list[tuple[int, bool]], types: list[tuple[int, int]]) -> DeviceInfo:
    return DeviceInfo(
        index=0, name="test", device_type="discrete-gpu", api_version="1.4", driver="test", vendor_id=0, device_id=0,
        heaps=tuple(HeapInfo(i, size, local, int(local)) for i, (size, local) in enumerate(heaps)),
        memory_types=tuple(MemoryTypeInfo(i, heap, flags, ()) for i, (heap, flags) in enumerate(types)),
        queue_families=(), features={})


#: heap 0: 140 GiB device-local; heap 1: 94 GiB host. Types: 0 host, 1 device-local, 2 host-visible|coherent,
#: 3 + cached, 4 device-local|host-visible|coherent over the whole VRAM (resizable BAR)
H200 = device_info([(140 * GiB, True), (94 * GiB, False)],
                   [(1, 0), (0, DL), (1, HV | HC), (1, HV | HC | HCACHED), (0, DL | HV | HC)])
LAVAPIPE = device_info([(16 * GiB, True)], [(0, DL | HV | HC | HCACHED)])
ALL = (1 << 5) - 1


def test_h200_layout() -> None:
    assert not H200.unified_memory and has_rebar(H200)
    assert find_memory_type(H200, ALL, "device_local") == 1  # VRAM, not the BAR type
    assert find_memory_type(H200, ALL, "host_visible") == 2  # staging: host heap, write-combined
    assert find_memory_type(H200, ALL, "host_cached") == 3  # readback: host heap, cached
    assert find_memory_type(H200, ALL, "auto") == 1  # the BAR only when asked for
    assert find_memory_type(H200, ALL, "auto", rebar=True) == 4
    assert find_memory_type(H200, 1 << 4, "device_local") == 4  # the only type the resource allows
    with pytest.raises(UnsupportedFeatureError, match="host_visible"):
        find_memory_type(H200, 1 << 1, "host_visible")
    with pytest.raises(ConfigError, match="unknown memory strategy"):
        find_memory_type(H200, ALL, "fast")


def test_lavapipe_layout_uses_its_one_type_for_everything() -> None:
    assert LAVAPIPE.unified_memory and not has_rebar(device_info([(128 * MiB, True)], [(0, DL | HV | HC)]))
    for strategy in ("device_local", "host_visible", "host_cached", "auto"):
        assert find_memory_type(LAVAPIPE, 1, strategy) == 0


def test_budget_on_the_h200_layout_charges_each_heap() -> None:
    """What the NVIDIA-aware tests rely on: a host_visible buffer is charged to the host heap, which ``used`` (the
    device-local heap) does not include; staging counts against the device-local budget's staging quota."""
    b = BudgetManager([HeapBudgetInput(140 * GiB), HeapBudgetInput(94 * GiB, device_local=False)],
                      limit_bytes=64 * MiB, warning_share=0.5)
    assert b.primary_heap == 0 and b.limit == 64 * MiB and b.limits[1] == int(0.9 * 94 * GiB)
    heap = H200.memory_types[find_memory_type(H200, ALL, "host_visible")].heap
    assert b.reserve(1, heap=heap, category="t") == 1
    assert b.used == 0 and b.heap_used(1) == 1 and b.stats()["total_used"] == 1
    b.acquire_staging(4 * MiB)
    assert b.used == 4 * MiB and b.heap_used(1) == 1
    b.release_staging(4 * MiB)
    b.release(1, heap=1, category="t")
    assert b.stats()["total_used"] == 0


#: a discrete GPU without resizable BAR: the host sees a 256 MiB window of VRAM only
SMALL_BAR = device_info([(24 * GiB, True), (64 * GiB, False), (256 * MiB, True)],
                        [(0, DL), (1, HV | HC), (1, HV | HC | HCACHED), (2, DL | HV | HC)])


def test_rebar_strategy_picks_the_bar_type_only_where_it_covers_the_vram() -> None:
    assert find_memory_type(H200, ALL, "rebar") == 4
    assert find_memory_type(H200, ALL & ~(1 << 4), "rebar") == 1  # the resource cannot live there: plain VRAM
    assert not has_rebar(SMALL_BAR) and find_memory_type(SMALL_BAR, 0b1111, "rebar") == 0
    assert find_memory_type(LAVAPIPE, 1, "rebar") == 0


@pytest.mark.parametrize("info, nbytes, strategy, min_bytes, parallel, want", [
    (H200, 64 * MiB, "device_local", 32 * MiB, True, "rebar"),        # large, default strategy: the BAR
    (H200, 32 * MiB, "device_local", 32 * MiB, True, "rebar"),        # the threshold itself is included
    (H200, 32 * MiB - 1, "device_local", 32 * MiB, True, "device_local"),
    (H200, 1 << 30, "device_local", None, True, "device_local"),      # turned off
    (H200, 1 << 30, "device_local", 32 * MiB, False, "device_local"),  # one fill thread: staging is faster
    (H200, 1 << 30, "host_visible", 32 * MiB, True, "host_visible"),  # an explicit strategy is kept
    (SMALL_BAR, 1 << 30, "device_local", 32 * MiB, True, "device_local"),
    (LAVAPIPE, 1 << 30, "device_local", 32 * MiB, True, "device_local"),  # unified: host-visible already
])
def test_upload_strategy_routes_large_default_uploads_to_the_bar(info: DeviceInfo, nbytes: int, strategy: str,
                                                                 min_bytes: int | None, parallel: bool,
                                                                 want: str) -> None:
    assert upload_strategy(info, nbytes, strategy, min_bytes=min_bytes, parallel_writes=parallel) == want
