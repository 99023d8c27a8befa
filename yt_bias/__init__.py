"""yt_bias: sampling-bias-corrected two-tower retrieval (Yi et al., RecSys 2019).

Importing the package is cheap and neutral: it imports neither TensorFlow nor any Keras. The
tf-keras parts (the names below, ``yt_bias.core`` and everything built on it) select Keras 2
(tf-keras) for TensorFlow when they are first imported (:mod:`yt_bias._keras`), and raise a clear
ImportError in a process where TensorFlow already runs with Keras 3. The Keras 3 path is
:mod:`yt_bias.keras3` (any Keras 3 backend).
"""

from yt_bias._lazy import lazy_attributes
from yt_bias._version import __version__ as __version__

__all__ = [
    "CorrectedRetrieval",
    "OracleFrequency",
    "StreamingFrequencyEstimator",
    "total_variation_error",
    "use_tf_keras",
]

# Public name -> the module that defines it; loaded on first access (PEP 562).
_LAZY = {
    "CorrectedRetrieval": "yt_bias.integrations.tfrs",
    "OracleFrequency": "yt_bias.core.frequency",
    "StreamingFrequencyEstimator": "yt_bias.core.frequency",
    "total_variation_error": "yt_bias.core.frequency",
}


def use_tf_keras():
    """Selects Keras 2 (tf-keras) for TensorFlow now and returns ``(keras, tf)``.

    Call it first in a script that imports ``tensorflow`` or ``tensorflow_recommenders`` itself
    and then uses yt_bias's tf-keras parts (importing those parts first does the same).

    Raises:
      ImportError: TensorFlow was already imported with Keras 3 (the message says what to do).
    """
    from yt_bias._keras import keras, tf

    return keras, tf


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
