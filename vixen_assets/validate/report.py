"""The result of a validation job and its four renderings: JSON in glTF-Validator's shape (checked against
``report.schema.json`` shipped beside this module), JUnit XML, SARIF 2.1.0 and one self-contained HTML page.

JSON: ``{"validator": {...}, "summary": {...}, "rules": {...}, "assets": [...]}``; each asset is
``{"uri", "status", "size", "mtimeNs", "rulesHash", "seconds", "issues": {"numErrors", "numWarnings", "numInfos",
"numHints", "messages": [{"code", "severity", "pointer", "message"}], "truncated"}, "info"}``. As in
glTF-Validator, ``severity`` is a number: 0 error, 1 warning, 2 information, 3 hint.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from .model import SEVERITIES, AssetResult, Issue

SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
SEVERITY_NUMBER = {"error": 0, "warning": 1, "info": 2, "hint": 3}
NUMBER_SEVERITY = {v: k for k, v in SEVERITY_NUMBER.items()}
_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note", "hint": "note"}
SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"


def validator_version() -> str:
    """The installed vixen-assets version (from its metadata; ``0+unknown`` in a tree never installed)."""
    try:
        return importlib.metadata.version("vixen-assets")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass
class ValidationReport:
    """Every checked asset (:attr:`assets`), the rules that ran (``rules``: id -> ``(severity, doc)``) and facts
    about the job (``meta``: seconds, workers, scheduler)."""

    assets: list[AssetResult]
    rules: dict[str, tuple[str, str]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def issues(self) -> list[Issue]:
        """Every issue of every asset, in asset order."""
        return [i for a in self.assets for i in a.issues]

    @property
    def counts(self) -> dict[str, int]:
        """``assets``, ``error``/``warning``/``info`` issue counts, ``crashed``, ``timeout`` and ``failed`` assets."""
        out = {"assets": len(self.assets), **dict.fromkeys(SEVERITIES, 0), "crashed": 0, "timeout": 0, "failed": 0}
        for a in self.assets:
            for k, v in a.counts().items():
                out[k] = out.get(k, 0) + v
            if a.status in ("crashed", "timeout"):
                out[a.status] += 1
            out["failed"] += a.failed
        return out

    @property
    def ok(self) -> bool:
        """No errors, crashes or timeouts."""
        return self.counts["failed"] == 0

    # -- JSON ----------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON report as plain data."""
        c = self.counts
        return {
            "validator": {"name": "vixen-assets validate", "version": validator_version()},
            "summary": {"assets": c["assets"], "numErrors": c["error"], "numWarnings": c["warning"],
                        "numInfos": c["info"], "numHints": 0, "crashed": c["crashed"], "timeouts": c["timeout"],
                        "failedAssets": c["failed"], **{k: v for k, v in self.meta.items()
                                                        if isinstance(v, (int, float, str))}},
            "rules": {rid: {"severity": sev, "doc": doc} for rid, (sev, doc) in sorted(self.rules.items())},
            "assets": [_asset_dict(a) for a in self.assets],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON text (glTF-Validator's shape, see the module docstring)."""
        return json.dumps(self.to_dict(), indent=indent, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationReport:
        """Read a report written by :meth:`to_json` (``--resume``)."""
        assets = []
        for a in data.get("assets", []):
            issues = [Issue(m["code"], NUMBER_SEVERITY.get(m["severity"], "error"), m.get("file", a["uri"]),
                            m.get("pointer", ""), m["message"]) for m in a["issues"]["messages"]]
            assets.append(AssetResult(uri=a["uri"], status=a.get("status", "ok"), issues=issues,
                                      truncated=a["issues"].get("truncated", False), seconds=a.get("seconds", 0.0),
                                      size=a.get("size", 0), mtime_ns=a.get("mtimeNs", 0),
                                      rules_hash=a.get("rulesHash", ""), detail=a.get("detail", ""),
                                      fixed=list(a.get("fixed", [])), info=dict(a.get("info", {}))))
        rules = {k: (v["severity"], v["doc"]) for k, v in data.get("rules", {}).items()}
        return cls(assets, rules)

    # -- JUnit ---------------------------------------------------------------------------------------------------

    def to_junit(self) -> str:
        """JUnit XML: one ``testcase`` per asset; errors are ``failure``s, crashes and timeouts ``error``s,
        warnings and infos go to ``system-out``."""
        c = self.counts
        root = ET.Element("testsuites", name="vixen-assets validate")
        suite = ET.SubElement(root, "testsuite", name="vixen-assets validate", tests=str(c["assets"]),
                              failures=str(sum(1 for a in self.assets if a.status == "ok" and a.failed)),
                              errors=str(c["crashed"] + c["timeout"]), skipped="0",
                              time=f"{sum(a.seconds for a in self.assets):.3f}")
        for a in self.assets:
            case = ET.SubElement(suite, "testcase", classname="vixen_assets.validate", name=_xml_text(a.uri),
                                 time=f"{a.seconds:.3f}")
            if a.status in ("crashed", "timeout"):
                detail = _xml_text(a.detail)
                ET.SubElement(case, "error", type=a.status, message=detail or a.status).text = detail
            errors = [i for i in a.issues if i.severity == "error"]
            if errors:
                fail = ET.SubElement(case, "failure", type="validation",
                                     message=_xml_text(f"{len(errors)} error(s): {errors[0].code}"))
                fail.text = _xml_text("\n".join(f"{i.code} {i.pointer}: {i.message}" for i in errors))
            rest = [i for i in a.issues if i.severity != "error"]
            if rest:
                ET.SubElement(case, "system-out").text = _xml_text("\n".join(
                    f"{i.severity} {i.code} {i.pointer}: {i.message}" for i in rest))
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

    # -- SARIF ---------------------------------------------------------------------------------------------------

    def to_sarif(self, base: str | None = None) -> str:
        """SARIF 2.1.0: one run, the rules as ``tool.driver.rules``, each issue a ``result`` located in its file
        (relative to ``base`` when given and below it, else an absolute ``file:`` URI) with the pointer as a logical location; crashes and timeouts are
        ``toolExecutionNotifications``."""
        ids = sorted(self.rules) or sorted({i.code for i in self.issues})
        index = {rid: n for n, rid in enumerate(ids)}
        rules = [{"id": rid, "name": rid,
                  "shortDescription": {"text": self.rules.get(rid, ("error", rid))[1] or rid},
                  "defaultConfiguration": {"level": _SARIF_LEVEL[self.rules.get(rid, ("error", ""))[0]]}}
                 for rid in ids]
        results = []
        for i in self.issues:
            loc: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": _uri(i.file, base)}}}
            if i.pointer:
                loc["logicalLocations"] = [{"fullyQualifiedName": i.pointer}]
            res: dict[str, Any] = {"ruleId": i.code, "level": _SARIF_LEVEL.get(i.severity, "error"),
                                   "message": {"text": i.message}, "locations": [loc]}
            if i.code in index:
                res["ruleIndex"] = index[i.code]
            results.append(res)
        notes = [{"level": "error", "message": {"text": f"{a.uri}: {a.status}: {a.detail}"},
                  "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(a.uri, base)}}}]}
                 for a in self.assets if a.status in ("crashed", "timeout")]
        log = {"$schema": SARIF_SCHEMA_URI, "version": "2.1.0", "runs": [{
            "tool": {"driver": {"name": "vixen-assets validate", "version": validator_version(),
                                "informationUri": "https://github.com/vixen-assets/vixen-assets", "rules": rules}},
            "invocations": [{"executionSuccessful": not notes, "toolExecutionNotifications": notes}],
            "results": results,
        }]}
        return json.dumps(log, indent=2)

    # -- HTML ----------------------------------------------------------------------------------------------------

    def to_html(self) -> str:
        """One self-contained HTML page (no external resources): summary counts and a sortable, filterable table
        of every issue (severity, rule, asset, pointer, message), plus crashed and timed-out assets."""
        from .html import render

        return render(self.to_dict())

    def write(self, path: str | os.PathLike[str], fmt: str) -> None:
        """Write the report in ``fmt`` (``json``, ``junit``, ``sarif``, ``html``) to ``path``."""
        text = {"json": self.to_json, "junit": self.to_junit, "sarif": self.to_sarif, "html": self.to_html}[fmt]()
        Path(path).write_text(text, encoding="utf-8")


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (a key name read from a malformed file may have them)."""
    return _XML_INVALID.sub("\ufffd", text)


def _uri(path: str, base: str | None) -> str:
    if base is not None:
        try:
            rel = Path(os.path.relpath(path, base)).as_posix()
            if not rel.startswith("../"):
                return rel
        except ValueError:
            pass
    return Path(os.path.abspath(path)).as_uri() if path else ""


def _asset_dict(a: AssetResult) -> dict[str, Any]:
    c = a.counts()
    out: dict[str, Any] = {
        "uri": a.uri, "status": a.status, "size": a.size, "mtimeNs": a.mtime_ns, "rulesHash": a.rules_hash,
        "seconds": round(a.seconds, 6),
        "issues": {"numErrors": c["error"], "numWarnings": c["warning"], "numInfos": c["info"], "numHints": 0,
                   "messages": [{"code": i.code, "severity": SEVERITY_NUMBER[i.severity], "pointer": i.pointer,
                                 "message": i.message} for i in a.issues],
                   "truncated": a.truncated},
        "info": a.info,
    }
    if a.detail:
        out["detail"] = a.detail
    if a.fixed:
        out["fixed"] = list(a.fixed)
    return out


def load_report(path: str | os.PathLike[str]) -> ValidationReport:
    """Read a JSON report written by :meth:`ValidationReport.to_json`."""
    return ValidationReport.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def merge_counts(results: Iterable[AssetResult]) -> dict[str, int]:
    """Issues per severity over ``results`` (the CLI's progress line)."""
    out = dict.fromkeys(SEVERITIES, 0)
    for r in results:
        for k, v in r.counts().items():
            out[k] += v
    return out
