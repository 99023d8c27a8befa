"""``yt-bias query PATH --feature name=value ... [--exclude ID ...]``: the top-K items of one query from an export."""

from __future__ import annotations

import argparse
import sys
import warnings

from yt_bias.cli.common import add_assignment_argument


def register(subparsers) -> None:
    parser = subparsers.add_parser("query", help="top-K items of one query from an exported SavedModel")
    parser.add_argument("path", help="the SavedModel directory written by yt-bias export")
    help_text = "one query feature (repeat for each); bags and dense features take comma-separated values"
    add_assignment_argument(parser, "--feature", "features", "NAME=VALUE", help_text)
    parser.add_argument(
        "--exclude",
        dest="exclude",
        action="append",
        default=[],
        metavar="ID",
        help="an item ID never to return, e.g. one the user has seen (repeat for each); k items still come back",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from yt_bias.serving.export import load, parse_feature_values

    try:
        model = load(args.path, warmup=False)
    except ImportError as error:  # a ScaNN export where ScaNN is missing: say what to install
        print(f"yt-bias query: error: {error}", file=sys.stderr)
        return 2
    exclude = [args.exclude] if args.exclude else None
    with warnings.catch_warnings(record=True) as caught:  # e.g. a dense value clipped to its training range
        warnings.simplefilter("always")
        ids, scores = model.query(parse_feature_values(model.specs, args.features), exclude_item_ids=exclude)
    for warning in caught:
        print(f"yt-bias query: warning: {warning.message}", file=sys.stderr)
    print(f"{'rank':>4}  {'item_id':<24} score")
    for rank, (item, score) in enumerate(zip(ids[0], scores[0]), start=1):
        if item:
            print(f"{rank:>4}  {item:<24} {score:.6f}")
    return 0
