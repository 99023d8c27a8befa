"""Turns a :class:`~yt_bias.config.DataConfig` into a :class:`~yt_bias.data.dataset.RecDataset`."""

from __future__ import annotations

from yt_bias.data.dataset import RecDataset
from yt_bias.data.synthetic import generate

SOURCES = ("synthetic",)


def load_dataset(data_config, embedding_dim: int = 32) -> RecDataset:
    """Loads the data set a config names (the built-in synthetic data by default)."""
    if data_config.source == "synthetic":
        return generate(data_config.synthetic, embedding_dim)
    raise ValueError(f"data.source must be one of {SOURCES}; received {data_config.source!r}.")
