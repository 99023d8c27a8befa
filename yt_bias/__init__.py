"""yt_bias: sampling-bias-corrected two-tower retrieval (Yi et al., RecSys 2019).

Importing the package selects Keras 2 (tf-keras) for TensorFlow: see :mod:`yt_bias._keras`.
"""

from yt_bias import _keras  # noqa: F401  (must run before anything imports tensorflow)
from yt_bias._version import __version__ as __version__
from yt_bias.core.frequency import OracleFrequency, StreamingFrequencyEstimator, total_variation_error

__all__ = [
    "CorrectedRetrieval",
    "OracleFrequency",
    "StreamingFrequencyEstimator",
    "total_variation_error",
]


def __getattr__(name: str):
    # CorrectedRetrieval imports tensorflow_recommenders: loaded on first use, not with the package.
    if name == "CorrectedRetrieval":
        from yt_bias.integrations.tfrs import CorrectedRetrieval

        return CorrectedRetrieval
    raise AttributeError(f"module 'yt_bias' has no attribute {name!r}")
