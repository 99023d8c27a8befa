"""``yt-bias experiment estimand``: which estimand (and candidate columns) the correction should use."""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

from yt_bias.cli.common import add_override_argument


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "estimand",
        help="plain-sfx vs {inclusion+rows, expected_count+rows, inclusion+unique} x {streaming, oracle} x seeds",
        description=(
            "Trains plain-sfx and, for each pairing of estimand and candidate columns, the streaming estimator and "
            "the oracle, over seeds, on the default data (one grid point per --popularity-weights value) or on a "
            "MovieLens/RecBole directory (one per --temperatures value). Writes estimand.md and estimand.json."
        ),
    )
    parser.add_argument("--data", default=None, help="a MovieLens / RecBole directory; default: the built-in data")
    parser.add_argument("--format", default="auto", choices=["auto", "movielens", "recbole", "mind"], help="the loader")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument(
        "--popularity-weights", type=float, nargs="+", default=[0.0, 0.5, 1.0],
        help="built-in data: data.synthetic.popularity_weight values (the generator's popularity term)",
    )
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.05, 0.07, 0.14], help="real data: the tau grid")
    parser.add_argument("--methods", nargs="+", default=None, help="a subset of the methods (default: all seven)")
    parser.add_argument("--quick", action="store_true", help="smoke sizes (seconds; for checking the command)")
    parser.add_argument("--workdir", default="runs/estimand", help="where estimand.md and estimand.json go")
    add_override_argument(parser, "--set train.epochs=10")
    parser.set_defaults(func=run)


def _grid(args: argparse.Namespace):
    """(setting label, config) pairs."""
    from yt_bias import config as config_lib
    from yt_bias.data.loading import detect_source
    from yt_bias.experiments.table1 import movielens_config

    if args.data:
        base = movielens_config()
        source = detect_source(args.data) if args.format == "auto" else args.format
        base = dataclasses.replace(base, data=dataclasses.replace(base.data, source=source, path=args.data))
        if args.quick:
            base = dataclasses.replace(base, train=dataclasses.replace(base.train, epochs=1))
    else:
        base = config_lib.smoke() if args.quick else config_lib.default()
    base = config_lib.override(base, *args.overrides)
    if args.data:
        return [
            (f"tau={t:g}", dataclasses.replace(base, model=dataclasses.replace(base.model, temperature=float(t))))
            for t in args.temperatures
        ]
    settings = []
    for w in args.popularity_weights:
        synthetic = dataclasses.replace(base.data.synthetic, popularity_weight=float(w))
        settings.append((f"popularity_weight={w:g}", dataclasses.replace(base, data=dataclasses.replace(base.data, synthetic=synthetic))))
    return settings


def run(args: argparse.Namespace) -> int:
    from yt_bias.data.loading import load_dataset
    from yt_bias.experiments.estimand import duplicate_statistics, format_table, method_names, run_estimand_study, save

    methods = args.methods or method_names()
    json_path = os.path.join(args.workdir, "estimand.json")
    payload = {
        "command": "yt-bias experiment estimand " + " ".join(_argv_of(args)),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "seeds": args.seeds,
        "methods": methods,
        "settings": [],
    }
    start = time.perf_counter()
    sections = []
    for label, config in _grid(args):
        dataset = load_dataset(config.data, config.model.embedding_dim)
        stats = duplicate_statistics(dataset, config.train.batch_size)
        setting = {"setting": label, "config": config.to_dict(), "duplicates": stats, "records": []}
        payload["settings"].append(setting)
        print(
            f"\n{label}: {dataset.name}, {dataset.num_items} items, {dataset.num_train} training rows; a batch of "
            f"{stats['batch_size']} holds {stats['distinct_items_per_batch']:.0f} distinct items, "
            f"{stats['rows_sharing_their_item']:.0%} of rows share their item, the top item has "
            f"{stats['top_item_rows_per_batch']:.1f} rows.",
            flush=True,
        )

        def on_run(record, setting=setting):
            setting["records"].append(record)
            payload["wall_seconds"] = round(time.perf_counter() - start, 1)
            save(json_path, payload)

        records = run_estimand_study(config, dataset, methods, args.seeds, on_run=on_run)
        table = format_table(records, config.eval.ks)
        sections.append(f"### {label}\n\n{table}")
        print("\n" + table, flush=True)
    elapsed = time.perf_counter() - start
    payload["wall_seconds"] = round(elapsed, 1)
    save(json_path, payload)
    header = (
        f"`{payload['command']}` ({elapsed / 60:.1f} min; {payload['machine']}). Mean ± sample std over seeds "
        f"{args.seeds}. R@K: exact top-K over the corpus, the user's training items excluded; 'R@50 known': every "
        "item the user interacted with before the query excluded; bands: Recall@100 by the held-out item's "
        "popularity third; TV error against the estimand's exact per-batch frequencies."
    )
    with open(os.path.join(args.workdir, "estimand.md"), "w", encoding="utf-8") as f:
        f.write(header + "\n\n" + "\n\n".join(sections) + "\n")
    print(f"\n({elapsed:.0f} s; written to {args.workdir}/estimand.md and estimand.json)")
    return 0


def _argv_of(args: argparse.Namespace) -> list[str]:
    parts = []
    if args.data:
        parts += ["--data", args.data, "--temperatures", *map(str, args.temperatures)]
    else:
        parts += ["--popularity-weights", *(f"{w:g}" for w in args.popularity_weights)]
    parts += ["--seeds", *map(str, args.seeds)]
    if args.methods:
        parts += ["--methods", *args.methods]
    if args.quick:
        parts.append("--quick")
    parts += [f"--set {o}" for o in args.overrides]
    return parts
