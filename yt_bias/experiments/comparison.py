"""The paper's offline comparison (Table 1 layout): variants x temperatures x seeds, plus MostPop.

``yt-bias reproduce`` runs it with one temperature and one seed on the default data; the real-data
table (``yt-bias experiment table1``) runs the full grid.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence

import numpy as np

from yt_bias.config import ExperimentConfig
from yt_bias.data.dataset import RecDataset
from yt_bias.evaluation.exact import evaluate_most_popular
from yt_bias.training.train import train_and_evaluate


@dataclasses.dataclass
class ComparisonRow:
    """One method of the table: its name, temperature and per-seed metrics."""

    method: str
    temperature: float | None
    runs: list[dict]

    def mean(self, key: str) -> float:
        return float(np.mean([r[key] for r in self.runs]))

    def std(self, key: str) -> float:
        return float(np.std([r[key] for r in self.runs], ddof=1)) if len(self.runs) > 1 else 0.0


def run_comparison(
    config: ExperimentConfig,
    dataset: RecDataset,
    variants: Sequence[str] = ("plain-sfx", "correct-sfx", "correct-sfx-oracle"),
    temperatures: Sequence[float] | None = None,
    seeds: Sequence[int] = (0,),
    workdir: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ComparisonRow]:
    """Trains every (variant, temperature, seed) on one data set and evaluates it identically."""
    temperatures = tuple(temperatures or (config.model.temperature,))
    rows = [ComparisonRow("most-popular", None, [evaluate_most_popular(dataset, config.eval.ks, config.eval.exclude_seen)])]
    total = len(variants) * len(temperatures) * len(seeds)
    done = 0
    for temperature in temperatures:
        for variant in variants:
            row = ComparisonRow(variant, temperature, [])
            for seed in seeds:
                run = dataclasses.replace(
                    config,
                    variant=variant,
                    model=dataclasses.replace(config.model, temperature=temperature),
                    train=dataclasses.replace(config.train, seed=seed),
                )
                run_dir = os.path.join(workdir, f"{variant}_tau{temperature:g}_seed{seed}") if workdir else None
                row.runs.append(train_and_evaluate(run, run_dir, dataset))
                done += 1
                if progress:
                    progress(
                        f"[{done}/{total}] {variant} tau={temperature:g} seed={seed}: "
                        + ", ".join(f"{k}={row.runs[-1][k]:.4f}" for k in row.runs[-1] if k.startswith("recall@"))
                    )
            rows.append(row)
    return rows


def format_table(rows: Sequence[ComparisonRow], ks: Sequence[int]) -> str:
    """A Markdown table in the layout of the paper's Table 1 (mean, and +- std over seeds when > 1)."""
    keys = [f"recall@{k}" for k in ks]
    lines = ["| method | " + " | ".join(f"R@{k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for row in rows:
        name = row.method if row.temperature is None else f"{row.method} tau={row.temperature:g}"
        cells = []
        for key in keys:
            cell = f"{row.mean(key):.4f}"
            if len(row.runs) > 1:
                cell += f" ± {row.std(key):.4f}"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_comparison(rows: Sequence[ComparisonRow], ks: Sequence[int], workdir: str, stem: str = "table") -> str:
    """Writes ``{stem}.md`` and ``{stem}.json`` into ``workdir``; returns the Markdown."""
    os.makedirs(workdir, exist_ok=True)
    table = format_table(rows, ks)
    with open(os.path.join(workdir, f"{stem}.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    data = [
        {
            "method": r.method,
            "temperature": r.temperature,
            "runs": [{k: v for k, v in run.items() if k != "loss_history"} for run in r.runs],
        }
        for r in rows
    ]
    with open(os.path.join(workdir, f"{stem}.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    return table
