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


def given(args: argparse.Namespace, *names: str) -> dict:
    """``{name: value}`` of each option among ``names`` that the user gave (not None, not empty); lists become tuples.

    For options named as the config fields they set: ``dataclasses.replace(config, **given(args, "seeds"))``.
    """
    values = {name: vars(args)[name] for name in names}
    return {name: tuple(v) if isinstance(v, list) else v for name, v in values.items() if v is not None and v != []}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="default", choices=sorted(config_lib.PRESETS), help="named configuration")
    add_override_argument(parser)


def config_from_args(args: argparse.Namespace) -> config_lib.ExperimentConfig:
    config = config_lib.preset(args.preset)
    return config_lib.override(config, *args.overrides)
