"""The value range of each dense feature in training data: what serving clips its inputs to.

A dense feature is fed to the tower as given, so a value far outside anything seen in training
(``activity=1e30``) overflows the tower's first layer and every score becomes 0 (an arbitrary
ranking). A run records each dense query feature's per-column minimum and maximum over its
training rows (:func:`dense_ranges`; for a data folder, the manifest carries them), and the
export clips dense inputs to them (``docs/serving.md``).

A range is ``{"min": [width floats], "max": [width floats]}`` per feature name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from yt_bias.features import FeatureSpec

Ranges = dict[str, dict[str, list[float]]]


def dense_ranges(rows: Mapping[str, np.ndarray], specs: Iterable[FeatureSpec]) -> Ranges:
    """Per-column min and max of each dense feature of ``specs`` found in ``rows`` (features without rows are left out)."""
    ranges: Ranges = {}
    for spec in specs:
        if spec.kind != "dense" or spec.name not in rows:
            continue
        values = np.asarray(rows[spec.name], dtype=np.float64).reshape(-1, spec.width)
        values = values[np.isfinite(values).all(axis=1)]
        if len(values):
            ranges[spec.name] = {"min": values.min(axis=0).tolist(), "max": values.max(axis=0).tolist()}
    return ranges


def merge_ranges(a: Mapping[str, Mapping[str, list[float]]], b: Mapping[str, Mapping[str, list[float]]]) -> Ranges:
    """The ranges covering both ``a`` and ``b``."""
    merged: Ranges = {name: {"min": list(r["min"]), "max": list(r["max"])} for name, r in a.items()}
    for name, r in b.items():
        if name in merged:
            merged[name] = {
                "min": np.minimum(merged[name]["min"], r["min"]).tolist(),
                "max": np.maximum(merged[name]["max"], r["max"]).tolist(),
            }
        else:
            merged[name] = {"min": list(r["min"]), "max": list(r["max"])}
    return merged
