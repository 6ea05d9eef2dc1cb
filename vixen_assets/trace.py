"""``trace_rays(scene, origins, directions)``: trace rays against the scene's TLAS on the GPU.

Two backends give the same answers. ``ray_query``: a compute shader (``shaders/trace_rays.comp``, compiled SPIR-V
shipped beside it) runs one ``GL_EXT_ray_query`` per ray and reports the closest hit. ``pipeline``: a ray-tracing
pipeline (:mod:`vixen_assets.trace_pipeline`) for devices without ray queries (NVIDIA's driver). Users call it to
check that what is on the GPU is the scene they meant.
"""

from __future__ import annotations

from importlib import resources as ilr
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError, UnsupportedFeatureError
from .trace_pipeline import PipelineTracer
from .vk import resources as vkr
from .vk.commands import begin, end, submit
from .vk.enums import Access, PipelineStage
from .vk.pipeline import DESC_ACCELERATION_STRUCTURE, DESC_STORAGE_BUFFER, ComputePipeline

if TYPE_CHECKING:
    from .device import Device
    from .scene import Scene

SHADER = "trace_rays"
WORKGROUP = 64
BACKENDS = ("auto", "ray_query", "pipeline")


def shader_spirv(name: str = SHADER) -> bytes:
    """The shipped SPIR-V of a shader under ``vixen_assets/shaders``."""
    return (ilr.files("vixen_assets") / "shaders" / f"{name}.spv").read_bytes()


class TracePipeline(ComputePipeline):
    """The ray-query compute pipeline of :func:`trace_rays` (one per device, in ``Device.stash``)."""


def _pipeline(device: Device) -> ComputePipeline:
    return device.stash(TracePipeline, lambda: TracePipeline(
        device.context.logical, shader_spirv(),
        [DESC_ACCELERATION_STRUCTURE, DESC_STORAGE_BUFFER, DESC_STORAGE_BUFFER, DESC_STORAGE_BUFFER],
        push_constant_bytes=4))


def _rt_pipeline(device: Device) -> PipelineTracer:
    return device.stash(PipelineTracer, lambda: PipelineTracer(device))


def trace_backends(device: Device) -> list[str]:
    """The ``trace_rays`` backends this device can run (``ray_query``, ``pipeline``), preferred first.

    :param device: an open device.
    """
    f = device.features
    if not f.get("acceleration_structure"):
        return []
    return [name for name, feat in (("ray_query", "ray_query"), ("pipeline", "ray_tracing_pipeline")) if f.get(feat)]


