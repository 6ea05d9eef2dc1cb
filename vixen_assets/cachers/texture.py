"""``TextureCacher``: KTX2, PNG and JPEG files to GPU images, by the best path the device allows.

- KTX2 whose ``vkFormat`` the device samples (BC on lavapipe and the H100, uncompressed formats): the level data is
  uploaded as it is (``path_taken == "native"``), every level, layer, face and z slice.
- KTX2 in a format the device cannot sample (ETC2/EAC/ASTC here): each image is decoded on the CPU with
  ``texture2ddecoder`` to RGBA8, sRGB kept (``"decoded"``). In a batch a decoded level larger than a staging chunk
  is decoded band by band (rows of whole source blocks) straight into staging chunks.
- BasisLZ/ETC1S and UASTC payloads need a Basis Universal transcoder: ``UnsupportedFormatError`` naming the scheme
  when none is installed.
- PNG/JPEG (and what else Pillow opens): RGBA8, sRGB; with ``compress="bc7"``, ``"bc1"`` or ``"auto"`` (needs
  ``etcpak``, see ``texture_compress.py``) the pixels are compressed at load (``"transcoded"``), and the memory saved
  and PSNR against the source are recorded.

Loading is two steps. :meth:`TextureCacher.prepare` is CPU-only and thread-safe (``load_textures`` runs it on a thread
pool; see ``texture_batch.py``): one parse of the header (``read_file``), then every level inflated (Zstandard
straight into the payload), decoded or compressed into ONE contiguous payload per texture. ``build`` then creates
the image (suballocated from a memory block like a buffer) and enqueues all its levels in one ``enqueue_image``
call: buffer-to-image copies split into pieces that fit a staging chunk, the layout transitions of every image of an
upload batch recorded as one barrier. Format support is asked of Vulkan once per (format, type, extent) and cached.
Assets inside ``.usdz`` packages (``pkg.usdz[tex.png]``) are read through USD's resolver.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..errors import (
    CompressionQualityWarning,
    ConfigError,
    FormatError,
    UnsupportedFeatureError,
    UnsupportedFormatError,
    VixenError,
)
from ..formats import ktx2 as k2
from ..formats.vkformat import can_decode, decode_rgba8, format_info, level_size
from ..hookspecs import hookimpl
from ..memory.group import AllocationGroup
from ..memory.images import (
    IMAGE_1D,
    IMAGE_2D,
    IMAGE_3D,
    USAGE_SAMPLED,
    USAGE_TRANSFER_DST,
    USAGE_TRANSFER_SRC,
    Image,
    ImageSpec,
    check_image_parameters,
    create_images,
    format_supported,
)
from ..transfer.image_regions import level_copies, mip_extent
from ..vk.images import ImageCopy
from .base import HeldEntry, LoadContext, TypedCacher
from .texture_compress import DEFAULT_MIN_PSNR, choose, psnr

if TYPE_CHECKING:
    from ..device import Device

R8G8B8A8_UNORM = 37
R8G8B8A8_SRGB = 43
BC1_RGBA_UNORM, BC1_RGBA_SRGB = 133, 134
BC7_UNORM, BC7_SRGB = 145, 146
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tga", ".bmp")


try:  # XXH3-128 (~30 GB/s) when installed, as the mesh cacher does; BLAKE2b-128 (~1 GB/s) otherwise
    import xxhash as _xxhash
except ImportError:  # pragma: no cover - xxhash is a dependency
    _xxhash = None


def content_digest(data: bytes) -> str:
    """The content hash of a file's bytes (the cache key's core): ~75 µs of BLAKE2b on a 256² BC7 file, ~3 µs of
    XXH3."""
    if _xxhash is not None:
        return "xxh3:" + _xxhash.xxh3_128_hexdigest(data)
    return "b2:" + hashlib.blake2b(data, digest_size=16).hexdigest()


def read_asset_bytes(path: str) -> bytes:
    """Bytes of a file, or of a file inside a package (``a.usdz[b.png]``) through USD's asset resolver."""
    if "[" in path and path.endswith("]"):
        from pxr import Ar

        asset = Ar.GetResolver().OpenAsset(Ar.ResolvedPath(path))
        if asset is None:
            raise FormatError("cannot open packaged asset", path=path)
        return bytes(asset.GetBuffer())
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror}", path=path) from exc


