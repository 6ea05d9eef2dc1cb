"""Fuzz the public loaders on the device: mutated KTX2, ``.vox`` and USD files through ``load_texture``,
``load_vox`` and ``load_stage``, every input in a child process with an RSS and a time limit.

The parent generates nothing itself: it starts worker processes (``--worker``), each of which opens a device (the
validation layer on unless ``--no-validation``), derives inputs ``i`` of a run deterministically from
``(format, seed, i)`` (a seed file, then 1 to 4 mutations: bit flips, interesting values, truncation, insertion,
chunk duplication, splices, and for ``.usda`` text token swaps such as ``nan``/``-1``/``1e30``), loads each, and
reports one JSON line per input. The parent enforces the limits: an input whose result does not come within
``--time-limit`` seconds kills the worker (``timeout``); a worker that dies (a crash, or the address-space limit
``--rss-mb`` given to it with ``setrlimit``) is recorded against the input it was running (``crash``); each input's
peak RSS above the worker's RSS before it is measured (``VmHWM`` after ``/proc/self/clear_refs``) and must stay under
``--rss-mb``. A new worker resumes after a killed input.

Every outcome must be a successful load or a :class:`~vixen_assets.errors.VixenError`; after every input nothing may
be left: no budget charge besides the staging pool, no live GPU object besides it, no validation message. Failing
inputs are written to ``--out`` for reproduction (``--replay FILE``).

Usage::

    python scripts/fuzz_loaders.py --format ktx2 --count 100000 --workers 8 --out fuzz-out   # the slow run
    python scripts/fuzz_loaders.py --format all --count 200 --workers 1 --json summary.json  # a short run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import select
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

FORMATS = ("ktx2", "vox", "usd")
SUFFIX = {"ktx2": ".ktx2", "vox": ".vox", "usd": ".usda"}
INTERESTING_32 = (0, 1, 2, 3, 4, 6, 7, 8, 15, 16, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
                  0xFFFFFFFF, 0xFFFFFFFE, 65536, 16384, 16385, 20000)
USD_TOKENS = ("nan", "inf", "-inf", "-1", "0", "1e30", "-1e30", "2147483647", "2147483648", "-2147483649", "3.4e39",
              "[]", "[0]", "[1, 2]", "None", '""', "@missing.ktx2@", "@../../../etc/passwd@")


# ---------------------------------------------------------------------------------------------------------- seeds


def _ktx2_dfd_rgba8() -> bytes:
    samples = b"".join(struct.pack("<IIII", (8 * i) | (7 << 16) | ((15 if i == 3 else i) << 24), 0, 0, 255)
                       for i in range(4))
    block = struct.pack("<IIIIII", 0, 2 | (24 + len(samples)) << 16, 1 | 1 << 8 | 1 << 16, 0, 4, 0) + samples
    return struct.pack("<I", 4 + len(block)) + block


def _ktx2(levels: list[bytes], *, width: int, height: int, depth: int = 0, layers: int = 0, faces: int = 1,
          scheme: int = 0) -> bytes:
    import zstandard

    dfd = _ktx2_dfd_rgba8()
    kv = b"KTXwriter\0fuzz\0"
    kvd = struct.pack("<I", len(kv)) + kv + bytes(-len(kv) % 4)
    dfd_off = 80 + 24 * len(levels)
    kvd_off = dfd_off + len(dfd)
    pos = kvd_off + len(kvd)
    packed = [zstandard.ZstdCompressor().compress(lv) if scheme == 2 else zlib.compress(lv) if scheme == 3 else lv
              for lv in levels]
    index, body = [b""] * len(levels), b""
    for i in reversed(range(len(levels))):
        pad = -pos % 16
        body += bytes(pad)
        pos += pad
        index[i] = struct.pack("<3Q", pos, len(packed[i]), len(levels[i]))
        body += packed[i]
        pos += len(packed[i])
    header = struct.pack("<12s9I4I2Q", b"\xabKTX 20\xbb\r\n\x1a\n", 37, 1, width, height, depth, layers, faces,
                         len(levels), scheme, dfd_off, len(dfd), kvd_off, len(kvd), 0, 0)
    return header + b"".join(index) + dfd + kvd + body


def _rgba(w: int, h: int, d: int = 1, n: int = 1, seed: int = 0) -> bytes:
    rnd = random.Random(seed)
    return bytes(rnd.randrange(256) for _ in range(w * h * d * 4 * n))


def ktx2_seeds(assets: Path | None) -> list[bytes]:
    """Generated KTX2 files (RGBA8: mips, zstd, zlib, cube, array, 3D) plus small shared ones."""
    seeds = [
        _ktx2([_rgba(8, 8), _rgba(4, 4), _rgba(2, 2), _rgba(1, 1)], width=8, height=8),
        _ktx2([_rgba(8, 4), _rgba(4, 2)], width=8, height=4, scheme=2),
        _ktx2([_rgba(4, 4)], width=4, height=4, scheme=3),
        _ktx2([_rgba(4, 4, n=6)], width=4, height=4, faces=6),
        _ktx2([_rgba(4, 4, n=3)], width=4, height=4, layers=3),
        _ktx2([_rgba(4, 4, 4), _rgba(2, 2, 2)], width=4, height=4, depth=4, scheme=2),
        _ktx2([_rgba(16, 1)], width=16, height=0),
    ]
    if assets is not None:
        seeds += [p.read_bytes() for p in sorted((assets / "ktx2").glob("*.ktx2")) if p.stat().st_size < 200_000]
    return seeds


def _vox_chunk(cid: bytes, content: bytes = b"", children: bytes = b"") -> bytes:
    return struct.pack("<4sii", cid, len(content), len(children)) + content + children


def _vox_dict(d: dict[str, str]) -> bytes:
    out = struct.pack("<i", len(d))
    for k, v in d.items():
        out += struct.pack("<i", len(k)) + k.encode() + struct.pack("<i", len(v)) + v.encode()
    return out


def vox_seeds(assets: Path | None) -> list[bytes]:
    """Generated ``.vox`` files (models, palette, a scene graph, materials) plus small shared ones."""
    def model(size: tuple[int, int, int], voxels: list[tuple[int, int, int, int]]) -> bytes:
        return (_vox_chunk(b"SIZE", struct.pack("<3i", *size))
                + _vox_chunk(b"XYZI", struct.pack("<i", len(voxels)) + bytes(b for v in voxels for b in v)))

    a = model((4, 4, 4), [(0, 0, 0, 1), (1, 2, 3, 2), (3, 3, 3, 255)])
    b = model((2, 3, 1), [(1, 2, 0, 7)])
    rgba = _vox_chunk(b"RGBA", bytes(range(256)) * 4)
    ntrn0 = _vox_chunk(b"nTRN", struct.pack("<i", 0) + _vox_dict({}) + struct.pack("<4i", 1, -1, 0, 1)
                       + _vox_dict({}))
    ngrp = _vox_chunk(b"nGRP", struct.pack("<i", 1) + _vox_dict({}) + struct.pack("<3i", 2, 2, 4))
    ntrn2 = _vox_chunk(b"nTRN", struct.pack("<i", 2) + _vox_dict({}) + struct.pack("<4i", 3, -1, 0, 1)
                       + _vox_dict({"_t": "4 0 -2", "_r": "6"}))
    nshp3 = _vox_chunk(b"nSHP", struct.pack("<i", 3) + _vox_dict({}) + struct.pack("<i", 1) + struct.pack("<i", 0)
                       + _vox_dict({}))
    ntrn4 = _vox_chunk(b"nTRN", struct.pack("<i", 4) + _vox_dict({}) + struct.pack("<4i", 5, -1, 0, 1)
                       + _vox_dict({"_t": "-3 1 0"}))
    nshp5 = _vox_chunk(b"nSHP", struct.pack("<i", 5) + _vox_dict({}) + struct.pack("<i", 1) + struct.pack("<i", 1)
                       + _vox_dict({}))
    matl = _vox_chunk(b"MATL", struct.pack("<i", 2) + _vox_dict({"_type": "_metal", "_rough": "0.3"}))

    def vox(body: bytes) -> bytes:
        return b"VOX " + struct.pack("<i", 150) + _vox_chunk(b"MAIN", b"", body)

    seeds = [vox(a), vox(a + b + rgba), vox(a + b + ntrn0 + ngrp + ntrn2 + nshp3 + ntrn4 + nshp5 + rgba + matl)]
    if assets is not None:
        seeds += [p.read_bytes() for p in sorted((assets / "vox").glob("*.vox")) if p.stat().st_size < 200_000]
    return seeds


USD_SEEDS = [
    """#usda 1.0