def choose_backend(device: Device, backend: str = "auto") -> str:
    """Resolve ``backend`` (``auto``, ``ray_query`` or ``pipeline``) for ``device``.

    :param device: an open device.
    :param backend: ``auto`` picks ray queries where the device has them, else the ray-tracing pipeline.
    :raises ConfigError: for an unknown backend name.
    :raises UnsupportedFeatureError: when the device lacks the backend (or both, for ``auto``).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"trace_rays: backend={backend!r}; expected one of {', '.join(BACKENDS)}", option="backend")
    have = trace_backends(device)
    if backend == "auto":
        if not have:
            raise UnsupportedFeatureError(
                f"{device.name} supports neither VK_KHR_ray_query nor VK_KHR_ray_tracing_pipeline (with "
                "acceleration structures): trace_rays cannot run", feature="ray_query")
        return have[0]
    if backend not in have:
        ext = "VK_KHR_ray_query" if backend == "ray_query" else "VK_KHR_ray_tracing_pipeline"
        raise UnsupportedFeatureError(f"{device.name} does not support {ext}: trace_rays(backend={backend!r}) cannot "
                                      f"run (available: {', '.join(have) or 'none'})", feature=backend)
    return backend


def trace_rays(scene: Scene, origins: Any, directions: Any, *, t_max: float | Any = np.inf, t_min: float = 0.0,
               backend: str = "auto") -> dict[str, np.ndarray]:
    """Trace rays against ``scene.tlas`` (built on demand); return ``hit``, ``t``, ``instance``, ``primitive``.

    :param scene: a loaded scene (``load_stage``) or anything with ``device``, ``instances`` and ``tlas``.
    :param origins: (N, 3) ray origins in world space.
    :param directions: (N, 3) ray directions (need not be normalised; ``t`` is in units of the direction).
    :param t_max: farthest hit distance, scalar or (N,).
    :param t_min: nearest hit distance.
    :param backend: ``auto`` (ray queries where the device has them, else a ray-tracing pipeline), ``ray_query``
        or ``pipeline``; both give the same results.
    :raises UnsupportedFeatureError: the device lacks the backend asked for (see :func:`trace_backends`).
    :returns: numpy arrays ``hit`` (bool), ``t`` (float32), ``instance`` (int32, index into ``scene.instances``,
        -1 on a miss), ``primitive`` (int32: the triangle index in the instance's mesh, or the box index of
        procedural geometry such as a voxel model's AABB; -1 on a miss) and ``record`` (int32: the TLAS record hit,
        see ``scene.tlas_map``; voxel scenes place one record per model placement).
    """
    device = scene.device
    device.check_open()
    use = choose_backend(device, backend)
    if getattr(scene, "tlas", None) is None:
        scene.build_acceleration_structures()
    o = np.ascontiguousarray(origins, dtype=np.float32).reshape(-1, 3)
    d = np.ascontiguousarray(directions, dtype=np.float32).reshape(-1, 3)
    if o.shape != d.shape:
        raise ConfigError(f"{len(o)} origins but {len(d)} directions", option="trace_rays")
    n = len(o)
    out = {"hit": np.zeros(n, bool), "t": np.zeros(n, np.float32), "instance": np.full(n, -1, np.int32),
           "primitive": np.full(n, -1, np.int32), "record": np.full(n, -1, np.int32)}
    if n == 0 or not scene.instances or not len(scene.tlas_map.instance):
        return out  # nothing to hit (e.g. only empty voxel models: the TLAS has no records)
    rays = np.empty((n, 2, 4), dtype=np.float32)
    rays[:, 0, :3] = o
    rays[:, 0, 3] = t_min
    rays[:, 1, :3] = d
    rays[:, 1, 3] = np.broadcast_to(np.asarray(t_max, dtype=np.float32), (n,))
    tmap = scene.tlas_map
    aabb_table = np.zeros(max(len(tmap.instance), 1), dtype=np.uint64)
    aabb_table[:len(tmap.instance)] = tmap.aabb_address
    pipe: ComputePipeline | PipelineTracer = _pipeline(device) if use == "ray_query" else _rt_pipeline(device)
    ray_buf = device.create_buffer(rays.nbytes, "storage", strategy="auto", name="trace-rays", category="trace")
    hit_buf = device.create_buffer(n * 16, "storage", strategy="auto", name="trace-hits", category="trace")
    tab_buf = device.create_buffer(aabb_table.nbytes, "storage", strategy="auto", name="trace-aabbs", category="trace")
    try:
        device.uploader.enqueue(ray_buf, rays)
        device.uploader.enqueue(tab_buf, aabb_table)
        device.uploader.flush().wait()
        tlas = scene.tlas
        pipe.write([tlas.handle, (ray_buf.handle, ray_buf.offset, ray_buf.size),
                    (hit_buf.handle, hit_buf.offset, hit_buf.size), (tab_buf.handle, tab_buf.offset, tab_buf.size)])
        ctx = device.context
        lt = ctx.lifetime
        dev = ctx.logical
        cmd = ctx.command_pool.allocate()
        try:
            begin(cmd)
            if isinstance(pipe, PipelineTracer):
                pipe.cmd_trace(cmd, n)
            else:
                pipe.cmd_dispatch(cmd, (n + WORKGROUP - 1) // WORKGROUP, np.uint32(n).tobytes())
                readback_barrier_compute(cmd)
            end(cmd)
            with lt.submit_lock:
                value = lt.next_value()
                submit(dev, dev.queue, [cmd], signals=[(lt.timeline, value)])
            for b in (ray_buf, hit_buf, tab_buf):
                b.last_use = value
            tlas.structure.last_use = value
            if isinstance(pipe, PipelineTracer):
                pipe.mark_used(value)
            lt.wait(value)
        finally:
            ctx.command_pool.free(cmd)
        raw = device.read_buffer(hit_buf).view(np.float32).reshape(n, 4)
    finally:
        for b in (ray_buf, hit_buf, tab_buf):
            b.destroy()
    ints = raw.view(np.int32)
    record = ints[:, 1]
    hit = record >= 0
    rec = np.clip(record, 0, None)
    out["hit"] = hit
    out["t"] = np.where(hit, raw[:, 0], 0).astype(np.float32)
    out["instance"] = np.where(hit, tmap.instance[rec] if len(tmap.instance) else -1, -1).astype(np.int32)
    prim = ints[:, 2].astype(np.int64)
    geom = np.clip(ints[:, 3].astype(np.int64), 0, None)
    idx = np.clip(tmap.geometry_offsets[rec] + geom, 0, len(tmap.geometry_first) - 1)
    base = np.where(hit & (tmap.aabb_address[rec] == 0), tmap.geometry_first[idx], 0)
    out["primitive"] = np.where(hit, prim + base, -1).astype(np.int32)
    out["record"] = np.where(hit, record, -1).astype(np.int32)
    return out


def readback_barrier_compute(cmd: Any) -> None:
    """Make compute-shader writes visible to a following transfer or host read."""
    vkr.cmd_memory_barrier(cmd, src_stage=PipelineStage.COMPUTE_SHADER,
                           dst_stage=PipelineStage.TRANSFER | PipelineStage.HOST, src_access=Access.SHADER_WRITE,
                           dst_access=Access.TRANSFER_READ | Access.HOST_READ)


__all__ = ["trace_rays", "trace_backends", "choose_backend", "shader_spirv", "readback_barrier_compute"]
