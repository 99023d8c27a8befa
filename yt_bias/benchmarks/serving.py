"""Serving benchmark: the exported SavedModel vs raw ScaNN vs brute force, measured side by side.

For each corpus size N (128-d embeddings): the item tower embeds N synthetic items (tf.data
batches), ScaNN's index is built with the library defaults (:class:`yt_bias.config.IndexConfig`),
and three paths answer the same queries:

  (a) savedmodel: the exported SavedModel, raw query features in (query tower + ScaNN + ID lookup);
  (b) raw_scann: ScaNN's searcher alone, on precomputed query embeddings;
  (c) brute_force: the brute-force SavedModel export, raw query features in (query tower + matmul + top_k).

Reported: build time, index size, recall@10 against exact, single-query latency (p50, p99) and
batch QPS. The towers are untrained but share their weights (the query of an item's content maps
to that item's embedding), and the corpus is a Gaussian mixture of item contents, so queries and
items live in one clustered space as in a trained model.

    python scripts/bench_serving.py                      # N = 1e4, 1e5, 1e6 (about 10 minutes on 2 cores)
    python scripts/bench_serving.py --sizes 10000 --queries 256

``yt-bias report`` (section ``serving``) calls :func:`main` with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

from yt_bias._keras import tf
from yt_bias.config import IndexConfig
from yt_bias.core.towers import Tower
from yt_bias.features import FeatureSpec
from yt_bias.retrieval.embedding import embed
from yt_bias.serving import export as serving
from yt_bias.serving.index import build_index
from yt_bias.training.run_directory import write_json_atomic

CONTENT = 64


def make_towers(dim: int, seed: int):
    """An item tower and a query tower with the same MLP weights (content -> [dim] unit vector)."""
    tf.random.set_seed(seed)
    item = Tower([FeatureSpec("content", "dense", width=CONTENT)], (256, dim), name="item_tower")
    query = Tower([FeatureSpec("context", "dense", width=CONTENT)], (256, dim), name="query_tower")
    item({"content": tf.zeros((1, CONTENT))})
    query({"context": tf.zeros((1, CONTENT))})
    query.set_weights(item.get_weights())
    return item, query


def make_corpus(n: int, seed: int, clusters: int = 2000) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, CONTENT)).astype(np.float32)
    content = centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, CONTENT)).astype(np.float32)
    return {"item_id": np.char.add("item_", np.arange(n).astype(str)), "content": content}, centres


def make_queries(corpus: dict, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    picks = corpus["content"][rng.integers(0, len(corpus["content"]), count)]
    return (picks + 0.3 * rng.normal(size=picks.shape)).astype(np.float32)


def exact_top_k(items: np.ndarray, queries: np.ndarray, k: int, chunk: int = 128) -> np.ndarray:
    out = []
    for start in range(0, len(queries), chunk):
        out.append(tf.math.top_k(tf.matmul(queries[start : start + chunk], items, transpose_b=True), k=k).indices.numpy())
    return np.concatenate(out)


def recall(found_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    k = exact_ids.shape[1]
    return float(np.mean([len(set(a) & set(e)) / k for a, e in zip(found_ids, exact_ids)]))


def latency(fn, inputs: list) -> tuple[float, float]:
    for x in inputs[:5]:
        fn(x)
    times = []
    for x in inputs:
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def qps(fn, batches: list, count: int) -> float:
    """Queries per second over ``batches`` holding ``count`` queries in all (after one warm-up batch)."""
    fn(batches[0])
    start = time.perf_counter()
    for batch in batches:
        fn(batch)
    return count / (time.perf_counter() - start)


def bench_size(n: int, args, workdir: str) -> list[dict]:
    k = args.k
    item_tower, query_tower = make_towers(args.dim, args.seed)
    corpus, _ = make_corpus(n, args.seed)
    contexts = make_queries(corpus, args.queries, args.seed)

    start = time.perf_counter()
    embeddings = embed(item_tower, corpus, batch_size=8192)
    embed_seconds = time.perf_counter() - start
    query_embeddings = query_tower({"context": tf.constant(contexts)}).numpy()
    ids = corpus["item_id"]
    exact_ids = ids[exact_top_k(embeddings, query_embeddings, k)]

    rows = []
    config = IndexConfig(k=k)
    scann = build_index(embeddings, ids, config)
    brute = build_index(embeddings, ids, IndexConfig(kind="brute_force", k=k))
    exports = {}
    for name, index in (("savedmodel", scann), ("brute_force", brute)):
        path = os.path.join(workdir, f"{name}_{n}")
        start = time.perf_counter()
        serving.export(path, query_tower, index)
        export_seconds = time.perf_counter() - start
        start = time.perf_counter()
        model = serving.load(path)
        exports[name] = (model, export_seconds, time.perf_counter() - start)

    singles = [{"context": tf.constant(contexts[i : i + 1])} for i in range(args.single)]
    batches = [{"context": tf.constant(contexts[i : i + args.batch])} for i in range(0, len(contexts), args.batch)]
    for name, index in (("savedmodel", scann), ("raw_scann", scann), ("brute_force", brute)):
        if name == "raw_scann":
            index.search(query_embeddings[:1], k)  # traces the search function
            traced, fetch = index._search_fns["scann"], tf.constant(k, tf.int32)

            def search(queries, traced=traced, fetch=fetch):
                return traced(queries, fetch, fetch)

            single_inputs = [tf.constant(query_embeddings[i : i + 1]) for i in range(args.single)]
            batch_inputs = [tf.constant(query_embeddings[i : i + args.batch]) for i in range(0, len(contexts), args.batch)]
            found = index.ids[np.concatenate([search(b)[0].numpy() for b in batch_inputs])]
            p50, p99 = latency(search, single_inputs)
            throughput = qps(search, batch_inputs, len(contexts))
            export_s = load_s = None
        else:
            model, export_s, load_s = exports[name]
            signature = model.signature
            found = np.concatenate([signature(**b)["item_ids"].numpy().astype(str) for b in batches])
            p50, p99 = latency(lambda x, f=signature: f(**x), singles)
            throughput = qps(lambda x, f=signature: f(**x), batches, len(contexts))
        rows.append(
            {
                "n": n,
                "path": name,
                "recall@10": round(recall(found, exact_ids), 4),
                "build_s": round(index.build_seconds, 2),
                "embed_s": round(embed_seconds, 2),
                "index_mb": round(index.size_bytes / 2**20, 1),
                "p50_ms": round(p50, 3),
                "p99_ms": round(p99, 3),
                "qps": round(throughput, 1),
                "export_s": None if export_s is None else round(export_s, 1),
                "load_s": None if load_s is None else round(load_s, 1),
                "parameters": index.parameters,
            }
        )
        print(json.dumps({key: v for key, v in rows[-1].items() if key != "parameters"}), flush=True)
    print(f"  N={n}: ScaNN parameters {scann.parameters}", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| N | path | recall@10 | build s | index MB | p50 ms | p99 ms | batch QPS |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        build = "-" if r["path"] == "brute_force" else f"{r['build_s']:.1f}"
        lines.append(
            f"| {r['n']:,} | {r['path']} | {r['recall@10']:.3f} | {build} | {r['index_mb']:.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['qps']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    """Runs the benchmark with command-line arguments (``sys.argv`` if None); returns its rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=1024, help="queries for recall and batch QPS")
    parser.add_argument("--batch", type=int, default=256, help="batch size of the QPS measurement")
    parser.add_argument("--single", type=int, default=200, help="single queries timed for p50/p99")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.processor() or 'cpu'}; TF {tf.__version__}",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for n in args.sizes:
            rows.extend(bench_size(n, args, workdir))
    print()
    print(table(rows))
    by = {(r["n"], r["path"]): r for r in rows}
    for n in args.sizes:
        sm, raw, bf = by[(n, "savedmodel")], by[(n, "raw_scann")], by[(n, "brute_force")]
        print(
            f"N={n:,}: SavedModel p50 speed-up over brute force {bf['p50_ms'] / sm['p50_ms']:.1f}x; "
            f"SavedModel batch QPS / raw ScaNN {sm['qps'] / raw['qps']:.2f}; recall@10 {sm['recall@10']:.3f}; "
            f"embed {sm['embed_s']:.1f} s, ScaNN build {sm['build_s']:.1f} s, export {sm['export_s']:.1f} s, load {sm['load_s']:.1f} s"
        )
    print(f"(total {time.perf_counter() - start:.0f} s)")
    if args.json:
        write_json_atomic(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
