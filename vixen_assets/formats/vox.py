"""Reader for MagicaVoxel ``.vox`` files: models, palette, materials and the scene graph, with every size checked.

Why hand-written: the readers on PyPI were evaluated (``pip download --no-deps``) and none is both maintained and
complete. ``py-vox-io`` 0.1 (2017, its only release) reads only PACK/SIZE/XYZI/RGBA/MATT, raises on any other chunk
(so it fails on every MagicaVoxel 0.99 file, which has nTRN/LAYR/MATL/rOBJ) and checks no size. ``voxypy`` 0.2.3
(2021) vendors the same parser: it skips unknown chunks but has no scene graph, misreads MATL with the old MATT
layout and checks no bounds. ``midvoxio`` 0.1.6 (2024) parses nTRN/nGRP/nSHP but pairs each shape only with the
``_t`` of its direct parent (rotation ``_r`` and group nesting ignored), raises on unknown chunks (rLIT, rAIR, POST,
...), decodes strings with ``str(bytes)[2:-1]``, checks no size or reference, and imports matplotlib and Pillow.
``pyvox`` and ``vox-io`` are not on PyPI.

Conventions implemented here:

* **Colour indices.** A voxel's colour index ``c`` (1..255; 0 means empty) selects ``palette[c]``. The RGBA chunk
  stores 256 entries where file entry ``i`` is the colour of index ``i + 1`` (file entry 255 is unused), so
  ``palette[1:] = file[0:255]`` and ``palette[0] = (0, 0, 0, 0)``. Without an RGBA chunk, :data:`DEFAULT_PALETTE`
  (MagicaVoxel's built-in table from the file-format spec, already in colour-index order) is used.
* **Materials.** ``materials[c]`` is the MATL dictionary for colour index ``c``: MagicaVoxel writes the colour index
  as the MATL id; ids 0..256 are accepted and 256 (written by some tools for the unused slot) is folded to 0, as
  ogt_vox.h does. IMAP (the palette *display* order) is exposed as :attr:`VoxFile.index_map` and not applied: colour
  indices stay exactly as stored in XYZI.
* **Transforms.** Each :class:`VoxInstance` has a 4x4 ``float32`` matrix ``M`` (column vectors, translation in
  ``M[:3, 3]``) mapping voxel-corner coordinates of its model (voxel ``(x, y, z)`` fills ``[x, x+1] x [y, y+1] x
  [z, z+1]``) to world space. Following ogt_vox.h (jpaver/opengametools, "EXPLANATION OF MODEL PIVOTS"), a model's
  pivot is ``floor(size / 2)`` in corner space and ``M = T_1 R_1 ... T_k R_k Translate(-floor(size / 2))``, where
  ``T_i R_i`` are the first-frame ``_t``/``_r`` of the nTRN nodes from the root down to the shape (parent before
  child). ``_r`` is the spec's row-major byte: bits 0-1 and 2-3 give the column of the non-zero entry of rows 0 and
  1 (row 2 takes the remaining column), bits 4-6 the signs of rows 0-2; it may encode a reflection (det -1). Since
  ``R`` is a signed permutation and ``_t`` and the pivot are integers, voxel cells map onto integer world cells.
  Caveat: MagicaVoxel's own viewport may place rotated models with an odd dimension one voxel away from this
  (see sandrofigo/VoxReader#31); ogt_vox.h and the importers built on it use the convention above. A file without
  scene-graph chunks gets one instance per model with the identity matrix.
* **Visibility.** ``VoxInstance.hidden`` is true if any nTRN on the instance's path has ``_hidden`` = 1 or the
  instance's layer (its nearest nTRN's layer id) is hidden by its LAYR chunk.

Every chunk is checked against its enclosing chunk and the file; counts are checked against the bytes that hold them
before anything is allocated; SIZE dimensions must be 1..256; voxel coordinates must lie inside their model; ``_r``
must be a valid signed-permutation byte; scene-graph references must exist and form no cycle; and the scene walk is
capped at four node visits per child reference in the file (shared subtrees cannot blow it up). A malformed file
raises :class:`~vixen_assets.errors.FormatError` whose ``field`` is the offending chunk id (``"header"`` for the
8-byte file header). Bytes after the MAIN chunk, unknown chunks, MATT and the render chunks (rLIT, rAIR, ...) are
skipped. :meth:`VoxModel.dense` allocates at most 256**3 bytes, the largest grid SIZE allows.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

import numpy as np

from vixen_assets.errors import FormatError, UnsupportedFormatError

__all__ = [
    "DEFAULT_PALETTE", "MAX_MODEL_DIM", "VoxFile", "VoxInstance", "VoxLayer", "VoxModel", "decode_rotation", "read_vox",
]

MAX_MODEL_DIM = 256
"""The largest model dimension MagicaVoxel writes (SIZE values must be 1..256)."""

SUPPORTED_VERSIONS = (150, 200)
"""File versions this reader accepts (150, and 200 from newer MagicaVoxel releases; ogt_vox.h accepts both)."""

# MagicaVoxel's default palette as in the file-format spec: 0xAABBGGRR, indexed by colour index (0 = empty).
_DEFAULT_PALETTE_ABGR = (
    0x00000000, 0xFFFFFFFF, 0xFFCCFFFF, 0xFF99FFFF, 0xFF66FFFF, 0xFF33FFFF, 0xFF00FFFF, 0xFFFFCCFF,
    0xFFCCCCFF, 0xFF99CCFF, 0xFF66CCFF, 0xFF33CCFF, 0xFF00CCFF, 0xFFFF99FF, 0xFFCC99FF, 0xFF9999FF,
    0xFF6699FF, 0xFF3399FF, 0xFF0099FF, 0xFFFF66FF, 0xFFCC66FF, 0xFF9966FF, 0xFF6666FF, 0xFF3366FF,
    0xFF0066FF, 0xFFFF33FF, 0xFFCC33FF, 0xFF9933FF, 0xFF6633FF, 0xFF3333FF, 0xFF0033FF, 0xFFFF00FF,
    0xFFCC00FF, 0xFF9900FF, 0xFF6600FF, 0xFF3300FF, 0xFF0000FF, 0xFFFFFFCC, 0xFFCCFFCC, 0xFF99FFCC,
    0xFF66FFCC, 0xFF33FFCC, 0xFF00FFCC, 0xFFFFCCCC, 0xFFCCCCCC, 0xFF99CCCC, 0xFF66CCCC, 0xFF33CCCC,
    0xFF00CCCC, 0xFFFF99CC, 0xFFCC99CC, 0xFF9999CC, 0xFF6699CC, 0xFF3399CC, 0xFF0099CC, 0xFFFF66CC,
    0xFFCC66CC, 0xFF9966CC, 0xFF6666CC, 0xFF3366CC, 0xFF0066CC, 0xFFFF33CC, 0xFFCC33CC, 0xFF9933CC,
    0xFF6633CC, 0xFF3333CC, 0xFF0033CC, 0xFFFF00CC, 0xFFCC00CC, 0xFF9900CC, 0xFF6600CC, 0xFF3300CC,
    0xFF0000CC, 0xFFFFFF99, 0xFFCCFF99, 0xFF99FF99, 0xFF66FF99, 0xFF33FF99, 0xFF00FF99, 0xFFFFCC99,
    0xFFCCCC99, 0xFF99CC99, 0xFF66CC99, 0xFF33CC99, 0xFF00CC99, 0xFFFF9999, 0xFFCC9999, 0xFF999999,
    0xFF669999, 0xFF339999, 0xFF009999, 0xFFFF6699, 0xFFCC6699, 0xFF996699, 0xFF666699, 0xFF336699,
    0xFF006699, 0xFFFF3399, 0xFFCC3399, 0xFF993399, 0xFF663399, 0xFF333399, 0xFF003399, 0xFFFF0099,
    0xFFCC0099, 0xFF990099, 0xFF660099, 0xFF330099, 0xFF000099, 0xFFFFFF66, 0xFFCCFF66, 0xFF99FF66,
    0xFF66FF66, 0xFF33FF66, 0xFF00FF66, 0xFFFFCC66, 0xFFCCCC66, 0xFF99CC66, 0xFF66CC66, 0xFF33CC66,
    0xFF00CC66, 0xFFFF9966, 0xFFCC9966, 0xFF999966, 0xFF669966, 0xFF339966, 0xFF009966, 0xFFFF6666,
    0xFFCC6666, 0xFF996666, 0xFF666666, 0xFF336666, 0xFF006666, 0xFFFF3366, 0xFFCC3366, 0xFF993366,
    0xFF663366, 0xFF333366, 0xFF003366, 0xFFFF0066, 0xFFCC0066, 0xFF990066, 0xFF660066, 0xFF330066,
    0xFF000066, 0xFFFFFF33, 0xFFCCFF33, 0xFF99FF33, 0xFF66FF33, 0xFF33FF33, 0xFF00FF33, 0xFFFFCC33,
    0xFFCCCC33, 0xFF99CC33, 0xFF66CC33, 0xFF33CC33, 0xFF00CC33, 0xFFFF9933, 0xFFCC9933, 0xFF999933,
    0xFF669933, 0xFF339933, 0xFF009933, 0xFFFF6633, 0xFFCC6633, 0xFF996633, 0xFF666633, 0xFF336633,
    0xFF006633, 0xFFFF3333, 0xFFCC3333, 0xFF993333, 0xFF663333, 0xFF333333, 0xFF003333, 0xFFFF0033,
    0xFFCC0033, 0xFF990033, 0xFF660033, 0xFF330033, 0xFF000033, 0xFFFFFF00, 0xFFCCFF00, 0xFF99FF00,
    0xFF66FF00, 0xFF33FF00, 0xFF00FF00, 0xFFFFCC00, 0xFFCCCC00, 0xFF99CC00, 0xFF66CC00, 0xFF33CC00,
    0xFF00CC00, 0xFFFF9900, 0xFFCC9900, 0xFF999900, 0xFF669900, 0xFF339900, 0xFF009900, 0xFFFF6600,
    0xFFCC6600, 0xFF996600, 0xFF666600, 0xFF336600, 0xFF006600, 0xFFFF3300, 0xFFCC3300, 0xFF993300,
    0xFF663300, 0xFF333300, 0xFF003300, 0xFFFF0000, 0xFFCC0000, 0xFF990000, 0xFF660000, 0xFF330000,
    0xFF0000EE, 0xFF0000DD, 0xFF0000BB, 0xFF0000AA, 0xFF000088, 0xFF000077, 0xFF000055, 0xFF000044,
    0xFF000022, 0xFF000011, 0xFF00EE00, 0xFF00DD00, 0xFF00BB00, 0xFF00AA00, 0xFF008800, 0xFF007700,
    0xFF005500, 0xFF004400, 0xFF002200, 0xFF001100, 0xFFEE0000, 0xFFDD0000, 0xFFBB0000, 0xFFAA0000,
    0xFF880000, 0xFF770000, 0xFF550000, 0xFF440000, 0xFF220000, 0xFF110000, 0xFFEEEEEE, 0xFFDDDDDD,
    0xFFBBBBBB, 0xFFAAAAAA, 0xFF888888, 0xFF777777, 0xFF555555, 0xFF444444, 0xFF222222, 0xFF111111,
)

DEFAULT_PALETTE: np.ndarray = np.array(_DEFAULT_PALETTE_ABGR, dtype="<u4").view(np.uint8).reshape(256, 4)
"""MagicaVoxel's built-in (256, 4) uint8 RGBA palette, used when a file has no RGBA chunk (read-only)."""
DEFAULT_PALETTE.flags.writeable = False

