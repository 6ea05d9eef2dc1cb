"""The GPU round trip (``--gpu``): load the asset on the worker's device, read every buffer back and compare its
hash with what the CPU prepares from the same file; for meshes, build the acceleration structures and trace a
sample of rays, comparing each with a CPU Moller-Trumbore intersection (:mod:`vixen_assets.validate.raycheck`).
The meshes' estimate is compared with the bytes their buffers hold (``budget.estimate-low``); the device's
peak budget use (arenas and staging included) is recorded in the asset's ``info``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..hookspecs import hookimpl
from .context import AssetContext
from .model import USD_SUFFIXES, Issue

if TYPE_CHECKING:
    from ..device import Device

try:
    import xxhash as _xx

    def _digest(b: Any) -> str:
        return _xx.xxh3_128_hexdigest(np.ascontiguousarray(b).view(np.uint8).tobytes())
except ImportError:  # pragma: no cover
    import hashlib

    def _digest(b: Any) -> str:
        return hashlib.blake2b(np.ascontiguousarray(b).view(np.uint8).tobytes(), digest_size=16).hexdigest()

RAYS = 64


def _usd(ctx: AssetContext, device: Device) -> Iterator[Issue]:
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
        checked = measured = 0
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
            got = _triangle_digest(vb, ib, mesh.stride, mesh.index_dtype)
            want = _triangle_digest(pm.vertices, pm.indices, pm.stride or pm.vertices.itemsize, pm.index_dtype)
            if got != want:
                yield ctx.issue("gpu.round-trip", "error", where + ".points",
                                f"the {mesh.index_count // 3} triangles read back ({mesh.vertex_count} vertices) differ "
                                "from the prepared ones")
            checked += 1
            measured += int(mesh.nbytes)
        ctx.cache["info"]["gpu_meshes_checked"] = checked
        ctx.cache["info"]["gpu_mesh_bytes"] = measured
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


def _triangle_digest(vertices: Any, indices: Any, stride: int, index_dtype: Any) -> str:
    """A hash of the triangles as vertex data (each corner's full vertex bytes), in a canonical triangle order:
    equal for the same mesh whatever order preparation gave the vertices (it depends on the batch) or the
    triangles."""
    raw = np.ascontiguousarray(vertices).view(np.uint8).reshape(-1)
    idx = np.ascontiguousarray(indices).view(np.uint8).reshape(-1).view(index_dtype).astype(np.int64)
    if not len(idx):
        return _digest(np.zeros(0, np.uint8))
    rows = raw[: (len(raw) // stride) * stride].reshape(-1, stride)
    tris = np.ascontiguousarray(rows[idx].reshape(-1, 3 * stride))
    keyed = tris.view(np.dtype((np.void, tris.shape[1]))).reshape(-1)
    return _digest(np.sort(keyed).view(np.uint8))


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


def _ktx2(ctx: AssetContext, device: Device) -> Iterator[Issue]:
    from ..textures import load_texture

    ktx, err = ctx.ktx2()
    if err is not None:
        return
    with load_texture(ctx.path, device) as tex:  # held for the comparison, released after
        info = ctx.cache.setdefault("info", {})
        info["gpu_texture_path"] = tex.path_taken
        info["gpu_texture_bytes"] = int(tex.nbytes)
        if tex.path_taken != "native":
            return  # decoded or transcoded on the CPU: the bytes on the GPU are not the file's
        compared = 0
        for level in range(tex.levels):
            for layer in range(max(1, tex.layers)):
                for face in range(tex.faces):
                    got = np.ascontiguousarray(device.read_image(tex, level, layer, face)).view(np.uint8).reshape(-1)
                    want = np.frombuffer(bytes(ktx.image_data(level, layer, face)), np.uint8)
                    if _digest(got) != _digest(want):
                        yield ctx.issue("gpu.round-trip", "error", f"levels[{level}]",
                                        f"level {level} layer {layer} face {face} read back differs from the file's")
                    compared += 1
        info["gpu_images_compared"] = compared


def _vox(ctx: AssetContext, device: Device) -> Iterator[Issue]:
    # _scene_arrays is the voxel cacher's own layout step: the bytes it prepares are what must come back
    from ..cachers.voxel import VoxelSource, _scene_arrays
    from ..voxels import load_vox

    vox, err = ctx.vox()
    if err is not None:
        return
    arrays, _, _ = _scene_arrays(VoxelSource.from_vox(vox, path=ctx.path))
    scene = load_vox(ctx.path, device)
    with scene:
        compared = 0
        for name, buf in scene.buffer_objects.items():
            want = np.ascontiguousarray(arrays[name]).view(np.uint8).reshape(-1) if name in arrays else None
            if want is None:
                continue
            got = np.asarray(device.read_buffer(buf, len(want))).view(np.uint8).reshape(-1)
            if _digest(got) != _digest(want):
                yield ctx.issue("gpu.round-trip", "error", name, f"voxel buffer {name!r} read back differs from the "
                                                               f"{len(want)} prepared bytes")
            compared += 1
        ctx.cache.setdefault("info", {})["gpu_buffers_compared"] = compared
        if scene.voxel_count != sum(len(m.voxels[m.voxels[:, 3] != 0]) for m in vox.models):
            yield ctx.issue("gpu.round-trip", "error", "XYZI", f"{scene.voxel_count} voxels on the GPU, "
                                                             f"{vox.voxel_count} in the file")


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
    if "budget.estimate-low" not in ctx.selected:
        return
    from .rules_budget import asset_estimate

    est = asset_estimate(ctx)
    measured = ctx.cache.get("info", {}).get("gpu_mesh_bytes")
    if est is not None and measured and measured > est.meshes:
        yield ctx.issue("budget.estimate-low", "warning", "",
                        f"the meshes hold {measured} bytes on the GPU, above the {est.meshes}-byte estimate")


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
