"""Keras 2 (tf-keras) for the package's tf-keras parts, set up before TensorFlow is first imported.

Every tf-keras module of the package imports its ``keras`` and ``tf`` from here, so the first of
them to load selects Keras 2; ``import yt_bias`` alone does not (see :mod:`yt_bias`), and
:mod:`yt_bias.keras3` never imports this module.

TFRS 0.7.7 needs Keras 2. TensorFlow 2.20 picks Keras 2 only when TF_USE_LEGACY_KERAS=1 is set
before ``import tensorflow`` runs, so this module sets it, and refuses to go on if TensorFlow was
already imported with Keras 3 (mixing the two fails later with obscure errors).
"""

from __future__ import annotations

import os
import sys

_HINT = (
    "yt_bias's tf-keras parts need Keras 2 (tf-keras): TensorFlow was already imported with Keras 3. "
    "Call yt_bias.use_tf_keras() (or import those parts) before tensorflow, or set TF_USE_LEGACY_KERAS=1 "
    "in the environment before starting Python (and `pip install tf-keras==2.20.*`). "
    "For Keras 3 (any backend) use yt_bias.keras3 instead."
)


def _ensure_legacy_keras() -> None:
    if "tensorflow" not in sys.modules:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        return
    flag = os.environ.get("TF_USE_LEGACY_KERAS", "").strip().lower()
    if flag not in ("1", "true", "yes"):
        raise ImportError(_HINT + f" (TF_USE_LEGACY_KERAS is {os.environ.get('TF_USE_LEGACY_KERAS')!r})")


_ensure_legacy_keras()

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

if not tf.keras.__name__.startswith("tf_keras"):
    raise ImportError(_HINT + f" (tf.keras resolves to {tf.keras.__name__})")

__all__ = ["keras", "tf"]
