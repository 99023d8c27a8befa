"""The paper's offline comparison (Tables 1 and 2) on one data set, with Recall@K, NDCG@K, coverage and popularity bands.

Grid: tau in {0.05, 0.07, 0.14} x {plain-sfx, correct-sfx (streaming estimator), correct-sfx-oracle
(exact per-batch probabilities from the training counts)} x seeds, plus the most-popular baseline
and TFRS's ``tasks.Retrieval`` (our towers, the same data, optimizer, temperature and the same
exact count-based ``candidate_sampling_probability`` as the oracle, with the paper's mean
reduction) as the field's reference implementation. Every method is evaluated identically:
exact top-K over the whole corpus, items seen in training excluded (switchable), and
Recall@K, NDCG@K, coverage@K and Recall@K by popularity band (head / torso / tail by training
frequency, see :func:`~yt_bias.evaluation.exact.popularity_bands`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence

import numpy as np

from yt_bias._keras import keras
from yt_bias.config import DataConfig, EstimatorConfig, EvalConfig, ExperimentConfig, ModelConfig, TrainConfig
from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, RecDataset, make_tf_dataset
from yt_bias.evaluation.exact import BANDS, evaluate_most_popular, exclusion_lists, popularity_bands, retrieval_metrics
from yt_bias.retrieval.embedding import embed
from yt_bias.retrieval.exact import top_k
from yt_bias.evaluation.exact import check_ks
from yt_bias.experiments.comparison import ComparisonRow
from yt_bias.core.frequency import OracleFrequency
from yt_bias.runs.model import build_optimizer
from yt_bias.training.train import fit

TEMPERATURES = (0.05, 0.07, 0.14)
VARIANTS = ("plain-sfx", "correct-sfx", "correct-sfx-oracle")
TFRS_METHOD = "tfrs-retrieval"
BAND_K = 100


def movielens_config() -> ExperimentConfig:
    """The settings of the MovieLens-100K table (docs/real_data.md): temporal split, seen items excluded."""
    return ExperimentConfig(
        name="table1-movielens",
        data=DataConfig(source="recbole", split="temporal", test_fraction=0.2, history_length=10),
        model=ModelConfig(embedding_dim=32, hidden_units=(64, 32)),
        estimator=EstimatorConfig(hash_size=1 << 14, alpha=0.01),
        train=TrainConfig(batch_size=512, epochs=6, optimizer="adagrad", learning_rate=0.2, verbose=0),
        eval=EvalConfig(ks=(10, 50, 100, 300), exclude_seen=True),
    )


def evaluate_towers(
    query_tower, item_tower, dataset: RecDataset, ks: Sequence[int], exclude_seen: bool = True, bands: np.ndarray | None = None
) -> dict[str, float]:
    """All retrieval metrics of two towers on the held-out positives (exact top-K over the corpus)."""
    positives = dataset.test_positives()
    queries = embed(query_tower, positives)
    items = embed(item_tower, dataset.items)
    exclude = exclusion_lists(dataset, positives[QUERY_KEY]) if exclude_seen else None
    top = top_k(lambda a, b: queries[a:b] @ items.T, len(queries), dataset.num_items, max(ks), exclude)
    return retrieval_metrics(top, positives[ITEM_INDEX], dataset.num_items, bands, ks)


def fit_tfrs(config: ExperimentConfig, dataset: RecDataset):
    """Trains TFRS's Retrieval task on our towers with exact count-based sampling probabilities."""
    from yt_bias.integrations.tfrs_retrieval import TFRSRetrievalModel

    keras.utils.set_random_seed(config.train.seed)
    estimand = config.estimator.estimand
    probabilities = np.maximum(dataset.step_probabilities(config.train.batch_size, estimand), 1e-9)
    m = config.model
    model = TFRSRetrievalModel(
        dataset.features,
        hidden_units=m.hidden_units,
        normalize=m.normalize,
        temperature=m.temperature,
        frequency=OracleFrequency(dataset.item_ids, probabilities, estimand=estimand, name="frequency"),
        remove_accidental_hits=m.remove_accidental_hits,
        share_embeddings=m.share_embeddings,
        reduction="mean",
    )
    model.compile(optimizer=build_optimizer(config))
    data = make_tf_dataset(dataset.examples("train"), config.train.batch_size, seed=config.train.seed)
    start = time.perf_counter()
    history = model.fit(data, epochs=config.train.epochs, verbose=config.train.verbose)
    return model, {
        "train_seconds": round(time.perf_counter() - start, 2),
        "loss_history": [float(v) for v in history.history["loss"]],
    }


