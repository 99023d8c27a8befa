"""Serving benchmark: the exported SavedModel vs raw ScaNN vs brute force (:mod:`yt_bias.benchmarks.serving`).

    python scripts/bench_serving.py                      # N = 1e4, 1e5, 1e6 (about 10 minutes on 2 cores)
    python scripts/bench_serving.py --sizes 10000 --queries 256
"""

from yt_bias.benchmarks.serving import main

if __name__ == "__main__":
    main()
