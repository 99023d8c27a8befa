"""``yt-bias train``: trains one variant and writes checkpoint, TensorBoard logs and metrics."""

from __future__ import annotations

import argparse
import json

from yt_bias.commands.common import add_config_arguments, config_from_args
from yt_bias.config import VARIANTS, override


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train one variant and evaluate it")
    add_config_arguments(parser)
    parser.add_argument("--variant", choices=VARIANTS, default=None, help="plain-sfx, correct-sfx or correct-sfx-oracle")
    parser.add_argument("--workdir", default="runs/train", help="where checkpoint, logs and metrics.json go")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from yt_bias.train import train_and_evaluate

    config = config_from_args(args)
    if args.variant:
        config = override(config, f"variant={args.variant}")
    metrics = train_and_evaluate(config, args.workdir)
    print(json.dumps({k: v for k, v in metrics.items() if k != "loss_history"}, indent=2))
    print(f"Wrote {args.workdir}/metrics.json, {args.workdir}/checkpoint and {args.workdir}/tensorboard")
    return 0
