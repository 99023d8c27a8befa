"""``yt-bias export``: one SavedModel from raw query features to top-K item IDs and scores."""

from __future__ import annotations

import argparse
import json

from yt_bias.cli.index import add_index_arguments, index_config_from_args


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export query tower + item index as one SavedModel (serving_default)")
    add_index_arguments(parser)
    parser.add_argument("--out", required=True, help="the new SavedModel directory")
    parser.add_argument("--index", dest="index_path", default=None, help="a prebuilt index (.npz from yt-bias index --out)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from yt_bias.serving.index import ItemIndex
    from yt_bias.serving.export import export_from_workdir, load_items

    items = load_items(args.items) if args.items else None
    index = ItemIndex.load(args.index_path) if args.index_path else None
    meta = export_from_workdir(args.workdir, args.out, index_config_from_args(args), items, args.checkpoint, index)
    report = {key: meta[key] for key in ("k", "num_items", "needs_scann", "save_seconds")}
    report.update(
        index_kind=meta["index"]["config"]["kind"],
        index_build_seconds=meta["index"]["build_seconds"],
        index_size_bytes=meta["index"]["size_bytes"],
        inputs=[s["name"] for s in meta["inputs"]],
    )
    print(json.dumps(report, indent=2))
    print(f"Wrote the SavedModel {args.out} (signature 'serving_default'; metadata in {args.out}/assets.extra/yt_bias.json)")
    return 0
