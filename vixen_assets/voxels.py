"""``load_vox(path, device)``: a MagicaVoxel scene on the GPU as a :class:`VoxelScene`.

The scene's buffers share one memory block (see ``vixen_assets.cachers.voxel``); ``VoxelScene`` is a
neutral :class:`~vixen_assets.scene.Scene` (the type every loader returns) whose instances are the file's model placements, so ``trace_rays`` and
``build_acceleration_structures`` work on it as on any scene (one AABB BLAS per model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .cachers import LoadContext
from .cachers.voxel import GpuVoxelScene, VoxelSceneCacher
from .errors import FormatError
from .scene import Instance, Scene

if TYPE_CHECKING:
    from .device import Device


@dataclass(frozen=True)
class VoxelModel:
    """One model of a voxel scene: its grid ``size``, ``voxel_count`` and the ``transform`` of its first placement."""

    index: int
    size: tuple[int, int, int]
    voxel_count: int
    transform: np.ndarray


class VoxelScene(Scene):
    """A loaded voxel scene: ``models``, ``buffers`` (name → offset/size in ``memory``), ``palette``, ``voxel_count``."""

    def __init__(self, device: Device, path: str, entry: GpuVoxelScene) -> None:
        """Wrap a cached :class:`GpuVoxelScene` (the caller holds its reference)."""
        super().__init__(device, path)
        self.entry = entry
        first: dict[int, np.ndarray] = {}
        for m, t in entry.placements:
            first.setdefault(m, t)
        self.models = [VoxelModel(i, info.size, info.voxel_count, first.get(i, np.eye(4, dtype=np.float32)))
                       for i, info in enumerate(entry.models)]
        self.entries.append(entry)
        self.instances.append(Instance(entry, np.eye(4, dtype=np.float32), path, None, kind="voxel"))

    @property
    def buffers(self) -> dict[str, Any]:
        """Buffer name → view (``offset``, ``size``) inside :attr:`memory`."""
        return self.entry.buffers

    @property
    def buffer_objects(self) -> dict[str, Any]:
        """Buffer name → the :class:`~vixen_assets.memory.buffers.Buffer` (for reading back, binding)."""
        return dict(self.entry.buffer_set.buffers)

    @property
    def memory(self) -> Any:
        """The one ``VkDeviceMemory`` holding every buffer."""
        return self.entry.memory

    @property
    def palette(self) -> np.ndarray:
        """(256, 4) uint8 RGBA; colour index c → palette[c]."""
        return self.entry.palette

    @property
    def voxel_count(self) -> int:
        """Solid voxels over all models."""
        return self.entry.voxel_count

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World bounds of every placement."""
        return self.entry.bounds

    def __repr__(self) -> str:
        return f"<VoxelScene {self.path!r} models={len(self.models)} voxels={self.voxel_count}>"


def load_vox(path: str | os.PathLike[str], device: Device, *, aabb_mode: str = "voxel", plugin_manager: Any = None) -> VoxelScene:
    """Load a ``.vox`` file onto ``device`` (content-deduplicated); release the result (or use ``with``).

    :param aabb_mode: ``"voxel"`` (one AABB per solid voxel: exact ray hits) or ``"brick"`` (one per 8x8x8 brick).
    :raises FormatError: the file is missing or malformed (naming the file and chunk).
    """
    device.check_open()
    p = os.fspath(path)
    if aabb_mode not in ("voxel", "brick"):
        raise FormatError(f"aabb_mode must be 'voxel' or 'brick', got {aabb_mode!r}", path=p)
    if not os.path.exists(p):
        raise FormatError("file not found", path=p)
    cacher = VoxelSceneCacher.for_device(device, plugin_manager)
    src = cacher.read_file(p, LoadContext(options={"aabb_mode": aabb_mode}, layer_path=p))
    key = cacher.key_for(src)
    entry = cacher.get_many([src], [key])[0]
    scene = VoxelScene(device, p, entry)
    scene.hold(cacher, key)
    try:
        device.uploader.flush().wait()
    except BaseException:
        scene.release()
        raise
    scene.stats.instances = len(entry.placements)
    scene.stats.bytes_uploaded = entry.nbytes
    return scene
