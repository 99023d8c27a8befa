"""Sequential training, day by day (section 5 of the paper): per-day checkpoints, resume, per-day metrics.

The stream is a list of days, each a dict of training-ready rows (the columns of
:meth:`RecDataset.examples`). Two sources:

* ``generator``: the synthetic (or loaded) data set's training rows, resampled per day with a
  popularity shift: day d draws rows with weights ``exp(shift * (2d/(D-1) - 1) * z_item)`` for a
  fixed random direction ``z`` over items, so item popularity drifts over the days and the
  estimator has to track it (the paper's reason for a streaming estimator).
* ``files``: ``day_*.npz`` files in a directory, read in name order (:func:`write_days` writes them);
  each is checked against the data set (columns, shapes, finite rewards, item indices in range
  and consistent with the item IDs) before training starts.

:func:`train_stream` trains on the days in order, in a run directory
(:mod:`yt_bias.training.run_directory`). After each day it commits two things, in this order: a checkpoint
(the run directory's layout: model, optimizer, estimator arrays, plus the number of completed days), then ``stream_state.json``, which
names that checkpoint and holds every day's metrics (loss, estimator TV error against the day's
exact per-step frequencies on the estimator's estimand scale, Recall@K on the held-out set, next-day Recall@K and NDCG@K on day
d + 1's rows) and a hash of the day's rows. With ``variant=correct-sfx-oracle`` the probabilities
come from the whole training set, fixed before day 0: an oracle that knows every day, labelled so
in the metrics (``frequency_source``); past-only sources are in :mod:`yt_bias.core.frequency_baselines`. A run
killed at any point resumes from the last state whose checkpoint loads: a checkpoint newer than
the state is ignored (its day is trained again), a damaged latest checkpoint falls back to the
previous one with a warning, and a day whose rows changed since it was trained is refused.

Each day's shuffle and each day's random draws (random negatives) are seeded by
``(train.seed, day index)``, so a resumed run sees the same batches and negatives in the same
order as an uninterrupted one: its estimator arrays are identical, and its model equal up to
floating-point non-determinism.
"""

from __future__ import annotations

import glob
import os
import dataclasses
import re
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from yt_bias._keras import keras, tf
from yt_bias.config import ExperimentConfig, StreamConfig
from yt_bias.core.corpus import array_digest
from yt_bias.core.frequency_baselines import (
    CumulativeFrequency,
    CurrentDayOracle,
    FixedTableFrequency,
    FrozenFrequency,
    PreviousDayFrequency,
)
from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, REWARD, RecDataset, batch_frequencies, make_tf_dataset
from yt_bias.data.drift import DRIFT_KINDS, DriftConfig, drift_days, stream_dataset
from yt_bias.data.loading import load_dataset
from yt_bias.evaluation.exact import check_ks, evaluate_model
from yt_bias.evaluation.next_day import next_day_metrics
from yt_bias.features import validate_examples
from yt_bias.training.divergence import DivergenceGuard
from yt_bias.runs.model import build_frequency, build_model
from yt_bias.runs.reader import VOLATILE_FIELDS, read_json, read_npz
from yt_bias.training.run_directory import (
    RunConflict,
    RunDirectory,
    estimator_tv_error,
    model_checkpoint,
    write_json_atomic,
    write_npz_atomic,
)

__all__ = ["STATE_FILE", "check_day", "day_step_probabilities", "file_days", "generator_days", "train_stream", "write_days"]

STATE_FILE = "stream_state.json"
# variant correct-sfx-oracle in stream mode: one table of the whole training set, fixed before day 0.
ORACLE_LABEL = "oracle: exact table of the whole training set, fixed before day 0 (not past-only: knows every day)"


