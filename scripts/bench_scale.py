"""Benchmark of record at scale: data from disk, one epoch, exact and ScaNN evaluation, PS cluster.

Every phase runs in its own Python process (so its peak RSS, ``ru_maxrss``, is its own) and
writes ``<out>/<phase>.json``; ``report`` prints the table of all phases found. Phases:

* ``formats``: the storage formats measured side by side on the same ``--format-rows`` generated
  rows (100,000 items): TFRecord with one ``tf.train.Example`` per row, TFRecord row blocks (this
  package's format) and Parquet (pyarrow, read into tf.data through ``from_generator``): write
  rows/s, read rows/s (batches of ``--batch-size``), bytes per row.
* ``generate``: ``--items`` items and ``--interactions`` interactions written as TFRecord shards
  (``yt_bias.data.synthetic_shards.generate_shards``) under ``<out>/data``: time, rows/s, disk size.
* ``train``: one epoch (``--variant``, batch ``--batch-size``) over the training shards, or over
  the first ``--train-rows`` rows' worth of shard files; then the item embeddings of the whole
  corpus and the query embeddings of the first ``--eval-queries`` positive test rows are saved
  (``<out>/<tag>_items.npy``, ``<tag>_queries.npz``): examples/s, steps, peak RSS.
* ``evaluate``: exact Recall@K of those queries over every item (``blockwise_top_k``, the item
  embeddings memory-mapped): time, peak RSS.
* ``scann``: the same queries through a ScaNN searcher (``yt_bias.evaluation.approximate``; its
  default settings, then a coarse one: 1% of the leaves searched, no exact re-scoring): build and
  search time, its Recall@K and the loss against exact, the overlap of its top-K with the exact top-K.
* ``popularity``: the no-model baseline on the same queries: the items most frequent in the
  training files (all, or ``--train-rows``' worth), the same list for every query; and, for the
  ``--tag`` model's exact top lists, how many distinct items they hold and the share of its top-10
  items that never occur in those training rows.
* ``epoch``: the file-training epoch against the bare train step (``--steps`` batches, ``--rounds``
  rounds interleaved: bare step, ``model.fit`` in memory, ``model.fit`` from the shards, the shard
  reader alone, the estimator alone), then evaluation timed apart: ms per step, examples/s, the
  ratios to the bare step.
* ``single``, ``ps1``, ``ps2``: ``--steps`` batches from all training shards in one process and on a
  loopback parameter-server cluster of 1 PS and 1 or 2 workers (``LocalCluster``; each worker
  reads its own files): examples/s after the first (warm-up) step.

Defaults are the benchmark of record's sizes (1,000,000 items, 20,000,000 interactions)::

    python scripts/bench_scale.py --out runs/bench_scale --phases generate
    python scripts/bench_scale.py --out runs/bench_scale --phases train evaluate scann --variant correct-sfx --tag corrected
    python scripts/bench_scale.py --out runs/bench_scale --phases report
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np

PHASES = ("formats", "generate", "epoch", "train", "evaluate", "scann", "popularity", "single", "ps1", "ps2", "report")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _disk_mb(path: str) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files) / 2**20


def _data(args) -> str:
    return os.path.join(args.out, "data")


def _config(args, variant: str):
    from yt_bias.config import ExperimentConfig, override

    config = ExperimentConfig()
    for assignment in (
        f"variant={variant}",
        f"train.batch_size={args.batch_size}",
        "train.epochs=1",
        "train.verbose=0",
        f"train.seed={args.seed}",
        f"eval.ks=[{','.join(str(k) for k in args.ks)}]",
        *args.set,
    ):
        config = override(config, assignment)
    return config


def _train_files(args) -> list[str]:
    from yt_bias.data.shards import shard_files

    files = shard_files(os.path.join(_data(args), "*.tfrecord"))
    if args.train_rows:
        files = files[: max(1, -(-args.train_rows // args.shard_rows))]
    return files


def _per_row_examples(rows: dict, path: str) -> None:
    """The per-row format: one tf.train.Example per row (bytes/float/int64 lists)."""
    from yt_bias._keras import tf

    def feature(values):
        flat = np.ravel(values)
        if flat.dtype.kind in "SU":
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[bytes(v) for v in flat.astype(np.bytes_)]))
        if flat.dtype.kind == "f":
            return tf.train.Feature(float_list=tf.train.FloatList(value=flat.tolist()))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=flat.tolist()))

    count = len(next(iter(rows.values())))
    with tf.io.TFRecordWriter(path) as writer:
        for r in range(count):
            example = tf.train.Example(features=tf.train.Features(feature={n: feature(v[r]) for n, v in rows.items()}))
            writer.write(example.SerializeToString())


def phase_formats(args) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import yt_bias  # noqa: F401
    from yt_bias._keras import tf
    from yt_bias.config import SyntheticConfig
    from yt_bias.data import synthetic_shards
    from yt_bias.data.shards import ShardWriter, _columns, read_shards
    from yt_bias.data.synthetic import synthetic_features

    config = SyntheticConfig(num_items=100_000, num_users=1, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    corpus = synthetic_shards._corpus(config, rng)
    features = synthetic_features(config)
    chunks, count = [], 0
    while count < args.format_rows:
        rows, _ = synthetic_shards._chunk(config, corpus, count, 400, 120, 0.7, rng)
        chunks.append(rows)
        count += len(rows["reward"])
    rows = {n: np.concatenate([c[n] for c in chunks])[: args.format_rows] for n in chunks[0]}
    count = args.format_rows
    directory = os.path.join(args.out, "formats")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    columns = _columns(features)
    results = {}

    def time_read(dataset) -> float:
        start = time.perf_counter()
        seen = sum(int(batch["reward"].shape[0]) for batch in dataset)
        return seen / (time.perf_counter() - start)

    # One Example per row.
    path = os.path.join(directory, "per_row.tfrecord")
    start = time.perf_counter()
    _per_row_examples(rows, path)
    write = count / (time.perf_counter() - start)
    spec = {n: tf.io.FixedLenFeature(list(shape), dtype) for n, (dtype, shape) in columns.items()}
    per_row = tf.data.TFRecordDataset(path).batch(args.batch_size).map(lambda r: tf.io.parse_example(r, spec),
                                                                        num_parallel_calls=tf.data.AUTOTUNE)
    results["tfrecord_one_example_per_row"] = {"write_rows_per_s": round(write), "read_rows_per_s": round(time_read(per_row)),
                                               "bytes_per_row": round(os.path.getsize(path) / count, 1)}
    # Row blocks (this package).
    start = time.perf_counter()
    with ShardWriter(os.path.join(directory, "blocks"), count) as writer:
        writer.write(rows)
    write = count / (time.perf_counter() - start)
    blocks = read_shards(writer.paths, features, args.batch_size, shuffle_buffer=0, drop_remainder=False)
    results["tfrecord_row_blocks"] = {"write_rows_per_s": round(write), "read_rows_per_s": round(time_read(blocks)),
                                      "bytes_per_row": round(os.path.getsize(writer.paths[0]) / count, 1)}
    # Parquet: fixed-size lists for multi-value columns, read through a Python generator.
    path = os.path.join(directory, "rows.parquet")
    start = time.perf_counter()
    table = {}
    for name, values in rows.items():
        table[name] = (pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1]) if values.ndim == 2
                       else pa.array(values))
    pq.write_table(pa.table(table), path)
    write = count / (time.perf_counter() - start)

    def batches():
        for batch in pq.ParquetFile(path).iter_batches(batch_size=args.batch_size):
            out = {}
            for name, (dtype, shape) in columns.items():
                column = batch.column(name)
                if shape:
                    column = column.flatten()
                values = column.to_numpy(zero_copy_only=False)
                out[name] = values.reshape(-1, *shape) if shape else values
            yield out

    signature = {n: tf.TensorSpec([None, *shape], dtype) for n, (dtype, shape) in columns.items()}
    parquet = tf.data.Dataset.from_generator(batches, output_signature=signature)
    results["parquet_pyarrow_from_generator"] = {"write_rows_per_s": round(write), "read_rows_per_s": round(time_read(parquet)),
                                                 "bytes_per_row": round(os.path.getsize(path) / count, 1)}
    shutil.rmtree(directory)
    return {"rows": count, "batch_size": args.batch_size, **results}


def phase_generate(args) -> dict:
    from yt_bias.data.synthetic_shards import generate_shards

    out = _data(args)
    if os.path.exists(out):
        shutil.rmtree(out)
    start = time.perf_counter()
    report = generate_shards(out, args.items, args.interactions, rows_per_shard=args.shard_rows,
                             chunk_rows=args.chunk_rows, seed=args.seed)
    seconds = time.perf_counter() - start
    return {
        "items": report.num_items, "interactions": args.interactions, "train_rows": report.num_train,
        "test_rows": report.num_test, "train_files": len(report.train_files), "seconds": round(seconds, 1),
        "rows_per_second": round(args.interactions / seconds), "disk_mb": round(_disk_mb(out), 1),
        "max_chunk_rows": report.max_chunk_rows,
    }


def phase_train(args) -> dict:
    import yt_bias  # noqa: F401
    from yt_bias._keras import keras
    from yt_bias.data.shards import read_shards
    from yt_bias.retrieval.embedding import embed
    from yt_bias.training.from_files import corpus_dataset, query_embeddings
    from yt_bias.training.train import build_model

    config = _config(args, args.variant)
    corpus = corpus_dataset(_data(args))
    files = _train_files(args)
    keras.utils.set_random_seed(args.seed)
    model = build_model(config, corpus)
    data = read_shards(files, corpus.features, args.batch_size, args.shuffle_buffer, seed=args.seed)
    batches = [0]

    class Progress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches[0] = batch + 1
            if (batch + 1) % 100 == 0:
                elapsed = time.perf_counter() - start
                print(f"[{time.strftime('%H:%M:%S')}] {args.tag}: {batch + 1} batches, "
                      f"{(batch + 1) * args.batch_size / elapsed:.0f} examples/s, load {_load()}", flush=True)

    start = time.perf_counter()
    history = model.fit(data, epochs=1, verbose=0, callbacks=[Progress()])
    seconds = time.perf_counter() - start
    steps = batches[0]  # the batches trained (the optimizer's iteration counter reads one more)
    start = time.perf_counter()
    items = embed(model.item_tower, corpus.items)
    np.save(os.path.join(args.out, f"{args.tag}_items.npy"), items)
    queries, targets = query_embeddings(model, os.path.join(_data(args), "test"), corpus.features, max_queries=args.eval_queries)
    np.savez(os.path.join(args.out, f"{args.tag}_queries.npz"), queries=queries, targets=targets)
    return {
        "variant": args.variant, "tag": args.tag, "train_files": len(files), "steps": steps,
        "batch_size": args.batch_size, "examples": steps * args.batch_size, "seconds": round(seconds, 1),
        "examples_per_second": round(steps * args.batch_size / seconds),
        "epoch_loss": round(float(history.history["loss"][0]), 4),
        "embed_seconds": round(time.perf_counter() - start, 1), "eval_queries": int(len(targets)),
        "item_embeddings_shape": list(items.shape),
    }


def phase_evaluate(args) -> dict:
    import yt_bias  # noqa: F401
    from yt_bias.retrieval.blocks import blockwise_top_k
    from yt_bias.evaluation.exact import recall_at_k

    items = np.load(os.path.join(args.out, f"{args.tag}_items.npy"), mmap_mode="r")
    with np.load(os.path.join(args.out, f"{args.tag}_queries.npz")) as f:
        queries, targets = f["queries"], f["targets"]
    start = time.perf_counter()
    top = blockwise_top_k(queries, items, max(args.ks), item_block=args.item_block, query_block=args.query_block)
    seconds = time.perf_counter() - start
    np.save(os.path.join(args.out, f"{args.tag}_exact_top.npy"), top)
    return {"tag": args.tag, "queries": int(len(queries)), "items": int(items.shape[0]), "seconds": round(seconds, 1),
            **{k: round(v, 4) for k, v in recall_at_k(top, targets, args.ks).items()}}


def phase_scann(args) -> dict:
    import yt_bias  # noqa: F401
    from yt_bias.evaluation.approximate import approximate_evaluation

    items = np.load(os.path.join(args.out, f"{args.tag}_items.npy"))
    with np.load(os.path.join(args.out, f"{args.tag}_queries.npz")) as f:
        queries, targets = f["queries"], f["targets"]
    exact = np.load(os.path.join(args.out, f"{args.tag}_exact_top.npy"))
    from yt_bias.retrieval.scann import scann_settings

    result = approximate_evaluation(queries, items, targets, args.ks, exact_top=exact)
    # A coarser searcher (1% of the leaves, no exact re-scoring): the loss when ScaNN is pushed.
    coarse = scann_settings(len(items), num_leaves_to_search=max(1, result["num_leaves"] // 100), reorder=0)
    coarse_result = approximate_evaluation(queries, items, targets, args.ks, exact_top=exact, settings=coarse)
    return {"tag": args.tag, **result, **{f"coarse_{k}": v for k, v in coarse_result.items() if not k.startswith("exact_")}}


def phase_popularity(args) -> dict:
    import yt_bias  # noqa: F401
    from yt_bias.data.shards import read_items, read_shards
    from yt_bias.evaluation.exact import recall_at_k

    features, items = read_items(_data(args))
    files = _train_files(args)
    counts = np.zeros(len(items[features.item_id]), np.int64)
    for batch in read_shards(files, features, 65536, shuffle_buffer=0, drop_remainder=False):
        counts += np.bincount(batch["item_index"].numpy(), minlength=len(counts))
    with np.load(os.path.join(args.out, f"{args.tag}_queries.npz")) as f:
        targets = f["targets"]
    exact = np.load(os.path.join(args.out, f"{args.tag}_exact_top.npy"))
    popular = np.argsort(-counts, kind="stable")[: max(args.ks)]
    baseline = recall_at_k(np.tile(popular, (len(targets), 1)), targets, args.ks)
    return {"tag": args.tag, "train_files": len(files), "rows": int(counts.sum()), "items_seen": int((counts > 0).sum()),
            **{f"popularity_{k}": round(v, 4) for k, v in baseline.items()},
            "model_distinct_items_top10": int(len(np.unique(exact[:, :10]))),
            "model_distinct_items_top100": int(len(np.unique(exact[:, :100]))),
            "model_top10_share_unseen": round(float((counts[exact[:, :10]] == 0).mean()), 4)}


def phase_single(args) -> dict:
    import yt_bias  # noqa: F401
    from yt_bias._keras import keras
    from yt_bias.data.shards import read_shards
    from yt_bias.training.from_files import corpus_dataset
    from yt_bias.training.train import build_model

    config = _config(args, "correct-sfx")
    corpus = corpus_dataset(_data(args))
    keras.utils.set_random_seed(args.seed)
    model = build_model(config, corpus)
    files = os.path.join(_data(args), "*.tfrecord")  # every training file, as the PS runs read them
    data = read_shards(files, corpus.features, args.batch_size, args.shuffle_buffer, seed=args.seed).repeat()
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=1, verbose=0)  # warm-up: tracing and the first batch
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=args.steps - 1, verbose=0)
    seconds = time.perf_counter() - start
    return {"workers": 0, "steps": args.steps, "warmup_seconds": round(warmup, 1), "seconds": round(seconds, 1),
            "examples_per_second": round((args.steps - 1) * args.batch_size / seconds)}


def _phase_ps(args, workers: int) -> dict:
    from yt_bias.testing.local_cluster import LocalCluster

    workdir = os.path.join(args.out, f"ps{workers}")
    logs = os.path.join(args.out, f"ps{workers}_logs")
    for path in (workdir, logs):
        shutil.rmtree(path, ignore_errors=True)
    chief_args = ["--workdir", workdir, "--steps", str(args.steps), "--data-files", os.path.join(_data(args), "*.tfrecord"),
                  "--no-eval", "--log-every", "50", "--checkpoint-every", "0",
                  "--shuffle-buffer", str(args.shuffle_buffer)]
    for assignment in (f"train.batch_size={args.batch_size}", f"train.seed={args.seed}", "variant=correct-sfx", *args.set):
        chief_args += ["--set", assignment]
    start = time.perf_counter()
    with LocalCluster(num_workers=workers, num_ps=1, log_dir=logs) as cluster:
        cluster.start_servers()
        chief = cluster.run_chief(chief_args, timeout=args.ps_timeout)
        rc = chief.wait(timeout=args.ps_timeout)
    wall = time.perf_counter() - start
    if rc != 0:
        with open(os.path.join(logs, "chief_0.log"), errors="replace") as f:
            raise RuntimeError(f"the chief failed (rc {rc}):\n{f.read()[-3000:]}")
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    return {"workers": workers, "ps": 1, "steps": args.steps, "warmup_seconds": metrics["warmup_seconds"],
            "seconds": metrics["seconds"], "wall_seconds": round(wall, 1),
            "examples_per_second": round(metrics["steps_per_second"] * args.batch_size),
            "worker_files": {w: len(f) for w, f in metrics["worker_files"].items()},
            "worker_reads": {w: {"batches": r["batches"], "distinct_items": r["distinct_items"]}
                             for w, r in metrics["worker_reads"].items()},
            "note": "peak_rss_mb is the driver's; the chief, worker and PS processes are separate"}


def phase_ps1(args) -> dict:
    return _phase_ps(args, 1)


def phase_ps2(args) -> dict:
    return _phase_ps(args, 2)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(function) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, its tf.data and op threads included) of ``function()``."""
    start, cpu = time.perf_counter(), _cpu_seconds()
    function()
    return time.perf_counter() - start, _cpu_seconds() - cpu


