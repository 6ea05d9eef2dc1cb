"""Tracked images: ``Image`` (a ``VkImage`` bound to a suballocated range) and how it is created and read back.

Images are *optimal* resources for ``bufferImageGranularity``: the TLSF allocator gives them whole granularity
pages (see ``tlsf.py``), so they never share a page with a buffer. Every image is created with
``SAMPLED | TRANSFER_DST | TRANSFER_SRC`` so it can be uploaded to and read back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError, DeviceClosedError
from ..vk import images as vki
from ..vk.enums import FormatFeature, ImageLayout, ImageType, ImageUsage
from .allocation import Allocation
from .resource import TrackedResource

if TYPE_CHECKING:
    from .context import GpuContext

# short names of the vk/enums.py values this module uses (imported by the texture cacher and tests)
USAGE_TRANSFER_SRC = ImageUsage.TRANSFER_SRC
USAGE_TRANSFER_DST = ImageUsage.TRANSFER_DST
USAGE_SAMPLED = ImageUsage.SAMPLED
USAGE_STORAGE = ImageUsage.STORAGE
FEATURE_SAMPLED = FormatFeature.SAMPLED_IMAGE
FEATURE_TRANSFER_DST = FormatFeature.TRANSFER_DST
LAYOUT_UNDEFINED = ImageLayout.UNDEFINED
LAYOUT_SHADER_READ = ImageLayout.SHADER_READ_ONLY
IMAGE_1D, IMAGE_2D, IMAGE_3D = ImageType.TYPE_1D, ImageType.TYPE_2D, ImageType.TYPE_3D


class Image(TrackedResource):
    """A GPU image: ``handle``, format, extent, ``levels``, ``layers`` (array layers x faces), ``layout``."""

    def __init__(self, ctx: GpuContext, *, name: str, vk_format: int, width: int, height: int = 1, depth: int = 1,
                 levels: int = 1, layers: int = 1, faces: int = 1, image_type: int | None = None,
                 usage: int = USAGE_SAMPLED | USAGE_TRANSFER_DST | USAGE_TRANSFER_SRC, category: str = "default") -> None:
        """Create and bind the image (budget charged first; nothing left behind on failure)."""
        self.vk_format = vk_format
        self.width, self.height, self.depth = width, height, depth
        self.levels = levels
        self.faces = faces
        self.array_layers = layers
        self.layers = layers * faces  # Vulkan array layers
        self.image_type = image_type if image_type is not None else (IMAGE_3D if depth > 1 else IMAGE_2D)
        self.aspect = vki.ASPECT_COLOR
        self.layout = LAYOUT_UNDEFINED
        self.last_use = 0
        #: what ``vkCreateImage`` got (a defragmentation move recreates the image the same way)
        self.usage = usage | USAGE_TRANSFER_DST | USAGE_TRANSFER_SRC
        #: goes up by one each time ``handle`` changes (``Device.defragment()`` moved it): re-create views then
        self.generation = 1
        #: ``False`` keeps ``Device.defragment()`` from moving it (e.g. a view of it lives on where nobody re-creates it)
        self.movable = True
        dev = ctx.logical
        self.handle = vki.create_image(dev, image_type=self.image_type, vk_format=vk_format, width=width, height=height,
                                       depth=depth, levels=levels, layers=self.layers,
                                       usage=self.usage, cube=faces == 6)
        self._alloc: Allocation | None = None
        try:
            size, align, bits = vki.image_requirements(dev, self.handle)
            type_index = ctx.memory_type(bits, "device_local")
            self._alloc = ctx.allocator.allocate(size, align, type_index, category=category, type_bits=bits, kind=1)
            vki.bind_image(dev, self.handle, self._alloc.block.memory, self._alloc.offset)
        except BaseException:
            if self._alloc is not None:
                ctx.allocator.free(self._alloc)
            vki.destroy_image(dev, self.handle)
            raise
        self._track(ctx, name)

    @property
    def nbytes(self) -> int:
        """Bytes of memory the image takes (the driver's requirement)."""
        return self._alloc.size if self._alloc is not None else 0

    @property
    def allocation(self) -> Allocation:
        """The allocation record."""
        if self._alloc is None:
            raise DeviceClosedError(f"image {self.name!r} was destroyed")
        return self._alloc

    def _release(self) -> None:
        if self.ctx.device_open:
            vki.destroy_image(self.ctx.logical, self.handle)
        if self._alloc is not None:
            self.ctx.allocator.free(self._alloc)
            self._alloc = None

    def __repr__(self) -> str:
        return (f'<Image "{self.name}" {self.width}x{self.height}x{self.depth} levels={self.levels} '
                f"layers={self.layers} format={self.vk_format}>")


def format_supported(ctx: GpuContext, vk_format: int, *, image_type: int = IMAGE_2D, cube: bool = False, width: int = 1,
                     height: int = 1, depth: int = 1, levels: int = 1, layers: int = 1) -> bool:
    """True when the device can sample ``vk_format`` with optimal tiling, copy into it, and fit the extent."""
    from ..vk.physical import format_properties

    _lin, optimal, _buf = format_properties(ctx.physical, vk_format)
    if optimal & (FEATURE_SAMPLED | FEATURE_TRANSFER_DST) != (FEATURE_SAMPLED | FEATURE_TRANSFER_DST):
        return False
    return vki.image_format_supported(ctx.physical, vk_format, image_type=image_type,
                                      usage=USAGE_SAMPLED | USAGE_TRANSFER_DST | USAGE_TRANSFER_SRC, cube=cube,
                                      levels=levels, layers=layers, width=width, height=height, depth=depth)


def check_extent(name: str, width: int, height: int, depth: int) -> None:
    """Reject empty extents before any Vulkan call."""
    if min(width, height, depth) < 1:
        raise ConfigError(f"image {name!r}: extent {width}x{height}x{depth} is empty")
