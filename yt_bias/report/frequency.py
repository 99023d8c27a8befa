"""Section ``frequency``: the paper's Figures 4 and 5 and Proposition 4.1, on the package's own estimator.

The section 6.1 stream (M = 1000 items, B = 128, popularity reversed after step 10,000 of 20,000),
TV error of the streaming estimator against exact inclusion probabilities: Figure 4 varies the
learning rate alpha with one hash, Figure 5 the number of hashes at equal memory; both with
Algorithm 2/3 and the bias-corrected read-out. Proposition 4.1: the measured bias of the
estimated interval on i.i.d. gaps against the corrected and the printed closed forms. Runs
:func:`yt_bias.studies.run_figure` and :func:`yt_bias.studies.run_prop41` (as ``yt-bias simulate``).
"""

from __future__ import annotations

import dataclasses

from yt_bias import studies
from yt_bias.report.base import SectionResult, Settings, fmt, provenance, save_png, write_table

NAME = "frequency"
TITLE = "Frequency estimation (Figures 4 and 5, Proposition 4.1)"
TOLERANCE = 0.25


def run(settings: Settings, out_dir: str) -> SectionResult:
    from yt_bias.studies import plots

    if settings.quick:
        stream = studies.SimulationStreamConfig(num_items=100, batch_size=16, num_steps=800, switch_step=400)
        prop = dataclasses.replace(studies.Prop41Config.smoke(), num_replicas=1000, num_hits=20)
    else:
        stream, prop = studies.SimulationStreamConfig(), studies.Prop41Config()
    numbers: dict = {"steps": [], "tolerance": TOLERANCE}
    tables, figures = [], []
    reference_rows = []
    eval_every = 100 if stream.num_steps >= 2000 else 20
    for figure in (4, 5):
        result = studies.run_figure(figure, stream, eval_every=eval_every)
        steps = studies.checkpoint_steps(stream, eval_every)
        numbers["steps"] = steps
        rows = []
        for label, errors in result.at(steps).items():
            rows.append({"setting": label, **{f"t={s}": e for s, e in zip(steps, errors)}})
            for s, e in zip(steps, errors):
                numbers[f"figure{figure}/{label}/t={s}"] = e
        compared = studies.compare_with_reference(result)
        seen = {(r["label"], r["step"]) for r in reference_rows}
        reference_rows += [r for r in compared if (r["label"], r["step"]) not in seen]  # Figure 5's m=1 is Figure 4's alpha=0.01
        text = (f"### Figure {figure}: TV error against exact inclusion probabilities\n\n{studies.markdown_table(rows)}\n\n"
                f"Mean TV error by window, Algorithm 2/3 against the bias-corrected read-out:\n\n"
                f"{studies.markdown_table(studies.variant_comparison(result))}")
        if compared:
            text += "\n\nAgainst the reference run (numpy, same stream):\n\n" + studies.markdown_table(compared)
        tables.append(write_table(out_dir, f"frequency_figure{figure}", text))
        title = f"Figure {figure}: M={stream.num_items}, B={stream.batch_size}, switch at {stream.switch_step}"
        figures.append(save_png(out_dir, f"frequency_figure{figure}", plots.plot_errors(result, title)))
    numbers["reference/cells"] = len(reference_rows)
    numbers["reference/within_tolerance"] = sum(abs(r["rel_diff"]) <= TOLERANCE for r in reference_rows)
    for r in reference_rows:
        numbers[f"reference/{r['label']}/t={r['step']}"] = r["reference"]
    prop_result = studies.run_prop41(prop)
    summary = prop_result.summary()
    for row in summary:
        key = f"prop41/alpha={row['alpha']:g}/delta0={row['delta0']}/{'bias_correction' if row['bias_correction'] else 'algorithm2'}"
        for field in ("rms_z_corrected", "rms_z_misprint"):
            numbers[f"{key}/{field}"] = row[field]
    plain = [r for r in summary if not r["bias_correction"]]
    numbers["prop41/max_rms_z_corrected"] = max(r["rms_z_corrected"] for r in plain)
    numbers["prop41/min_rms_z_misprint"] = min(r["rms_z_misprint"] for r in plain)
    numbers["prop41/replicas"] = prop_result.num_valid
    tables.append(write_table(out_dir, "frequency_prop41", "### Proposition 4.1\n\n" + studies.markdown_table(summary)))
    figures.append(save_png(out_dir, "frequency_prop41", plots.plot_prop41(prop_result)))
    return SectionResult(
        numbers=numbers, tables=tables, figures=figures,
        config={"stream": _asdict(stream), "prop41": _asdict(prop), "eval_every": eval_every},
        summary=f"M={stream.num_items}, B={stream.batch_size}, {stream.num_steps} steps, m·H=5000; "
        f"Proposition 4.1 on {prop_result.num_valid} replicas",
    )


def _asdict(obj) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(obj).items()}


def readme_blocks(entry: dict) -> dict[str, str]:
    n = entry["numbers"]
    steps = n["steps"]
    lines = ["| setting (Algorithm 2/3) | " + " | ".join(f"t={s}" for s in steps) + " |", "|---|" + "---|" * len(steps)]
    for figure in (4, 5):
        labels = sorted({k.split("/")[1] for k in n if k.startswith(f"figure{figure}/") and "bias_correction" not in k})
        for label in labels:
            cells = []
            for s in steps:
                measured = n.get(f"figure{figure}/{label}/t={s}")
                reference = n.get(f"reference/{label}/t={s}")
                cells.append(fmt(measured, 3) + (f" ({fmt(reference, 3)})" if reference is not None else ""))
            lines.append(f"| Figure {figure}: {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"In parentheses: an independent numpy run of the same stream; {n['reference/within_tolerance']} of "
        f"{n['reference/cells']} cells within {n['tolerance']:.0%} of it. Proposition 4.1 (Algorithm 2, "
        f"{n['prop41/replicas']} replicas): the corrected bias form fits (largest RMS of (measured − form) / s.e. "
        f"{fmt(n['prop41/max_rms_z_corrected'], 2)}), the printed one does not (smallest {fmt(n['prop41/min_rms_z_misprint'], 2)}).",
        "",
        provenance(entry),
    ]
    for figure in entry.get("figures", []):
        if "figure4" in figure or "figure5" in figure:
            which = "4" if "figure4" in figure else "5"
            lines += ["", f"![Figure {which}: estimation error over the stream](docs/report/{figure})"]
    return {NAME: "\n".join(lines)}
