"""The stage walker: ``load_stage(path_or_stage, device)`` puts a USD scene on the GPU and returns a ``Scene``.

Walk: the composed stage (payloads loaded) with ``UsdGeom.XformCache``; invisible prims and unwanted purposes are
pruned; instanceable prims walk their prototype once (every instance reuses its items); ``UsdGeomPointInstancer``
expands into one instance per point (each prototype walked once). Every prim whose type a cacher is registered for
(``vixen_register_cachers``) is read by that cacher (attribute reads only, once per unique prim), then each cacher
builds all its missing entries in one vectorized batch, and one flush submits every upload.

Bad prims are skipped with a warning in ``Scene.warnings`` naming the file, the prim and the problem (like usdview);
``strict=True`` raises ``FormatError`` instead. Either way nothing is leaked and the device stays usable.

A reload of the same unchanged files on the same device is *warm*: the walk's result is remembered per device
(keyed by the files' paths, sizes and modification times) and the cached GPU entries are re-acquired without
reading the stage again.
"""

from __future__ import annotations

import functools
import gc
import itertools
import operator
import os
import time as _time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, ParamSpec, Sequence, TypeVar

import numpy as np
from pxr import Gf, Sdf, Tf, Usd, UsdGeom, UsdShade

from ..arguments import callable_argument, names_argument, path_argument
from ..cachers import LoadContext, cacher_for
from ..cachers.registry import Registration
from ..errors import FormatError, VixenError
from ..plugins import (cacher_registry, default_plugin_manager, load_scene_file, notify_progress, notify_stage_loaded,
                       resolve_asset_path)
from .frame import check_meters_per_unit, check_up_axis, convert_scene_frame, layer_meters_per_unit, unit_scale_of_arcs
from .materials import load_material_textures
from .usd_errors import usd_reason
from ..scene import Instance, Scene

if TYPE_CHECKING:
    from ..device import Device

ProgressFn = Callable[[str, int, int], None]

#: Prims read per call of a cacher's batch reader (``read_prims``), and the progress step of the read phase.
READ_BATCH = 256

#: Which prims of a point instancer's prototype subtree are walked: active, loaded and not abstract; unlike the
#: default traversal, prims under an ``over`` count (prototypes are often kept beneath one, as Blender's exporter
#: and the PointInstancer documentation do, so that they are not drawn except through the instancer).
PROTOTYPE_PREDICATE = Usd.PrimIsActive & Usd.PrimIsLoaded & ~Usd.PrimIsAbstract

#: An ``asset`` attribute naming a file that a suffix-registered cacher loads (e.g. ``asset vixen:file = @a.vox@``).
FILE_ATTRIBUTE = "vixen:file"


class StagePlans(dict[tuple[Any, ...], dict[str, Any]]):
    """Per-device cache of load plans by (path, time, purposes, strict, plugin manager) (``Device.stash``)."""


@dataclass(slots=True)  # one per placement (10,000s for big instancers): slots make them cheaper to create
class _Item:
    """One placement found by the walk: which prim (read once) and its matrix (row-vector convention)."""

    registration: Registration
    prim: Any
    matrix: Any  # Gf.Matrix4d or a (4, 4) float64 numpy array (point instancers), USD row-vector convention
    label: str
    material: str | None
    file: str | None = None  # set for assets referenced by a ``vixen:file`` attribute (read with ``read_file``)
    prim_path: str = ""  # str(prim.GetPath()), computed once per prim and carried to every placement of it

    @property
    def source_id(self) -> str:
        """What is read once: the file for file assets, else the prim."""
        if self.file:
            return f"file:{self.file}"
        if not self.prim_path:
            self.prim_path = str(self.prim.GetPath())
        return self.prim_path

    def placed(self, matrix: Any, label: str, material: str | None) -> _Item:
        """This item placed again (an instance of a prototype, a point of an instancer)."""
        return _Item(self.registration, self.prim, matrix, label, material, self.file, self.prim_path)


class _Labels:
    """The labels of a :class:`_Batch`'s placements, spelt as one item's label is: ``labels[cut:]`` cuts every
    label, ``prefix + labels`` prefixes every one (what placing a prototype's items under an instance does)."""

    __slots__ = ("names",)

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def __getitem__(self, key: slice) -> _Labels:
        return _Labels([s[key] for s in self.names])

    def __radd__(self, prefix: str) -> _Labels:
        return _Labels([prefix + s for s in self.names])


@dataclass(slots=True)
class _Batch:
    """Many placements found at once (a point instancer's points), as columns instead of one :class:`_Item` each.

    Placement ``r`` places ``parts[part[r]]`` (its prim, registration, material, file) with ``matrices[r]`` (row-vector
    convention) and label ``names[r]``. ``parts`` holds only the items some placement uses, in the order of their
    first placement, so that a batch reads, builds and lists its entries in the order its placements expanded one by
    one would. It quacks like an item where prototype items are placed again (``placed``, ``matrix``, ``label``,
    ``material``)."""

    parts: list[_Item]
    part: np.ndarray  # (N,) int64
    matrices: np.ndarray  # (N, 4, 4) float64
    names: list[str]

    @property
    def matrix(self) -> np.ndarray:
        """Every placement's matrix, (N, 4, 4)."""
        return self.matrices

    @property
    def label(self) -> _Labels:
        """Every placement's label."""
        return _Labels(self.names)

    @property
    def material(self) -> None:
        """``None``: each part keeps its own material; :meth:`placed` fills the others in."""
        return None

    def placed(self, matrix: Any, label: _Labels, material: str | None) -> _Batch:
        """The batch placed again (under an instance): ``matrix`` (N, 4, 4) and ``label`` are the placements' new
        ones, ``material`` the one parts without their own get."""
        parts = self.parts if material is None else [p.placed(p.matrix, p.label, p.material or material)
                                                      for p in self.parts]
        return _Batch(parts, self.part, np.asarray(matrix, dtype=np.float64), label.names)


