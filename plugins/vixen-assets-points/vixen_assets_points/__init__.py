"""vixen-assets-points: a vixen-assets plugin that puts ``UsdGeomPoints`` prims on the GPU.

Each unique set of points (same positions and widths) becomes ONE buffer with an interleaved layout: per point
``x, y, z, width`` as float32, 16 bytes per point (see :data:`LAYOUT`). Widths are read with their interpolation
(``constant``: one value for every point; ``vertex`` or ``varying``: one value per point) and expanded to one width
per point; unauthored widths default to :data:`DEFAULT_WIDTH`.

This package is also the worked example of ``docs/plugins.md`` ("Writing the points plugin, step by step").
"""

from __future__ import annotations

import operator

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from vixen_assets import hookimpl
from vixen_assets.cachers import LoadContext, TypedCacher
from vixen_assets.errors import FormatError
from vixen_assets.memory.group import AllocationGroup

__version__ = "0.1.0"

#: Width of every point when the prim authors no ``widths``.
DEFAULT_WIDTH = 1.0

#: Bytes per point in the GPU buffer.
STRIDE = 16

#: The buffer layout: attribute -> (byte offset, format, stride), as ``GpuMesh.layout`` describes vertices.
LAYOUT: dict[str, tuple[int, str, int]] = {
    "position": (0, "float32x3", STRIDE),
    "width": (12, "float32", STRIDE),
}

#: Buffer usage: bindable as a vertex buffer and readable from shaders.
POINTS_USAGE = "vertex|storage"

# Bumped whenever the buffer contents for the same input change, so old cache keys never match new data.
_FORMAT_VERSION = b"vixen-assets-points/1"


@dataclass(frozen=True)
class PointsSource:
    """What :meth:`PointsCacher.read_prim` read from one prim: CPU arrays only, nothing on the GPU yet."""

    prim_path: str
    points: np.ndarray  #: (N, 3) float32 positions
    widths: np.ndarray  #: (N,) float32, one width per point (already expanded)


@dataclass(eq=False)
class GpuPoints:
    """One unique point set on the GPU, shared by every prim (and instance) with the same data."""

    key: str
    buffer: Any  #: the :class:`~vixen_assets.memory.buffers.Buffer` holding ``count * 16`` bytes
    count: int
    bounds: tuple[np.ndarray, np.ndarray]  #: (min, max) of the positions, float32 (3,) each
    layout: dict[str, tuple[int, str, int]]
    prim_path: str = ""
    #: points draw no triangles; ``Scene.triangle_count`` sums this over instances
    triangle_count: int = 0

    @property
    def nbytes(self) -> int:
        """Bytes of GPU memory the entry holds."""
        return int(self.buffer.size)

    def __repr__(self) -> str:
        return f"<GpuPoints {self.prim_path or self.key[:12]} {self.count} points>"


def _authoring_layer(attr: Any, fallback: str) -> str:
    """The file of the strongest layer that authors ``attr`` (for error messages), else ``fallback``."""
    try:
        stack = attr.GetPropertyStack()
    except Exception:
        return fallback
    for spec in stack:
        layer = spec.layer
        path = layer.realPath or layer.identifier
        if path:
            return str(path)
    return fallback


