"""``yt-bias data download NAME``: fetch a public data set (MovieLens, MIND) into the cache, checksum-verified;
``yt-bias data generate``: write synthetic TFRecord shards in bounded memory;
``yt-bias data convert``: write the data set a config loads (``--preset``/``--set data.*``) as TFRecord shards."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from yt_bias.data.download import DATASETS, DownloadError, download


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="download public data sets (MovieLens, MIND) or generate synthetic shards")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    download = actions.add_parser("download", help="download NAME from its official URL, verify it and unzip it")
    download.add_argument("name", choices=sorted(DATASETS), help="the data set")
    download.add_argument("--cache-dir", default=None, help="where data sets go (default ~/.cache/yt_bias)")
    download.add_argument("--base-url", default=None, help="a mirror that replaces the official host")
    download.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the server")
    download.set_defaults(func=run_download)
    generate = actions.add_parser(
        "generate", help="write synthetic TFRecord shards chunk by chunk (bounded memory), with an items table beside them"
    )
    generate.add_argument("--out", required=True, help="output directory: new or empty (written whole, with a manifest.json)")
    generate.add_argument("--overwrite", action="store_true", help="replace a previous data set in --out (never a run's workdir)")
    generate.add_argument("--items", type=int, required=True, help="number of items in the corpus")
    generate.add_argument("--interactions", type=int, required=True, help="number of interactions (train and test together)")
    generate.add_argument("--shard-rows", type=int, default=100_000, help="rows per .tfrecord file")
    generate.add_argument("--chunk-rows", type=int, default=50_000, help="the most interaction rows held in memory at once")
    generate.add_argument("--seed", type=int, default=0, help="random seed")
    generate.set_defaults(func=run_generate)
    from yt_bias.cli.common import add_config_arguments

    convert = actions.add_parser(
        "convert", help="write the data set of a config (MovieLens, MIND, RecBole, CSV, synthetic) as TFRecord shards"
    )
    add_config_arguments(convert)
    convert.add_argument("--out", required=True, help="output directory: new or empty (written whole, with a manifest.json)")
    convert.add_argument("--overwrite", action="store_true", help="replace a previous data set in --out (never a run's workdir)")
    convert.add_argument("--shard-rows", type=int, default=100_000, help="rows per .tfrecord file")
    convert.add_argument("--seed", type=int, default=0, help="the permutation of the training rows")
    convert.set_defaults(func=run_convert)


def run_download(args: argparse.Namespace) -> int:
    try:
        path = download(args.name, args.cache_dir, args.base_url, args.timeout, log=lambda m: print(m, flush=True))
    except DownloadError as error:
        print(f"yt-bias data download: error: {error}", file=sys.stderr)
        return 1
    print(f"Ready: --data {path} (data.source={DATASETS[args.name].source})")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from yt_bias.data.synthetic_shards import generate_shards

    report = generate_shards(
        args.out,
        args.items,
        args.interactions,
        rows_per_shard=args.shard_rows,
        chunk_rows=args.chunk_rows,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(
        f"Wrote {report.num_items} items, {report.num_train} training rows in {len(report.train_files)} shards and "
        f"{report.num_test} test rows in {len(report.test_files)} shards ({report.chunks} chunks of at most "
        f"{report.max_chunk_rows} rows) to {args.out}"
    )
    print(f"Train on them: yt-bias train --data-files '{args.out}/*.tfrecord'")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from yt_bias.cli.common import config_from_args
    from yt_bias.data.convert import write_dataset_shards
    from yt_bias.data.loading import load_dataset
    from yt_bias.data.manifest import check_output_folder

    config = config_from_args(args)
    check_output_folder(args.out, args.overwrite)  # before the (possibly long) load
    dataset = load_dataset(config.data, config.model.embedding_dim)
    source = {"data": dataclasses.asdict(config.data), "embedding_dim": config.model.embedding_dim}
    report = write_dataset_shards(
        dataset, args.out, rows_per_shard=args.shard_rows, seed=args.seed, overwrite=args.overwrite, source=source
    )
    print(
        f"Wrote {report.name}: {report.num_items} items, {report.num_train} training rows in {len(report.train_files)} "
        f"shards and {report.num_test} test rows in {len(report.test_files)} shards to {args.out}"
    )
    print(f"Train on them: yt-bias train --data-files '{args.out}/*.tfrecord'")
    return 0
