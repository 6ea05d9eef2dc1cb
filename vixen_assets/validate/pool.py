"""Running :func:`~vixen_assets.validate.engine.check_asset` over many assets, isolated per asset.

:func:`run_local` keeps its own pool of worker processes (``spawn``: no state inherited from a parent that may have
USD or Vulkan threads). Each worker takes one task at a time over a pipe. When a worker dies (a segfault in a
native library, an out-of-memory kill) only the asset it held is reported ``crashed``, with the signal, and a fresh
worker replaces it; when an asset runs past ``timeout`` its worker is killed and the asset reported ``timeout``. The
standard ``ProcessPoolExecutor`` cannot do this: one dead worker breaks the pool and fails every pending task.

:func:`run_dask` submits the same function to a Dask distributed cluster (``address``, or ``"local"`` for a
``LocalCluster``); a task whose workers keep dying ends as ``KilledWorker`` and is reported ``crashed``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from .engine import AssetTask, check_asset, close_worker_device, rules_hash
from .model import AssetResult, Issue

ResultFn = Callable[[AssetResult], None]

#: what a worker sends when it begins an asset: its timeout counts from here, so a slow spawn (imports of pxr and
#: Vulkan on a loaded machine) is never charged to the asset
_STARTED = "started"
#: how long a worker may take to begin an asset after it was sent (process start and imports included)
_STARTUP_LIMIT_S = 120.0


def _worker_main(conn: Connection) -> None:
    """A worker's loop: receive a task, send its result; ``None`` ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            close_worker_device()
            return
        conn.send(_STARTED)  # the asset's clock starts now, not while this process was still importing
        try:
            result = check_asset(task)
        except Exception as exc:  # noqa: BLE001 - a bug outside the rules is this asset's error, not a dead worker
            result = _failed(task, "ok", "", 0.0)
            result.issues.append(Issue("validate.internal", "error", task.path, "",
                                       f"the validator failed: {type(exc).__name__}: {exc}"))
        conn.send(result)


class _Worker:
    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True, name="vixen-validate-worker")
        self.proc.start()
        child.close()
        self.task: AssetTask | None = None
        self.sent = 0.0
        self.started: float | None = None

    def deadline(self, timeout: float) -> float:
        """When the asset it holds times out: ``timeout`` after it began, or the start-up limit after it was sent."""
        if self.started is None:
            return self.sent + max(_STARTUP_LIMIT_S, timeout)
        return self.started + timeout

    def elapsed(self, now: float) -> float:
        """Seconds the asset it holds has run (0 before the worker began it)."""
        return 0.0 if self.started is None else now - self.started

    def drain(self, now: float) -> AssetResult | None:
        """Read what the worker sent: note when it began the asset; return the result once it came."""
        while self.conn.poll():
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return None
            if msg == _STARTED:
                self.started = now
            else:
                return msg  # type: ignore[no-any-return]
        return None

    def stop(self, kill: bool = False) -> None:
        if kill and self.proc.is_alive():
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _signal_name(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def _failed(task: AssetTask, status: str, detail: str, seconds: float) -> AssetResult:
    res = AssetResult(uri=task.path, status=status, detail=detail, seconds=seconds,
                      rules_hash=rules_hash(task.rule_ids, task.options))
    try:
        st = os.stat(task.path)
        res.size, res.mtime_ns = st.st_size, st.st_mtime_ns
    except OSError:
        pass
    return res


def run_local(tasks: Sequence[AssetTask], on_result: ResultFn, *, workers: int = 1,
              timeout: float | None = None) -> None:
    """Check ``tasks`` in ``workers`` processes; call ``on_result`` for each as it finishes (in the caller's thread).

    :param tasks: the assets.
    :param on_result: receives every :class:`AssetResult`, crashed and timed-out ones included.
    :param workers: number of worker processes (at least 1; never more than the tasks).
    :param timeout: seconds one asset may take (``None``: no limit).
    """
    ctx = mp.get_context("spawn")
    todo = deque(tasks)
    pool: list[_Worker] = []
    try:
        for _ in range(max(1, min(workers, len(todo)))):
            pool.append(_Worker(ctx))
        while todo or any(w.task is not None for w in pool):
            for i, w in enumerate(pool):
                if w.task is None and todo:
                    task = todo.popleft()
                    try:
                        w.conn.send(task)
                    except (BrokenPipeError, OSError):  # the idle worker died: replace it, retry the task
                        todo.appendleft(task)
                        w.stop(kill=True)
                        pool[i] = _Worker(ctx)
                        continue
                    w.task, w.sent, w.started = task, time.monotonic(), None
            busy = [w for w in pool if w.task is not None]
            if not busy:
                continue  # every worker was replaced: assign again
            wait_for = None
            if timeout is not None:
                wait_for = max(0.0, min(w.deadline(timeout) for w in busy) - time.monotonic())
            ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=wait_for)
            now = time.monotonic()
            for i, w in enumerate(pool):
                if w.task is None:
                    continue
                task = w.task
                if w.conn in ready or w.proc.sentinel in ready:
                    result = w.drain(now)
                    if result is not None:
                        w.task = None
                        on_result(result)
                        continue
                    if w.proc.is_alive():  # only the "started" note came: the asset runs on
                        continue
                    w.proc.join(1)
                    detail = f"worker died ({_signal_name(w.proc.exitcode)})"
                    on_result(_failed(task, "crashed", detail, w.elapsed(now)))
                    w.task = None
                    w.stop(kill=True)
                    pool[i] = _Worker(ctx)
                elif timeout is not None and now >= w.deadline(timeout):
                    detail = (f"no result after {timeout:g} s; worker killed" if w.started is not None else
                              f"the worker did not begin the asset within {w.deadline(timeout) - w.sent:g} s; killed")
                    on_result(_failed(task, "timeout", detail, w.elapsed(now)))
                    w.task = None
                    w.stop(kill=True)
                    pool[i] = _Worker(ctx)
    finally:
        for w in pool:
            w.stop(kill=w.task is not None)


