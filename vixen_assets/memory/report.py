"""``Device.memory_report()``: heaps, budget, per-category use and every block's used and free ranges."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import VixenError

if TYPE_CHECKING:
    from .context import GpuContext


def _owners(ctx: GpuContext) -> dict[tuple[int, int], tuple[str, str, str]]:
    """``(block id, offset) -> (name, category, type)`` of every live object with an ``allocation``."""
    out: dict[tuple[int, int], tuple[str, str, str]] = {}
    for obj in ctx.registry.live():
        try:
            a = obj.allocation
        except (AttributeError, VixenError):  # an object without one, or destroyed meanwhile
            continue
        block = getattr(a, "block", None)
        if block is not None:
            out[(block.id, a.offset)] = (str(getattr(obj, "name", "")), str(a.category), type(obj).__name__)
    return out


def memory_report(ctx: GpuContext) -> dict[str, Any]:
    """Build the JSON-serialisable report of a device's memory.

    Every block lists ``used_ranges`` and ``free_ranges`` as ``[offset, size]`` and ``allocations`` as
    ``[offset, size, name, category, type]`` (the owner of each used range; ``"?"`` where no live object claims it:
    a range still retiring, or a staging range of the uploader).

    :param ctx: the device's memory context.
    """
    info = ctx.info
    blocks = []
    sub = ctx.suballocator
    owners = _owners(ctx)
    with sub.lock:  # a consistent snapshot: other threads allocate and free under this lock
        slabs = {k: v for pool in sub.pools() for k, v in pool.slab_index.items()}
        for block in sub.all_blocks():
            t = block.tlsf
            used, free = [], list(t.free_ranges())
            for start, size in t.used_ranges():
                slab = slabs.get((block.id, start))
                if slab is None:
                    used.append((start, size))
                else:  # a size-class slab: list its live slots and its free room
                    su, sf = slab.ranges()
                    used += su
                    free += sf
            blocks.append({
                "id": block.id, "memory_type": block.type_index, "heap": block.heap, "size": block.size,
                "purpose": block.pool_key[1], "device_address": block.device_address, "dedicated": block.dedicated, "used": sum(n for _o, n in used),
                "free": sum(n for _o, n in free), "largest_free": t.largest_free, "fragmentation": t.fragmentation(),
                "used_ranges": [list(r) for r in sorted(used)], "free_ranges": [list(r) for r in sorted(free)],
                "allocations": [[o, n, *owners.get((block.id, o), ("?", "?", "?"))] for o, n in sorted(used)],
            })
    budget = ctx.budget.stats()
    return {
        "device": info.name,
        "heaps": [{"index": h.index, "size": h.size, "device_local": h.device_local, "budget_ext": h.budget}
                  for h in info.heaps],
        "memory_types": [{"index": t.index, "heap": t.heap, "properties": list(t.properties)} for t in info.memory_types],
        "budget": {k: budget[k] for k in ("limit", "warning_threshold", "used", "peak", "heaps", "staging", "overflow",
                                          "overflow_allocations", "overflow_bytes")},
        "categories": budget["categories"],
        "allocator": budget.get("allocator", {}),
        "live_objects": ctx.registry.counts(),
        "calls": ctx.tracker.as_dict(),
        "blocks": blocks,
    }
