"""Data sources; each produces a :class:`~yt_bias.data.dataset.RecDataset`."""

from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, REWARD, RecDataset, make_tf_dataset
from yt_bias.data.synthetic import SyntheticConfig, generate

__all__ = ["ITEM_INDEX", "QUERY_KEY", "REWARD", "RecDataset", "SyntheticConfig", "generate", "make_tf_dataset"]