@dataclass(eq=False)
class TextureSource:
    """A texture as read: a parsed KTX2 file or decoded RGBA8 pixels, plus the load options."""

    path: str
    digest: str
    ktx: k2.Ktx2File | None = None
    pixels: np.ndarray | None = None  # (h, w, 4) uint8 for PNG/JPEG
    srgb: bool = True
    compress: str | None = None
    min_psnr: float = DEFAULT_MIN_PSNR
    normal_map: bool = False
    prepared: PreparedTexture | None = None  # set by ``TextureCacher.prepare`` (on a worker thread in a batch)


@dataclass(eq=False)
class PreparedTexture:
    """A texture ready for the GPU: its ``VkFormat``, extent and every level back to back in ``payload`` (level 0
    first; inside a level the layers, faces and z slices in KTX2 order), ``level_offsets[i]`` where level ``i``
    starts; plus what ``GpuTexture`` reports and the warnings to emit on the calling thread."""

    vk_format: int
    width: int
    height: int
    depth: int
    levels: int
    layers: int
    faces: int
    image_type: int
    payload: np.ndarray | None  # None when the levels were written straight into staging (``staged``)
    level_offsets: list[int]
    path_taken: str
    source_format: str
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: ``(staging buffer, copies)`` already written by a worker (``load_textures``), until the build enqueues them
    staged: list[tuple[Any, list[ImageCopy]]] | None = None
    staged_bytes: int = 0


class StagingLender:
    """What a worker needs to write a texture's levels straight into staging: ``lend(sizes)`` checks out one pool
    buffer per size (all or none, ``None`` beyond ``limit`` bytes lent and not yet enqueued: the rest of the
    quota stays for the batches), ``give_back`` returns unused ones, ``settle`` counts enqueued ones out."""

    def __init__(self, pool: Any, limit: int) -> None:
        """:param pool: the uploader's ``StagingBufferPool``. :param limit: the most bytes lent at once."""
        self.pool = pool
        self.limit = limit
        self.max_chunk: int = pool.max_chunk
        self._lent = 0
        self._lock = threading.Lock()

    def lend(self, sizes: Sequence[int]) -> list[Any] | None:
        """Check out a staging buffer per size, or ``None`` when that would lend more than ``limit``."""
        total = sum(sizes)
        with self._lock:
            if self._lent + total > self.limit:
                return None
            self._lent += total
        bufs: list[Any] = []
        try:
            for size in sizes:
                bufs.append(self.pool.checkout(size))
        except BaseException:
            self.give_back(bufs, total)
            raise
        return bufs

    def give_back(self, bufs: Sequence[Any], nbytes: int) -> None:
        """Return buffers that were never enqueued."""
        self.pool.give_back(list(bufs))
        self.settle(nbytes)

    def settle(self, nbytes: int) -> None:
        """``nbytes`` lent are now enqueued (the batch returns their buffers) or given back."""
        with self._lock:
            self._lent -= nbytes

    def drop(self, prep: PreparedTexture | None) -> None:
        """Give back what ``prep`` holds in staging and has not enqueued (a cache hit, a failed batch)."""
        if prep is not None and prep.staged is not None:
            staged, prep.staged = prep.staged, None
            self.give_back([buf for buf, _c in staged], prep.staged_bytes)


