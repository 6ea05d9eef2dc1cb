"""Entry point of the ``vixen-assets`` command: builds the parser from the subcommand modules and runs one."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import VixenError

#: Subcommand modules under ``vixen_assets.cli``; each defines ``register(subparsers)``.
SUBCOMMANDS = ("devices", "memory", "load", "plugins", "texture", "validate")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="vixen-assets", description="Put USD scenes and assets on a Vulkan GPU.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except VixenError as exc:
        print(f"vixen-assets {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
