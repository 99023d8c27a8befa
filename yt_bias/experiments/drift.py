"""Day-by-day training under popularity drift, judged on the next day: which frequency source wins.

For every drift kind (:mod:`yt_bias.data.drift`), seed and frequency source: draw the days, then
train one two-tower model day by day (the day loop of ``yt-bias train --stream``,
:func:`yt_bias.training.day_by_day.train_days`: ``model.fit`` on each day, the model's own
corrected train step, the source's start/end-of-day hooks) with that source giving ``p``, and
after each day d measure

* next-day Recall@K and NDCG@K on day d + 1's positive rows (:mod:`yt_bias.evaluation.next_day`: items the
  user had on days <= d excluded, candidates = the items alive on day d + 1);
* Recall@K on the fixed held-out set of the synthetic data (a second, undrifted metric);
* the TV error ``(1/2B) sum_j |p_hat_j - p_dj|`` against day d's exact per-batch probabilities,
  averaged over the day's training steps (``tv_error``, what the loss used) and at its end;
* for streaming estimators, the weight that ``B0`` still has in the read-out (``b0_weight``: the
  row-weighted mean of ``(1 - alpha)^h_j`` with ``h_j`` the expected steps that held item j so far).
  A day with ``b0_weight > 0.1`` counts as warm-up, later days as steady state; past-only tables
  are in warm-up on day 0 (no past yet).

Sources (:func:`yt_bias.training.day_by_day.build_frequency_source`): ``none`` (no correction), ``stream-a<alpha>[-m<m>][-bc]`` (the
streaming estimator, m hashes, bias-corrected read-out), the past-only tables ``frozen-day0``,
``cumulative``, ``previous-day``, and two oracles: ``oracle-current-day`` (the exact table of the
day being trained) and ``oracle-all-days`` (one table of every day of the stream: it knows the
future). Every source of one (kind, seed) sees the same days, initial weights and batches, so
differences are paired.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from yt_bias._keras import keras, tf
from yt_bias.config import DataConfig, EstimatorConfig, EvalConfig, ExperimentConfig, ModelConfig, TrainConfig
from yt_bias.data.dataset import ITEM_INDEX, RecDataset, batch_frequencies
from yt_bias.data.drift import DRIFT_KINDS, DriftConfig, DriftStream, drift_days, stream_dataset
from yt_bias.data.loading import load_dataset
from yt_bias.data.synthetic import SyntheticConfig
from yt_bias.evaluation.exact import evaluate_model
from yt_bias.core.frequency import total_variation_error
from yt_bias.evaluation.next_day import SeenItems, evaluate_next_day
from yt_bias.experiments.results import write_results
from yt_bias.runs.model import build_model
from yt_bias.training.day_by_day import (
    PAST_ONLY_SOURCES,
    DayHook,
    build_frequency_source,
    parse_frequency_source,
    train_days,
)

__all__ = [
    "DriftExperimentConfig", "default", "format_table", "quick", "run_drift", "summarize", "warmup_profile",
]

DEFAULT_SOURCES = (
    "stream-a0.01",
    "stream-a0.1",
    "stream-a0.01-bc",
    "stream-a0.1-m2",
    "frozen-day0",
    "cumulative",
    "previous-day",
    "oracle-current-day",
    "oracle-all-days",
    "none",
)
WARMUP_B0_WEIGHT = 0.1


@dataclasses.dataclass(frozen=True)
class DriftExperimentConfig:
    """Data, model, drift and grid of the experiment (defaults: about 20 minutes on 2 CPU cores).

    Attributes:
      base: data (synthetic), model, estimator defaults (H, B0), batch size, learning rate, eval Ks.
      drift: the days (number, rows per day, strength, ...); ``kind`` and ``seed`` come from the grid.
      kinds: drift kinds to run.
      sources: frequency sources to compare (see :func:`~yt_bias.training.day_by_day.build_frequency_source`).
      seeds: one stream and one initialisation per seed.
      reference: the source the paired differences are taken against.
      k: the cut-off of the table and the figure.
      epochs_per_day: passes over each day.
    """

    base: ExperimentConfig = dataclasses.field(
        default_factory=lambda: ExperimentConfig(
            name="drift",
            data=DataConfig(
                synthetic=SyntheticConfig(num_users=3000, num_items=200, interactions_per_user=12, num_categories=5,
                                          history_length=4)
            ),
            model=ModelConfig(embedding_dim=8, hidden_units=(16, 8)),
            estimator=EstimatorConfig(hash_size=1024),
            train=TrainConfig(batch_size=64, verbose=0),
            eval=EvalConfig(ks=(10, 50)),
        )
    )
    drift: DriftConfig = DriftConfig(days=6, rows_per_day=3000, shift=2.0)
    kinds: tuple[str, ...] = DRIFT_KINDS
    sources: tuple[str, ...] = DEFAULT_SOURCES
    seeds: tuple[int, ...] = (0, 1, 2)
    reference: str = "stream-a0.01"
    k: int = 50
    epochs_per_day: int = 1

    def __post_init__(self) -> None:
        unknown = [kind for kind in self.kinds if kind not in DRIFT_KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"DriftExperimentConfig.kinds must be a non-empty subset of {DRIFT_KINDS}; received {self.kinds}.")
        if not self.sources or not self.seeds:
            raise ValueError("DriftExperimentConfig.sources and seeds must be non-empty.")
        for source in self.sources:
            parse_frequency_source(source)
        if self.reference not in self.sources:
            raise ValueError(f"DriftExperimentConfig.reference must be one of sources {self.sources}; received {self.reference!r}.")
        if self.k not in self.base.eval.ks:
            raise ValueError(f"DriftExperimentConfig.k must be one of base.eval.ks {self.base.eval.ks}; received {self.k}.")
        if self.drift.days < 2:
            raise ValueError(f"DriftExperimentConfig.drift.days must be >= 2 (a next day to evaluate); received {self.drift.days}.")
        if self.drift.rows_per_day < self.base.train.batch_size:
            raise ValueError(
                f"DriftExperimentConfig.drift.rows_per_day ({self.drift.rows_per_day}) must be >= the batch size "
                f"({self.base.train.batch_size})."
            )


def default() -> DriftExperimentConfig:
    """The documented run: 5 drift kinds x 10 sources x 3 seeds, 6 days of 3000 rows."""
    return DriftExperimentConfig()


def quick() -> DriftExperimentConfig:
    """A smoke run (tests): 2 drift kinds, 4 sources, 2 seeds, 3 small days."""
    base = DriftExperimentConfig().base
    base = dataclasses.replace(
        base,
        data=DataConfig(synthetic=SyntheticConfig(num_users=400, num_items=60, interactions_per_user=8, num_categories=3,
                                                  history_length=3)),
        model=ModelConfig(embedding_dim=4, hidden_units=(8,)),
        train=dataclasses.replace(base.train, batch_size=32),
        eval=EvalConfig(ks=(10,)),
    )
    return DriftExperimentConfig(
        base=base,
        drift=DriftConfig(days=3, rows_per_day=320, shift=2.0),
        kinds=("none", "lifecycle"),
        sources=("stream-a0.1", "cumulative", "oracle-current-day", "none"),
        seeds=(0, 1),
        reference="stream-a0.1",
        k=10,
    )


class _ProbabilityProbe(keras.callbacks.Callback):
    """Reads the source's probabilities of every item every ``every`` steps of a day."""

    def __init__(self, frequency, item_ids: np.ndarray, every: int):
        super().__init__()
        self.frequency = frequency
        self.item_ids = tf.constant(item_ids)
        self.every = max(1, every)
        self.reads: list[np.ndarray] = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if batch % self.every == 0:
            self.reads.append(self.frequency.probability(self.item_ids).numpy())