def generator_days(dataset: RecDataset, stream: StreamConfig, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """The days of the generator source: the training rows resampled with a drifting popularity.

    Returns:
      ``stream.days`` dicts of rows (``rows_per_day`` each, default: training rows / days).
    """
    rows = dataset.examples("train")
    rows[QUERY_KEY] = np.asarray(dataset.train[QUERY_KEY])  # whose row it is: next-day seen-item exclusion
    count = dataset.num_train
    per_day = stream.rows_per_day or max(1, count // stream.days)
    direction = np.random.default_rng([seed, 7919]).normal(size=dataset.num_items)
    item = np.asarray(rows[ITEM_INDEX])
    days = []
    for d in range(stream.days):
        position = 2.0 * d / (stream.days - 1) - 1.0 if stream.days > 1 else 0.0
        weight = np.exp(stream.popularity_shift * position * direction)[item]
        rng = np.random.default_rng([seed, d])
        index = np.sort(rng.choice(count, size=per_day, replace=per_day > count, p=weight / weight.sum()))
        days.append({name: np.asarray(values)[index] for name, values in rows.items()})
    return days


def write_days(days: list[dict[str, np.ndarray]], directory: str) -> list[str]:
    """Writes days as ``day_000.npz``, ``day_001.npz``, ... (the ``files`` source); returns the paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for d, rows in enumerate(days):
        path = os.path.join(directory, f"day_{d:03d}.npz")
        write_npz_atomic(path, rows)
        paths.append(path)
    return paths


def file_days(directory: str) -> list[dict[str, np.ndarray]]:
    """Reads the ``day_*.npz`` files of ``directory`` in name order.

    Raises:
      FileNotFoundError: not a directory, or no day file. ValueError: a file that is not a readable npz.
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"stream.path={directory!r} is not a directory; expected a directory of day_*.npz files.")
    paths = sorted(glob.glob(os.path.join(directory, "day_*.npz")))
    if not paths:
        raise FileNotFoundError(f"stream.path={directory!r}: no day_*.npz files (write them with yt_bias.training.day_by_day.write_days).")
    return [read_npz(path, "stream day") for path in paths]


def check_day(rows: dict[str, np.ndarray], dataset: RecDataset, where: str) -> int:
    """Checks one day's rows against the data set; returns the number of rows.

    Raises:
      ValueError: a missing column or feature, a wrong shape, a NaN/negative reward, an item index
        out of range, or an item index whose item ID column disagrees with the corpus (row named).
    """
    features = dataset.features
    count = validate_examples(rows, tuple(features.query) + tuple(features.item), where=where)
    for column in (REWARD, ITEM_INDEX):
        if column not in rows:
            raise ValueError(f"{where}: column '{column}' is missing; present: {sorted(rows)}.")
        if len(rows[column]) != count:
            raise ValueError(f"{where}: column '{column}' has {len(rows[column])} rows; expected {count}.")
    if count == 0:
        raise ValueError(f"{where}: no rows; expected at least one.")
    index = np.asarray(rows[ITEM_INDEX])
    if not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"{where}: '{ITEM_INDEX}' must be integers; received dtype {index.dtype}.")
    bad = np.flatnonzero((index < 0) | (index >= dataset.num_items))
    if len(bad):
        raise ValueError(
            f"{where}: '{ITEM_INDEX}' must be in [0, {dataset.num_items}); row {bad[0]} has {index[bad[0]]}."
        )
    reward = np.asarray(rows[REWARD])
    if reward.dtype.kind not in "fiub":
        raise ValueError(f"{where}: '{REWARD}' must be numbers; received dtype {reward.dtype}.")
    bad = np.flatnonzero(~np.isfinite(reward.astype(np.float64)) | (reward < 0))
    if len(bad):
        raise ValueError(f"{where}: '{REWARD}' must be finite and >= 0; row {bad[0]} has {reward[bad[0]]}.")
    item_id = features.item_id
    if item_id in rows:
        expected = dataset.item_ids[index]
        bad = np.flatnonzero(np.asarray(rows[item_id]).astype(str) != expected)
        if len(bad):
            raise ValueError(
                f"{where}: row {bad[0]} has {ITEM_INDEX}={index[bad[0]]}, which is item {expected[bad[0]]!r} of the "
                f"corpus, but its '{item_id}' is {str(rows[item_id][bad[0]])!r}; the day was written for another corpus."
            )
    return count


