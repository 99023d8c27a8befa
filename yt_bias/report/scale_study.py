"""Section ``scale_study``: the estimator with many more items than buckets, read from the study's row files.

``yt-bias experiment scale`` writes one JSON per row (numbers, settings, command, wall time,
machine) into a results folder per seed; this section does not rerun it (an hour or more on 2
cores). Given ``--scale-results DIR`` it reads ``DIR/study/seed*/row_*.json``, checks that every
row was trained and evaluated with the same settings (all but the seed), and renders the table
(Recall@K as mean ± sd over the seeds a row has, the estimator's TV error and collision
statistics, examples/s, wall time, command) and the figure (Recall at the largest K against H, with exact
counts, plain and most-popular as lines). When ``DIR/phase_epoch.json`` (``scripts/bench_scale.py
--phases epoch``) is there, the file-training epoch against the bare step is added.
"""

from __future__ import annotations

import glob
import json
import math
import os

from yt_bias.experiments.scale import POPULAR, ROWS, load_rows
from yt_bias.report.base import SectionResult, Settings, fmt, provenance, put_stats, save_png, skipped, write_table

NAME = "scale_study"
TITLE = "The estimator at scale: a million items in fewer buckets"
STUDY_DIR = "study"
EPOCH_FILE = "phase_epoch.json"
SHARED = ("data", "train_rows", "epochs", "batch_size", "eval_queries", "ks", "shuffle_buffer", "overrides")
SUMMARY_FORMAT = "yt_bias.scale_study.summary/1"
MEASURED = ("tv_error", "tv_error_seen", "examples_per_second", "wall_seconds", "train_seconds", "eval_seconds", "peak_rss_mb")


def read_study(folder: str) -> tuple[dict[str, list[dict]], list[dict]]:
    """Row name -> its records over the seed folders ``folder/study/seed*``, and the summaries beside them.

    Raises:
      FileNotFoundError: no row file and no summary.
      ValueError: two rows (or a row and a summary) differ in a shared setting (the message names
        the setting and both).
    """
    rows: dict[str, list[dict]] = {}
    for seed_dir in sorted(glob.glob(os.path.join(folder, STUDY_DIR, "seed*"))):
        for name, record in load_rows(seed_dir).items():
            rows.setdefault(name, []).append(record)
    summaries = read_summaries(folder)
    if not rows and not summaries:
        raise FileNotFoundError(
            f"--scale-results {folder}: no {STUDY_DIR}/seed*/row_*.json; run `yt-bias experiment scale --out {folder}/{STUDY_DIR}/seed0` first."
        )
    labelled = [(f"row {name} (seed {r['settings']['seed']})", r["settings"]) for name, records in rows.items() for r in records]
    labelled += [(f"summary {s['file']}", s["settings"]) for s in summaries]
    first_label, first = labelled[0]
    for label, settings in labelled:
        for key in SHARED:
            if settings[key] != first[key]:
                raise ValueError(
                    f"scale study: {label} has {key}={settings[key]!r}; {first_label} has {first[key]!r}: "
                    "the rows were not trained alike."
                )
    return rows, summaries


def read_summaries(folder: str) -> list[dict]:
    """The summaries ``folder/study/summary_*.json`` of seeds whose row files were not kept (see the module docstring).

    Raises:
      ValueError: a file that is not such a summary.
    """
    summaries = []
    for path in sorted(glob.glob(os.path.join(folder, STUDY_DIR, "summary_*.json"))):
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
        if not isinstance(summary, dict) or summary.get("format") != SUMMARY_FORMAT:
            raise ValueError(f"scale study: {path} is not a summary (expected format {SUMMARY_FORMAT!r}).")
        summaries.append(dict(summary, file=os.path.basename(path)))
    return summaries


def summary_of(entry: dict, note: str) -> dict:
    """A summary (the module docstring) of the rows of a rendered ``scale_study`` report entry, for seeds whose files are gone."""
    n, config = entry["numbers"], entry["config"]
    keep = {key: value for key, value in n.items() if key.split("/")[0] in n["rows"] or key in ("epoch", "rows", "train_rows", "ks")}
    return {"format": SUMMARY_FORMAT, "note": note, "settings": config["settings"], "numbers": keep,
            "commands": config["commands"], "machines": config["machines"]}