@dataclass(eq=False)
class GpuTexture(HeldEntry):
    """A texture on the GPU: its :class:`Image`, format name, extent, levels, layers, faces and the path taken.

    ``load_texture`` hands it out holding one cache reference: ``release()`` it (or use ``with``) when done; until
    then the cache never evicts it.
    """

    key: str
    image: Image
    vk_format: str
    width: int
    height: int
    depth: int
    levels: int
    layers: int
    faces: int
    path_taken: str
    path: str = ""
    source_format: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of GPU memory the image takes."""
        return self.image.nbytes

    def __repr__(self) -> str:
        return (f"<GpuTexture {os.path.basename(self.path) or self.key[:12]} {self.vk_format} {self.width}x{self.height}"
                f"x{self.depth} levels={self.levels} layers={self.layers} faces={self.faces} {self.path_taken}>")


class TextureCacher(TypedCacher[TextureSource, GpuTexture]):
    """KTX2/PNG/JPEG files → :class:`GpuTexture`, deduplicated by file content and options."""

    name = "texture"
    suffixes = (".ktx2",) + IMAGE_SUFFIXES
    compress: str | None = None

    def __init__(self, device: Device, *, plugin_manager: Any = None) -> None:
        """Attach to ``device``; format support answers are cached per (format, type, extent)."""
        super().__init__(device, plugin_manager=plugin_manager)
        self._support: dict[tuple[int, ...], bool] = {}
        self._pools: dict[int, ThreadPoolExecutor] = {}
        device.on_close(self._shutdown_pools)

    def thread_pool(self, workers: int) -> ThreadPoolExecutor:
        """The pool of ``workers`` threads batch loads prepare files on, kept between calls (starting and joining
        the threads of a pool per call cost ~10 ms) and shut down when the device closes."""
        with self._lock:
            pool = self._pools.get(workers)
            if pool is None:
                pool = self._pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vixen-tex")
            return pool

    def _shutdown_pools(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools.clear()

    def read_file(self, path: str, context: LoadContext) -> TextureSource:
        """Read the file once: parse the KTX2 header, index and DFD (every field checked before anything is
        allocated) or decode PNG/JPEG pixels. Thread-safe."""
        opts = context.options or {}
        data = read_asset_bytes(path)
        digest = content_digest(data)
        compress = opts.get("compress", self.compress)
        min_psnr = float(opts.get("min_psnr") or DEFAULT_MIN_PSNR)
        normal = bool(opts.get("normal_map", False))
        base = path.split("[", 1)[-1].rstrip("]") if path.endswith("]") else path
        if base.lower().endswith(".ktx2"):
            return TextureSource(path, digest, ktx=k2.read_ktx2(data, path=path))
        try:
            from PIL import Image as PILImage

            with PILImage.open(io.BytesIO(data)) as im:  # reads the header only
                w, h = im.size
                self._check_image(path, R8G8B8A8_SRGB, IMAGE_2D, w, h, 1, 1, 1, 1)
                self.check_fits(w * h * 4, path)  # before decoding
                rgba = im if im.mode == "RGBA" else im.convert("RGBA")
                pixels = np.asarray(rgba, dtype=np.uint8)  # one copy out of Pillow, read-only: never written
        except VixenError:
            raise
        except Exception as exc:
            raise FormatError(f"cannot decode image: {exc}", path=path) from exc
        # colour textures are sRGB-encoded unless the caller says raw (UsdUVTexture sourceColorSpace = "raw")
        return TextureSource(path, digest, pixels=pixels, srgb=bool(opts.get("srgb", True)), compress=compress,
                             min_psnr=min_psnr, normal_map=normal)

    def key_for(self, source: TextureSource) -> str:
        """File digest plus options."""
        key = f"tex:{source.digest}:{source.compress}:{int(source.srgb)}"
        if source.compress and source.normal_map:
            key += ":normal"
        if source.compress and source.min_psnr != DEFAULT_MIN_PSNR:
            key += f":{source.min_psnr:g}dB"
        return key

    def supported(self, vk_format: int, *, image_type: int = IMAGE_2D, cube: bool = False, width: int = 1,
                  height: int = 1, depth: int = 1, levels: int = 1, layers: int = 1) -> bool:
        """:func:`~vixen_assets.memory.images.format_supported`, asked of Vulkan once per distinct question."""
        q = (vk_format, image_type, int(cube), width, height, depth, levels, layers)
        ok = self._support.get(q)
        if ok is None:
            ok = self._support[q] = format_supported(self.device.context, vk_format, image_type=image_type,
                                                     cube=cube, width=width, height=height, depth=depth,
                                                     levels=levels, layers=layers)
        return ok

    # -- CPU: prepare (thread-safe) --------------------------------------------------------------------------------
    def prepare(self, src: TextureSource, lender: StagingLender | None = None) -> PreparedTexture:
        """Inflate, decode or compress ``src`` into one payload in the format the GPU will hold (CPU only).

        :param src: a source from :meth:`read_file`.
        :param lender: staging to write KTX2 levels straight into (each level one copy of at most a staging chunk):
            no payload in between; without it (or when it lends nothing) the levels go into one payload array.
        :raises FormatError: corrupt level data (naming the file and level).
        :raises UnsupportedFormatError: a format this device cannot sample and no decoder handles.
        """
        if src.prepared is not None:
            return src.prepared
        if src.ktx is not None:
            prep = self._prepare_ktx2(src, lender)
        else:
            prep = self._prepare_pixels(src)
        src.prepared = prep
        return prep

    def _prepare_pixels(self, src: TextureSource) -> PreparedTexture:
        assert src.pixels is not None
        pixels = src.pixels
        h, w = pixels.shape[:2]
        if src.compress:
            label = os.path.basename(src.path)
            enc, extra, warns = choose(pixels, src.compress, srgb=src.srgb, min_psnr=src.min_psnr,
                                       normal_map=src.normal_map, label=label,
                                       supported=lambda fmt: self.supported(fmt, width=w, height=h))
            if enc is not None:
                return PreparedTexture(enc.vk_format, w, h, 1, 1, 1, 1, IMAGE_2D, enc.blocks, [0], "transcoded",
                                       "RGBA8", extra, warns)
            if src.compress != "auto":  # the device samples none of the asked formats: RGBA8 as before
                extra = {}
        else:
            extra, warns = {}, []
        fmt = R8G8B8A8_SRGB if src.srgb else R8G8B8A8_UNORM
        return PreparedTexture(fmt, w, h, 1, 1, 1, 1, IMAGE_2D, pixels.reshape(-1), [0], "native", "RGBA8", extra,
                               warns)

    def _prepare_ktx2(self, src: TextureSource, lender: StagingLender | None = None) -> PreparedTexture:
        ktx = src.ktx
        assert ktx is not None
        w, h, d = ktx.pixel_width, max(1, ktx.pixel_height), max(1, ktx.pixel_depth)
        layers, faces, levels = max(1, ktx.layer_count), ktx.face_count, len(ktx.levels)
        itype = IMAGE_3D if ktx.is_3d else IMAGE_1D if ktx.pixel_height == 0 else IMAGE_2D
        source_name = ktx.format.name if ktx.format else (ktx.transcode_codec or "?")
        if ktx.format is not None and self.supported(ktx.vk_format, image_type=itype, cube=faces == 6, width=w,
                                                     height=h, depth=d, levels=levels, layers=layers * faces):
            self._check_image(src.path, ktx.vk_format, itype, w, h, d, levels, layers, faces)
            self.check_fits(ktx.declared_bytes(), src.path)  # before inflating
            sizes = [lv.uncompressed_byte_length for lv in ktx.levels]
            offsets = [sum(sizes[:i]) for i in range(levels)]
            if lender is not None:
                staged = _write_staged(lender, format_info(ktx.vk_format), w, h, d, layers * faces, sizes,
                                       lambda c, out: ktx.level_into(c.level, out))
                if staged is not None:
                    return PreparedTexture(ktx.vk_format, w, h, d, levels, layers, faces, itype, None, offsets,
                                           "native", source_name, staged=staged[0], staged_bytes=staged[1])
            payload = np.empty(sum(sizes), np.uint8)
            for lv, off, size in zip(ktx.levels, offsets, sizes):
                ktx.level_into(lv.index, memoryview(payload)[off:off + size])
            return PreparedTexture(ktx.vk_format, w, h, d, levels, layers, faces, itype, payload, offsets, "native",
                                   source_name)
        target = ktx.decode_target
        clamp = False
        if target is None and ktx.format is not None and ktx.format.is_hdr:
            # no HDR decoder: clip to [0, 1] (visible in extra["hdr_clamped"]) rather than refuse the file
            target, clamp = R8G8B8A8_UNORM, True
        if target is None:
            raise UnsupportedFormatError(
                f"{source_name} cannot be sampled by {self.device.name} and no decoder handles it"
                + (f" ({source_name}" + ("" if ktx.supercompression_scheme in (0, 1) else f" + {ktx.scheme_name}")
                   + " needs a Basis Universal transcoder: install the optional 'alktx2' package)"
                   if ktx.format is None else ""), path=src.path, field="vkFormat")
        self._check_image(src.path, target, itype, w, h, d, levels, layers, faces)
        self.check_fits(ktx.decoded_bytes(), src.path)  # before inflating and decoding
        images = layers * faces
        sizes = [lw * lh * ld * 4 * images for lw, lh, ld in (mip_extent(w, h, d, lv.index) for lv in ktx.levels)]
        offsets = [sum(sizes[:i]) for i in range(levels)]
        path_taken = "transcoded" if ktx.format is None else "decoded"
        extra = {"hdr_clamped": True} if clamp else {}

        def decode_level(level: int, out: Any) -> None:
            one = sizes[level] // images
            lw, lh, ld = mip_extent(w, h, d, level)
            shape = (ld, lh, lw, 4) if itype == IMAGE_3D else (lh, lw, 4)
            for i in range(images):  # each image decoded (and swizzled) straight into its place
                k2.decode_to_rgba8(ktx, level, i // faces, i % faces, clamp_hdr=clamp,
                                   out=out[i * one:(i + 1) * one].reshape(shape))

        info = ktx.format
        bh = info.block_height if info is not None else 0
        try:
            if info is None or itype == IMAGE_3D:
                raise UnsupportedFormatError("no bands")
            can_decode(info, clamp_hdr=clamp)
            bands = True
        except UnsupportedFormatError:
            bands = False  # Basis, 3D or no decoder: whole levels only (the payload path reports the error)

        def write(c: ImageCopy, out: Any) -> None:
            lw, lh, _ld = mip_extent(w, h, d, c.level)
            if c.layer_count == images and c.height == lh:
                decode_level(c.level, out)
                return
            # one band of rows of one image: its block rows decoded straight into the staging chunk
            assert info is not None
            data = ktx.image_data(c.level, c.base_layer // faces, c.base_layer % faces)
            row = level_size(info, lw, min(bh, lh), 1)
            start = (c.y // bh) * row
            decode_rgba8(info, data[start:start + level_size(info, lw, c.height, 1)], lw, c.height,
                         clamp_hdr=clamp, out=np.frombuffer(out, np.uint8).reshape(c.height, lw, 4))

        if lender is not None:
            staged = _write_staged(lender, format_info(target), w, h, d, images, sizes, write,
                                   band_rows=bh if bands else 0)
            if staged is not None:
                return PreparedTexture(target, w, h, d, levels, layers, faces, itype, None, offsets, path_taken,
                                       source_name, extra, staged=staged[0], staged_bytes=staged[1])
        payload = np.empty(sum(sizes), np.uint8)
        for lv, off, size in zip(ktx.levels, offsets, sizes):
            decode_level(lv.index, payload[off:off + size])
        return PreparedTexture(target, w, h, d, levels, layers, faces, itype, payload, offsets, path_taken,
                               source_name, extra)

    # -- GPU: build (the calling thread) ---------------------------------------------------------------------------
    def _check_image(self, path: str, fmt: int, itype: int, w: int, h: int, d: int, levels: int, layers: int,
                     faces: int) -> None:
        """The image a file asks for, against Vulkan's rules and the device's limits, before any inflating or
        decoding (thread-safe: queries only): a file the device cannot hold is an :class:`UnsupportedFormatError`
        naming it."""
        try:
            check_image_parameters(self.device.context, path, vk_format=fmt, image_type=itype, width=w, height=h,
                                   depth=d, levels=levels, layers=layers, faces=faces,
                                   usage=USAGE_SAMPLED | USAGE_TRANSFER_DST | USAGE_TRANSFER_SRC)
        except UnsupportedFeatureError as exc:
            raise UnsupportedFormatError(str(exc), path=path, field=exc.feature or None) from None
        except ConfigError as exc:
            raise UnsupportedFormatError(str(exc), path=path, field=exc.option or None) from None

    def build(self, sources: Sequence[TextureSource], group: AllocationGroup) -> list[GpuTexture]:
        """Create the images of ``sources`` and enqueue their uploads (sources not yet prepared are prepared here).

        Every source is prepared and its levels checked first (a ``FormatError`` before any Vulkan call); then the
        images are made in one :func:`~vixen_assets.memory.images.create_images` batch (parameters checked and the
        budget charged for all, one ``vkBindImageMemory2``), adopted by ``group``, and their levels enqueued.
        """
        plans = [self._plan(src) for src in sources]
        images = create_images(self.device.context, [spec for _p, spec, _c in plans])
        for image in images:
            group.adopt(image)
        up = self.device.uploader
        out = []
        for src, (prep, _spec, copies), image in zip(sources, plans, images):
            if copies is None:  # a worker wrote the levels straight into staging
                assert prep.staged is not None
                staged, prep.staged = prep.staged, None
                up.enqueue_image_staged(image, staged)
            else:
                assert prep.payload is not None
                up.enqueue_image(image, prep.payload, copies)  # every level in one call: packed into staging chunks
            out.append(GpuTexture(self.key_for(src), image, format_info(prep.vk_format).name, prep.width,
                                  prep.height, prep.depth, prep.levels, prep.layers, prep.faces, prep.path_taken,
                                  src.path, prep.source_format, prep.extra))
        return out

    def _plan(self, src: TextureSource) -> tuple[PreparedTexture, ImageSpec, list[ImageCopy] | None]:
        """Prepare ``src`` (warnings emitted), check its levels, and describe its image: ``(prepared, spec,
        copies)``; ``copies`` is ``None`` when the levels are already in staging."""
        prep = self.prepare(src)
        for message in prep.warnings:
            warnings.warn(message, CompressionQualityWarning, stacklevel=6)
        w, h, d = prep.width, prep.height, prep.depth
        label = os.path.basename(src.path.rstrip("]").split("[")[-1]) or src.digest[:12]
        spec = ImageSpec(f"tex:{label}", prep.vk_format, w, h, d, prep.levels, prep.layers, prep.faces,
                         prep.image_type, category=self.name)
        if prep.staged is not None:
            return prep, spec, None
        assert prep.payload is not None
        info = format_info(prep.vk_format)
        max_chunk = self.device.uploader.pool.max_chunk
        copies = []
        for level, off in enumerate(prep.level_offsets):
            lw, lh, ld = mip_extent(w, h, d, level)
            level_copy = level_copies(info, lw, lh, ld, level=level, base_layer=0, layer_count=prep.layers * prep.faces,
                                      buffer_offset=off, max_bytes=max_chunk)
            end = prep.level_offsets[level + 1] if level + 1 < prep.levels else prep.payload.size
            expected = sum(c.size for c in level_copy)
            if end - off < expected:
                raise FormatError(f"level {level} holds {end - off} bytes, {expected} expected", path=src.path,
                                  field=f"levels[{level}]")
            copies.extend(level_copy)
        return prep, spec, copies

    def entry_nbytes(self, entry: GpuTexture) -> int:
        """Bytes of the image."""
        return entry.nbytes

    def destroy_entry(self, entry: GpuTexture) -> None:
        """Destroy the image (deferred while in use)."""
        entry.image.destroy()


def _write_staged(lender: StagingLender, info: Any, w: int, h: int, d: int, images: int, sizes: list[int],
                  write: Callable[[ImageCopy, Any], None], *,
                  band_rows: int = 0) -> tuple[list[tuple[Any, list[ImageCopy]]], int] | None:
    """Write every level straight into staging buffers the lender checks out: levels packed into pieces of at
    most a staging chunk (16-byte aligned), ``write(copy, view)`` filling each. ``None`` (nothing lent) when the
    lender declines, or when a level needs more than one copy (it is larger than a chunk) unless ``band_rows``:
    then such a level goes as bands of rows (each a multiple of ``band_rows`` rows: the source's block height),
    one chunk each, and ``write`` fills one band at a time (a decoded level larger than a chunk)."""
    plan_key = (info.vk_format, w, h, d, images, tuple(sizes), lender.max_chunk, band_rows)
    pieces = _STAGED_PLANS.get(plan_key)
    if pieces is None:
        pieces = _staged_plan(lender, info, w, h, d, images, sizes, band_rows)
        if len(_STAGED_PLANS) >= 256:
            _STAGED_PLANS.clear()
        _STAGED_PLANS[plan_key] = pieces
    if not pieces:
        return None
    total = sum(p[0] for p in pieces)
    bufs = lender.lend([p[0] for p in pieces])
    if bufs is None:
        return None
    try:
        for buf, (_size, cps) in zip(bufs, pieces):
            view = buf.host_bytes
            for c in cps:
                write(c, view[c.buffer_offset:c.buffer_offset + c.size])
    except BaseException:
        lender.give_back(bufs, total)
        raise
    return [(buf, cps) for buf, (_size, cps) in zip(bufs, pieces)], total


#: ``_write_staged``'s layouts by (format, extent, images, level sizes, chunk): textures of one shape (hundreds of
#: 256² BC7 files) share one plan instead of ~40 µs of ``level_copies`` each under the GIL; copies are immutable
_STAGED_PLANS: dict[tuple[Any, ...], list[tuple[int, list[ImageCopy]]]] = {}


def _staged_plan(lender: StagingLender, info: Any, w: int, h: int, d: int, images: int, sizes: list[int],
                 band_rows: int = 0) -> list[tuple[int, list[ImageCopy]]]:
    """The pieces (bytes, copies) of ``_write_staged``; empty when a level needs more than one copy and bands
    of ``band_rows`` rows cannot carry it."""
    pieces: list[tuple[int, list[ImageCopy]]] = []
    cur: list[ImageCopy] = []
    used = 0
    for level, size in enumerate(sizes):
        lw, lh, ld = mip_extent(w, h, d, level)
        cps = level_copies(info, lw, lh, ld, level=level, base_layer=0, layer_count=images, buffer_offset=0,
                           max_bytes=lender.max_chunk)
        if len(cps) != 1 and band_rows and sum(c.size for c in cps) == size and all(
                c.layer_count == 1 and c.depth == 1 and c.y % band_rows == 0
                and (c.height % band_rows == 0 or c.y + c.height == lh) for c in cps):
            if cur:
                pieces.append((used, cur))
                cur, used = [], 0
            pieces.extend((c.size, [c.rebased(0)]) for c in cps)  # a band per chunk
            continue
        if len(cps) != 1 or cps[0].size != size:
            return []  # bands, or a size the build would refuse: the payload path reports it
        start = (used + 15) & ~15
        if cur and start + size > lender.max_chunk:
            pieces.append((used, cur))
            cur, start = [], 0
        cur.append(cps[0].rebased(start))
        used = start + size
    pieces.append((used, cur))
    return pieces


def texture_cacher(device: Device) -> TextureCacher:
    """The device's texture cacher (created on first use)."""
    return TextureCacher.for_device(device)


@hookimpl
def vixen_register_cachers(registry: Any) -> None:
    """Register the built-in texture cacher."""
    registry.register(TextureCacher)
