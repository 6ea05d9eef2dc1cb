"""``TypedCacher``: the base class of every cacher, built in or third-party.

A cacher turns *sources* (numpy arrays read from a prim or a file) into *entries* (GPU objects). The base class
gives every cacher the same behaviour:

- a content-hash key per source (``key_for``): identical data referenced many times is uploaded once;
- reference counts (``get_many`` acquires, ``release`` drops) and an LRU of unreferenced entries, evicted when the
  device budget crosses its warning threshold (or on ``evict()``);
- stats: hits, misses, bytes, evictions;
- exception safety: ``build`` runs inside an allocation group, so a failure leaves no entry and no memory behind;
- allocations tagged with the cacher's ``name`` in the budget's per-category stats.

A plugin author subclasses it and implements ``read_prim`` (or ``read_file``), ``key_for``, ``build``,
``entry_nbytes`` and ``destroy_entry``; see ``docs/plugins.md``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Sequence, TypeVar

from ..errors import BudgetExceededError, ConfigError, NotHeldError, PluginError
from ..hookcalls import notify_asset_cached
from ..memory.group import AllocationGroup

if TYPE_CHECKING:
    from ..device import Device

log = logging.getLogger("vixen_assets.cachers")

PREFLIGHT_CATEGORY = "preflight"
"""The budget category of :meth:`TypedCacher.preflight` charges (apart from the entries' own categories)."""

S = TypeVar("S")
E = TypeVar("E")


@dataclass
class CacherStats:
    """Counters of one cacher."""

    hits: int = 0
    misses: int = 0
    entries: int = 0
    bytes: int = 0
    evictions: int = 0
    evicted_bytes: int = 0
    failed_builds: int = 0


class _Entry:
    __slots__ = ("key", "value", "nbytes", "refs", "tick")

    def __init__(self, key: str, value: Any, nbytes: int, tick: int) -> None:
        self.key = key
        self.value = value
        self.nbytes = nbytes
        self.refs = 0
        self.tick = tick


@dataclass(frozen=True)
class LoadContext:
    """What a cacher's ``read_prim`` / ``read_file`` may need: the time, the stage's file, options."""

    time: Any = None
    layer_path: str = ""
    options: dict[str, Any] | None = None


class HeldEntry:
    """Mixin for cache entries handed straight to callers (``load_texture``): each hand-out holds one cache reference.

    The entry cannot be evicted while a caller holds it; ``release()`` (or leaving a ``with`` block) gives one
    reference back, after which the entry stays cached but may be evicted. Loading the same content twice returns
    the same object with two references held: release it twice. Releasing more often than it was handed out raises
    :class:`~vixen_assets.errors.NotHeldError` (it would otherwise take a reference a scene holds).
    """

    _held_by: tuple[Any, str] | None = None
    _handed_out: int = 0

    def _hand_out(self, cacher: TypedCacher[Any, Any], key: str) -> None:
        """Record that a caller holds one more reference (already acquired on ``cacher`` under ``key``)."""
        self._held_by = (cacher, key)
        self._handed_out += 1

    @property
    def held(self) -> int:
        """References callers hold through hand-outs (``load_texture`` calls not yet released)."""
        return self._handed_out

    def release(self) -> None:
        """Give back one reference a caller holds; the entry stays cached (evictable once unreferenced).

        :raises NotHeldError: no hand-out of this entry is left to release.
        """
        owner = self._held_by
        if owner is None or self._handed_out <= 0:
            raise NotHeldError(f"{type(self).__name__}: release() without a reference held (each load hands out one)")
        cacher, key = owner
        with cacher._lock:
            self._handed_out -= 1
            if key in cacher:  # gone only when the device closed (every entry destroyed)
                cacher.release(key)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class TypedCacher(Generic[S, E]):
    """Base of every cacher: content-hash dedup, refcounts, LRU eviction, stats, exception safety."""

    #: unique name, also the budget category of its allocations
    name: ClassVar[str] = ""
    #: USD prim type names this cacher handles (``("Mesh",)``)
    prim_types: ClassVar[tuple[str, ...]] = ()
    #: file suffixes this cacher handles (``(".vox",)``)
    suffixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, device: Device, *, plugin_manager: Any = None) -> None:
        """Attach the cacher to ``device`` (evicts on its budget warnings, clears at its close)."""
        if not self.name:
            raise PluginError(f"{type(self).__name__} must set a class attribute 'name'", plugin=type(self).__module__)
        self.device = device
        self.plugin_manager = plugin_manager
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.RLock()
        self._ticks = itertools.count(1)
        self.stats = CacherStats()
        device.budget.add_warning_callback(self._on_budget_warning)
        device.on_close(self.clear)

    @classmethod
    def for_device(cls, device: Device, plugin_manager: Any = None) -> Any:
        """The device's instance of this cacher (created on first use, cleared at the device's close)."""
        inst = device.cachers.get(cls.name)
        if inst is None or type(inst) is not cls:
            inst = device.cachers[cls.name] = cls(device, plugin_manager=plugin_manager)
        elif plugin_manager is not None:
            inst.plugin_manager = plugin_manager
        return inst

    # -- to implement ---------------------------------------------------------------------------------------------
    def read_prim(self, prim: Any, context: LoadContext) -> S:
        """Read one prim into a source (CPU only); raise ``FormatError`` naming the prim and field on bad data."""
        raise NotImplementedError(f"{type(self).__name__} does not read prims")

    def read_file(self, path: str, context: LoadContext) -> S:
        """Read one file into a source (CPU only); raise ``FormatError`` naming the file and field on bad data."""
        raise NotImplementedError(f"{type(self).__name__} does not read files")

    def key_for(self, source: S) -> str:
        """A content hash of everything that decides the entry (arrays and build parameters)."""
        raise NotImplementedError

    def check_sources(self, sources: Sequence[S]) -> list[Exception | None]:
        """Validate a batch of sources before building: one entry per source, the error that rejects it or ``None``.

        The default accepts everything (``read_prim``/``read_file`` already raised on bad data); cachers that defer
        checks to one vectorized pass over the batch override it.
        """
        return [None] * len(sources)

    def build(self, sources: Sequence[S], group: AllocationGroup) -> list[E]:
        """Create GPU entries for ``sources`` (allocate through ``group``, enqueue uploads on the device)."""
        raise NotImplementedError

    def entry_nbytes(self, entry: E) -> int:
        """Bytes of GPU memory ``entry`` holds."""
        raise NotImplementedError

    def destroy_entry(self, entry: E) -> None:
        """Release ``entry``'s GPU objects."""
        raise NotImplementedError

    # -- provided -------------------------------------------------------------------------------------------------
    def check_fits(self, nbytes: int, what: str) -> None:
        """Refuse an asset whose GPU bytes (from its header or counts) exceed the whole budget limit, before any
        inflating, decoding or preparing: it could never load, whatever is evicted. Thread-safe (reads only), for
        preparation on worker threads; :meth:`preflight` also charges the bytes.

        :param nbytes: the bytes the asset will need on the GPU.
        :param what: the file or prim, for the error message.
        :raises BudgetExceededError: ``nbytes`` is over the limit (naming ``what`` and the cacher).
        """
        budget = self.device.budget
        if nbytes > budget.limit:
            raise BudgetExceededError(int(nbytes), budget.used, budget.limit, who=self.name, heap=budget.primary_heap,
                                      what=what)

    @contextlib.contextmanager
    def preflight(self, nbytes: int, what: str) -> Iterator[None]:
        """Charge ``nbytes`` (the GPU bytes an asset's header or counts imply) to the budget *before* inflating,
        decoding or preparing it, and give the charge back when the block ends (the GPU objects then charge their
        exact sizes; the charge is in the budget category :data:`PREFLIGHT_CATEGORY`). The charge can cross the
        warning threshold and so evict unreferenced entries first; a charge that does not fit evicts unreferenced
        entries of every cacher on the device before it is refused.

        :param nbytes: the bytes the asset will need on the GPU.
        :param what: the file or prim, for the error message.
        :raises BudgetExceededError: the asset cannot fit (naming ``what`` and the cacher).
        """
        budget = self.device.budget
        nbytes = int(nbytes)
        short = nbytes - budget.available()
        if short > 0:
            # one lump can jump past the warning threshold and the limit at once: make room first, the way crossing
            # the threshold would (unreferenced entries of every cacher on the device, least recently used first)
            for cacher in list(self.device.cachers.values()):
                before = budget.used
                cacher.evict(short)
                short -= before - budget.used
                if short <= 0:
                    break
        try:
            heap = budget.reserve(nbytes, category=PREFLIGHT_CATEGORY)
        except BudgetExceededError as exc:
            raise BudgetExceededError(exc.requested, exc.used, exc.limit, who=self.name, heap=exc.heap,
                                      what=what) from None
        try:
            yield
        finally:
            budget.release(nbytes, heap=heap, category=PREFLIGHT_CATEGORY)

    def get_many(self, sources: Sequence[S], keys: Sequence[str] | None = None) -> list[E]:
        """Return one entry per source, acquiring a reference on each; builds the missing ones in one batch."""
        if keys is None:
            keys = [self.key_for(s) for s in sources]
        with self._lock:
            missing: dict[str, S] = {}
            for key, src in zip(keys, sources):
                if key not in self._entries and key not in missing:
                    missing[key] = src
            if missing:
                # pin the cached entries this call returns: the build's allocations can cross the budget's warning
                # threshold, and the eviction that triggers (same thread, re-entrant lock) must not take them
                pinned = [self._entries[k] for k in dict.fromkeys(keys) if k in self._entries]
                for entry in pinned:
                    entry.refs += 1
                try:
                    self._build_missing(missing)
                finally:
                    for entry in pinned:
                        entry.refs -= 1
            fresh = set(missing)  # the first reference to a new entry is its miss, counted by _build_missing
            out = []
            for key in keys:
                entry = self._entries[key]
                if key in fresh:
                    fresh.discard(key)
                else:
                    self.stats.hits += 1
                entry.refs += 1
                entry.tick = next(self._ticks)
                self._entries.move_to_end(key)
                out.append(entry.value)
            return out

    def hand_out(self, source: S, key: str | None = None) -> E:
        """Return the entry for ``source`` holding one reference for the caller (a :class:`HeldEntry`: the caller
        gives it back with ``entry.release()`` or a ``with`` block; the cache never evicts it before)."""
        key = self.key_for(source) if key is None else key
        with self._lock:
            value = self.get_many([source], [key])[0]
            if not isinstance(value, HeldEntry):
                self.release(key)
                raise ConfigError(f"cacher {self.name!r}: its entries ({type(value).__name__}) are not HeldEntry "
                                  "objects and cannot be handed out")
            value._hand_out(self, key)
        return value

    def hand_out_many(self, sources: Sequence[S], keys: Sequence[str]) -> list[E]:
        """:meth:`hand_out` for several sources at once: one lock, one build of the missing ones (one allocation
        group), one reference handed out per source. On failure nothing is handed out or built.

        :param sources: the sources.
        :param keys: their keys (``key_for``), one per source.
        """
        with self._lock:
            values = self.get_many(sources, keys)
            if any(not isinstance(v, HeldEntry) for v in values):
                for key in keys:
                    self.release(key)
                raise ConfigError(f"cacher {self.name!r}: its entries are not HeldEntry objects and cannot be "
                                  "handed out")
            for value, key in zip(values, keys):
                value._hand_out(self, key)
        return values

    def get(self, source: S) -> E:
        """Return the entry for one source (acquiring a reference)."""
        return self.get_many([source])[0]

    def acquire_keys(self, keys: Sequence[str]) -> list[E] | None:
        """Acquire entries by key when all are still cached (a warm reload); ``None`` if any is gone."""
        with self._lock:
            if any(k not in self._entries for k in keys):
                return None
            out = []
            for key in keys:
                entry = self._entries[key]
                entry.refs += 1
                entry.tick = next(self._ticks)
                self._entries.move_to_end(key)
                self.stats.hits += 1
                out.append(entry.value)
            return out

    def _build_missing(self, missing: dict[str, S]) -> None:
        keys = list(missing)
        for attempt in (0, 1):
            try:
                with self.device.allocation_group() as group:
                    values = self.build([missing[k] for k in keys], group)
                    if len(values) != len(keys):  # inside the group: what the build allocated is rolled back
                        raise PluginError(f"cacher {self.name!r}: build returned {len(values)} entries for "
                                          f"{len(keys)} sources", plugin=type(self).__module__)
                break
            except BudgetExceededError:
                # refused (e.g. a new memory block would not fit while cached entries hold partly empty ones):
                # the build rolled back; evict every unreferenced entry on the device and try once more
                if attempt or not self._make_room():
                    self.stats.failed_builds += 1
                    raise
            except BaseException:
                self.stats.failed_builds += 1
                raise
        for key, value in zip(keys, values):
            nbytes = int(self.entry_nbytes(value))
            self._entries[key] = _Entry(key, value, nbytes, next(self._ticks))
            self.stats.misses += 1
            self.stats.entries += 1
            self.stats.bytes += nbytes
            if self.plugin_manager is not None:
                notify_asset_cached(self.plugin_manager, self.name, key, nbytes)

    def _make_room(self) -> bool:
        """Evict the unreferenced entries of every cacher on the device, wait until their memory is free and free
        the empty memory blocks; True when anything was evicted or freed."""
        evicted = sum(cacher.evict() for cacher in list(self.device.cachers.values()))
        ctx = self.device.context
        self.device.uploader.drain()  # the evicted entries' last uploads, then their deferred destruction
        ctx.lifetime.drain()
        trimmed = ctx.suballocator.trim()  # empty blocks kept for reuse may be what stands in the way
        return evicted > 0 or trimmed > 0

    def discard(self, keys: Sequence[str]) -> int:
        """Destroy the entries ``keys`` that nobody references (a failed batch load takes back what it built);
        referenced or absent keys are left alone. Returns how many were destroyed."""
        count = 0
        with self._lock:
            for key in dict.fromkeys(keys):
                entry = self._entries.get(key)
                if entry is None or entry.refs:
                    continue
                del self._entries[key]
                self.destroy_entry(entry.value)
                count += 1
                self.stats.entries -= 1
                self.stats.bytes -= entry.nbytes
        return count

    def release(self, key: str) -> None:
        """Drop one reference to the entry ``key`` (it stays cached, evictable, once unreferenced)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.refs <= 0:
                raise NotHeldError(f"cacher {self.name!r}: no reference held on {key!r}")
            entry.refs -= 1

    def refcount(self, key: str) -> int:
        """References held on ``key`` (0 for an unreferenced cached entry; -1 when not cached)."""
        entry = self._entries.get(key)
        return -1 if entry is None else entry.refs

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def evict(self, nbytes: int | None = None) -> int:
        """Destroy unreferenced entries, least recently used first, until ``nbytes`` are freed (all when None)."""
        freed = 0
        count = 0
        with self._lock:
            for key in list(self._entries):
                if nbytes is not None and freed >= nbytes:
                    break
                entry = self._entries[key]
                if entry.refs:
                    continue
                del self._entries[key]
                self.destroy_entry(entry.value)
                freed += entry.nbytes
                count += 1
                self.stats.evictions += 1
                self.stats.evicted_bytes += entry.nbytes
                self.stats.entries -= 1
                self.stats.bytes -= entry.nbytes
        if count:
            log.info("cacher %r evicted %d entries (%d bytes)", self.name, count, freed)
        return count

    def _on_budget_warning(self, event: Any) -> None:
        """Budget crossed its warning threshold: evict LRU unreferenced entries until below it (if we can now)."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            # at least one byte: usage exactly on the threshold evicts one entry, not the whole cache
            self.evict(max(1, event.used - event.threshold))
        finally:
            self._lock.release()

    def clear(self) -> None:
        """Destroy every entry, referenced or not (device close)."""
        with self._lock:
            for entry in self._entries.values():
                self.destroy_entry(entry.value)
            self._entries.clear()
            self.stats.entries = 0
            self.stats.bytes = 0

    def stats_dict(self) -> dict[str, Any]:
        """Counters as a dict."""
        return asdict(self.stats)
