"""The negative-sampling strategies experiment: recall stage, ranking, two stages.

For every strategy and seed: train the two-tower model with that strategy's
:class:`~yt_bias.config.NegativesConfig` on the default data with impressions, and measure exact
Recall@K (overall and per popularity band: head / torso / tail by training frequency, from
:func:`yt_bias.evaluation.exact.popularity_bands`) and the training time per epoch. For every seed:
the two-stage ablations of :mod:`yt_bias.experiments.ranking_ablations` (one retriever, the
``retriever`` strategy, trained on the training requests minus each user's last
``validation_per_user``; every ranker variant on top of it; blend weight, depth and the default
pipeline chosen on those validation requests; test clicks reported with paired differences to
retrieval alone). ``yt-bias experiment strategies`` runs it; notebooks/03_negative_sampling.ipynb shows it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

from yt_bias.config import (
    DataConfig,
    EstimatorConfig,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    NegativesConfig,
    TrainConfig,
)
from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, RecDataset
from yt_bias.data.impressions import ImpressionsConfig, generate_with_impressions
from yt_bias.data.synthetic import SyntheticConfig
from yt_bias.evaluation.exact import exclusion_lists, popularity_bands, retrieval_metrics
from yt_bias.retrieval.embedding import embed
from yt_bias.retrieval.exact import top_k
from yt_bias.experiments.ranking_ablations import (
    BLEND_GRID,
    default_variant,
    format_ablations,
    format_rankers,
    run_seed,
)
from yt_bias.experiments.results import write_results
from yt_bias.experiments.strategy_variants import RANKER_VARIANTS, STRATEGIES
from yt_bias.ranking.model import RankingConfig, evaluate_ranking
from yt_bias.training.train import fit


@dataclasses.dataclass(frozen=True)
class StrategiesConfig:
    """Data, model and grid of the experiment (defaults: about 15 minutes on 2 CPU cores)."""

    synthetic: SyntheticConfig = dataclasses.field(
        default_factory=lambda: SyntheticConfig(num_users=1500, num_items=800, interactions_per_user=20)
    )
    impressions: ImpressionsConfig = dataclasses.field(default_factory=ImpressionsConfig)
    base: ExperimentConfig = dataclasses.field(
        default_factory=lambda: ExperimentConfig(
            name="strategies",
            model=ModelConfig(embedding_dim=16, hidden_units=(64, 32)),
            estimator=EstimatorConfig(hash_size=1 << 14),
            train=TrainConfig(batch_size=256, epochs=5, learning_rate=0.2, verbose=0),
            eval=EvalConfig(ks=(10, 50, 100)),
        )
    )
    ranking: RankingConfig = dataclasses.field(default_factory=RankingConfig)
    strategies: tuple[str, ...] = tuple(STRATEGIES)
    seeds: tuple[int, ...] = (0, 1, 2)
    band_k: int = 50
    num_candidates: int = 100
    pipeline_ks: tuple[int, ...] = (10, 50)
    pipeline_queries: int | None = 3000
    retriever: str = "in-batch"
    rankers: tuple[str, ...] = tuple(RANKER_VARIANTS)
    depths: tuple[int, ...] = (20, 50, 100, 300)
    blends: tuple[float, ...] = BLEND_GRID
    validation_per_user: int = 2

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"strategies must be among {sorted(STRATEGIES)}; received unknown {unknown}.")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed; received ().")
        if self.retriever not in STRATEGIES:
            raise ValueError(f"retriever must be one of {sorted(STRATEGIES)}; received {self.retriever!r}.")
        unknown = [r for r in self.rankers if r not in RANKER_VARIANTS]
        if unknown:
            raise ValueError(f"rankers must be among {sorted(RANKER_VARIANTS)}; received unknown {unknown}.")
        if not self.depths or min(self.depths) < 1:
            raise ValueError(f"depths must be re-ranking depths >= 1; received {self.depths}.")
        if any(b < 0 for b in self.blends) or not self.blends:
            raise ValueError(f"blends must be weights >= 0; received {self.blends}.")
        if self.num_candidates not in self.depths:
            raise ValueError(f"num_candidates ({self.num_candidates}) must be one of depths {self.depths}.")
        default_variant(self.ranking)  # the default ranker is one of the variants


def quick() -> StrategiesConfig:
    """Tiny settings for tests and the notebook in CI (about a minute)."""
    base = ExperimentConfig(
        name="strategies-quick",
        model=ModelConfig(embedding_dim=8, hidden_units=(16, 8)),
        estimator=EstimatorConfig(hash_size=1024),
        train=TrainConfig(batch_size=64, epochs=1, verbose=0),
        eval=EvalConfig(ks=(10, 50)),
        data=DataConfig(),
    )
    return StrategiesConfig(
        synthetic=SyntheticConfig(num_users=150, num_items=100, interactions_per_user=8, num_categories=5, history_length=4),
        impressions=ImpressionsConfig(slate_size=6, min_slate_size=4),
        base=base,
        ranking=RankingConfig(epochs=1, hidden_units=(16,), batch_size=256, candidate_depth=50, unshown_per_request=5),
        strategies=tuple(STRATEGIES),
        seeds=(0, 1),
        band_k=10,
        num_candidates=50,
        pipeline_ks=(10, 50),
        pipeline_queries=None,
        depths=(10, 20, 50),
        blends=(0.0, 0.1, 1.0),
    )


def _scaled(negatives: NegativesConfig, batch_size: int, num_items: int) -> NegativesConfig:
    """Keeps the strategy's sizes meaningful on small data: B', M and the mining pool at most the corpus / a few batches."""
    return dataclasses.replace(
        negatives,
        mixed_uniform=min(negatives.mixed_uniform, num_items),
        memory_size=min(negatives.memory_size, 4 * batch_size),
        mined_pool=min(negatives.mined_pool, num_items),
    )


def recall_stage_metrics(model, dataset: RecDataset, ks: Sequence[int], bands: np.ndarray, exclude_seen: bool = True) -> dict:
    """Recall@K, NDCG@K, coverage@K and per-band Recall@K of the held-out positives (seen items excluded)."""
    positives = dataset.test_positives()
    queries = embed(model.query_tower, positives)
    items = embed(model.item_tower, dataset.items)
    exclude = exclusion_lists(dataset, positives[QUERY_KEY]) if exclude_seen else None
    top = top_k(lambda a, b: queries[a:b] @ items.T, len(queries), len(items), max(ks), exclude)
    return retrieval_metrics(top, positives[ITEM_INDEX], dataset.num_items, bands, ks)


def run_strategies(
    config: StrategiesConfig,
    workdir: str | None = None,
    dataset: RecDataset | None = None,
    progress: Callable[[str], None] | None = None,
    command: str = "yt-bias experiment strategies",
) -> dict:
    """Runs the grid; returns ``{"recall": {strategy: [run...]}, "ranking_baseline": {...}, "pipeline": [per seed...], ...}``
    (``pipeline``: :func:`~yt_bias.experiments.ranking_ablations.run_seed` per seed)."""
    say = progress or (lambda message: None)
    start = time.perf_counter()
    if dataset is None:
        dataset = generate_with_impressions(config.synthetic, config.impressions, config.base.model.embedding_dim)
    bands = popularity_bands(dataset.item_counts("train"))
    ks = tuple(sorted(set(config.base.eval.ks) | {config.band_k}))
    results: dict = {
        "recall": {},
        "ranking_baseline": None,
        "pipeline": [],
        "data": {
            "num_items": dataset.num_items,
            "num_train": dataset.num_train,
            "num_test": dataset.num_test,
            "band_sizes": {b: int((bands == b).sum()) for b in ("head", "torso", "tail")},
        },
    }
    for name in config.strategies:
        negatives = _scaled(STRATEGIES[name], config.base.train.batch_size, dataset.num_items)
        runs = []
        for seed in config.seeds:
            run_config = dataclasses.replace(
                config.base, negatives=negatives, train=dataclasses.replace(config.base.train, seed=seed)
            )
            model, info = fit(run_config, dataset)
            metrics = recall_stage_metrics(model, dataset, ks, bands, config.base.eval.exclude_seen)
            metrics.update(
                seed=seed,
                train_seconds=info["train_seconds"],
                seconds_per_epoch=info["train_seconds"] / config.base.train.epochs,
                final_loss=info["loss_history"][-1],
            )
            runs.append(metrics)
            say(
                f"{name} seed={seed}: "
                + ", ".join(f"R@{k}={metrics[f'recall@{k}']:.4f}" for k in ks)
                + f", {metrics['seconds_per_epoch']:.1f} s/epoch"
            )
        results["recall"][name] = runs
    results["ranking_baseline"] = _strip(evaluate_ranking(None, dataset))
    negatives = _scaled(STRATEGIES[config.retriever], config.base.train.batch_size, dataset.num_items)
    for seed in config.seeds:
        results["pipeline"].append(
            run_seed(
                dataset, config.base, negatives, config.ranking, config.rankers, config.depths, config.blends,
                config.pipeline_ks, seed, config.validation_per_user, config.pipeline_queries, say,
            )
        )
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    results["command"] = command
    results["config"] = dataclasses.asdict(config)
    if workdir:
        write_results(workdir, "strategies", results, format_tables(results, config))
    return results


def _strip(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "bins"}


def _cell(runs: Sequence[dict], key: str, digits: int = 4) -> str:
    values = np.array([r[key] for r in runs], dtype=np.float64)
    if len(values) > 1:
        return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"
    return f"{values.mean():.{digits}f}"


def format_tables(results: dict, config: StrategiesConfig) -> str:
    """The summary as Markdown: recall-stage table, ranker variants, two-stage ablations (mean ± std over seeds)."""
    ks = tuple(sorted(set(config.base.eval.ks) | {config.band_k}))
    bk = config.band_k
    head = ["strategy"] + [f"R@{k}" for k in ks] + [f"R@{bk} head", f"R@{bk} torso", f"R@{bk} tail", "s/epoch"]
    lines = [
        f"Recall stage (n seeds = {len(config.seeds)}; mean ± std):",
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    for name, runs in results["recall"].items():
        cells = [_cell(runs, f"recall@{k}") for k in ks]
        cells += [_cell(runs, f"recall@{bk}/{b}") for b in ("head", "torso", "tail")]
        cells.append(_cell(runs, "seconds_per_epoch", 1))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if results["pipeline"]:
        default = default_variant(config.ranking)
        lines += ["", format_rankers(results["pipeline"], results["ranking_baseline"]), ""]
        lines.append(
            format_ablations(
                results["pipeline"], default, config.num_candidates, config.depths, config.pipeline_ks,
                results.get("command", "yt-bias experiment strategies"),
            )
        )
    lines += ["", f"Wall time: {results['wall_seconds']:.0f} s."]
    return "\n".join(lines)
