"""``yt-bias experiment drift``: day-by-day training under popularity drift, judged on the next day.

Examples::

    yt-bias experiment drift --workdir runs/drift                        # 5 drifts x 10 sources x 3 seeds, ~20 min
    yt-bias experiment drift --quick --workdir runs/drift_quick          # tiny, < 1 min
    yt-bias experiment drift --kinds gradual sudden --sources stream-a0.01 cumulative --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from yt_bias.cli.common import given
from yt_bias.config import DRIFT_KINDS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "drift",
        help="frequency sources under popularity drift: next-day recall and TV error by day",
        description="Trains one model per drift kind x seed x frequency source, day by day, evaluates each "
        "day's model on the next day's interactions, and writes drift.md, drift.json and drift.png.",
    )
    parser.add_argument("--workdir", default="runs/drift", help="where drift.md, drift.json and drift.png go")
    parser.add_argument("--quick", action="store_true", help="tiny settings (tests, smoke runs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 0 1 2)")
    parser.add_argument("--kinds", nargs="+", default=None, choices=DRIFT_KINDS, help="drift kinds (default: all)")
    parser.add_argument(
        "--sources",
        nargs="+",
        default=None,
        help="frequency sources: none, stream-a<alpha>[-m<hashes>][-bc], frozen-day0, cumulative, previous-day, "
        "oracle-current-day, oracle-all-days",
    )
    parser.add_argument("--reference", default=None, help="the source paired differences are taken against")
    parser.add_argument("--days", type=int, default=None, help="days per stream")
    parser.add_argument("--rows-per-day", type=int, default=None, help="interactions drawn per day")
    parser.add_argument("--shift", type=float, default=None, help="strength of the popularity drift")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from yt_bias.experiments.drift import default, format_table, quick, run_drift

    config = quick() if args.quick else default()
    changes = given(args, "seeds", "kinds", "sources")
    if args.sources and args.reference is None and config.reference not in args.sources:
        changes["reference"] = args.sources[0]
    if args.reference:
        changes["reference"] = args.reference
    drift = given(args, "days", "rows_per_day", "shift")
    if drift:
        changes["drift"] = dataclasses.replace(config.drift, **drift)
    config = dataclasses.replace(config, **changes)
    start = time.perf_counter()
    results = run_drift(config, args.workdir, progress=lambda m: print(m, flush=True))
    print()
    print(format_table(results, config))
    print(f"\n({time.perf_counter() - start:.0f} s; written to {args.workdir}/drift.md, drift.json and drift.png)")
    return 0
