"""The two-stage pipeline's ablations: which ranker, which blend, which depth beats retrieval alone.

Per seed, on the data with impressions:

1. :func:`~yt_bias.ranking.two_stage.validation_split` holds out the last ``validation_per_user``
   training requests of each user (the validation requests; the test clicks are never used to choose);
2. one recall-stage model (the ``retriever`` strategy) is trained on the remaining training requests;
   every ranker variant, and retrieval alone, uses this same retriever;
3. every ranker variant (:data:`RANKER_VARIANTS`) is trained on the same requests, then scores the
   retriever's top ``max(depths)`` of every validation and test request once;
4. every (depth, blend) of the grid orders the candidates by ``ranker logit + blend * retrieval logit``
   to that depth (:func:`~yt_bias.ranking.two_stage.two_stage_order`), on validation and on test;
5. on the synthetic data, the candidates ordered by the click model's own utility
   (:func:`~yt_bias.data.impressions.click_utility`) give the upper bound of any ranker at that depth.

The choices are made on validation NDCG@10 only: a variant's blend at a depth (``w on validation``),
and the default pipeline's (depth, blend) for the default variant (``config.ranking``). Tables report
the test metrics of each choice, with the paired difference to retrieval alone of the same seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from yt_bias.config import ExperimentConfig, NegativesConfig
from yt_bias.data.dataset import ITEM_INDEX, RecDataset
from yt_bias.data.impressions import click_utility, user_rows
from yt_bias.ranking.model import RankingConfig, evaluate_ranking, train_ranking
from yt_bias.ranking.two_stage import (
    order_metrics,
    ranker_logits,
    retrieval_logits,
    retrieve,
    sample_queries,
    two_stage_order,
    validation_split,
)
from yt_bias.experiments.strategy_variants import RANKER_VARIANTS
from yt_bias.training.train import fit

BLEND_GRID: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
SELECTION_KEY = "ndcg@10"


def variant_config(base: RankingConfig, name: str, seed: int) -> RankingConfig:
    """The ranker config of variant ``name`` (:data:`RANKER_VARIANTS`) on top of ``base``."""
    if name not in RANKER_VARIANTS:
        raise ValueError(f"ranker variant must be one of {sorted(RANKER_VARIANTS)}; received {name!r}.")
    return dataclasses.replace(base, seed=seed, **RANKER_VARIANTS[name])


def default_variant(config: RankingConfig) -> str:
    """The variant that ``config`` (the experiment's default ranker) is."""
    for name, fields in RANKER_VARIANTS.items():
        implied = {"retrieval_score": True, "unshown_weight": None, **fields}
        if all(getattr(config, field) == value for field, value in implied.items()):
            return name
    raise ValueError(f"the default RankingConfig is none of the variants {sorted(RANKER_VARIANTS)}: {config}.")


def _grid_key(depth: int, blend: float) -> str:
    return f"{depth}/{blend:g}"


def run_seed(
    dataset: RecDataset,
    base: ExperimentConfig,
    negatives: NegativesConfig,
    ranking: RankingConfig,
    variants: Sequence[str],
    depths: Sequence[int],
    blends: Sequence[float],
    ks: Sequence[int],
    seed: int,
    validation_per_user: int = 2,
    max_queries: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """One seed of the ablation (module docstring); returns ``{"seed", "retrieval": {split: metrics},
    "variants": {name: {"ranking": test-impression metrics, "grid": {"depth/blend": {split: metrics}}}}}``."""
    say = progress or (lambda message: None)
    held = validation_split(dataset, validation_per_user)
    run_config = dataclasses.replace(base, negatives=negatives, train=dataclasses.replace(base.train, seed=seed))
    retriever, _ = fit(run_config, held)
    width = max(max(depths), max(ks))
    splits = {}
    result: dict = {"seed": seed, "retrieval": {}, "variants": {}, "num_queries": {}}
    for split, data in (("validation", held), ("test", dataset)):
        queries = sample_queries(data.test, max_queries, seed)
        candidates = retrieve(retriever, data, queries, width, base.eval.exclude_seen)
        splits[split] = (data, queries, candidates, retrieval_logits(retriever, data, queries, candidates))
        result["retrieval"][split] = order_metrics(candidates, queries[ITEM_INDEX], ks)
        result["num_queries"][split] = len(candidates)
        if has_click_model(data):  # the upper bound: the candidates ordered by the click model's own utility
            utility = click_utility(data.truth, user_rows(queries["user_id"]), candidates)
            for depth in depths:
                top = two_stage_order(candidates, utility, depth=depth)
                result.setdefault("oracle", {}).setdefault(str(depth), {})[split] = order_metrics(top, queries[ITEM_INDEX], ks)
    say(f"two stages seed={seed}: retrieval alone NDCG@10 validation {result['retrieval']['validation']['ndcg@10']:.4f}, "
        f"test {result['retrieval']['test']['ndcg@10']:.4f}")
    for name in variants:
        ranker, info = train_ranking(held, variant_config(ranking, name, seed), retriever=retriever)
        metrics = evaluate_ranking(ranker, dataset, retriever)
        metrics.update(train_seconds=info["train_seconds"], num_examples=info["num_examples"])
        grid: dict = {}
        for split, (data, queries, candidates, recall) in splits.items():
            logits = ranker_logits(ranker, data, queries, candidates, retriever)
            for depth in depths:
                for blend in blends:
                    top = two_stage_order(candidates, logits, recall, blend, depth)
                    grid.setdefault(_grid_key(depth, blend), {})[split] = order_metrics(top, queries[ITEM_INDEX], ks)
        result["variants"][name] = {"ranking": metrics, "grid": grid}
        best = max(grid.values(), key=lambda cell: cell["validation"][SELECTION_KEY])
        say(f"  {name}: AUC {metrics['auc']:.4f}, best validation NDCG@10 {best['validation']['ndcg@10']:.4f} "
            f"(test {best['test']['ndcg@10']:.4f}), {info['train_seconds']:.0f} s")
    return result


def has_click_model(dataset: RecDataset) -> bool:
    """Whether ``dataset`` carries the synthetic ground truth of the slate click model."""
    truth = dataset.truth
    return all(key in truth for key in ("popularity", "user_vectors", "item_vectors")) and "impressions" in truth


def choose(grid: Mapping[str, Mapping], depths: Sequence[int] | None = None) -> tuple[int, float]:
    """The (depth, blend) of ``grid`` best at validation NDCG@10 (among ``depths``; ties: the first)."""
    best, best_value = None, -np.inf
    for key, cell in grid.items():
        depth, blend = int(key.split("/")[0]), float(key.split("/")[1])
        if depths is not None and depth not in depths:
            continue
        value = cell["validation"][SELECTION_KEY]
        if value > best_value:
            best, best_value = (depth, blend), value
    if best is None:
        raise ValueError(f"no grid cell at depths {list(depths or [])}; the grid has {sorted(grid)}.")
    return best


@dataclasses.dataclass(frozen=True)
class AblationRow:
    """One row of the ablation table: a label, the choice per seed, and the test metrics per seed."""

    label: str
    variant: str | None
    choices: list[tuple[int, float]]
    test: list[dict]
    validation: list[dict]


def ablation_rows(runs: Sequence[dict], default: str, fixed_depth: int, depths: Sequence[int]) -> list[AblationRow]:
    """The rows of the ablation table from :func:`run_seed` results (one per seed).

    Rows: retrieval alone; per variant, its ranker order alone (blend 0) and with the blend chosen on
    validation, both re-ranking ``fixed_depth``; the upper bound (the click model's true utility, on
    synthetic data); the default variant at every depth (blend chosen on validation); the default
    pipeline (default variant, depth and blend chosen on validation)."""
    rows = [AblationRow("retrieval alone", None, [], [r["retrieval"]["test"] for r in runs], [r["retrieval"]["validation"] for r in runs])]

    def row(label: str, variant: str, pick) -> AblationRow:
        choices = [pick(r["variants"][variant]["grid"]) for r in runs]
        cells = [r["variants"][variant]["grid"][_grid_key(*c)] for r, c in zip(runs, choices)]
        return AblationRow(label, variant, choices, [c["test"] for c in cells], [c["validation"] for c in cells])

    names = [n for n in RANKER_VARIANTS if n in runs[0]["variants"]]
    for name in names:
        rows.append(row(f"{name}: ranker order (w = 0), top {fixed_depth}", name, lambda g: (fixed_depth, 0.0)))
        rows.append(row(f"{name}: + w x retrieval logit (w on validation), top {fixed_depth}", name, lambda g: choose(g, (fixed_depth,))))
    if "oracle" in runs[0] and str(fixed_depth) in runs[0]["oracle"]:
        cells = [r["oracle"][str(fixed_depth)] for r in runs]
        rows.append(
            AblationRow(
                f"upper bound: ordered by the click model's true utility U, top {fixed_depth}",
                None,
                [(fixed_depth, 0.0)] * len(runs),
                [c["test"] for c in cells],
                [c["validation"] for c in cells],
            )
        )
    if default in names:
        for depth in depths:
            rows.append(row(f"{default}: top {depth} (w on validation)", default, lambda g, d=depth: choose(g, (d,))))
        rows.append(row(f"**default**: {default}, depth and w on validation", default, lambda g: choose(g)))
    return rows


def _stats(values: Sequence[float], digits: int = 4) -> str:
    values = np.asarray(values, dtype=np.float64)
    if len(values) > 1:
        return f"{values.mean():+.{digits}f} ± {values.std(ddof=1):.{digits}f}"
    return f"{values.mean():+.{digits}f}"


def paired(row: AblationRow, reference: AblationRow, key: str) -> list[float]:
    """``row`` minus ``reference`` at ``key``, seed by seed (test)."""
    return [a[key] - b[key] for a, b in zip(row.test, reference.test)]


def metric_keys(ks: Sequence[int]) -> list[str]:
    """``recall@K`` and ``ndcg@K`` for each K."""
    return [f"{metric}@{k}" for k in ks for metric in ("recall", "ndcg")]


def format_ablations(
    runs: Sequence[dict], default: str, fixed_depth: int, depths: Sequence[int], ks: Sequence[int], command: str
) -> str:
    """The ablation table in Markdown: test metrics of retrieval alone, then each row's paired
    difference to it (mean ± sd over seeds), the validation NDCG@10 and the choices per seed."""
    rows = ablation_rows(runs, default, fixed_depth, depths)
    keys = metric_keys(ks)
    reference = rows[0]
    n = len(runs)
    head = ["two-stage order"] + [f"Δ{k.replace('recall', 'R').replace('ndcg', 'NDCG')}" for k in keys]
    head += ["NDCG@10 up (seeds)", "validation NDCG@10", "(depth, w) per seed"]
    lines = [
        f"Two stages vs retrieval alone (test clicks; {n} seed{'s' if n != 1 else ''}; paired differences to retrieval alone of the same "
        "seed, mean ± sd; the choices on validation NDCG@10):",
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    absolute = " | ".join(
        f"{np.mean([m[k] for m in reference.test]):.4f}" + (f" ± {np.std([m[k] for m in reference.test], ddof=1):.4f}" if n > 1 else "")
        for k in keys
    )
    lines.append(
        f"| retrieval alone (absolute) | {absolute} | - | {np.mean([m['ndcg@10'] for m in reference.validation]):.4f} | - |"
    )
    for r in rows[1:]:
        cells = [_stats(paired(r, reference, k)) for k in keys]
        up = sum(d > 0 for d in paired(r, reference, "ndcg@10"))
        choices = ", ".join(f"({d}, {w:g})" for d, w in r.choices) if r.variant else "-"
        lines.append(
            f"| {r.label} | " + " | ".join(cells) + f" | {up} of {n} | {np.mean([m['ndcg@10'] for m in r.validation]):.4f} | {choices} |"
        )
    lines += ["", f"Command: `{command}`."]
    return "\n".join(lines)


def format_rankers(runs: Sequence[dict], baseline: Mapping[str, float]) -> str:
    """The ranker variants on the test impressions: pooled AUC, mean per-request AUC, log loss."""
    names = [n for n in RANKER_VARIANTS if n in runs[0]["variants"]]
    lines = [
        "Ranker variants on the test impressions (pooled AUC over all shown items; slate AUC: the mean over "
        "requests of the AUC within the request's slate; log loss of sigmoid(logit)):",
        "",
        "| ranker | AUC | slate AUC | log loss | examples | train s |",
        "|---|---|---|---|---|---|",
    ]

    def cell(values, digits=4):
        values = np.asarray(values, np.float64)
        return f"{values.mean():.{digits}f}" + (f" ± {values.std(ddof=1):.{digits}f}" if len(values) > 1 else "")

    for name in names:
        m = [r["variants"][name]["ranking"] for r in runs]
        lines.append(
            f"| {name} | {cell([x['auc'] for x in m])} | {cell([x['slate_auc'] for x in m])} | "
            f"{cell([x['log_loss'] for x in m])} | {int(np.mean([x['num_examples'] for x in m]))} | {cell([x['train_seconds'] for x in m], 0)} |"
        )
    lines.append(
        f"| popularity CTR (baseline) | {baseline['auc']:.4f} | {baseline['slate_auc']:.4f} | {baseline['log_loss']:.4f} | - | - |"
    )
    return "\n".join(lines)
