"""``yt-bias index``: embed the corpus with a trained item tower and build the serving index."""

from __future__ import annotations

import argparse
import dataclasses
import json

from yt_bias.cli.common import add_assignment_argument
from yt_bias.config import IndexConfig, override


def add_index_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="training workdir (config.json, features.json, checkpoint/)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint prefix to use (default: the workdir's latest)")
    parser.add_argument("--items", default=None, help=".npz of item feature arrays: a changed corpus (default: the data set's)")
    parser.add_argument(
        "--index-kind",
        choices=("scann", "brute_force"),
        default=None,
        help="ScaNN or exact brute force (default: scann where ScaNN is installed, else brute_force, with a warning)",
    )
    fields = ", ".join(f.name for f in dataclasses.fields(IndexConfig))
    help_text = f"set one IndexConfig field, e.g. --index-set num_leaves=1000 (fields: {fields})"
    add_assignment_argument(parser, "--index-set", "index_overrides", "FIELD=VALUE", help_text)


def index_config_from_args(args: argparse.Namespace) -> IndexConfig:
    """The :class:`IndexConfig` of ``--index-kind`` (or the platform's default) and ``--index-set``."""
    from yt_bias.serving.index import default_index_kind

    config = IndexConfig(kind=args.index_kind or default_index_kind())
    for assignment in args.index_overrides:
        config = override(config, assignment)
    return config


def register(subparsers) -> None:
    parser = subparsers.add_parser("index", help="build the ScaNN / brute-force index of the item corpus")
    add_index_arguments(parser)
    parser.add_argument("--out", default=None, help="write the index here (.npz; reusable by yt-bias export --index)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from yt_bias.serving.export import index_from_workdir, load_items

    items = load_items(args.items) if args.items else None
    _, _, index, _ = index_from_workdir(args.workdir, index_config_from_args(args), items, args.checkpoint)
    report = {
        "kind": index.kind,
        "num_items": index.num_items,
        "dim": int(index.embeddings.shape[1]),
        "build_seconds": index.build_seconds,
        "size_bytes": index.size_bytes,
        "parameters": index.parameters,
    }
    if args.out:
        index.save(args.out)
        report["written"] = args.out
    print(json.dumps(report, indent=2))
    return 0
