"""Section ``serving``: latency and recall of the exported SavedModel (ScaNN) against brute force.

Runs :func:`yt_bias.benchmarks.serving.main` (the benchmark of ``scripts/bench_serving.py``) in this
process: for each corpus size, the SavedModel from raw query features to top-10 (query tower +
ScaNN), ScaNN's searcher alone, and the brute-force export; recall@10 against exact top-10,
single-query p50/p99 latency, batch QPS.
"""

from __future__ import annotations

from yt_bias.report.base import SectionResult, Settings, fmt, provenance, save_png, write_table
from yt_bias.benchmarks import serving as serving_benchmark

NAME = "serving"
TITLE = "Serving: ScaNN against brute force"
SIZES = (10_000, 100_000, 1_000_000)
QUERIES, SINGLE = 512, 100


def arguments(settings: Settings) -> list[str]:
    if settings.quick:
        return ["--sizes", "2000", "--queries", "64", "--single", "10", "--batch", "32"]
    return ["--sizes", *map(str, SIZES), "--queries", str(QUERIES), "--single", str(SINGLE)]


def run(settings: Settings, out_dir: str) -> SectionResult:
    from yt_bias.studies.plots import plot_serving

    args = arguments(settings)
    rows = serving_benchmark.main(args)
    numbers: dict = {"sizes": sorted({r["n"] for r in rows}), "paths": list(dict.fromkeys(r["path"] for r in rows))}
    for r in rows:
        for key in ("recall@10", "p50_ms", "p99_ms", "qps", "build_s"):
            numbers[f"N={r['n']}/{r['path']}/{key}"] = r[key]
    lines = ["| N | path | recall@10 | p50 ms | p99 ms | batch QPS | index build s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        build = "-" if r["path"] == "brute_force" else fmt(r["build_s"], 1)
        lines.append(f"| {r['n']} | {r['path']} | {fmt(r['recall@10'], 3)} | {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | "
                     f"{fmt(r['qps'], 0)} | {build} |")
    table = write_table(out_dir, NAME, "\n".join(lines))
    figure = save_png(out_dir, "serving", plot_serving(rows))
    return SectionResult(
        numbers=numbers, tables=[table], figures=[figure], config={"script": "scripts/bench_serving.py " + " ".join(args)},
        summary=f"128-d embeddings, corpus sizes {', '.join(f'{n:,}' for n in numbers['sizes'])}",
    )


def readme_blocks(entry: dict) -> dict[str, str]:
    n = entry["numbers"]
    lines = ["| N items | path | recall@10 | p50 ms | p99 ms | batch QPS |", "|---|---|---|---|---|---|"]
    for size in n["sizes"]:
        for path in n["paths"]:
            key = f"N={size}/{path}"
            if f"{key}/p50_ms" in n:
                lines.append(f"| {size:,} | {path} | {fmt(n[f'{key}/recall@10'], 3)} | {fmt(n[f'{key}/p50_ms'], 2)} | "
                             f"{fmt(n[f'{key}/p99_ms'], 2)} | {fmt(n[f'{key}/qps'], 0)} |")
    lines += ["", "savedmodel: raw query features in, query tower + ScaNN + ID lookup; raw_scann: ScaNN's searcher on "
              "precomputed embeddings; brute_force: the brute-force export.", "", provenance(entry)]
    for figure in entry.get("figures", []):
        lines += ["", f"![Serving latency and recall against corpus size](docs/report/{figure})"]
    return {NAME: "\n".join(lines)}