def _columns(items: list[Any]) -> tuple[list[_Item], np.ndarray, np.ndarray, list[str]]:
    """``items`` (a prototype's items and batches) as one batch's columns: parts, part index, matrices, labels."""
    parts: list[_Item] = []
    index: list[np.ndarray] = []
    mats: list[np.ndarray] = []
    names: list[str] = []
    for it in items:
        if isinstance(it, _Batch):
            index.append(it.part + len(parts))
            parts.extend(it.parts)
            mats.append(it.matrices)
            names.extend(it.names)
        else:
            index.append(np.array([len(parts)], dtype=np.int64))
            parts.append(it)
            mats.append(np.asarray(it.matrix, dtype=np.float64).reshape(1, 4, 4))
            names.append(it.label)
    if not parts:
        return [], np.zeros(0, np.int64), np.zeros((0, 4, 4)), []
    return parts, np.concatenate(index), np.concatenate(mats), names


def _first_use(part: np.ndarray, parts: list[_Item]) -> tuple[list[_Item], np.ndarray]:
    """Only the parts ``part`` uses, in the order of their first use, and ``part`` renumbered to match."""
    used, first = np.unique(part, return_index=True)
    order = used[np.argsort(first, kind="stable")]
    rank = np.zeros(len(parts), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return [parts[i] for i in order.tolist()], rank[part]


def _mul(a: Any, b: Any) -> Any:
    """Row-vector matrix product ``a * b`` of ``Gf.Matrix4d`` objects and/or (4, 4) numpy arrays."""
    if isinstance(a, Gf.Matrix4d) and isinstance(b, Gf.Matrix4d):
        return a * b
    return np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64)


def _gf_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a[k] * b[k]`` for stacks of (4, 4) float64 matrices, summed as ``Gf.Matrix4d``'s product sums (each element
    ``((a0 b0 + a1 b1) + a2 b2) + a3 b3``, left to right), so the results are the bits ``Gf`` gives, one product per
    element pass instead of one Python call per matrix."""
    out = a[:, :, 0, None] * b[:, None, 0, :]
    for j in (1, 2, 3):
        out += a[:, :, j, None] * b[:, None, j, :]
    return out


def _open(path_or_stage: Any) -> tuple[Any, str]:
    if isinstance(path_or_stage, Usd.Stage):
        return path_or_stage, path_or_stage.GetRootLayer().identifier
    path = path_argument(path_or_stage, "path_or_stage")
    if not os.path.exists(path):
        raise FormatError("file not found", path=path)
    if os.path.isdir(path):
        raise FormatError("is a directory, not a USD file", path=path)
    try:
        stage = Usd.Stage.Open(path, Usd.Stage.LoadAll)
    except Tf.ErrorException as exc:
        raise FormatError(f"cannot open stage: {usd_reason(exc, path)}", path=path) from None
    if stage is None:
        raise FormatError("cannot open stage", path=path)
    return stage, path


def resolve_time(stage: Any, time: Any) -> Any:
    """``None`` → the stage's start time code when it authors a time range, else the default time (as usdview)."""
    if time is None:
        # legacy startFrame/endFrame author a range too (GetStartTimeCode falls back to them, as usdview does)
        if any(stage.HasAuthoredMetadata(k) for k in ("startTimeCode", "endTimeCode", "startFrame", "endFrame")):
            return Usd.TimeCode(stage.GetStartTimeCode())
        return Usd.TimeCode.Default()
    return time if isinstance(time, Usd.TimeCode) else Usd.TimeCode(float(time))


def _bound_material(prim: Any) -> str | None:
    try:
        mat, _rel = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()
    except Exception:
        return None
    return str(mat.GetPath()) if mat else None


