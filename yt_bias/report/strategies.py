"""Section ``strategies``: negative-sampling strategies of the recall stage, the ranker variants, two stages.

Runs :func:`yt_bias.experiments.strategies.run_strategies` on the default data with impressions,
with a subset of the strategies (the ones the README discusses) to keep the report's wall time
bounded, and every ranker variant of the two-stage ablations; ``yt-bias experiment strategies`` runs
all the strategies.
"""

from __future__ import annotations

import dataclasses

from yt_bias.report.base import SectionResult, Settings, command_for, fmt_pm, provenance, put_stats, seeds_note, write_table

NAME = "strategies"
TITLE = "Negative sampling, ranking and two stages"
STRATEGIES = ("in-batch", "impressions-weak-positive", "impressions-hard-negative", "mined-hard")
QUICK_RANKERS = ("impressions-pointwise", "candidates-listwise")


def run(settings: Settings, out_dir: str) -> SectionResult:
    from yt_bias.experiments.ranking_ablations import ablation_rows, default_variant, paired
    from yt_bias.experiments.strategies import StrategiesConfig, format_tables, quick, run_strategies

    if settings.quick:
        config = dataclasses.replace(
            quick(), strategies=("in-batch", "impressions-weak-positive"), seeds=(0,), rankers=QUICK_RANKERS
        )
    else:
        config = dataclasses.replace(StrategiesConfig(), strategies=STRATEGIES)
    results = run_strategies(config, command=command_for(NAME, settings, "docs/report"))
    ks = tuple(sorted(set(config.base.eval.ks) | {config.band_k}))
    numbers: dict = {"ks": list(ks), "strategies": list(config.strategies), "band_k": config.band_k,
                     "pipeline_ks": list(config.pipeline_ks), "num_candidates": config.num_candidates}
    for name, runs in results["recall"].items():
        for key in [f"recall@{k}" for k in ks] + [f"recall@{config.band_k}/{b}" for b in ("head", "torso", "tail")]:
            put_stats(numbers, f"recall/{name}/{key}", [r[key] for r in runs])
        base = {r["seed"]: r for r in results["recall"].get("in-batch", [])}
        for k in ks:
            diffs = [r[f"recall@{k}"] - base[r["seed"]][f"recall@{k}"] for r in runs if r["seed"] in base]
            put_stats(numbers, f"vs_in_batch/{name}/recall@{k}", diffs)
    default = default_variant(config.ranking)
    runs = results["pipeline"]
    numbers["ranking/popularity/auc"] = results["ranking_baseline"]["auc"]
    numbers["default_ranker"] = default
    for name in config.rankers:
        for key in ("auc", "slate_auc"):
            put_stats(numbers, f"ranking/{name}/{key}", [r["variants"][name]["ranking"][key] for r in runs])
    keys = [f"{metric}@{k}" for k in config.pipeline_ks for metric in ("recall", "ndcg")]
    rows = ablation_rows(runs, default, config.num_candidates, config.depths)
    reference = rows[0]
    for key in keys:
        put_stats(numbers, f"pipeline/retrieval/{key}", [m[key] for m in reference.test])
    ablations = []
    for index, row in enumerate(rows[1:]):
        slot = "default" if row.label.startswith("**default**") else f"row{index}"
        for key in keys:
            put_stats(numbers, f"pipeline/{slot}/{key}", [m[key] for m in row.test])
            put_stats(numbers, f"pipeline/{slot}/delta/{key}", paired(row, reference, key))
        numbers[f"pipeline/{slot}/up"] = sum(d > 0 for d in paired(row, reference, "ndcg@10"))
        numbers[f"pipeline/{slot}/choices"] = [list(c) for c in row.choices]
        ablations.append({"slot": slot, "label": row.label})
    numbers["pipeline/rows"] = ablations
    table = write_table(out_dir, NAME, format_tables(results, config))
    return SectionResult(
        numbers=numbers, tables=[table],
        config={"strategies": list(config.strategies), "seeds": list(config.seeds), "epochs": config.base.train.epochs,
                "experiment": config.base.to_dict()},
        summary=f"{len(config.strategies)} strategies, {config.base.train.epochs} epochs, "
        + seeds_note(config.seeds),
    )


def readme_blocks(entry: dict) -> dict[str, str]:
    n = entry["numbers"]
    ks = n["ks"]
    mid = 50 if 50 in ks else ks[-1]
    lines = ["| recall-stage strategy | " + " | ".join(f"R@{k}" for k in ks) + f" | ΔR@{mid} vs in-batch (paired) |",
             "|---|" + "---|" * (len(ks) + 1)]
    for name in n["strategies"]:
        cells = [fmt_pm(n, f"recall/{name}/recall@{k}", 3) for k in ks]
        cells.append("(reference)" if name == "in-batch" else fmt_pm(n, f"vs_in_batch/{name}/recall@{mid}", 3))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    pk = n["pipeline_ks"]
    default = n.get("default_ranker")
    if default and "pipeline/default/ndcg@10/mean" in n:
        seeds = n["pipeline/retrieval/ndcg@10/n"]
        lines += [
            "",
            f"Two stages against retrieval alone on the test clicks (one in-batch retriever per seed, its top "
            f"{n['num_candidates']} re-ranked unless stated; blend weight w and depth chosen on validation requests held "
            f"out of the training period; paired differences over {seeds} seed{'s' if seeds != 1 else ''}):",
            "",
            "| two-stage order | " + " | ".join(f"ΔR@{k} | ΔNDCG@{k}" for k in pk) + " | NDCG@10 up |",
            "|---|" + "---|---|" * len(pk) + "---|",
            "| retrieval alone (absolute) | "
            + " | ".join(f"{fmt_pm(n, f'pipeline/retrieval/recall@{k}', 3)} | {fmt_pm(n, f'pipeline/retrieval/ndcg@{k}', 3)}" for k in pk)
            + " | - |",
        ]
        for row in n["pipeline/rows"]:
            slot = row["slot"]
            cells = " | ".join(
                f"{fmt_pm(n, f'pipeline/{slot}/delta/recall@{k}', 3)} | {fmt_pm(n, f'pipeline/{slot}/delta/ndcg@{k}', 3)}" for k in pk
            )
            lines.append(f"| {row['label']} | {cells} | {n[f'pipeline/{slot}/up']} of {seeds} |")
        lines += [
            "",
            f"Default two-stage pipeline ({default}): NDCG@10 {fmt_pm(n, 'pipeline/retrieval/ndcg@10', 3)} -> "
            f"{fmt_pm(n, 'pipeline/default/ndcg@10', 3)} (paired {fmt_pm(n, 'pipeline/default/delta/ndcg@10', 3)}); "
            f"ranker slate AUC {fmt_pm(n, f'ranking/{default}/slate_auc', 3)} (test impressions). "
            "Every row is from the one run below (its strategies.md lists each row's (depth, w) per seed); "
            "`yt-bias experiment strategies` runs the same ablations beside all nine recall-stage strategies.",
        ]
    lines += ["", provenance(entry)]
    return {NAME: "\n".join(lines)}