def _pooled(summaries: list[dict], name: str, key: str, values: list[float]) -> tuple[float, float, int] | None:
    """Mean, sample sd and count of ``values`` together with the summaries' seeds of row ``name``."""
    count, total, squares = 0, 0.0, 0.0
    for summary in summaries:
        n = summary["numbers"]
        if f"{name}/{key}/n" in n:
            k, mean, sd = n[f"{name}/{key}/n"], n[f"{name}/{key}/mean"], n[f"{name}/{key}/sd"]
            count, total, squares = count + k, total + k * mean, squares + (k - 1) * sd * sd + k * mean * mean
    for value in values:
        if value is not None and math.isfinite(float(value)):
            count, total, squares = count + 1, total + float(value), squares + float(value) ** 2
    if not count:
        return None
    mean = total / count
    sd = math.sqrt(max(squares - count * mean * mean, 0.0) / (count - 1)) if count > 1 else 0.0
    return mean, sd, count


def run(settings: Settings, out_dir: str) -> SectionResult:
    if not settings.scale_results:
        return skipped("needs --scale-results DIR (DIR/study/seed*/ from yt-bias experiment scale; an hour or more on 2 cores)")
    rows, summaries = read_study(settings.scale_results)
    shared = next(iter(rows.values()))[0]["settings"] if rows else summaries[0]["settings"]
    numbers: dict = {f"settings/{k}": shared[k] for k in ("train_rows", "epochs", "batch_size", "eval_queries")}
    numbers["ks"] = list(shared["ks"])
    earlier = [s["numbers"] for s in summaries]
    numbers["train_rows"] = next(iter(rows.values()))[0]["train_rows"] if rows else earlier[0]["train_rows"]
    commands, machines = {}, {}
    names = set(rows) | {name for n in earlier for name in n["rows"]}
    order = [name for name in (*ROWS, POPULAR) if name in names]
    numbers["rows"] = order
    for name in order:
        records = sorted(rows.get(name, []), key=lambda r: r["settings"]["seed"])
        seeds = [seed for n in earlier for seed in n.get(f"{name}/seeds", [])] + [r["settings"]["seed"] for r in records]
        if len(set(seeds)) < len(seeds):
            raise ValueError(f"scale study: row {name} has seeds {sorted(seeds)}: a seed is in a summary and in a row file.")
        numbers[f"{name}/seeds"] = sorted(seeds)
        for key in [f"recall@{k}" for k in numbers["ks"]] + list(MEASURED):
            stats = _pooled(summaries, name, key, [r.get(key) for r in records])
            if stats is not None:
                numbers[f"{name}/{key}/mean"], numbers[f"{name}/{key}/sd"], numbers[f"{name}/{key}/n"] = stats
        collisions = next((r["collisions"] for r in records if "collisions" in r), None)
        if collisions is not None:
            for key, value in collisions.items():
                numbers[f"{name}/collisions/{key}"] = value
        else:
            numbers.update({key: value for n in earlier for key, value in n.items() if key.startswith(f"{name}/collisions/")})
        if name in ROWS:
            numbers[f"{name}/hash_size"], numbers[f"{name}/num_hashes"] = ROWS[name][1], ROWS[name][2]
        commands[name] = [c for s in summaries for c in s["commands"].get(name, [])] + [r["command"] for r in records]
        machines[name] = [m for s in summaries for m in s["machines"].get(name, [])] + [
            dict(r["machine"], load_average_end=r.get("load_average_end"), started=r.get("started")) for r in records]
    hosts = [m for records in machines.values() for m in records]
    numbers["machine"] = {key: sorted({str(m.get(key)) for m in hosts}) for key in ("host", "cpus", "processor", "tensorflow")}
    loads = [m["load_average"][0] for m in hosts if m.get("load_average")]
    numbers["load_at_start"] = [min(loads), max(loads)] if loads else None
    epoch_path = os.path.join(settings.scale_results, EPOCH_FILE)
    if os.path.isfile(epoch_path):
        with open(epoch_path, encoding="utf-8") as f:
            epoch = json.load(f)
        numbers["epoch"] = {k: epoch[k] for k in ("steps", "batch_size", "items", "ms_per_step", "examples_per_second",
                                                  "ratio_to_bare_median", "ratio_to_bare_range", "epoch_batches",
                                                  "cpu_ms_per_step", "cpu_ratio_to_bare_median",
                                                  "startup_seconds", "fit_files_steady_ms_per_step", "epoch_ratio_projected",
                                                  "eval_queries", "eval_seconds", "peak_rss_mb", "load_start")}
        if "fit_fixed_seconds" in epoch:  # measured since the one-batch fit mode exists
            numbers["epoch"]["fit_fixed_seconds"] = epoch["fit_fixed_seconds"]
        commands["epoch"] = ["python " + epoch["argv"]]
    elif any("epoch" in n for n in earlier):
        numbers["epoch"] = next(n["epoch"] for n in earlier if "epoch" in n)
        commands["epoch"] = next(s["commands"]["epoch"] for s in summaries if "epoch" in s["commands"])
    table = write_table(out_dir, NAME, _table(numbers, commands))
    figure = save_png(out_dir, NAME, _figure(numbers))
    return SectionResult(
        numbers=numbers,
        tables=[table],
        figures=[figure],
        config={"scale_results": "SCALE_RESULTS_DIR", "settings": shared, "commands": commands, "machines": machines},
        summary=f"read from the row files of yt-bias experiment scale ({len(order)} rows; each row's command, wall time and machine in report.json)"
        + "".join(f"; pooled with {x['file']} (seeds whose row files were not kept)" for x in summaries),
    )


