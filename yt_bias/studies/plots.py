"""Figures of the frequency-estimation study: Figures 4/5 of the paper and Proposition 4.1.

The report's figures (Recall by popularity band, the estimand study, train-step time and memory
against batch size, serving latency and recall) take plain numbers, not experiment objects.

Every function builds a :class:`matplotlib.figure.Figure` without pyplot, so it works headless
(the CLI) and displays inline in a notebook (return the figure as the cell's value).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from yt_bias.studies import Prop41Result, SimulationResult

__all__ = [
    "plot_band_recall",
    "plot_errors",
    "plot_estimand",
    "plot_prop41",
    "plot_serving",
    "plot_train_step",
    "save_figure",
]


def _base_label(label: str) -> str:
    return label.replace(" +bias_correction", "")


def plot_errors(result: SimulationResult, title: str = "") -> Figure:
    """TV error by step (Figure 4 or 5 of the paper): Algorithm 2/3 solid, the bias-corrected variant dashed.

    Args:
      result: from :func:`yt_bias.studies.run_stream_simulation` or ``run_figure``.
      title: the axes title.
    """
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    colors = {}
    for label, errors in result.errors.items():
        base = _base_label(label)
        color = colors.setdefault(base, f"C{len(colors)}")
        corrected = result.settings[label].bias_correction
        ax.plot(result.steps, errors, color=color, linestyle="--" if corrected else "-", linewidth=1.2, label=label)
    if result.stream.switch_step is not None:
        ax.axvline(result.stream.switch_step, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("step t (batches)")
    ax.set_ylabel(f"TV error vs {result.target} inclusion probabilities")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def plot_prop41(result: Prop41Result, max_t: int | None = None) -> Figure:
    """Proposition 4.1: measured bias and variance of delta_t against the closed forms.

    One row per alpha. Left: measured bias of Algorithm 2 (one colour per delta_0; band = 2 standard
    errors), the corrected ``(1-a)^t (delta_0 - delta)`` (black dashed) and the paper's misprinted
    form (grey dotted); the bias-corrected read-out, when run, as thin lines near 0.
    Middle: the measured bias minus each form, in standard errors (solid: corrected, dotted:
    misprint); a form the data supports stays within +-3. Right: measured variance, the exact
    variance (black dashed) and the corrected bound (dotted).
    """
    alphas = sorted({run["alpha"] for run in result.runs})
    fig = Figure(figsize=(15, 3.3 * len(alphas)), layout="constrained")
    axes = fig.subplots(len(alphas), 3, squeeze=False)
    for row, alpha in enumerate(alphas):
        ax_bias, ax_z, ax_var = axes[row]
        runs = [run for run in result.runs if run["alpha"] == alpha]
        t = max((run["t"] for run in runs), key=len)  # the plain runs' 1..T
        t = t if max_t is None else t[:max_t]
        n = t.size
        labels = list(dict.fromkeys(run["delta0_label"] for run in runs))
        for k, label in enumerate(labels):
            color = f"C{k}"
            for run in runs:
                if run["delta0_label"] != label:
                    continue
                if run["bias_correction"]:  # its own hits (from the second on)
                    shown = run["t"] <= t[-1]
                    hits = run["t"][shown]
                    ax_bias.plot(
                        hits, run["bias"][shown], color=color, linewidth=0.8, alpha=0.7, label="bias_correction read-out"
                    )
                    ax_var.plot(hits, run["variance"][shown], color=color, linewidth=0.8, alpha=0.7)
                    ax_var.plot(hits, run["variance_closed"][shown], color="k", linestyle="-.", linewidth=0.6)
                    continue
                bias, se = run["bias"][:n], run["bias_se"][:n]
                ax_bias.plot(t, bias, color=color, linewidth=1.5, label=f"delta0={label} ({run['delta0']:.2f})")
                ax_bias.fill_between(t, bias - 2 * se, bias + 2 * se, color=color, alpha=0.2)
                ax_bias.plot(t, run["bias_closed"][:n], "k--", linewidth=0.8)
                ax_bias.plot(t, run["bias_misprint"][:n], color="grey", linestyle=":", linewidth=1.0)
                se = np.maximum(se, 1e-12)
                ax_z.plot(t, (bias - run["bias_closed"][:n]) / se, color=color, linewidth=1.0)
                ax_z.plot(t, (bias - run["bias_misprint"][:n]) / se, color=color, linestyle=":", linewidth=1.0)
                ax_var.plot(t, run["variance"][:n], color=color, linewidth=1.2)
                ax_var.plot(t, run["variance_bound"][:n], color=color, linestyle=":", linewidth=0.8)
        plain = [run for run in runs if not run["bias_correction"]]
        if plain:
            exact = plain[0]["variance_closed"][:n]
            ax_var.plot(t, exact, "k--", linewidth=1.0, label="exact a s^2 (1-(1-a)^2t)/(2-a)")
        ax_bias.plot([], [], "k--", label="corrected (1-a)^t (d0-d)")
        ax_bias.plot([], [], color="grey", linestyle=":", label="paper's misprint")
        ax_var.plot([], [], color="grey", linestyle=":", label="corrected bound")
        ax_z.plot([], [], color="grey", label="vs corrected")
        ax_z.plot([], [], color="grey", linestyle=":", label="vs misprint")
        ax_bias.set_title(f"alpha={alpha:g}: bias E[delta_t] - delta")
        ax_var.set_title(f"alpha={alpha:g}: variance of delta_t")
        ax_var.set_yscale("log")
        ax_z.axhspan(-3, 3, color="green", alpha=0.1)
        ax_z.set_yscale("symlog", linthresh=3)
        ax_z.set_title("(measured - form) / s.e.: solid corrected, dotted misprint")
        for ax in (ax_bias, ax_z, ax_var):
            ax.set_xlabel("hits t")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    return fig


def save_figure(fig: Figure, path: str) -> None:
    """Writes ``fig`` as a PNG (100 dpi)."""
    fig.savefig(path, dpi=100)


def plot_band_recall(bands: list[str], series: dict[str, tuple[list[float], list[float]]], k: int, title: str = "") -> Figure:
    """Recall@k by popularity band: one group of bars per band, one bar per method (error bar: sd over seeds).

    Args:
      bands: the band labels (x axis).
      series: method -> (means per band, sds per band).
      k: the cut-off, for the axis label.
    """
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(series))
    x = np.arange(len(bands))
    for i, (method, (means, sds)) in enumerate(series.items()):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, means, width, yerr=sds, capsize=3, label=method, color=f"C{i}")
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.set_xticks(x, bands)
    ax.set_ylabel(f"Recall@{k}")
    ax.set_ylim(0, 1.05 * max([1e-3] + [m + s for means, sds in series.values() for m, s in zip(means, sds)]) + 0.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def plot_estimand(
    weights: list[float], sweep: dict[str, tuple[list[float], list[float]]], methods: dict[str, tuple[float, float]], k: int
) -> Figure:
    """The estimand study: Recall@k against the data's popularity weight (left) and per pairing at the largest weight (right).

    Args:
      weights: the generator's popularity weights (x of the left panel).
      sweep: label -> (means, sds) over ``weights`` (sds may be 0 for deterministic rankings).
      methods: method -> (mean, sd) of Recall@k at the largest weight.
    """
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.2))
    for i, (label, (means, sds)) in enumerate(sweep.items()):
        dashed = label in ("most-popular", "generator score")
        left.errorbar(weights, means, yerr=sds, marker="o", capsize=3, label=label, color=f"C{i}", linestyle="--" if dashed else "-")
    left.set_xlabel("popularity weight w of the data generator")
    left.set_ylabel(f"Recall@{k}")
    left.set_title(f"Recall@{k} as the data's popularity term grows")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    names = list(methods)
    y = np.arange(len(names))
    means = [methods[n][0] for n in names]
    bars = right.barh(y, means, xerr=[methods[n][1] for n in names], capsize=3, color=[f"C{i}" for i in range(len(names))])
    right.bar_label(bars, fmt="%.3f", fontsize=8, padding=3)
    right.set_yticks(y, names, fontsize=8)
    right.invert_yaxis()
    right.set_xlabel(f"Recall@{k} (w = {max(weights):g})")
    right.set_title("Estimand and candidate columns of the correction")
    right.grid(axis="x", alpha=0.3)
    right.set_xlim(0, max(means) * 1.25 + 1e-3)
    return fig


def plot_train_step(rows: list[dict]) -> Figure:
    """Train-step time (left, log-log) and peak RSS (right, linear) against batch size, one line per configuration.

    Args:
      rows: dicts with ``batch``, ``config``, ``ms_per_step`` and ``peak_rss_gb`` (None: not run).
    """
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    ax_t, ax_m = fig.subplots(1, 2)
    configs = list(dict.fromkeys(r["config"] for r in rows))
    for i, name in enumerate(configs):
        mine = sorted((r for r in rows if r["config"] == name), key=lambda r: r["batch"])
        for ax, key in ((ax_t, "ms_per_step"), (ax_m, "peak_rss_gb")):
            points = [(r["batch"], r[key]) for r in mine if r.get(key)]
            if points:
                ax.plot(*zip(*points), marker="o", label=name, color=f"C{i}")
    ax_t.set_ylabel("ms per training step (median)")
    ax_m.set_ylabel("peak RSS of the process (GB)")
    ax_m.set_ylim(bottom=0)
    for ax, title in ((ax_t, "Step time against batch size"), (ax_m, "Peak memory against batch size")):
        ax.set_xscale("log", base=2)
        if ax is ax_t:
            ax.set_yscale("log")
        ax.set_xlabel("batch size B")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return fig


def plot_serving(rows: list[dict]) -> Figure:
    """Serving: single-query p50 latency against corpus size per path (left), recall@10 against exact (right).

    Args:
      rows: dicts with ``n``, ``path``, ``p50_ms``, ``p99_ms`` and ``recall@10`` (from :func:`yt_bias.benchmarks.serving.main`).
    """
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    ax_l, ax_r = fig.subplots(1, 2)
    paths = list(dict.fromkeys(r["path"] for r in rows))
    for i, path in enumerate(paths):
        mine = sorted((r for r in rows if r["path"] == path), key=lambda r: r["n"])
        n = [r["n"] for r in mine]
        ax_l.plot(n, [r["p50_ms"] for r in mine], marker="o", color=f"C{i}", label=f"{path} p50")
        ax_l.plot(n, [r["p99_ms"] for r in mine], marker=".", color=f"C{i}", linestyle=":", label=f"{path} p99")
        ax_r.plot(n, [r["recall@10"] for r in mine], marker="o", color=f"C{i}", label=path)
    ax_l.set_yscale("log")
    ax_l.set_ylabel("single-query latency (ms)")
    ax_l.set_title("Latency against corpus size")
    ax_r.set_ylabel("recall@10 against exact top-10")
    ax_r.set_title("Recall against corpus size")
    for ax in (ax_l, ax_r):
        ax.set_xscale("log")
        ax.set_xlabel("items in the corpus N")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return fig
