"""An experiment's results as files and tables: ``NAME.json`` and ``NAME.md`` in a workdir, Recall@K over seeds."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["recall_table", "write_results"]


def write_results(workdir: str, name: str, results: dict, table: str) -> None:
    """Writes ``results`` to ``workdir/NAME.json`` and the markdown ``table`` to ``workdir/NAME.md``, creating the folder."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, f"{name}.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, default=str)
    with open(os.path.join(workdir, f"{name}.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")


def recall_table(results: Mapping[str, Sequence[Mapping[str, float]]], ks: Sequence[int], prefix: str = "") -> str:
    """A markdown table of Recall@K per variant: mean ± sample sd over its runs (the value alone for one run).

    Args:
      results: variant -> its runs' metrics (each with ``f"{prefix}recall@{k}"``).
      ks: the K of each column.
      prefix: the metrics' prefix, e.g. ``"warm/"`` for the queries of users with training rows.
    """
    lines = ["| task | " + " | ".join(f"R@{k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for variant, runs in results.items():
        cells = []
        for k in ks:
            values = np.array([r[f"{prefix}recall@{k}"] for r in runs])
            cells.append(f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" if len(values) > 1 else f"{values[0]:.4f}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
