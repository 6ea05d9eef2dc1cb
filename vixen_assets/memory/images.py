"""Tracked images: ``Image`` (a ``VkImage`` bound to a suballocated range) and how it is created and read back.

``create_images`` makes several at once (the checks and the budget charge for all before the first
``vkCreateImage``, one ``vkBindImageMemory2``; all or nothing), as the texture cacher's batches do.

Images are *optimal* resources for ``bufferImageGranularity``: the TLSF allocator gives them whole granularity
pages (see ``tlsf.py``), so they never share a page with a buffer. Every image is created with
``SAMPLED | TRANSFER_DST | TRANSFER_SRC`` so it can be uploaded to and read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import ConfigError, DeviceClosedError, UnsupportedFeatureError, UnsupportedFormatError
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
_INT_TYPES = frozenset((int, ImageType, ImageUsage))  # parameter types a remembered check is reused for


class Image(TrackedResource):
    """A GPU image: ``handle``, format, extent, ``levels``, ``layers`` (array layers x faces), ``layout``."""

    def __init__(self, ctx: GpuContext, *, name: str, vk_format: int, width: int, height: int = 1, depth: int = 1,
                 levels: int = 1, layers: int = 1, faces: int = 1, image_type: int | None = None,
                 usage: int = USAGE_SAMPLED | USAGE_TRANSFER_DST | USAGE_TRANSFER_SRC, category: str = "default") -> None:
        """Create and bind the image (budget charged first; nothing left behind on failure)."""
        self._describe(name, vk_format, width, height, depth, levels, layers, faces, image_type, usage, category)
        _create_and_bind(ctx, [self])

    def _describe(self, name: str, vk_format: int, width: int, height: int, depth: int, levels: int, layers: int,
                  faces: int, image_type: int | None, usage: int, category: str) -> None:
        """Set the fields (no Vulkan object yet: :func:`_create_and_bind` makes them)."""
        self.name = name
        self.category = category
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
        self.handle: Any = None
        self._alloc: Allocation | None = None

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


@dataclass(frozen=True)
class ImageSpec:
    """The parameters of one image of :func:`create_images` (those of :class:`Image`)."""

    name: str
    vk_format: int
    width: int
    height: int = 1
    depth: int = 1
    levels: int = 1
    layers: int = 1
    faces: int = 1
    image_type: int | None = None
    usage: int = USAGE_SAMPLED | USAGE_TRANSFER_DST | USAGE_TRANSFER_SRC
    category: str = "default"


def create_images(ctx: GpuContext, specs: Sequence[ImageSpec]) -> list[Image]:
    """Create and bind several images in one pass: what ``Image(...)`` does for each, with the fixed costs paid
    once for the batch.

    Every image's parameters are checked and the budget is charged for all of them before the first
    ``vkCreateImage``; then each image is created and its memory requirements queried, its range suballocated from
    the memory blocks (images take whole ``bufferImageGranularity`` pages, see ``tlsf.py``), and every image is
    bound by one ``vkBindImageMemory2`` call. On any failure (a parameter, the budget, a Vulkan error) every image
    created so far is destroyed and every range freed: nothing of the batch is left.

    :param ctx: the device's context.
    :param specs: the images.
    :returns: one live :class:`Image` per spec, in order.
    :raises ConfigError: a parameter breaks a Vulkan rule (naming the image).
    :raises UnsupportedFeatureError: the device's limits or format support do not allow an image.
    :raises BudgetExceededError: the images do not fit the budget.
    """
    images = []
    for s in specs:
        img = Image.__new__(Image)
        img._describe(s.name, s.vk_format, s.width, s.height, s.depth, s.levels, s.layers, s.faces, s.image_type,
                      s.usage, s.category)
        images.append(img)
    _create_and_bind(ctx, images)
    return images


def _create_and_bind(ctx: GpuContext, images: Sequence[Image]) -> None:
    """Check, charge, create, suballocate and bind ``images`` (described, not yet created); all or nothing."""
    if not images:
        return
    estimates: dict[str, int] = {}
    for img in images:
        est = check_image_parameters(ctx, img.name, vk_format=img.vk_format, image_type=img.image_type,
                                     width=img.width, height=img.height, depth=img.depth, levels=img.levels,
                                     layers=img.array_layers, faces=img.faces, usage=img.usage)
        estimates[img.category] = estimates.get(img.category, 0) + est
    dev = ctx.logical
    created: list[Image] = []
    try:
        # the budget is charged before vkCreateImage (with the size the formats imply); the driver's exact
        # requirements replace that charge once the images exist
        charged: list[tuple[int, int, str]] = []
        try:
            for category, est in estimates.items():
                charged.append((est, ctx.budget.reserve(est, category=category), category))
            for img in images:
                img.handle = vki.create_image(dev, image_type=img.image_type, vk_format=img.vk_format,
                                              width=img.width, height=img.height, depth=img.depth, levels=img.levels,
                                              layers=img.layers, usage=img.usage, cube=img.faces == 6)
                created.append(img)
        finally:
            for est, heap, category in charged:
                ctx.budget.release(est, heap=heap, category=category)
        binds = []
        for img in images:
            size, align, bits = vki.image_requirements(dev, img.handle)
            type_index = ctx.memory_type(bits, "device_local")
            alloc = img._alloc = ctx.allocator.allocate(size, align, type_index, category=img.category,
                                                        type_bits=bits, kind=1)
            binds.append((img.handle, alloc.block.memory, alloc.offset))
        vki.bind_images(dev, binds)
    except BaseException:
        for img in created:
            if img._alloc is not None:
                ctx.allocator.free(img._alloc)
                img._alloc = None
            vki.destroy_image(dev, img.handle)
            img.handle = None
        raise
    for img in images:
        img._track(ctx, img.name)


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


def image_bytes(vk_format: int, width: int, height: int = 1, depth: int = 1, levels: int = 1, layers: int = 1) -> int:
    """Bytes the texels of an image take: every level's whole blocks times ``layers`` (array layers x faces).

    The driver's requirement adds alignment and padding; this is the size the budget is charged before
    ``vkCreateImage`` and the estimate pre-flights use.

    :param vk_format: the ``VkFormat``.
    :param width: texels.
    :param height: texels.
    :param depth: texels.
    :param levels: mip levels.
    :param layers: Vulkan array layers (array layers x faces).
    """
    from ..formats.vkformat import format_info, level_size

    info = format_info(vk_format)
    return sum(level_size(info, max(1, width >> i), max(1, height >> i), max(1, depth >> i))
               for i in range(levels)) * layers


def check_image_parameters(ctx: GpuContext, name: str, *, vk_format: int, image_type: int, width: int, height: int,
                           depth: int, levels: int, layers: int, faces: int, usage: int) -> int:
    """Check an image's parameters against Vulkan's rules and the device's limits *before* ``vkCreateImage``.

    :param ctx: the device's context (limits, physical device).
    :param name: the image's name, for messages.
    :param vk_format: the ``VkFormat``.
    :param image_type: ``IMAGE_1D``, ``IMAGE_2D`` or ``IMAGE_3D``.
    :param width: texels.
    :param height: texels.
    :param depth: texels.
    :param levels: mip levels.
    :param layers: array layers (before multiplying by faces).
    :param faces: 1, or 6 for a cube map.
    :param usage: ``VkImageUsageFlags``.
    :returns: the bytes the texels take (:func:`image_bytes`), for the budget charge. Parameters that passed are
        remembered on ``ctx`` (``image_checks``): asking again costs a dictionary look-up, no Vulkan query.
    :raises ConfigError: a parameter breaks a Vulkan rule (an empty extent, a 3D array, more levels than the extent
        has, a non-square cube); the message names the image and the parameter.
    :raises UnsupportedFeatureError: the device's limits or format support do not allow the image.
    :raises UnsupportedFormatError: the format is unknown.
    """
    asked = (vk_format, image_type, width, height, depth, levels, layers, faces, usage)
    known = ctx.image_checks.get(asked)
    if known is not None and set(map(type, asked)) <= _INT_TYPES:
        return known  # passed before (a bool or float equal to a checked int still takes the checks below)
    from ..formats.vkformat import format_info
    from ..vk.physical import format_properties

    where = f"image {name!r}"
    for opt, value in (("width", width), ("height", height), ("depth", depth), ("levels", levels),
                       ("layers", layers), ("faces", faces), ("vk_format", vk_format), ("usage", usage)):
        if type(value) is bool or not isinstance(value, int):
            raise ConfigError(f"{where}: {opt} must be an int, got {type(value).__name__} {value!r}", option=opt)
    check_extent(name, width, height, depth)
    if levels < 1 or layers < 1:
        raise ConfigError(f"{where}: levels {levels} and layers {layers} must be >= 1", option="levels")
    if faces not in (1, 6):
        raise ConfigError(f"{where}: faces must be 1 or 6, got {faces}", option="faces")
    if image_type not in (IMAGE_1D, IMAGE_2D, IMAGE_3D):
        raise ConfigError(f"{where}: image_type {image_type!r} is not 1D, 2D or 3D", option="image_type")
    if image_type == IMAGE_1D and (height != 1 or depth != 1):
        raise ConfigError(f"{where}: a 1D image has height and depth 1, got {width}x{height}x{depth}",
                          option="height")
    if image_type == IMAGE_2D and depth != 1:
        raise ConfigError(f"{where}: a 2D image has depth 1, got {width}x{height}x{depth}", option="depth")
    if image_type == IMAGE_3D and (layers != 1 or faces != 1):
        raise ConfigError(f"{where}: a 3D image cannot have array layers or faces (layers={layers}, faces={faces})",
                          option="layers")
    if faces == 6 and (image_type != IMAGE_2D or width != height):
        raise ConfigError(f"{where}: a cube map needs square 2D faces, got {width}x{height}", option="faces")
    most = max(width, height, depth).bit_length()
    if levels > most:
        raise ConfigError(f"{where}: {levels} mip levels, but a {width}x{height}x{depth} image has at most {most}",
                          option="levels")
    try:
        info = format_info(vk_format)
    except UnsupportedFormatError as exc:
        raise UnsupportedFormatError(f"{where}: {exc.reason}", field="vk_format") from None
    if info.family == "depth_stencil":  # images here are colour images (uploads and barriers use the colour aspect)
        raise UnsupportedFeatureError(f"{where}: {info.name} is a depth/stencil format; only colour formats are "
                                      "supported", feature=info.name)
    limits = ctx.info.limits
    dims: tuple[int, ...]
    if faces == 6:
        key, dims = "max_image_dimension_cube", (width,)
    else:
        key = {IMAGE_1D: "max_image_dimension_1d", IMAGE_2D: "max_image_dimension_2d",
               IMAGE_3D: "max_image_dimension_3d"}[image_type]
        dims = (width, height, depth)
    most_texels = limits.get(key)
    if most_texels is not None and max(dims) > most_texels:
        raise UnsupportedFeatureError(f"{where}: extent {width}x{height}x{depth} is over the device's {key} "
                                      f"({most_texels})", feature=key)
    most_layers = limits.get("max_image_array_layers")
    if most_layers is not None and layers * faces > most_layers:
        raise UnsupportedFeatureError(f"{where}: {layers * faces} array layers is over the device's "
                                      f"max_image_array_layers ({most_layers})", feature="max_image_array_layers")
    _lin, optimal, _buf = format_properties(ctx.physical, vk_format)
    need = FEATURE_TRANSFER_DST | (FEATURE_SAMPLED if usage & USAGE_SAMPLED else 0)
    if optimal & need != need:
        raise UnsupportedFeatureError(f"{where}: the device cannot sample and copy into {info.name} images "
                                      "(optimal tiling)", feature=info.name)
    if not vki.image_format_supported(ctx.physical, vk_format, image_type=image_type, usage=usage, cube=faces == 6,
                                      levels=levels, layers=layers * faces, width=width, height=height, depth=depth):
        raise UnsupportedFeatureError(f"{where}: {info.name} {width}x{height}x{depth}, {levels} levels, "
                                      f"{layers * faces} layers is beyond what the device's image format properties "
                                      "allow", feature=info.name)
    nbytes = image_bytes(vk_format, width, height, depth, levels, layers * faces)
    if len(ctx.image_checks) >= 4096:  # bounded: a long-lived device sees a handful of shapes, not thousands
        ctx.image_checks.clear()
    ctx.image_checks[asked] = nbytes
    return nbytes
