"""Data: datasets in memory, sharded files on disk, the synthetic generators and the public-dataset loaders.

Each in-memory source produces a :class:`~yt_bias.data.dataset.RecDataset`; :mod:`~yt_bias.data.shards`
reads and writes data larger than memory.

Importing the package (or a TensorFlow-free module of it, such as :mod:`~yt_bias.data.download`)
loads no TensorFlow: the names below are loaded on first access (PEP 562), as ``yt_bias``'s own.

May import: the base modules (``config``, ``features``, ``_keras``) only.
"""

from yt_bias._lazy import lazy_attributes

__all__ = ["ITEM_INDEX", "QUERY_KEY", "REWARD", "RecDataset", "SyntheticConfig", "generate", "make_tf_dataset"]

# Public name -> the module that defines it; loaded on first access.
_LAZY = {
    "ITEM_INDEX": "yt_bias.data.dataset",
    "QUERY_KEY": "yt_bias.data.dataset",
    "REWARD": "yt_bias.data.dataset",
    "RecDataset": "yt_bias.data.dataset",
    "make_tf_dataset": "yt_bias.data.dataset",
    "SyntheticConfig": "yt_bias.data.synthetic",
    "generate": "yt_bias.data.synthetic",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
