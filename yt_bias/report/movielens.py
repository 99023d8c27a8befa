"""Section ``movielens``: plain vs corrected vs oracle vs TFRS on MovieLens-100K, with popularity bands.

Needs ``--movielens DIR`` (MovieLens-100K is not shipped: its licence forbids redistribution).
Runs :func:`yt_bias.experiments.table1.run_table1` with the MovieLens settings of
:func:`~yt_bias.experiments.table1.movielens_config` at one temperature (``yt-bias experiment
table1`` runs the tau grid).
"""

from __future__ import annotations

import dataclasses

from yt_bias.data.loading import detect_source, load_dataset
from yt_bias.experiments.table1 import TFRS_METHOD, VARIANTS, format_table1, movielens_config, run_table1
from yt_bias.report.base import SectionResult, Settings, provenance, save_png, seeds_note, skipped, write_table
from yt_bias.report.main import band_figure, band_rows, method_rows, settings_line, table1_numbers

NAME = "movielens"
TITLE = "MovieLens-100K"
TEMPERATURE = 0.05
SEEDS = (0, 1, 2)
BAND_K = 100


def run(settings: Settings, out_dir: str) -> SectionResult:
    if not settings.movielens:
        return skipped("needs --movielens DIR (MovieLens-100K is not shipped)")
    config = movielens_config()
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, source=detect_source(settings.movielens),
                                                                   path=settings.movielens))
    seeds = SEEDS
    if settings.quick:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=1))
        seeds = (0,)
    ks = tuple(config.eval.ks)
    dataset = load_dataset(config.data, config.model.embedding_dim)
    rows = run_table1(config, dataset, temperatures=(TEMPERATURE,), seeds=seeds, include_tfrs=True, progress=False)
    numbers = table1_numbers(rows, ks, BAND_K)
    numbers.update(ks=list(ks), band_k=BAND_K, num_items=dataset.num_items, num_train=dataset.num_train)
    table = write_table(out_dir, NAME, format_table1(rows, ks, BAND_K))
    figure = save_png(out_dir, "movielens_bands", band_figure(numbers, ["most-popular", *VARIANTS, TFRS_METHOD],
                                                              f"MovieLens-100K: Recall@{BAND_K} by popularity band"))
    saved = config.to_dict()
    saved["data"]["path"] = "ML100K_DIR"
    return SectionResult(
        numbers=numbers, tables=[table], figures=[figure], config={"experiment": saved, "seeds": list(seeds), "temperature": TEMPERATURE},
        summary=f"MovieLens-100K (temporal split, rating >= 4 positive), {config.train.epochs} epochs, tau {TEMPERATURE:g}, "
        + seeds_note(seeds),
    )


def readme_blocks(entry: dict) -> dict[str, str]:
    n = entry["numbers"]
    ks = n["ks"]
    methods = [("most-popular", "most-popular"), ("plain-sfx", "plain-sfx"), ("correct-sfx", "correct-sfx (streaming)"),
               ("correct-sfx-oracle", "correct-sfx-oracle"), ("tfrs-retrieval", "TFRS `tasks.Retrieval` (oracle probabilities)")]
    lines = [settings_line(entry["config"]["experiment"]), ""] + method_rows(n, methods, ks)
    lines += ["", f"Recall@{BAND_K} by popularity band:", "", *band_rows(n, methods, BAND_K)]
    lines += ["", provenance(entry)]
    for figure in entry.get("figures", []):
        lines += ["", f"![MovieLens-100K: Recall@{BAND_K} by popularity band](docs/report/{figure})"]
    return {NAME: "\n".join(lines)}
