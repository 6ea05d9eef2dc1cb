"""``vixen_assets.validate(paths, ...)``: expand paths, pick rules, run the pool (or Dask), return the report."""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import ConfigError
from .context import CheckOptions
from .engine import AssetTask, registry_for, rules_hash
from .model import AssetResult
from .report import ValidationReport, load_report

ProgressFn = Callable[[str, int, int], None]


def discover(paths: Iterable[str | os.PathLike[str]], suffixes: Iterable[str]) -> list[str]:
    """Expand ``paths`` into files: a file is kept as given, a folder is searched recursively for files with one
    of ``suffixes``, anything else is a glob (``**`` allowed). Sorted, without duplicates.

    :raises ConfigError: for a path that matches nothing.
    """
    wanted = tuple(s.lower() for s in suffixes)
    out: dict[str, None] = {}
    for p in paths:
        p = os.fspath(p)
        if os.path.isfile(p):
            out[os.path.abspath(p)] = None
        elif os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if f.lower().endswith(wanted):
                        out[os.path.abspath(os.path.join(root, f))] = None
        else:
            matches = sorted(glob.glob(p, recursive=True))
            files = [m for m in matches if os.path.isfile(m)]
            if not files:
                raise ConfigError(f"{p!r} is not a file, a folder or a glob that matches files", option="paths")
            for m in files:
                out[os.path.abspath(m)] = None
    return sorted(out)


def validate(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    rules: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    workers: int | None = None,
    scheduler: str | None = None,
    gpu: bool = False,
    timeout: float | None = None,
    progress: ProgressFn | None = None,
    budget_mb: float | None = None,
    max_issues: int = 0,
    confine: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | ValidationReport | None = None,
    fix_dir: str | os.PathLike[str] | None = None,
    plugins: Sequence[str] = (),
    on_result: Callable[[AssetResult], None] | None = None,
) -> ValidationReport:
    """Validate asset files (USD, KTX2, .vox, or any suffix a rule plugin registers), each in a worker process.

    :param paths: files, folders (searched recursively by registered suffix) or globs.
    :param rules: rule ids or patterns to run (``"usd.*"``, ``"geom."``); ``None`` runs every rule.
    :param skip: rule ids or patterns not to run.
    :param workers: worker processes (default: one per core); with a scheduler, workers of a local cluster.
    :param scheduler: a Dask scheduler address, or ``"local"`` for a new ``LocalCluster``; ``None`` uses the
        local process pool.
    :param gpu: also load each asset on a device and check the round trip (``gpu.round-trip``).
    :param timeout: seconds per asset; a slower one is reported ``timeout`` (its worker is killed).
    :param progress: called as ``progress("validate", done, total)`` after each asset (plugins' ``vixen_progress``
        hook is called the same way).
    :param budget_mb: the budget ``budget.exceeds`` checks the estimate against.
    :param max_issues: at most this many issues per asset (0: no cap); the asset is then ``truncated``.
    :param confine: a root no reference may leave (``security.outside-root``).
    :param resume: a JSON report (path or object): assets whose size, mtime and rule set are unchanged keep their
        results from it and are not checked again (``info["resumed"]`` is true).
    :param fix_dir: apply fixers and write fixed copies here (never in place).
    :param plugins: extra plugin modules (importable names) that register rules in every worker.
    :param on_result: called with each :class:`AssetResult` as it arrives.
    :returns: the :class:`ValidationReport` (assets in path order).
    :raises ConfigError: for a bad option or a path that matches nothing.
    """
    t0 = time.perf_counter()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if workers is not None and workers < 1:
        raise ConfigError(f"{workers}: need at least 1 worker", option="workers")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"{timeout}: must be positive", option="timeout")
    if max_issues < 0:
        raise ConfigError(f"{max_issues}: must be >= 0", option="max_issues")
    if budget_mb is not None and budget_mb <= 0:
        raise ConfigError(f"{budget_mb}: must be positive", option="budget_mb")
    if fix_dir is not None:
        fix_abs = os.path.abspath(fix_dir)
    registry = registry_for(tuple(plugins))
    selected = registry.select(rules, skip)
    suffixes = {s for r in selected for s in (r.suffixes or (".usd", ".usda", ".usdc", ".usdz"))}
    files = discover(paths, suffixes)
    if fix_dir is not None and any(os.path.dirname(f) == fix_abs for f in files):
        raise ConfigError("--fix-dir must not be the folder of an input (fixes are never written in place)",
                          option="fix_dir")
    options = CheckOptions(
        budget_bytes=int(budget_mb * (1 << 20)) if budget_mb is not None else None, gpu=gpu,
        confine=os.path.abspath(confine) if confine is not None else None, max_issues=max_issues,
        fix_dir=os.path.abspath(fix_dir) if fix_dir is not None else None)
    rule_ids = tuple(r.id for r in selected)
    tasks = [AssetTask(f, rule_ids, options, tuple(plugins)) for f in files]
    results: dict[str, AssetResult] = {}
    total = len(tasks)

    from ..plugins import default_plugin_manager, notify_progress

    pm = default_plugin_manager()

    def done(res: AssetResult) -> None:
        results[res.uri] = res
        if on_result is not None:
            on_result(res)
        if progress is not None:
            progress("validate", len(results), total)
        notify_progress(pm, "validate", len(results), total)

    if resume is not None:
        previous = resume if isinstance(resume, ValidationReport) else load_report(resume)
        old = {a.uri: a for a in previous.assets}
        want = rules_hash(rule_ids, options)
        remaining = []
        for t in tasks:
            a = old.get(t.path)
            st = os.stat(t.path)
            if (a is not None and a.status == "ok" and a.rules_hash == want and a.size == st.st_size
                    and a.mtime_ns == st.st_mtime_ns):
                a.info["resumed"] = True
                done(a)
            else:
                remaining.append(t)
        tasks = remaining
    n_workers = workers or os.cpu_count() or 1
    if tasks:
        if scheduler is None:
            from .pool import run_local

            run_local(tasks, done, workers=n_workers, timeout=timeout)
        else:
            from .pool import run_dask

            run_dask(tasks, done, address=scheduler, workers=workers, timeout=timeout)
    assets = [results[f] for f in files if f in results]
    meta: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 6), "workers": n_workers,
                            "scheduler": scheduler or "local-pool", "checked": len(tasks)}
    return ValidationReport(assets, {r.id: (r.severity, r.doc) for r in selected}, meta)