(
    upAxis = "Y"
    metersPerUnit = 1
)
def Xform "World"
{
    double3 xformOp:translate = (1, 2, 3)
    uniform token[] xformOpOrder = ["xformOp:translate"]
    def Mesh "Quad"
    {
        int[] faceVertexCounts = [4, 3]
        int[] faceVertexIndices = [0, 1, 2, 3, 0, 2, 4]
        point3f[] points = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (2, 2, 0)]
        normal3f[] normals = [(0, 0, 1), (0, 0, 1), (0, 0, 1), (0, 0, 1), (0, 0, 1)] (interpolation = "vertex")
        texCoord2f[] primvars:st = [(0, 0), (1, 0), (1, 1), (0, 1), (0, 0), (1, 1), (0, 1)] (
            interpolation = "faceVarying"
        )
        int[] holeIndices = []
        bool leftHanded = 0
    }
}
""",
    """#usda 1.0
def PointInstancer "pi"
{
    point3f[] positions = [(0, 0, 0), (5, 0, 0), (0, 7, 0)]
    int[] protoIndices = [0, 1, 0]
    quath[] orientations = [(1, 0, 0, 0), (0.7071, 0, 0.7071, 0), (1, 0, 0, 0)]
    float3[] scales = [(1, 1, 1), (2, 2, 2), (1, 1, 1)]
    rel prototypes = [</pi/Protos/tri>, </pi/Protos/quad>]
    def Scope "Protos"
    {
        def Mesh "tri"
        {
            int[] faceVertexCounts = [3]
            int[] faceVertexIndices = [0, 1, 2]
            point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
        }
        def Mesh "quad"
        {
            int[] faceVertexCounts = [4]
            int[] faceVertexIndices = [0, 1, 2, 3]
            point3f[] points = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]
            uniform token subdivisionScheme = "none"
        }
    }
}
""",
    """#usda 1.0
