"""Memory strategies: which Vulkan memory type a buffer or image lands in.

``device_local``  fastest for the GPU; not necessarily host-visible (discrete GPUs).
``host_visible``  mappable, coherent host memory (staging); prefers a non-device-local type on discrete GPUs.
``host_cached``   mappable and cached: fast host reads (readback).
``auto``          host-visible device-local memory on unified-memory devices (lavapipe, integrated GPUs) and, when
                  ``rebar=True``, on a resizable-BAR heap; plain ``device_local`` otherwise.
"""

from __future__ import annotations

from ..errors import ConfigError, UnsupportedFeatureError
from ..vk import DeviceInfo
from ..vk.enums import MemoryProperty

DEVICE_LOCAL = MemoryProperty.DEVICE_LOCAL
HOST_VISIBLE = MemoryProperty.HOST_VISIBLE
HOST_COHERENT = MemoryProperty.HOST_COHERENT
HOST_CACHED = MemoryProperty.HOST_CACHED

STRATEGIES = ("device_local", "host_visible", "host_cached", "auto")


def _rank(info: DeviceInfo, type_bits: int, required: int, preferred: int, avoided: int) -> int | None:
    best, best_score = None, -1
    for t in info.memory_types:
        if not (type_bits >> t.index) & 1 or (t.flags & required) != required:
            continue
        if info.heaps[t.heap].size == 0:
            continue
        score = 4 * bin(t.flags & preferred).count("1") - 2 * bin(t.flags & avoided).count("1") + 8
        if score > best_score:
            best, best_score = t.index, score
    return best


def has_rebar(info: DeviceInfo) -> bool:
    """True when a DEVICE_LOCAL|HOST_VISIBLE type covers a device-local heap larger than 256 MiB (resizable BAR)."""
    for t in info.memory_types:
        if t.flags & (DEVICE_LOCAL | HOST_VISIBLE) == DEVICE_LOCAL | HOST_VISIBLE and info.heaps[t.heap].size > 256 << 20:
            return True
    return False


def find_memory_type(info: DeviceInfo, type_bits: int, strategy: str, *, rebar: bool = False) -> int:
    """Return the memory type index for ``strategy`` among those allowed by ``type_bits``."""
    if strategy == "auto":
        if info.unified_memory or (rebar and has_rebar(info)):
            found = _rank(info, type_bits, DEVICE_LOCAL | HOST_VISIBLE, HOST_COHERENT, 0)
            if found is not None:
                return found
        strategy = "device_local"
    if strategy == "device_local":
        found = _rank(info, type_bits, DEVICE_LOCAL, 0, HOST_VISIBLE if not info.unified_memory else 0)
    elif strategy == "host_visible":
        found = _rank(info, type_bits, HOST_VISIBLE | HOST_COHERENT, 0, DEVICE_LOCAL | HOST_CACHED)
        if found is None:
            found = _rank(info, type_bits, HOST_VISIBLE, HOST_COHERENT, 0)
    elif strategy == "host_cached":
        found = _rank(info, type_bits, HOST_VISIBLE, HOST_CACHED | HOST_COHERENT, DEVICE_LOCAL)
    elif strategy == "host_overflow":
        found = _rank(info, type_bits, HOST_VISIBLE, HOST_COHERENT, DEVICE_LOCAL)
    else:
        raise ConfigError(f"unknown memory strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if found is None:
        raise UnsupportedFeatureError(f"{info.name}: no memory type fits strategy {strategy!r} (allowed types 0b{type_bits:b})")
    return found