def run_dask(tasks: Sequence[AssetTask], on_result: ResultFn, *, address: str, workers: int | None = None,
             timeout: float | None = None) -> None:
    """Check ``tasks`` on a Dask distributed cluster (``address``, or ``"local"`` for a new ``LocalCluster`` of
    ``workers`` single-threaded processes); results arrive through ``on_result`` as tasks finish.

    :param tasks: the assets.
    :param on_result: receives every result.
    :param address: the scheduler address (``tcp://127.0.0.1:8786``) or ``"local"``.
    :param workers: worker processes of a local cluster (default 2).
    :param timeout: seconds per asset, summed into a deadline for the whole job (Dask cannot stop one running
        task); assets without a result at the deadline are reported ``timeout`` and their futures cancelled.
    """
    try:
        from distributed import Client, LocalCluster, as_completed
        from distributed.scheduler import KilledWorker
    except ImportError as exc:  # pragma: no cover - depends on the extra
        from ..errors import ConfigError

        raise ConfigError("Dask is not installed: pip install 'vixen-assets[cluster]'", option="scheduler") from exc
    cluster = None
    if address == "local":
        cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                               dashboard_address=None, host="127.0.0.1")
        client = Client(cluster)
    else:
        client = Client(address, timeout=30)
    try:
        started = time.monotonic()
        futures = {client.submit(check_asset, t, pure=False): t for t in tasks}
        pending = set(futures)
        it = as_completed(futures, timeout=None)
        deadline = None if timeout is None else started + timeout * max(1, len(tasks))
        for fut in it:
            task = futures[fut]
            pending.discard(fut)
            try:
                on_result(fut.result())
            except KilledWorker as exc:
                on_result(_failed(task, "crashed", f"worker died ({type(exc).__name__})", 0.0))
            except Exception as exc:  # noqa: BLE001 - any task failure is this asset's, not the job's
                on_result(_failed(task, "crashed", f"{type(exc).__name__}: {exc}", 0.0))
            if deadline is not None and time.monotonic() > deadline:
                break
        for fut in pending:
            on_result(_failed(futures[fut], "timeout", "no result before the job's deadline", 0.0))
            fut.cancel()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
