"""The estimator where the paper needs it: many more items than hash buckets, rows side by side.

The study trains, on the same training shards for the same number of full epochs, one model per
row of :data:`ROWS` and evaluates each exactly on the same held-out queries (the first
``eval_queries`` positive rows of the ``test/`` shards, ranked over the whole corpus):

* ``plain``: plain in-batch softmax (no correction);
* ``H{log2 H}m{m}``: the corrected softmax with the streaming estimator of H buckets and m hash
  functions (Algorithm 2 for m = 1, Algorithm 3 for m > 1);
* ``exact``: the corrected softmax with the exact per-batch frequencies of the training rows
  (the oracle: counted in a pass over the training shards, no hashing);
* ``popular``: no model: the most frequent training items, the same list for every query.

For every estimator the row also records its TV error against the exact per-batch frequencies
after training, and the collision statistics of its hash functions on the training items (see
:func:`collision_statistics`). Each row is one JSON file (numbers, settings, command, wall time,
machine), written under a temporary name and renamed, so a queue of rows can be interrupted and
resumed, and the report reads whatever rows are there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import sys
import time
from typing import Any

import numpy as np

from yt_bias._keras import keras, tf
from yt_bias.config import ExperimentConfig, override
from yt_bias.core.frequency import OracleFrequency, estimator_from_settings, total_variation_error
from yt_bias.data.dataset import ITEM_INDEX, REWARD, batch_frequencies
from yt_bias.data.shards import read_shards, shard_files
from yt_bias.data.synthetic_shards import TEST_DIR
from yt_bias.evaluation.exact import recall_at_k
from yt_bias.training.from_files import corpus_dataset, evaluate_files, sized_shards
from yt_bias.training.train import build_model

# name -> (variant, hash_size, num_hashes); hash_size 0 for rows without hashing.
ROWS: dict[str, tuple[str, int, int]] = {
    "plain": ("plain-sfx", 0, 0),
    "H16m1": ("correct-sfx", 1 << 16, 1),
    "H14m4": ("correct-sfx", 1 << 14, 4),
    "H12m16": ("correct-sfx", 1 << 12, 16),
    "H18m2": ("correct-sfx", 1 << 18, 2),
    "H20m1": ("correct-sfx", 1 << 20, 1),
    "H22m1": ("correct-sfx", 1 << 22, 1),
    "exact": ("correct-sfx-oracle", 0, 0),
}
POPULAR = "popular"
ROW_NAMES = (*ROWS, POPULAR)
DOMINANCE = 10.0  # an item "drowned" in its bucket: the bucket holds an item this many times more frequent
COUNTS_FILE = "counts.npz"


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """What every row of one study shares.

    Attributes:
      data: the shard folder (``part-*.tfrecord``, ``test/``, ``items.npz``, ``features.json``).
      train_rows: train on the first shard files (in sorted order) that hold at least this many
        rows (0: all files).
      epochs: full passes over those files, the same for every row.
      batch_size: rows per step.
      eval_queries: the first this many positive rows of ``data/test`` are the queries.
      ks: the Recall@K cut-offs.
      seed: training seed (weights, shuffling); the estimator's hash seed is the config's.
      shuffle_buffer: rows in the reader's shuffle buffer.
      overrides: config overrides (``KEY=VALUE``) applied to every row.
    """

    data: str
    train_rows: int = 0
    epochs: int = 1
    batch_size: int = 8192
    eval_queries: int = 10000
    ks: tuple[int, ...] = (10, 50, 100)
    seed: int = 0
    shuffle_buffer: int = 65536
    overrides: tuple[str, ...] = ()

    def __post_init__(self):
        for name, low in (("train_rows", 0), ("epochs", 1), ("batch_size", 2), ("eval_queries", 1), ("shuffle_buffer", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"scale study: {name} must be an integer >= {low}; received {value!r}.")


def row_config(name: str, settings: StudySettings) -> ExperimentConfig:
    """The experiment config of row ``name`` (its variant, H and m on top of the shared settings)."""
    if name not in ROWS:
        raise ValueError(f"scale study: unknown row {name!r}; expected one of {list(ROWS)}.")
    variant, hash_size, num_hashes = ROWS[name]
    assignments = [
        f"variant={variant}",
        f"train.batch_size={settings.batch_size}",
        f"train.epochs={settings.epochs}",
        f"train.seed={settings.seed}",
        "train.verbose=0",
        f"eval.ks=[{','.join(str(k) for k in settings.ks)}]",
        *settings.overrides,
    ]
    if hash_size:
        assignments += [f"estimator.hash_size={hash_size}", f"estimator.num_hashes={num_hashes}"]
    config = ExperimentConfig()
    for assignment in assignments:
        config = override(config, assignment)
    return config


# ----------------------------------------------------------------------------- the shared pass
def _item_index_parser():
    spec = {ITEM_INDEX: tf.io.FixedLenFeature([], tf.string)}
    return lambda record: tf.io.parse_tensor(tf.io.parse_single_example(record, spec)[ITEM_INDEX], tf.int64)


def count_items(files: list[str], num_items: int) -> tuple[np.ndarray, list[int]]:
    """Rows of each item in ``files`` and rows of each file (one pass reading only ``item_index``).

    Raises:
      ValueError: an item index outside [0, num_items) (the shards belong to another items table).
    """
    parse = _item_index_parser()
    counts = np.zeros(num_items, np.int64)
    per_file = []
    for path in files:
        blocks = tf.data.TFRecordDataset(path).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        index = np.concatenate([block.numpy() for block in blocks] or [np.zeros(0, np.int64)])
        if index.size and (index.min() < 0 or index.max() >= num_items):
            raise ValueError(
                f"shard {path!r}: item_index must be in [0, {num_items}) (the items table's rows); "
                f"received values in [{index.min()}, {index.max()}]."
            )
        counts += np.bincount(index, minlength=num_items)
        per_file.append(int(index.size))
    return counts, per_file


def training_files(settings: StudySettings) -> list[str]:
    """All training shards of ``settings.data`` in sorted order."""
    return shard_files(os.path.join(settings.data, "*.tfrecord"))


def shared_counts(settings: StudySettings, out_dir: str, num_items: int) -> dict[str, Any]:
    """The training files of the study, their rows and the items' counts, computed once per results folder.

    The first call counts the rows of every training file and the items of the files used
    (the first files holding ``train_rows`` rows), and writes ``COUNTS_FILE``; later rows read it
    and check that it was made for the same data and ``train_rows``.
    """
    path = os.path.join(out_dir, COUNTS_FILE)
    files = training_files(settings)
    key = json.dumps({"data": os.path.abspath(settings.data), "train_rows": settings.train_rows, "files": len(files)})
    if os.path.isfile(path):
        with np.load(path) as f:
            if str(f["key"]) != key:
                raise ValueError(f"{path}: made for {str(f['key'])}; this study is {key}. Use another results folder.")
            used = int(f["files_used"])
            return {"files": files[:used], "counts": f["counts"], "file_rows": f["file_rows"].tolist()}
    counts = np.zeros(num_items, np.int64)
    file_rows: list[int] = []
    for path_ in files:
        if settings.train_rows and sum(file_rows) >= settings.train_rows:
            break
        c, rows = count_items([path_], num_items)
        counts += c
        file_rows += rows
    tmp = path + ".tmp.npz"
    np.savez(tmp, key=np.array(key), files_used=np.array(len(file_rows)), counts=counts, file_rows=np.array(file_rows))
    os.replace(tmp, path)
    return {"files": files[: len(file_rows)], "counts": counts, "file_rows": file_rows}


def query_targets(pattern, features, max_queries: int) -> np.ndarray:
    """The item index of the first ``max_queries`` positive rows of the shards of ``pattern`` (written order).

    The same rows :func:`~yt_bias.training.from_files.query_embeddings` embeds.
    """
    targets, count = [], 0
    for batch in read_shards(pattern, features, 65536, shuffle_buffer=0, drop_remainder=False):
        keep = batch[REWARD].numpy() > 0
        chosen = batch[ITEM_INDEX].numpy()[keep][: max_queries - count]
        targets.append(chosen)
        count += len(chosen)
        if count >= max_queries:
            break
    return np.concatenate(targets)


# ----------------------------------------------------------------------------- collisions
def collision_statistics(buckets: np.ndarray, counts: np.ndarray, dominance: float = DOMINANCE) -> dict[str, float]:
    """How the items of the training rows share the buckets of ``m`` hash functions.

    Args:
      buckets: [m, num_items] each item's bucket under each hash function.
      counts: [num_items] each item's training rows.
      dominance: the ratio that makes a bucket-mate "much more frequent".
    Returns:
      ``items_per_bucket``: training items (count > 0) per occupied bucket, averaged over the
      hash functions; ``items_sharing``: the mean number of training items in an item's bucket,
      itself included, weighted by the item's rows (what a training row sees); ``alone_share``:
      the share of training rows whose item is alone among the training items in one of its
      buckets at least; ``drowned_share``: the share of training rows whose item has, in every one
      of its m buckets, an item at least ``dominance`` times more frequent (Algorithm 3 reads the
      largest interval, the least crowded bucket, so one clean bucket saves the item).
    Raises:
      ValueError: ``buckets`` and ``counts`` disagree on the number of items, or no item has rows.
    """
    buckets = np.asarray(buckets, np.int64)
    counts = np.asarray(counts, np.int64)
    if buckets.ndim != 2 or buckets.shape[1] != counts.shape[0]:
        raise ValueError(f"buckets must be [m, {counts.shape[0]}] (one bucket per item and hash); received {buckets.shape}.")
    seen = counts > 0
    if not seen.any():
        raise ValueError("collision statistics: no item has a training row.")
    rows = counts[seen].astype(np.float64)
    weights = rows / rows.sum()
    size = int(buckets.max()) + 1
    per_bucket, sharing = [], np.zeros(int(seen.sum()))
    alone = np.zeros(int(seen.sum()), bool)
    drowned = np.ones(int(seen.sum()), bool)
    for hashed in buckets[:, seen]:
        occupancy = np.bincount(hashed, minlength=size)
        per_bucket.append(float(seen.sum() / np.count_nonzero(occupancy)))
        sharing += occupancy[hashed]
        alone |= occupancy[hashed] == 1
        largest = np.zeros(size, np.int64)
        np.maximum.at(largest, hashed, counts[seen])
        drowned &= largest[hashed] >= dominance * counts[seen]
    return {
        "training_items": int(seen.sum()),
        "items_per_bucket": float(np.mean(per_bucket)),
        "items_sharing": float(np.sum(weights * sharing / len(buckets))),
        "alone_share": float(np.sum(weights * alone)),
        "drowned_share": float(np.sum(weights * drowned)),
    }


def estimator_errors(frequency, item_ids: np.ndarray, counts: np.ndarray, batch_size: int) -> dict[str, float]:
    """The paper's TV error ``(1/2B) sum_j |p_hat_j - p_j|`` against the exact per-batch frequencies of ``counts``.

    ``tv_error`` sums over the whole corpus; ``tv_error_seen`` over the items with training rows
    only (an item never seen reads ``1 / initial_interval`` from the streaming estimator, which
    with many unseen items dominates the whole-corpus sum).
    """
    exact = batch_frequencies(np.asarray(counts, np.float64), batch_size, frequency.estimand)
    estimated = frequency.probability(tf.constant(item_ids)).numpy()
    seen = np.asarray(counts) > 0
    return {
        "tv_error": total_variation_error(estimated, exact, batch_size),
        "tv_error_seen": total_variation_error(estimated[seen], exact[seen], batch_size),
    }


# ----------------------------------------------------------------------------- one row
def machine() -> dict[str, Any]:
    """Where a row ran: host, CPUs, load average, Python and TensorFlow versions."""
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
    }


def _frequency(name: str, config: ExperimentConfig, corpus, counts: np.ndarray):
    variant = ROWS[name][0]
    if variant == "plain-sfx":
        return None
    if variant == "correct-sfx-oracle":
        estimand = config.estimator.estimand
        exact = np.maximum(batch_frequencies(counts.astype(np.float64), config.train.batch_size, estimand), 1e-9)
        return OracleFrequency(corpus.item_ids, exact, estimand=estimand, name="frequency")
    return estimator_from_settings(config.estimator)


def run_row(name: str, settings: StudySettings, out_dir: str, command: str | None = None, log=print) -> dict[str, Any]:
    """Trains and evaluates row ``name`` and writes ``out_dir/row_{name}.json``; returns its record.

    Args:
      name: one of :data:`ROW_NAMES`.
      settings: the study's shared settings.
      out_dir: the results folder (created if missing).
      command: the command line recorded with the row (default: this process's).
      log: where progress lines go.
    Raises:
      ValueError: an unknown row name, or a results folder made for other data.
    """
    if name not in ROW_NAMES:
        raise ValueError(f"scale study: unknown row {name!r}; expected one of {list(ROW_NAMES)}.")
    os.makedirs(out_dir, exist_ok=True)
    started, wall = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.perf_counter()
    host = machine()
    corpus = corpus_dataset(settings.data)
    shared = shared_counts(settings, out_dir, corpus.num_items)
    files, counts = shared["files"], shared["counts"]
    rows = int(sum(shared["file_rows"]))
    test = os.path.join(settings.data, TEST_DIR, "*.tfrecord")
    record: dict[str, Any] = {"row": name, "settings": dataclasses.asdict(settings), "train_files": len(files), "train_rows": rows}
    if name == POPULAR:
        targets = query_targets(test, corpus.features, settings.eval_queries)
        popular = np.argsort(-counts, kind="stable")[: max(settings.ks)]
        record.update(recall_at_k(np.tile(popular, (len(targets), 1)), targets, settings.ks), eval_queries=int(len(targets)))
    else:
        config = row_config(name, settings)
        keras.utils.set_random_seed(settings.seed)
        model = build_model(config, corpus, frequency=_frequency(name, config, corpus, counts))
        data, batches = sized_shards(files, corpus.features, settings.batch_size, settings.shuffle_buffer, settings.seed, rows)
        log(f"[{time.strftime('%H:%M:%S')}] {name}: {settings.epochs} x {batches} batches of {settings.batch_size}")
        start = time.perf_counter()
        history = model.fit(data, epochs=settings.epochs, verbose=0, callbacks=[_EpochLog(name, batches, log)])
        train_seconds = time.perf_counter() - start
        steps = int(model.optimizer.iterations.numpy())
        start = time.perf_counter()
        metrics = evaluate_files(model, corpus, test, settings.ks, max_queries=settings.eval_queries)
        record.update(
            variant=config.variant,
            hash_size=ROWS[name][1],
            num_hashes=ROWS[name][2],
            steps=steps,
            batches_per_epoch=batches,
            train_seconds=round(train_seconds, 1),
            examples_per_second=round(steps * settings.batch_size / train_seconds),
            loss_history=[round(float(v), 5) for v in history.history["loss"]],
            eval_seconds=round(time.perf_counter() - start, 1),
            eval_queries=metrics.pop("num_test_positives"),
            **metrics,
        )
        if model.frequency is not None:
            record.update(estimator_errors(model.frequency, corpus.item_ids, counts, settings.batch_size))
        if ROWS[name][1]:
            buckets = model.frequency.buckets(tf.constant(corpus.item_ids)).numpy()
            record["collisions"] = collision_statistics(buckets, counts)
    record.update(
        command=command or " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
        started=started,
        wall_seconds=round(time.perf_counter() - wall, 1),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        machine=host,
        load_average_end=[round(x, 2) for x in os.getloadavg()],
    )
    path = os.path.join(out_dir, f"row_{name}.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    os.replace(path + ".tmp", path)
    return record


class _EpochLog(keras.callbacks.Callback):
    """A progress line every quarter epoch (reads nothing from the step, so it never waits on it)."""

    def __init__(self, name: str, batches: int, log):
        super().__init__()
        self.name, self.every, self.log = name, max(1, batches // 4), log
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every == 0:
            self.log(f"[{time.strftime('%H:%M:%S')}] {self.name}: batch {batch + 1}, "
                     f"{time.perf_counter() - self.start:.0f} s, load {os.getloadavg()[0]:.1f}")


def load_rows(out_dir: str) -> dict[str, dict]:
    """Every ``row_*.json`` of a results folder: row name -> record."""
    rows = {}
    for entry in sorted(os.listdir(out_dir)):
        if entry.startswith("row_") and entry.endswith(".json"):
            with open(os.path.join(out_dir, entry), encoding="utf-8") as f:
                record = json.load(f)
            rows[record["row"]] = record
    return rows
