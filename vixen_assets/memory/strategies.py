"""Memory strategies: which Vulkan memory type a buffer or image lands in.

``device_local``  fastest for the GPU; not necessarily host-visible (discrete GPUs).
``host_visible``  mappable, coherent host memory (staging); prefers a non-device-local type on discrete GPUs.
``host_cached``   mappable and cached: fast host reads (readback).
``auto``          host-visible device-local memory on unified-memory devices (lavapipe, integrated GPUs) and, when
                  ``rebar=True``, on a resizable-BAR heap; plain ``device_local`` otherwise.
``rebar``         device-local memory the host writes directly: the resizable-BAR type of a discrete GPU that has one
                  (a BAR over more than 256 MiB of VRAM), else ``device_local``. ``Device.create_and_upload`` picks it
                  for large uploads (:func:`upload_strategy`): the bytes go straight over PCIe from the fill threads,
                  no staging copy and no DMA submission.
"""

from __future__ import annotations

from ..errors import ConfigError, UnsupportedFeatureError
from ..vk import DeviceInfo
from ..vk.enums import MemoryProperty

DEVICE_LOCAL = MemoryProperty.DEVICE_LOCAL
HOST_VISIBLE = MemoryProperty.HOST_VISIBLE
HOST_COHERENT = MemoryProperty.HOST_COHERENT
HOST_CACHED = MemoryProperty.HOST_CACHED

STRATEGIES = ("device_local", "host_visible", "host_cached", "auto", "rebar")

#: the smallest ``create_and_upload`` routed to the resizable BAR by default (``DeviceOptions.rebar_upload_min_bytes``):
#: on the H200, 16 threads writing over the BAR beat the staging path from tens of MiB on, while 4 MiB pieces are
#: about even (docs/nvidia.md has the figures)
REBAR_UPLOAD_MIN_BYTES = 32 << 20


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


def _rebar_types(info: DeviceInfo) -> int:
    """Bit mask of the DEVICE_LOCAL|HOST_VISIBLE types on a device-local heap larger than 256 MiB."""
    bits = 0
    for t in info.memory_types:
        if t.flags & (DEVICE_LOCAL | HOST_VISIBLE) == DEVICE_LOCAL | HOST_VISIBLE and info.heaps[t.heap].size > 256 << 20:
            bits |= 1 << t.index
    return bits


def has_rebar(info: DeviceInfo) -> bool:
    """True when a DEVICE_LOCAL|HOST_VISIBLE type covers a device-local heap larger than 256 MiB (resizable BAR)."""
    return _rebar_types(info) != 0


def upload_strategy(info: DeviceInfo, nbytes: int, strategy: str, *, min_bytes: int | None,
                    parallel_writes: bool) -> str:
    """The strategy ``Device.create_and_upload`` creates its buffer with: ``"rebar"`` instead of the default
    ``"device_local"`` for ``nbytes >= min_bytes`` on a discrete GPU with a resizable BAR when the uploader writes
    large pieces on several threads (one thread writing over PCIe is slower than the staging path); ``strategy``
    unchanged otherwise (unified memory is host-visible already; an explicit strategy is the caller's choice).

    :param nbytes: the bytes to upload.
    :param strategy: the strategy asked for.
    :param min_bytes: the smallest upload routed to the BAR (``None``: never).
    :param parallel_writes: whether the uploader splits large direct writes over several fill threads.
    """
    if (strategy != "device_local" or min_bytes is None or nbytes < min_bytes or not parallel_writes
            or info.unified_memory or not has_rebar(info)):
        return strategy
    return "rebar"


def find_memory_type(info: DeviceInfo, type_bits: int, strategy: str, *, rebar: bool = False) -> int:
    """Return the memory type index for ``strategy`` among those allowed by ``type_bits``."""
    if strategy == "rebar":
        if not info.unified_memory:
            found = _rank(info, type_bits & _rebar_types(info), DEVICE_LOCAL | HOST_VISIBLE, HOST_COHERENT, 0)
            if found is not None:
                return found
        strategy = "device_local"
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
