"""Peak memory and time of exact top-k: query-chunked dense scores vs. blockwise over items.

Each method runs in its own subprocess (so peak RSS is its own) on the same random embeddings;
the script prints both and their ratios, and checks that the results agree.

    python scripts/bench_evaluation_blocks.py --items 200000 --queries 1000 --dim 64 --k 100
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def _run(method: str, args: argparse.Namespace) -> dict:
    import yt_bias  # noqa: F401  (Keras 2 before TensorFlow)
    from yt_bias.retrieval.blocks import blockwise_top_k
    from yt_bias.retrieval.exact import top_k

    rng = np.random.default_rng(0)
    queries = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    items = rng.normal(size=(args.items, args.dim)).astype(np.float32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if method == "dense":
        result = top_k(lambda a, b: queries[a:b] @ items.T, args.queries, args.items, args.k)
    else:
        result = blockwise_top_k(queries, items, args.k, item_block=args.item_block, query_block=args.query_block)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "method": method,
        "seconds": seconds,
        "peak_rss_mb": peak / 1024,
        "growth_mb": (peak - base) / 1024,
        "checksum": int(result[:, :10].sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--item-block", type=int, default=16384)
    parser.add_argument("--query-block", type=int, default=1024)
    parser.add_argument("--method", choices=("dense", "blockwise"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        print(json.dumps(_run(args.method, args)))
        return
    results = {}
    for method in ("dense", "blockwise"):
        argv = [sys.executable, __file__, "--method", method] + sys.argv[1:]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        results[method] = json.loads(out.strip().splitlines()[-1])
        print(json.dumps(results[method]))
    dense, block = results["dense"], results["blockwise"]
    print(
        f"items={args.items} queries={args.queries} dim={args.dim} k={args.k} item_block={args.item_block} "
        f"query_block={args.query_block}: growth dense/blockwise = {dense['growth_mb'] / max(block['growth_mb'], 1e-9):.2f}x, "
        f"time blockwise/dense = {block['seconds'] / dense['seconds']:.2f}x, "
        f"same top-10 checksum: {dense['checksum'] == block['checksum']}"
    )


if __name__ == "__main__":
    main()
