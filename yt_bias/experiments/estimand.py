"""Which estimand should the correction use? The study that chose the default.

The in-batch softmax with ``candidates="rows"`` keeps one column per row of the batch, so an item
with c rows in the batch adds c * exp(s) / p to the log-sum-exp: the correction that matches
those columns is ``p = E[rows of the item per batch]`` (the ``expected_count`` estimand). The
``inclusion`` estimand (``p = P(item in batch)`` <= 1) matches deduplicated columns
(``candidates="unique"``). The study trains, on one data set:

* ``plain-sfx`` (no correction);
* for each pairing in :data:`PAIRINGS` (``inclusion+rows``, the first release's default and
  inconsistent for repeated items; ``expected_count+rows``; ``inclusion+unique``), the streaming
  estimator and the oracle (exact per-batch frequencies from the training counts),

over seeds, and evaluates each identically: exact top-K over the corpus, Recall@K with the
user's training items excluded and with every earlier item of the user excluded
(``eval.exclude='known'``), and Recall@100 by popularity band.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from yt_bias._keras import keras
from yt_bias.config import ExperimentConfig
from yt_bias.data.dataset import ITEM_INDEX, RecDataset
from yt_bias.evaluation.exact import (
    BANDS,
    evaluate_most_popular,
    exclusions_for,
    popularity_bands,
    recall_at_k,
    retrieval_metrics,
)
from yt_bias.retrieval.embedding import embed
from yt_bias.retrieval.exact import top_k
from yt_bias.training.train import estimator_error, fit

PAIRINGS = (("inclusion", "rows"), ("expected_count", "rows"), ("inclusion", "unique"))
SOURCES = ("streaming", "oracle")
BAND_K = 100


def method_names() -> list[str]:
    """``plain-sfx`` and ``ESTIMAND+CANDIDATES SOURCE`` for every pairing and source."""
    return ["plain-sfx"] + [f"{e}+{c} {s}" for e, c in PAIRINGS for s in SOURCES]


def method_config(base: ExperimentConfig, method: str) -> ExperimentConfig:
    """The configuration of one method name of :func:`method_names`."""
    if method == "plain-sfx":
        return dataclasses.replace(base, variant="plain-sfx")
    try:
        pairing, source = method.split(" ")
        estimand, candidates = pairing.split("+")
    except ValueError:
        raise ValueError(f"method must be one of {method_names()}; received {method!r}.") from None
    if (estimand, candidates) not in PAIRINGS or source not in SOURCES:
        raise ValueError(f"method must be one of {method_names()}; received {method!r}.")
    return dataclasses.replace(
        base,
        variant="correct-sfx" if source == "streaming" else "correct-sfx-oracle",
        estimator=dataclasses.replace(base.estimator, estimand=estimand),
        # The study compares pairings on purpose, the unpaired inclusion+rows among them.
        model=dataclasses.replace(base.model, candidates=candidates, allow_unpaired_estimand=True),
    )


def evaluate_both_exclusions(model, dataset: RecDataset, ks: Sequence[int], bands: np.ndarray) -> dict[str, float]:
    """Retrieval metrics with training items excluded, plus ``known/recall@K`` with every earlier item excluded."""
    positives = dataset.test_positives()
    queries = embed(model.query_tower, positives)
    items = embed(model.item_tower, dataset.items)

    def scores(a, b):
        return queries[a:b] @ items.T

    metrics = {}
    for mode, prefix in (("train", ""), ("known", "known/")):
        top = top_k(scores, len(queries), dataset.num_items, max(ks), exclusions_for(dataset, positives, mode))
        found = retrieval_metrics(top, positives[ITEM_INDEX], dataset.num_items, bands, ks)
        metrics.update({prefix + key: value for key, value in found.items()})
    return metrics


def duplicate_statistics(dataset: RecDataset, batch_size: int, seed: int = 0, batches: int = 50) -> dict[str, float]:
    """How often items repeat within a shuffled training batch (what makes the estimands differ)."""
    rng = np.random.default_rng(seed)
    index = np.asarray(dataset.train[ITEM_INDEX])
    distinct, shared, top = [], [], []
    popular = np.bincount(index).argmax()
    for _ in range(batches):
        batch = index[rng.permutation(len(index))[:batch_size]]
        values, counts = np.unique(batch, return_counts=True)
        distinct.append(len(values))
        shared.append(float(np.sum(counts[counts > 1])) / len(batch))
        top.append(int(np.sum(batch == popular)))
    expected = dataset.step_probabilities(batch_size, "expected_count")
    rows_weight = np.bincount(index, minlength=dataset.num_items) / len(index)
    inclusion = dataset.step_probabilities(batch_size, "inclusion")
    gap = np.log(np.maximum(expected, 1e-12)) - np.log(np.maximum(inclusion, 1e-12))
    return {
        "batch_size": batch_size,
        "distinct_items_per_batch": float(np.mean(distinct)),
        "rows_sharing_their_item": float(np.mean(shared)),
        "top_item_rows_per_batch": float(np.mean(top)),
        "items_with_expected_count_above_1": int(np.sum(expected > 1.0)),
        "mean_log_gap_over_training_rows": float(np.sum(rows_weight * gap)),
        "max_log_gap": float(gap.max()),
    }


def reference_rankings(dataset: RecDataset, ks: Sequence[int], exclude: str = "train") -> dict[str, dict[str, float]]:
    """Recall@K of rankings that need no training, on the study's protocol.

    ``most-popular`` (training counts) always; on the built-in data also the generator's own
    score ``w log pop_j + a <u, v_j>`` (``generator score``) and the same without its popularity
    term (``generator affinity only``): how much of a model's recall the data's popularity term
    alone can explain.
    """
    out = {"most-popular": evaluate_most_popular(dataset, ks, exclude=exclude)}
    truth = dataset.truth
    if not {"user_vectors", "item_vectors", "popularity"} <= set(truth):
        return out
    positives = dataset.test_positives()
    users = np.array([int(u.split("_")[1]) for u in np.asarray(positives["user_id"]).astype(str)])
    excluded = exclusions_for(dataset, positives, exclude)
    affinity = truth["affinity_scale"] * truth["user_vectors"][users] @ truth["item_vectors"].T
    popularity = truth["popularity_weight"] * np.log(truth["popularity"])[None, :]
    for name, scores in (("generator score", affinity + popularity), ("generator affinity only", affinity)):
        top = top_k(lambda a, b, s=scores: s[a:b], len(users), dataset.num_items, max(ks), excluded)
        out[name] = recall_at_k(top, positives[ITEM_INDEX], ks)
    return out


def run_estimand_study(
    base: ExperimentConfig,
    dataset: RecDataset,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    on_run: Callable[[dict], None] | None = None,
    progress: bool = True,
) -> list[dict]:
    """Trains every (method, seed) on ``dataset``; returns one record per run.

    Each record: ``method``, ``seed``, every metric of :func:`evaluate_both_exclusions`,
    ``estimator_tv_error`` (against the estimand's exact frequencies), ``train_seconds``.
    ``on_run`` is called after each run (to save partial results).
    """
    methods = list(methods or method_names())
    for method in methods:
        method_config(base, method)  # validate names before training anything
    bands = popularity_bands(dataset.item_counts("train"))
    ks = base.eval.ks
    bar = keras.utils.Progbar(len(methods) * len(seeds), unit_name="run") if progress else None
    records = []
    for seed in seeds:
        for method in methods:
            config = method_config(base, method)
            config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=int(seed), verbose=0))
            keras.backend.clear_session()
            model, info = fit(config, dataset)
            record = {"method": method, "seed": int(seed)}
            record.update(evaluate_both_exclusions(model, dataset, ks, bands))
            record.update(
                estimator_tv_error=estimator_error(model, dataset, config.train.batch_size),
                train_seconds=info["train_seconds"],
                final_loss=info["loss_history"][-1],
            )
            records.append(record)
            if on_run is not None:
                on_run(record)
            if bar is not None:
                bar.add(1, values=[("R@50", record["recall@50"])] if 50 in ks else None)
    return records


def summarize(records: Sequence[dict], key: str) -> dict[str, tuple[float, float, int]]:
    """method -> (mean, sample std, count) of ``key`` over its runs."""
    out = {}
    for method in dict.fromkeys(r["method"] for r in records):
        values = [r[key] for r in records if r["method"] == method and r.get(key) is not None]
        if values:
            out[method] = (float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values))
    return out


def paired_difference(records: Sequence[dict], key: str, method: str, reference: str) -> tuple[float, float, int]:
    """Mean and sample std over seeds of ``key(method) - key(reference)`` (paired by seed)."""
    by_seed = {}
    for r in records:
        by_seed.setdefault(r["seed"], {})[r["method"]] = r[key]
    diffs = [v[method] - v[reference] for v in by_seed.values() if method in v and reference in v]
    if not diffs:
        return float("nan"), float("nan"), 0
    return float(np.mean(diffs)), float(np.std(diffs, ddof=1)) if len(diffs) > 1 else 0.0, len(diffs)


def format_table(records: Sequence[dict], ks: Sequence[int], reference: str = "inclusion+rows streaming") -> str:
    """Markdown: Recall@K (training items excluded), R@50 with known items excluded, R@100 by band,
    TV error, and the paired difference of R@50 / R@100 against ``reference``."""
    def cell(stats, method):
        if method not in stats:
            return "-"
        mean, std, n = stats[method]
        return f"{mean:.4f}" + (f" ± {std:.4f}" if n > 1 else "")

    methods = list(dict.fromkeys(r["method"] for r in records))
    mid = 50 if 50 in ks else max(ks)
    band_k = BAND_K if BAND_K in ks else max(ks)
    columns = [(f"R@{k}", f"recall@{k}") for k in ks] + [(f"R@{mid} known", f"known/recall@{mid}")]
    columns += [(f"R@{band_k} {b}", f"recall@{band_k}/{b}") for b in BANDS] + [("TV error", "estimator_tv_error")]
    stats = {key: summarize(records, key) for _, key in columns}
    lines = ["| method | " + " | ".join(h for h, _ in columns) + " |", "|---|" + "---|" * len(columns)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(cell(stats[key], m) for _, key in columns) + " |")
    if reference in methods:
        lines += ["", f"Paired difference against {reference} (mean ± sd over seeds):", ""]
        paired = [k for k in (50, 100) if k in ks] or [max(ks)]
        lines += ["| method | " + " | ".join(f"ΔR@{k}" for k in paired) + " |", "|---|" + "---|" * len(paired)]
        for m in methods:
            if m == reference:
                continue
            cells = []
            for key in (f"recall@{k}" for k in paired):
                mean, std, n = paired_difference(records, key, m, reference)
                cells.append(f"{mean:+.4f} ± {std:.4f}" if n else "-")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save(path: str, payload: dict) -> None:
    """Writes ``payload`` as JSON atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), seconds)``."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
