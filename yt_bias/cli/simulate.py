"""``yt-bias simulate``: the paper's frequency-estimation study (Figures 4 and 5, Proposition 4.1).

Examples::

    yt-bias simulate --figure 4 --output runs/simulate      # figure4.csv, figure4.png, figure4_reference.csv
    yt-bias simulate --figure 5 --target linear              # error against B * q_i instead of exact pi_i
    yt-bias simulate --figure prop41                         # prop41.csv, prop41.png
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Sequence

_VARIANTS = {"both": None, "none": False, "only": True}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="frequency-estimation simulation: Figures 4/5 and Proposition 4.1 of the paper",
        description="Runs the package's StreamingFrequencyEstimator on the paper's section 6.1 stream "
        "(or the i.i.d.-gap experiment of Proposition 4.1) and writes a CSV and a PNG.",
    )
    _add_arguments(parser)
    parser.set_defaults(func=run)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--figure", required=True, choices=["4", "5", "prop41"], help="what to reproduce")
    parser.add_argument("--output", default="runs/simulate", help="directory for the CSV and PNG files")
    parser.add_argument(
        "--variant",
        default="both",
        choices=sorted(_VARIANTS),
        help="bias-corrected read-out: both (Algorithm 2/3 and the variant), none (the paper only), only",
    )
    stream = parser.add_argument_group("stream (figures 4 and 5; defaults are the paper's)")
    stream.add_argument("--num-items", type=int, default=1000, help="M")
    stream.add_argument("--batch-size", type=int, default=128, help="B")
    stream.add_argument("--steps", type=int, default=20000, help="number of steps")
    stream.add_argument("--switch-step", type=int, default=10000, help="last step before popularity is reversed; -1: never")
    stream.add_argument("--total-buckets", type=int, default=5000, help="m * H of every estimator")
    stream.add_argument("--eval-every", type=int, default=100, help="measure the TV error every N steps")
    stream.add_argument("--target", default="exact", choices=["exact", "linear"], help="exact pi_i or B * q_i")
    stream.add_argument("--seed", type=int, default=0, help="seed of the stream")
    stream.add_argument("--estimator-seed", type=int, default=0, help="seed of the hash functions")
    prop = parser.add_argument_group("Proposition 4.1")
    prop.add_argument("--alphas", type=float, nargs="+", default=None, help="learning rates (default 0.01 0.05 0.2)")
    prop.add_argument("--num-replicas", type=int, default=None, help="independent items (default 8000)")
    prop.add_argument("--num-hits", type=int, default=None, help="hits per item (default 300)")
    prop.add_argument("--mean-gap", type=float, default=None, help="delta (default 5)")


def run(args: argparse.Namespace) -> int:
    from yt_bias import studies
    from yt_bias.studies import plots

    os.makedirs(args.output, exist_ok=True)
    start = time.perf_counter()
    if args.figure == "prop41":
        overrides = {
            "alphas": tuple(args.alphas) if args.alphas else None,
            "num_replicas": args.num_replicas,
            "num_hits": args.num_hits,
            "mean_gap": args.mean_gap,
        }
        config = studies.Prop41Config(**{k: v for k, v in overrides.items() if v is not None})
        result = studies.run_prop41(config, bias_correction=_VARIANTS[args.variant])
        csv_path = os.path.join(args.output, "prop41.csv")
        png_path = os.path.join(args.output, "prop41.png")
        _write_rows(result.summary(), csv_path)
        plots.save_figure(plots.plot_prop41(result), png_path)
        print(f"Proposition 4.1: {result.num_valid} replicas without collisions, mean gap {config.mean_gap:g}")
        print(studies.markdown_table(result.summary()))
    else:
        stream = studies.SimulationStreamConfig(
            num_items=args.num_items,
            batch_size=args.batch_size,
            num_steps=args.steps,
            switch_step=None if args.switch_step < 0 else args.switch_step,
            seed=args.seed,
        )
        figure = int(args.figure)
        result = studies.run_figure(
            figure,
            stream,
            bias_correction=_VARIANTS[args.variant],
            eval_every=args.eval_every,
            target=args.target,
            total_buckets=args.total_buckets,
            estimator_seed=args.estimator_seed,
        )
        csv_path = os.path.join(args.output, f"figure{figure}.csv")
        png_path = os.path.join(args.output, f"figure{figure}.png")
        result.to_csv(csv_path)
        title = f"Figure {figure}: M={stream.num_items}, B={stream.batch_size}, switch at {stream.switch_step}"
        plots.save_figure(plots.plot_errors(result, title), png_path)
        steps = studies.checkpoint_steps(stream, args.eval_every)
        print(f"TV error (target: {args.target}) at steps {steps}:")
        for label, errors in result.at(steps).items():
            print(f"  {label:45s} " + " ".join(f"{e:.3f}" for e in errors))
        if args.variant == "both":
            print("Mean TV error by window, Algorithm 2/3 vs bias_correction:")
            print(studies.markdown_table(studies.variant_comparison(result)))
        rows = studies.compare_with_reference(result)
        if rows:
            reference_path = os.path.join(args.output, f"figure{figure}_reference.csv")
            _write_rows(rows, reference_path)
            worst = max(rows, key=lambda r: abs(r["rel_diff"]))
            print(
                f"vs the reference table: worst relative difference {worst['rel_diff']:+.1%} ({worst['label']}, t={worst['step']})"
            )
            print(f"Wrote {reference_path}")
    print(f"Wrote {csv_path} and {png_path} in {time.perf_counter() - start:.1f} s")
    return 0


def _write_rows(rows: list[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m yt_bias.cli.simulate``: the subcommand alone (same arguments)."""
    parser = argparse.ArgumentParser(prog="yt-bias simulate", description=__doc__.splitlines()[0])
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, TypeError) as error:
        print(f"yt-bias simulate: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
