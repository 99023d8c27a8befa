"""Section ``drift``: frequency sources under popularity drift, day by day, judged on the next day.

Runs :func:`yt_bias.experiments.drift.run_drift` on a subset of its grid (two drift kinds, four
sources) to keep the report's wall time bounded; ``yt-bias experiment drift`` runs all of it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile

from yt_bias.experiments.drift import default, format_table, quick, run_drift
from yt_bias.report.base import FIGURES, SectionResult, Settings, fmt, provenance, write_table

NAME = "drift"
TITLE = "Popularity drift"
KINDS = ("none", "gradual")
SOURCES = ("stream-a0.01", "frozen-day0", "previous-day", "oracle-current-day")


def run(settings: Settings, out_dir: str) -> SectionResult:
    if settings.quick:
        config = dataclasses.replace(quick(), kinds=("gradual",), sources=("stream-a0.1", "cumulative"), seeds=(0,))
    else:
        config = dataclasses.replace(default(), kinds=KINDS, sources=SOURCES)
    with tempfile.TemporaryDirectory() as workdir:
        results = run_drift(config, workdir)
        os.makedirs(os.path.join(out_dir, FIGURES), exist_ok=True)
        shutil.copyfile(os.path.join(workdir, "drift.png"), os.path.join(out_dir, FIGURES, "drift.png"))
    numbers: dict = {"k": config.k, "reference": config.reference, "kinds": list(config.kinds), "sources": list(config.sources)}
    for row in results["summary"]:
        key = f"{row['kind']}/{row['source']}"
        numbers[f"{key}/next_day_recall"] = row["next_day_recall"]
        numbers[f"{key}/diff"] = row["diff_vs_reference"]
        numbers[f"{key}/diff_sd"] = row["diff_sd"]
        numbers[f"{key}/tv_steady"] = row["tv_steady"]
        numbers[f"{key}/tv_warmup"] = row["tv_warmup"]
        numbers[f"{key}/warmup_days"] = row["warmup_days"]
    table = write_table(out_dir, NAME, format_table(results, config))
    return SectionResult(
        numbers=numbers, tables=[table], figures=[f"{FIGURES}/drift.png"],
        config={"kinds": list(config.kinds), "sources": list(config.sources), "seeds": list(config.seeds),
                "drift": dataclasses.asdict(config.drift), "experiment": config.base.to_dict()},
        summary=f"drift kinds {', '.join(config.kinds)}; {config.drift.days} days of {config.drift.rows_per_day} rows; "
        f"seeds {', '.join(map(str, config.seeds))}",
    )


def readme_blocks(entry: dict) -> dict[str, str]:
    n = entry["numbers"]
    k, reference = n["k"], n["reference"]
    lines = [f"| drift | source | next-day R@{k} | paired diff vs {reference} (sd) | TV error, warm-up days (their number) "
             "| TV error, steady days |", "|---|---|---|---|---|---|"]
    for kind in n["kinds"]:
        for source in n["sources"]:
            key = f"{kind}/{source}"
            if f"{key}/next_day_recall" not in n:
                continue
            diff = "(reference)" if source == reference else f"{fmt(n[f'{key}/diff'])} ({fmt(n[f'{key}/diff_sd'])})"
            warm = n.get(f"{key}/tv_warmup")
            warm = "-" if warm is None else f"{fmt(warm)} ({fmt(n.get(f'{key}/warmup_days'), 1)})"
            lines.append(f"| {kind} | {source} | {fmt(n[f'{key}/next_day_recall'])} | {diff} | {warm} | "
                         f"{fmt(n[f'{key}/tv_steady'])} |")
    lines += ["", provenance(entry)]
    for figure in entry.get("figures", []):
        lines += ["", f"![Next-day Recall@{k} and TV error by day, per frequency source and drift](docs/report/{figure})"]
    return {NAME: "\n".join(lines)}
