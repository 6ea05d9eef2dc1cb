"""Keep the Vulkan drivers (and what they load) mapped for the life of the process.

The Vulkan loader opens (``dlopen``) every driver (ICD) and layer when an instance is created (and for the queries
made before one) and closes (``dlclose``) them when the last instance is destroyed. NVIDIA's driver needs
``libnvidia-tls.so``, whose thread-local storage uses the initial-exec model: glibc carves it out of the fixed
static TLS surplus at every load and reclaims it at unload only when it is the last block handed out (rarely, once
other libraries came and went). A long-lived process that opens and closes devices (the test suite, a server)
reloads the driver each time and, from about the 56th device on, fails with "libnvidia-tls.so…: cannot allocate
memory in static TLS block" and "Found no drivers!" (seen on an H200, driver 580; see ``docs/nvidia.md``).
``GLIBC_TUNABLES=glibc.rtld.optional_static_tls=…`` only postpones it.

The fix here: around instance and device creation, list the shared libraries that appeared while the loader worked
(``dl_iterate_phdr``) and re-open each with ``RTLD_NOLOAD | RTLD_NODELETE``, which marks the already-loaded library
as never to be unloaded without loading anything. The driver, its dependencies (``libnvidia-glcore``,
``libnvidia-tls``) and the layers then stay mapped; later loads by the loader are reference-count bumps, so the
static TLS is spent once per process. No Vulkan object is created (nothing a validation layer could report).
Drivers that glibc already never unloads (lavapipe here: it defines ``STB_GNU_UNIQUE`` symbols, and glibc keeps
such objects mapped) behave the same with or without it; Mesa's intel and radeon drivers and the layers are
unloaded without it (``tests/test_pinning.py`` watches that).

``VIXEN_KEEP_DRIVERS_LOADED=0`` turns it off (to reproduce the problem, or where a driver must really be unloaded).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_pinned: dict[str, ctypes.CDLL] = {}  # path -> the handle that keeps it (never closed)
_MODE = getattr(os, "RTLD_NOW", 2) | getattr(os, "RTLD_NOLOAD", 4) | getattr(os, "RTLD_NODELETE", 0x1000)


class _PhdrInfo(ctypes.Structure):
    _fields_ = [("addr", ctypes.c_void_p), ("name", ctypes.c_char_p), ("phdr", ctypes.c_void_p),
                ("phnum", ctypes.c_uint16)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_PhdrInfo), ctypes.c_size_t, ctypes.c_void_p)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.dl_iterate_phdr  # noqa: B018 - present in glibc and musl
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def enabled() -> bool:
    """Whether drivers are kept loaded (Linux, unless ``VIXEN_KEEP_DRIVERS_LOADED=0``)."""
    return _LIBC is not None and os.environ.get("VIXEN_KEEP_DRIVERS_LOADED", "1") not in ("0", "false", "no")


def loaded_libraries() -> set[str]:
    """Paths of the shared libraries mapped into the process now (empty where this cannot be listed)."""
    if _LIBC is None:
        return set()
    names: list[bytes] = []

    def visit(info: ctypes._Pointer, _size: int, _data: int) -> int:  # type: ignore[type-arg]
        name = info.contents.name
        if name:
            names.append(name)
        return 0

    _LIBC.dl_iterate_phdr(_CALLBACK(visit), None)
    return {n.decode(errors="surrogateescape") for n in names if n.startswith(b"/")}


def pin(paths: set[str] | list[str]) -> list[str]:
    """Mark already-loaded libraries never to be unloaded; return the ones newly pinned (unloaded ones are skipped).

    :param paths: absolute paths of mapped shared libraries (:func:`loaded_libraries`).
    """
    done = []
    with _lock:
        for path in sorted(paths):
            if path in _pinned:
                continue
            try:
                _pinned[path] = ctypes.CDLL(path, mode=_MODE)  # RTLD_NOLOAD: never loads anything new
            except OSError:
                continue  # gone again already (loaded and unloaded inside the call), or not loadable by name
            done.append(path)
    return done


def pinned() -> list[str]:
    """Libraries this process keeps loaded."""
    with _lock:
        return sorted(_pinned)


class LibraryWatch:
    """Remembers the libraries mapped when made; :meth:`pin_new` pins those that appeared since."""

    def __init__(self) -> None:
        """Take the snapshot (nothing where pinning is off)."""
        self.before = loaded_libraries() if enabled() else None

    def pin_new(self) -> list[str]:
        """Pin the libraries mapped since the snapshot; return the newly pinned ones."""
        if self.before is None:
            return []
        return pin(loaded_libraries() - self.before)


@contextlib.contextmanager
def keep_new_libraries_loaded() -> Iterator[None]:
    """Pin every shared library that gets mapped while the block runs (wrap instance and device creation)."""
    watch = LibraryWatch()
    try:
        yield
    finally:
        watch.pin_new()
