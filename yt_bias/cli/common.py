"""What subcommands share: ``NAME=VALUE`` options, the :class:`~yt_bias.config.ExperimentConfig`, the data line."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from yt_bias import config as config_lib

if TYPE_CHECKING:  # the data module loads TensorFlow, which --help does not
    from yt_bias.data.dataset import RecDataset


def add_assignment_argument(parser: argparse.ArgumentParser, flag: str, dest: str, metavar: str, help: str) -> None:
    """A repeatable ``FLAG NAME=VALUE`` option; the assignments are kept in order in ``args.<dest>`` ([] if none)."""
    parser.add_argument(flag, dest=dest, action="append", default=[], metavar=metavar, help=help)


def add_override_argument(
    parser: argparse.ArgumentParser, example: str = "--set train.epochs=3 --set model.temperature=0.07"
) -> None:
    """``--set SECTION.FIELD=VALUE`` (repeatable), collected in ``args.overrides``."""
    help_text = f"override one config field, e.g. {example} (repeatable)"
    add_assignment_argument(parser, "--set", "overrides", "SECTION.FIELD=VALUE", help_text)


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


def load_and_describe(config: config_lib.ExperimentConfig) -> RecDataset:
    """The data set of ``config.data``, after printing one line on its size, split and evaluation protocol."""
    from yt_bias.data.loading import load_dataset

    dataset = load_dataset(config.data, config.model.embedding_dim)
    print(
        f"Data '{dataset.name}': {dataset.num_items} items, {dataset.num_train} training and {dataset.num_test} test "
        f"interactions, {len(dataset.test_positives()['item_index'])} test positives (split={config.data.split}; "
        f"exact Recall@K over all items, seen items excluded: {config.eval.exclude_seen}).",
        flush=True,
    )
    return dataset