_HEADER = struct.Struct("<4si")
_CHUNK = struct.Struct("<4sII")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


@dataclass(eq=False)
class VoxModel:
    """One SIZE/XYZI pair: a sparse list of coloured voxels inside a ``size`` grid."""

    size: tuple[int, int, int]
    voxels: np.ndarray
    """(N, 4) uint8 rows of ``x, y, z, colour_index`` in file order."""

    @property
    def voxel_count(self) -> int:
        """Number of XYZI entries of this model."""
        return int(self.voxels.shape[0])

    def dense(self) -> np.ndarray:
        """Return a ``size``-shaped uint8 grid of colour indices, indexed ``[x, y, z]`` (0 = empty; last entry wins)."""
        grid = np.zeros(self.size, dtype=np.uint8)
        v = self.voxels
        grid[v[:, 0], v[:, 1], v[:, 2]] = v[:, 3]
        return grid


@dataclass(eq=False)
class VoxInstance:
    """One placement of a model in the scene (a path from the scene root to an nSHP node)."""

    model_index: int
    transform: np.ndarray
    """(4, 4) float32 matrix mapping the model's voxel-corner coordinates to world space (column vectors)."""
    name: str | None = None
    layer: int = -1
    hidden: bool = False


@dataclass(eq=False)
class VoxLayer:
    """A LAYR chunk: a named layer that can be hidden."""

    name: str | None
    hidden: bool


