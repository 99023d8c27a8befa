"""Data: datasets in memory, sharded files on disk, the synthetic generators and the public-dataset loaders.

Each in-memory source produces a :class:`~yt_bias.data.dataset.RecDataset`; :mod:`~yt_bias.data.shards`
reads and writes data larger than memory.

May import: the base modules (``config``, ``features``, ``_keras``) only.
"""

from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, REWARD, RecDataset, make_tf_dataset
from yt_bias.data.synthetic import SyntheticConfig, generate

__all__ = ["ITEM_INDEX", "QUERY_KEY", "REWARD", "RecDataset", "SyntheticConfig", "generate", "make_tf_dataset"]
