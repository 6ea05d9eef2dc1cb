"""``BudgetOptions``: how much of a device's memory a :class:`~vixen_assets.device.Device` may use.

A frozen dataclass validated at construction: a bad value raises :class:`~vixen_assets.errors.ConfigError` naming
the option, before any Vulkan call. ``open_device(budget=BudgetOptions(...))`` takes it; the old keywords of
``open_device`` (``budget_fraction``, ``warning_fraction``, ...) are mapped into it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError

OVERFLOW_MODES = ("error", "host")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{name} must be a number, got {value!r}", option=name)
    return float(value)


@dataclass(frozen=True)
class BudgetOptions:
    """The memory budget of one device.

    :param fraction: the share of each heap that may be used, in [0, 1] (0: every allocation fails, a test mode the
        earlier ``budget_fraction=0`` keeps).
    :param warning_fraction: the share *of the limit* at which warning callbacks fire (caches evict), in (0, 1].
    :param limit_bytes: a byte cap on each device-local heap (the limit is the smaller of it and ``fraction`` of the
        heap): a byte budget needs no second look at the device.
    :param staging_quota: bytes of the budget usable for staging at once (default: min(256 MiB, 10% of the limit)).
    :param overflow: ``"error"`` (over-budget reservations raise) or ``"host"`` (they go to host memory).
    :param staging_timeout_s: how long a staging request waits for memory before ``StagingTimeoutError``.
    """

    fraction: float = 0.9
    warning_fraction: float = 0.8
    limit_bytes: int | None = None
    staging_quota: int | None = None
    overflow: str = "error"
    staging_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        """Validate every option; raise :class:`ConfigError` naming the first bad one."""
        fraction = _number("fraction", self.fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"budget fraction must be in [0, 1], got {self.fraction!r}", option="fraction")
        warning = _number("warning_fraction", self.warning_fraction)
        if not 0.0 < warning <= 1.0:
            raise ConfigError(f"budget warning_fraction must be in (0, 1] (a share of the limit), got "
                              f"{self.warning_fraction!r}", option="warning_fraction")
        if self.limit_bytes is not None:
            limit = _number("limit_bytes", self.limit_bytes)
            if limit <= 0 or limit != int(limit):
                raise ConfigError(f"budget limit_bytes must be a positive whole number of bytes, got "
                                  f"{self.limit_bytes!r}", option="limit_bytes")
            object.__setattr__(self, "limit_bytes", int(limit))
        if self.staging_quota is not None:
            quota = _number("staging_quota", self.staging_quota)
            if quota < 0 or quota != int(quota):
                raise ConfigError(f"budget staging_quota must be a whole number of bytes >= 0, got "
                                  f"{self.staging_quota!r}", option="staging_quota")
            if self.limit_bytes is not None and quota > self.limit_bytes:
                raise ConfigError(f"budget staging_quota ({int(quota)} bytes) is over limit_bytes "
                                  f"({self.limit_bytes} bytes)", option="staging_quota")
            object.__setattr__(self, "staging_quota", int(quota))
        if self.overflow not in OVERFLOW_MODES:
            raise ConfigError(f"budget overflow must be one of {', '.join(map(repr, OVERFLOW_MODES))}, got "
                              f"{self.overflow!r}", option="overflow")
        timeout = _number("staging_timeout_s", self.staging_timeout_s)
        if timeout < 0:
            raise ConfigError(f"budget staging_timeout_s must be >= 0, got {self.staging_timeout_s!r}",
                              option="staging_timeout_s")
        object.__setattr__(self, "fraction", fraction)
        object.__setattr__(self, "warning_fraction", warning)
        object.__setattr__(self, "staging_timeout_s", timeout)

    @classmethod
    def from_mib(cls, mib: float, **kwargs: Any) -> BudgetOptions:
        """Options with a byte limit of ``mib`` MiB (the CLI's ``--budget-mb``).

        :param mib: the limit in MiB (> 0).
        :param kwargs: the other options.
        :raises ConfigError: ``mib`` is not a positive number.
        """
        value = _number("limit_bytes", mib)
        if value <= 0:
            raise ConfigError(f"budget must be a positive number of MiB, got {mib!r}", option="limit_bytes")
        return cls(limit_bytes=max(1, int(value * (1 << 20))), **kwargs)

    def with_changes(self, **changes: Any) -> BudgetOptions:
        """A copy with ``changes`` applied (validated again).

        :param changes: option name -> new value.
        """
        return replace(self, **changes)
