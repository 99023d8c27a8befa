"""Section ``estimand``: the popularity sweep and the estimand comparison on the built-in data.

The data generator draws items with P(j | u) ∝ pop_j^w · exp(a <u, v_j>). For each popularity
weight w: plain-sfx and correct-sfx (streaming ``expected_count`` estimator, one column per row)
over seeds, with most-popular and the generator's own score as references (how much the data's
popularity term alone explains). At the largest w, where items repeat most within a batch, the
other pairings of estimand and candidate columns as well (``inclusion+rows``, the first release's
default; ``inclusion+unique``). Runs :func:`yt_bias.experiments.estimand.run_estimand_study`.
"""

from __future__ import annotations

import dataclasses

from yt_bias import config as config_lib
from yt_bias.data.loading import load_dataset
from yt_bias.experiments.estimand import (
    duplicate_statistics,
    format_table,
    paired_difference,
    reference_rankings,
    run_estimand_study,
)
from yt_bias.report.base import SectionResult, Settings, fmt, fmt_pm, provenance, put_stats, save_png, seeds_note, write_table

NAME = "estimand"
TITLE = "Popularity sweep and estimand comparison"
WEIGHTS = (0.0, 0.5, 1.0)
SWEEP_METHODS = ("plain-sfx", "expected_count+rows streaming")
ESTIMAND_METHODS = ("plain-sfx", "inclusion+rows streaming", "expected_count+rows streaming", "inclusion+unique streaming")
REFERENCE = "inclusion+rows streaming"
SEEDS = (0, 1, 2)
EPOCHS = 10
KS_SHOWN = (50, 100)


def _settings(settings: Settings):
    if settings.quick:
        base = config_lib.smoke()
        return dataclasses.replace(base, train=dataclasses.replace(base.train, epochs=1)), (1.0,), (0,)
    base = config_lib.default()
    return dataclasses.replace(base, train=dataclasses.replace(base.train, epochs=EPOCHS)), WEIGHTS, SEEDS


def run(settings: Settings, out_dir: str) -> SectionResult:
    base, weights, seeds = _settings(settings)
    ks = tuple(base.eval.ks)
    shown = [k for k in KS_SHOWN if k in ks] or [max(ks)]
    numbers: dict = {"weights": list(weights), "ks": shown, "seeds": list(seeds)}
    sections, config_out = [], {}
    for w in weights:
        synthetic = dataclasses.replace(base.data.synthetic, popularity_weight=float(w))
        config = dataclasses.replace(base, data=dataclasses.replace(base.data, synthetic=synthetic))
        dataset = load_dataset(config.data, config.model.embedding_dim)
        methods = ESTIMAND_METHODS if w == max(weights) else SWEEP_METHODS
        records = run_estimand_study(config, dataset, methods, seeds, progress=False)
        prefix = f"w={w:g}"
        for name, metrics in reference_rankings(dataset, ks).items():
            for k in shown:
                numbers[f"{prefix}/{name}/recall@{k}"] = metrics[f"recall@{k}"]
        for method in methods:
            for k in shown:
                put_stats(numbers, f"{prefix}/{method}/recall@{k}", [r[f"recall@{k}"] for r in records if r["method"] == method])
            put_stats(numbers, f"{prefix}/{method}/estimator_tv_error",
                      [r["estimator_tv_error"] for r in records if r["method"] == method])
        for k in shown:
            mean, sd, n = paired_difference(records, f"recall@{k}", "expected_count+rows streaming", "plain-sfx")
            numbers.update({f"{prefix}/gain/recall@{k}/mean": mean, f"{prefix}/gain/recall@{k}/sd": sd, f"{prefix}/gain/recall@{k}/n": n})
            if REFERENCE in methods:
                for method in methods:
                    if method != REFERENCE:
                        mean, sd, n = paired_difference(records, f"recall@{k}", method, REFERENCE)
                        key = f"{prefix}/vs_reference/{method}/recall@{k}"
                        numbers.update({f"{key}/mean": mean, f"{key}/sd": sd, f"{key}/n": n})
        stats = duplicate_statistics(dataset, config.train.batch_size)
        numbers[f"{prefix}/top_item_rows_per_batch"] = stats["top_item_rows_per_batch"]
        sections.append(f"### popularity weight w = {w:g}\n\n{format_table(records, ks)}")
        config_out[prefix] = {"methods": list(methods)}
    config_out["experiment"] = base.to_dict()
    config_out["seeds"] = list(seeds)
    table = write_table(out_dir, NAME, "\n\n".join(sections))
    k = shown[0]
    sweep = {}
    for label, key, sd in (("most-popular", "most-popular", False), ("generator score", "generator score", False),
                           ("plain-sfx", "plain-sfx", True), ("correct-sfx (expected_count)", "expected_count+rows streaming", True)):
        suffix = "/mean" if sd else ""
        means = [numbers.get(f"w={w:g}/{key}/recall@{k}{suffix}") for w in weights]
        if all(m is not None for m in means):
            sds = [numbers.get(f"w={w:g}/{key}/recall@{k}/sd", 0.0) if sd else 0.0 for w in weights]
            sweep[label] = (means, sds)
    top = f"w={max(weights):g}"
    at_top = {m: (numbers[f"{top}/{m}/recall@{k}/mean"], numbers[f"{top}/{m}/recall@{k}/sd"]) for m in ESTIMAND_METHODS}
    from yt_bias.studies.plots import plot_estimand

    figure = save_png(out_dir, "estimand", plot_estimand(list(weights), sweep, at_top, k))
    return SectionResult(
        numbers=numbers, tables=[table], figures=[figure], config=config_out,
        summary=f"built-in data, {base.train.epochs} epochs, {seeds_note(seeds)}",
    )


