"""Test-only validation rules, loaded into the workers with ``plugins=("validate_test_rules",)``: one kills its
worker (SIGSEGV) on ``*.crash`` files, one sleeps on ``*.sleep`` files, one raises on ``*.raise`` files."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from vixen_assets import hookimpl


def _crash(ctx: Any) -> Any:
    os.kill(os.getpid(), signal.SIGSEGV)
    return ()


def _sleep(ctx: Any) -> Any:
    time.sleep(60)
    return ()


def _raise(ctx: Any) -> Any:
    raise RuntimeError("this rule is broken")


def _ok(ctx: Any) -> Any:
    yield ("test.ok", "info", ctx.path, "", "checked")


@hookimpl
def vixen_register_validators(register: Any) -> None:
    register("test.crash", severity="error", doc="kills its worker", check=_crash, suffixes=(".crash",))
    register("test.sleep", severity="error", doc="sleeps a minute", check=_sleep, suffixes=(".sleep",))
    register("test.raise", severity="error", doc="raises", check=_raise, suffixes=(".raise",))
    register("test.ok", severity="info", doc="reports one info", check=_ok, suffixes=(".crash", ".sleep", ".raise",
                                                                                        ".okay"))