def day_step_probabilities(item_index: np.ndarray, num_items: int, batch_size: int, estimand: str = "inclusion") -> np.ndarray:
    """Exact per-batch frequency of each item in a uniformly shuffled batch of one day: [num_items].

    With n rows of which c_j show item j (as :meth:`RecDataset.step_probabilities`):
    ``1 - C(n - c_j, B) / C(n, B)`` for ``estimand="inclusion"``, ``B c_j / n`` for ``"expected_count"``.
    """
    return batch_frequencies(np.bincount(np.asarray(item_index), minlength=num_items), batch_size, estimand)


def _stream_days(config: ExperimentConfig, dataset: RecDataset):
    """The checked days of ``config.stream``, a name for each, the data set to train on, and the items alive each day.

    Returns:
      ``(days, names, dataset, alive)``: with ``stream.drift_kind`` the days are drawn from the
      synthetic data's generative model under that drift (:func:`yt_bias.data.drift.drift_days`),
      the data set's ID vocabulary is cut to the items alive on day 0 and ``alive`` is
      [days, num_items] bool; otherwise ``dataset`` unchanged and ``alive`` None.
    Raises:
      ValueError: a bad day, a day smaller than one batch, an unknown drift kind, or a drift with day files.
    """
    stream, alive = config.stream, None
    if stream.drift_kind:
        if stream.drift_kind not in DRIFT_KINDS:
            raise ValueError(f"stream.drift_kind must be one of {DRIFT_KINDS} (or empty); received {stream.drift_kind!r}.")
        if stream.source != "generator":
            raise ValueError(f"stream.drift_kind draws its own days; it needs stream.source='generator', received {stream.source!r}.")
        drift = DriftConfig(kind=stream.drift_kind, days=stream.days, rows_per_day=stream.rows_per_day or max(1, dataset.num_train // stream.days),
                            shift=stream.popularity_shift, seed=config.train.seed)
        drawn = drift_days(dataset, drift)
        days, alive, dataset = drawn.days, drawn.alive, stream_dataset(dataset, drawn)
        names = [f"{stream.drift_kind} drift day {d}" for d in range(len(days))]
    elif stream.source == "files":
        if not stream.path:
            raise ValueError("stream.source='files' needs stream.path, a directory of day_*.npz files.")
        days = file_days(stream.path)
        names = sorted(glob.glob(os.path.join(stream.path, "day_*.npz")))
    else:
        days = generator_days(dataset, stream, seed=config.train.seed)
        names = [f"generator day {d}" for d in range(len(days))]
    for rows, name in zip(days, names):
        count = check_day(rows, dataset, name)
        if count < config.train.batch_size:
            raise ValueError(f"{name}: {count} rows, fewer than train.batch_size={config.train.batch_size}; expected at least one batch.")
    return days, names, dataset, alive


# ----------------------------------------------------------------------------- frequency sources by name
PAST_ONLY_SOURCES = ("frozen-day0", "cumulative", "previous-day")
TABLE_SOURCES = (*PAST_ONLY_SOURCES, "oracle-current-day", "oracle-all-days")
_STREAMING_SOURCE = re.compile(r"^stream-a(?P<alpha>[0-9.eE-]+)(?:-m(?P<m>\d+))?(?P<bc>-bc)?$")


def parse_frequency_source(name: str) -> dict[str, Any]:
    """What a frequency-source name means: ``{"kind"}`` (+ ``alpha``, ``num_hashes``, ``bias_correction`` for streaming).

    Raises:
      ValueError: an unknown name, or an alpha outside (0, 1].
    """
    if name == "none" or name in TABLE_SOURCES:
        return {"kind": name}
    match = _STREAMING_SOURCE.match(name)
    if match is None:
        raise ValueError(
            f"Unknown frequency source {name!r}; expected 'none', one of {TABLE_SOURCES} or "
            "'stream-a<alpha>[-m<hashes>][-bc]' (e.g. stream-a0.01, stream-a0.1-m2, stream-a0.01-bc)."
        )
    alpha = float(match["alpha"])
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"frequency source {name!r}: alpha must be in (0, 1]; received {alpha}.")
    return {"kind": "stream", "alpha": alpha, "num_hashes": int(match["m"] or 1), "bias_correction": bool(match["bc"])}


