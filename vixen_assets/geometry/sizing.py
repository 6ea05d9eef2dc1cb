"""What a mesh will take once prepared, from its counts alone: the size pre-flight the mesh cacher charges to the
budget before triangulating, flattening or packing (and what ``vixen_assets.estimate`` reports).

A prepared mesh (see :mod:`~vixen_assets.geometry.packing`) has one vertex per point (more where ``faceVarying`` or
``uniform`` values split a point: :func:`mesh_gpu_bytes` is then a lower bound); ``stride`` bytes per vertex (12 for the position,
12 for a normal, 4 per component of every further primvar); and 3 indices per triangle, ``uint16`` up to 65535
vertices, else ``uint32``. A polygon of ``n`` corners makes ``n - 2`` triangles.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .mesh_source import DEFAULT_ATTRIBUTES, MeshSource


def triangle_count(face_vertex_counts: np.ndarray) -> int:
    """Triangles a fan triangulation of these faces makes (faces of fewer than 3 corners make none).

    :param face_vertex_counts: corners per face.
    """
    counts = np.asarray(face_vertex_counts)
    if not counts.size:
        return 0
    # sum(max(c - 2, 0)) without an int64 copy of the counts: faces under 3 corners are few
    small = counts[counts < 2].astype(np.int64)
    return int(counts.sum(dtype=np.int64)) - 2 * int(counts.size) + int((2 - small).sum())


def source_triangles(source: MeshSource) -> int:
    """:func:`triangle_count` of ``source``'s faces, counted once per source: the batch validation remembers it
    (corners minus twice the faces, once the counts are known to be sound) and so does this function, as long as
    ``source.face_vertex_counts`` is the array it was counted from.

    :param source: the mesh as read.
    """
    counts = source.face_vertex_counts
    known, n = source._triangles
    if known is counts:
        return n
    n = triangle_count(counts)
    source._triangles = (counts, n)
    return n


def mesh_vertex_stride(source: MeshSource, attributes: Sequence[str] = DEFAULT_ATTRIBUTES) -> int:
    """Bytes per vertex of the prepared mesh for ``attributes``.

    :param source: the mesh as read.
    :param attributes: the requested vertex attributes.
    """
    stride = 0
    for name in attributes:
        if name in ("position", "normal"):
            stride += 12
        elif name == "st":
            stride += 8
        else:
            pv = source.primvars.get(name)
            stride += 4 * min(4, max(1, pv.components)) if pv is not None else 4
    return stride


def mesh_gpu_bytes(source: MeshSource, attributes: Sequence[str] = DEFAULT_ATTRIBUTES) -> int:
    """GPU bytes (vertex plus index buffer) the prepared mesh will take at least, from counts only (no preparation).

    Exact for meshes without ``faceVarying``/``uniform`` attributes; with them, corners whose values differ become
    extra vertices that only preparation counts, so the result is then a lower bound.

    :param source: the mesh as read.
    :param attributes: the requested vertex attributes.
    """
    # faceVarying/uniform values split points only where the values differ (an indexed primvar often splits none),
    # which only preparation finds out: count one vertex per point, a lower bound that never refuses a mesh that fits
    vertices = source.point_count
    indices = 3 * source_triangles(source)
    index_size = 2 if vertices <= 0xFFFF else 4
    return vertices * mesh_vertex_stride(source, attributes) + indices * index_size
