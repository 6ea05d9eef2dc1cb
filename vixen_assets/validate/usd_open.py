"""Opening a stage for validation, optionally confined to a root directory (``--confine ROOT``).

Every composition dependency (sublayers, references, payloads) is resolved layer by layer *before* the stage opens;
one that resolves outside the root is recorded and muted (``Sdf.Layer.AddToMutedLayers``) so USD never reads it.
Mutes are process-wide, so they are removed again once the stage is open.
"""

from __future__ import annotations

import os

from pxr import Sdf, Tf, Usd

from .context import inside


def _dependencies(path: str, root: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Walk the layer graph from ``path``: ``(outside, inside_layers)`` where outside holds ``(layer, authored,
    resolved)`` for each dependency outside ``root``."""
    outside: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    todo = [os.path.abspath(path)]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        layer = Sdf.Layer.FindOrOpen(current)
        if layer is None:
            continue
        for authored in layer.GetCompositionAssetDependencies():
            resolved = layer.ComputeAbsolutePath(authored) if not os.path.isabs(authored) else authored
            if not inside(resolved, root):
                outside.append((current, authored, resolved))
            else:
                todo.append(resolved)
    return outside, sorted(seen)


def open_confined(path: str, confine: str | None) -> tuple[Usd.Stage | None, str | None, list[tuple[str, str, str]]]:
    """Open ``path`` as a stage: ``(stage, None, outside)`` or ``(None, error message, outside)``."""
    outside: list[tuple[str, str, str]] = []
    muted: list[str] = []
    try:
        if confine is not None:
            outside, _ = _dependencies(path, confine)
            for _, _, resolved in outside:
                Sdf.Layer.AddToMutedLayers(resolved)
                muted.append(resolved)
        try:
            stage = Usd.Stage.Open(path)
        except Tf.ErrorException as exc:
            return None, " ".join(str(exc).split()), outside
        if stage is None:
            return None, "Usd.Stage.Open returned no stage", outside
        return stage, None, outside
    finally:
        for m in muted:
            Sdf.Layer.RemoveFromMutedLayers(m)
