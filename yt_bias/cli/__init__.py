"""The ``yt-bias`` command line: parses arguments and calls one library function per command.

Each subcommand lives in its own module under :mod:`yt_bias.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.

``python -m yt_bias.cli.cluster_task`` runs one task of a parameter-server cluster.
May import: anything in the package.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

_COMMAND_MODULES = (
    "yt_bias.cli.train",
    "yt_bias.cli.reproduce",
    "yt_bias.cli.simulate",
    "yt_bias.cli.experiment",
    "yt_bias.cli.data",
    "yt_bias.cli.index",
    "yt_bias.cli.export",
    "yt_bias.cli.query",
    "yt_bias.cli.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yt-bias",
        description="Sampling-bias-corrected two-tower retrieval (Yi et al., RecSys 2019).",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns its exit code.

    A user error (bad input, a conflicting workdir, a missing or damaged file) is one line on
    stderr and exit code 2; a diverged training run exits with 3; ``--debug`` re-raises instead.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as error:
        from yt_bias.training.divergence import TrainingDiverged

        if args.debug:
            raise
        if isinstance(error, TrainingDiverged):
            code = 3
        elif isinstance(error, (ValueError, TypeError, LookupError, OSError, ImportError)):
            code = 2
        else:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"yt-bias {args.command}: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
