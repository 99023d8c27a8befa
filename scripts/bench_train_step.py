"""Training-step time and peak memory, ours against TFRS (:mod:`yt_bias.benchmarks.train_step`).

Usage:
  python scripts/bench_train_step.py --quick          # 1024 and 8192, few rounds (a few minutes)
  python scripts/bench_train_step.py                  # 1024, 8192, 32768, 65536 (bounded: ~15-25 min on 2 cores)
  python scripts/bench_train_step.py --quick --json runs/step.json   # also every row as JSON
"""

from yt_bias.benchmarks.train_step import main

if __name__ == "__main__":
    main()
