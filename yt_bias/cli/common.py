"""Arguments shared by the subcommands that build an :class:`~yt_bias.config.ExperimentConfig`."""

from __future__ import annotations

import argparse

from yt_bias import config as config_lib


def add_override_argument(
    parser: argparse.ArgumentParser, example: str = "--set train.epochs=3 --set model.temperature=0.07"
) -> None:
    """``--set SECTION.FIELD=VALUE`` (repeatable), collected in ``args.overrides``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help=f"override one config field, e.g. {example} (repeatable)",
    )


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="default", choices=sorted(config_lib.PRESETS), help="named configuration")
    add_override_argument(parser)


def config_from_args(args: argparse.Namespace) -> config_lib.ExperimentConfig:
    config = config_lib.preset(args.preset)
    return config_lib.override(config, *args.overrides)
