"""Virtual texturing: tiled ``.vtex`` files (:func:`build`), and a GPU page table and tile cache that stream the
tiles a view needs inside a fixed memory budget (:func:`open_virtual_texture`)."""

from .builder import build, downsample
from .runtime import UpdateStats, VirtualTexture, VtStats, open_virtual_texture
from .tilefile import Layout, TileFile, info

__all__ = ["build", "downsample", "info", "open_virtual_texture", "Layout", "TileFile", "UpdateStats",
           "VirtualTexture", "VtStats"]
