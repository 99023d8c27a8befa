"""``yt-bias train``: trains one variant and writes checkpoint, TensorBoard logs and metrics."""

from __future__ import annotations

import argparse
import json

from yt_bias.cli.common import add_config_arguments, config_from_args
from yt_bias.config import DRIFT_KINDS, VARIANTS, override


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train one variant and evaluate it")
    add_config_arguments(parser)
    parser.add_argument("--variant", choices=VARIANTS, default=None, help="plain-sfx, correct-sfx or correct-sfx-oracle")
    parser.add_argument("--workdir", default="runs/train", help="where checkpoint, logs and metrics.json go")
    parser.add_argument(
        "--stream",
        action="store_true",
        help="sequential training day by day (config section 'stream'); resumes an interrupted workdir",
    )
    parser.add_argument("--days", type=int, default=None, help="with --stream: number of days (stream.days)")
    parser.add_argument("--stream-dir", default=None, help="with --stream: read day_*.npz files from this directory")
    parser.add_argument(
        "--drift",
        default=None,
        choices=DRIFT_KINDS,
        help="with --stream: draw the days from the synthetic data under this popularity drift (stream.drift_kind)",
    )
    parser.add_argument(
        "--frequency-source",
        default=None,
        metavar="NAME",
        help="with --stream: the frequency source (stream.frequency_source): stream-a<alpha>[-m<hashes>][-bc], the "
        "past-only frozen-day0, cumulative, previous-day, the oracles oracle-current-day, oracle-all-days, or none",
    )
    parser.add_argument(
        "--data-files",
        default=None,
        metavar="PATTERN",
        help="train on TFRecord shards, e.g. 'DIR/*.tfrecord' (items.npz, features.json and manifest.json in DIR, "
        "checked against each other before training; DIR/test/*.tfrecord, when present, is evaluated)",
    )
    parser.add_argument("--shuffle-buffer", type=int, default=10000, help="with --data-files: rows in the shuffle buffer")
    parser.add_argument(
        "--eval-queries", type=int, default=None, help="with --data-files: evaluate the first N positive test rows (default: all)"
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--overwrite", action="store_true", help="the workdir holds another run: replace it (its checkpoint and metrics are deleted)"
    )
    existing.add_argument(
        "--resume",
        action="store_true",
        help="with --stream: continue the run in the workdir although the config differs (not in data/model/estimator/negatives)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from yt_bias.training.train import train_and_evaluate

    if args.stream and args.data_files:
        raise ValueError("--data-files and --stream are exclusive; received both.")
    if not args.stream:
        stream_flags = (("--days", args.days), ("--stream-dir", args.stream_dir), ("--drift", args.drift),
                        ("--frequency-source", args.frequency_source), ("--resume", args.resume or None))
        given = [flag for flag, value in stream_flags if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} only apply with --stream; received them without it.")
    config = config_from_args(args)
    if args.variant:
        config = override(config, f"variant={args.variant}")
    if args.stream:
        return _run_stream(config, args)
    if args.data_files:
        return _run_files(config, args)
    metrics = train_and_evaluate(config, args.workdir, mode="overwrite" if args.overwrite else "refuse")
    print(json.dumps({k: v for k, v in metrics.items() if k != "loss_history"}, indent=2))
    print(f"Wrote {args.workdir}/metrics.json, {args.workdir}/checkpoint and {args.workdir}/tensorboard")
    return 0


def _run_files(config, args: argparse.Namespace) -> int:
    from yt_bias.training.from_files import fit_on_files

    mode = "overwrite" if args.overwrite else "refuse"
    metrics = fit_on_files(
        config, args.data_files, args.workdir, mode=mode, shuffle_buffer=args.shuffle_buffer, max_eval_queries=args.eval_queries
    )
    print(json.dumps({k: v for k, v in metrics.items() if k != "loss_history"}, indent=2))
    print(f"Wrote {args.workdir}/metrics.json, {args.workdir}/checkpoint and {args.workdir}/tensorboard")
    return 0


def _run_stream(config, args: argparse.Namespace) -> int:
    from yt_bias.training.day_by_day import STATE_FILE, train_stream

    if args.days is not None:
        config = override(config, f"stream.days={args.days}")
    if args.stream_dir:
        config = override(config, "stream.source=files")
        config = override(config, f"stream.path={args.stream_dir}")
    if args.drift:
        config = override(config, f"stream.drift_kind={args.drift}")
    if args.frequency_source:
        config = override(config, f"stream.frequency_source={args.frequency_source}")

    def report(day: dict) -> None:
        print(json.dumps(day), flush=True)

    mode = "overwrite" if args.overwrite else "resume" if args.resume else "refuse"
    _, result = train_stream(config, args.workdir, on_day_end=report, mode=mode)
    print(
        f"Resumed from day {result['resumed_from']}; {result['completed_days']} days done. "
        f"Wrote {args.workdir}/{STATE_FILE} and {args.workdir}/checkpoint"
    )
    return 0