def _file_rows(files: list[str]) -> list[int]:
    from yt_bias.data.shards import count_rows

    return [count_rows([path]) for path in files]


def phase_epoch(args) -> dict:
    """The file-training epoch against the bare train step, with its parts measured apart, in rounds.

    Each round runs, one after another on the same model: ``bare`` (the compiled train function
    called ``--steps`` times on batches already in memory: the step alone), ``fit_memory``
    (``model.fit`` over the same in-memory batches: the fit loop's own cost), ``fit_files``
    (``model.fit`` over ``--steps`` batches read from the shards, as ``fit_on_files`` trains:
    declared length, the divergence guard), ``pipeline`` (the shard reader alone, no training)
    and ``estimator`` (the streaming estimator's update and read of the batches' items alone).
    ``first_batch`` times building the reader and its first batch (file checks, shuffle buffer),
    which a real epoch pays once, and ``fit_one`` a one-batch ``model.fit`` (less one bare step: the
    fit call's fixed cost, also paid once an epoch): the projected ratio of a full pass over the files
    is ``(startup + fit_fixed + batches x fit_files' per-step time net of both) / (batches x bare step)``.
    Ratios are per round, then the median, in wall time and in CPU time of the process (its tf.data
    and op threads included: what a mode costs the machine, whatever the other jobs take);
    evaluation (``--eval-queries`` queries over the whole corpus) is timed once at the end.
    """
    import yt_bias  # noqa: F401
    from yt_bias._keras import keras, tf
    from yt_bias.core.frequency import estimator_from_settings
    from yt_bias.data.shards import read_shards
    from yt_bias.training.divergence import DivergenceGuard
    from yt_bias.training.from_files import corpus_dataset, evaluate_files
    from yt_bias.training.train import build_model

    config = _config(args, args.variant)
    corpus = corpus_dataset(_data(args))
    files = _train_files(args)
    keras.utils.set_random_seed(args.seed)
    model = build_model(config, corpus)
    steps, batch = args.steps, args.batch_size

    def from_files():
        data = read_shards(files, corpus.features, batch, args.shuffle_buffer, seed=args.seed).take(steps)
        return data.apply(tf.data.experimental.assert_cardinality(steps))

    memory = from_files().cache()
    for _ in memory:  # fills the cache: these batches are now tensors in memory
        pass
    model.fit(memory.take(2), epochs=1, verbose=0)  # tracing
    train_function = model.make_train_function()
    estimator = estimator_from_settings(config.estimator, name="bench_estimator")
    item_id = corpus.features.item_id
    ids = [b[item_id] for b in memory]
    update = tf.function(lambda x: estimator.update_and_probability(x))
    update(ids[0])

    def bare():
        iterator = iter(memory)
        for _ in range(steps):
            logs = train_function(iterator)
        float(logs["loss"])

    def estimator_only():
        for x in ids:
            p = update(x)
        p.numpy()

    def pipeline():
        for _ in from_files():
            pass

    def first_batch():
        next(iter(from_files()))

    modes = {
        "bare": bare,
        "fit_one": lambda: model.fit(memory.take(1), epochs=1, verbose=0),
        "fit_memory": lambda: model.fit(memory, epochs=1, verbose=0),
        "fit_files": lambda: model.fit(from_files(), epochs=1, verbose=0, callbacks=[DivergenceGuard()]),
        "pipeline": pipeline,
        "first_batch": first_batch,
        "estimator": estimator_only,
    }
    seconds = {name: [] for name in modes}
    cpu = {name: [] for name in modes}
    for round_ in range(args.rounds):
        for name, function in modes.items():
            wall, used = _timed(function)
            seconds[name].append(wall)
            cpu[name].append(used)
        print(f"[{time.strftime('%H:%M:%S')}] epoch round {round_ + 1}: "
              + ", ".join(f"{n} {v[-1]:.1f} s" for n, v in seconds.items()) + f", load {_load()}", flush=True)
    ratios = {name: [s / b for s, b in zip(seconds[name], seconds["bare"])] for name in modes if name != "bare"}
    start = time.perf_counter()
    metrics = evaluate_files(model, corpus, os.path.join(_data(args), "test"), args.ks, max_queries=args.eval_queries)
    evaluation = time.perf_counter() - start
    rows = steps * batch
    # A full pass: the startup (building the reader, checking the files, filling the shuffle buffer:
    # first_batch) once, then every batch at fit_files' rate net of that startup.
    epoch_batches = sum(_file_rows(files)) // batch
    startup = float(np.median(seconds["first_batch"]))
    bare_step = float(np.median(seconds["bare"])) / steps
    # What a fit call costs once, whatever its length (callbacks, the data handler, collecting the
    # weights): a one-batch fit less one bare step. A real epoch pays it once, like the startup.
    fit_fixed = max(float(np.median(seconds["fit_one"])) - bare_step, 0.0)
    per_step = max(float(np.median(seconds["fit_files"])) - startup - fit_fixed, 0.0) / steps
    return {
        "steps": steps, "batch_size": batch, "rounds": args.rounds, "items": corpus.num_items,
        "seconds": {n: [round(v, 2) for v in vs] for n, vs in seconds.items()},
        "ms_per_step": {n: round(1000 * float(np.median(vs)) / steps, 1) for n, vs in seconds.items()},
        "examples_per_second": {n: round(rows / float(np.median(vs))) for n, vs in seconds.items()},
        "ratio_to_bare_median": {n: round(float(np.median(r)), 3) for n, r in ratios.items()},
        "ratio_to_bare_range": {n: [round(min(r), 3), round(max(r), 3)] for n, r in ratios.items()},
        # CPU seconds per step: what a mode costs the machine whatever the other jobs take.
        "cpu_ms_per_step": {n: round(1000 * float(np.median(vs)) / steps, 1) for n, vs in cpu.items()},
        "cpu_ratio_to_bare_median": {n: round(float(np.median([c / b for c, b in zip(cpu[n], cpu["bare"])])), 3)
                                     for n in modes if n != "bare"},
        "eval_queries": metrics["num_test_positives"], "eval_seconds": round(evaluation, 1),
        "epoch_batches": epoch_batches, "startup_seconds": round(startup, 2), "fit_fixed_seconds": round(fit_fixed, 2),
        "fit_files_steady_ms_per_step": round(1000 * per_step, 1),
        "epoch_ratio_projected": round((startup + fit_fixed + epoch_batches * per_step) / (epoch_batches * bare_step), 3),
    }


