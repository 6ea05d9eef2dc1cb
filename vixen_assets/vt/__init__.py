"""Virtual texturing: tiled ``.vtex`` files (:func:`build`), and a GPU page table and tile cache that stream the
tiles a view needs inside a fixed memory budget (:func:`open_virtual_texture`)."""

from .builder import build, downsample
from .tilefile import Layout, TileFile, info

__all__ = ["build", "downsample", "info", "Layout", "TileFile"]