def build_frequency_source(name: str, config: ExperimentConfig, dataset: RecDataset, days: Sequence[dict]):
    """The frequency source ``name`` for a model trained on ``days``.

    Args:
      name: ``none``; ``stream-a<alpha>[-m<m>][-bc]`` (the streaming estimator with that alpha, m
        hashes, bias-corrected read-out); the past-only tables ``frozen-day0`` (day 0's counts),
        ``cumulative`` (every past day's), ``previous-day`` (yesterday's); the oracles
        ``oracle-current-day`` (the day being trained) and ``oracle-all-days`` (every day of the
        stream: it knows the future) (:mod:`yt_bias.core.frequency_baselines`).
      config: the estimator defaults (H, B0, seed, estimand) and the batch size.
      dataset: the corpus.
      days: the stream (``oracle-all-days`` counts all of it).
    Returns:
      A frequency source, or None for ``none``.
    Raises:
      ValueError: an unknown name.
    """
    spec = parse_frequency_source(name)
    batch = config.train.batch_size
    estimand = config.estimator.estimand
    kind = spec["kind"]
    if kind == "none":
        return None
    if kind == "stream":
        estimator = dataclasses.replace(
            config.estimator, alpha=spec["alpha"], num_hashes=spec["num_hashes"], bias_correction=spec["bias_correction"]
        )
        return build_frequency(dataclasses.replace(config, variant="correct-sfx", estimator=estimator), dataset)
    if kind == "oracle-all-days":
        ids = np.concatenate([dataset.item_ids[np.asarray(day[ITEM_INDEX])] for day in days])
        return FixedTableFrequency(ids, batch, estimand=estimand, uses_future=True, name="frequency")
    table = {
        "frozen-day0": FrozenFrequency,
        "cumulative": CumulativeFrequency,
        "previous-day": PreviousDayFrequency,
        "oracle-current-day": CurrentDayOracle,
    }[kind]
    return table(batch, estimand=estimand, initial_probability=1.0 / config.estimator.initial_interval, name="frequency")


# ----------------------------------------------------------------------------- the day loop
class DayHook:
    """What a caller of :func:`train_days` does around each day (override the steps it needs).

    Per day the loop calls, in order: the frequency source's ``start_of_day(ids)``, every hook's
    :meth:`start_of_day` (which may return Keras callbacks for the day's ``fit``), the day's
    training, every hook's :meth:`end_of_day` (the source still holds the day's state), the
    source's ``end_of_day(ids)``, every hook's :meth:`after_day` (evaluation, commits).
    ``record`` is the day's metrics dict (``day`` and, after training, ``loss``); hooks add to it.
    """

    def start_of_day(self, day: int, rows: dict[str, np.ndarray], record: dict[str, Any]) -> list:
        return []

    def end_of_day(self, day: int, rows: dict[str, np.ndarray], record: dict[str, Any]) -> None:
        return None

    def after_day(self, day: int, rows: dict[str, np.ndarray], record: dict[str, Any]) -> None:
        return None


