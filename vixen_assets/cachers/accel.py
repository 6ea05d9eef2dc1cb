"""Moved to :mod:`vixen_assets.accel` (``structures``, ``build``, ``cacher``, ``scene_tlas``); this module keeps the
old import path working. ``_geometries_for_mesh`` is now :func:`vixen_assets.accel.geometries_for_mesh`."""

from __future__ import annotations

from ..accel.build import SCRATCH_BUDGET, AccelStats, ScratchPool, build_aabb_blas, build_blases, geometries_for_mesh
from ..accel.cacher import AccelerationStructureCacher, accel_cacher
from ..accel.structures import AS_STORAGE_USAGE, INPUT_USAGE, SCRATCH_USAGE, AccelerationStructure, Tlas

_geometries_for_mesh = geometries_for_mesh  # the old private spelling (benchmarks, tests)

__all__ = ["AS_STORAGE_USAGE", "INPUT_USAGE", "SCRATCH_BUDGET", "SCRATCH_USAGE", "AccelStats", "AccelerationStructure",
           "AccelerationStructureCacher", "ScratchPool", "Tlas", "accel_cacher", "build_aabb_blas", "build_blases"]