def _recall(n: dict, name: str, k: int) -> str:
    mean, sd, count = n.get(f"{name}/recall@{k}/mean"), n.get(f"{name}/recall@{k}/sd"), n.get(f"{name}/recall@{k}/n", 1)
    if mean is None:
        return "-"
    return fmt(mean) if count < 2 else f"{fmt(mean)} ± {fmt(sd)} ({count})"


def _label(n: dict, name: str) -> str:
    if name == POPULAR:
        return "most popular (no model)"
    if name == "plain":
        return "plain-sfx (no correction)"
    if name == "exact":
        return "correct-sfx, exact counts (no hashing)"
    h, m = n[f"{name}/hash_size"], n[f"{name}/num_hashes"]
    return f"correct-sfx, streaming, H = 2^{h.bit_length() - 1}, m = {m} ({m * h:,} cells)"


def _table(n: dict, commands: dict) -> str:
    lines = [
        f"{n['train_rows']:,} training rows x {n['settings/epochs']} epoch(s), batch {n['settings/batch_size']}, "
        f"{n['settings/eval_queries']:,} held-out queries over the whole corpus; Recall@K as mean ± sd (seeds) where a row "
        "has several seeds. Rows ran one after another, each in its own process, on "
        + ", ".join(f"{key} {'/'.join(values)}" for key, values in n["machine"].items())
        + (f", 1-minute load {n['load_at_start'][0]:.1f} to {n['load_at_start'][1]:.1f} at their starts." if n["load_at_start"] else "."),
        "",
        "| row | " + " | ".join(f"R@{k}" for k in n["ks"]) + " | TV error (all items / seen items) | training items per bucket "
        "| rows drowned (bucket-mate >= 10x) | examples/s | wall s | command |",
        "|---|" + "---|" * len(n["ks"]) + "---|---|---|---|---|---|",
    ]
    for name in n["rows"]:
        tv = "-"
        if f"{name}/tv_error/mean" in n:
            tv = f"{fmt(n[f'{name}/tv_error/mean'], 3)} / {fmt(n.get(f'{name}/tv_error_seen/mean'), 3)}"
        per_bucket = fmt(n.get(f"{name}/collisions/items_per_bucket"), 2) if f"{name}/collisions/items_per_bucket" in n else (
            "1 (exact)" if name == "exact" else "-")
        drowned = fmt(n.get(f"{name}/collisions/drowned_share"), 4) if f"{name}/collisions/drowned_share" in n else (
            "0 (exact)" if name == "exact" else "-")
        speed = fmt(n.get(f"{name}/examples_per_second/mean"), 0) if f"{name}/examples_per_second/mean" in n else "-"
        lines.append(
            f"| {_label(n, name)} | " + " | ".join(_recall(n, name, k) for k in n["ks"]) + f" | {tv} | "
            f"{per_bucket} | {drowned} | {speed} | {fmt(n.get(f'{name}/wall_seconds/mean'), 0)} | `{commands[name][0]}` |"
        )
    if "epoch" in n:
        e = n["epoch"]
        ms, ratio = e["ms_per_step"], e["ratio_to_bare_median"]
        lines += [
            "",
            f"File-training epoch against the bare step, {e['items']:,} items, batch {e['batch_size']}, {e['steps']} steps a mode "
            f"(median of rounds, interleaved; `{commands['epoch'][0]}`):",
            "",
            "| measured | ms per step | examples/s | ratio to the bare step (median [min, max]) | CPU ms per step | CPU ratio |",
            "|---|---|---|---|---|---|",
        ]
        for mode, label in (("bare", "bare train step, batches in memory"), ("fit_memory", "model.fit, batches in memory"),
                            ("fit_files", "model.fit from the shards (as file training)"),
                            ("pipeline", "the shard reader alone"), ("estimator", "the estimator alone (update + read)")):
            spread = "1" if mode == "bare" else f"{fmt(ratio[mode], 3)} [{fmt(e['ratio_to_bare_range'][mode][0], 3)}, " \
                f"{fmt(e['ratio_to_bare_range'][mode][1], 3)}]"
            cpu = "1" if mode == "bare" else fmt(e["cpu_ratio_to_bare_median"][mode], 3)
            lines.append(f"| {label} | {fmt(ms[mode], 1)} | {fmt(e['examples_per_second'][mode], 0)} | {spread} | "
                         f"{fmt(e['cpu_ms_per_step'][mode], 1)} | {cpu} |")
        lines += [
            "",
            f"Reader start-up (file checks, shuffle buffer) {fmt(e['startup_seconds'], 1)} s once a pass"
            + (f", a fit call's fixed cost (a one-batch fit less one bare step) {fmt(e['fit_fixed_seconds'], 1)} s once an epoch"
               if "fit_fixed_seconds" in e else "")
            + f"; a full pass of "
            f"{e['epoch_batches']:,} batches projects to {fmt(e['epoch_ratio_projected'], 3)} x (bare step x batches); "
            f"evaluation of {e['eval_queries']:,} queries over all items: {fmt(e['eval_seconds'], 1)} s.",
        ]
    return "\n".join(lines)


