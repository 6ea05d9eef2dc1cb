"""Checks of public call arguments: every bad argument becomes a :class:`~vixen_assets.errors.ConfigError` naming
the argument, what was given and what is accepted (never a raw ``TypeError`` from deep inside)."""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ConfigError


def path_argument(value: object, option: str = "path") -> str:
    """``value`` as a path string (``str`` or ``os.PathLike``; bytes are decoded).

    :param value: the argument.
    :param option: its name, for the message.
    :raises ConfigError: anything else.
    """
    try:
        p = os.fspath(value)  # type: ignore[call-overload]
    except TypeError:
        raise ConfigError(f"must be a path (str or os.PathLike), got {type(value).__name__} {value!r}",
                          option=option) from None
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if not p:
        raise ConfigError("must be a non-empty path", option=option)
    return p


def int_argument(value: object, option: str, *, minimum: int | None = None) -> int:
    """``value`` as an ``int``: Python and numpy integers; never a ``bool`` or a ``float`` (not even 4.0).

    :param value: the argument.
    :param option: its name, for the message.
    :param minimum: the smallest value accepted.
    :raises ConfigError: not an integer, or below ``minimum``.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise ConfigError(f"must be an int, got {type(value).__name__} {value!r}", option=option)
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"must be an int, got {type(value).__name__} {value!r}", option=option) from None
    if minimum is not None and n < minimum:
        raise ConfigError(f"must be >= {minimum}, got {n}", option=option)
    return n


def callable_argument(value: object, option: str) -> Callable[..., Any] | None:
    """``value`` when it is callable or ``None``.

    :param value: the argument.
    :param option: its name, for the message.
    :raises ConfigError: anything else.
    """
    if value is not None and not callable(value):
        raise ConfigError(f"must be callable or None, got {type(value).__name__} {value!r}", option=option)
    return value  # type: ignore[return-value]


def names_argument(value: object, option: str) -> tuple[str, ...]:
    """``value`` as a tuple of names: a sequence of ``str``, never a bare ``str`` (which would be its letters).

    :param value: the argument.
    :param option: its name, for the message.
    :raises ConfigError: a bare string, or anything but a sequence of strings.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, set, frozenset)) or \
            not all(isinstance(v, str) for v in value):
        raise ConfigError(f"must be a sequence of names such as ('default', 'render'), got {value!r}", option=option)
    return tuple(value)
