"""The GPU round trip (``--gpu``): load the asset on the worker's device, read every buffer back and compare its
hash with what the CPU prepares from the same file; for meshes, build the acceleration structures and trace a
sample of rays, comparing each with a CPU Moller-Trumbore intersection (:mod:`vixen_assets.validate.raycheck`).
The budget estimate is compared with the measured peak (``budget.estimate-low``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..hookspecs import hookimpl
from .context import AssetContext
from .model import USD_SUFFIXES, Issue

try:
    import xxhash as _xx

    def _digest(b: Any) -> str:
        return _xx.xxh3_128_hexdigest(np.ascontiguousarray(b).view(np.uint8).tobytes())
except ImportError:  # pragma: no cover
    import hashlib

    def _digest(b: Any) -> str:
        return hashlib.blake2b(np.ascontiguousarray(b).view(np.uint8).tobytes(), digest_size=16).hexdigest()

RAYS = 64


def _usd(ctx: AssetContext, device: Any) -> Iterator[Issue]:
    from ..geometry.prepare import prepare_meshes
    from ..geometry.usd_mesh import read_mesh_source
    from ..trace import trace_rays
    from ..usd import load_stage
    from .raycheck import compare_rays

    stage = ctx.stage()
    if stage is None:
        return
    scene = load_stage(ctx.path, device)
    with scene:
        ctx.cache.setdefault("info", {})["gpu_peak_bytes"] = int(scene.summary().get("peak_budget_bytes", 0))
        checked = 0
        world: list[np.ndarray] = []
        for mesh in scene.meshes:
            prim = stage.GetPrimAtPath(mesh.prim_path) if mesh.prim_path else None
            vb = device.read_buffer(mesh.vertex_buffer, mesh.vertex_count * mesh.stride) if mesh.vertex_count else \
                np.zeros(0, np.uint8)
            isz = np.dtype(mesh.index_dtype).itemsize
            ib = device.read_buffer(mesh.index_buffer, mesh.index_count * isz) if mesh.index_count else \
                np.zeros(0, np.uint8)
            if prim is None or not prim:
                continue
            src = read_mesh_source(prim, primvars=("st",), validate=False)
            pm = prepare_meshes([src], attributes=("position", "normal", "st"), validate=False)[0]
            where = f"{mesh.prim_path}"
            if _digest(vb) != _digest(pm.vertices):
                yield ctx.issue("gpu.round-trip", "error", where + ".points",
                                f"vertex buffer read back differs from the prepared vertices ({mesh.vertex_count} "
                                "vertices)")
            if _digest(ib) != _digest(pm.indices):
                yield ctx.issue("gpu.round-trip", "error", where + ".faceVertexIndices",
                                f"index buffer read back differs from the prepared indices ({mesh.index_count})")
            checked += 1
        ctx.cache["info"]["gpu_meshes_checked"] = checked
        if not scene.instances or not device.features.get("ray_query"):
            return
        for inst in scene.instances:
            m = inst.mesh
            if not getattr(m, "index_count", 0):
                continue
            raw_v = device.read_buffer(m.vertex_buffer, m.vertex_count * m.stride)
            pos = raw_v.view(np.float32).reshape(m.vertex_count, m.stride // 4)[:, :3].astype(np.float64)
            idx = device.read_buffer(m.index_buffer, m.index_count * np.dtype(m.index_dtype).itemsize)
            tri = idx.view(m.index_dtype).astype(np.int64).reshape(-1, 3)
            t = np.asarray(inst.transform, np.float64)
            wp = pos @ t[:3, :3].T + t[:3, 3]
            world.append(wp[tri])
        if not world:
            return
        tris = np.concatenate(world)
        origins, directions = _sample_rays(tris, RAYS)
        gpu = trace_rays(scene, origins, directions)
        bad, ambiguous = compare_rays(tris, origins, directions, gpu["hit"], gpu["t"])
        ctx.cache["info"]["gpu_rays"] = {"rays": len(origins), "ambiguous": ambiguous, "mismatched": len(bad)}
        for r in bad[:5]:
            yield ctx.issue("gpu.round-trip", "error", "",
                            f"ray {r} from {origins[r].tolist()} hits differently on the GPU (t={float(gpu['t'][r])}, "
                            f"hit={bool(gpu['hit'][r])}) than on the CPU")


def _sample_rays(tris: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rays aimed from outside the bounds at the centroids of ``n`` triangles chosen with a fixed seed."""
    rng = np.random.default_rng(1234)
    pick = rng.choice(len(tris), size=min(n, len(tris)), replace=False)
    target = tris[pick].mean(axis=1)
    lo, hi = tris.reshape(-1, 3).min(axis=0), tris.reshape(-1, 3).max(axis=0)
    center, radius = (lo + hi) / 2, max(float(np.linalg.norm(hi - lo)), 1e-3)
    d = rng.normal(size=(len(pick), 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    origins = center + d * radius * 2
    directions = target - origins
    return origins.astype(np.float32), directions.astype(np.float32)


def _ktx2(ctx: AssetContext, device: Any) -> Iterator[Issue]:
    from ..textures import load_texture

    ktx, err = ctx.ktx2()
    if err is not None:
        return
    tex = load_texture(ctx.path, device)
    try:
        same = tex.path_taken in ("direct", "as-is", "upload") or tex.source_format == tex.vk_format
        ctx.cache.setdefault("info", {})["gpu_texture_path"] = tex.path_taken
        if same and ktx.format is not None and ktx.format.name in str(tex.vk_format):
            got = np.asarray(device.read_image(tex, 0)).tobytes()
            want = bytes(ktx.image_data(0))
            if _digest(np.frombuffer(got, np.uint8)) != _digest(np.frombuffer(want, np.uint8)):
                yield ctx.issue("gpu.round-trip", "error", "levels[0]", "level 0 read back differs from the file's")
    finally:
        tex.destroy() if hasattr(tex, "destroy") else None


def _vox(ctx: AssetContext, device: Any) -> Iterator[Issue]:
    from ..voxels import load_vox

    vox, err = ctx.vox()
    if err is not None:
        return
    scene = load_vox(ctx.path, device)
    with scene:
        if scene.voxel_count != vox.voxel_count:
            yield ctx.issue("gpu.round-trip", "error", "XYZI", f"{scene.voxel_count} voxels on the GPU, "
                                                             f"{vox.voxel_count} in the file")
        if not np.array_equal(np.asarray(scene.palette), vox.palette):
            yield ctx.issue("gpu.round-trip", "error", "RGBA", "the palette on the GPU differs from the file's")


def _round_trip(ctx: AssetContext) -> Iterator[Issue]:
    if not ctx.options.gpu:
        return
    device = ctx.device()
    if ctx.suffix in USD_SUFFIXES:
        yield from _usd(ctx, device)
    elif ctx.suffix == ".ktx2":
        yield from _ktx2(ctx, device)
    elif ctx.suffix == ".vox":
        yield from _vox(ctx, device)
    est = ctx.cache.get("estimate-dict")
    peak = ctx.cache.get("info", {}).get("gpu_peak_bytes")
    if est is not None and peak and peak > est["total"]:
        yield ctx.issue("budget.estimate-low", "warning", "",
                        f"measured peak {peak} bytes is above the estimate {est['total']} bytes")


def _nothing(ctx: AssetContext) -> Iterator[Issue]:
    return iter(())


@hookimpl
def vixen_register_validators(register: Any) -> None:
    """Register ``gpu.round-trip`` (and ``budget.estimate-low``, which it reports)."""
    register("gpu.round-trip", severity="error",
             doc="with --gpu: buffers read back match what was prepared; sampled rays hit as on the CPU",
             check=_round_trip, suffixes=(*USD_SUFFIXES, ".ktx2", ".vox"))
    register("budget.estimate-low", severity="warning",
             doc="with --gpu: the measured peak does not exceed the estimate (reported by gpu.round-trip)",
             check=_nothing, suffixes=(*USD_SUFFIXES, ".ktx2", ".vox"))