def Mesh "Box" (
    instanceable = true
)
{
    int[] faceVertexCounts = [3, 3, 3, 3]
    int[] faceVertexIndices = [0, 1, 2, 0, 2, 3, 0, 3, 1, 1, 3, 2]
    point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]
    color3f[] primvars:displayColor = [(1, 0, 0)] (interpolation = "constant")
    def GeomSubset "sub"
    {
        uniform token elementType = "face"
        uniform token familyName = "materialBind"
        int[] indices = [0, 2]
    }
}
def Xform "Inst" (
    prepend references = </Box>
)
{
}
""",
]


def usd_seeds(assets: Path | None) -> list[bytes]:
    """Hand-written ``.usda`` stages (meshes, primvars, subsets, a point instancer, instancing, references)."""
    return [s.encode() for s in USD_SEEDS]


SEEDS = {"ktx2": ktx2_seeds, "vox": vox_seeds, "usd": usd_seeds}


# -------------------------------------------------------------------------------------------------------- mutating


def mutate(data: bytes, rnd: random.Random, seeds: list[bytes], text: bool) -> bytes:
    """1 to 4 random mutations of ``data``."""
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        # text (.usda): mostly token and line edits that keep it parseable, so the loader gets past the parser
        op = rnd.choice((7, 7, 7, 7, 8, 8, 0, 1, 2, 3, 4, 5, 6)) if text else rnd.randrange(7)
        n = len(buf)
        if n == 0:
            buf += bytes(rnd.randrange(256) for _ in range(8))
            continue
        pos = rnd.randrange(n)
        if op == 0:  # bit flip
            buf[pos] ^= 1 << rnd.randrange(8)
        elif op == 1:  # random byte (printable in text)
            buf[pos] = rnd.randrange(32, 127) if text else rnd.randrange(256)
        elif op == 2 and n >= 4:  # an interesting 32-bit value, aligned as headers are
            p = (pos & ~3) if rnd.random() < 0.7 else pos
            p = min(p, n - 4)
            struct.pack_into("<I", buf, p, rnd.choice(INTERESTING_32))
        elif op == 3:  # truncate
            del buf[rnd.randrange(n):]
        elif op == 4:  # insert random bytes
            buf[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 32)))
        elif op == 5:  # duplicate a span (chunks, levels)
            a = rnd.randrange(n)
            b = min(n, a + rnd.randint(1, 256))
            buf[pos:pos] = buf[a:b]
        elif op == 6:  # splice with another seed
            other = rnd.choice(seeds)
            if other:
                cut = rnd.randrange(len(other))
                buf = buf[:pos] + bytearray(other[cut:])
        elif op == 7:  # swap a numeric token for an interesting one
            txt = buf.decode("latin-1")
            nums = [m.span() for m in re.finditer(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", txt)]
            if nums:
                a, b = rnd.choice(nums)
                txt = txt[:a] + rnd.choice(USD_TOKENS) + txt[b:]
                buf = bytearray(txt.encode("latin-1"))
        elif op == 8:  # drop or duplicate a line
            lines = buf.split(b"\n")
            i = rnd.randrange(len(lines))
            if rnd.random() < 0.5:
                del lines[i]
            else:
                lines.insert(i, lines[rnd.randrange(len(lines))])
            buf = bytearray(b"\n".join(lines))
    return bytes(buf)


def make_input(fmt: str, seed: int, i: int, seeds: list[bytes]) -> bytes:
    """Input ``i`` of the run ``(fmt, seed)``: a seed file, mutated (every 50th input is a seed unchanged)."""
    rnd = random.Random(f"{fmt}:{seed}:{i}")
    base = seeds[rnd.randrange(len(seeds))]
    return base if i % 50 == 0 else mutate(base, rnd, seeds, text=fmt == "usd")


# ---------------------------------------------------------------------------------------------------------- worker


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith(key + ":"))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _selftest(what: str) -> None:
    """Misbehave on purpose (``VIXEN_FUZZ_SELFTEST=crash:3,hang:5,hog:7,raise:9``) so tests can see the parent
    record each kind of failure."""
    if what == "crash":
        os._exit(77)
    if what == "hang":
        time.sleep(3600)
    if what == "hog":
        hog = bytearray(768 << 20)
        hog[::4096] = b"x" * len(hog[::4096])
    if what == "raise":
        raise KeyError("selftest")


def worker(fmt: str, seed: int, start: int, count: int, validation: bool, budget_mb: float, tmp: str,
           assets: Path | None) -> int:
    """Load inputs ``start .. start + count - 1``, one JSON line each (``{"i", "outcome", "ms", "rss"}``)."""
    import vixen_assets as va
    from vixen_assets.errors import VixenError

    seeds = SEEDS[fmt](assets)
    dev = va.open_device(validation=validation, budget=va.BudgetOptions.from_mib(budget_mb, staging_timeout_s=5.0))
    out = sys.stdout
    seen = len(dev.validation_problems())
    selftest = {int(k): v for v, k in (item.split(":") for item in
                                       os.environ.get("VIXEN_FUZZ_SELFTEST", "").split(",") if item)}
    try:
        for i in range(start, start + count):
            data = make_input(fmt, seed, i, seeds)
            # a new name per input: USD's layer registry (and any cache by path) must never serve an earlier input
            path = os.path.join(tmp, f"input-{os.getpid()}-{i}{SUFFIX[fmt]}")
            with open(path, "wb") as fh:
                fh.write(data)
            out.write(json.dumps({"begin": i}) + "\n")
            out.flush()
            _reset_peak()
            rss0 = _status("VmRSS")
            t0 = time.perf_counter()
            try:
                if i in selftest:  # the harness's own test: make this input crash, hang, hog memory or raise
                    _selftest(selftest[i])
                if fmt == "ktx2":
                    va.load_texture(path, dev).release()
                elif fmt == "vox":
                    va.load_vox(path, dev).release()
                else:
                    va.load_stage(path, dev, warm=False, acceleration_structures=i % 4 == 0).release()
                outcome = "ok"
            except VixenError as exc:
                outcome = f"VixenError:{type(exc).__name__}"
            except BaseException as exc:  # the finding: nothing but a VixenError may come out
                outcome = f"BAD:{type(exc).__name__}: {str(exc)[:300]}"
            ms = (time.perf_counter() - t0) * 1000
            rss = _status("VmHWM") - rss0
            for cacher in list(dev.cachers.values()):
                cacher.evict()
            dev.uploader.drain()
            cats = dev.budget.stats()["categories"]
            left = {k: v["bytes"] for k, v in cats.items() if k != "staging" and v["bytes"]}
            live = [getattr(o, "name", "?") for o in dev.live_resources()
                    if not str(getattr(o, "name", "")).startswith("staging")]
            problems = dev.validation_problems()[seen:]
            seen += len(problems)
            if left or live:
                outcome += f" LEAK:{left} {live[:5]}"
            if problems:
                outcome += f" VALIDATION:{problems[0][:300]}"
            out.write(json.dumps({"i": i, "outcome": outcome, "ms": round(ms, 2), "rss": rss}) + "\n")
            out.flush()
            os.unlink(path)
    finally:
        dev.close()
    return 0


# ---------------------------------------------------------------------------------------------------------- parent


def _good(outcome: str) -> bool:
    return (outcome == "ok" or outcome.startswith("VixenError:")) and " LEAK:" not in outcome and \
        " VALIDATION:" not in outcome


def run(fmt: str, *, count: int, seed: int = 0, workers: int = 1, time_limit: float = 20.0, rss_mb: int = 512,
        validation: bool = True, budget_mb: float = 64.0, out: Path | None = None, assets: Path | None = None,
        progress: Any = None) -> dict[str, Any]:
    """Fuzz ``fmt`` with ``count`` inputs over ``workers`` child processes; return the summary.

    :param fmt: ``ktx2``, ``vox`` or ``usd``.
    :param count: inputs.
    :param seed: the run's seed (inputs are ``(fmt, seed, i)``).
    :param workers: child processes at once.
    :param time_limit: seconds an input may take before its worker is killed.
    :param rss_mb: the peak-RSS growth an input may cause (and the worker's address-space headroom).
    :param validation: the Vulkan validation layer in the workers.
    :param budget_mb: the workers' device budget (``--budget-mb``).
    :param out: a folder for the failing inputs (``None``: not kept).
    :param assets: the shared assets folder (more seeds), or ``None``.
    :param progress: ``progress(done, total)`` callback.
    :returns: ``{"format", "inputs", "outcomes": {kind: n}, "failures": [...], "seconds", "max_ms", "max_rss"}``.
    """
    started = time.perf_counter()
    ranges = []
    per = -(-count // max(1, workers))
    for w in range(workers):
        a, b = w * per, min(count, (w + 1) * per)
        if a < b:
            ranges.append([a, b])
    outcomes: dict[str, int] = {}
    failures: list[dict[str, Any]] = []
    max_ms = 0.0
    max_rss = 0
    done = 0
    seeds = SEEDS[fmt](assets)
    tmp = tempfile.mkdtemp(prefix=f"fuzz-{fmt}-")
    procs: dict[int, dict[str, Any]] = {}

    def spawn(slot: int) -> None:
        a, b = ranges[slot]
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", fmt, "--seed", str(seed), "--start", str(a),
               "--count", str(b - a), "--budget-mb", str(budget_mb), "--tmp", tmp]
        if not validation:
            cmd.append("--no-validation")
        if assets is not None:
            cmd += ["--assets", str(assets)]
        env = dict(os.environ, VIXEN_FUZZ_AS_LIMIT_MB=str(rss_mb))
        # stderr to a file, not a pipe: a worker printing much (USD warnings) must never block on a full pipe
        err = tempfile.TemporaryFile(dir=tmp)
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env)
        procs[slot] = {"proc": p, "current": None, "since": time.monotonic(), "buf": b"", "err": err}

    def lines(info: dict[str, Any], chunk: bytes) -> list[dict[str, Any]]:
        """The complete JSON lines of a worker's output so far (raw reads: no buffered line hidden from select)."""
        info["buf"] += chunk
        *complete, info["buf"] = info["buf"].split(b"\n")
        return [json.loads(line) for line in complete if line.strip()]

    def record(i: int, outcome: str, ms: float = 0.0, rss: int = 0) -> None:
        nonlocal done, max_ms, max_rss
        if rss > rss_mb << 20:
            outcome = f"RSS:{rss >> 20} MiB over the {rss_mb} MiB limit ({outcome})"
        if _good(outcome):
            kind = outcome.split(":", 1)[-1]  # "ok" or the VixenError's class
        elif " LEAK:" in outcome or " VALIDATION:" in outcome:
            kind = "LEAK" if " LEAK:" in outcome else "VALIDATION"
        else:
            kind = re.split(r"[: ]", outcome, maxsplit=1)[0]  # BAD, TIMEOUT, CRASH, RSS
        outcomes[kind] = outcomes.get(kind, 0) + 1
        max_ms = max(max_ms, ms)
        max_rss = max(max_rss, rss)
        done += 1
        if not _good(outcome):
            data = make_input(fmt, seed, i, seeds)
            failures.append({"i": i, "outcome": outcome})
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                (out / f"{fmt}-{seed}-{i}{SUFFIX[fmt]}").write_bytes(data)
        if progress is not None:
            progress(done, count)

    for slot in range(len(ranges)):
        spawn(slot)
    while procs:
        streams = {info["proc"].stdout.fileno(): slot for slot, info in procs.items()}
        ready, _, _ = select.select(list(streams), [], [], 0.5)
        for fd in ready:
            slot = streams[fd]
            info = procs[slot]
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                continue
            for msg in lines(info, chunk):
                if "begin" in msg:
                    info["current"] = msg["begin"]
                    info["since"] = time.monotonic()
                else:
                    record(msg["i"], msg["outcome"], msg["ms"], msg["rss"])
                    info["current"] = None
                    ranges[slot][0] = msg["i"] + 1
        for slot in list(procs):
            info = procs[slot]
            p = info["proc"]
            cur = info["current"]
            if cur is not None and time.monotonic() - info["since"] > time_limit and "killed" not in info:
                info["killed"] = cur
                p.kill()
            timed_out = info.get("killed") is not None
            rc = p.poll()
            if rc is None:
                continue
            finished = set()
            for msg in lines(info, p.stdout.read() + b"\n"):  # results written just before the exit
                if "i" in msg:
                    record(msg["i"], msg["outcome"], msg["ms"], msg["rss"])
                    finished.add(msg["i"])
                    ranges[slot][0] = msg["i"] + 1
                    cur = None if msg["i"] == cur else cur
                elif "begin" in msg:
                    cur = msg["begin"]
            if timed_out and info["killed"] in finished:  # it finished as the limit struck: not a timeout
                timed_out = False
            info["err"].seek(0)
            err = info["err"].read().decode(errors="replace")
            info["err"].close()
            p.stdout.close()
            p.wait()
            del procs[slot]
            if timed_out:
                cur = info["killed"]
            elif "killed" in info and cur == info["killed"]:
                cur = None
            if cur is not None:
                why = "TIMEOUT" if timed_out else f"CRASH rc={rc}"
                record(cur, f"{why}: {err.strip().splitlines()[-1][:200] if err.strip() else ''}")
                ranges[slot][0] = cur + 1
            elif rc != 0:
                failures.append({"i": -1, "outcome": f"worker failed rc={rc}: {err[-500:]}"})
                ranges[slot][0] = ranges[slot][1]
            if ranges[slot][0] < ranges[slot][1]:
                spawn(slot)
    return {"format": fmt, "inputs": done, "outcomes": dict(sorted(outcomes.items())), "failures": failures,
            "seconds": round(time.perf_counter() - started, 2), "max_ms": round(max_ms, 1),
            "max_rss_mb": round(max_rss / (1 << 20), 1), "seed": seed, "workers": workers,
            "validation": validation, "time_limit_s": time_limit, "rss_limit_mb": rss_mb}


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--format", default="all", choices=FORMATS + ("all",))
    ap.add_argument("--count", type=int, default=200, help="inputs per format")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=20.0, help="seconds an input may take")
    ap.add_argument("--rss-mb", type=int, default=512, help="peak RSS growth an input may cause")
    ap.add_argument("--budget-mb", type=float, default=64.0)
    ap.add_argument("--no-validation", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="folder for failing inputs")
    ap.add_argument("--assets", type=Path, default=None, help="shared assets folder (more seeds)")
    ap.add_argument("--json", type=Path, default=None, help="write the summary here")
    ap.add_argument("--replay", type=Path, default=None, help="load one saved input in this process")
    ap.add_argument("--worker", choices=FORMATS, help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        limit = int(os.environ.get("VIXEN_FUZZ_AS_LIMIT_MB", "0"))
        if limit:
            import resource

            # an address-space backstop well above the per-input RSS bound (the driver maps large areas)
            vm = _status("VmSize")
            cap = vm + (limit << 20) * 8
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        return worker(args.worker, args.seed, args.start, args.count, not args.no_validation, args.budget_mb,
                      args.tmp or tempfile.gettempdir(), args.assets)
    if args.replay:
        import vixen_assets as va

        with va.open_device(validation=not args.no_validation,
                            budget=va.BudgetOptions.from_mib(args.budget_mb)) as dev:
            suffix = args.replay.suffix
            loader = {".ktx2": va.load_texture, ".vox": va.load_vox}.get(suffix, va.load_stage)
            loader(args.replay, dev).release()
        return 0
    summaries = []
    for fmt in (FORMATS if args.format == "all" else (args.format,)):
        s = run(fmt, count=args.count, seed=args.seed, workers=args.workers, time_limit=args.time_limit,
                rss_mb=args.rss_mb, validation=not args.no_validation, budget_mb=args.budget_mb, out=args.out,
                assets=args.assets)
        summaries.append(s)
        print(f"{fmt}: {s['inputs']} inputs in {s['seconds']} s ({s['inputs'] / max(s['seconds'], 1e-9):.0f}/s), "
              f"slowest {s['max_ms']} ms (limit {s['time_limit_s'] * 1000:.0f}), peak RSS +{s['max_rss_mb']} MiB "
              f"(limit {s['rss_limit_mb']}), outcomes {s['outcomes']}, failures {len(s['failures'])}")
        for f in s["failures"][:10]:
            print(f"  input {f['i']}: {f['outcome']}")
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=1))
    return 0 if all(not s["failures"] for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
