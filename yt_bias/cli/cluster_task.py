"""One task process of a ParameterServerStrategy cluster: ``python -m yt_bias.cli.cluster_task``.

Every task runs it with the same config (``--preset``/``--set``, the same files as ``yt-bias train``)
and its own role, read from ``TF_CONFIG`` (as on a real cluster) or from ``--cluster`` +
``--task-type`` + ``--task-index``. ``ps`` and ``worker`` tasks serve until killed; the ``chief``
trains into a run directory (``run.json``, config, lock, ``checkpoint/``, ``metrics.json``:
:mod:`yt_bias.training.cluster`) that ``yt-bias export`` serves. Exit status of the chief: 0 done,
2 the workdir holds another run or is in use, 3 a parameter server died (restart the cluster and
the chief on the same workdir: it resumes from the committed checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from yt_bias.training.cluster import SERVER_TYPES, ParameterServerLost, run_chief, serve
from yt_bias.training.run_directory import RunConflict

EXIT_RUN_CONFLICT = 2
EXIT_PARAMETER_SERVER_LOST = 3


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    from yt_bias.cli.common import add_config_arguments

    parser = argparse.ArgumentParser(prog="python -m yt_bias.cli.cluster_task", description=__doc__.split("\n")[0])
    add_config_arguments(parser)
    parser.add_argument("--cluster", default=None, help="cluster spec JSON (default: TF_CONFIG's 'cluster')")
    parser.add_argument("--task-type", choices=("chief", "worker", "ps"), default=None, help="default: TF_CONFIG's")
    parser.add_argument("--task-index", type=int, default=None)
    parser.add_argument("--workdir", default="runs/cluster",
                        help="chief: the run directory (a chief restarted on it resumes from its committed checkpoint)")
    parser.add_argument("--overwrite", action="store_true", help="chief: the workdir holds another run: replace it")
    parser.add_argument("--resume", action="store_true",
                        help="chief: the workdir holds this run under another config: continue it (model sections unchanged)")
    parser.add_argument("--steps", type=int, default=None, help="chief: training closures (distribute.steps)")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="chief: also checkpoint every N closures (distribute.checkpoint_every; 0 = at the end only)")
    parser.add_argument("--data-files", default=None, metavar="PATTERN",
                        help="chief: train on TFRecord shards ('DIR/*.tfrecord'; items.npz and features.json in DIR); "
                             "worker w of W reads files w, w+W, ... (every task must see the same path)")
    parser.add_argument("--shuffle-buffer", type=int, default=10000, help="chief, with --data-files: rows in each worker's shuffle buffer")
    parser.add_argument("--no-eval", action="store_true", help="chief: skip the Recall@K evaluation at the end")
    parser.add_argument("--restored-state", default=None, metavar="PREFIX",
                        help="chief: before training, write the model's variables as restored to this checkpoint prefix "
                             "(the fault matrix's check that a resumed chief continues from its checkpoint)")
    parser.add_argument("--eval-queries", type=int, default=None,
                        help="chief, with --data-files: evaluate the first N positive rows of DIR/test (default: all)")
    return parser.parse_args(argv)


def _tf_config(args: argparse.Namespace) -> dict:
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    if args.cluster:
        tf_config["cluster"] = json.loads(args.cluster)
    task = dict(tf_config.get("task", {}))
    if args.task_type:
        task["type"] = args.task_type
    if args.task_index is not None:
        task["index"] = args.task_index
    tf_config["task"] = task
    if "cluster" not in tf_config or "type" not in task:
        raise ValueError("No cluster: set TF_CONFIG or pass --cluster and --task-type (see docs/distributed.md).")
    return tf_config


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    tf_config = _tf_config(args)
    if tf_config["task"]["type"] in SERVER_TYPES:
        serve(tf_config)
        return 0
    from yt_bias._keras import tf
    from yt_bias.cli.common import config_from_args
    from yt_bias.config import override

    tf.get_logger().setLevel("INFO")  # the coordinator logs worker failures, re-queued closures, recoveries
    tf.get_logger().propagate = False  # once, not once more through the root logger
    config = override(config_from_args(args), "distribute.strategy=parameter_server")
    steps = args.steps if args.steps is not None else config.distribute.steps
    mode = "overwrite" if args.overwrite else "resume" if args.resume else "refuse"
    try:
        metrics = run_chief(config, tf_config, args.workdir, steps, args.log_every, args.checkpoint_every,
                            data_files=args.data_files, shuffle_buffer=args.shuffle_buffer, evaluate=not args.no_eval,
                            eval_queries=args.eval_queries, mode=mode, restored_state=args.restored_state)
    except RunConflict as error:
        print(f"cluster chief: error: {error}", file=sys.stderr, flush=True)
        return EXIT_RUN_CONFLICT
    except ParameterServerLost as error:
        print(f"cluster chief: error: {error}", file=sys.stderr, flush=True)
        return EXIT_PARAMETER_SERVER_LOST
    shown = {k: v for k, v in metrics.items() if k not in ("losses", "worker_reads")}
    print(json.dumps(shown, indent=2, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
