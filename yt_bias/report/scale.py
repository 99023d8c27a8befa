"""Section ``scale``: the benchmark of record at 1,000,000 items and 20,000,000 interactions, read from its results.

The benchmark (``scripts/bench_scale.py``) takes about an hour on 2 cores and writes one JSON per
phase (``phase_*.json``: the numbers, peak RSS, load average and the exact command line). This
section does not rerun it: given ``--scale-results DIR`` it reads those files, checks that the
phases it reports are there, and renders them with the command of each phase. Without the folder
it is recorded as skipped.

Training throughput: ``bench_scale`` records the optimizer's step count after ``model.fit``, which
is one more than the batches trained, so examples/s here is ``(steps - 1) * batch_size / seconds``.
"""

from __future__ import annotations

import json
import os

from yt_bias.report.base import SectionResult, Settings, fmt, provenance, skipped, write_table

NAME = "scale"
TITLE = "Scale: 1M items, 20M interactions, from disk"
PHASES = (
    "generate",
    "train_full",
    "evaluate_full",
    "popularity_full",
    "scann_full",
    "train_corrected",
    "evaluate_corrected",
    "train_plain",
    "evaluate_plain",
    "popularity_corrected",
    "single",
    "ps1",
    "ps2",
)


def _read_phases(folder: str) -> dict[str, dict]:
    phases = {}
    missing = []
    for phase in PHASES:
        path = os.path.join(folder, f"phase_{phase}.json")
        if not os.path.isfile(path):
            missing.append(os.path.basename(path))
            continue
        with open(path, encoding="utf-8") as f:
            phases[phase] = json.load(f)
    if missing:
        raise FileNotFoundError(
            f"--scale-results {folder}: missing {', '.join(missing)}; run `python scripts/bench_scale.py --out {folder}` "
            "with the phases of docs/scale.md first."
        )
    return phases


def _examples_per_second(train: dict) -> float:
    return (train["steps"] - 1) * train["batch_size"] / train["seconds"]


def run(settings: Settings, out_dir: str) -> SectionResult:
    if not settings.scale_results:
        return skipped("needs --scale-results DIR (the output of scripts/bench_scale.py, about an hour on 2 cores)")
    p = _read_phases(settings.scale_results)
    gen, full, ev, pop, scann = p["generate"], p["train_full"], p["evaluate_full"], p["popularity_full"], p["scann_full"]
    numbers: dict = {
        "items": gen["items"],
        "interactions": gen["interactions"],
        "train_rows": gen["train_rows"],
        "generate/seconds": gen["seconds"],
        "generate/rows_per_second": gen["rows_per_second"],
        "generate/disk_mb": gen["disk_mb"],
        "generate/peak_rss_mb": gen["peak_rss_mb"],
        "full/batches": full["steps"] - 1,
        "full/batch_size": full["batch_size"],
        "full/seconds": full["seconds"],
        "full/examples_per_second": _examples_per_second(full),
        "full/peak_rss_mb": full["peak_rss_mb"],
        "full/eval_seconds": ev["seconds"],
        "full/eval_queries": ev["queries"],
        "full/eval_peak_rss_mb": ev["peak_rss_mb"],
        "popularity/recall@100": pop["popularity_recall@100"],
    }
    for k in (10, 50, 100):
        numbers[f"full/recall@{k}"] = ev[f"recall@{k}"]
        numbers[f"scann/recall_loss@{k}"] = scann[f"recall_loss@{k}"]
        for tag in ("corrected", "plain"):
            numbers[f"{tag}/recall@{k}"] = p[f"evaluate_{tag}"][f"recall@{k}"]
    for tag in ("corrected", "plain"):
        numbers[f"{tag}/rows"] = (p[f"train_{tag}"]["steps"] - 1) * p[f"train_{tag}"]["batch_size"]
    numbers["subset/popularity_recall@100"] = p["popularity_corrected"]["popularity_recall@100"]
    for phase in ("single", "ps1", "ps2"):
        numbers[f"{phase}/examples_per_second"] = p[phase]["examples_per_second"]
    numbers["peak_rss_mb_max"] = max(x.get("peak_rss_mb", 0.0) for x in (gen, full, ev))
    commands = {phase: "python " + p[phase]["argv"] for phase in PHASES}
    loads = {phase: p[phase].get("load_start") for phase in PHASES}
    table = write_table(out_dir, NAME, _table(numbers, commands))
    return SectionResult(
        numbers=numbers,
        tables=[table],
        config={"scale_results": "BENCH_SCALE_DIR", "commands": commands, "load_at_start": loads},
        summary="read from scripts/bench_scale.py's phase files (each phase's command and load are in report.json)",
    )


def _table(n: dict, commands: dict) -> str:
    return "\n".join([
        "| phase | result | peak RSS | command |",
        "|---|---|---|---|",
        f"| generate {n['items']:,} items, {n['interactions']:,} interactions | {fmt(n['generate/seconds'], 0)} s "
        f"({fmt(n['generate/rows_per_second'], 0)} rows/s), {fmt(n['generate/disk_mb'] / 1024, 1)} GiB | "
        f"{fmt(n['generate/peak_rss_mb'], 0)} MB | `{commands['generate']}` |",
        f"| one epoch, corrected, {n['full/batches']:,} batches of {n['full/batch_size']} | {fmt(n['full/seconds'], 0)} s "
        f"({fmt(n['full/examples_per_second'], 0)} examples/s) | {fmt(n['full/peak_rss_mb'], 0)} MB | `{commands['train_full']}` |",
        f"| exact evaluation, {n['full/eval_queries']:,} queries x all items | {fmt(n['full/eval_seconds'], 0)} s; R@10 "
        f"{fmt(n['full/recall@10'])}, R@100 {fmt(n['full/recall@100'])} (most-popular R@100 {fmt(n['popularity/recall@100'])}) | "
        f"{fmt(n['full/eval_peak_rss_mb'], 0)} MB | (same) |",
        f"| ScaNN evaluation against exact | recall loss {fmt(n['scann/recall_loss@10'])} / {fmt(n['scann/recall_loss@50'])} / "
        f"{fmt(n['scann/recall_loss@100'])} at K = 10 / 50 / 100 | - | `{commands['scann_full']}` |",
        f"| corrected vs plain, same first {n['corrected/rows']:,} rows | R@100 {fmt(n['corrected/recall@100'])} vs "
        f"{fmt(n['plain/recall@100'])} (most-popular {fmt(n['subset/popularity_recall@100'])}) | - | "
        f"`{commands['train_corrected']}`; `{commands['train_plain']}` |",
        f"| 40 steps: one process / PS 1 worker / PS 2 workers (loopback) | {fmt(n['single/examples_per_second'], 0)} / "
        f"{fmt(n['ps1/examples_per_second'], 0)} / {fmt(n['ps2/examples_per_second'], 0)} examples/s | - | `{commands['ps2']}` |",
    ])


def readme_blocks(entry: dict) -> dict[str, str]:
    n = entry["numbers"]
    commands = entry["config"]["commands"]
    text = _table(n, commands)
    return {NAME: text + "\n\n" + provenance(entry)}