class PointsCacher(TypedCacher[PointsSource, GpuPoints]):
    """Caches ``UsdGeomPoints`` positions and widths on the GPU, one interleaved buffer per unique point set."""

    name = "points"
    prim_types = ("Points",)

    def read_prim(self, prim: Any, context: LoadContext) -> PointsSource:
        """Read ``points`` and ``widths`` at ``context.time``; raise ``FormatError`` naming file, prim and field.

        :param prim: a ``Usd.Prim`` of type ``Points``.
        :param context: the load's time code and root layer path.
        :returns: the arrays, widths expanded to one per point.
        :raises FormatError: points are not ``float3`` / ``point3f``, or the widths count does not match their
            interpolation.
        """
        from pxr import UsdGeom  # imported here so that importing the plugin stays cheap

        geom = UsdGeom.Points(prim)
        prim_path = str(prim.GetPath())
        time = context.time

        def bad(attr: Any, field: str, message: str) -> FormatError:
            return FormatError(message, path=_authoring_layer(attr, context.layer_path), prim_path=prim_path,
                               field=field)

        pattr = geom.GetPointsAttr()
        value = pattr.Get(time) if time is not None else pattr.Get()
        points = np.asarray(value) if value is not None else np.zeros((0, 3), np.float32)
        if points.dtype != np.float32 or points.ndim != 2 or points.shape[1] != 3:
            raise bad(pattr, "points", f"points must be float3[] (point3f[]), got {pattr.GetTypeName()}")
        n = points.shape[0]

        wattr = geom.GetWidthsAttr()
        wvalue = wattr.Get(time) if time is not None else wattr.Get()
        if wvalue is None:
            widths = np.full(n, DEFAULT_WIDTH, np.float32)
        else:
            raw = np.asarray(wvalue)
            if raw.dtype != np.float32 or raw.ndim != 1:
                raise bad(wattr, "widths", f"widths must be float[], got {wattr.GetTypeName()}")
            interp = geom.GetWidthsInterpolation()
            if interp == UsdGeom.Tokens.constant:
                if raw.shape[0] != 1:
                    raise bad(wattr, "widths", f"constant interpolation needs 1 width, got {raw.shape[0]}")
                widths = np.full(n, raw[0], np.float32)
            elif interp in (UsdGeom.Tokens.vertex, UsdGeom.Tokens.varying):
                if raw.shape[0] != n:
                    raise bad(wattr, "widths", f"{interp} interpolation needs one width per point ({n}), "
                                               f"got {raw.shape[0]}")
                widths = raw
            else:
                raise bad(wattr, "widths", f"unsupported widths interpolation {interp!r} (use constant or vertex)")
        return PointsSource(prim_path, np.ascontiguousarray(points), np.ascontiguousarray(widths))

    def key_for(self, source: PointsSource) -> str:
        """A content hash of the positions and (expanded) widths: identical point sets share one entry.

        :param source: what :meth:`read_prim` returned.
        :returns: a hex digest.
        """
        h = hashlib.blake2b(_FORMAT_VERSION, digest_size=16)
        h.update(source.points.shape[0].to_bytes(8, "little"))
        h.update(source.points)  # contiguous arrays hash without a copy
        h.update(source.widths)
        return h.hexdigest()

    def build(self, sources: Sequence[PointsSource], group: AllocationGroup) -> list[GpuPoints]:
        """Create one buffer per source through ``group`` and enqueue its upload (flushed by the loader).

        :param sources: the missing point sets of this load, one per unique key.
        :param group: the allocation group: if anything raises, every buffer it made is destroyed.
        :returns: one :class:`GpuPoints` per source, in order.
        """
        out = []
        uploader = self.device.uploader
        for src in sources:
            count = src.points.shape[0]
            data = np.empty((count, 4), np.float32)
            data[:, :3] = src.points
            data[:, 3] = src.widths
            key = self.key_for(src)
            label = src.prim_path or key[:12]
            buf = group.create_buffer(max(data.nbytes, STRIDE), POINTS_USAGE, name=f"points:{label}", category=self.name)
            if count:
                uploader.enqueue(buf, data)
                bounds = (src.points.min(axis=0), src.points.max(axis=0))
            else:
                bounds = (np.zeros(3, np.float32), np.zeros(3, np.float32))
            out.append(GpuPoints(key=key, buffer=buf, count=count, bounds=bounds, layout=dict(LAYOUT),
                                 prim_path=src.prim_path))
        return out

    def entry_nbytes(self, entry: GpuPoints) -> int:
        """Bytes of the entry's buffer.

        :param entry: an entry :meth:`build` made.
        :returns: its size in bytes.
        """
        return entry.nbytes

    def destroy_entry(self, entry: GpuPoints) -> None:
        """Destroy the entry's buffer (deferred by the device while the GPU still uses it).

        :param entry: an entry :meth:`build` made.
        """
        entry.buffer.destroy()


@hookimpl
def vixen_register_cachers(registry: Any) -> None:
    """Register :class:`PointsCacher` for prims of type ``Points``.

    :param registry: the core's :class:`~vixen_assets.cachers.registry.CacherRegistry`.
    """
    registry.register(PointsCacher)


@hookimpl
def vixen_stage_loaded(scene: Any) -> None:
    """Summarise the scene's point sets in ``scene.plugin_data["points"]``: prims, unique sets, points, bytes.

    :param scene: the loaded :class:`~vixen_assets.Scene`.
    """
    # the scene's unique entries first: a scene with no point sets (most of them, with thousands of placements)
    # costs a look at each entry, not at each instance
    unique = {id(e): e for e in scene.entries if isinstance(e, GpuPoints)}
    placed = [m for m in map(_MESH, scene.instances) if id(m) in unique] if unique else []
    scene.plugin_data["points"] = {
        "prims": len(placed),
        "unique": len(unique),
        "points": sum(m.count for m in placed),
        "bytes": sum(e.nbytes for e in unique.values()),
    }


_MESH = operator.attrgetter("mesh")


__all__ = ["DEFAULT_WIDTH", "LAYOUT", "STRIDE", "GpuPoints", "PointsCacher", "PointsSource", "vixen_register_cachers",
           "vixen_stage_loaded"]


def check_widths(ctx: Any, prim: Any) -> Any:
    """The ``points.widths`` rule: every authored width is finite and not negative (the loader accepts them, a
    renderer does not draw them). Yields ``(code, severity, file, pointer, message)`` tuples."""
    from pxr import UsdGeom

    raw = UsdGeom.Points(prim).GetWidthsAttr().Get()
    if raw is None:
        return
    widths = np.asarray(raw, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(widths) | (widths < 0))
    if len(bad):
        yield ("points.widths", "error", ctx.path, f"{prim.GetPath()}.widths",
               f"{len(bad)} of {len(widths)} widths are negative or not finite (first: width {int(bad[0])} = "
               f"{widths[bad[0]]})")


@hookimpl
def vixen_register_validators(register: Any) -> None:
    """Register the ``points.widths`` validation rule for ``Points`` prims."""
    register("points.widths", severity="error", doc="point widths are finite and not negative", check=check_widths,
             prim_types=("Points",))