@dataclass(eq=False)
class VoxFile:
    """Everything read from a ``.vox`` file; see the module docstring for the conventions."""

    version: int
    models: list[VoxModel]
    palette: np.ndarray
    """(256, 4) uint8 RGBA; colour index ``c`` maps to ``palette[c]``, ``palette[0]`` is (0, 0, 0, 0)."""
    materials: dict[int, dict[str, str]]
    """MATL properties (``_type``, ``_rough``, ``_metal``, ``_emit``, ...) keyed by colour index."""
    instances: list[VoxInstance]
    layers: dict[int, VoxLayer] = field(default_factory=dict)
    index_map: np.ndarray | None = None
    """IMAP chunk (256 uint8, palette display order), not applied to colour indices; None when absent."""
    notes: list[str] = field(default_factory=list)
    cameras: dict[int, dict[str, str]] = field(default_factory=dict)
    render_objects: list[dict[str, str]] = field(default_factory=list)

    @property
    def voxel_count(self) -> int:
        """Total number of XYZI entries over all models."""
        return sum(m.voxel_count for m in self.models)


@dataclass(eq=False)
class _Node:
    """A parsed scene-graph node (nTRN, nGRP or nSHP)."""

    kind: str
    offset: int
    children: tuple[int, ...] = ()
    local: np.ndarray | None = None
    name: str | None = None
    hidden: bool = False
    layer: int = -1
    model: int = -1


