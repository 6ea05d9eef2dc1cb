"""``vixen-assets validate PATHS... [options]``: validate asset files in worker processes (or on a Dask cluster)
with a progress bar; write a text, JSON, JUnit, SARIF or HTML report. Exit code 0 clean, 1 errors, 2 usage."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import ConfigError
from ..validate import AssetResult, ValidationReport, validate
from .output import console

FORMATS = ("text", "json", "junit", "sarif", "html")


def register(sub: Any) -> None:
    """Add the ``validate`` subcommand."""
    p = sub.add_parser("validate", help="validate USD, KTX2 and .vox assets (rules from plugins)",
                       description="Validate asset files; exit 0 when clean, 1 when errors were found, 2 on misuse.")
    p.add_argument("paths", nargs="*", help="files, folders (recursive, by registered suffix) or globs")
    p.add_argument("--rule", action="append", default=None, metavar="ID", help="run only this rule (repeatable; "
                   "'usd.*' or 'geom.' select a family)")
    p.add_argument("--skip", action="append", default=[], metavar="ID", help="do not run this rule (repeatable)")
    p.add_argument("--format", choices=FORMATS, default="text", help="report format (default: text)")
    p.add_argument("-o", "--output", default=None, metavar="OUT", help="write the report here (default: stdout)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="run on a Dask cluster at ADDRESS, or "
                   "'local' for a LocalCluster")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="seconds per asset")
    p.add_argument("--max-issues", type=int, default=0, metavar="N", help="at most N issues per asset")
    p.add_argument("--resume", default=None, metavar="REPORT", help="skip assets unchanged since this JSON report")
    p.add_argument("--confine", default=None, metavar="ROOT", help="report references outside ROOT, never open them")
    p.add_argument("--gpu", action="store_true", help="load each asset on the GPU and check the round trip")
    p.add_argument("--budget-mb", type=float, default=None, metavar="N", help="check estimates against N MiB")
    p.add_argument("--fix", action="store_true", help="apply fixers; write fixed copies to --fix-dir")
    p.add_argument("--fix-dir", default=None, metavar="DIR", help="where --fix writes (never in place)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="also load this plugin module "
                   "in every worker (e.g. vixen_assets.validate.rules_omniverse)")
    p.add_argument("--list-rules", action="store_true", help="list the registered rules and exit")
    p.set_defaults(func=run)


def _text(report: ValidationReport) -> str:
    lines = []
    for a in report.assets:
        if a.status != "ok":
            lines.append(f"{a.uri}: {a.status.upper()} {a.detail}")
        for i in a.issues:
            where = f" {i.pointer}" if i.pointer else ""
            lines.append(f"{a.uri}:{where} {i.severity} [{i.code}] {i.message}")
        if a.truncated:
            lines.append(f"{a.uri}: (more issues; truncated)")
    c = report.counts
    lines.append(f"{c['assets']} assets: {c['error']} errors, {c['warning']} warnings, {c['info']} infos, "
                 f"{c['crashed']} crashed, {c['timeout']} timed out")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Validate and report; returns the exit code."""
    if args.list_rules:
        from ..validate.engine import registry_for

        for r in registry_for(tuple(args.plugin)).rules.values():
            console.print(f"{r.id:60s} {r.severity:8s} {r.doc}", soft_wrap=True)
        return 0
    if not args.paths:
        print("vixen-assets validate: error: give at least one path", file=sys.stderr)
        return 2
    if args.fix and not args.fix_dir:
        print("vixen-assets validate: error: --fix needs --fix-dir DIR (fixes are never written in place)",
              file=sys.stderr)
        return 2
    if args.fix_dir and not args.fix:
        print("vixen-assets validate: error: --fix-dir needs --fix", file=sys.stderr)
        return 2
    counts = {"error": 0, "warning": 0, "info": 0}
    t0 = time.perf_counter()
    quiet = args.output is None and args.format != "text"
    progress = Progress(TextColumn("validate"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]} assets/s"),
                        TextColumn("[red]{task.fields[error]} errors[/] [yellow]{task.fields[warning]} warnings[/] "
                                   "{task.fields[info]} infos"),
                        TimeElapsedColumn(), console=console, transient=True, disable=quiet)
    task = progress.add_task("validate", total=None, rate="-", **counts)

    def on_result(res: AssetResult) -> None:
        for k, v in res.counts().items():
            counts[k] = counts.get(k, 0) + v

    def on_progress(phase: str, done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - t0, 1e-9)
        progress.update(task, completed=done, total=total or None, rate=f"{rate:.1f}", **counts)

    try:
        with progress:
            report = validate(args.paths, rules=args.rule, skip=args.skip, workers=args.workers,
                              scheduler=args.scheduler, gpu=args.gpu, timeout=args.timeout, progress=on_progress,
                              budget_mb=args.budget_mb, max_issues=args.max_issues, confine=args.confine,
                              resume=args.resume, fix_dir=args.fix_dir if args.fix else None, on_result=on_result,
                              plugins=tuple(args.plugin))
    except (ConfigError, ImportError) as exc:
        print(f"vixen-assets validate: error: {exc}", file=sys.stderr)
        return 2
    text = _text(report) if args.format == "text" else {
        "json": report.to_json, "junit": report.to_junit, "sarif": lambda: report.to_sarif(base=os.getcwd()),
        "html": report.to_html,
    }[args.format]()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        if args.format != "text":
            sys.stdout.write(_text(report).splitlines()[-1] + "\n")
    else:
        sys.stdout.write(text)
    return 0 if report.ok else 1