def train_days(
    model,
    days: Sequence[dict[str, np.ndarray]],
    item_ids: np.ndarray,
    batch_size: int,
    seed: int,
    epochs_per_day: int = 1,
    hooks: Sequence[DayHook] = (),
    start: int = 0,
    verbose: int = 0,
) -> list[dict[str, Any]]:
    """Trains ``model`` on ``days[start:]`` in order, one ``fit`` a day, with the source's and the hooks' day steps.

    Day d's rows are shuffled with the seed ``seed * 100003 + d`` (a resumed run sees the same
    batches as an uninterrupted one).

    Args:
      model: a compiled two-tower model (``model.frequency`` gets the start/end-of-day calls).
      days: the days, each a dict of training-ready rows with ``item_index``.
      item_ids: [num_items] the corpus item IDs (what the source's day hooks receive).
      batch_size: rows per step.
      seed: the run's seed.
      epochs_per_day: passes over each day.
      hooks: :class:`DayHook` s, called in order.
      start: the first day to train (earlier days were trained before a resume).
      verbose: Keras's ``fit`` verbosity.
    Returns:
      One metrics dict per trained day.
    """
    item_ids = np.asarray(item_ids)
    records = []
    for d in range(start, len(days)):
        rows = days[d]
        ids = item_ids[np.asarray(rows[ITEM_INDEX])]
        record: dict[str, Any] = {"day": d}
        if model.frequency is not None:
            model.frequency.start_of_day(ids)
        callbacks = [callback for hook in hooks for callback in hook.start_of_day(d, rows, record)]
        data = make_tf_dataset(rows, batch_size, seed=seed * 100_003 + d)
        fitted = model.fit(data, epochs=epochs_per_day, verbose=verbose, callbacks=callbacks)
        record["loss"] = float(fitted.history["loss"][-1])
        for hook in hooks:
            hook.end_of_day(d, rows, record)
        if model.frequency is not None:
            model.frequency.end_of_day(ids)
        for hook in hooks:
            hook.after_day(d, rows, record)
        records.append(record)
    return records


# A test hook: called with (point, day) at each commit point of a day ('checkpoint': after the
# checkpoint is written, before the state; 'state': after the state, before run.json).
_FAULT_HOOK: Callable[[str, int], None] | None = None


def _fault(point: str, day: int) -> None:
    if _FAULT_HOOK is not None:
        _FAULT_HOOK(point, day)


def _new_model(config: ExperimentConfig, dataset: RecDataset, days: Sequence[dict]):
    keras.utils.set_random_seed(config.train.seed)
    if config.stream.frequency_source:
        model = build_model(config, dataset, frequency=build_frequency_source(config.stream.frequency_source, config, dataset, days))
    else:
        model = build_model(config, dataset)
    completed = tf.Variable(0, dtype=tf.int64, trainable=False, name="completed_days")
    return model, completed, model_checkpoint(model, completed_days=completed)


def _restore(config: ExperimentConfig, dataset: RecDataset, prefix: str, stream: Sequence[dict], days: int):
    """A model restored from ``prefix`` (every model variable checked), or ValueError naming the file."""
    model, completed, checkpoint = _new_model(config, dataset, stream)
    model({name: tf.constant(np.asarray(values)[:2]) for name, values in stream[0].items()})  # create the variables now
    try:
        status = checkpoint.restore(prefix).expect_partial()  # optimizer slots: restored when first used
        status.assert_existing_objects_matched()
    except (tf.errors.OpError, ValueError, IndexError, KeyError, AssertionError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"checkpoint {prefix!r} is damaged or does not match the model ({first[:300]}).") from None
    if int(completed.numpy()) != days:
        raise ValueError(f"checkpoint {prefix!r} says {int(completed.numpy())} completed days; the state says {days}.")
    return model, completed, checkpoint


def _remove_checkpoints_after(directory: str, days: int) -> None:
    """Deletes the checkpoint files of days after ``days`` (written, but never committed by a state)."""
    for path in glob.glob(os.path.join(directory, "ckpt-*")):
        match = re.match(r"ckpt-(\d+)\.", os.path.basename(path))
        if match and int(match.group(1)) > days:
            os.remove(path)


