"""Splitting image copies into pieces that fit a staging chunk (bands of block rows, or z slices)."""

from __future__ import annotations

from ..errors import VixenError
from ..formats.vkformat import FormatInfo, level_size
from ..vk.images import ImageCopy


def mip_extent(width: int, height: int, depth: int, level: int) -> tuple[int, int, int]:
    """The extent of mip ``level``."""
    return max(1, width >> level), max(1, height >> level), max(1, depth >> level)


def level_copies(info: FormatInfo, width: int, height: int, depth: int, *, level: int, base_layer: int,
                 layer_count: int, buffer_offset: int, max_bytes: int) -> list[ImageCopy]:
    """Copies of one level (``layer_count`` layers stored one after another from ``buffer_offset``), each at most
    ``max_bytes``: whole layers when they fit, else bands of block rows (2D) or groups of z slices (3D)."""
    one = level_size(info, width, height, depth)
    if one * layer_count <= max_bytes:
        return [ImageCopy(buffer_offset, one * layer_count, level, base_layer, layer_count, width, height, depth)]
    out: list[ImageCopy] = []
    bh = info.block_height
    for layer in range(layer_count):
        base = buffer_offset + layer * one
        if one <= max_bytes:
            out.append(ImageCopy(base, one, level, base_layer + layer, 1, width, height, depth))
            continue
        if depth > 1:
            slice_bytes = level_size(info, width, height, 1)
            per = max_bytes // slice_bytes
            if per < 1:
                raise VixenError(f"one z slice of {slice_bytes} bytes exceeds the {max_bytes}-byte staging chunk")
            for z in range(0, depth, per):
                n = min(per, depth - z)
                out.append(ImageCopy(base + z * slice_bytes, n * slice_bytes, level, base_layer + layer, 1, width,
                                     height, n, 0, 0, z))
            continue
        row_bytes = level_size(info, width, min(bh, height), 1)
        rows_per = (max_bytes // row_bytes) * bh
        if rows_per < 1:
            raise VixenError(f"one block row of {row_bytes} bytes exceeds the {max_bytes}-byte staging chunk")
        for y in range(0, height, rows_per):
            h = min(rows_per, height - y)
            off = base + (y // bh) * row_bytes
            size = row_bytes * (-(-h // bh))
            out.append(ImageCopy(off, size, level, base_layer + layer, 1, width, h, 1, 0, y, 0))
    return out
