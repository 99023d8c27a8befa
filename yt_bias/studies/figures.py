"""Figures 4 and 5 of the paper on the section 6.1 stream, against a reference run.

Figure 4: the learning rate alpha in {0.001, 0.01, 0.1} with one hash; Figure 5: 1, 2 or 4 hashes
at equal memory (``m * H = 5000``). Each figure also runs the bias-corrected variant of the
estimator when asked. :data:`REFERENCE_TV` is an independent numpy run of the same stream, for
:func:`compare_with_reference`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from yt_bias.studies.stream import EstimatorSetting, SimulationResult, SimulationStreamConfig, run_stream_simulation

__all__ = [
    "REFERENCE_STEPS",
    "REFERENCE_TV",
    "checkpoint_steps",
    "compare_with_reference",
    "figure_settings",
    "markdown_table",
    "run_figure",
    "variant_comparison",
]

# A reference run of the paper's stream (numpy, seed 0, 20000 steps, switch at 10000): TV error at these steps.
REFERENCE_STEPS = (5000, 10000, 10500, 12000, 20000)
REFERENCE_TV = {
    # (alpha, num_hashes): errors at REFERENCE_STEPS
    (0.001, 1): (0.416, 0.329, 0.565, 0.533, 0.366),
    (0.01, 1): (0.125, 0.123, 0.550, 0.228, 0.150),
    (0.1, 1): (0.176, 0.171, 0.265, 0.216, 0.200),
    (0.01, 2): (0.072, 0.071, 0.526, 0.166, 0.086),
    (0.01, 4): (0.055, 0.054, 0.504, 0.135, 0.063),
}


def figure_settings(figure: int, bias_correction: bool | None = None, total_buckets: int = 5000) -> list[EstimatorSetting]:
    """The estimators of Figure 4 (alpha in {0.001, 0.01, 0.1}, m = 1) or 5 (m in {1, 2, 4}, equal memory).

    Args:
      figure: 4 or 5.
      bias_correction: False: Algorithm 2/3 only; True: the variant only; None: both.
      total_buckets: m * H, the memory of each estimator (H = 5000 in the paper).
    """
    if figure == 4:
        base = [EstimatorSetting(alpha=a, num_hashes=1, hash_size=total_buckets) for a in (0.001, 0.01, 0.1)]
    elif figure == 5:
        base = [EstimatorSetting(alpha=0.01, num_hashes=m, hash_size=total_buckets // m) for m in (1, 2, 4)]
    else:
        raise ValueError(f"figure must be 4 or 5; received {figure!r}.")
    flags = [False, True] if bias_correction is None else [bool(bias_correction)]
    return [dataclasses.replace(s, bias_correction=flag) for flag in flags for s in base]


def run_figure(
    figure: int,
    stream: SimulationStreamConfig | None = None,
    bias_correction: bool | None = None,
    eval_every: int = 100,
    target: str = "exact",
    total_buckets: int = 5000,
    estimator_seed: int = 0,
) -> SimulationResult:
    """Reproduces Figure 4 or 5 of the paper (plus the bias-corrected variant when asked).

    Args:
      figure: 4 (alpha grid) or 5 (number of hashes at equal memory).
      stream: defaults to the paper's: M = 1000, B = 128, 20000 steps, switch at 10000.
      bias_correction: see :func:`figure_settings`; None runs Algorithm 2/3 and the variant.
      eval_every, target: see :func:`run_stream_simulation`.
      total_buckets: m * H.
      estimator_seed: the hash seed of the estimators.
    """
    return run_stream_simulation(
        stream or SimulationStreamConfig(),
        figure_settings(figure, bias_correction, total_buckets),
        eval_every=eval_every,
        target=target,
        estimator_seed=estimator_seed,
    )


def compare_with_reference(result: SimulationResult) -> list[dict]:
    """Rows (label, step, measured, reference, relative difference) for the settings of the reference table.

    Only settings with H * m = 5000 and no bias correction have a reference; steps beyond the
    run are skipped.
    """
    rows = []
    for label, setting in result.settings.items():
        key = (setting.alpha, setting.num_hashes)
        if setting.bias_correction or key not in REFERENCE_TV or setting.hash_size * setting.num_hashes != 5000:
            continue
        for step, reference in zip(REFERENCE_STEPS, REFERENCE_TV[key]):
            if step > result.stream.num_steps or step not in result.steps:
                continue
            measured = result.at([step])[label][0]
            rows.append(
                {
                    "label": label,
                    "step": step,
                    "measured": measured,
                    "reference": reference,
                    "rel_diff": measured / reference - 1.0,
                }
            )
    return rows


def checkpoint_steps(stream: SimulationStreamConfig, eval_every: int = 100) -> list[int]:
    """The reference table's steps scaled to ``stream``: T/4, switch, switch + T/40, switch + T/10, T.

    For the paper's stream (T = 20000, switch at 10000) they are exactly :data:`REFERENCE_STEPS`;
    each is rounded down to the evaluation grid.
    """
    t, switch = stream.num_steps, stream.switch_step if stream.switch_step is not None else stream.num_steps // 2
    steps = [t // 4, switch, switch + t // 40, switch + t // 10, t]
    return sorted({max(eval_every, min(t, s // eval_every * eval_every)) for s in steps})


def variant_comparison(result: SimulationResult) -> list[dict]:
    """Mean TV error of Algorithm 2/3 and of its bias-corrected variant in four windows of the stream.

    Windows (T steps, switch at S): warm-up (0, S/5], settled (S/2, S], after the switch
    (S, S + (T-S)/5], end (T - (T-S)/5, T]. One row per (setting, window) whose both curves ran.
    """
    t = result.stream.num_steps
    s = result.stream.switch_step if result.stream.switch_step is not None else t
    windows = {
        "warm-up": (0, s // 5),
        "settled": (s // 2, s),
        "after switch": (s, s + (t - s) // 5),
        "end": (t - (t - s) // 5, t),
    }
    rows = []
    for label, setting in result.settings.items():
        corrected = dataclasses.replace(setting, bias_correction=True).label
        if setting.bias_correction or corrected not in result.errors:
            continue
        for name, (lo, hi) in windows.items():
            mask = (result.steps > lo) & (result.steps <= hi)
            if not mask.any():
                continue
            plain, variant = float(result.errors[label][mask].mean()), float(result.errors[corrected][mask].mean())
            rows.append(
                {
                    "setting": label,
                    "window": f"{name} ({lo}, {hi}]",
                    "algorithm": plain,
                    "bias_correction": variant,
                    "ratio": variant / plain,
                }
            )
    return rows


def markdown_table(rows: Sequence[dict], digits: int = 3) -> str:
    """A Markdown table of ``rows`` (dicts with the same keys); floats with ``digits`` decimals."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])

    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)
