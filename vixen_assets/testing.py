"""Pytest plugin for vixen-assets and its plugin authors (registered through the ``pytest11`` entry point).

Fixtures:

- ``vixen_device``: a :class:`~vixen_assets.Device` on the real driver with ``VK_LAYER_KHRONOS_validation`` on. Any
  validation WARNING or ERROR raised while the test ran fails the test with the message text, and so does a
  resource still alive at the end of the test (the device's leak report). No Vulkan driver is an error, not a skip.
- ``vixen_assets_dir``: the third-party test assets (``$VIXEN_SHARED_ASSETS`` or ``<repo>/../shared/assets``); tests
  using it skip with a message where the folder is absent, except under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .errors import ValidationMessageError

if TYPE_CHECKING:
    from .device import Device


def validation_problems(device: Device, since: int = 0) -> list[str]:
    """Return the validation WARNING/ERROR messages the device's instance collected, from index ``since`` on."""
    return [str(m) for m in device.validation_problems()[since:]]


def assert_no_validation_problems(device: Device, since: int = 0) -> None:
    """Raise :class:`ValidationMessageError` listing every validation problem collected since ``since``."""
    problems = validation_problems(device, since)
    if problems:
        raise ValidationMessageError("Vulkan validation reported:\n" + "\n".join(problems))


def open_test_device(**kwargs: Any) -> Any:
    """Open a device with validation on (the way the ``vixen_device`` fixture does)."""
    from .device import open_device

    kwargs.setdefault("validation", True)
    return open_device(**kwargs)


def finish_test_device(device: Device) -> None:
    """Close ``device`` and fail the running test on validation problems or leaked resources."""
    leaks = device.close_report() if hasattr(device, "close_report") else []
    problems = validation_problems(device)
    if problems:
        pytest.fail("Vulkan validation reported:\n" + "\n".join(problems), pytrace=False)
    if leaks:
        pytest.fail("resources leaked at Device.close():\n" + "\n".join(leaks), pytrace=False)


@pytest.fixture
def vixen_device() -> Iterator[Any]:
    """A validated device on the real driver; fails the test on validation messages or leaks."""
    dev = open_test_device()
    try:
        yield dev
    finally:
        finish_test_device(dev)


def assets_dir() -> Path | None:
    """Return the shared third-party assets folder, or ``None`` when absent."""
    env = os.environ.get("VIXEN_SHARED_ASSETS")
    if env:
        p = Path(env)
    else:
        p = Path(__file__).resolve().parent.parent.parent / "shared" / "assets"
    return p if p.is_dir() else None


@pytest.fixture
def vixen_assets_dir() -> Path:
    """The third-party assets folder; skips (or fails under CI) when it is absent."""
    p = assets_dir()
    if p is None:
        msg = "third-party assets not found: set VIXEN_SHARED_ASSETS or place them at ../shared/assets"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return p
