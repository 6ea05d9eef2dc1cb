"""Bombs: small files that declare, inflate or decode to GiBs are refused by the size pre-flight before any
inflating, decoding or preparing: within a second and with the process's peak RSS growing by less than
``RSS_BOUND`` (a USD mesh: plus its arrays as read, since USD yields its counts only by reading them; the
preparation, which took GBs, never starts) (each load runs in a child process on the device, under a 64 MiB budget, ``--budget-mb 64``).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import zstandard

from vixen_assets.formats import ktx2 as k2

MiB = 1 << 20
GiB = 1 << 30
RSS_BOUND = 64 * MiB
"""The most the child's peak RSS may stand above its RSS before the load while a bomb is refused."""
TIME_BOUND_S = 1.0

CHILD = r"""
import json, resource, sys, time
from vixen_assets import BudgetOptions, load_stage, load_texture, open_device
from vixen_assets.errors import VixenError

def status(key):
    with open("/proc/self/status") as fh:
        return next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith(key + ":"))

def reset_peak():
    with open("/proc/self/clear_refs", "w") as fh:  # "5" resets VmHWM (the peak RSS) to the current RSS
        fh.write("5")

out = []
with open_device(validation=True, budget=BudgetOptions.from_mib(64)) as dev:
    for path in sys.argv[1:]:
        reset_peak()
        before = status("VmRSS")
        t0 = time.perf_counter()
        try:
            if path.endswith((".usda", ".usdc", ".usd")):
                load_stage(path, dev).release()
            else:
                load_texture(path, dev).release()
            outcome = "loaded"
        except VixenError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        except BaseException as exc:  # reported, and the test fails on it
            outcome = f"NOT A VixenError {type(exc).__name__}: {exc}"
        out.append({"path": path, "outcome": outcome, "seconds": time.perf_counter() - t0,
                    "rss_growth": status("VmHWM") - before, "budget_used": dev.budget.used})
    out.append({"problems": dev.validation_problems() if hasattr(dev, "validation_problems") else []})
print(json.dumps(out))
"""


def _zstd_zeros(nbytes: int, *, content_size: bool = True) -> bytes:
    comp = zstandard.ZstdCompressor(level=1, write_content_size=content_size)
    obj = comp.compressobj(size=nbytes) if content_size else comp.compressobj()
    chunk = bytes(min(nbytes, 4 * MiB))
    parts = [obj.compress(chunk[: min(len(chunk), nbytes - i)]) for i in range(0, nbytes, len(chunk))]
    return b"".join(parts) + obj.flush()


def _zlib_zeros(nbytes: int) -> bytes:
    obj = zlib.compressobj(9)
    chunk = bytes(4 * MiB)
    return b"".join(obj.compress(chunk[: min(len(chunk), nbytes - i)]) for i in range(0, nbytes, len(chunk))) + \
        obj.flush()


def _dfd(model: int, block: tuple[int, int], bytes_plane: int, samples: list[tuple[int, int]]) -> bytes:
    """A basic DFD: colour model, texel block, bytes per block and (bit offset, bit length) samples."""
    body = b"".join(struct.pack("<IIII", off | (length - 1) << 16, 0, 0, 0xFFFFFFFF) for off, length in samples)
    blk = struct.pack("<IIIIII", 0, 2 | (24 + len(body)) << 16, model | 1 << 8 | 1 << 16,
                      (block[0] - 1) | (block[1] - 1) << 8, bytes_plane, 0) + body
    return struct.pack("<I", 4 + len(blk)) + blk


def _ktx2(payload: bytes, *, vk_format: int, width: int, height: int, scheme: int, uncompressed: int,
          dfd: bytes) -> bytes:
    """A one-level KTX2 file around ``payload``."""
    dfd_off = 80 + 24
    data_off = dfd_off + len(dfd)
    data_off += -data_off % 16
    header = struct.pack("<12s9I4I2Q", k2.IDENTIFIER, vk_format, 1, width, height, 0, 0, 1, 1, scheme, dfd_off,
                         len(dfd), 0, 0, 0, 0)
    index = struct.pack("<3Q", data_off, len(payload), uncompressed)
    body = header + index + dfd
    return body + bytes(data_off - len(body)) + payload


RGBA8_DFD = _dfd(1, (1, 1), 4, [(0, 8), (8, 8), (16, 8), (24, 8)])
ASTC_4x4_DFD = _dfd(162, (4, 4), 16, [(0, 128)])
R8G8B8A8_UNORM, ASTC_4x4_UNORM = 37, 157


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares ``width x height`` RGBA8 and whose one IDAT holds a single row (Pillow opens it
    lazily: only decoding would find the rest missing)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    idat = zlib.compress(bytes(1 + 4 * width))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


MESH_FACES = 2_000_000
MESH_ARRAY_BYTES = (int(np.sqrt(MESH_FACES)) + 1) ** 2 * 12 + MESH_FACES * 4 * 5
"""Points (float32 x 3), face-vertex counts and indices (int32, 4 per quad) of the mesh bomb."""


