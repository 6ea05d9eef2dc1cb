"""What a rule sees: :class:`AssetContext` (one asset, its parsed forms opened once and shared by every rule) and
:class:`CheckOptions` (the job's settings)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .model import Issue

if TYPE_CHECKING:
    from ..device import Device


def inside(path: str, root: str) -> bool:
    """Whether ``path`` resolves (symlinks followed) to ``root`` or below."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class CheckOptions:
    """Settings of a validation job that rules read: ``budget_bytes`` (``--budget-mb``), ``gpu`` (round trips on a
    device), ``confine`` (a root no reference may leave), ``max_issues`` per asset (0: no cap), ``fix_dir``."""

    budget_bytes: int | None = None
    gpu: bool = False
    confine: str | None = None
    max_issues: int = 0
    fix_dir: str | None = None


class AssetContext:
    """One asset being checked: its ``path``, ``suffix``, the job's ``options``, the selected rule ids, and lazily
    opened views (:meth:`stage`, :meth:`ktx2`, :meth:`vox`) that every rule shares. ``cache`` holds results that
    several rules derive from one computation (all geometry findings of a mesh, all UsdValidation errors)."""

    def __init__(self, path: str, options: CheckOptions, selected: frozenset[str],
                 device_provider: Any = None) -> None:
        self.path = path
        self.suffix = os.path.splitext(path)[1].lower()
        self.options = options
        self.selected = selected
        self.cache: dict[str, Any] = {}
        self.outside_root: list[tuple[str, str, str]] = []
        self.stage_error: str | None = None
        self.fixed: list[str] = []
        self._stage: Any = None
        self._stage_opened = False
        self._device_provider = device_provider

    def issue(self, code: str, severity: str, pointer: str, message: str) -> Issue:
        """An :class:`Issue` in this asset's file."""
        return Issue(code, severity, self.path, pointer, message)

    # -- shared views -------------------------------------------------------------------------------------------

    def stage(self) -> Any:
        """The ``Usd.Stage`` (opened once; ``None`` when it cannot be opened: :attr:`stage_error` says why). With
        ``options.confine``, layers that resolve outside the root are recorded in :attr:`outside_root` and muted
        before the stage opens, so they are never read."""
        if not self._stage_opened:
            self._stage_opened = True
            from .usd_open import open_confined

            self._stage, self.stage_error, self.outside_root = open_confined(self.path, self.options.confine)
        return self._stage

    def ktx2(self) -> tuple[Any, Exception | None]:
        """``(Ktx2File, None)`` or ``(None, error)`` from :func:`~vixen_assets.formats.ktx2.read_ktx2`."""
        if "ktx2" not in self.cache:
            from ..formats.ktx2 import read_ktx2

            try:
                self.cache["ktx2"] = (read_ktx2(self.path), None)
            except Exception as exc:  # FormatError, UnsupportedFormatError, OSError: reported by the rules
                self.cache["ktx2"] = (None, exc)
        return self.cache["ktx2"]

    def vox(self) -> tuple[Any, Exception | None]:
        """``(VoxFile, None)`` or ``(None, error)`` from :func:`~vixen_assets.formats.vox.read_vox`."""
        if "vox" not in self.cache:
            from ..formats.vox import read_vox

            try:
                self.cache["vox"] = (read_vox(self.path), None)
            except Exception as exc:
                self.cache["vox"] = (None, exc)
        return self.cache["vox"]

    def data(self) -> bytes:
        """The file's bytes (read once)."""
        if "bytes" not in self.cache:
            with open(self.path, "rb") as fh:
                self.cache["bytes"] = fh.read()
        return self.cache["bytes"]

    def device(self) -> Device:
        """The worker's device (``--gpu`` only; opened once per worker process and reused)."""
        if self._device_provider is None:
            from ..errors import ConfigError

            raise ConfigError("this check needs a device: run with gpu=True / --gpu", option="gpu")
        return self._device_provider()


def register_parsed_rules(register: Any, rules: dict[str, tuple[str, str]],
                          parse: Callable[[AssetContext], list[Issue]], suffixes: tuple[str, ...]) -> None:
    """Register one rule per code of ``rules`` (``{code: (severity, doc)}``) over one parse of the file.

    Format checkers (KTX2, .vox) find every problem in one pass; each rule then yields the issues of its own code, so
    ``--rule``/``--skip`` select codes while the file is parsed once per asset (``parse`` caches on ``ctx.cache``).

    :param register: the callback of ``vixen_register_validators``.
    :param rules: severity and one-line doc of every code ``parse`` may report.
    :param parse: every issue of the asset, computed once per :class:`AssetContext`.
    :param suffixes: the file suffixes the rules apply to.
    """
    for code, (severity, doc) in rules.items():
        register(code, severity=severity, doc=doc, check=_issues_of(code, parse), suffixes=suffixes)


def _issues_of(code: str, parse: Callable[[AssetContext], list[Issue]]) -> Callable[[AssetContext], Iterator[Issue]]:
    """A rule's check: the issues of ``code`` among ``parse(ctx)``."""
    def check(ctx: AssetContext) -> Iterator[Issue]:
        return (i for i in parse(ctx) if i.code == code)

    check.__name__ = "check_" + code.replace(".", "_").replace("-", "_")
    return check
