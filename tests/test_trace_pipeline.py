"""The ray-tracing-pipeline backend of ``trace_rays``: backend choice, the shader binding table, per-device caching.

The answers themselves are compared with the numpy references in ``test_accel.py`` and ``test_voxels.py`` (every
comparison there runs on both backends); this file checks what is particular to the pipeline backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vixen_assets import trace_pipeline
from vixen_assets.errors import ConfigError, OutOfDeviceMemoryError, UnsupportedFeatureError
from vixen_assets.testing import finish_test_device, open_test_device
from vixen_assets.trace import TracePipeline, choose_backend, trace_backends, trace_rays
from vixen_assets.trace_pipeline import PipelineTracer
from vixen_assets.usd.walker import load_stage
from vixen_assets.vk.raytracing import SbtLayout, ray_tracing_properties

REPO = Path(__file__).resolve().parent.parent
SMALL = REPO / "samples" / "scenes" / "small_scene.usda"

#: properties seen on the project's devices (lavapipe 25.0.7; NVIDIA H200, driver 580) and an odd made-up one
PROPS = {
    "lavapipe": dict(shader_group_handle_size=32, shader_group_handle_alignment=16, shader_group_base_alignment=32,
                     max_shader_group_stride=16384),
    "nvidia": dict(shader_group_handle_size=32, shader_group_handle_alignment=32, shader_group_base_alignment=64,
                   max_shader_group_stride=4096),
    "odd": dict(shader_group_handle_size=24, shader_group_handle_alignment=16, shader_group_base_alignment=128,
                max_shader_group_stride=4096),
}


def need_pipeline(device: Any) -> bool:
    """Skip (fail under CI, whose lavapipe has both backends) without ray-tracing pipelines; return whether the
    device also has ray queries to compare with (NVIDIA's driver has not)."""
    have = trace_backends(device)
    if "pipeline" not in have:
        msg = f"{device.name}: no ray-tracing pipelines (trace backends: {have})"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    if os.environ.get("CI") and "ray_query" not in have:
        pytest.fail(f"{device.name}: no ray queries under CI (trace backends: {have})")
    return "ray_query" in have


def _rays(scene: Any, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = scene.bounds
    rng = np.random.default_rng(seed)
    o = (lo + hi) / 2 + rng.normal(size=(n, 3)) * float(np.linalg.norm(hi - lo))
    d = lo + rng.random((n, 3)) * (hi - lo) - o
    return o, d


@pytest.mark.parametrize("kind", list(PROPS))
@pytest.mark.parametrize("miss, hit", [(1, 2), (2, 3)])
def test_sbt_layout_alignments(kind: str, miss: int, hit: int) -> None:
    """Regions start on the base alignment, records are handle-aligned, raygen size equals its stride, and the
    packed table holds each group's handle at its record."""
    props = PROPS[kind]
    lay = SbtLayout.build(props, miss=miss, hit=hit)
    h, ha, ba = (props[k] for k in ("shader_group_handle_size", "shader_group_handle_alignment",
                                    "shader_group_base_alignment"))
    assert lay.raygen.size == lay.raygen.stride
    for region, count in ((lay.raygen, 1), (lay.miss, miss), (lay.hit, hit)):
        assert region.offset % ba == 0
        assert region.stride % ha == 0 and h <= region.stride <= props["max_shader_group_stride"]
        assert region.size == region.stride * count
    assert lay.raygen.offset + lay.raygen.size <= lay.miss.offset
    assert lay.miss.offset + lay.miss.size <= lay.hit.offset
    assert lay.size == lay.hit.offset + lay.hit.size
    handles = bytes(range(256)) * (lay.group_count * h // 256 + 1)
    handles = handles[:lay.group_count * h]
    table = lay.pack(handles)
    assert len(table) == lay.size
    g = 0
    for region in (lay.raygen, lay.miss, lay.hit):
        for k in range(region.count):
            at = region.offset + k * region.stride
            assert table[at:at + h] == handles[g * h:(g + 1) * h]
            g += 1
    with pytest.raises(ValueError):
        lay.pack(handles[:-1])


def test_backend_choice(device: Any) -> None:
    """``auto`` prefers ray queries; without them (as on NVIDIA's driver) it takes the pipeline, and asking for the
    missing backend is an ``UnsupportedFeatureError`` naming it; an unknown name is a ``ConfigError``."""
    has_rq = need_pipeline(device)
    assert choose_backend(device) == ("ray_query" if has_rq else "pipeline")
    assert choose_backend(device, "pipeline") == "pipeline"
    with pytest.raises(ConfigError, match="backend"):
        choose_backend(device, "optix")
    feats = device.context.logical.features
    try:
        feats["ray_query"] = False  # what the logical device reports where the extension is absent (a no-op there)
        assert trace_backends(device) == ["pipeline"]
        assert choose_backend(device) == "pipeline"
        with pytest.raises(UnsupportedFeatureError, match="VK_KHR_ray_query") as err:
            choose_backend(device, "ray_query")
        assert err.value.feature == "ray_query"
        with load_stage(SMALL, device) as scene:
            o, d = _rays(scene, 512, 3)
            auto = trace_rays(scene, o, d)  # auto -> pipeline here
            assert auto["hit"].sum() > 50
            with pytest.raises(UnsupportedFeatureError):
                trace_rays(scene, o, d, backend="ray_query")
            assert device.stashed(TracePipeline) is None  # the compute pipeline was never made
        feats["ray_tracing_pipeline"] = False
        with pytest.raises(UnsupportedFeatureError, match="neither"):
            choose_backend(device)
    finally:
        feats["ray_query"], feats["ray_tracing_pipeline"] = has_rq, True
    if has_rq:
        with load_stage(SMALL, device) as scene:
            again = trace_rays(scene, o, d, backend="ray_query")
        for k in ("hit", "instance", "primitive", "record"):
            np.testing.assert_array_equal(auto[k], again[k])


def test_pipeline_and_table_per_device(device: Any) -> None:
    """One pipeline and one table per device, made on first use: the table is a budgeted buffer of category
    ``trace`` whose address used for tracing is a multiple of ``shaderGroupBaseAlignment``."""
    need_pipeline(device)
    props = ray_tracing_properties(device.context.logical)
    with load_stage(SMALL, device) as scene:
        o, d = _rays(scene, 256, 4)
        before = device.budget.stats()["categories"].get("trace", {}).get("bytes", 0)
        trace_rays(scene, o, d, backend="pipeline")
        tracer = device.stashed(PipelineTracer)
        assert isinstance(tracer, PipelineTracer)
        assert tracer.table_address % props["shader_group_base_alignment"] == 0
        assert tracer.sbt.device_address <= tracer.table_address
        assert tracer.table_address + tracer.layout.size <= tracer.sbt.device_address + tracer.sbt.size
        assert device.budget.stats()["categories"]["trace"]["bytes"] >= before + tracer.layout.size
        assert tracer.sbt in device.live_resources()
        trace_rays(scene, o, d, backend="pipeline")
        assert device.stashed(PipelineTracer) is tracer


def test_close_destroys_pipeline_and_table() -> None:
    """Closing a device that traced with both backends destroys the pipelines and frees the table: no leak in the
    close report, no validation message (the layer reports objects still alive at vkDestroyDevice)."""
    for _ in range(3):
        dev = open_test_device()
        try:
            has_rq = need_pipeline(dev)
            with load_stage(SMALL, dev) as scene:
                o, d = _rays(scene, 128, 5)
                a = trace_rays(scene, o, d, backend="pipeline")
                assert a["hit"].any()
                if has_rq:
                    b = trace_rays(scene, o, d, backend="ray_query")
                    np.testing.assert_array_equal(a["primitive"], b["primitive"])
            tracer = dev.stashed(PipelineTracer)
            assert tracer is not None
        finally:
            finish_test_device(dev)  # fails on leaks and validation messages
        assert tracer.pipeline is None and tracer.sbt is None


def test_many_launches_match_one(device: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rays spread over several launches of several rows (last row and last launch partial) give the same answers
    as one launch and as ray queries."""
    has_rq = need_pipeline(device)
    with load_stage(SMALL, device) as scene:
        o, d = _rays(scene, 1010, 6)
        one = trace_rays(scene, o, d, backend="pipeline")
        monkeypatch.setattr(trace_pipeline, "LAUNCH_WIDTH", 48)
        # 240 rays per launch: 1010 = 4 x 240 + 50, the last launch 48 x 2 with 46 idle invocations
        monkeypatch.setattr(trace_pipeline, "LAUNCH_ROWS", 5)
        many = trace_rays(scene, o, d, backend="pipeline")
        rq = trace_rays(scene, o, d, backend="ray_query") if has_rq else many
    assert one["hit"].sum() > 100
    for other in (many, rq):
        for k in ("hit", "instance", "primitive", "record"):
            np.testing.assert_array_equal(one[k], other[k], err_msg=k)
        np.testing.assert_allclose(one["t"], other["t"], rtol=1e-6)


def test_failed_pipeline_creation_leaves_nothing_behind(device: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pipeline creation failing after the table's buffer exists (as a driver out of memory would make it) raises
    that error, frees the table, caches nothing, gives the budget back; the next trace then works."""
    has_rq = need_pipeline(device)

    def fail(*_args: Any, **_kw: Any) -> None:
        raise OutOfDeviceMemoryError("VK_ERROR_OUT_OF_HOST_MEMORY", "vkCreateRayTracingPipelinesKHR", "injected")

    with load_stage(SMALL, device) as scene:
        scene.build_acceleration_structures()
        o, d = _rays(scene, 300, 7)
        want = trace_rays(scene, o, d, backend="ray_query") if has_rq else None
        device.context.lifetime.drain()
        live = {id(r) for r in device.live_resources()}
        used = device.budget.used
        monkeypatch.setattr(trace_pipeline, "RayTracingPipeline", fail)
        with pytest.raises(OutOfDeviceMemoryError, match="vkCreateRayTracingPipelinesKHR"):
            trace_rays(scene, o, d, backend="pipeline")
        device.context.lifetime.drain()
        assert device.stashed(PipelineTracer) is None
        assert {id(r) for r in device.live_resources()} == live
        assert device.budget.used == used
        monkeypatch.undo()
        got = trace_rays(scene, o, d, backend="pipeline")
    assert got["hit"].any()
    if want is not None:
        for k in ("hit", "instance", "primitive", "record"):
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
