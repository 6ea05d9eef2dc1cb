r"""Defragmentation: compact every pool with GPU copies, incrementally if asked; no thread of ours moves memory.

``defragment(ctx)`` (``Device.defragment()``) repacks each pool of blocks towards its fullest blocks and towards
offset 0 inside each block (*compaction*): blocks are ranked (those holding something that cannot move first, then
fullest first); every movable allocation, block by block in rank order and by offset inside a block, goes to the
lowest offset of an earlier-ranked block that holds it, else to a lower offset in its own block. Emptied blocks are
freed (``Suballocator.trim``). What moves:

- ``Buffer``\ s: arena ranges (copied inside the arenas' ``VkBuffer``\ s) and buffers with their own ``VkBuffer``
  (a new handle is created, bound at the new range, the old one destroyed);
- ``Image``\ s: a new ``VkImage`` with the same parameters is bound at the new range, every mip level and layer is
  copied with ``vkCmdCopyImage``, and the image returns to the layout it had (layout-preserving copies); an image
  still in ``UNDEFINED`` layout holds nothing and is simply re-created;
- size-class slabs (64 KiB ranges of arena buffers of at most 4 KiB) move whole, with every buffer in them.

Anything else (buffer sets, buffers holding acceleration structures, images with ``movable = False``, resources
still retiring, slabs of buffers with their own handles) stays where it is and pins its block. Every moved object's ``generation`` goes up by one; a buffer's
``handle``/``offset``/``device_address`` and an image's ``handle`` change: re-fetch them (or let
``BindingTable.update()`` rebind what changed) after each pass. Copies run in one submission after the device is
idle; when a move writes into a range another move of the same pass read from, a transfer barrier orders them.

``max_bytes=`` and ``max_ms=`` make a pass *incremental* (a frame loop calls it once per frame): the plan stops
before the move that would pass ``max_bytes`` copied bytes (a hard limit), and, with ``max_ms``, once planning has
taken half of it or the bytes planned would take longer than the other half to copy at the rate earlier passes
measured (a soft limit: the first move of a pass is always made, so every pass progresses; fixed costs, such as
waiting for the device to go idle, come on top). The next call goes on from the new state.
``DefragResult.remaining`` says whether the pass stopped early.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..vk import images as vki
from ..vk import resources as vkr
from ..vk.commands import one_shot
from ..vk.enums import Access, ImageLayout, PipelineStage
from ..vk.shim import BUFFER_USAGE_AS_STORAGE
from .allocation import Allocation
from .blocks import SLAB_BYTES, BlockPool, MemoryBlock, Slab
from .buffers import Buffer
from .images import Image

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
    #: images among ``moved``
    images_moved: int = 0
    #: ranges moved (a slab of small buffers counts once; ``moved`` counts its buffers)
    copies: int = 0
    #: moves that slid a resource down over its own old range (copied in chunks)
    slides: int = 0
    #: wall-clock seconds of the pass (planning, copies, rebinding, freeing)
    seconds: float = 0.0
    #: True when ``max_bytes``/``max_ms`` stopped the pass before its plan was done (call again to go on)
    remaining: bool = False
    #: bytes in blocks before and after (dedicated blocks included)
    held_before: int = 0
    held_after: int = 0


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



#: a slide over its own range is copied in chunks of the shift: at most this many (else the shift is not worth it)
MAX_SLIDE_CHUNKS = 64
#: copy throughput assumed before any pass was measured (bytes per second): lavapipe's ~150 MB/s rounded up, so a
#: first ``max_ms`` pass on a fast GPU is merely small
_DEFAULT_COPY_RATE = 256e6


@dataclass
class _Move:
    kind: str  # "own" | "arena" | "image" | "slab"
    obj: Any  # Buffer, Image or Slab
    src: MemoryBlock
    src_off: int
    size: int  # bytes reserved in the TLSF (what is freed and reserved again)
    dst: MemoryBlock
    dst_off: int
    barrier: bool = False
    #: the new range overlaps the old one (same block, lower offset): copied in chunks of the shift, with barriers
    slide: bool = False
    members: tuple[Buffer, ...] = ()
    new_handle: Any = None


Unit = tuple[str, Any, int, int, int, int, tuple[Buffer, ...]]


def _residents(ctx: GpuContext, images: bool) -> tuple[dict[int, list[Unit]], dict[int, list[Buffer]]]:
    """One scan of the live objects: movable residents of pool blocks by block id, as ``(kind, obj, offset,
    reserved size, alignment, granularity kind, members)``, and the buffers in each slab (by ``id(slab)``)."""
    out: dict[int, list[Unit]] = {}
    slab_members: dict[int, list[Buffer]] = {}
    for obj in ctx.registry.live():
        if isinstance(obj, Buffer):
            if not obj.alive or obj.usage & BUFFER_USAGE_AS_STORAGE:
                continue  # an acceleration structure lives in it: the VkAccelerationStructure names its VkBuffer
            a = obj.allocation
            if a.block.dedicated:
                continue
            if a.slab is not None:
                slab_members.setdefault(id(a.slab), []).append(obj)
                continue
            if obj._owned_handle:
                kind = "own"
            elif a.block.payload is not None and obj._handle == a.block.payload[0]:
                kind = "arena"
            else:
                continue
            out.setdefault(a.block.id, []).append(
                (kind, obj, a.offset, a.block.tlsf.allocation_size(a.offset), a.alignment, 0, ()))
        elif images and isinstance(obj, Image) and obj.alive and obj.movable and obj._alloc is not None:
            a = obj._alloc
            if a.block.dedicated:
                continue
            out.setdefault(a.block.id, []).append(
                ("image", obj, a.offset, a.block.tlsf.allocation_size(a.offset), a.alignment, 1, ()))
    return out, slab_members


def _units(pool: BlockPool, blocks: list[MemoryBlock], residents: dict[int, list[Unit]],
           slab_members: dict[int, list[Buffer]]) -> dict[int, list[Unit]]:
    """The movable units of ``pool``'s ``blocks`` by block id; a slab moves whole when every slot user is a buffer
    found alive and its pool has arena buffers to copy through."""
    out = {b.id: list(residents.get(b.id, ())) for b in blocks}
    for (bid, base), slab in pool.slab_index.items():
        members = slab_members.get(id(slab), [])
        if bid in out and slab.used and len(members) == slab.used and slab.block.payload is not None:
            out[bid].append(("slab", slab, base, SLAB_BYTES, max(slab.cls, 256), 0, tuple(members)))
    return out


def _plan_compaction(pool: BlockPool, residents: dict[int, list[Unit]], slab_members: dict[int, list[Buffer]],
                     max_bytes: float, soft_bytes: float, deadline: float, planned: list[_Move],
                     total: list[int]) -> bool:
    """Append the moves that compact ``pool`` to ``planned`` (reserving destinations, freeing sources in the TLSF);
    return False when a limit stopped the plan. ``max_bytes`` is a hard limit; ``soft_bytes`` (what ``max_ms``
    allows at the measured copy rate) yields to the first move of a pass, so that every pass makes progress."""
    blocks = [b for b in pool.blocks if not b.dedicated]
    if not blocks:
        return True
    units = _units(pool, blocks, residents, slab_members)
    movable = {b.id: sum(u[3] for u in units.get(b.id, ())) for b in blocks}
    # blocks with something that cannot move first (they stay anyway), then fullest first
    order = sorted(blocks, key=lambda b: (b.tlsf.used_bytes == movable[b.id], -b.tlsf.used_bytes, b.id))
    dirty: dict[int, list[tuple[int, int]]] = {}
    done = True
    for rank, blk in enumerate(order):
        for kind, obj, off, size, align, gkind, members in sorted(units.get(blk.id, ()), key=lambda u: u[2]):
            if planned and time.perf_counter() > deadline:
                return False
            if total[0] + size > max_bytes or (planned and total[0] + size > soft_bytes):
                done = False  # too big for what is left of this pass: a later pass may move it
                continue
            dst = None
            new = None
            for cand in order[:rank]:
                new = cand.tlsf.alloc_lowest(size, align, granularity_kind=gkind)
                if new is not None:
                    dst = cand
                    break
            else:
                new = blk.tlsf.alloc_lowest(size, align, granularity_kind=gkind, below=off)
                if new is not None:
                    dst = blk
            slide = False
            if dst is None and kind != "image":
                # no hole below holds it whole: slide it down over its own old range, in chunks (see _record)
                blk.tlsf.free(off)
                new = blk.tlsf.alloc_lowest(size, align, granularity_kind=gkind, below=off + size)
                if new is None or (off - new) * MAX_SLIDE_CHUNKS < size:  # no shift, or too small to pay
                    if new is not None:
                        blk.tlsf.free(new)
                    blk.tlsf.reserve(off, size)
                    continue
                dst, slide = blk, True
            elif dst is None or new is None:
                continue
            else:
                blk.tlsf.free(off)
            mv = _Move(kind, obj, blk, off, size, dst, new, members=members, slide=slide)
            if any(s < new + size and new < e for s, e in dirty.get(dst.id, ())):
                mv.barrier = True
                dirty.clear()
            dirty.setdefault(blk.id, []).append((off, off + size))
            planned.append(mv)
            total[0] += size
    return done


def _undo(moves: list[_Move]) -> None:
    """Give the planned destinations back and reserve the sources again (a failed pass leaves nothing moved)."""
    for mv in reversed(moves):
        mv.dst.tlsf.free(mv.dst_off)
        mv.src.tlsf.reserve(mv.src_off, mv.size)


def _create_handles(ctx: GpuContext, moves: list[_Move]) -> None:
    """New ``VkBuffer``/``VkImage`` objects bound at the destinations (before anything is recorded)."""
    dev = ctx.logical
    for mv in moves:
        if mv.kind == "own":
            buf = mv.obj
            h = vkr.create_buffer(dev, buf.size, buf.usage)
            mv.new_handle = h
            vkr.bind_buffer(dev, h, mv.dst.memory, mv.dst_off)
        elif mv.kind == "image":
            img = mv.obj
            h = vki.create_image(dev, image_type=img.image_type, vk_format=img.vk_format, width=img.width,
                                 height=img.height, depth=img.depth, levels=img.levels, layers=img.layers,
                                 usage=img.usage, cube=img.faces == 6)
            mv.new_handle = h
            vki.bind_image(dev, h, mv.dst.memory, mv.dst_off)


def _destroy_new(ctx: GpuContext, moves: list[_Move]) -> None:
    for mv in moves:
        if mv.new_handle is not None:
            (vkr.destroy_buffer if mv.kind == "own" else vki.destroy_image)(ctx.logical, mv.new_handle)
            mv.new_handle = None


class _Handle:
    """What the ``vk.images`` recorders read of an image: ``handle``, ``aspect``, ``levels``, ``layers``."""

    def __init__(self, handle: Any, like: Image) -> None:
        self.handle, self.aspect, self.levels, self.layers = handle, like.aspect, like.levels, like.layers


def _record(cmd: Any, moves: list[_Move]) -> None:
    region = vkr.copy_regions(1)
    for mv in moves:
        if mv.barrier:
            vkr.cmd_memory_barrier(cmd, src_stage=PipelineStage.TRANSFER, dst_stage=PipelineStage.TRANSFER,
                                   src_access=Access.TRANSFER_READ | Access.TRANSFER_WRITE,
                                   dst_access=Access.TRANSFER_READ | Access.TRANSFER_WRITE)
        if mv.kind in ("own", "arena", "slab"):
            n = mv.obj.size if mv.kind != "slab" else SLAB_BYTES
            if mv.kind == "own":
                src, dst, s0, d0 = mv.obj._handle, mv.new_handle, 0, 0
            else:
                src, dst, s0, d0 = mv.src.payload[0], mv.dst.payload[0], mv.src_off, mv.dst_off
            step = mv.src_off - mv.dst_off if mv.slide else n
            pos = 0
            while pos < n:  # a slide: chunk i writes where chunk i-1 was read, after a barrier
                ln = min(step, n - pos)
                region[0] = (s0 + pos, d0 + pos, ln)
                vkr.cmd_copy_buffer(cmd, src, dst, region)
                pos += ln
                if pos < n:
                    vkr.cmd_memory_barrier(cmd, src_stage=PipelineStage.TRANSFER, dst_stage=PipelineStage.TRANSFER,
                                           src_access=Access.TRANSFER_READ, dst_access=Access.TRANSFER_WRITE)
        else:
            img = mv.obj
            new = _Handle(mv.new_handle, img)
            layout = img.layout
            if layout == ImageLayout.UNDEFINED:
                continue  # nothing written yet: nothing to copy
            vki.cmd_image_barrier(cmd, img, old_layout=layout, new_layout=ImageLayout.TRANSFER_SRC,
                                  src_stage=PipelineStage.ALL_COMMANDS, dst_stage=PipelineStage.TRANSFER,
                                  src_access=Access.MEMORY_WRITE, dst_access=Access.TRANSFER_READ)
            vki.cmd_image_barrier(cmd, new, old_layout=ImageLayout.UNDEFINED, new_layout=ImageLayout.TRANSFER_DST,
                                  src_stage=PipelineStage.TOP_OF_PIPE, dst_stage=PipelineStage.TRANSFER,
                                  src_access=Access.NONE, dst_access=Access.TRANSFER_WRITE)
            vki.cmd_copy_image(cmd, img, new, width=img.width, height=img.height, depth=img.depth,
                               levels=img.levels, layers=img.layers)
            vki.cmd_image_barrier(cmd, new, old_layout=ImageLayout.TRANSFER_DST, new_layout=layout,
                                  src_stage=PipelineStage.TRANSFER, dst_stage=PipelineStage.ALL_COMMANDS,
                                  src_access=Access.TRANSFER_WRITE, dst_access=Access.MEMORY_READ)


def _apply(ctx: GpuContext, moves: list[_Move]) -> None:
    """Point every moved object at its new place (the copies are done)."""
    dev = ctx.logical
    for mv in moves:
        if mv.kind == "own":
            buf = mv.obj
            old = buf.allocation
            new = Allocation(mv.dst, mv.dst_off, old.size, old.charged, old.category, old.heap, old.purpose,
                             old.alignment)
            addr = vkr.device_address(dev, mv.new_handle) if buf.device_address else 0
            vkr.destroy_buffer(dev, buf._handle)
            ctx.tracker.count_buffer(True)
            ctx.tracker.count_buffer(False)
            ctx.buffers.rebind(buf, mv.new_handle, 0, new, True, addr)
        elif mv.kind == "arena":
            buf = mv.obj
            old = buf.allocation
            new = Allocation(mv.dst, mv.dst_off, old.size, old.charged, old.category, old.heap, old.purpose,
                             old.alignment)
            handle, base = mv.dst.payload
            ctx.buffers.rebind(buf, handle, mv.dst_off, new, False, base + mv.dst_off if buf.device_address else 0)
        elif mv.kind == "slab":
            _move_slab(ctx, mv)
        else:
            img = mv.obj
            old = img._alloc
            vki.destroy_image(dev, img.handle)
            img.handle = mv.new_handle
            img._alloc = Allocation(mv.dst, mv.dst_off, old.size, old.charged, old.category, old.heap, old.purpose,
                                    old.alignment)
            img.generation += 1
        mv.new_handle = None


def _move_slab(ctx: GpuContext, mv: _Move) -> None:
    slab: Slab = mv.obj
    delta = mv.dst_off - mv.src_off
    pool = ctx.suballocator._pools[mv.src.pool_key]
    del pool.slab_index[(mv.src.id, mv.src_off)]
    slab.block, slab.base = mv.dst, mv.dst_off
    slab.free = [o + delta for o in slab.free]
    slab.sizes = {o + delta: n for o, n in slab.sizes.items()}
    pool.slab_index[(mv.dst.id, mv.dst_off)] = slab
    handle, base = mv.dst.payload
    for buf in mv.members:
        old = buf.allocation
        off = old.offset + delta
        new = Allocation(mv.dst, off, old.size, old.charged, old.category, old.heap, old.purpose, old.alignment,
                         slab)
        ctx.buffers.rebind(buf, handle, off, new, False, base + off if buf.device_address else 0)


def _held(sub: Any) -> int:
    return sum(b.size for b in sub.all_blocks())


def defragment(ctx: GpuContext, *, max_bytes: int | None = None, max_ms: float | None = None,
               images: bool = True) -> DefragResult:
    """Compact every pool (see the module docstring); free the blocks that empty. No background work: it runs in
    the caller's thread and returns when the copies are done.

    :param ctx: the device's memory context.
    :param max_bytes: copy at most this many bytes in this pass (incremental defragmentation).
    :param max_ms: stop planning once this much time went by, or once the planned bytes would take longer to copy
        at the copy rate earlier passes measured (incremental defragmentation).
    :param images: move images too (default); ``False`` pins them.
    :returns: what the pass did; moved objects' ``generation`` went up by one: re-fetch handles and addresses.
    """
    t0 = time.perf_counter()
    sub = ctx.suballocator
    ctx.lifetime.drain()
    ctx.logical.wait_idle()
    before = sub.stats()
    held_before = _held(sub)
    limit: float = float("inf") if max_bytes is None else max_bytes
    soft = limit
    deadline = float("inf")
    rate = sub.defrag_copy_rate or _DEFAULT_COPY_RATE
    if max_ms is not None:  # half the time for planning, half for the copies at the measured rate
        deadline = t0 + max_ms / 2000.0
        soft = min(limit, rate * max_ms / 2000.0)
    moves: list[_Move] = []
    complete = True
    with sub.lock:
        sub.trim_slabs()
        total = [0]
        residents, slab_members = _residents(ctx, images)
        for pool in sub.pools():
            if not _plan_compaction(pool, residents, slab_members, limit, soft, deadline, moves, total):
                complete = False
        if moves:
            try:
                _create_handles(ctx, moves)
                t_copy = time.perf_counter()
                with one_shot(ctx.logical, ctx.command_pool, ctx.logical.queue) as cmd:
                    _record(cmd, moves)
                copy_s = time.perf_counter() - t_copy
            except BaseException:
                _destroy_new(ctx, moves)
                _undo(moves)
                raise
            if copy_s > 0 and total[0] >= 1 << 20:
                sub.defrag_copy_rate = total[0] / copy_s
            _apply(ctx, moves)
    freed = sub.trim()
    after = sub.stats()
    return DefragResult(
        moved=len(moves) + sum(max(len(m.members), 1) - 1 for m in moves if m.kind == "slab"),
        # memory relocated: what each moved buffer is charged (``nbytes``, its aligned allocation), a slab or image's range
        bytes_moved=sum(m.obj.nbytes if m.kind == "arena" or m.kind == "own" else m.size for m in moves),
        blocks_freed=freed, blocks_before=before["blocks"], blocks_after=after["blocks"],
        fragmentation_before=before["fragmentation"], fragmentation_after=after["fragmentation"],
        images_moved=sum(1 for m in moves if m.kind == "image"), copies=len(moves),
        slides=sum(1 for m in moves if m.slide), seconds=time.perf_counter() - t0,
        remaining=not complete, held_before=held_before, held_after=_held(sub))
