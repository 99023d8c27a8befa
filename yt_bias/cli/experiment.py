"""``yt-bias experiment NAME``: the experiment grids (one module per experiment)."""

from __future__ import annotations

import importlib

_EXPERIMENT_MODULES: tuple[str, ...] = ("yt_bias.cli.experiment_table1", "yt_bias.cli.experiment_strategies",
    "yt_bias.cli.experiment_estimand", "yt_bias.cli.experiment_drift", "yt_bias.cli.experiment_scale",)


def register(subparsers) -> None:
    parser = subparsers.add_parser("experiment", help="run an experiment grid (tables of the README)")
    experiments = parser.add_subparsers(dest="experiment", required=True, metavar="NAME")
    for module_name in _EXPERIMENT_MODULES:
        importlib.import_module(module_name).register(experiments)
