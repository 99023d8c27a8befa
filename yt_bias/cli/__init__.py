"""The ``yt-bias`` command line: parses arguments and calls one library function per command.

Each subcommand lives in its own module under :mod:`yt_bias.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.

``python -m yt_bias.cli.cluster_task`` runs one task of a parameter-server cluster.
May import: anything in the package.

Quiet by default: TensorFlow's C++ start-up lines (CUDA stub, CPU feature guard, cuInit) are kept
out of every command's output unless the user asks for them with ``--debug`` or by setting
``TF_CPP_MIN_LOG_LEVEL`` (which is then left as set).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from yt_bias import use_tf_keras

# TF_CPP_MIN_LOG_LEVEL=3 hides TensorFlow's C++ INFO, WARNING and ERROR log lines (errors still
# reach the user as Python exceptions); it is read once, when TensorFlow is first imported.
QUIET_TF_LOG_LEVEL = "3"


def quiet_tensorflow(argv: Sequence[str]) -> bool:
    """Keeps TensorFlow's start-up log lines out of the output, unless asked for; returns whether it did.

    Sets ``TF_CPP_MIN_LOG_LEVEL`` (before TensorFlow is imported) and the level of the Python
    ``tensorflow`` and ``absl`` loggers, only when the user set no ``TF_CPP_MIN_LOG_LEVEL`` and
    did not pass ``--debug``.
    """
    if "--debug" in argv or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return False
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_TF_LOG_LEVEL
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return True

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
    quiet_tensorflow(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # Parsing (and --help) loads no TensorFlow; a command runs the tf-keras parts, so Keras 2 is
        # selected before the command's own first TensorFlow import (e.g. the report's version stamp).
        use_tf_keras()
        return int(args.func(args) or 0)
    except Exception as error:
        from yt_bias.training.divergence import TrainingDiverged

        if args.debug:
            raise
        if isinstance(error, TrainingDiverged):
            code = 3
        elif isinstance(error, (ValueError, TypeError, LookupError, OSError, ImportError)):
            code = 2
        elif isinstance(error, MemoryError):  # e.g. a size far beyond this machine: one line, not a traceback
            code = 2
            error = MemoryError(f"out of memory ({error or 'no details'}); use smaller sizes or a machine with more memory.")
        else:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"yt-bias {args.command}: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
