"""Section ``fault_matrix``: which faults the parameter-server cluster survives, run many times, read from its results.

The matrix (``scripts/fault_matrix.py``) starts a fresh loopback cluster for every run (a chief,
2 workers, 2 parameter servers; the estimator's arrays in 2 shards, one per parameter server),
injects one fault with SIGKILL and checks what survived. It takes minutes per run on 2 cores, so
this section does not rerun it: it reads the results of record, ``docs/fault_matrix.json`` (the
script's ``--out``, with its exact command), and renders one row per cell: runs, successes, what
was lost, and the estimator after the fault against uninterrupted runs. Without the file (a
package installed without its docs) the section is recorded as skipped.
"""

from __future__ import annotations

import json
import os

from yt_bias.report.base import SectionResult, Settings, fmt, provenance, skipped, write_table

NAME = "fault_matrix"
TITLE = "Fault matrix of the parameter-server cluster"
RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs", "fault_matrix.json")
# Cell -> (the fault, what surviving it means), in the table's order.
CELLS = {
    "uninterrupted": ("no fault (the reference)", "the job finishes"),
    "uninterrupted_long": ("no fault (the reference for a restarted worker)", "the job finishes"),
    "worker_restarted": ("worker 1 killed after checkpoint 1, 2 or 3 of 4, restarted at once",
                         "the job finishes; the failed closure is re-run"),
    "worker_lost": ("worker 1 killed after checkpoint 1, never restarted", "worker 0 finishes the job"),
    "ps_killed": ("parameter server 1 killed after checkpoint 2",
                  "the chief stops (exit 3, the PS named); a new cluster resumes from the committed checkpoint"),
    "chief_killed": ("the chief killed after checkpoint 2, restarted on the same servers",
                     "it resumes from the committed checkpoint"),
    "checkpoint_write_killed": ("the chief killed while a checkpoint is written (its temporary files exist), restarted",
                                "the previous checkpoint is read whole and resumed from"),
}


def read_results(path: str | None = None) -> dict:
    """The fault matrix's JSON (``scripts/fault_matrix.py --out``), checked for its cells.

    Raises:
      ValueError: not valid JSON, or no ``cells`` / ``command`` in it.
    """
    path = path or RESULTS
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); rerun scripts/fault_matrix.py --out {path}.") from None
    if not isinstance(results, dict) or not isinstance(results.get("cells"), dict) or "command" not in results:
        raise ValueError(f"{path}: expected the output of scripts/fault_matrix.py (an object with 'cells' and 'command').")
    return results


def run(settings: Settings, out_dir: str) -> SectionResult:
    if not os.path.isfile(RESULTS):
        return skipped(f"needs {RESULTS} (the output of scripts/fault_matrix.py; minutes per run on 2 cores)")
    results = read_results()
    numbers: dict = {}
    for cell in CELLS:
        if cell not in results["cells"]:
            continue
        summary = results["cells"][cell]["summary"]
        numbers[f"{cell}/closures"] = results["cells"][cell].get("steps")
        for key in ("runs", "successes", "missed", "extra_estimator_steps_max", "requeued_closures_max",
                    "closures_redone_max", "values_compared_min", "checkpoints_read", "seconds_mean"):
            if key in summary:
                numbers[f"{cell}/{key}"] = summary[key]
        if summary.get("estimator_tv_error_mean_sd"):
            numbers[f"{cell}/estimator_tv_error_mean"], numbers[f"{cell}/estimator_tv_error_sd"] = summary["estimator_tv_error_mean_sd"]
        runs = [r for r in results["cells"][cell]["runs"] if r.get("ok")]
        if cell == "worker_restarted" and runs:
            numbers[f"{cell}/served_before_the_end"] = sum(bool(r.get("restarted_worker_served_before_the_end")) for r in runs)
            numbers[f"{cell}/rejoined_before_the_end"] = sum(bool(r.get("recovered_worker")) for r in runs)
        if cell == "ps_killed" and runs:
            numbers[f"{cell}/chief_stopped_seconds_max"] = max(r["chief_stopped_seconds"] for r in runs)
    config = {"results": "docs/fault_matrix.json", "command": results["command"], "settings": results.get("settings", {}),
              "matrix_started_at": results.get("started_at"), "matrix_updated_at": results.get("updated_at"),
              "matrix_wall_seconds": results.get("wall_seconds")}
    table = write_table(out_dir, NAME, _table(numbers, results.get("settings", {})))
    return SectionResult(numbers=numbers, tables=[table], config=config,
                         summary=f"read from docs/fault_matrix.json, written by `nice -n 10 {results['command']}`")


def _lost(cell: str, n: dict) -> str:
    if cell.startswith("uninterrupted"):
        return "-"
    if cell in ("worker_restarted", "worker_lost"):
        return (f"no checkpoint needed; at most {n.get(f'{cell}/requeued_closures_max', 0)} closure(s) re-run, "
                f"estimator step at most {n.get(f'{cell}/extra_estimator_steps_max', 0)} above the closures")
    return (f"the closures after the committed checkpoint (at most {n.get(f'{cell}/closures_redone_max', '-')}) are redone; "
            f"{n.get(f'{cell}/values_compared_min', '-')} restored tensors equal the checkpoint's")


def _table(n: dict, settings: dict) -> str:
    rows = ["| fault | survived when | closures | runs | successes | lost | estimator TV error at the end (mean ± sd) |",
            "|---|---|---|---|---|---|---|"]
    for cell, (fault, survived) in CELLS.items():
        if f"{cell}/runs" not in n:
            continue
        extra = ""
        if cell == "worker_restarted" and f"{cell}/rejoined_before_the_end" in n:
            extra = (f" (the restarted worker was serving again before the end in {n[f'{cell}/served_before_the_end']}, "
                     f"and the coordinator had taken it back in {n[f'{cell}/rejoined_before_the_end']})")
        if cell == "checkpoint_write_killed" and n.get(f"{cell}/missed"):
            extra = f" ({n[f'{cell}/missed']} more runs ended before a write was caught: not counted)"
        error = (f"{fmt(n[f'{cell}/estimator_tv_error_mean'])} ± {fmt(n[f'{cell}/estimator_tv_error_sd'])}"
                 if f"{cell}/estimator_tv_error_mean" in n else "-")
        rows.append(f"| {fault} | {survived} | {n.get(f'{cell}/closures') or '-'} | {n[f'{cell}/runs']} | {n[f'{cell}/successes']}{extra} | {_lost(cell, n)} | {error} |")
    steps = settings.get("steps")
    if steps:
        rows.append("")
        rows.append("Each run: a new loopback cluster (chief, 2 workers, 2 parameter servers, the estimator in 2 shards), "
                    "smoke preset, a checkpoint every quarter of the closures (every tenth in the checkpoint-write cell). "
                    "After a fault the estimator arrays cannot equal an uninterrupted run's (the asynchronous workers "
                    "interleave differently in every run, faulted or not), so their error is compared with the "
                    "uninterrupted runs' of the same length; every run also checks that the committed checkpoint holds "
                    "exactly the arrays the chief ended with.")
    return "\n".join(rows)


def readme_blocks(entry: dict) -> dict[str, str]:
    return {NAME: _table(entry["numbers"], entry["config"].get("settings", {})) + "\n\n" + provenance(entry)}
