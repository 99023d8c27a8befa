"""Section ``train_step``: training-step time and peak memory against batch size, ours against TFRS.

Runs :func:`yt_bias.benchmarks.train_step.main` (the benchmark of ``scripts/bench_train_step.py``;
every configuration in its own subprocess, so each peak RSS is its own; configurations of one
batch size interleaved round by round): the dense and the blockwise corrected softmax and TFRS's ``tasks.Retrieval`` on the same towers, data and
probabilities. A configuration whose estimated peak passes the memory limit is not run.
"""

from __future__ import annotations

import re

from yt_bias.report.base import SectionResult, Settings, fmt, provenance, save_png, write_table
from yt_bias.benchmarks import train_step as train_step_benchmark

NAME = "train_step"
TITLE = "Train-step time and memory against batch size"
BATCH_SIZES = (1024, 4096, 8192, 16384, 32768)
CONFIGS = ("ours dense", "ours blockwise", "tfrs")
ROUNDS, LARGE_ROUNDS = 3, 1
MEMORY_LIMIT_GB = 8.0


def arguments(settings: Settings) -> list[str]:
    if settings.quick:
        return ["--preset", "smoke", "--batch-sizes", "64", "--configs", "ours blockwise", "tfrs", "--overhead-batch-sizes",
                "--rounds", "1", "--steps", "1", "--memory-limit-gb", "4"]
    return ["--batch-sizes", *map(str, BATCH_SIZES), "--configs", *CONFIGS, "--overhead-batch-sizes", "--rounds", str(ROUNDS),
            "--large-rounds", str(LARGE_ROUNDS), "--memory-limit-gb", str(MEMORY_LIMIT_GB)]


def run(settings: Settings, out_dir: str) -> SectionResult:
    from yt_bias.studies.plots import plot_train_step

    args = arguments(settings)
    data = train_step_benchmark.main(args)
    rows = data["rows"]
    numbers: dict = {"batch_sizes": sorted({r["batch"] for r in rows}), "configs": list(dict.fromkeys(r["config"] for r in rows)),
                     "load_start": data["load_start"], "load_end": data["load_end"]}
    for r in rows:
        key = f"B={r['batch']}/{r['config']}"
        numbers[f"{key}/ms_per_step"] = r["ms_per_step"]
        numbers[f"{key}/peak_rss_gb"] = r["peak_rss_gb"]
        numbers[f"{key}/note"] = r["note"]
    lines = ["| batch | configuration | ms/step (median) | per-round ratio to TFRS: median [min, max] | peak RSS GB | rounds |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        ms = fmt(r["ms_per_step"], 1) if r["ms_per_step"] else (r["note"] or "-")
        lines.append(f"| {r['batch']} | {r['config']} | {ms} | {r['ratio']} | {fmt(r['peak_rss_gb'], 2)} | {r['rounds']} |")
    table = write_table(out_dir, NAME, "\n".join(lines))
    figure = save_png(out_dir, "train_step", plot_train_step(rows))
    return SectionResult(
        numbers=numbers, tables=[table], figures=[figure],
        config={"script": "scripts/bench_train_step.py " + " ".join(f"'{a}'" if " " in a else a for a in args)},
        summary=f"built-in data's towers; batch sizes {', '.join(map(str, numbers['batch_sizes']))}; "
        f"memory limit {MEMORY_LIMIT_GB if not settings.quick else 4:g} GB per configuration",
    )


def readme_blocks(entry: dict) -> dict[str, str]:
    n = entry["numbers"]
    configs = n["configs"]
    lines = ["| batch | " + " | ".join(f"{c} ms/step | {c} GB" for c in configs) + " |", "|---|" + "---|---|" * len(configs)]
    for b in n["batch_sizes"]:
        cells = []
        for c in configs:
            ms, note = n.get(f"B={b}/{c}/ms_per_step"), n.get(f"B={b}/{c}/note") or ""
            if ms:
                cells += [fmt(ms, 1), fmt(n.get(f"B={b}/{c}/peak_rss_gb"), 2)]
            elif note.startswith("killed"):
                limit = re.search(r"the ([0-9.]+) GB limit", note)
                cells += ["killed", f"over {limit.group(1)}" if limit else "-"]
            else:
                need = re.search(r"needs ~([0-9.]+) GB", note)
                cells += ["not run", f"~{need.group(1)} (estimate)" if need else "-"]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines += ["", "Median ms per training step over interleaved rounds; peak RSS of each configuration's own process; "
              "'killed': its memory passed the limit while it ran; 'not run': its estimated peak passes the limit.", "", provenance(entry)]
    for figure in entry.get("figures", []):
        lines += ["", f"![Train-step time and peak memory against batch size](docs/report/{figure})"]
    return {NAME: "\n".join(lines)}