def _mesh_bomb(path: Path, faces: int) -> None:
    """A USD stage with one mesh of ``faces`` quads over a grid of points (tens of MB of counts and indices)."""
    from pxr import Gf, Sdf, Usd, UsdGeom, Vt  # noqa: F401 - Gf/Sdf: USD's value types

    side = int(np.sqrt(faces)) + 1
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    points = np.stack([xs.ravel(), ys.ravel(), np.zeros(side * side, np.float32)], axis=1)
    q = side - 1
    base = (np.arange(q)[None, :] + side * np.arange(q)[:, None]).ravel()[:faces].astype(np.int32)
    idx = np.stack([base, base + 1, base + side + 1, base + side], axis=1).ravel()
    stage = Usd.Stage.CreateNew(str(path))
    mesh = UsdGeom.Mesh.Define(stage, "/Bomb")
    mesh.GetPointsAttr().Set(Vt.Vec3fArray.FromNumpy(points))
    mesh.GetFaceVertexCountsAttr().Set(Vt.IntArray.FromNumpy(np.full(len(base), 4, np.int32)))
    mesh.GetFaceVertexIndicesAttr().Set(Vt.IntArray.FromNumpy(idx))
    stage.GetRootLayer().Save()


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bombs")
    files = {
        # 32 KB of Zstandard declaring (and truly inflating to) 1 GiB of RGBA8 texels
        "zstd_1GiB.ktx2": _ktx2(_zstd_zeros(GiB), vk_format=R8G8B8A8_UNORM, width=16384, height=16384, scheme=2,
                                uncompressed=GiB, dfd=RGBA8_DFD),
        # a 64-byte level whose Zstandard frame (no declared content size) inflates to 1 GiB
        "zstd_lies.ktx2": _ktx2(_zstd_zeros(GiB, content_size=False), vk_format=R8G8B8A8_UNORM, width=4, height=4,
                                scheme=2, uncompressed=64, dfd=RGBA8_DFD),
        # 128 KB of zlib inflating to 128 MiB
        "zlib_128MiB.ktx2": _ktx2(_zlib_zeros(128 * MiB), vk_format=R8G8B8A8_UNORM, width=8192, height=4096,
                                  scheme=3, uncompressed=128 * MiB, dfd=RGBA8_DFD),
        # ASTC (which lavapipe cannot sample): 256 MiB of blocks, zstd-packed, decoding to 1 GiB of RGBA8
        "astc_decodes_1GiB.ktx2": _ktx2(_zstd_zeros(256 * MiB), vk_format=ASTC_4x4_UNORM, width=16384, height=16384,
                                        scheme=2, uncompressed=256 * MiB, dfd=ASTC_4x4_DFD),
    }
    out = {}
    for name, data in files.items():
        assert len(data) < 300_000, (name, len(data))
        (d / name).write_bytes(data)
        out[name] = d / name
    _png_header_only(d / "png_256MiB.png", 8192, 8192)
    out["png_256MiB.png"] = d / "png_256MiB.png"
    _mesh_bomb(d / "mesh_2M_faces.usdc", MESH_FACES)
    out["mesh_2M_faces.usdc"] = d / "mesh_2M_faces.usdc"
    return out


EXPECTED = {
    "zstd_1GiB.ktx2": "BudgetExceededError",
    "zstd_lies.ktx2": "FormatError",
    "zlib_128MiB.ktx2": "BudgetExceededError",
    "astc_decodes_1GiB.ktx2": "BudgetExceededError",
    "png_256MiB.png": "BudgetExceededError",
    "mesh_2M_faces.usdc": "BudgetExceededError",
}


def test_bombs_are_refused_fast_and_small(bombs: dict[str, Path]) -> None:
    env = dict(os.environ, VIXEN_VALIDATION="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, *map(str, bombs.values())], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results[-1] == {"problems": []}, results[-1]
    assert len(results) - 1 == len(bombs)
    for res in results[:-1]:
        name = Path(res["path"]).name
        assert res["outcome"].startswith(EXPECTED[name] + ":"), (name, res["outcome"])
        assert Path(res["path"]).name in res["outcome"] or "/Bomb" in res["outcome"], res["outcome"]
        assert res["seconds"] < TIME_BOUND_S, (name, res["seconds"])
        bound = RSS_BOUND
        if name.endswith(".usdc"):  # USD gives no count without reading the values: the arrays are read first
            bound += MESH_ARRAY_BYTES
        print(f"{name} ({Path(res['path']).stat().st_size} bytes): {res['seconds'] * 1000:.0f} ms (bound "
              f"{TIME_BOUND_S * 1000:.0f}), peak RSS +{res['rss_growth'] / MiB:.1f} MiB (bound {bound / MiB:.0f}): "
              f"{res['outcome'][:40]}")
        assert res["rss_growth"] < bound, (name, res["rss_growth"], bound)
        assert res["budget_used"] < 16 * MiB, (name, res["budget_used"])  # nothing left charged (the staging pool)