def run_table1(
    config: ExperimentConfig,
    dataset: RecDataset,
    temperatures: Sequence[float] = TEMPERATURES,
    variants: Sequence[str] = VARIANTS,
    seeds: Sequence[int] = (0, 1, 2),
    include_tfrs: bool = True,
    progress: bool = True,
) -> list[ComparisonRow]:
    """Runs the grid; returns one :class:`ComparisonRow` per method (most-popular first)."""
    if not temperatures or not seeds:
        raise ValueError(f"run_table1 needs temperatures and seeds; received {temperatures!r} and {seeds!r}.")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct (a repeated seed is no spread over seeds); received {list(seeds)}.")
    ks, exclude = config.eval.ks, config.eval.exclude_seen
    check_ks(ks, dataset.num_items)  # a K beyond the corpus would read Recall@K = 1.0
    bands = popularity_bands(dataset.item_counts("train"))
    rows = [ComparisonRow("most-popular", None, [evaluate_most_popular(dataset, ks, exclude, bands=bands)])]
    methods = list(variants) + ([TFRS_METHOD] if include_tfrs else [])
    bar = keras.utils.Progbar(len(methods) * len(temperatures) * len(seeds), unit_name="run") if progress else None
    for temperature in temperatures:
        for method in methods:
            row = ComparisonRow(method, float(temperature), [])
            for seed in seeds:
                run = dataclasses.replace(
                    config,
                    variant=method if method != TFRS_METHOD else "correct-sfx-oracle",
                    model=dataclasses.replace(config.model, temperature=float(temperature)),
                    train=dataclasses.replace(config.train, seed=int(seed)),
                )
                keras.backend.clear_session()
                model, info = fit_tfrs(run, dataset) if method == TFRS_METHOD else fit(run, dataset)
                metrics = evaluate_towers(model.query_tower, model.item_tower, dataset, ks, exclude, bands)
                metrics.update(seed=int(seed), train_seconds=info["train_seconds"], final_loss=info["loss_history"][-1])
                row.runs.append(metrics)
                if bar is not None:
                    bar.add(1, values=[("R@50", metrics["recall@50"])] if 50 in ks else None)
            rows.append(row)
    return rows


def _cell(row: ComparisonRow, key: str) -> str:
    cell = f"{row.mean(key):.4f}"
    return cell + (f" ± {row.std(key):.4f}" if len(row.runs) > 1 else "")


def _name(row: ComparisonRow) -> str:
    return row.method if row.temperature is None else f"{row.method} tau={row.temperature:g}"


def format_table1(rows: Sequence[ComparisonRow], ks: Sequence[int], band_k: int = BAND_K) -> str:
    """Two Markdown tables: Recall/NDCG/coverage (mean ± std over seeds), and Recall@band_k by popularity band."""
    nd_k, cov_k = max(k for k in ks if k <= 50) if min(ks) <= 50 else min(ks), band_k if band_k in ks else max(ks)
    keys = [(f"R@{k}", f"recall@{k}") for k in ks] + [(f"NDCG@{nd_k}", f"ndcg@{nd_k}"), (f"Cov@{cov_k}", f"coverage@{cov_k}")]
    lines = ["| method | " + " | ".join(h for h, _ in keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {_name(r)} | " + " | ".join(_cell(r, k) for _, k in keys) + " |" for r in rows]
    bk = band_k if band_k in ks else max(ks)
    first = rows[0].runs[0]
    shares = ", ".join(f"{b} {first[f'share/{b}']:.0%}" for b in BANDS)
    lines += [
        "",
        f"Recall@{bk} by popularity band of the held-out item (share of test positives: {shares}):",
        "",
        "| method | " + " | ".join(BANDS) + " |",
        "|---|" + "---|" * len(BANDS),
    ]
    lines += [f"| {_name(r)} | " + " | ".join(_cell(r, f"recall@{bk}/{b}") for b in BANDS) + " |" for r in rows]
    return "\n".join(lines)


def save_table1(rows: Sequence[ComparisonRow], ks: Sequence[int], workdir: str, header: str = "") -> str:
    """Writes ``table1.md`` and ``table1.json`` (every run's metrics) into ``workdir``; returns the Markdown."""
    os.makedirs(workdir, exist_ok=True)
    table = format_table1(rows, ks)
    with open(os.path.join(workdir, "table1.md"), "w", encoding="utf-8") as f:
        f.write((header + "\n\n" if header else "") + table + "\n")
    data = [{"method": r.method, "temperature": r.temperature, "runs": r.runs} for r in rows]
    with open(os.path.join(workdir, "table1.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    return table
