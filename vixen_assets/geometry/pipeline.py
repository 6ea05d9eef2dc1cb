"""``PreparePipeline``: prepare meshes on a worker thread while the loader is still reading the next ones.

The loader reads prims in batches on its own thread (pxr). Each batch of sources read is *fed* to the pipeline;
on a worker thread the pipeline predicts, source by source, what the later build will be handed (a cacher builds
its missing sources, each key once, in read order, without the invalid ones): it validates each source, hashes it,
drops keys already cached or already seen, and cuts the remaining sources into chunks with exactly the rule
:func:`~vixen_assets.geometry.prepare.prepare_meshes` uses. Every chunk that is complete is prepared at once.

The build then asks for the prepared meshes of the sources it was given (:meth:`PreparePipeline.take`): only when
they are *exactly* the predicted sources, in order, does it get them (the last chunk prepared then); otherwise (an
entry evicted meanwhile, a cacher that builds differently) it gets None and prepares as before. A mesh's bytes
depend on its chunk's composition, so this exact match is what keeps every mesh byte-identical to
``prepare_meshes`` of the same sources.

Used only where there are cores to spare (:func:`~vixen_assets.geometry.prepare.prepare_threads` > 1): on two
cores the worker only competes with the reading thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from vixen_assets.errors import FormatError
from vixen_assets.geometry import prepare as _prepare
from vixen_assets.geometry.mesh_source import MeshSource, validate_sources
from vixen_assets.geometry.packing import FIXED_COMPONENTS, PreparedMesh, build_layout

__all__ = ["PreparePipeline"]

_LOG = logging.getLogger(__name__)


class PreparePipeline:
    """Prepares fed sources on one worker thread, in the chunks a later ``prepare_meshes`` call would use."""

    def __init__(self, attributes: Sequence[str], is_cached: Callable[[str], bool]) -> None:
        """:param attributes: the vertex attributes (each of a fixed component count: position, normal, st, ...)
        :param is_cached: whether an entry with this content hash already exists (so the build will not get it)
        """
        attrs = _prepare._normalize_attributes(attributes)
        if any(a != "position" and a != "normal" and a not in FIXED_COMPONENTS for a in attrs):
            # the component count of another primvar is the largest over the whole batch: unknown while reading
            raise ValueError("a prepare pipeline needs attributes of fixed component counts")
        comps = {a: 3 if a in ("position", "normal") else FIXED_COMPONENTS[a] for a in attrs}
        self._attrs = attrs
        self._layout = build_layout(comps)
        self._is_cached = is_cached
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vixen-prepare-ahead")
        self._jobs: list[Future] = []
        # worker-thread state (only the worker touches it, jobs run one after the other)
        self._seen: set[str] = set()
        self._order: list[MeshSource] = []      # predicted build sources, in order
        self._chunk: list[MeshSource] = []      # the open chunk
        self._corners = 0
        self._done: list[list[PreparedMesh]] = []  # prepared chunks, in order
        self._failed = False
        self._closed = False

    def feed(self, sources: Sequence[MeshSource]) -> None:
        """Queue ``sources`` (the next ones read, in read order) for preparation; returns at once."""
        if not self._failed and not self._closed:
            self._jobs.append(self._pool.submit(self._feed, list(sources)))

    def _feed(self, sources: list[MeshSource]) -> None:
        if self._failed:
            return
        try:
            for src in sources:
                try:
                    validate_sources([src], attributes=self._attrs)
                except FormatError:
                    continue  # the build will not see it (check_sources drops it)
                key = src.content_hash(self._attrs)
                if key in self._seen or self._is_cached(key):
                    continue
                self._seen.add(key)
                self._order.append(src)
                n = len(src.face_vertex_indices)
                if self._corners and self._corners + n > _prepare.CHUNK_CORNERS:
                    self._close_chunk()
                self._chunk.append(src)
                self._corners += n
        except Exception:  # noqa: BLE001 - the build prepares everything itself (and reports any error)
            _LOG.debug("prepare pipeline gave up", exc_info=True)
            self._failed = True

    def _close_chunk(self) -> None:
        chunk, self._chunk, self._corners = self._chunk, [], 0
        self._done.append(_prepare._prepare_deduplicated(chunk, self._attrs, self._layout, False))

    def _finish(self) -> None:
        if self._failed or not self._chunk:
            return
        try:
            self._close_chunk()
        except Exception:  # noqa: BLE001 - as in _feed
            _LOG.debug("prepare pipeline gave up", exc_info=True)
            self._failed = True

    def take(self, sources: Sequence[MeshSource], attributes: Sequence[str]) -> list[PreparedMesh] | None:
        """The prepared meshes of ``sources`` when they are exactly the predicted ones (same objects, same order,
        same attributes), else None; waits for the worker. The pipeline is closed afterwards."""
        if self._closed:
            return None
        try:
            self._pool.submit(self._finish).result()
            for job in self._jobs:
                job.result()
        finally:
            self.close()
        if self._failed or _prepare._normalize_attributes(attributes) != self._attrs:
            return None
        if len(sources) != len(self._order) or any(a is not b for a, b in zip(sources, self._order)):
            return None
        out = [pm for chunk in self._done for pm in chunk]
        if len(out) != len(sources):
            return None
        for mesh, src in zip(out, sources):
            mesh.content_hash = src.content_hash(self._attrs)
        return out

    def close(self) -> None:
        """Stop the worker (a running chunk finishes; queued feeds are dropped); safe twice."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