def readme_blocks(entry: dict) -> dict[str, str]:
    n = entry["numbers"]
    weights, ks = n["weights"], n["ks"]
    head = (["popularity weight w", *(f"most-popular R@{k}" for k in ks[:1]), *(f"generator score R@{k}" for k in ks[:1])]
            + [f"{m} R@{k}" for k in ks for m in ("plain-sfx", "correct-sfx")] + [f"gain R@{k}" for k in ks])
    sweep = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w in weights:
        p = f"w={w:g}"
        cells = [f"{w:g}", fmt(n.get(f"{p}/most-popular/recall@{ks[0]}"), 3), fmt(n.get(f"{p}/generator score/recall@{ks[0]}"), 3)]
        cells += [fmt_pm(n, f"{p}/{m}/recall@{k}", 3) for k in ks for m in ("plain-sfx", "expected_count+rows streaming")]
        cells += [fmt_pm(n, f"{p}/gain/recall@{k}", 3) for k in ks]
        sweep.append("| " + " | ".join(cells) + " |")
    top = f"w={max(weights):g}"
    sweep += ["", "correct-sfx: the streaming `expected_count` estimator; gain: correct-sfx minus plain-sfx, paired by seed. "
              f"At w = {max(weights):g}, ranking by the generator's score without its popularity term gives "
              f"R@{ks[0]} {fmt(n.get(f'{top}/generator affinity only/recall@{ks[0]}'), 3)}.", "", provenance(entry)]
    for figure in entry.get("figures", []):
        sweep += ["", f"![Recall against the data's popularity weight, and per estimand pairing](docs/report/{figure})"]
    lines = [f"At w = {max(weights):g} (the top item has {fmt(n.get(f'{top}/top_item_rows_per_batch'), 1)} rows per batch):", "",
             "| method | " + " | ".join(f"R@{k}" for k in ks) + " | " + " | ".join(f"ΔR@{k} vs {REFERENCE}" for k in ks)
             + " | TV error |", "|---|" + "---|" * (2 * len(ks) + 1)]
    for method in ESTIMAND_METHODS:
        if f"{top}/{method}/recall@{ks[0]}/mean" not in n:
            continue
        cells = [fmt_pm(n, f"{top}/{method}/recall@{k}", 3) for k in ks]
        cells += ["(reference)" if method == REFERENCE else fmt_pm(n, f"{top}/vs_reference/{method}/recall@{k}", 3) for k in ks]
        cells.append(fmt_pm(n, f"{top}/{method}/estimator_tv_error", 3))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", provenance(entry)]
    return {"sweep": "\n".join(sweep), "estimand": "\n".join(lines)}
