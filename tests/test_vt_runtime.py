"""``open_virtual_texture`` on lavapipe with validation, on both backends (page table, sparse residency): sampling
against the CPU reference, residency, convergence, oversubscription, corrupt tiles, zero allocations while
streaming, leaks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vixen_assets import open_virtual_texture
from vixen_assets.errors import BudgetExceededError, ConfigError, DeviceClosedError, FormatError, UnsupportedFeatureError
from vixen_assets.vt import TileFile, build
from vixen_assets.vt.reference import mip_chain, reference_sample
from vixen_assets.vt.residency import WINDOW

BILINEAR_TOLERANCE = 1  # float weights on the GPU vs float64 here: at most one step of 255 apart


def _texture(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, n, 4), dtype=np.uint8)


@pytest.fixture(scope="module")
def tex1024(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    a = _texture(1024, 11)
    path = build(a, tmp_path_factory.mktemp("vt") / "t1024.vtex", tile=128, border=4, threads=2)
    return path, mip_chain(a, 4)


@pytest.fixture(scope="module")
def tex2048(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """2048^2: 256 level-0 tiles, for a cache far smaller than a level."""
    a = _texture(2048, 12)
    path = build(a, tmp_path_factory.mktemp("vt") / "t2048.vtex", tile=128, border=4, threads=2)
    return path, mip_chain(a, 5)


@pytest.fixture(params=["pagetable", "sparse"])
def backend(request: pytest.FixtureRequest) -> str:
    """Both backends run the same tests."""
    return request.param


def _window(u0: float, v0: float, span: float, n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    g = (np.arange(n, dtype=np.float32) + 0.5) / n * span
    u, v = np.meshgrid(u0 + g, v0 + g)
    return u.ravel(), v.ravel()


def _live(device: Any) -> set[int]:
    return {id(o) for o in device.live_resources()}


def test_pinned_level_first_then_requested_tiles_switch_to_level_0(device: Any, tex1024, backend: str) -> None:
    path, mips = tex1024
    rng = np.random.default_rng(1)
    u, v = rng.random(4096, dtype=np.float32), rng.random(4096, dtype=np.float32)
    with open_virtual_texture(path, device, budget_mb=8, backend=backend) as vt:
        assert vt.pinned_levels == 2
        rgba, levels = vt.sample(u, v, 0, return_levels=True)
        assert (levels == 2).all()  # only the pinned levels 2 and 3 are resident
        np.testing.assert_array_equal(rgba, reference_sample(mips, u, v, 2))
        assert vt.request(*_window(0.0, 0.0, 0.25), 0) == 4
        st = vt.update(max_tiles=32)
        assert (st.requested, st.uploaded, st.hits, st.evicted, st.errors) == (4, 4, 0, 0, [])
        assert st.bytes_read > 0
        for tx in range(2):
            for ty in range(2):
                assert vt.resident_level(0, tx, ty) == 0
        rgba, levels = vt.sample(u, v, 0, return_levels=True)
        inside = (u < 0.25) & (v < 0.25)
        assert (levels[inside] == 0).all() and (levels[~inside] == 2).all()
        np.testing.assert_array_equal(rgba, reference_sample(mips, u, v, levels))
        # a coarser lookup stays at its own level when that is resident
        _rgba, lv3 = vt.sample(u, v, 3.5, return_levels=True)
        assert (lv3 == 3).all()


def test_bilinear_matches_the_reference_across_tile_edges(device: Any, tex1024, backend: str) -> None:
    path, mips = tex1024
    rng = np.random.default_rng(2)
    edges = np.array([127.5, 128.0, 128.25, 255.9, 256.1, 383.5, 0.2, 1023.8], np.float32) / 1024
    u = np.concatenate([rng.random(3000, dtype=np.float32), np.repeat(edges, 8)])
    v = np.concatenate([rng.random(3000, dtype=np.float32), np.tile(edges, 8)])
    with open_virtual_texture(path, device, budget_mb=8, backend=backend) as vt:
        for _ in range(10):  # 64 level-0 tiles at 8 per update
            vt.request(u, v, 0)
            vt.update(max_tiles=64)
        rgba, levels = vt.sample(u, v, 0, filter="bilinear", return_levels=True)
        assert (levels == 0).all()
        diff = np.abs(rgba.astype(int) - reference_sample(mips, u, v, levels, filter="bilinear").astype(int))
        assert diff.max() <= BILINEAR_TOLERANCE
        rgba1, levels1 = vt.sample(u, v, 1.2, filter="bilinear", return_levels=True)
        assert (levels1 >= 1).all()
        diff = np.abs(rgba1.astype(int) - reference_sample(mips, u, v, levels1, filter="bilinear").astype(int))
        assert diff.max() <= BILINEAR_TOLERANCE


@pytest.mark.parametrize(("reader", "direct"), [("zstd", True), ("chunks", True), ("chunks", False)])
def test_readers_staging_strategies_and_the_bounce_path_load_exact_tiles(device: Any, tex1024, backend: str,
                                                                          reader: str, direct: bool) -> None:
    """Both readers; ``staging="host_visible"`` (write-combined on discrete GPUs): the ``"chunks"`` reader goes
    through a cached page per thread; on lavapipe every type is cached, so that path is forced here."""
    path, mips = tex1024
    rng = np.random.default_rng(4)
    u, v = rng.random(4096, dtype=np.float32), rng.random(4096, dtype=np.float32)
    staging = "host_cached" if direct else "host_visible"
    with open_virtual_texture(path, device, budget_mb=24, max_uploads_per_update=64, backend=backend, staging=staging,
                              threads=3, reader=reader) as vt:
        assert (vt.staging, vt.reader) == (staging, reader)
        vt.direct = direct
        vt.request(u, v, 0)
        st = vt.update(max_tiles=64)
        assert st.uploaded == 64 and st.errors == []
        rgba, levels = vt.sample(u, v, 0, return_levels=True)
        assert (levels == 0).all()
        np.testing.assert_array_equal(rgba, reference_sample(mips, u, v, levels))
    with pytest.raises(ConfigError, match="staging"):
        open_virtual_texture(path, device, staging="device_local")
    with pytest.raises(ConfigError, match="reader"):
        open_virtual_texture(path, device, reader="mmap")


def test_camera_jump_converges_and_the_budget_holds(device: Any, tex2048, backend: str) -> None:
    path, mips = tex2048
    budget = 8
    with open_virtual_texture(path, device, budget_mb=budget, max_uploads_per_update=8, backend=backend) as vt:
        assert vt.nbytes <= budget << 20
        for u0, v0 in [(0.0, 0.0), (0.6, 0.55)]:  # the jump: no tile shared
            u, v = _window(u0, v0, 0.25)
            need = -(-len(np.unique(vt.tile_ids(u, v, 0))) // 8)  # 25 then 16 tiles, 8 per update
            for frame in range(1, 10):
                vt.request(u, v, 0)
                st = vt.update(max_tiles=8)
                _rgba, levels = vt.sample(u, v, 0, return_levels=True)
                if (levels == 0).all():
                    break
            assert frame == need, f"converged after {frame} updates, expected {need}"
            rgba = vt.sample(u, v, 0)
            np.testing.assert_array_equal(rgba, reference_sample(mips, u, v, 0))
        assert st.thrash == 0 and vt.stats.uploaded >= 32
        vt_peak = device.budget.stats()["categories"]["vt"]["peak"]
        assert vt_peak + sum(s.nbytes for s in vt.ring.segments) <= budget << 20


def test_oversubscription_raises_the_level_bias_without_thrashing(device: Any, tex2048, backend: str) -> None:
    path, mips = tex2048
    u, v = _window(0.0, 0.0, 1.0, n=128)  # the whole texture at level 0: 256 tiles
    with open_virtual_texture(path, device, budget_mb=6, max_uploads_per_update=16,
                              sample_capacity=1 << 14, feedback_capacity=1 << 12, backend=backend) as vt:
        assert vt.slots - vt.stats.pinned < 100
        thrash = []
        for _ in range(45):
            vt.request(u, v, 0)
            st = vt.update(max_tiles=16)
            thrash.append(st.thrash)
        assert st.level_bias > 0 and vt.stats.level_bias == st.level_bias
        assert sum(thrash[-WINDOW:]) == 0, thrash  # settled: no evict-and-reload loop
        assert st.deferred == 0 and st.hit_rate == 1.0
        rgba, levels = vt.sample(u, v, 0, return_levels=True)
        assert levels.min() >= 1  # served coarser instead of cycling level 0 through the cache
        np.testing.assert_array_equal(rgba, reference_sample(mips, u, v, levels))


def test_streaming_makes_no_allocations(device: Any, tex2048, backend: str) -> None:
    path, _mips = tex2048
    rng = np.random.default_rng(3)
    with open_virtual_texture(path, device, budget_mb=6, max_uploads_per_update=16,
                              feedback_capacity=1 << 12, backend=backend) as vt:
        before = _live(device)
        with device.phase("vt-stream") as counts:
            for frame in range(12):
                u, v = _window(*rng.random(2) * 0.7, 0.3, n=40)
                if frame % 2:
                    vt.feedback(np.stack([u, v, np.zeros_like(u)], axis=1))
                else:
                    vt.request(u, v, 0)
                vt.update(max_tiles=16)
                vt.sample(u, v, 0, filter="bilinear")
        assert vt.stats.evicted > 0  # the cache turned over
        assert (counts.allocate_memory, counts.suballocations, counts.buffers_created) == (0, 0, 0)
        assert _live(device) == before  # no image, buffer or view object created either


def test_release_frees_everything_and_is_idempotent(device: Any, tex1024, backend: str) -> None:
    path, _ = tex1024
    before = _live(device)
    vt = open_virtual_texture(path, device, budget_mb=8, backend=backend)
    assert len(_live(device)) > len(before)
    vt.request(0.5, 0.5, 0)
    vt.update()
    vt.release()
    vt.release()
    assert _live(device) == before
    with pytest.raises(DeviceClosedError):
        vt.sample(0.5, 0.5, 0)


def test_corrupt_tile_names_the_tile_and_streaming_goes_on(device: Any, tex2048, tmp_path: Path, backend: str) -> None:
    src, mips = tex2048
    path = tmp_path / "bad.vtex"
    raw = bytearray(src.read_bytes())
    with TileFile(src) as tf:
        victim = tf.layout.tile_id(0, 1, 0)
        raw[int(tf.index[victim]["offset"]) + 9] ^= 0x40
    path.write_bytes(bytes(raw))
    u, v = _window(0.0, 0.0, 3 / 16, n=24)  # level-0 tiles (0..2, 0..2)
    with open_virtual_texture(path, device, budget_mb=8, max_uploads_per_update=16, backend=backend) as vt:
        vt.request(u, v, 0)
        with pytest.raises(FormatError, match=r"bad\.vtex.*level 0 tile \(1, 0\)"):
            vt.update()
        assert vt.resident_level(0, 1, 0) > 0
        assert all(vt.resident_level(0, x, y) == 0 for x in range(3) for y in range(3) if (x, y) != (1, 0))
        vt.request(u, v, 0)
        st = vt.update()  # the bad tile is not asked for again
        assert st.errors == [] and vt.stats.errors == 1
        rgba, levels = vt.sample(u, v, 0, return_levels=True)
        np.testing.assert_array_equal(rgba, reference_sample(mips, u, v, levels))
        bad = (u >= 1 / 16) & (u < 2 / 16) & (v < 1 / 16)
        assert (levels[bad] > 0).all() and (levels[~bad] == 0).all()


def test_failed_opens_leave_nothing(device: Any, tex1024, tmp_path: Path, backend: str) -> None:
    src, _ = tex1024
    before = _live(device)
    with pytest.raises(ConfigError, match="budget_mb"):
        open_virtual_texture(src, device, budget_mb=0.5, backend=backend)
    with pytest.raises(BudgetExceededError, match="t1024.vtex"):
        open_virtual_texture(src, device, budget_mb=device.budget.limit / 2**20 + 1, backend=backend)
    raw = bytearray(src.read_bytes())
    with TileFile(src) as tf:
        top = tf.layout.tile_count - 1
        raw[int(tf.index[top]["offset"]) + 5] ^= 1
    (tmp_path / "badtop.vtex").write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=r"level 3 tile \(0, 0\)"):
        open_virtual_texture(tmp_path / "badtop.vtex", device, budget_mb=8, backend=backend)
    (tmp_path / "short.vtex").write_bytes(src.read_bytes()[:100])
    with pytest.raises(FormatError, match="index"):
        open_virtual_texture(tmp_path / "short.vtex", device, budget_mb=8, backend=backend)
    assert _live(device) == before


def test_feedback_pass_equals_the_cpu_requests(device: Any, tex2048, backend: str) -> None:
    path, _ = tex2048
    rng = np.random.default_rng(4)
    n = 20000
    samples = np.stack([rng.random(n), rng.random(n), rng.random(n) * 6 - 0.5], axis=1).astype(np.float32)
    samples[:10, :2] = [[0.0, 1.0], [1.0, 0.0], [0.999999, 0.5], [1.0, 1.0], [-0.1, 1.2], [0.5, 0.5],
                        [0.25, 0.75], [0.5, 0.0], [0.0, 0.5], [0.75, 0.25]]
    with open_virtual_texture(path, device, budget_mb=8, feedback_capacity=1 << 13, backend=backend) as vt:
        ids = vt.tile_ids(samples[:, 0], samples[:, 1], samples[:, 2])
        want = Counter(ids.tolist())
        vt.feedback(samples)  # three dispatches of at most 8192 samples
        assert vt.pending_requests() == dict(want)
        vt.update(max_tiles=0)
        assert vt.pending_requests() == {}
        bias = vt.stats.level_bias
        assert bias > 0  # 20000 samples over every level want more tiles than the cache holds
        want = Counter(vt.tile_ids(samples[:, 0], samples[:, 1], samples[:, 2], bias=bias).tolist())
        # samples already on the device: a vec4 storage buffer
        buf = device.create_buffer(n * 16, "storage", strategy="host_visible", name="gbuffer-samples")
        try:
            vec4 = np.zeros((n, 4), np.float32)
            vec4[:, :3] = samples
            buf.mapped[:] = vec4.view(np.uint8).ravel()
            vt.feedback(buf)  # the pass adds the bias, as request() does
            assert vt.pending_requests() == dict(want)
        finally:
            buf.destroy()


def test_bc7_sampling_matches_the_decoded_tiles(device: Any, tmp_path: Path) -> None:
    pytest.importorskip("etcpak")
    yy, xx = np.mgrid[0:512, 0:512]
    a = np.stack([xx // 2, yy // 2, (xx ^ yy) & 255, 255 - xx // 4], axis=2).astype(np.uint8)
    path = build(a, tmp_path / "bc7.vtex", tile=128, border=4, fmt="bc7", threads=2)
    with TileFile(path) as tf:  # the decoded texture: each tile's interior, placed back
        lay = tf.layout
        decoded = []
        for lv in range(lay.levels):
            n = lay.tiles_per_side(lv)
            img = np.zeros((lay.level_size(lv), lay.level_size(lv), 4), np.uint8)
            for ty in range(n):
                for tx in range(n):
                    img[ty * 128:(ty + 1) * 128, tx * 128:(tx + 1) * 128] = \
                        tf.read_pixels(lay.tile_id(lv, tx, ty))[4:-4, 4:-4]
            decoded.append(img)
    rng = np.random.default_rng(5)
    u, v = rng.random(4000, dtype=np.float32), rng.random(4000, dtype=np.float32)
    with open_virtual_texture(path, device, budget_mb=8) as vt:
        for _ in range(3):
            vt.request(u, v, 0)
            vt.update(max_tiles=64)
        rgba, levels = vt.sample(u, v, 0, return_levels=True)
        assert (levels == 0).all()
        assert np.abs(rgba.astype(int) - reference_sample(decoded, u, v, 0).astype(int)).max() <= 1
        assert np.abs(rgba.astype(int) - reference_sample([a], u, v, 0).astype(int)).max() <= 24
        with pytest.raises(UnsupportedFeatureError, match="rgba8"):
            open_virtual_texture(path, device, budget_mb=8, backend="sparse")


def test_sparse_backend_limits_are_clear_errors(device: Any, tmp_path: Path) -> None:
    before = _live(device)
    small = build(_texture(256, 3), tmp_path / "t64.vtex", tile=64, border=4)
    with pytest.raises(UnsupportedFeatureError, match="sparse page shape"):
        open_virtual_texture(small, device, budget_mb=8, backend="sparse")
    with pytest.raises(ConfigError, match="backend"):
        open_virtual_texture(small, device, budget_mb=8, backend="tiles")
    assert _live(device) == before


def test_max_ms_limits_an_update_and_bad_samples_stay_defined(device: Any, tex2048) -> None:
    path, mips = tex2048
    with open_virtual_texture(path, device, budget_mb=8, max_uploads_per_update=16) as vt:
        vt.request(*_window(0.0, 0.0, 0.2), 0)
        assert vt.update(max_tiles=8).uploaded == 8  # measures the per-tile cost
        vt.request(*_window(0.5, 0.5, 0.2), 0)
        assert vt.update(max_tiles=16, max_ms=1e-6).uploaded == 1  # at least one tile, whatever the budget
        u = np.array([np.nan, np.inf, -np.inf, 0.5], np.float32)
        rgba, levels = vt.sample(u, u, np.array([np.nan, np.inf, -np.inf, 0.0], np.float32), return_levels=True)
        assert levels.max() < 5 and rgba.shape == (4, 4)
        vt.feedback(np.stack([u, u, u], axis=1))
        assert all(0 <= t < 341 for t in vt.pending_requests())


def _soak(device: Any, tex: tuple[Path, list[np.ndarray]], backend: str, frames: int, seed: int) -> None:
    """Random views and jumps with a small cache: after every update, GPU samples equal the reference at the level
    they report, and that level is the host page table's (the uploaded page-table rows are the host's)."""
    path, mips = tex
    rng = np.random.default_rng(seed)
    with open_virtual_texture(path, device, budget_mb=6, max_uploads_per_update=12, backend=backend) as vt:
        lay = vt.layout
        for _ in range(frames):
            u0, v0 = rng.random(2) * 0.8
            span = rng.choice([0.05, 0.15, 0.3])
            u, v = _window(u0, v0, span, n=32)
            lod = rng.random(u.size).astype(np.float32) * 2 + rng.integers(0, 3)
            if rng.random() < 0.5:
                vt.request(u, v, lod)
            else:
                vt.feedback(np.stack([u, v, lod], axis=1))
            vt.update(max_tiles=int(rng.integers(1, 13)))
            su, sv = rng.random(500, dtype=np.float32), rng.random(500, dtype=np.float32)
            slod = (rng.random(500) * lay.levels).astype(np.float32)
            filt = "bilinear" if rng.random() < 0.5 else "nearest"
            rgba, levels = vt.sample(su, sv, slod, filter=filt, return_levels=True)
            want = reference_sample(mips, su, sv, levels, filter=filt).astype(int)
            assert np.abs(rgba.astype(int) - want).max() <= (BILINEAR_TOLERANCE if filt == "bilinear" else 0)
            if backend == "pagetable" or filt == "nearest":  # sparse bilinear may step back at a missing neighbour
                lv = np.clip(np.floor(slod), 0, lay.levels - 1).astype(int)
                x = np.minimum((su * (lay.size >> lv)).astype(int), (lay.size >> lv) - 1) // lay.tile
                y = np.minimum((sv * (lay.size >> lv)).astype(int), (lay.size >> lv) - 1) // lay.tile
                host = [vt.resident_level(a, b, c) for a, b, c in zip(lv, x, y)]
                np.testing.assert_array_equal(levels, host)
        assert vt.stats.evicted > 0


def test_random_views_stay_consistent(device: Any, tex2048, backend: str) -> None:
    _soak(device, tex2048, backend, frames=25, seed=7)


@pytest.mark.slow
def test_random_views_stay_consistent_soak(device: Any, tex2048, backend: str) -> None:
    _soak(device, tex2048, backend, frames=400, seed=8)


def test_allocation_failures_at_open_leave_nothing(tex1024, backend: str) -> None:
    from vixen_assets.errors import VixenError
    from vixen_assets.testing import finish_test_device, open_test_device
    from vixen_assets.vk.faults import FaultInjector

    path, mips = tex1024
    device = open_test_device(block_size=1 << 20)  # small blocks: the texture's resources need new allocations
    try:
        logical = device.context.logical
        before = _live(device)
        failed = 0
        for n in range(1, 16):
            faults = FaultInjector(fail_allocation_at=n)
            logical.faults = faults
            try:
                with open_virtual_texture(path, device, budget_mb=8, backend=backend):
                    pass
            except VixenError:
                assert faults.injected == 1
                failed += 1
            finally:
                logical.faults = None
            assert _live(device) == before
            if not faults.injected:
                break
        assert failed >= 3
        with open_virtual_texture(path, device, budget_mb=8, backend=backend) as vt:  # the device is still usable
            u = np.linspace(0, 1, 100, dtype=np.float32)
            rgba, levels = vt.sample(u, u, 0, return_levels=True)
            np.testing.assert_array_equal(rgba, reference_sample(mips, u, u, levels))
    finally:
        finish_test_device(device)


def _repeated_tile_file(path: Path, size: int, page: np.ndarray) -> Path:
    """A ``size``^2 .vtex whose every index entry points at one stored tile: the full-size index and page table of a
    huge texture without its gigabytes."""
    import xxhash
    import zstandard

    from vixen_assets.vt.tilefile import HEADER_BYTES, INDEX_DTYPE, Layout, pack_header

    lay = Layout(size, 128, 4, "rgba8")
    blob = zstandard.ZstdCompressor(level=1).compress(page.tobytes())
    index = np.zeros(lay.tile_count, INDEX_DTYPE)
    index["offset"] = HEADER_BYTES + index.nbytes
    index["length"] = len(blob)
    index["raw"] = lay.raw_bytes
    index["checksum"] = xxhash.xxh3_64_intdigest(blob)
    path.write_bytes(pack_header(lay, index) + index.tobytes() + blob)
    return path


def test_64k_streams_in_256_mb(device: Any, tmp_path: Path) -> None:
    """65536^2 (349,525 tiles over 10 levels) opens in 256 MB, pins its coarse levels and streams a camera path."""
    from vixen_assets.vt.paths import camera_path

    page = _texture(136, 9)
    path = _repeated_tile_file(tmp_path / "64k.vtex", 65536, page)
    with open_virtual_texture(path, device, budget_mb=256) as vt:
        assert vt.layout.levels == 10 and vt.layout.tile_count == 349525
        assert vt.nbytes <= 256 << 20 and vt.slots > 2000 and vt.pinned_levels >= 4
        for u, v, lod in camera_path("spiral", 8, 65536):
            vt.feedback(np.stack([u, v, lod], axis=1))
            st = vt.update(max_tiles=32)
        assert vt.stats.uploaded > 0 and st.errors == []
        rgba, levels = vt.sample(u, v, lod, return_levels=True)
        side = 65536 >> levels.astype(np.int64)
        x = np.minimum((u * side.astype(np.float32)).astype(np.int64), side - 1) % 128
        y = np.minimum((v * side.astype(np.float32)).astype(np.int64), side - 1) % 128
        np.testing.assert_array_equal(rgba, page[y + 4, x + 4])  # every tile is the same page
        assert levels.min() < vt.layout.levels - vt.pinned_levels  # streamed tiles are in use
    with pytest.raises(UnsupportedFeatureError, match="maxImageDimension2D"):
        open_virtual_texture(path, device, budget_mb=256, backend="sparse")
