"""Ray-tracing acceleration structures: the objects (``structures``), batched builds with compaction (``build``),
the BLAS cacher (``cacher``) and the scene TLAS (``scene_tlas``)."""

from .build import SCRATCH_BUDGET, AccelStats, ScratchPool, build_aabb_blas, build_blases, geometries_for_mesh
from .cacher import AccelerationStructureCacher, accel_cacher
from .scene_tlas import TlasMap, TlasRecord, build_scene_tlas
from .structures import AccelerationStructure, Tlas
from .voxel_blas import VoxelAABBCacher, voxel_aabb_cacher

__all__ = [
    "SCRATCH_BUDGET",
    "AccelStats",
    "AccelerationStructure",
    "AccelerationStructureCacher",
    "ScratchPool",
    "Tlas",
    "TlasMap",
    "TlasRecord",
    "VoxelAABBCacher",
    "accel_cacher",
    "build_aabb_blas",
    "build_blases",
    "build_scene_tlas",
    "geometries_for_mesh",
    "voxel_aabb_cacher",
]
