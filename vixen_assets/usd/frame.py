"""Up axis and linear units of a scene: the frame conversion ``load_stage(up_axis=, meters_per_unit=)`` applies.

A USD stage says which axis points up (``upAxis``: ``"Y"`` or ``"Z"``, USD's fallback ``"Y"``) and how long one unit
is (``metersPerUnit``, USD's fallback ``0.01``). A loader converts a whole scene into another frame by multiplying
every instance's world transform by one matrix on the left (:func:`frame_matrix`): vertices stay as uploaded (they
are shared by every instance), bounds and the TLAS follow the instance transforms.

Y-up to Z-up is a +90 degree rotation about X (``(x, y, z) -> (x, -z, y)``), the same as Blender's USD importer;
Z-up to Y-up is its inverse (``(x, y, z) -> (x, z, -y)``).

References can author their own ``metersPerUnit``: :func:`unit_scale_of_arcs` tells the factor that turns the
coordinates of a referenced (or payloaded) layer into those of the layer that references it.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..scene import Scene

_TRANSFORM = operator.attrgetter("transform")

#: USD's fallbacks when a stage authors no ``upAxis`` / ``metersPerUnit``.
DEFAULT_UP_AXIS = "Y"
DEFAULT_METERS_PER_UNIT = 0.01

_ROTATIONS = {
    ("Y", "Y"): np.eye(3),
    ("Z", "Z"): np.eye(3),
    ("Y", "Z"): np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]]),  # (x, y, z) -> (x, -z, y)
    ("Z", "Y"): np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]),  # (x, y, z) -> (x, z, -y)
}


def check_up_axis(up_axis: str | None) -> str | None:
    """``None``, ``"Y"`` or ``"Z"`` (case-insensitive); anything else is a :class:`ConfigError`.

    :param up_axis: the requested up axis.
    :returns: the normalized value.
    """
    if up_axis is None:
        return None
    axis = str(up_axis).upper()
    if axis not in ("Y", "Z"):
        raise ConfigError(f"up_axis must be None, 'Y' or 'Z', got {up_axis!r}")
    return axis


def check_meters_per_unit(meters_per_unit: float | None) -> float | None:
    """``None`` or a finite positive number; anything else is a :class:`ConfigError`.

    :param meters_per_unit: the requested unit length in meters.
    :returns: the value as a float.
    """
    if meters_per_unit is None:
        return None
    value = float(meters_per_unit)
    if not np.isfinite(value) or value <= 0:
        raise ConfigError(f"meters_per_unit must be a positive number, got {meters_per_unit!r}")
    return value


def frame_matrix(from_up: str, from_mpu: float, to_up: str, to_mpu: float) -> np.ndarray:
    """The 4x4 float64 matrix (column vectors) that takes points of one frame into another.

    :param from_up: the source up axis (``"Y"`` or ``"Z"``).
    :param from_mpu: the source meters per unit.
    :param to_up: the target up axis.
    :param to_mpu: the target meters per unit.
    :returns: ``M`` with ``p_to = M @ [x, y, z, 1]``.
    """
    m = np.eye(4)
    m[:3, :3] = _ROTATIONS[(from_up.upper(), to_up.upper())] * (float(from_mpu) / float(to_mpu))
    return m


def convert_scene_frame(scene: Scene, up_axis: str | None, meters_per_unit: float | None) -> None:
    """Convert ``scene`` (its instance transforms, hence bounds and a later TLAS) into the requested frame.

    ``None`` keeps the scene's own axis or unit. Sets ``scene.up_axis`` and ``scene.meters_per_unit`` to the frame
    the data is now in. Call it before building acceleration structures (a built TLAS is refit).

    :param scene: a loaded :class:`~vixen_assets.scene.Scene` whose ``up_axis``/``meters_per_unit`` describe
        its current frame.
    :param up_axis: ``None``, ``"Y"`` or ``"Z"``.
    :param meters_per_unit: ``None`` or the target unit length in meters.
    """
    to_up = check_up_axis(up_axis) or scene.up_axis
    to_mpu = check_meters_per_unit(meters_per_unit) or scene.meters_per_unit
    if to_up == scene.up_axis and to_mpu == scene.meters_per_unit:
        return
    m = frame_matrix(scene.up_axis, scene.meters_per_unit, to_up, to_mpu)
    if scene.instances:
        world = np.array(list(map(_TRANSFORM, scene.instances)), dtype=np.float64).reshape(-1, 4, 4)
        converted = np.einsum("ij,njk->nik", m, world).astype(np.float32)
        if scene.tlas is not None:
            scene.update_transforms(converted)
        else:
            for inst, t in zip(scene.instances, converted):
                inst.transform = t
    scene.up_axis = to_up
    scene.meters_per_unit = to_mpu


def layer_meters_per_unit(layer: Any) -> float | None:
    """The ``metersPerUnit`` a ``Sdf.Layer`` authors, or ``None``.

    :param layer: an ``Sdf.Layer``.
    :returns: the authored value, or ``None`` when the layer authors none.
    """
    root = layer.pseudoRoot
    if not root.HasInfo("metersPerUnit"):
        return None
    return float(root.GetInfo("metersPerUnit"))


def unit_scale_of_arcs(prim: Any, context_mpu: float) -> float:
    """The scale that turns coordinates of the layers ``prim`` references (or payloads) into its own layer's units.

    Only arcs introduced at ``prim`` itself count (those of its ancestors are theirs). A referenced layer that
    authors no ``metersPerUnit`` is taken to share the referencing layer's unit.

    :param prim: a ``Usd.Prim``.
    :param context_mpu: the meters per unit of the layer that holds ``prim``'s arcs.
    :returns: ``referenced_mpu / context_mpu`` for the strongest such arc, else ``1.0``.
    """
    from pxr import Pcp

    index = prim.GetPrimIndex()
    for node in index.rootNode.children:
        if node.arcType not in (Pcp.ArcTypeReference, Pcp.ArcTypePayload) or node.IsDueToAncestor():
            continue
        mpu = layer_meters_per_unit(node.layerStack.identifier.rootLayer)
        if mpu is not None and mpu != context_mpu:
            return mpu / context_mpu
        return 1.0
    return 1.0


__all__ = ["DEFAULT_METERS_PER_UNIT", "DEFAULT_UP_AXIS", "check_meters_per_unit", "check_up_axis",
           "convert_scene_frame", "frame_matrix", "layer_meters_per_unit", "unit_scale_of_arcs"]
