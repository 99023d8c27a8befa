"""Section ``main``: the ``yt-bias reproduce`` comparison on the built-in data, with popularity bands.

most-popular, plain-sfx, correct-sfx (streaming estimator) and correct-sfx-oracle at Recall@10/50/100/300,
mean ± sample sd over seeds, plus Recall@100 by the held-out item's popularity band (a figure).
Runs :func:`yt_bias.experiments.table1.run_table1` with the default configuration, one
temperature and no TFRS row (the same training and exact evaluation as ``yt-bias reproduce``).
"""

from __future__ import annotations

import dataclasses

from yt_bias import config as config_lib
from yt_bias.data.loading import load_dataset
from yt_bias.experiments.table1 import VARIANTS, format_table1, run_table1
from yt_bias.report.base import SectionResult, Settings, fmt_pm, provenance, put_stats, save_png, seeds_note, write_table

NAME = "main"
TITLE = "The main job: plain vs corrected on the built-in data"
BAND_K = 100
BANDS = ("head", "torso", "tail")
SEEDS = (0, 1, 2)


def table1_numbers(rows, ks, band_k: int = BAND_K) -> dict:
    """Numbers of :func:`run_table1` rows: ``METHOD/recall@K/{mean,sd,n}`` and per band, shares, paired gains."""
    numbers = {}
    for row in rows:
        name = row.method
        for key in [f"recall@{k}" for k in ks] + [f"recall@{band_k}/{b}" for b in BANDS]:
            put_stats(numbers, f"{name}/{key}", [r.get(key) for r in row.runs])
        put_stats(numbers, f"{name}/train_seconds", [r.get("train_seconds") for r in row.runs if "train_seconds" in r])
    first = rows[0].runs[0]
    for b in BANDS:
        numbers[f"share/{b}"] = first.get(f"share/{b}")
    by = {row.method: row for row in rows}
    if "plain-sfx" in by and "correct-sfx" in by:
        for k in ks:
            key = f"recall@{k}"
            plain = {r["seed"]: r[key] for r in by["plain-sfx"].runs}
            diffs = [r[key] - plain[r["seed"]] for r in by["correct-sfx"].runs if r["seed"] in plain]
            put_stats(numbers, f"gain/{key}", diffs)
    return numbers


def band_figure(numbers: dict, methods, title: str, band_k: int = BAND_K):
    from yt_bias.studies.plots import plot_band_recall

    series = {}
    for method in methods:
        means = [numbers.get(f"{method}/recall@{band_k}/{b}/mean") for b in BANDS]
        sds = [numbers.get(f"{method}/recall@{band_k}/{b}/sd") or 0.0 for b in BANDS]
        if all(m is not None for m in means):
            series[method] = (means, sds)
    labels = [f"{b} ({numbers[f'share/{b}']:.0%} of test positives)" if numbers.get(f"share/{b}") else b for b in BANDS]
    return plot_band_recall(labels, series, band_k, title)


def base_config(settings: Settings):
    if settings.quick:
        cfg = config_lib.smoke()
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=1)), (0,)
    return config_lib.default(), SEEDS


def run(settings: Settings, out_dir: str) -> SectionResult:
    config, seeds = base_config(settings)
    ks = tuple(config.eval.ks)
    band_k = BAND_K if BAND_K in ks else max(ks)
    dataset = load_dataset(config.data, config.model.embedding_dim)
    rows = run_table1(config, dataset, temperatures=(config.model.temperature,), variants=VARIANTS, seeds=seeds,
                      include_tfrs=False, progress=False)
    numbers = table1_numbers(rows, ks, band_k)
    numbers.update(num_items=dataset.num_items, num_train=dataset.num_train, num_test=dataset.num_test,
                   num_test_positives=int(sum(float(r) > 0 for r in dataset.test["reward"])), band_k=band_k, ks=list(ks))
    table = write_table(out_dir, NAME, format_table1(rows, ks, band_k))
    figure = save_png(out_dir, "main_bands", band_figure(numbers, ["most-popular", *VARIANTS],
                                                         f"Built-in data: Recall@{band_k} by popularity band", band_k))
    return SectionResult(
        numbers=numbers, tables=[table], figures=[figure], config={"experiment": config.to_dict(), "seeds": list(seeds)},
        summary=f"built-in data, {config.train.epochs} epochs, tau {config.model.temperature:g}, "
        f"batch {config.train.batch_size}, {seeds_note(seeds)}",
    )


def method_rows(numbers: dict, methods, ks) -> list[str]:
    lines = ["| method | " + " | ".join(f"R@{k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for method, label in methods:
        if f"{method}/recall@{ks[0]}/mean" in numbers:
            lines.append(f"| {label} | " + " | ".join(fmt_pm(numbers, f"{method}/recall@{k}") for k in ks) + " |")
    return lines


def band_rows(numbers: dict, methods, band_k: int) -> list[str]:
    """The table of Recall@``band_k`` by popularity band (with each band's share of the positives), one row per method."""
    lines = ["| method | " + " | ".join(f"{b} ({numbers.get(f'share/{b}', 0):.0%})" for b in BANDS) + " |", "|---|---|---|---|"]
    for method, label in methods:
        if f"{method}/recall@{band_k}/head/mean" in numbers:
            lines.append(f"| {label} | " + " | ".join(fmt_pm(numbers, f"{method}/recall@{band_k}/{b}", 3) for b in BANDS) + " |")
    return lines


def settings_line(experiment: dict) -> str:
    """The model, estimator and training settings of a run, from its config dict."""
    m, e, t = experiment["model"], experiment["estimator"], experiment["train"]
    return (f"Towers {m['hidden_units']} over {m['embedding_dim']}-d embeddings, tau = {m['temperature']:g}, batch "
            f"{t['batch_size']}, {t['optimizer']} {t['learning_rate']:g}, {t['epochs']} epochs; estimator H = {e['hash_size']}, "
            f"m = {e['num_hashes']}, alpha = {e['alpha']:g}, B0 = {e['initial_interval']:g}, estimand `{e['estimand']}`.")


def readme_blocks(entry: dict) -> dict[str, str]:
    n = entry["numbers"]
    ks = n.get("ks", [10, 50, 100, 300])
    band_k = n.get("band_k", BAND_K)
    methods = [("most-popular", "most-popular"), ("plain-sfx", "plain-sfx"),
               ("correct-sfx", "correct-sfx (streaming estimator)"), ("correct-sfx-oracle", "correct-sfx-oracle (exact counts)")]
    data = entry["config"]["experiment"]["data"]["synthetic"]
    lines = [f"Built-in data: {data['num_users']} users, {n['num_items']} items (Zipf popularity, latent interests), "
             f"{n['num_train']} training and {n['num_test']} test interactions split in time, {n['num_test_positives']} "
             "held-out positives; exact Recall@K over all items, the user's training items excluded. "
             + settings_line(entry["config"]["experiment"]), ""]
    lines += method_rows(n, methods, ks)
    gains = ", ".join(f"R@{k} {fmt_pm(n, f'gain/recall@{k}', 3)}" for k in ks if f"gain/recall@{k}/mean" in n)
    lines += ["", f"Gain of correct-sfx over plain-sfx, paired by seed: {gains}.", "",
              f"Recall@{band_k} by the held-out item's popularity band (thirds of the training interactions):", ""]
    lines += band_rows(n, methods, band_k)
    lines += ["", provenance(entry)]
    for figure in entry.get("figures", []):
        lines += ["", f"![Recall@{band_k} by popularity band, plain vs corrected](docs/report/{figure})"]
    return {NAME: "\n".join(lines)}