def _resume(run: RunDirectory, config, dataset, days, names, hashes):
    """The model and history of the last consistent (state, checkpoint) pair of ``run``; a fresh model if none."""
    state_path = run.file(STATE_FILE)
    history: list[dict] = []
    if run.resumed and os.path.exists(state_path):
        history = list(read_json(state_path, "stream state").get("days", []))
    for d, day in enumerate(history):
        if d < len(hashes) and day.get("day_sha256") not in (None, hashes[d]):
            if config.stream.source == "generator":  # its days are redrawn for the number of days asked
                raise RunConflict(
                    f"{names[d]} differs from the day {d} trained in {run.path!r}: the generator draws every day again "
                    f"for stream.days={config.stream.days} (a changed --days regenerates all days), so a finished "
                    "generator stream cannot be extended; use --overwrite (start over) or a new --workdir."
                )
            raise RunConflict(
                f"{names[d]}: its rows changed since day {d} was trained in {run.path!r}; "
                "use --overwrite (start over) or a new --workdir."
            )
    # Candidates, newest first: each committed day whose checkpoint files exist.
    failures = []
    for count in range(len(history), 0, -1):
        prefix = os.path.join(run.path, history[count - 1].get("checkpoint", f"checkpoint/ckpt-{count}"))
        if not tf.io.gfile.exists(prefix + ".index"):
            failures.append(f"the checkpoint {prefix!r} of day {count - 1} is missing")
            warnings.warn(
                f"stream resume: the committed checkpoint {prefix!r} of day {count - 1} is missing (its .index file); "
                "falling back to an earlier day, whose later days are trained again.",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        try:
            model, completed, checkpoint = _restore(config, dataset, prefix, days, count)
        except ValueError as error:
            failures.append(str(error))
            warnings.warn(f"stream resume: {error} Falling back to an earlier day.", RuntimeWarning, stacklevel=3)
            continue
        _remove_checkpoints_after(run.checkpoint_dir, count)
        return model, completed, checkpoint, history[:count]
    if history:
        raise ValueError(
            f"workdir {run.path!r}: no checkpoint of its {len(history)} completed days loads ({'; '.join(failures) or 'all are missing'}); "
            "use --overwrite to start over."
        )
    _remove_checkpoints_after(run.checkpoint_dir, 0)
    model, completed, checkpoint = _new_model(config, dataset, days)
    return model, completed, checkpoint, []


class _StreamDay(DayHook):
    """:func:`train_stream`'s day: the day's seed and divergence guard, its metrics, then the commit.

    After each day it commits a checkpoint, then ``stream_state.json`` (naming that checkpoint and
    holding every day's metrics and the day's rows hash), then run.json.
    """

    def __init__(self, model, config, dataset, days, alive, hashes, history, run, manager, completed, on_day_end):
        self.model, self.config, self.dataset, self.days, self.alive = model, config, dataset, days, alive
        self.hashes, self.history, self.run, self.manager, self.completed = hashes, history, run, manager, completed
        self.on_day_end = on_day_end
        self.began = 0.0

    def start_of_day(self, day, rows, record):
        """Seeds the day's random draws by (train.seed, day); a guard that stops a diverging day."""
        self.began = time.perf_counter()
        config = self.config
        tf.random.set_seed(config.train.seed * 100_003 + day)
        if not config.negatives.is_default:  # random negatives: retrace, so the day's random ops start from the day's seed
            self.model.train_function = None
        return [DivergenceGuard(hint=f"Lower train.learning_rate (now {config.train.learning_rate:g}).", where=f"on day {day}")]

    def end_of_day(self, day, rows, record):
        """The steps and the source's TV error against the day's exact per-step frequencies (before the source closes the day)."""
        batch, frequency = self.config.train.batch_size, self.model.frequency
        record["steps"] = self.config.stream.epochs_per_day * (len(rows[ITEM_INDEX]) // batch)
        if frequency is not None:
            counts = np.bincount(np.asarray(rows[ITEM_INDEX]), minlength=self.dataset.num_items)
            record["estimator_tv_error"] = estimator_tv_error(frequency, self.dataset.item_ids, counts, batch)
            if frequency.step is not None:
                record["estimator_step"] = int(frequency.step.numpy())

    def after_day(self, day, rows, record):
        """Held-out and next-day metrics, then the commit: checkpoint, state, run.json."""
        config, model = self.config, self.model
        record.update(evaluate_model(model, self.dataset, config.eval.ks, config.eval.exclude_seen))
        # Judged on what comes next: day d + 1's rows (yt_bias/evaluation/next_day.py); none after the last day.
        candidates = None if self.alive is None or day + 1 >= len(self.days) else self.alive[day + 1]
        record.update(next_day_metrics(model, self.days, day, self.dataset.items, config.eval.ks, config.eval.exclude_seen,
                                       candidates=candidates))
        if config.stream.frequency_source:
            record["frequency_source"] = config.stream.frequency_source
        elif config.variant == "correct-sfx-oracle":
            record["frequency_source"] = ORACLE_LABEL
        record["seconds"] = round(time.perf_counter() - self.began, 2)
        self.completed.assign(day + 1)
        prefix = self.manager.save(checkpoint_number=day + 1)
        _fault("checkpoint", day)
        self.history.append(dict(record, checkpoint=os.path.relpath(prefix, self.run.path), day_sha256=self.hashes[day]))
        write_json_atomic(self.run.file(STATE_FILE), {"completed_days": day + 1, "num_days": len(self.days), "days": self.history})
        _fault("state", day)
        self.run.commit_checkpoint(prefix)
        if self.on_day_end is not None:
            self.on_day_end(record)


def train_stream(
    config: ExperimentConfig,
    workdir: str,
    dataset: RecDataset | None = None,
    on_day_end: Callable[[dict], None] | None = None,
    mode: str = "refuse",
) -> tuple[keras.Model, dict[str, Any]]:
    """Trains on the days in order, committing a checkpoint and the state after each; resumes ``workdir``'s run.

    Args:
      config: the experiment; ``config.stream`` says which days.
      workdir: the run directory: checkpoint/, stream_state.json (completed days and per-day metrics), config.json, ...
      dataset: the corpus and held-out set (default: loaded from ``config.data``).
      on_day_end: called with each day's metrics after its checkpoint and state are committed.
      mode: when ``workdir`` holds another run: 'refuse', 'overwrite' (start over) or 'resume'
        (continue it although the config differs outside the model sections).
    Returns:
      The model and ``{"completed_days", "resumed_from", "days": [per-day metrics]}``.
    Raises:
      RunConflict: the workdir holds another run (``mode='refuse'``), is in use, or a trained day changed.
      ValueError: a bad day file, or no committed checkpoint of the run loads.
      TrainingDiverged: a day's loss or weights became non-finite (the last committed day stays resumable).
    """
    if dataset is None:
        dataset = load_dataset(config.data, config.model.embedding_dim)
    check_ks(config.eval.ks, dataset.num_items)
    if config.stream.frequency_source:
        parse_frequency_source(config.stream.frequency_source)
    days, names, dataset, alive = _stream_days(config, dataset)
    hashes = [array_digest(rows) for rows in days]
    source = {"source": config.stream.source, "path": config.stream.path}
    with RunDirectory.start(
        workdir, config, dataset, kind="stream", mode=mode, resumable=True,
        volatile=(*VOLATILE_FIELDS, "stream.days"), extra={"stream_source": source},
    ) as run:
        model, completed, checkpoint, history = _resume(run, config, dataset, days, names, hashes)
        manager = tf.train.CheckpointManager(checkpoint, run.checkpoint_dir, max_to_keep=2)
        start = len(history)
        day = _StreamDay(model, config, dataset, days, alive, hashes, history, run, manager, completed, on_day_end)
        train_days(model, days, dataset.item_ids, config.train.batch_size, config.train.seed, config.stream.epochs_per_day,
                   hooks=(day,), start=start, verbose=config.train.verbose)
        run.finish()
    return model, {"completed_days": len(history), "resumed_from": start, "days": history}
