"""The GPU-ready result of mesh preparation and its interleaved vertex layout.

Vertex layout
-------------
One interleaved vertex buffer per mesh, little-endian float32 throughout, attributes in this order:

============  ======  =====================  =======================================================
attribute     offset  format                 content
============  ======  =====================  =======================================================
``position``  0       ``R32G32B32_SFLOAT``   the mesh's points (object space, as authored)
``normal``    12      ``R32G32B32_SFLOAT``   authored normals flattened, or smooth computed normals
``st``        24      ``R32G32_SFLOAT``      the ``st`` primvar as authored (USD's origin is bottom-left)
extras        32...   ``R32[G32[B32[A32]]]`` further requested primvars, in the order requested
============  ======  =====================  =======================================================

The stride is 32 bytes for the default ``("position", "normal", "st")``; each extra primvar appends 4 bytes per
component (its component count is the largest in the batch, 1 to 4; ``displayColor`` is 3). Leaving ``normal`` or
``st`` out of the requested attributes removes them and packs the rest tightly. A requested primvar a mesh lacks is
zero-filled, so every mesh of a batch has the same layout. Integer primvars are converted to float32.

``PreparedMesh.layout`` maps each attribute to ``(offset, format, stride)``; ``vertices`` is a numpy structured
array with the same field names and offsets (``vertices.tobytes()`` / ``memoryview(vertices)`` is the buffer).

Indices are ``uint16`` when the mesh has at most 65535 vertices (so index 0xFFFF, the primitive-restart value, never
occurs) and ``uint32`` otherwise. Triangles wind counter-clockwise seen from the side the normals point to
(right-handed, USD's default; ``leftHanded`` meshes are flipped to match).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from vixen_assets.errors import FormatError

__all__ = ["PreparedMesh", "Submesh", "VertexLayout", "build_layout", "FIXED_COMPONENTS", "FORMATS"]

#: Vulkan format names by float32 component count.
FORMATS = {1: "R32_SFLOAT", 2: "R32G32_SFLOAT", 3: "R32G32B32_SFLOAT", 4: "R32G32B32A32_SFLOAT"}

#: Attributes whose component count is fixed whatever the data.
FIXED_COMPONENTS = {"position": 3, "normal": 3, "st": 2, "displayColor": 3, "displayOpacity": 1}

_CANONICAL = ("position", "normal", "st")

#: Largest vertex count that still uses 16-bit indices.
MAX_UINT16_VERTICES = 65535


class Submesh(NamedTuple):
    """A contiguous range of a mesh's index buffer drawn with one material (immutable; a NamedTuple because a
    batch creates one per subset and a frozen dataclass is ~6x slower to build).

    ``name`` is the GeomSubset's name, or ``""`` for the trailing range of faces that are in no subset;
    ``first_index``/``index_count`` count indices (3 per triangle); ``material_path`` is the bound material or None.
    """

    name: str
    first_index: int
    index_count: int
    material_path: str | None


@dataclass(frozen=True)
class VertexLayout:
    """The interleaved layout of a batch: attribute names in buffer order, components, the numpy dtype."""

    names: tuple[str, ...]
    components: tuple[int, ...]
    offsets: tuple[int, ...]
    stride: int
    dtype: np.dtype

    def as_dict(self) -> dict[str, tuple[int, str, int]]:
        """``{name: (offset, format, stride)}``, as stored in :attr:`PreparedMesh.layout`."""
        return {n: (o, FORMATS[c], self.stride) for n, c, o in zip(self.names, self.components, self.offsets)}


def build_layout(components: dict[str, int]) -> VertexLayout:
    """Lay out attributes (``{name: components}``): ``position``, ``normal``, ``st`` first, then the rest as given."""
    names = [n for n in _CANONICAL if n in components] + [n for n in components if n not in _CANONICAL]
    comps, offsets = [], []
    offset = 0
    for name in names:
        c = int(components[name])
        if not 1 <= c <= 4:
            raise FormatError(f"attribute has {c} components; 1 to 4 are supported", field=name)
        comps.append(c)
        offsets.append(offset)
        offset += 4 * c
    dtype = np.dtype(
        {"names": names, "formats": [np.dtype((np.float32, (c,))) if c > 1 else np.dtype(np.float32) for c in comps],
         "offsets": offsets, "itemsize": offset}
    )
    return VertexLayout(tuple(names), tuple(comps), tuple(offsets), offset, dtype)


@dataclass(eq=False, slots=True)
class PreparedMesh:
    """One mesh ready to upload: interleaved ``vertices``, ``indices``, submeshes, bounds and a content hash.

    ``vertices`` is a structured array (see the module docstring for the layout) and ``indices`` a 1-D
    ``index_dtype`` array, 3 per triangle. ``bounds`` is ``(min, max)`` of the positions (zeros when empty).
    ``content_hash`` is :meth:`MeshSource.content_hash` of the source for the attributes prepared.
    """

    vertices: np.ndarray
    indices: np.ndarray
    index_dtype: np.dtype
    vertex_count: int
    index_count: int
    layout: dict[str, tuple[int, str, int]]
    submeshes: list[Submesh]
    bounds: tuple[np.ndarray, np.ndarray]
    triangle_count: int
    content_hash: str
    prim_path: str = ""
    stride: int = field(default=0)

    @property
    def nbytes(self) -> int:
        """Bytes of the vertex and index buffers together."""
        return int(self.vertices.nbytes + self.indices.nbytes)

    def attribute(self, name: str) -> np.ndarray:
        """The ``(vertex_count, components)`` float32 values of one attribute (a strided view of ``vertices``)."""
        values = self.vertices[name]
        return values if values.ndim == 2 else values[:, None]

    def triangles(self) -> np.ndarray:
        """The ``(triangle_count, 3)`` vertex indices."""
        return self.indices.reshape(-1, 3)
