"""Section ``strategies``: negative-sampling strategies of the recall stage, the pCTR ranker, two stages.

Runs :func:`yt_bias.experiments.strategies.run_strategies` on the default data with impressions,
with a subset of the strategies (the ones the README discusses) to keep the report's wall time
bounded; ``yt-bias experiment strategies`` runs all of them.
"""

from __future__ import annotations

import dataclasses

from yt_bias.report.base import SectionResult, Settings, fmt_pm, provenance, put_stats, write_table

NAME = "strategies"
TITLE = "Negative sampling, ranking and two stages"
STRATEGIES = ("in-batch", "impressions-weak-positive", "impressions-hard-negative", "mined-hard")


def run(settings: Settings, out_dir: str) -> SectionResult:
    from yt_bias.experiments.strategies import StrategiesConfig, format_tables, quick, run_strategies

    if settings.quick:
        config = dataclasses.replace(quick(), strategies=("in-batch", "impressions-weak-positive"), seeds=(0,))
    else:
        config = dataclasses.replace(StrategiesConfig(), strategies=STRATEGIES)
    results = run_strategies(config)
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
    for key in ("auc", "log_loss"):
        put_stats(numbers, f"ranking/pctr/{key}", [r[key] for r in results["ranking"]])
        numbers[f"ranking/popularity/{key}"] = results["ranking_baseline"][key]
    for stage in ("retrieval", "two_stage"):
        for k in config.pipeline_ks:
            for metric in ("recall", "ndcg"):
                put_stats(numbers, f"pipeline/{stage}/{metric}@{k}", [p.get(f"{stage}/{metric}@{k}") for p in results["pipeline"]])
    table = write_table(out_dir, NAME, format_tables(results, config))
    return SectionResult(
        numbers=numbers, tables=[table],
        config={"strategies": list(config.strategies), "seeds": list(config.seeds), "epochs": config.base.train.epochs,
                "experiment": config.base.to_dict()},
        summary=f"{len(config.strategies)} strategies, {config.base.train.epochs} epochs, seeds "
        f"{', '.join(map(str, config.seeds))} (mean ± sample sd)",
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
    lines += ["", f"pCTR ranker AUC {fmt_pm(n, 'ranking/pctr/auc', 3)} against {n['ranking/popularity/auc']:.3f} for "
              "popularity CTR (test impressions)."]
    pk = n["pipeline_ks"]
    if f"pipeline/retrieval/recall@{pk[-1]}/mean" in n:
        parts = []
        for k in pk:
            parts.append(f"R@{k} {fmt_pm(n, f'pipeline/retrieval/recall@{k}', 3)} -> {fmt_pm(n, f'pipeline/two_stage/recall@{k}', 3)}, "
                         f"NDCG@{k} {fmt_pm(n, f'pipeline/retrieval/ndcg@{k}', 3)} -> {fmt_pm(n, f'pipeline/two_stage/ndcg@{k}', 3)}")
        lines.append(f"Re-ranking the in-batch retriever's top {n['num_candidates']}: " + "; ".join(parts) + ".")
    lines += ["", provenance(entry)]
    return {NAME: "\n".join(lines)}
