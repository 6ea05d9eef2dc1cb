"""Virtual texturing: tiled ``.vtex`` files (:func:`build`), and a GPU page table and tile cache that stream the
tiles a view needs inside a fixed memory budget (:func:`open_virtual_texture`); see ``docs/vt.md``."""

from .builder import build
from .builder import downsample
from .runtime import UpdateStats
from .runtime import VirtualTexture
from .runtime import VtStats
from .runtime import open_virtual_texture
from .tilefile import Layout
from .tilefile import TileFile
from .tilefile import info

__all__ = ["build", "downsample", "info", "open_virtual_texture", "Layout", "TileFile", "UpdateStats",
           "VirtualTexture", "VtStats"]
