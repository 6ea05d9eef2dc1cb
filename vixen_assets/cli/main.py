"""Entry point of the ``vixen-assets`` command: builds the parser from the subcommand modules and runs one.

Every :class:`~vixen_assets.errors.VixenError` ends the command with ONE line on stderr
(``vixen-assets COMMAND: error: ...``) and exit code 2 for usage errors (a bad option, an unknown device, a missing
file) or 1 for failures (a malformed file, the budget, the driver). ``--debug`` shows the traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from ..errors import ConfigError, DeviceNotFoundError, FormatError, VixenError

#: Subcommand modules under ``vixen_assets.cli``; each defines ``register(subparsers)``.
SUBCOMMANDS = ("devices", "memory", "load", "plugins", "texture", "validate", "vt")

EXIT_FAILURE = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="vixen-assets", description="Put USD scenes and assets on a Vulkan GPU.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def exit_code(exc: VixenError) -> int:
    """2 for usage errors (bad options, unknown device, missing file), 1 for every other failure.

    :param exc: the error that ended the command.
    """
    if isinstance(exc, (ConfigError, DeviceNotFoundError)):
        return EXIT_USAGE
    if isinstance(exc, FormatError) and exc.reason == "file not found":
        return EXIT_USAGE
    return EXIT_FAILURE


def error_line(command: str, exc: BaseException) -> str:
    """The one line printed for ``exc``: its message with newlines folded.

    :param command: the subcommand that failed.
    :param exc: the error.
    """
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return f"vixen-assets {command}: error: {msg}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit code.

    :param argv: the arguments (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 with one usage line on bad arguments
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except VixenError as exc:
        if args.debug:
            traceback.print_exc(file=sys.stderr)
        print(error_line(args.command, exc), file=sys.stderr)
        return exit_code(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