def _figure(n: dict):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2))
    axes = figure.subplots()
    hashed = [name for name in n["rows"] if name in ROWS and ROWS[name][1]]
    k = max(n["ks"])
    for m in sorted({n[f"{name}/num_hashes"] for name in hashed}):
        points = sorted((n[f"{name}/hash_size"], name) for name in hashed if n[f"{name}/num_hashes"] == m)
        xs = [h.bit_length() - 1 for h, _ in points]
        ys = [n[f"{name}/recall@{k}/mean"] for _, name in points]
        errors = [n.get(f"{name}/recall@{k}/sd", 0.0) if n.get(f"{name}/recall@{k}/n", 1) > 1 else 0.0 for _, name in points]
        axes.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=f"streaming, m = {m}")
    for name, style in (("exact", "k-"), ("plain", "r--"), (POPULAR, "g:")):
        if f"{name}/recall@{k}/mean" in n:
            axes.axhline(n[f"{name}/recall@{k}/mean"], linestyle=style[1:], color=style[0], label=_label(n, name))
    axes.set_xlabel("log2 H (buckets per hash function)")
    axes.set_ylabel(f"Recall@{k}")
    axes.set_title(f"1M-item corpus, {n['train_rows']:,} rows x {n['settings/epochs']} epoch(s), batch {n['settings/batch_size']}")
    axes.legend(fontsize=7, loc="best")
    axes.grid(alpha=0.3)
    return figure


def readme_blocks(entry: dict) -> dict[str, str]:
    n = entry["numbers"]
    commands = entry["config"]["commands"]
    text = _table(n, commands)
    image = f"![Recall@{max(n['ks'])} against H: streaming estimator, exact counts, plain, most popular](docs/report/{entry['figures'][0]})"
    return {NAME: text + "\n\n" + image + "\n\n" + provenance(entry)}
