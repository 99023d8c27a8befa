"""Section ``keras3``: the Keras 3 path on JAX: MovieLens-100K next to the TFRS rows, and the step-time benchmark.

* MovieLens (needs ``--movielens DIR``): :mod:`yt_bias.experiments.keras3_movielens` (plain in-batch
  softmax vs :class:`yt_bias.keras3.CorrectedRetrieval` vs most-popular, 3 seeds) runs in a
  subprocess with ``KERAS_BACKEND=jax`` (the report process has loaded TensorFlow with Keras 2).
  Its rows are set beside the ``CorrectedRetrieval()`` row of the ``tfrs_drop_in`` section (same
  split, model and protocol), read from this report's ``report.json`` or, when that has no such
  section, from the committed docs/report/report.json.
* Step time: the record of ``scripts/bench_keras3.py`` committed as docs/keras3_bench.json (the
  benchmark takes an hour on a busy 2-core machine, so the report reads its record, with the
  command and the machine, rather than rerunning it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from yt_bias.report.base import (
    SectionResult, Settings, fmt, fmt_pm, provenance, put_stats, read_report, seeds_note, skipped,
    write_table,
)

NAME = "keras3"
TITLE = "Keras 3 and JAX"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMITTED_REPORT = os.path.join(ROOT, "docs", "report")
BENCH_RECORD = os.path.join(ROOT, "docs", "keras3_bench.json")
VARIANTS = ("plain", "corrected", "most-popular")
LABELS = {"plain": "Keras 3 + JAX, in-batch softmax", "corrected": "Keras 3 + JAX, `yt_bias.keras3.CorrectedRetrieval()`",
          "most-popular": "most-popular", "tfrs": "tf-keras + TFRS, `CorrectedRetrieval()` (section tfrs_drop_in)"}
SEEDS = (0, 1, 2)
EPOCHS = 6


def _run_experiment(data_dir: str, seeds, epochs: int) -> dict:
    """The MovieLens comparison in a fresh JAX process; returns its JSON record."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "keras3_movielens.json")
        env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
        env.update(KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
        command = [sys.executable, "-m", "yt_bias.experiments.keras3_movielens", "--data", data_dir, "--out", out,
                   "--seeds", ",".join(map(str, seeds)), "--epochs", str(epochs)]
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
        if result.returncode != 0:
            raise RuntimeError(f"keras3_movielens failed (exit {result.returncode}): {result.stderr[-3000:]}")
        with open(out, encoding="utf-8") as f:
            return json.load(f)


def _tfrs_numbers(out_dir: str) -> tuple[dict | None, str | None]:
    """The ``tfrs_drop_in`` numbers of this report, or of the committed one; (numbers, where from)."""
    for folder, label in ((out_dir, "this report"), (COMMITTED_REPORT, "docs/report/report.json")):
        try:
            entry = read_report(folder).get("sections", {}).get("tfrs_drop_in", {})
        except (OSError, ValueError):
            continue
        if entry.get("status") == "ok":
            return entry["numbers"], label
    return None, None


def _movielens(settings: Settings, out_dir: str, numbers: dict) -> list[str]:
    """Runs the comparison into ``numbers``; returns its Markdown tables (warm queries, all queries)."""
    seeds, epochs = ((0,), 1) if settings.quick else (SEEDS, EPOCHS)
    record = _run_experiment(settings.movielens, seeds, epochs)
    results, ks = record["results"], [10, 50, 100]
    numbers["ks"] = ks
    numbers["warm_share"] = results["plain"][0]["warm_share"]
    numbers["experiment_seconds"] = record["seconds"]
    for variant, runs in results.items():
        for prefix in ("warm/", ""):
            for k in ks:
                put_stats(numbers, f"{variant}/{prefix}recall@{k}", [r[f"{prefix}recall@{k}"] for r in runs])
    tfrs, source = _tfrs_numbers(out_dir)
    if tfrs is not None:
        numbers["tfrs_source"] = source
        for prefix in ("warm/", ""):
            for k in ks:
                key = f"corrected/{prefix}recall@{k}"
                for stat in ("mean", "sd", "n"):
                    if f"{key}/{stat}" in tfrs:
                        numbers[f"tfrs/{prefix}recall@{k}/{stat}"] = tfrs[f"{key}/{stat}"]
                if f"{key}/mean" in tfrs and f"{key}/mean" in numbers:
                    spread = max(numbers.get(f"{key}/sd", 0.0), tfrs.get(f"{key}/sd", 0.0))
                    numbers[f"within_one_sd/{prefix}recall@{k}"] = abs(numbers[f"{key}/mean"] - tfrs[f"{key}/mean"]) <= spread
    return ["Queries of users with training ratings:\n\n" + _movielens_table(numbers, "warm/"),
            "All held-out positives:\n\n" + _movielens_table(numbers, "")]


def _bench(numbers: dict) -> dict | None:
    if not os.path.exists(BENCH_RECORD):
        return None
    with open(BENCH_RECORD, encoding="utf-8") as f:
        record = json.load(f)
    numbers["bench_rows"] = record["summary"]
    for row in record["summary"]:  # flat numbers too, so the section's step times are plain values
        if isinstance(row.get("ms_per_step"), (int, float)):
            numbers[f"step_ms/{row['path']}/{row['implementation']}/{row['batch_size']}"] = row["ms_per_step"]
        if isinstance(row.get("cpu_ms_per_step"), (int, float)):
            numbers[f"step_cpu_ms/{row['path']}/{row['implementation']}/{row['batch_size']}"] = row["cpu_ms_per_step"]
    numbers["bench_command"] = record["command"]
    numbers["bench_machine"] = record["machine"]
    numbers["bench_gpu"] = record["gpu"]
    return record


def run(settings: Settings, out_dir: str) -> SectionResult:
    numbers: dict = {}
    parts = _movielens(settings, out_dir, numbers) if settings.movielens else []
    record = _bench(numbers)
    if not parts and record is None:
        return skipped("needs --movielens DIR (MovieLens-100K is not shipped), and docs/keras3_bench.json is absent")
    if record is not None:
        parts.append(f"Train step (`{record['command']}`):\n\n" + _bench_table(record["summary"]))
    tables = [write_table(out_dir, NAME, "\n\n".join(parts))]
    seeds, epochs = ((0,), 1) if settings.quick else (SEEDS, EPOCHS)
    return SectionResult(
        numbers=numbers, tables=tables,
        config={"seeds": list(seeds), "epochs": epochs, "batch_size": 512, "data": "ML100K_DIR" if settings.movielens else None,
                "bench_record": "docs/keras3_bench.json" if record else None},
        summary=(f"MovieLens-100K, ID towers on Keras 3 + JAX, {epochs} epochs, batch 512, {seeds_note(seeds)}"
                 if settings.movielens else "step-time record only (no --movielens)"),
    )


def _movielens_table(n: dict, prefix: str) -> str:
    ks = n["ks"]
    lines = ["| task | " + " | ".join(f"R@{k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for variant in (*VARIANTS, "tfrs"):
        if f"{variant}/{prefix}recall@{ks[0]}/mean" in n:
            lines.append(f"| {LABELS[variant]} | " + " | ".join(fmt_pm(n, f"{variant}/{prefix}recall@{k}") for k in ks) + " |")
    return "\n".join(lines)


def _bench_table(rows: list[dict]) -> str:
    cpu = all("cpu_ms_per_step" in r for r in rows)  # the process's CPU time per step (records from its introduction on)
    lines = ["| B | loss | path | ms / step | / tf-keras |" + (" CPU ms / step | / tf-keras |" if cpu else "") + " peak RSS (MB) |",
             "|---|---|---|---|---|" + ("---|---|" if cpu else "") + "---|"]
    for r in rows:
        ratio = fmt(r.get("ratio_to_tf_keras"), 2)
        cpu_cells = f" {r['cpu_ms_per_step']:.1f} | {fmt(r.get('cpu_ratio_to_tf_keras'), 2)} |" if cpu else ""
        lines.append(f"| {r['batch_size']} | {r['implementation']} | {r['path']} | {r['ms_per_step']:.1f} | {ratio} |{cpu_cells}"
                     f" {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def readme_blocks(entry: dict) -> dict[str, str]:
    n = entry["numbers"]
    parts = []
    if n.get("ks"):
        share = n.get("warm_share")
        parts += ["MovieLens-100K, queries of users seen in training" + (f" ({share:.0%} of the held-out positives)" if share else "")
                  + ", the split and protocol of the TFRS drop-in table:", "", _movielens_table(n, "warm/")]
        checks = [v for key, v in n.items() if key.startswith("within_one_sd/")]
        if checks:
            parts += ["", f"Keras 3 + JAX `CorrectedRetrieval()` within one sd of the TFRS row: {sum(checks)} of {len(checks)} "
                      f"Recall@K values (TFRS numbers from {n.get('tfrs_source')})."]
    if n.get("bench_rows"):
        m = n.get("bench_machine", {})
        parts += ["", "Train step (same towers, estimator updated in the step; median of interleaved runs; "
                  f"{m.get('cpus')} CPUs, load {m.get('load_average', [0])[0]:.1f} when the record was written): "
                  f"`{n.get('bench_command')}`", "", _bench_table(n["bench_rows"])]
    parts += ["", provenance(entry)]
    return {NAME: "\n".join(parts)}
