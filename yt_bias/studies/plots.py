"""Figures of the frequency-estimation study: Figures 4/5 of the paper and Proposition 4.1.

Every function builds a :class:`matplotlib.figure.Figure` without pyplot, so it works headless
(the CLI) and displays inline in a notebook (return the figure as the cell's value).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from yt_bias.studies import Prop41Result, SimulationResult

__all__ = ["plot_errors", "plot_prop41", "save_figure"]


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
