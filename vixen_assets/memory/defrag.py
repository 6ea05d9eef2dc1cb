"""Defragmentation: evacuate the least-used blocks of each pool into the others with GPU copies, free them.

Buffers that move get a new range (and, for buffers with their own ``VkBuffer``, a new handle): their
``generation`` goes up so descriptor tables know to rebind (see ``binding_table.py``). Contents are preserved by
``vkCmdCopyBuffer`` in one submission; the GPU is idle before anything moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..vk import resources as vkr
from ..vk.commands import one_shot
from .allocation import Allocation
from .blocks import MemoryBlock
from .buffers import Buffer

if TYPE_CHECKING:
    from .context import GpuContext


@dataclass
class DefragResult:
    """What a defragmentation pass did."""

    moved: int
    bytes_moved: int
    blocks_freed: int
    blocks_before: int
    blocks_after: int
    fragmentation_before: float
    fragmentation_after: float


def _plan_pool(blocks: list[MemoryBlock], residents: dict[int, list[Buffer]]) -> list[tuple[Buffer, MemoryBlock, int]]:
    """Choose moves that empty as many of the least-used blocks as fit into the rest.

    Blocks are tried least-used first; a block whose buffers do not all fit elsewhere, or that holds something that
    cannot move, is skipped (the pass goes on with the next one), and a block that received moves is never evacuated
    afterwards (what moved in would be stranded). So every byte moved frees a block.
    """
    order = sorted(blocks, key=lambda b: b.tlsf.used_bytes)
    moves: list[tuple[Buffer, MemoryBlock, int]] = []
    evacuated: set[int] = set()
    pinned: set[int] = set()
    for src in order:
        bufs = residents.get(src.id, [])
        if not bufs or src.id in pinned or src.tlsf.allocation_count != len(bufs):
            continue  # empty, a move target, or holding something that cannot move (images): cannot be emptied
        targets = [b for b in reversed(order) if b is not src and b.id not in evacuated]
        tentative: list[tuple[Buffer, MemoryBlock, int]] = []
        ok = True
        for buf in sorted(bufs, key=lambda b: -b.allocation.size):
            placed = False
            for dst in targets:
                off = dst.tlsf.alloc(buf.allocation.size, max(16, buf.allocation.alignment))
                if off is not None:
                    tentative.append((buf, dst, off))
                    placed = True
                    break
            if not placed:
                ok = False
                break
        if not ok:
            for _buf, dst, off in tentative:
                dst.tlsf.free(off)
            continue
        moves.extend(tentative)
        evacuated.add(src.id)
        pinned.update(dst.id for _buf, dst, _off in tentative)
    return moves


def defragment(ctx: GpuContext, *, max_bytes: int | None = None) -> DefragResult:
    """Move live buffers into fewer blocks (GPU copies), bump generations, free emptied blocks."""
    sub = ctx.suballocator
    ctx.lifetime.drain()
    ctx.logical.wait_idle()
    before = sub.stats()
    # buffers in size-class slabs stay: their slab pins its block (the planner then leaves that block alone)
    live = [b for b in ctx.registry.live() if isinstance(b, Buffer) and b.alive and b.allocation.slab is None]
    moved = 0
    nbytes = 0
    with sub.lock:
        residents: dict[int, list[Buffer]] = {}
        for buf in live:
            residents.setdefault(buf.allocation.block.id, []).append(buf)
        plan: list[tuple[Buffer, MemoryBlock, int]] = []
        for pool in sub.pools():
            blocks = [b for b in pool.blocks if not b.dedicated]
            if len(blocks) >= 2:
                plan.extend(_plan_pool(blocks, residents))
        if max_bytes is not None:
            kept, total = [], 0
            for mv in plan:
                if total + mv[0].allocation.size > max_bytes:
                    mv[1].tlsf.free(mv[2])
                    continue
                kept.append(mv)
                total += mv[0].allocation.size
            plan = kept
        if not plan:
            return DefragResult(0, 0, 0, before["blocks"], before["blocks"], before["fragmentation"],
                                before["fragmentation"])
        dev = ctx.logical
        new_handles: list[Any] = []
        with one_shot(dev, ctx.command_pool, dev.queue) as cmd:
            for buf, dst, off in plan:
                if buf._owned_handle:
                    handle = vkr.create_buffer(dev, buf.size, buf.usage)
                    vkr.bind_buffer(dev, handle, dst.memory, off)
                    new_handles.append(handle)
                    dst_handle, dst_off = handle, 0
                else:
                    dst_handle, dst_off = dst.payload[0], off
                regions = vkr.copy_regions(1)
                regions[0] = (buf._offset, dst_off, buf.size)
                vkr.cmd_copy_buffer(cmd, buf._handle, dst_handle, regions)
        freed_blocks = set()
        for (buf, dst, off) in plan:
            old = buf.allocation
            new = Allocation(dst, off, old.size, old.charged, old.category, old.heap, old.purpose, old.alignment)
            if buf._owned_handle:
                handle = new_handles.pop(0)
                addr = vkr.device_address(dev, handle) if buf.device_address else 0
                vkr.destroy_buffer(dev, buf._handle)
                ctx.tracker.count_buffer(True)
                ctx.tracker.count_buffer(False)
                ctx.buffers.rebind(buf, handle, 0, new, True, addr)
            else:
                handle, base = dst.payload
                ctx.buffers.rebind(buf, handle, off, new, False, base + off if buf.device_address else 0)
            old.block.tlsf.free(old.offset)
            freed_blocks.add(old.block.id)
            moved += 1
            nbytes += old.size
    freed = sub.trim()
    after = sub.stats()
    return DefragResult(moved, nbytes, freed, before["blocks"], after["blocks"], before["fragmentation"],
                        after["fragmentation"])
