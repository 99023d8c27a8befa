"""What a data folder's identity costs: generating a folder (its manifest hashes every file) against
checking it before training (SHA-256 of every file, or sizes only), measured side by side in one run.

    python scripts/bench_data_folder.py --out runs/bench_data_folder                  # 100k items, 1M rows
    python scripts/bench_data_folder.py --out runs/bench_data_folder --interactions 5000000
"""

from __future__ import annotations

import argparse
import os
import shutil
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="a scratch folder (replaced)")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--shard-rows", type=int, default=200_000)
    args = parser.parse_args()

    from yt_bias.data.manifest import check_data_folder
    from yt_bias.data.shards import shard_files
    from yt_bias.data.synthetic_shards import generate_shards

    shutil.rmtree(args.out, ignore_errors=True)
    start = time.perf_counter()
    report = generate_shards(args.out, args.items, args.interactions, rows_per_shard=args.shard_rows)
    generate = time.perf_counter() - start
    files = shard_files(args.out)
    size = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(args.out) for name in names)
    start = time.perf_counter()
    check_data_folder(args.out, files, report.num_items)
    hashed = time.perf_counter() - start
    start = time.perf_counter()
    check_data_folder(args.out, files, report.num_items, hashes=False)
    sizes = time.perf_counter() - start
    print(
        f"folder {size / 2**20:.1f} MiB, {report.num_train + report.num_test} rows: generate (manifest included) "
        f"{generate:.1f} s; check with SHA-256 {hashed:.2f} s ({size / 2**20 / hashed:.0f} MiB/s, "
        f"{hashed / generate:.1%} of generating); sizes only {sizes:.3f} s"
    )


if __name__ == "__main__":
    main()
