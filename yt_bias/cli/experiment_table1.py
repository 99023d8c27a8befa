"""``yt-bias experiment table1 --data PATH``: the paper's Table 1 grid on a real (or the default) data set."""

from __future__ import annotations

import argparse
import dataclasses
import time

from yt_bias.cli.common import add_override_argument, load_and_describe
from yt_bias.config import VARIANTS, override


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "table1", help="tau x {plain-sfx, correct-sfx, correct-sfx-oracle} x seeds + MostPop + TFRS Retrieval"
    )
    parser.add_argument(
        "--data", default=None, help="a data directory (MovieLens, RecBole atomic files or MIND); default: the synthetic data"
    )
    parser.add_argument(
        "--format",
        default="auto",
        choices=["auto", "movielens", "recbole", "mind"],
        help="the loader (auto: detected from the files)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (mean and spread)")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.05, 0.07, 0.14], help="the tau grid")
    parser.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), help="the variants to train (default: all three)"
    )
    parser.add_argument("--no-tfrs", action="store_true", help="skip the TFRS Retrieval reference rows")
    parser.add_argument("--workdir", default="runs/table1", help="where table1.md and table1.json go")
    add_override_argument(parser, "--set train.epochs=5 --set data.split=random")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from yt_bias.data.loading import detect_source
    from yt_bias.experiments.table1 import movielens_config, run_table1, save_table1

    config = movielens_config()
    if args.data:
        source = detect_source(args.data) if args.format == "auto" else args.format
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, source=source, path=args.data))
    else:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, source="synthetic", path=None))
    config = override(config, *args.overrides)
    start = time.perf_counter()
    dataset = load_and_describe(config)
    rows = run_table1(config, dataset, args.temperatures, variants=args.variants, seeds=args.seeds, include_tfrs=not args.no_tfrs)
    elapsed = time.perf_counter() - start
    header = (
        f"Data {dataset.name} ({config.data.split} split), seeds {args.seeds}, "
        f"config: {config.to_json().replace(chr(10), ' ')}; wall time {elapsed:.0f} s."
    )
    table = save_table1(rows, config.eval.ks, args.workdir, header)
    print()
    print(table)
    print(f"\n({elapsed:.0f} s; written to {args.workdir}/table1.md and table1.json)")
    return 0
