"""``yt-bias experiment strategies``: negative-sampling strategies, ranking stage and two-stage pipeline.

Examples::

    yt-bias experiment strategies --data synthetic --workdir runs/strategies        # 3 seeds, ~15 min
    yt-bias experiment strategies --quick --seeds 0                                 # tiny, ~1 min
    yt-bias experiment strategies --strategies in-batch mixed --seeds 0 1 2
    yt-bias experiment strategies --strategies in-batch --rankers candidates-listwise impressions-pointwise
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from yt_bias.cli.common import given
from yt_bias.experiments.strategy_variants import RANKER_VARIANTS, STRATEGIES

DATA_SOURCES = ("synthetic",)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "strategies",
        help="negative-sampling strategies (recall stage), ranker variants and the two-stage ablations",
        description="Trains every strategy x seed on the default data with impressions; per seed, one retriever "
        "on the training requests minus each user's last two (the validation requests), every ranker variant on "
        "top of it, the blend weight, re-ranking depth and default pipeline chosen on validation NDCG@10, and "
        "reports two stages against retrieval alone on the test clicks. Writes strategies.md and strategies.json.",
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
    parser.add_argument(
        "--rankers", nargs="+", default=None, choices=list(RANKER_VARIANTS), help="subset of ranker variants (default all)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="recall-stage epochs (default 5)")
    parser.add_argument("--quick", action="store_true", help="tiny settings (tests, notebooks)")
    parser.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces ``args`` (recorded in strategies.md and strategies.json)."""
    parts = ["yt-bias experiment strategies", f"--data {args.data}", f"--workdir {args.workdir}"]
    if args.quick:
        parts.append("--quick")
    for flag, values in (("--seeds", args.seeds), ("--strategies", args.strategies), ("--rankers", args.rankers)):
        if values:
            parts.append(flag + " " + " ".join(str(v) for v in values))
    if args.epochs is not None:
        parts.append(f"--epochs {args.epochs}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    from yt_bias.experiments.strategies import StrategiesConfig, format_tables, quick, run_strategies

    config = quick() if args.quick else StrategiesConfig()
    changes = given(args, "seeds", "strategies", "rankers")
    if args.epochs is not None:
        if args.epochs < 1:
            raise ValueError(f"--epochs must be >= 1; received {args.epochs}.")
        changes["base"] = dataclasses.replace(config.base, train=dataclasses.replace(config.base.train, epochs=args.epochs))
    config = dataclasses.replace(config, **changes)
    start = time.perf_counter()
    results = run_strategies(config, args.workdir, progress=lambda m: print(m, flush=True), command=command_line(args))
    print()
    print(format_tables(results, config))
    print(f"\n({time.perf_counter() - start:.0f} s; written to {args.workdir}/strategies.md and strategies.json)")
    return 0