class _Walker:
    def __init__(self, stage: Any, time: Any, purposes: Sequence[str], types: dict[str, Registration],
                 warn: Callable[[str, str, str], None], *, attributes: dict[str, Registration] | None = None,
                 suffixes: dict[str, Registration] | None = None,
                 resolve: Callable[[str, str], str | None] | None = None) -> None:
        self.attributes = attributes or {}
        self.suffixes = suffixes or {}
        self.resolve = resolve
        self.stage = stage
        self.time = time
        self.purposes = set(purposes)
        self.types = types
        self.warn = warn
        self.xfc = UsdGeom.XformCache(time)
        self.visited = 0
        self._protos: dict[str, list[_Item]] = {}
        #: the stage's meters per unit when some referenced layer authors another one (see ``_unit_matrix``)
        self.unit_context: float | None = None
        self._unit_factors: dict[str, float] = {}
        self._imageable: dict[str, bool] = {}  # by type name (see ``_pruned``)
        #: instances of the running ``walk`` whose bound material is resolved at its end, all in one batched call:
        #: (instance prim, the indices in its items of the placements that take the instance's material)
        self._pending: list[tuple[Any, list[int]]] = []
        #: placements of this walk's instances whose matrix is the product of two ``Gf.Matrix4d`` (the prototype
        #: item's and the instance's), made at the end of the walk in one pass (``_resolve_instance_matrices``)
        self._products: tuple[list[int], list[Any], list[Any]] = ([], [], [])
        #: per prototype prim of native instancing: its items, the length of its path and whether any is a batch
        self._instance_protos: dict[Any, tuple[list[Any], int, bool]] = {}

    def _pruned(self, prim: Any, tname: str) -> bool:
        imageable = self._imageable.get(tname)
        if imageable is None:  # IsA(Imageable) depends on the prim's type alone: asked once per type name
            imageable = self._imageable[tname] = bool(prim.IsA(UsdGeom.Imageable))
        if not imageable:
            return False
        # one call tells whether either attribute has any authored opinion (most prims have neither); only then
        # the schema checks below, unchanged (a spec without a value is not an authored value)
        names = prim.GetAuthoredPropertyNames()
        if "visibility" not in names and "purpose" not in names:
            return False
        img = UsdGeom.Imageable(prim)
        vis = img.GetVisibilityAttr()
        if vis.HasAuthoredValue() and vis.Get(self.time) == UsdGeom.Tokens.invisible:
            return True
        pur = img.GetPurposeAttr()
        if pur.HasAuthoredValue() and pur.Get() not in self.purposes:
            return True
        return False

    def _matrix(self, prim: Any, relative_to: Any) -> Any:
        if self.unit_context is not None:
            return self._unit_matrix(prim, relative_to)
        if relative_to is None:
            return self.xfc.GetLocalToWorldTransform(prim)
        return self.xfc.ComputeRelativeTransform(prim, relative_to)[0]

    def _unit_factor(self, prim: Any) -> float:
        key = str(prim.GetPath())
        f = self._unit_factors.get(key)
        if f is None:
            f = self._unit_factors[key] = unit_scale_of_arcs(prim, self.unit_context) if prim.HasAuthoredReferences() \
                or prim.HasAuthoredPayloads() else 1.0
        return f

    def _unit_matrix(self, prim: Any, relative_to: Any) -> Any:
        """``_matrix`` when referenced layers author other units: the content below a prim whose reference (or
        payload) names a layer of another ``metersPerUnit`` is scaled into the stage's unit, just inside that prim's
        own transform (which the referencing layer places in its own units)."""
        p = prim
        while p and not p.IsPseudoRoot() and p != relative_to:
            f = self._unit_factor(p)
            if f != 1.0:
                break
            p = p.GetParent()
        else:
            if relative_to is None:
                return self.xfc.GetLocalToWorldTransform(prim)
            return self.xfc.ComputeRelativeTransform(prim, relative_to)[0]
        rel = Gf.Matrix4d(1.0) if p == prim else self.xfc.ComputeRelativeTransform(prim, p)[0]
        local, resets = self.xfc.GetLocalTransformation(p)
        parent = p.GetParent()
        if resets or parent.IsPseudoRoot() or parent == relative_to:
            up = Gf.Matrix4d(1.0)
        else:
            up = self._unit_matrix(parent, relative_to)
        return rel * Gf.Matrix4d().SetScale(f) * local * up

    def walk(self, root: Any, relative_to: Any = None, predicate: Any = None) -> list[_Item]:
        items: list[_Item] = []
        it = iter(Usd.PrimRange(root) if predicate is None else Usd.PrimRange(root, predicate))
        outer, self._pending = self._pending, []  # prototypes are walked from inside a walk: theirs are their own
        outer_products, self._products = self._products, ([], [], [])
        try:
            for prim in it:
                self.visited += 1
                try:
                    self._visit(prim, it, relative_to, items)
                except Tf.ErrorException as exc:  # USD refuses the prim (a bad xformOp, ...): a bad prim, not a crash
                    it.PruneChildren()
                    self.warn(str(prim.GetPath()), None, f"USD cannot read the prim: {usd_reason(exc)}")
                except (TypeError, ValueError) as exc:  # a value of an unexpected type (``iot[] protoIndices``, ...)
                    it.PruneChildren()
                    self.warn(str(prim.GetPath()), None, f"a value of the prim has an unexpected type or shape "
                                                         f"({type(exc).__name__}: {exc})")
            self._resolve_instance_matrices(items)
            self._resolve_instance_materials(items)
        finally:
            self._pending = outer
            self._products = outer_products
        return items

    def _resolve_instance_matrices(self, items: list[Any]) -> None:
        """The matrices of this walk's instance placements: every ``Gf`` product at once (:func:`_gf_products`)."""
        rows, left, right = self._products
        if not rows:
            return
        mats = _gf_products(np.array(left, dtype=np.float64), np.array(right, dtype=np.float64))
        for r, m in zip(rows, mats):
            items[r].matrix = m

    def _resolve_instance_materials(self, items: list[Any]) -> None:
        """Give the placements of this walk's instances their instance's bound material: one batched
        ``ComputeBoundMaterials`` over every instance prim (what one ``ComputeBoundMaterial`` per instance gave)."""
        pending = self._pending
        if not pending:
            return
        prims = [prim for prim, _rows in pending]
        try:
            mats = UsdShade.MaterialBindingAPI.ComputeBoundMaterials(prims)[0]
            paths = [str(m.GetPath()) if m else None for m in mats]
        except Exception:  # noqa: BLE001 - as _bound_material: a prim whose binding cannot be computed has none
            paths = [_bound_material(prim) for prim in prims]
        for (_prim, rows), mat in zip(pending, paths):
            for r in rows:
                items[r].material = mat

    def _visit(self, prim: Any, it: Any, relative_to: Any, items: list[_Item]) -> None:
        """Add the items of one prim (pruning what it covers itself)."""
        tname = prim.GetTypeName()
        if self._pruned(prim, tname):
            it.PruneChildren()
            return
        if prim.IsInstance():
            proto = prim.GetPrototype()
            m = self._matrix(prim, relative_to)
            path = str(prim.GetPath())
            info = self._instance_protos.get(proto)
            if info is None:
                got = self._prototype(proto)
                info = self._instance_protos[proto] = (got, len(str(proto.GetPath())),
                                                       any(isinstance(pi, _Batch) for pi in got))
            placements, cut, batches = info
            if batches:  # batches take the material as they are placed
                inst_mat = _bound_material(prim)
                for pi in placements:
                    items.append(pi.placed(_mul(pi.matrix, m), path + pi.label[cut:], pi.material or inst_mat))
            else:
                # the instance's material is filled in at the end of the walk (``_resolve_instance_materials``), and
                # so are the products of two Gf matrices (``_resolve_instance_matrices``)
                rows = []
                prod_rows, left, right = self._products
                gf_m = isinstance(m, Gf.Matrix4d)
                for pi in placements:
                    if not pi.material:
                        rows.append(len(items))
                    if gf_m and isinstance(pi.matrix, Gf.Matrix4d):
                        prod_rows.append(len(items))
                        left.append(pi.matrix)
                        right.append(m)
                        items.append(pi.placed(None, path + pi.label[cut:], pi.material))
                    else:
                        items.append(pi.placed(_mul(pi.matrix, m), path + pi.label[cut:], pi.material))
                if rows:
                    self._pending.append((prim, rows))
            it.PruneChildren()
            return
        if tname == "PointInstancer":
            items.extend(self._point_instancer(prim, relative_to))
            it.PruneChildren()
            return
        reg = self.types.get(tname)
        if not tname and prim.IsPseudoRoot():
            return
        if reg is None and self.attributes:
            for a, r in self.attributes.items():  # a loop, not next(genexpr): this runs for most prims
                if prim.HasAttribute(a):
                    reg = r
                    break
        if reg is not None:
            ppath = str(prim.GetPath())
            items.append(_Item(reg, prim, self._matrix(prim, relative_to), ppath, None, prim_path=ppath))
        elif self.suffixes and prim.HasAttribute(FILE_ATTRIBUTE):
            item = self._file_item(prim, relative_to)
            if item is not None:
                items.append(item)

    def _file_item(self, prim: Any, relative_to: Any) -> _Item | None:
        """A prim whose ``asset vixen:file`` names a file a cacher handles by suffix (``.vox``, ...)."""
        path = str(prim.GetPath())
        value = prim.GetAttribute(FILE_ATTRIBUTE).Get(self.time)
        authored = getattr(value, "path", "") if value is not None else ""
        if not authored:
            return None
        resolved = None
        if self.resolve is not None:
            stack = prim.GetAttribute(FILE_ATTRIBUTE).GetPropertyStack(self.time)
            anchor = (stack[0].layer.realPath or stack[0].layer.identifier) if stack else ""
            resolved = self.resolve(authored, anchor)
        resolved = resolved or getattr(value, "resolvedPath", "") or ""
        if not resolved or not os.path.exists(resolved.split("[", 1)[0]):
            self.warn(path, FILE_ATTRIBUTE, f"cannot resolve asset path @{authored}@")
            return None
        suffix = os.path.splitext(resolved.split("[", 1)[0])[1].lower()
        reg = self.suffixes.get(suffix)
        if reg is None:
            self.warn(path, FILE_ATTRIBUTE, f"no cacher handles {suffix!r} files (@{authored}@)")
            return None
        return _Item(reg, prim, self._matrix(prim, relative_to), path, None, file=resolved)

    def _prototype(self, proto: Any) -> list[_Item]:
        key = str(proto.GetPath())
        got = self._protos.get(key)
        if got is None:
            got = self._protos[key] = self.walk(proto, relative_to=proto)
        return got

    def _point_instancer(self, prim: Any, relative_to: Any) -> list[_Batch]:
        pi = UsdGeom.PointInstancer(prim)
        path = str(prim.GetPath())
        targets = pi.GetPrototypesRel().GetTargets()
        proto_idx = pi.GetProtoIndicesAttr().Get(self.time)
        if proto_idx is None or not targets:
            return []
        try:
            # every point, masked ones included (ApplyMask would drop inactive ids and shift the indices)
            xforms = pi.ComputeInstanceTransformsAtTime(self.time, self.time, UsdGeom.PointInstancer.IncludeProtoXform,
                                                        UsdGeom.PointInstancer.IgnoreMask)
            mask = pi.ComputeMaskAtTime(self.time)  # empty, or False for inactiveIds and invisibleIds
        except Exception as exc:  # mismatched array lengths etc.
            self.warn(path, "positions", f"point instancer cannot compute transforms: {exc}")
            return []
        if xforms is None or len(xforms) != len(proto_idx):
            self.warn(path, "protoIndices", "point instancer arrays do not match (no instances made)")
            return []
        m_inst = self._matrix(prim, relative_to)
        protos: list[list[Any] | None] = []
        for t in targets:
            p = self.stage.GetPrimAtPath(t)
            if not p:
                self.warn(path, "prototypes", f"prototype {t} does not exist")
                protos.append(None)
                continue
            key = f"PI:{t}"
            if key not in self._protos:
                self._protos[key] = self._walk_proto_subtree(p)
            protos.append(self._protos[key])
        # every point at once: point i places each row r of its prototype's columns with matrix rows[r] * world[i]
        indices = np.asarray(proto_idx, dtype=np.int64)
        count = len(indices)
        keep = np.ones(count, dtype=bool)
        if mask is not None and len(mask):  # False for inactiveIds and invisibleIds
            m = np.asarray(mask, dtype=bool)[:count]
            keep[:len(m)] = m
        n = len(protos)
        bad = keep & ((indices < 0) | (indices >= n))
        for i in np.flatnonzero(bad).tolist():
            self.warn(path, "protoIndices", f"index {int(indices[i])} out of range for {n} prototypes")
        keep &= ~bad
        cols = [_columns(sub) if sub else None for sub in protos]
        sizes = np.array([len(c[3]) if c else 0 for c in cols] + [0], dtype=np.int64)
        safe = np.where(keep, indices, n)  # n: the empty row of ``sizes``
        points = np.flatnonzero(sizes[safe] > 0)
        if not len(points):
            return []
        parts: list[_Item] = []
        part_rows: list[np.ndarray] = []
        mats: list[np.ndarray] = []
        names: list[str] = []
        starts = np.zeros(n + 1, dtype=np.int64)
        for p, c in enumerate(cols):
            starts[p] = len(names)
            if c:
                part_rows.append(c[1] + len(parts))
                parts.extend(c[0])
                mats.append(c[2])
                names.extend(c[3])
        per_point = sizes[indices[points]]
        point = np.repeat(points, per_point)  # the point of each placement
        first = np.cumsum(per_point) - per_point
        row = starts[indices[point]] + (np.arange(len(point)) - np.repeat(first, per_point))
        world = np.asarray(xforms, dtype=np.float64).reshape(-1, 4, 4) @ np.asarray(m_inst, dtype=np.float64)
        matrices = np.concatenate(mats)[row] @ world[point]
        part = np.concatenate(part_rows)[row]
        parts, part = _first_use(part, parts)
        labels = [f"{path}[{i}]{names[r]}" for i, r in zip(point.tolist(), row.tolist())]
        return [_Batch(parts, part, matrices, labels)]

    def _walk_proto_subtree(self, proto_root: Any) -> list[Any]:
        # prototype items carry matrices relative to the prototype root; the instance transform includes the root's.
        # Prototypes are often kept beneath an ``over`` so that a plain traversal does not draw them (the
        # PointInstancer documentation recommends it): they need not be *defined* to be instanced.
        items = self.walk(proto_root, relative_to=proto_root, predicate=PROTOTYPE_PREDICATE)
        root = str(proto_root.GetPath())
        cut = len(root)
        for it in items:
            if isinstance(it, _Batch):
                it.names = [s[cut:] if s.startswith(root) else s for s in it.names]
            else:
                it.label = it.label[cut:] if it.label.startswith(root) else it.label
        return items


