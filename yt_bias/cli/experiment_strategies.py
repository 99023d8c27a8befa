"""``yt-bias experiment strategies``: negative-sampling strategies, ranking stage and two-stage pipeline.

Examples::

    yt-bias experiment strategies --data synthetic --workdir runs/strategies        # 3 seeds, ~15 min
    yt-bias experiment strategies --quick --seeds 0                                 # tiny, ~1 min
    yt-bias experiment strategies --strategies in-batch mixed --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
import time

DATA_SOURCES = ("synthetic",)


def register(subparsers) -> None:
    from yt_bias.experiments.strategies import STRATEGIES

    parser = subparsers.add_parser(
        "strategies",
        help="negative-sampling strategies (recall stage), pCTR ranking and the two-stage pipeline",
        description="Trains every strategy x seed on the default data with impressions and writes "
        "strategies.md and strategies.json.",
    )
    parser.add_argument(
        "--data",
        default="synthetic",
        choices=DATA_SOURCES,
        help="the data: 'synthetic' = the default generator with a logging policy and clicks",
    )
    parser.add_argument("--workdir", default="runs/strategies", help="where strategies.md and strategies.json go")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0 1 2)")
    parser.add_argument("--strategies", nargs="+", default=None, choices=sorted(STRATEGIES), help="subset of strategies")
    parser.add_argument("--epochs", type=int, default=None, help="recall-stage epochs (default 5)")
    parser.add_argument("--quick", action="store_true", help="tiny settings (tests, notebooks)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from yt_bias.experiments.strategies import StrategiesConfig, format_tables, quick, run_strategies

    config = quick() if args.quick else StrategiesConfig()
    changes = {}
    if args.seeds:
        changes["seeds"] = tuple(args.seeds)
    if args.strategies:
        changes["strategies"] = tuple(args.strategies)
    if args.epochs is not None:
        if args.epochs < 1:
            raise ValueError(f"--epochs must be >= 1; received {args.epochs}.")
        changes["base"] = dataclasses.replace(config.base, train=dataclasses.replace(config.base.train, epochs=args.epochs))
    config = dataclasses.replace(config, **changes)
    start = time.perf_counter()
    results = run_strategies(config, args.workdir, progress=lambda m: print(m, flush=True))
    print()
    print(format_tables(results, config))
    print(f"\n({time.perf_counter() - start:.0f} s; written to {args.workdir}/strategies.md and strategies.json)")
    return 0