def _row(results: dict, name: str) -> dict | None:
    return results.get(name)


def phase_report(args) -> dict:
    results = {}
    for path in sorted(glob.glob(os.path.join(args.out, "phase_*.json"))):
        with open(path) as f:
            entry = json.load(f)
        results[os.path.basename(path)[6:-5]] = entry
    lines = ["| phase | result | wall s | peak RSS MB | load (1/5/15 min) at start |", "| --- | --- | --- | --- | --- |"]
    for name, entry in results.items():
        shown = {k: v for k, v in entry.items() if k not in ("argv", "wall_seconds", "peak_rss_mb", "load_start", "load_end")}
        lines.append(f"| {name} | {json.dumps(shown)} | {entry['wall_seconds']} | {entry['peak_rss_mb']:.0f} | {entry['load_start']} |")
    print("\n".join(lines))
    return {"phases": sorted(results)}


def _run_phase(args, phase: str) -> None:
    """Runs one phase in a child process and writes its result, wall time and peak RSS."""
    if phase == "report":
        phase_report(args)
        return
    argv = [sys.executable, os.path.abspath(__file__), "--child", phase, *sys.argv[1:]]
    name = phase if phase not in ("train", "evaluate", "scann", "popularity") else f"{phase}_{args.tag}"
    result_path = os.path.join(args.out, f"phase_{name}.json")
    load = _load()
    start = time.perf_counter()
    proc = subprocess.run(argv, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"phase {phase} failed (rc {proc.returncode})")
    with open(result_path + ".child") as f:
        result = json.load(f)
    os.remove(result_path + ".child")
    result.update(wall_seconds=round(wall, 1), load_start=load, load_end=_load(), argv=" ".join(sys.argv))
    with open(result_path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {json.dumps(result)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_scale")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=["generate", "train", "evaluate", "scann", "report"])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--interactions", type=int, default=20_000_000)
    parser.add_argument("--shard-rows", type=int, default=250_000)
    parser.add_argument("--chunk-rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--shuffle-buffer", type=int, default=65536)
    parser.add_argument("--variant", default="correct-sfx", choices=("correct-sfx", "plain-sfx"))
    parser.add_argument("--tag", default="corrected", help="names the train/evaluate/scann outputs")
    parser.add_argument("--train-rows", type=int, default=0, help="train on the first files holding this many rows (0: all)")
    parser.add_argument("--eval-queries", type=int, default=20000)
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--item-block", type=int, default=65536)
    parser.add_argument("--query-block", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=200, help="single/ps1/ps2: batches to train")
    parser.add_argument("--rounds", type=int, default=3, help="epoch: rounds of the interleaved measurements")
    parser.add_argument("--ps-timeout", type=float, default=3600)
    parser.add_argument("--format-rows", type=int, default=200_000, help="formats: rows written and read per format")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="a config override KEY=VALUE (repeatable)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    if "--child" in sys.argv:
        at = sys.argv.index("--child")
        phase = sys.argv[at + 1]
        args = parser.parse_args(sys.argv[1:at] + sys.argv[at + 2:])
        result = globals()[f"phase_{phase}"](args)
        result["peak_rss_mb"] = round(_peak_rss_mb(), 1)
        name = phase if phase not in ("train", "evaluate", "scann", "popularity") else f"{phase}_{args.tag}"
        with open(os.path.join(args.out, f"phase_{name}.json.child"), "w") as f:
            json.dump(result, f)
        return
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for phase in args.phases:
        _run_phase(args, phase)


if __name__ == "__main__":
    main()
