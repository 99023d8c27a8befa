"""``yt-bias reproduce``: the main job. plain-sfx vs correct-sfx (streaming) vs the oracle and
MostPop on the default data, printed as the paper's Table 1."""

from __future__ import annotations

import argparse
import time

from yt_bias.cli.common import add_config_arguments, config_from_args, load_and_describe
from yt_bias.config import override


def register(subparsers) -> None:
    parser = subparsers.add_parser("reproduce", help="plain-sfx vs correct-sfx vs oracle vs MostPop (paper's Table 1 layout)")
    add_config_arguments(parser)
    parser.add_argument("--workdir", default="runs/reproduce", help="where runs, table.md and table.json go")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (mean and spread when several)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from yt_bias.experiments.comparison import run_comparison, save_comparison

    config = config_from_args(args)
    if not any(o.strip().startswith("train.verbose") for o in args.overrides):
        config = override(config, "train.verbose=2")  # one line per epoch: three runs share the screen
    start = time.perf_counter()
    dataset = load_and_describe(config)
    rows = run_comparison(config, dataset, seeds=args.seeds, workdir=args.workdir, progress=lambda m: print(m, flush=True))
    table = save_comparison(rows, config.eval.ks, args.workdir)
    print()
    print(table)
    print(f"\n({time.perf_counter() - start:.0f} s; written to {args.workdir}/table.md)")
    return 0
