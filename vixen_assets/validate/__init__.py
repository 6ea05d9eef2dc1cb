"""Batch asset validation: rules as plugins (``vixen_register_validators``), a crash-isolated local process pool
or a Dask cluster, and reports for people and CI (JSON, JUnit, SARIF, HTML). See :func:`validate`."""

from .api import discover, validate
from .context import AssetContext, CheckOptions
from .model import AssetResult, Issue, Rule, RuleRegistry
from .report import ValidationReport, load_report

__all__ = [
    "AssetContext", "AssetResult", "CheckOptions", "Issue", "Rule", "RuleRegistry", "ValidationReport", "discover",
    "load_report", "validate",
]
