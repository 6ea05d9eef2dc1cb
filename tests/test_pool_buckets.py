"""Tests of ``benchmarks/pool_buckets.py`` (the size-bucket pool ``bench_churn.py`` compares; not part of the
library): size-bucket slots, reference counts, compaction (no GPU)."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from pool_buckets import BucketPool, PoolSlot  # noqa: E402

KiB = 1 << 10


def check(pool: BucketPool, live: list[PoolSlot]) -> None:
    """Every live slot sits alone in its block, inside it, aligned; the pool's counts agree with ``live``."""
    seen: dict[Any, set[int]] = {}
    for s in live:
        assert s.refs >= 1
        assert 0 <= s.offset and s.offset + s.size <= pool.block_size
        assert s.offset % 256 == 0 and s.requested <= s.size
        spots = seen.setdefault((s.size, s.block), set())
        assert s.offset not in spots, f"two live slots at {s.block}+{s.offset}"
        spots.add(s.offset)
    st_ = pool.stats()
    assert st_["live_slots"] == len(live) == pool.live_slots
    assert st_["requested_bytes"] == sum(s.requested for s in live)
    for i, b in enumerate(pool._blocks):
        for block in b:
            assert block.live == sum(1 for s in block.slots if s.refs)
            assert all(s._home is block and s.block == block.handle for s in block.slots)
            assert [s.offset for s in block.slots] == [k * block.slot_size for k in range(len(block.slots))]
        assert set(pool._free[i]) == {s for block in b for s in block.slots if not s.refs}
        assert pool._empty[i] == sum(1 for block in b if not block.live)


def test_buckets_blocks_and_spares() -> None:
    made: list[int] = []
    freed: list[int] = []

    def new_block(n: int) -> str:
        made.append(n)
        return f"mem{len(made)}"

    pool = BucketPool((256, 1 * KiB, 4 * KiB), block_size=4 * KiB, new_block=new_block, free_block=freed.append)
    a = pool.acquire(100)
    assert (a.size, a.offset, a.block, a.requested, a.refs, a.generation) == (256, 0, "mem1", 100, 1, 1)
    b = pool.acquire(256)
    assert b.size == 256 and b.offset == 256 and b.block == "mem1"
    c = pool.acquire(257)
    assert c.size == 1 * KiB and c.block == "mem2"
    d = pool.acquire(4 * KiB)
    assert d.size == 4 * KiB and d.block == "mem3" and made == [4 * KiB] * 3
    with pytest.raises(ValueError, match="no bucket holds"):
        pool.acquire(4 * KiB + 1)
    with pytest.raises(ValueError, match="no bucket holds"):
        pool.acquire(0)
    # a full bucket grows a block
    more = [pool.acquire(1 * KiB) for _ in range(4)]
    assert {s.block for s in more} == {"mem2", "mem4"}
    # one empty block per bucket stays as a spare, the next is freed
    assert pool.release(d) and freed == []
    for s in more:
        pool.release(s)
    pool.release(c)
    assert freed == ["mem4"] or freed == ["mem2"]
    assert pool.stats()["buckets"][1]["blocks"] == 1
    assert pool.trim() == 2 and len(freed) == 3
    check(pool, [a, b])


def test_reference_counts() -> None:
    pool = BucketPool((256,), block_size=1 * KiB)
    s = pool.acquire(10)
    assert pool.retain(s) is s and s.refs == 2
    assert pool.release(s) is False and s.refs == 1 and pool.live_slots == 1
    assert pool.release(s) is True and pool.live_slots == 0
    with pytest.raises(ValueError, match="released twice"):
        pool.release(s)
    with pytest.raises(ValueError, match="released slot"):
        pool.retain(s)


def test_new_block_failure_leaves_the_pool_unchanged() -> None:
    def refuse(n: int) -> Any:
        raise MemoryError("budget exceeded")

    pool = BucketPool((256,), block_size=1 * KiB, new_block=refuse)
    with pytest.raises(MemoryError):
        pool.acquire(1)
    assert pool.block_count == 0 and pool.live_slots == 0


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="ascending"):
        BucketPool((1024, 256))
    with pytest.raises(ValueError, match="multiple of the alignment"):
        BucketPool((100,))
    with pytest.raises(ValueError, match="does not fit"):
        BucketPool((8 * KiB,), block_size=4 * KiB)


def test_compact_moves_slots_into_fewer_blocks() -> None:
    freed: list[Any] = []
    pool = BucketPool((256, 1 * KiB), block_size=4 * KiB, free_block=freed.append, spare_blocks=0)
    rng = random.Random(1)
    live = [pool.acquire(rng.choice([200, 256, 1000])) for _ in range(200)]
    data = {id(s): (s.block, s.offset) for s in live}  # "contents": where each slot's bytes are
    rng.shuffle(live)
    for s in live[:150]:
        pool.release(s)
    live = live[150:]
    blocks_before = pool.block_count
    copies: list[tuple[PoolSlot, Any, int]] = []

    def copy(slot: PoolSlot, dst: Any, off: int) -> None:
        assert (slot.block, slot.offset) == data[id(slot)]
        copies.append((slot, dst, off))
        data[id(slot)] = (dst, off)

    gens = {id(s): s.generation for s in live}
    result = pool.compact(copy)
    check(pool, live)
    per_block = {256: 16, 1024: 4}
    needed = sum(-(-sum(1 for s in live if s.size == size) // n) for size, n in per_block.items())
    assert pool.block_count == needed < blocks_before
    assert result["moved"] == len(copies) > 0 and result["blocks_freed"] == blocks_before - needed
    assert result["bytes"] == sum(s.size for s, _, _ in copies)
    for s in live:  # every slot is where its bytes were copied; moved slots have a new generation
        assert (s.block, s.offset) == data[id(s)]
        assert s.generation == gens[id(s)] + sum(1 for c in copies if c[0] is s)
    assert pool.compact(copy)["moved"] == 0  # already compact
    for s in live:
        pool.release(s)
    check(pool, [])


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 4 * KiB), st.integers(0, 10**6)), max_size=200))
def test_random_operations_keep_the_pool_consistent(ops: list[tuple[int, int, int]]) -> None:
    pool = BucketPool((256, 1 * KiB, 4 * KiB), block_size=8 * KiB, spare_blocks=1)
    live: list[PoolSlot] = []
    for op, size, r in ops:
        if op == 0 or not live:
            live.append(pool.acquire(size))
        elif op == 1:
            s = live[r % len(live)]
            if r % 3 == 0:
                pool.retain(s)
                live.append(s)  # a second owner
            else:
                pool.release(s)
                live.remove(s)
        else:
            pool.compact(lambda slot, dst, off: None)
        check(pool, list({id(s): s for s in live}.values()))
        assert all(s.refs == sum(1 for t in live if t is s) for s in live)