def _b0_weight(source: dict, expected_hits: np.ndarray, counts: np.ndarray) -> float:
    """Row-weighted mean weight of B0 in a streaming estimator's read-out (0 for exact tables)."""
    if source["kind"] != "stream":
        return 0.0
    if source["bias_correction"]:
        # The debiased read-out removes B0 once a bucket has an observed gap; Poisson(h) sightings.
        weight = np.exp(-expected_hits) * (1.0 + expected_hits)
    else:
        weight = (1.0 - source["alpha"]) ** expected_hits
    return float((counts * weight).sum() / max(counts.sum(), 1))


def warmup_profile(
    days: Sequence[dict], num_items: int, batch_size: int, alpha: float = 0.01, initial_interval: float = 100.0
) -> list[dict[str, float]]:
    """What an estimator that never left ``B0`` would score, day by day, without training anything.

    For each day: the TV error of reading ``1 / B0`` for every item and of reading 0, against the
    day's exact inclusion probabilities, and the row-weighted weight ``(1 - alpha)^h`` that ``B0``
    keeps at the day's end in a streaming estimator (``h``: expected steps that held the item).
    """
    hits = np.zeros(num_items)
    profile = []
    for d, rows in enumerate(days):
        counts = np.bincount(np.asarray(rows[ITEM_INDEX]), minlength=num_items).astype(np.float64)
        truth = batch_frequencies(counts, batch_size, "inclusion")
        hits += (len(rows[ITEM_INDEX]) // batch_size) * truth
        profile.append({
            "day": d,
            "tv_error_b0_guess": total_variation_error(np.full(num_items, 1.0 / initial_interval), truth, batch_size),
            "tv_error_zero": total_variation_error(np.zeros(num_items), truth, batch_size),
            "b0_weight_end": float((counts * (1.0 - alpha) ** hits).sum() / counts.sum()),
        })
    return profile


class _DriftDay(DayHook):
    """The drift experiment's day: B0's weight, the source's TV error during and at the end of the day, next-day and held-out metrics."""

    def __init__(self, config: DriftExperimentConfig, dataset: RecDataset, stream: DriftStream, source: dict, frequency):
        self.config, self.dataset, self.stream, self.source, self.frequency = config, dataset, stream, source, frequency
        self.model = None
        self.seen = SeenItems()
        self.expected_hits = np.zeros(dataset.num_items)
        self.probe = None
        self.truth = self.inclusion = None
        self.steps = 0

    def start_of_day(self, day, rows, record):
        base, num_items = self.config.base, self.dataset.num_items
        batch, estimand = base.train.batch_size, base.estimator.estimand
        self.counts = np.bincount(rows[ITEM_INDEX], minlength=num_items).astype(np.float64)
        self.steps = self.config.epochs_per_day * (len(rows[ITEM_INDEX]) // batch)
        self.truth = batch_frequencies(self.counts, batch, estimand)
        self.inclusion = self.truth if estimand == "inclusion" else batch_frequencies(self.counts, batch, "inclusion")
        if self.frequency is None:
            return []
        self.probe = _ProbabilityProbe(self.frequency, self.dataset.item_ids, self.steps // (5 * self.config.epochs_per_day) or 1)
        # B0's weight at the middle of the day: hits of the past days plus half of today's.
        record["b0_weight"] = _b0_weight(self.source, self.expected_hits + 0.5 * self.steps * self.inclusion, self.counts)
        return [self.probe]

    def end_of_day(self, day, rows, record):
        self.expected_hits += self.steps * self.inclusion
        if self.frequency is None:
            return
        base, num_items = self.config.base, self.dataset.num_items
        batch, truth = base.train.batch_size, self.truth
        record["tv_error"] = float(np.mean([total_variation_error(p, truth, batch) for p in self.probe.reads]))
        end = self.frequency.probability(tf.constant(self.dataset.item_ids)).numpy()
        record["tv_error_end"] = total_variation_error(end, truth, batch)
        b0 = np.full(num_items, 1.0 / base.estimator.initial_interval)
        record["tv_error_b0_guess"] = total_variation_error(b0, truth, batch)
        record["tv_error_zero"] = total_variation_error(np.zeros(num_items), truth, batch)
        record["warmup"] = bool(record["b0_weight"] > WARMUP_B0_WEIGHT or (day == 0 and self.source["kind"] in PAST_ONLY_SOURCES))

    def after_day(self, day, rows, record):
        base, days = self.config.base, self.stream.days
        self.seen.add(rows)
        if day + 1 < len(days):
            record.update(
                evaluate_next_day(self.model, days[day + 1], self.dataset.items, base.eval.ks,
                                  seen=self.seen if base.eval.exclude_seen else None, candidates=self.stream.alive[day + 1])
            )
        heldout = evaluate_model(self.model, self.dataset, base.eval.ks, base.eval.exclude_seen)
        record.update({f"heldout_{k}": v for k, v in heldout.items()})


def run_one(
    config: DriftExperimentConfig, dataset: RecDataset, stream: DriftStream, source_name: str, seed: int
) -> list[dict[str, Any]]:
    """Trains one model day by day with one frequency source (:func:`~yt_bias.training.day_by_day.train_days`); its per-day metrics."""
    base = config.base
    source = parse_frequency_source(source_name)
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    frequency = build_frequency_source(source_name, base, dataset, stream.days)
    model = build_model(base, dataset, frequency=frequency)
    day = _DriftDay(config, dataset, stream, source, frequency)
    day.model = model
    return train_days(model, stream.days, dataset.item_ids, base.train.batch_size, seed, config.epochs_per_day, hooks=(day,))


def run_drift(
    config: DriftExperimentConfig, workdir: str | None = None, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Runs every kind x seed x source; writes drift.json, drift.md and drift.png to ``workdir``.

    Returns:
      ``{"config", "runs": [{"kind", "seed", "source", "seconds", "days": [...]}], "summary", "seconds"}``.
    """
    began = time.perf_counter()
    base_dataset = load_dataset(config.base.data, config.base.model.embedding_dim)
    runs = []
    for kind in config.kinds:
        for seed in config.seeds:
            stream = drift_days(base_dataset, dataclasses.replace(config.drift, kind=kind, seed=seed))
            dataset = stream_dataset(base_dataset, stream)
            for source in config.sources:
                start = time.perf_counter()
                days = run_one(config, dataset, stream, source, seed)
                seconds = round(time.perf_counter() - start, 2)
                runs.append({"kind": kind, "seed": seed, "source": source, "seconds": seconds, "days": days})
                if progress is not None:
                    score = _run_score(days, f"next_day_recall@{config.k}")
                    progress(f"{kind:9s} seed {seed} {source:18s} next-day R@{config.k} {score:.4f} ({seconds:.1f} s)")
    results = {
        "config": dataclasses.asdict(config),
        "runs": runs,
        "summary": summarize(runs, config),
        "seconds": round(time.perf_counter() - began, 1),
    }
    if workdir:
        write_results(workdir, "drift", results, format_table(results, config))
        from yt_bias.studies.plots import save_figure

        save_figure(plot_drift(results, config), os.path.join(workdir, "drift.png"))
    return results


def _run_score(days: Sequence[dict], key: str) -> float:
    values = [day[key] for day in days if key in day]
    return float(np.mean(values)) if values else float("nan")


def _tv_split(days: Sequence[dict]) -> tuple[float, float, int]:
    warm = [day["tv_error"] for day in days if "tv_error" in day and day["warmup"]]
    steady = [day["tv_error"] for day in days if "tv_error" in day and not day["warmup"]]
    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    return mean(warm), mean(steady), len(warm)


def summarize(runs: Sequence[dict], config: DriftExperimentConfig) -> list[dict[str, Any]]:
    """Per kind and source: means over seeds and paired differences against the reference.

    Each seed's score is the mean over the evaluated days (after days 0 .. D - 2) of next-day
    Recall@k (NDCG@k); the paired difference is source minus reference on the same seed.
    """
    recall, ndcg = f"next_day_recall@{config.k}", f"next_day_ndcg@{config.k}"
    index = {(r["kind"], r["seed"], r["source"]): r["days"] for r in runs}
    rows = []
    for kind in config.kinds:
        for source in config.sources:
            per_seed, diffs, ndcgs, heldout, warm, steady, warm_days = [], [], [], [], [], [], []
            for seed in config.seeds:
                days = index.get((kind, seed, source))
                if days is None:
                    continue
                score = _run_score(days, recall)
                per_seed.append(score)
                ndcgs.append(_run_score(days, ndcg))
                heldout.append(days[-1][f"heldout_recall@{config.k}"])
                reference = index.get((kind, seed, config.reference))
                if reference is not None:
                    diffs.append(score - _run_score(reference, recall))
                w, s, n = _tv_split(days)
                warm.append(w)
                steady.append(s)
                warm_days.append(n)
            if not per_seed:
                continue
            rows.append(
                {
                    "kind": kind,
                    "source": source,
                    "seeds": len(per_seed),
                    "next_day_recall": float(np.mean(per_seed)),
                    "diff_vs_reference": float(np.mean(diffs)) if diffs else float("nan"),
                    "diff_sd": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else float("nan"),
                    "next_day_ndcg": float(np.mean(ndcgs)),
                    "heldout_recall_last_day": float(np.mean(heldout)),
                    "tv_warmup": float(np.nanmean(warm)) if not np.all(np.isnan(warm)) else float("nan"),
                    "tv_steady": float(np.nanmean(steady)) if not np.all(np.isnan(steady)) else float("nan"),
                    "warmup_days": float(np.mean(warm_days)),
                }
            )
    return rows


def _fmt(value: float, digits: int = 4, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def format_table(results: dict, config: DriftExperimentConfig) -> str:
    """The summary as a Markdown table, one block of rows per drift kind."""
    k = config.k
    lines = [
        f"Next-day Recall@{k} / NDCG@{k}: mean over the evaluated days (after days 0..{config.drift.days - 2}) and "
        f"{len(config.seeds)} seeds; diff: paired difference against {config.reference} (mean, sd over seeds). "
        f"TV error: mean over each day's steps against that day's exact probabilities, warm-up days "
        f"(B0 weight > {WARMUP_B0_WEIGHT}, or day 0 of a past-only table) apart from steady days. "
        "Oracles read days before training on them.",
        "",
        f"| drift | source | next-day R@{k} | diff vs {config.reference} (sd) | next-day NDCG@{k} | held-out R@{k} "
        "(last day) | TV warm-up (days) | TV steady |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["summary"]:
        diff = "(reference)" if row["source"] == config.reference else (
            f"{_fmt(row['diff_vs_reference'], signed=True)} ({_fmt(row['diff_sd'])})"
        )
        label = row["source"] + (" (oracle)" if row["source"].startswith("oracle") else "")
        warm = "-" if not np.isfinite(row["tv_warmup"]) else f"{row['tv_warmup']:.4f} ({row['warmup_days']:.1f})"
        lines.append(
            f"| {row['kind']} | {label} | {_fmt(row['next_day_recall'])} | {diff} | {_fmt(row['next_day_ndcg'])} | "
            f"{_fmt(row['heldout_recall_last_day'])} | {warm} | {_fmt(row['tv_steady'])} |"
        )
    return "\n".join(lines)


def plot_drift(results: dict, config: DriftExperimentConfig):
    """Next-day Recall@k and TV error by day, one row per drift kind, one line per source (mean over seeds)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    kinds = list(config.kinds)
    fig = Figure(figsize=(13, 3.2 * len(kinds)), layout="constrained")
    axes = fig.subplots(len(kinds), 2, squeeze=False)
    recall = f"next_day_recall@{config.k}"
    for row, kind in enumerate(kinds):
        ax_r, ax_tv = axes[row]
        for i, source in enumerate(config.sources):
            runs = [r["days"] for r in results["runs"] if r["kind"] == kind and r["source"] == source]
            if not runs:
                continue
            style = dict(color=f"C{i % 10}", linestyle="--" if source.startswith("oracle") else "-", linewidth=1.3,
                         marker="o", markersize=3, label=source)
            days = [day["day"] for day in runs[0] if recall in day]
            ax_r.plot(days, np.mean([[day[recall] for day in r if recall in day] for r in runs], axis=0), **style)
            if "tv_error" in runs[0][0]:
                ax_tv.plot([day["day"] for day in runs[0]], np.mean([[day["tv_error"] for day in r] for r in runs], axis=0),
                           **style)
        ax_r.set_title(f"{kind}: next-day Recall@{config.k} (trained on days <= d, tested on day d+1)", fontsize=10)
        ax_tv.set_title(f"{kind}: TV error vs day d's exact probabilities (mean over its steps)", fontsize=10)
        for ax in (ax_r, ax_tv):
            ax.set_xlabel("day d")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        ax_tv.set_ylim(bottom=0)
    axes[0][0].legend(fontsize=7, ncol=2)
    return fig
