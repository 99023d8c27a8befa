"""``yt-bias experiment scale --data DIR --out RESULTS``: the estimator at scale, one JSON per row.

Each row (plain, the streaming estimator at several H and m, exact counts, most popular) trains
on the same shard files for the same epochs and is evaluated on the same held-out queries. With
several rows, each runs in its own process, one after another (its peak RSS is its own, and a
failed row does not stop the others); a row whose JSON is already in RESULTS is skipped unless
``--redo``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

from yt_bias.cli.common import add_override_argument


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "scale", help="plain vs the streaming estimator at several (H, m) vs exact counts, on shards (one JSON per row)"
    )
    parser.add_argument("--data", required=True, help="a shard folder (yt-bias data generate --out DIR)")
    parser.add_argument("--out", default="runs/scale", help="the results folder (row_NAME.json, counts.npz)")
    parser.add_argument(
        "--rows", nargs="+", default=["all"], metavar="ROW",
        help="rows to run: all (default), or row names such as plain, H16m1 (H = 2^16, m = 1), exact, popular",
    )
    parser.add_argument("--train-rows", type=int, default=0, help="train on the first shard files holding this many rows (0: all)")
    parser.add_argument("--epochs", type=int, default=1, help="full passes over the training files (every row the same)")
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--eval-queries", type=int, default=10000, help="the first this many positive test rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shuffle-buffer", type=int, default=65536)
    parser.add_argument("--redo", action="store_true", help="rerun rows whose JSON already exists")
    add_override_argument(parser, "--set model.temperature=0.05")
    parser.set_defaults(func=run)


def _command(args: argparse.Namespace, row: str) -> list[str]:
    argv = ["--data", args.data, "--out", args.out, "--rows", row, "--train-rows", str(args.train_rows),
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--eval-queries", str(args.eval_queries),
            "--seed", str(args.seed), "--shuffle-buffer", str(args.shuffle_buffer), "--redo"]
    for assignment in args.overrides:
        argv += ["--set", assignment]
    return ["experiment", "scale", *argv]


def run(args: argparse.Namespace) -> int:
    from yt_bias.experiments.scale import ROW_NAMES, StudySettings

    rows = list(ROW_NAMES) if "all" in args.rows else list(dict.fromkeys(args.rows))
    unknown = [r for r in rows if r not in ROW_NAMES]
    if unknown:
        print(f"error: --rows: unknown rows {unknown}; expected 'all' or some of {list(ROW_NAMES)}.", file=sys.stderr)
        return 2
    try:
        settings = StudySettings(
            data=args.data, train_rows=args.train_rows, epochs=args.epochs, batch_size=args.batch_size,
            eval_queries=args.eval_queries, seed=args.seed, shuffle_buffer=args.shuffle_buffer, overrides=tuple(args.overrides),
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.redo:
        rows = [r for r in rows if not os.path.isfile(os.path.join(args.out, f"row_{r}.json"))]
    if len(rows) == 1:
        from yt_bias.experiments.scale import run_row

        command = "yt-bias " + shlex.join(_command(args, rows[0]))
        record = run_row(rows[0], settings, args.out, command=command, log=lambda line: print(line, flush=True))
        shown = {k: record[k] for k in ("recall@10", "recall@50", "recall@100", "tv_error", "wall_seconds") if k in record}
        print(f"[{time.strftime('%H:%M:%S')}] {rows[0]}: {shown} -> {os.path.join(args.out, f'row_{rows[0]}.json')}", flush=True)
        return 0
    failed = []
    for row in rows:  # one process per row: its own peak RSS; a failed row does not stop the rest
        code = subprocess.run([sys.executable, "-m", "yt_bias", *_command(args, row)], check=False).returncode
        if code != 0:
            failed.append(row)
            print(f"row {row} failed (exit {code})", file=sys.stderr, flush=True)
    if failed:
        print(f"error: rows {failed} failed; the others are in {args.out}.", file=sys.stderr)
        return 1
    print(f"{len(rows)} rows written to {args.out}.")
    return 0
