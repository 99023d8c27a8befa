"""The ``yt-bias`` command line: parses arguments and calls one library function per command.

Each subcommand lives in its own module under :mod:`yt_bias.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

_COMMAND_MODULES = (
    "yt_bias.commands.train",
    "yt_bias.commands.reproduce",
    "yt_bias.commands.simulate",
    "yt_bias.commands.experiment",
    "yt_bias.commands.data",
    "yt_bias.commands.index",
    "yt_bias.commands.export",
    "yt_bias.commands.query",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yt-bias",
        description="Sampling-bias-corrected two-tower retrieval (Yi et al., RecSys 2019).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"yt-bias {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