def _chunk_name(cid: bytes) -> str:
    """Return a printable name for a 4-byte chunk id."""
    if all(32 <= c < 127 for c in cid):
        return cid.decode("ascii")
    return "0x" + cid.hex()


def decode_rotation(value: int) -> np.ndarray:
    """Decode an nTRN ``_r`` byte into its (3, 3) int8 signed-permutation matrix; raise FormatError if invalid.

    :param value: the integer stored as the ``_r`` string.
    :returns: ``R`` with ``R[row, col]`` in {-1, 0, 1}, applied to column vectors.
    """
    if not 0 <= value <= 127:
        raise FormatError(f"rotation byte {value} is outside 0..127")
    c0, c1 = value & 3, (value >> 2) & 3
    if c0 > 2 or c1 > 2 or c0 == c1:
        raise FormatError(f"rotation byte {value} does not encode a permutation (row columns {c0}, {c1})")
    cols = (c0, c1, 3 - c0 - c1)
    rot = np.zeros((3, 3), dtype=np.int8)
    for row, col in enumerate(cols):
        rot[row, col] = -1 if value & (1 << (4 + row)) else 1
    return rot


class _Cursor:
    """Bounds-checked little-endian reads inside one chunk's content; errors name the chunk."""

    def __init__(self, reader: _Reader, content: memoryview, cid: str, offset: int) -> None:
        self.reader = reader
        self.buf = content
        self.cid = cid
        self.offset = offset
        self.pos = 0

    def fail(self, message: str) -> FormatError:
        """Build a FormatError for this chunk."""
        return self.reader.error(f"{message} (chunk at byte {self.offset})", self.cid)

    @property
    def remaining(self) -> int:
        """Bytes left in the chunk content."""
        return len(self.buf) - self.pos

    def need(self, nbytes: int, what: str) -> None:
        """Raise unless ``nbytes`` more bytes are available."""
        if nbytes > self.remaining:
            raise self.fail(f"{what} needs {nbytes} bytes but only {self.remaining} remain in the chunk")

    def i32(self, what: str) -> int:
        """Read a signed 32-bit integer."""
        self.need(4, what)
        (v,) = _I32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return v

    def count(self, what: str, min_item_bytes: int) -> int:
        """Read an element count and check that that many items of ``min_item_bytes`` can fit in the chunk."""
        self.need(4, what)
        (n,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        if n * min_item_bytes > self.remaining:
            raise self.fail(f"{what} {n} needs at least {n * min_item_bytes} bytes but only {self.remaining} remain")
        return n

    def string(self, what: str) -> str:
        """Read a STRING (int32 byte length + bytes, no terminator)."""
        n = self.count(f"{what} length", 1)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", "replace")

    def mapping(self, what: str) -> dict[str, str]:
        """Read a DICT (int32 pair count + key/value STRINGs)."""
        n = self.count(f"{what} entry count", 8)
        out: dict[str, str] = {}
        for _ in range(n):
            key = self.string(f"{what} key")
            out[key] = self.string(f"{what} value")
        return out

    def raw(self, nbytes: int, what: str) -> memoryview:
        """Return the next ``nbytes`` bytes."""
        self.need(nbytes, what)
        view = self.buf[self.pos : self.pos + nbytes]
        self.pos += nbytes
        return view


class _Reader:
    """Parses one file's bytes into a :class:`VoxFile`."""

    def __init__(self, data: bytes, path: str | None) -> None:
        self.data = memoryview(data)
        self.path = path
        self.models: list[VoxModel] = []
        self.pending_size: tuple[int, int, int] | None = None
        self.size_offset = 0
        self.palette: np.ndarray | None = None
        self.materials: dict[int, dict[str, str]] = {}
        self.nodes: dict[int, _Node] = {}
        self.layers: dict[int, VoxLayer] = {}
        self.index_map: np.ndarray | None = None
        self.notes: list[str] = []
        self.cameras: dict[int, dict[str, str]] = {}
        self.render_objects: list[dict[str, str]] = []
        self.shape_models: list[tuple[int, list[int]]] = []
        self.edges = 0

    def error(self, message: str, fld: str) -> FormatError:
        """Build a FormatError naming this file and ``fld``."""
        return FormatError(message, path=self.path, field=fld)

    def read(self) -> VoxFile:
        """Parse the whole file."""
        size = len(self.data)
        if size < 8:
            raise self.error(f"file is {size} bytes, shorter than the 8-byte 'VOX ' header", "header")
        magic, version = _HEADER.unpack_from(self.data, 0)
        if magic != b"VOX ":
            raise self.error(f"bad magic {bytes(magic)!r}, expected b'VOX '", "header")
        if version not in SUPPORTED_VERSIONS:
            raise UnsupportedFormatError(
                f".vox version {version} is not supported (supported: {SUPPORTED_VERSIONS})", path=self.path,
                field="header",
            )
        if size < 20:
            raise self.error(f"file ends at byte {size} inside the MAIN chunk header (needs 20 bytes)", "MAIN")
        cid, n, m = _CHUNK.unpack_from(self.data, 8)
        if cid != b"MAIN":
            raise self.error(f"first chunk is {_chunk_name(cid)!r}, expected 'MAIN'", "MAIN")
        if 20 + n + m > size:
            raise self.error(
                f"MAIN chunk claims {n} content + {m} children bytes but the file has only {size - 20} after its "
                "header (truncated file or corrupt size)", "MAIN",
            )
        pos, end = 20 + n, 20 + n + m
        while pos < end:
            if end - pos < 12:
                raise self.error(f"{end - pos} stray bytes at byte {pos}, too short for a chunk header", "MAIN")
            cid, n, m = _CHUNK.unpack_from(self.data, pos)
            name = _chunk_name(cid)
            if 12 + n + m > end - pos:
                raise self.error(
                    f"chunk at byte {pos} claims {n} content + {m} children bytes but only {end - pos - 12} remain in "
                    "MAIN", name,
                )
            self._chunk(name, _Cursor(self, self.data[pos + 12 : pos + 12 + n], name, pos))
            pos += 12 + n + m
        if self.pending_size is not None:
            raise self.error(f"SIZE chunk at byte {self.size_offset} is not followed by an XYZI chunk", "SIZE")
        palette = self.palette if self.palette is not None else DEFAULT_PALETTE.copy()
        return VoxFile(
            version=version, models=self.models, palette=palette, materials=self.materials,
            instances=self._instances(), layers=self.layers, index_map=self.index_map, notes=self.notes,
            cameras=self.cameras, render_objects=self.render_objects,
        )

    def _chunk(self, name: str, cur: _Cursor) -> None:
        """Dispatch one child chunk of MAIN."""
        handler = _HANDLERS.get(name)
        if handler is not None:
            handler(self, cur)

    def _size(self, cur: _Cursor) -> None:
        """SIZE: the dimensions of the next model."""
        if self.pending_size is not None:
            raise self.error(f"SIZE chunk at byte {self.size_offset} is not followed by an XYZI chunk", "SIZE")
        dims = (cur.i32("size x"), cur.i32("size y"), cur.i32("size z"))
        if not all(1 <= d <= MAX_MODEL_DIM for d in dims):
            raise cur.fail(f"model size {dims} is outside 1..{MAX_MODEL_DIM} per axis")
        self.pending_size = dims
        self.size_offset = cur.offset

    def _xyzi(self, cur: _Cursor) -> None:
        """XYZI: the voxels of the model sized by the preceding SIZE."""
        if self.pending_size is None:
            raise cur.fail("XYZI chunk without a preceding SIZE chunk")
        dims, self.pending_size = self.pending_size, None
        count = cur.count("voxel count", 4)
        raw = cur.raw(4 * count, "voxels")
        voxels = np.frombuffer(raw, dtype=np.uint8).reshape(count, 4).copy()
        # per-axis maxima first (uint8, no temporary per voxel); the per-row scan only runs to report a bad file
        if count and any(int(voxels[:, k].max()) >= dims[k] for k in range(3)):
            outside = (voxels[:, :3] >= np.array(dims, dtype=np.int64)).any(axis=1)
            i = int(np.argmax(outside))
            raise cur.fail(f"voxel {i} at {tuple(int(c) for c in voxels[i, :3])} lies outside the model size {dims}")
        self.models.append(VoxModel(size=dims, voxels=voxels))

    def _rgba(self, cur: _Cursor) -> None:
        """RGBA: file entry i is the colour of index i + 1."""
        raw = np.frombuffer(cur.raw(1024, "palette"), dtype=np.uint8).reshape(256, 4)
        palette = np.zeros((256, 4), dtype=np.uint8)
        palette[1:] = raw[:255]
        self.palette = palette

    def _matl(self, cur: _Cursor) -> None:
        """MATL: material properties of one colour index."""
        mid = cur.i32("material id")
        if not 0 <= mid <= 256:
            raise cur.fail(f"material id {mid} is outside 0..256")
        self.materials[mid & 0xFF] = cur.mapping("material properties")

    def _imap(self, cur: _Cursor) -> None:
        """IMAP: palette display order (kept, not applied)."""
        self.index_map = np.frombuffer(cur.raw(256, "index map"), dtype=np.uint8).copy()

    def _layr(self, cur: _Cursor) -> None:
        """LAYR: a layer's name and visibility."""
        lid = cur.i32("layer id")
        attrs = cur.mapping("layer attributes")
        self.layers[lid] = VoxLayer(name=attrs.get("_name"), hidden=attrs.get("_hidden", "0")[:1] == "1")

    def _robj(self, cur: _Cursor) -> None:
        """rOBJ: render settings dictionary."""
        self.render_objects.append(cur.mapping("render attributes"))

    def _rcam(self, cur: _Cursor) -> None:
        """rCAM: a camera's attributes."""
        cam = cur.i32("camera id")
        self.cameras[cam] = cur.mapping("camera attributes")

    def _note(self, cur: _Cursor) -> None:
        """NOTE: palette row names."""
        n = cur.count("note count", 4)
        self.notes = [cur.string("note") for _ in range(n)]

    def _node_id(self, cur: _Cursor) -> int:
        """Read and register-check a scene node id."""
        nid = cur.i32("node id")
        if nid < 0:
            raise cur.fail(f"negative node id {nid}")
        if nid in self.nodes:
            raise cur.fail(f"node id {nid} is already used by the {self.nodes[nid].kind} chunk at byte "
                           f"{self.nodes[nid].offset}")
        return nid

    def _ntrn(self, cur: _Cursor) -> None:
        """nTRN: a transform node with one child."""
        nid = self._node_id(cur)
        attrs = cur.mapping("node attributes")
        child = cur.i32("child node id")
        cur.i32("reserved id")
        layer = cur.i32("layer id")
        frames = [cur.mapping(f"frame {i}") for i in range(cur.count("frame count", 4))]
        locals_ = [self._frame_matrix(cur, f, i) for i, f in enumerate(frames)]
        self.edges += 1
        self.nodes[nid] = _Node(
            kind="nTRN", offset=cur.offset, children=(child,), name=attrs.get("_name"), layer=layer,
            hidden=attrs.get("_hidden", "0")[:1] == "1", local=locals_[0] if locals_ else np.eye(4),
        )

    def _frame_matrix(self, cur: _Cursor, frame: dict[str, str], index: int) -> np.ndarray:
        """Build the 4x4 local matrix of one nTRN frame from its ``_r`` and ``_t``."""
        mat = np.eye(4)
        if "_r" in frame:
            try:
                mat[:3, :3] = decode_rotation(int(frame["_r"].strip()))
            except ValueError as exc:
                raise cur.fail(f"frame {index} _r {frame['_r'][:40]!r}: {exc}") from None
        if "_t" in frame:
            parts = frame["_t"].split()
            try:
                vals = [int(p) for p in parts] if len(parts) == 3 else None
            except ValueError:
                vals = None
            if vals is None or not all(_INT32_MIN <= v <= _INT32_MAX for v in vals):
                raise cur.fail(f"frame {index} _t {frame['_t'][:40]!r} is not three int32 values")
            mat[:3, 3] = vals
        return mat

    def _ngrp(self, cur: _Cursor) -> None:
        """nGRP: a group node with any number of children."""
        nid = self._node_id(cur)
        cur.mapping("node attributes")
        n = cur.count("child count", 4)
        children = tuple(cur.i32("child node id") for _ in range(n))
        self.edges += n
        self.nodes[nid] = _Node(kind="nGRP", offset=cur.offset, children=children)

    def _nshp(self, cur: _Cursor) -> None:
        """nSHP: a shape node referencing a model (first frame used)."""
        nid = self._node_id(cur)
        cur.mapping("node attributes")
        n = cur.count("model count", 8)
        if n == 0:
            raise cur.fail("shape node references no model")
        models = []
        for i in range(n):
            models.append(cur.i32("model id"))
            cur.mapping(f"model {i} attributes")
        self.nodes[nid] = _Node(kind="nSHP", offset=cur.offset, model=models[0])
        self.shape_models.append((nid, models))

    def _instances(self) -> list[VoxInstance]:
        """Walk the scene graph from node 0 (or place each model once at identity when there is none)."""
        if not self.nodes:
            return [VoxInstance(model_index=i, transform=np.eye(4, dtype=np.float32)) for i in range(len(self.models))]
        for nid, models in self.shape_models:
            for mid in models:
                if not 0 <= mid < len(self.models):
                    raise self.error(f"shape node {nid} references model {mid} but the file has {len(self.models)} "
                                     "models", "nSHP")
        for nid, node in self.nodes.items():
            for child in node.children:
                if child not in self.nodes:
                    raise self.error(f"{node.kind} node {nid} (byte {node.offset}) references missing node {child}",
                                     node.kind)
        if 0 not in self.nodes:
            raise self.error("scene graph has no root node 0", "nTRN")
        return self._walk()

    def _walk(self) -> list[VoxInstance]:
        """Depth-first walk accumulating transforms; rejects cycles and bounds the number of visits."""
        budget = 4 * (self.edges + 1)
        instances: list[VoxInstance] = []
        on_path: set[int] = set()
        # Stack items: (node id, parent matrix, hidden, name, layer) to enter, or (node id,) to leave.
        stack: list[tuple] = [(0, np.eye(4), False, None, -1)]
        while stack:
            item = stack.pop()
            if len(item) == 1:
                on_path.discard(item[0])
                continue
            nid, mat, hidden, name, layer = item
            budget -= 1
            if budget < 0:
                raise self.error(f"scene graph expands to more than {4 * (self.edges + 1)} node visits through shared "
                                 "subtrees", "nGRP")
            node = self.nodes[nid]
            on_path.add(nid)
            stack.append((nid,))
            if node.kind == "nTRN":
                mat = mat @ node.local
                hidden = hidden or node.hidden
                name, layer = node.name, node.layer
            elif node.kind == "nSHP":
                model = self.models[node.model]
                pivot = np.eye(4)
                pivot[:3, 3] = [-(d // 2) for d in model.size]
                layer_obj = self.layers.get(layer)
                instances.append(VoxInstance(
                    model_index=node.model, transform=(mat @ pivot).astype(np.float32), name=name, layer=layer,
                    hidden=hidden or bool(layer_obj and layer_obj.hidden),
                ))
                continue
            for child in reversed(node.children):
                if child in on_path:
                    raise self.error(f"scene graph cycle: {node.kind} node {nid} (byte {node.offset}) leads back to "
                                     f"node {child}", node.kind)
                stack.append((child, mat, hidden, name, layer))
        return instances


_HANDLERS = {
    "SIZE": _Reader._size,
    "XYZI": _Reader._xyzi,
    "RGBA": _Reader._rgba,
    "MATL": _Reader._matl,
    "IMAP": _Reader._imap,
    "LAYR": _Reader._layr,
    "rOBJ": _Reader._robj,
    "rCAM": _Reader._rcam,
    "NOTE": _Reader._note,
    "nTRN": _Reader._ntrn,
    "nGRP": _Reader._ngrp,
    "nSHP": _Reader._nshp,
}


def read_vox(
    path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview, *, path: str | None = None
) -> VoxFile:
    """Read a MagicaVoxel ``.vox`` file from a path or from its bytes.

    :param path_or_bytes: a filesystem path, or the file's contents.
    :param path: the name used in error messages (defaults to the path argument; None for bytes).
    :returns: the parsed :class:`VoxFile`.
    :raises FormatError: the file is malformed; ``field`` names the chunk (``"header"`` for the file header).
    :raises UnsupportedFormatError: the file's version is not 150 or 200.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
    else:
        if path is None:
            path = os.fspath(path_or_bytes)
        try:
            with open(path_or_bytes, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise FormatError("file not found", path=path) from None
        except OSError as exc:
            raise FormatError(f"cannot read the file: {exc.strerror}", path=path) from exc
    return _Reader(data, path).read()