def _layer_stats(stage: Any) -> tuple[tuple[str, int, int], ...] | None:
    out = []
    for layer in stage.GetUsedLayers():
        real = layer.realPath
        if not real:
            if layer.anonymous:
                continue
            return None
        try:
            st = os.stat(real.split("[", 1)[0])
        except OSError:
            return None
        out.append((real, st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def _stats_unchanged(stats: tuple[tuple[str, int, int], ...]) -> bool:
    for real, mtime, size in stats:
        try:
            st = os.stat(real.split("[", 1)[0])
        except OSError:
            return False
        if st.st_mtime_ns != mtime or st.st_size != size:
            return False
    return True


def _to_numpy(m: Any) -> np.ndarray:
    """USD row-vector matrix → float32 4x4 for column vectors (translation in ``[:3, 3]``)."""
    return np.array(m, dtype=np.float64).T.astype(np.float32)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _gc_paused(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """``func`` run with Python's cyclic garbage collector paused (restored after, on errors too; left alone when
    the caller had it off). A load makes tens of thousands of small objects (placements, instances); the
    collections they set off cost ~5% of a cold load and ~35% of a warm reload of a 10,000-point instancer
    (measured: warm 3.9 -> 2.5 ms CPU). Reference counting frees objects as usual meanwhile."""

    @functools.wraps(func)
    def paused(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        enabled = gc.isenabled()
        if enabled:
            gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused


@_gc_paused
def load_stage(path_or_stage: Any, device: Device, *, time: Any = None, purposes: Sequence[str] = ("default", "render"),
               progress: ProgressFn | None = None, strict: bool = False, plugin_manager: Any = None,
               acceleration_structures: bool = False, warm: bool = True, textures: bool = True,
               up_axis: str | None = None, meters_per_unit: float | None = None) -> Scene:
    """Load a USD stage onto ``device``; return the :class:`Scene` (release it, or use ``with``).

    :param path_or_stage: a file path (``.usd``, ``.usda``, ``.usdc``, ``.usdz``) or an open ``Usd.Stage``; a file
        of another suffix (``.blend``, ...) is handed to the plugins' ``vixen_load_scene_file`` hook.
    :param device: the :class:`~vixen_assets.Device`.
    :param time: time code to sample; ``None``: the stage's start time code if it authors a range, else default.
    :param purposes: prim purposes to load.
    :param progress: ``progress(phase, done, total)`` callback (the ``vixen_progress`` hook is called too).
    :param strict: raise ``FormatError`` on the first bad prim instead of skipping it with a warning.
    :param plugin_manager: the pluggy manager (default: the process-wide one).
    :param acceleration_structures: also build BLAS/TLAS (``Scene.tlas``).
    :param warm: reuse the remembered walk of unchanged files on this device (a warm reload).
    :param textures: load the textures of bound ``UsdPreviewSurface`` materials (``Scene.textures``).
    :param up_axis: ``"Y"`` or ``"Z"``: convert the whole scene (instance transforms, bounds, TLAS) to that up axis;
        ``None`` keeps the stage's ``upAxis``. ``Scene.up_axis`` tells the result's.
    :param meters_per_unit: convert the scene to this unit length (meters); ``None`` keeps the stage's
        ``metersPerUnit``. Referenced layers that author another ``metersPerUnit`` are scaled into the stage's unit
        either way. ``Scene.meters_per_unit`` tells the result's.
    :raises FormatError: the stage cannot be opened (naming the file), or a bad prim with ``strict=True``.
    :raises ConfigError: ``up_axis`` or ``meters_per_unit`` is not a valid value.
    """
    up_axis = check_up_axis(up_axis)
    meters_per_unit = check_meters_per_unit(meters_per_unit)
    device.check_open()
    purposes = names_argument(purposes, "purposes")
    callable_argument(progress, "progress")
    if not isinstance(path_or_stage, Usd.Stage):
        path_or_stage = path_argument(path_or_stage, "path_or_stage")
    pm = plugin_manager if plugin_manager is not None else default_plugin_manager()
    t0 = _time.perf_counter()

    def report(phase: str, done: int, total: int) -> None:
        if progress is not None:
            progress(phase, done, total)
        notify_progress(pm, phase, done, total)

    if not isinstance(path_or_stage, Usd.Stage) and _is_foreign_file(os.fspath(path_or_stage)):
        options = {"progress": progress, "strict": strict, "textures": textures, "time": time, "plugin_manager": pm}
        scene = load_scene_file(pm, os.fspath(path_or_stage), device, options)
        if scene is not None:
            _complete(scene, up_axis, meters_per_unit, acceleration_structures)
            scene.stats.seconds["total"] = _time.perf_counter() - t0
            notify_stage_loaded(pm, scene)
            return scene

    plan_key = None
    if warm and not isinstance(path_or_stage, Usd.Stage):
        plan_key = (os.path.abspath(os.fspath(path_or_stage)), repr(time), tuple(purposes), strict, id(pm), up_axis,
                    meters_per_unit)
        plan = device.stash(StagePlans, StagePlans).get(plan_key)
        if plan is not None and _stats_unchanged(plan["layers"]):
            scene = _warm_scene(device, pm, plan, plan_key[0], report)
            if scene is not None:
                scene.stats.seconds["total"] = _time.perf_counter() - t0
                notify_stage_loaded(pm, scene)
                return scene

    stage, path = _open(path_or_stage)
    t_open = _time.perf_counter()
    scene = Scene(device, path)
    try:
        _cold_load(stage, scene, device, pm, resolve_time(stage, time), purposes, strict, report, textures)
        scene.stats.seconds["open"] = t_open - t0
    except BaseException:
        scene.release()
        raise
    _complete(scene, up_axis, meters_per_unit, acceleration_structures)
    scene.stats.seconds["total"] = _time.perf_counter() - t0
    if plan_key is not None:
        layers = _layer_stats(stage)
        if layers is not None:
            device.stash(StagePlans, StagePlans)[plan_key] = _make_plan(scene, layers)
    notify_stage_loaded(pm, scene)
    return scene


def _complete(scene: Scene, up_axis: str | None, meters_per_unit: float | None,
              acceleration_structures: bool) -> None:
    """What every loaded scene gets, whoever read it: the requested frame, then (if asked) its ray-tracing structures;
    on failure the scene is released."""
    try:
        convert_scene_frame(scene, up_axis, meters_per_unit)
        if acceleration_structures:
            scene.build_acceleration_structures()
    except BaseException:
        scene.release()
        raise


def _is_foreign_file(path: str) -> bool:
    """True for an existing file whose suffix no USD file format reads (plugins may load it as a scene)."""
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if not os.path.isfile(path):
        return False
    return not ext or Sdf.FileFormat.FindByExtension(ext) is None


def _error_site(cerr: Any, root_layer: str) -> tuple[str, str]:
    """The prim path and file where a Pcp composition error arose (``rootSite``), else ``/`` and the root layer."""
    site = getattr(cerr, "rootSite", None)
    if site is None:
        return "/", root_layer
    try:
        layer = site.layerStack.rootLayer
        return str(site.path), (layer.realPath or layer.identifier) if layer else root_layer
    except Exception:  # a Pcp error type without a usable site
        return "/", root_layer


def _cold_load(stage: Any, scene: Scene, device: Device, pm: Any, time: Any, purposes: Sequence[str], strict: bool,
               report: Callable[[str, int, int], None], textures: bool = True) -> None:
    registry = cacher_registry(pm)
    root_layer = stage.GetRootLayer().realPath or stage.GetRootLayer().identifier
    scene.up_axis = str(UsdGeom.GetStageUpAxis(stage))
    scene.meters_per_unit = float(UsdGeom.GetStageMetersPerUnit(stage))

    def warn(prim_path: str, field: str | None, message: str, layer: str | None = None) -> None:
        err = FormatError(message, path=layer or root_layer, prim_path=prim_path, field=field)
        if strict:
            raise err
        scene.warnings.append(str(err))

    if hasattr(stage, "GetCompositionErrors"):
        for cerr in stage.GetCompositionErrors():
            msg = cerr.GetErrorMessage() if hasattr(cerr, "GetErrorMessage") else str(cerr)
            prim_path, site = _error_site(cerr, root_layer)
            warn(prim_path, None, f"composition error: {msg.strip()}", site)

    t = _time.perf_counter()
    walker = _Walker(stage, time, purposes, registry.prim_types(), lambda p, f, m: warn(p, f, m),
                     attributes=registry.prim_attributes(), suffixes=registry.suffixes(),
                     resolve=lambda a, anchor: resolve_asset_path(pm, a, anchor))
    if any(layer_meters_per_unit(layer) not in (None, scene.meters_per_unit) for layer in stage.GetUsedLayers()):
        walker.unit_context = scene.meters_per_unit  # some reference authors other units: scale it into the stage's
    items = walker.walk(stage.GetPseudoRoot())
    scene.stats.prims_visited = walker.visited
    report("walk", walker.visited, walker.visited)
    t_walk = _time.perf_counter()

    # read each unique prim once, per cacher
    by_cacher: dict[str, tuple[Any, dict[str, Any]]] = {}
    unique_prims: dict[str, tuple[Registration, Any]] = {}
    for it in _sources(items):
        unique_prims.setdefault(f"file:{it.file}" if it.file else (it.prim_path or it.source_id), (it.registration, it))
    context = LoadContext(time=time, layer_path=root_layer)
    total = len(unique_prims)
    sources: dict[str, Any] = {}

    def failed(ppath: str, reg: Registration, exc: Exception) -> None:
        if isinstance(exc, FormatError):
            if strict:
                raise exc
            scene.warnings.append(str(exc))
        elif isinstance(exc, VixenError):
            raise exc
        else:  # a plugin's reader failing on odd data is a bad prim, not a crash
            warn(ppath, None, f"{reg.name} cacher could not read the prim: {type(exc).__name__}: {exc}")

    # cachers with a batch reader (``read_prims``) read up to READ_BATCH prims per call, the others one by one
    queued: dict[str, list[tuple[str, Any]]] = {}

    def read_queued(name: str) -> None:
        batch = queued.pop(name, [])
        if not batch:
            return
        reg = unique_prims[batch[0][0]][0]
        cacher = by_cacher[name][0]
        try:
            got = cacher.read_prims([prim for _, prim in batch], context)
        except Exception as exc:  # noqa: BLE001 - the batch reader failed as a whole: read them one by one
            got = []
            for _, prim in batch:
                try:
                    got.append(cacher.read_prim(prim, context))
                except Exception as one:  # noqa: BLE001 - reported per prim below
                    got.append(one)
            if isinstance(exc, VixenError) and not isinstance(exc, FormatError):
                raise
        for (ppath, _prim), value in zip(batch, got):
            if isinstance(value, Exception):
                failed(ppath, reg, value)
            else:
                sources[ppath] = value
        prepare_ahead = getattr(cacher, "prepare_ahead", None)
        if prepare_ahead is not None:  # the cacher may prepare this batch on a worker while the next one is read
            prepare_ahead([sources[p] for p, _ in batch if p in sources], context)

    for n, (ppath, (reg, item)) in enumerate(unique_prims.items(), 1):
        cacher = by_cacher.setdefault(reg.name, (cacher_for(device, reg, pm), {}))[0]
        if not item.file and hasattr(cacher, "read_prims"):
            queue = queued.setdefault(reg.name, [])
            queue.append((ppath, item.prim))
            if len(queue) >= READ_BATCH:
                read_queued(reg.name)
        else:
            try:
                if item.file:
                    sources[ppath] = cacher.read_file(item.file, context)
                else:
                    sources[ppath] = cacher.read_prim(item.prim, context)
            except Exception as exc:
                failed(ppath, reg, exc)
        if n % READ_BATCH == 0 or n == total:
            for name in list(queued):
                read_queued(name)
            report("read", n, total)
    t_read = _time.perf_counter()

    # build every cacher's missing entries in one batch each
    entries: dict[str, Any] = {}
    built: list[tuple[Any, str]] = []  # (cacher, key) of the entries this load creates
    entry_keys = scene.entry_keys  # id(entry) -> (cacher, key)
    bytes_before = sum(c.stats.bytes for c, _ in by_cacher.values())
    # evictions during the build shrink the cachers' bytes: count them apart, never against what was uploaded
    evicted_before = sum(c.stats.evicted_bytes for c, _ in by_cacher.values())
    all_evicted_before = sum(c.stats.evicted_bytes for c in list(device.cachers.values()))
    misses_before = sum(c.stats.misses for c, _ in by_cacher.values())
    hits_before = sum(c.stats.hits for c, _ in by_cacher.values())
    for name, (cacher, _) in by_cacher.items():
        paths = [p for p, (reg, _item) in unique_prims.items() if reg.name == name and p in sources]
        if not paths:
            continue
        srcs = [sources[p] for p in paths]
        errors = cacher.check_sources(srcs)
        if any(e is not None for e in errors):
            for p, e in zip(paths, errors):
                if e is not None:
                    if strict and not isinstance(e, Warning):  # a Warning: a legal prim skipped (no faces)
                        raise e
                    scene.warnings.append(str(e))
                    del sources[p]
            paths = [p for p, e in zip(paths, errors) if e is None]
            srcs = [sources[p] for p in paths]
            if not paths:
                continue
        keys = [cacher.key_for(s) for s in srcs]
        built.extend((cacher, k) for k in keys if k not in cacher)
        values = cacher.get_many(srcs, keys)
        for p, k, v in zip(paths, keys, values):
            scene.hold(cacher, k)
            entries[p] = (cacher, k, v)
            entry_keys[id(v)] = (name, k)
        report("build", len(paths), len(paths))
    t_build = _time.perf_counter()
    try:
        device.uploader.flush().wait()
    except BaseException:
        # the uploads of this load never happened (e.g. device lost at submit): drop what it built from the caches
        scene.release()
        for cacher, key in built:
            cacher.discard([key])
        raise
    report("upload", 1, 1)
    t_upload = _time.perf_counter()

    seen, triangles, mesh_placements = _place(scene, items, entries, sources)
    if textures:
        t_tex = _time.perf_counter()
        if load_material_textures(stage, scene, device, time, lambda p, f, m: warn(p, f, m), strict):
            device.uploader.flush().wait()
        scene.stats.seconds["textures"] = _time.perf_counter() - t_tex
    scene.meshes = [v for v in seen.values() if it_is_mesh(v)]
    scene.entries = [v for v in seen.values() if not it_is_mesh(v)]
    st = scene.stats
    st.meshes = mesh_placements
    st.unique_meshes = len(scene.meshes)
    st.instances = len(scene.instances)
    st.triangles = int(triangles)
    evicted = sum(c.stats.evicted_bytes for c, _ in by_cacher.values()) - evicted_before
    st.bytes_uploaded = sum(c.stats.bytes for c, _ in by_cacher.values()) - bytes_before + evicted
    st.bytes_evicted = sum(c.stats.evicted_bytes for c in list(device.cachers.values())) - all_evicted_before
    st.cache_misses = sum(c.stats.misses for c, _ in by_cacher.values()) - misses_before
    st.cache_hits = sum(c.stats.hits for c, _ in by_cacher.values()) - hits_before
    st.seconds.update(walk=t_walk - t, read=t_read - t_walk, build=t_build - t_read, upload=t_upload - t_build)


def _sources(items: list[Any]) -> Iterator[_Item]:
    """The items of ``items`` that name what is read: plain items, and the parts of batches (in first-use order)."""
    for it in items:
        if isinstance(it, _Batch):
            yield from it.parts
        else:
            yield it


def _place(scene: Scene, items: list[Any], entries: dict[str, Any],
           sources: dict[str, Any]) -> tuple[dict[int, Any], int, int]:
    """Add an :class:`Instance` to ``scene`` for every placement whose source was built (plain items one by one,
    batches as columns); return the unique entries by ``id`` in the order of their first placement, the triangles
    over all placements and how many place meshes. Every world matrix is converted in one pass: each transform is a
    view of one transposed float32 array (what ``_to_numpy`` gives for one matrix)."""
    seen: dict[int, Any] = {}
    per_source: dict[str, tuple[Any, str | None, str] | None] = {}  # looked up once per unique source

    def info_of(it: _Item) -> tuple[Any, str | None, str] | None:
        sid = f"file:{it.file}" if it.file else (it.prim_path or it.source_id)
        info = per_source.get(sid, False)
        if info is False:
            got = entries.get(sid)
            info = per_source[sid] = None if got is None else (
                got[2], getattr(sources[sid], "material_path", None), it.registration.name)
        return info

    values: list[Any] = []
    labels: list[str] = []
    materials: list[str | None] = []
    kinds: list[str] = []
    blocks: list[np.ndarray] = []  # the placements' matrices (float64, row-vector convention), in order
    run: list[Any] = []  # matrices of the plain items since the last batch
    triangles = 0
    for it in items:
        if not isinstance(it, _Batch):
            info = info_of(it)
            if info is None:
                continue
            value = info[0]
            seen.setdefault(id(value), value)
            values.append(value)
            labels.append(it.label)
            materials.append(it.material or info[1])
            kinds.append(info[2])
            run.append(it.matrix)
            triangles += getattr(value, "triangle_count", 0)
            continue
        if run:
            blocks.append(np.array(run, dtype=np.float64).reshape(-1, 4, 4))
            run = []
        infos = [info_of(p) for p in it.parts]
        k = len(infos)
        part_value = np.empty(k, dtype=object)
        part_material = np.empty(k, dtype=object)
        part_kind = np.empty(k, dtype=object)
        part_triangles = np.zeros(k, dtype=np.int64)
        for j, (p, info) in enumerate(zip(it.parts, infos)):
            if info is not None:
                seen.setdefault(id(info[0]), info[0])
                part_value[j] = info[0]
                part_material[j] = p.material or info[1]
                part_kind[j] = info[2]
                part_triangles[j] = getattr(info[0], "triangle_count", 0)
        part = it.part
        if any(info is None for info in infos):  # placements of sources that failed are left out
            rows = np.flatnonzero(np.array([info is not None for info in infos], dtype=bool)[part])
            part = part[rows]
            labels.extend([it.names[r] for r in rows.tolist()])
            blocks.append(it.matrices[rows])
        else:
            labels.extend(it.names)
            blocks.append(it.matrices)
        values.extend(part_value[part].tolist())
        materials.extend(part_material[part].tolist())
        kinds.extend(part_kind[part].tolist())
        triangles += int(part_triangles[part].sum())
    if run:
        blocks.append(np.array(run, dtype=np.float64).reshape(-1, 4, 4))
    if values:
        mats = (np.concatenate(blocks) if len(blocks) > 1 else blocks[0]).astype(np.float32)
        transposed = mats.transpose(0, 2, 1)  # transposed[k] is mats[k].T: the same view, made in one call
        scene.instances.extend(map(Instance, values, list(transposed), labels, materials, kinds))
    return seen, triangles, kinds.count("mesh")


def it_is_mesh(value: Any) -> bool:
    """True for entries that are meshes (they have index buffers)."""
    return hasattr(value, "index_buffer") and hasattr(value, "triangle_count")


#: What a warm reload passes to ``Instance`` for each placement of the cold load (one C-level call per placement).
_INSTANCE_ARGS = operator.attrgetter("mesh", "transform", "prim_path", "material", "kind")
_MESH = operator.attrgetter("mesh")
_TEXTURES = operator.attrgetter("textures")


def _make_plan(scene: Scene, layers: Any) -> dict[str, Any]:
    """What a warm reload of ``scene`` needs: the references to acquire again and the placements as ``Instance``
    arguments (taken in C-level passes; the per-placement references are derived from them only when a reload cannot
    use them as they are)."""
    refs: dict[str, tuple[Any, list[str]]] = {}
    for cacher, key in scene.held_refs:
        refs.setdefault(cacher.name, (cacher, []))[1].append(key)
    known = scene.entry_keys
    insts = scene.instances
    placements = list(map(_INSTANCE_ARGS, insts))
    meshes = list(map(_MESH, insts))
    by_id = dict(zip(map(id, meshes), meshes))  # the distinct entries placed, in first-placement order
    ref_of = {i: known.get(i) for i in by_id}
    textures = None
    if any(map(_TEXTURES, insts)):
        textures = [tuple([getattr(t, "key", None) for t in i.textures]) if i.textures else () for i in insts]
    unique = ([known.get(id(m)) for m in scene.meshes], [known.get(id(e)) for e in scene.entries])
    # the placements as Instance arguments, used as they are when the reload gets back the same entry objects (the
    # usual case) and no placement has textures: one C-level pass instead of a loop of Python work per placement
    fast = None
    if textures is None and None not in ref_of.values():
        fast = {ref_of[i]: value for i, value in by_id.items()}
    return {"layers": layers, "refs": {n: list(keys) for n, (_c, keys) in refs.items()},
            "cachers": {n: c for n, (c, _k) in refs.items()}, "placements": placements, "ref_of": ref_of,
            "textures": textures, "fast": fast,
            "unique": unique if None not in unique[0] and None not in unique[1] else None,
            "warnings": list(scene.warnings), "stats": scene.stats.as_dict(),
            "frame": (scene.up_axis, scene.meters_per_unit)}


def _warm_scene(device: Device, pm: Any, plan: dict[str, Any], path: str,
                report: Callable[[str, int, int], None]) -> Scene | None:
    scene = Scene(device, path)
    by_key: dict[tuple[str, str], Any] = {}
    try:
        for name, keys in plan["refs"].items():
            cacher = plan["cachers"][name]
            if device.cachers.get(name) is not cacher:
                scene.release()
                return None
            values = cacher.acquire_keys(keys)
            if values is None:
                scene.release()
                return None
            for k, v in zip(keys, values):
                scene.hold(cacher, k)
                by_key[(name, k)] = v
        fast = plan["fast"]
        if fast is not None and all(by_key.get(ref) is value for ref, value in fast.items()):
            scene.instances.extend(itertools.starmap(Instance, plan["placements"]))
        else:
            # one pass of plain tuple work per placement
            get = by_key.get
            ref_of = plan["ref_of"]
            append = scene.instances.append
            make = Instance
            tex = plan["textures"] or itertools.repeat(())
            for (mesh, transform, prim_path, material, kind), tex_keys in zip(plan["placements"], tex):
                ref = ref_of[id(mesh)]
                value = get(ref) if ref is not None else None
                if value is None:
                    continue
                textures = [by_key[("texture", k)] for k in tex_keys if ("texture", k) in by_key] if tex_keys else []
                append(make(value, transform, prim_path, material, kind, textures))
        scene.textures = [v for (name, _k), v in by_key.items() if name == "texture"]
    except BaseException:
        scene.release()
        raise
    if plan["unique"] is not None and len(scene.instances) == len(plan["placements"]):
        # every placement came back: the unique meshes and entries are the cold load's, in its order
        scene.meshes = [by_key[ref] for ref in plan["unique"][0]]
        scene.entries = [by_key[ref] for ref in plan["unique"][1]]
    else:
        unique = {id(i.mesh): i.mesh for i in scene.instances}
        scene.meshes = [v for v in unique.values() if it_is_mesh(v)]
        scene.entries = [v for v in unique.values() if not it_is_mesh(v)]
    scene.warnings = list(plan["warnings"])
    scene.up_axis, scene.meters_per_unit = plan["frame"]
    old = plan["stats"]
    st = scene.stats
    st.prims_visited = old["prims_visited"]
    st.meshes = old["meshes"]
    st.unique_meshes = len(scene.meshes)
    st.instances = len(scene.instances)
    st.triangles = old["triangles"] if len(scene.instances) == old["instances"] else scene.triangle_count
    st.cache_hits = sum(len(k) for k in plan["refs"].values())
    st.warm = True
    report("upload", 1, 1)
    return scene


__all__ = ["load_stage", "resolve_time"]
