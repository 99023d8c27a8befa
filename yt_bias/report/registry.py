"""The report's sections, in the order they run and appear: name -> module."""

from __future__ import annotations

import importlib

SECTIONS: dict[str, str] = {
    "main": "yt_bias.report.main",
    "estimand": "yt_bias.report.estimand",
    "frequency": "yt_bias.report.frequency",
    "strategies": "yt_bias.report.strategies",
    "drift": "yt_bias.report.drift",
    "train_step": "yt_bias.report.train_step",
    "serving": "yt_bias.report.serving",
    "movielens": "yt_bias.report.movielens",
    "tfrs_drop_in": "yt_bias.report.tfrs_drop_in",
    "keras3": "yt_bias.report.keras3",
    "scale": "yt_bias.report.scale",
    "scale_study": "yt_bias.report.scale_study",
    "fault_matrix": "yt_bias.report.fault_matrix",
}


def section_module(name: str):
    """The module of section ``name`` (``NAME``, ``TITLE``, ``run``, ``readme_blocks``)."""
    if name not in SECTIONS:
        raise ValueError(f"unknown report section {name!r}; known: {', '.join(SECTIONS)}.")
    return importlib.import_module(SECTIONS[name])
