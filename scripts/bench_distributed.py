"""Steps per second of ParameterServerStrategy training with 1 and 2 workers on this machine.

Starts a real local cluster (chief, N workers, 1 PS: separate processes on 127.0.0.1) per
setting, trains ``--steps`` closures of the chosen preset, and reads the chief's metrics.json;
also times one process (model.fit, no strategy) on the same steps for reference. On one machine
the workers share its cores: the numbers measure the distributed machinery's overhead and
scaling on that machine, not what separate machines would give.

    python scripts/bench_distributed.py --steps 600 --preset smoke --out runs/bench_distributed.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from yt_bias.testing.local_cluster import LocalCluster


def single_process(preset: str, overrides: list[str], steps: int) -> dict:
    from yt_bias import config as config_lib
    from yt_bias._keras import keras
    from yt_bias.data.dataset import make_tf_dataset
    from yt_bias.data.loading import load_dataset
    from yt_bias.training.train import build_model, estimator_error

    config = config_lib.preset(preset)
    for assignment in overrides:
        config = config_lib.override(config, assignment)
    dataset = load_dataset(config.data, config.model.embedding_dim)
    keras.utils.set_random_seed(0)
    model = build_model(config, dataset)
    data = make_tf_dataset(dataset.examples("train"), config.train.batch_size, seed=0).repeat()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)  # warm-up: tracing
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps - 1, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    return {
        "setting": "1 process, no strategy (model.fit)",
        "steps_per_second": round((steps - 1) / seconds, 2),
        "seconds": round(seconds, 2),
        "estimator_tv_error": estimator_error(model, dataset, config.train.batch_size),
    }


def cluster(num_workers: int, preset: str, overrides: list[str], steps: int, root: str) -> dict:
    workdir = os.path.join(root, f"workers{num_workers}")
    args = ["--preset", preset, "--workdir", workdir, "--steps", str(steps)]
    for assignment in overrides:
        args += ["--set", assignment]
    with LocalCluster(num_workers=num_workers, num_ps=1, log_dir=os.path.join(workdir, "logs")) as c:
        c.start_servers()
        chief = c.run_chief(args, timeout=900)
        rc = chief.wait(timeout=900)
    if rc != 0:
        raise RuntimeError(f"chief failed (rc {rc}); see {workdir}/logs/chief_0.log")
    with open(os.path.join(workdir, "metrics.json"), encoding="utf-8") as f:
        m = json.load(f)
    return {
        "setting": f"PS cluster: chief + {num_workers} worker(s) + 1 PS, processes on 127.0.0.1",
        "steps_per_second": m["steps_per_second"],
        "seconds": m["seconds"],
        "warmup_seconds": m["warmup_seconds"],
        "estimator_step": m["estimator_step"],
        "estimator_tv_error": m["estimator_tv_error"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as root:
        for workers in (1, 2):
            results.append(cluster(workers, args.preset, args.overrides, args.steps, root))
            print(json.dumps(results[-1]), flush=True)
    results.append(single_process(args.preset, args.overrides, args.steps))
    print(json.dumps(results[-1]), flush=True)
    summary = {
        "preset": args.preset,
        "overrides": args.overrides,
        "steps": args.steps,
        "cpus": os.cpu_count(),
        "results": results,
    }
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
