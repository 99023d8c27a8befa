"""Divergence: a non-finite loss or weight stops training with :class:`TrainingDiverged`.

:class:`DivergenceGuard` is a Keras callback checked at the end of every epoch (no per-step
host sync): if the epoch's loss or any trainable weight is NaN or infinite it raises, so
``model.fit`` stops and no metrics of a broken model are ever reported as valid.
"""

from __future__ import annotations

import math

import numpy as np

from yt_bias._keras import keras


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss or weight."""


def non_finite_weights(model) -> list[str]:
    """Names of the trainable weights of ``model`` holding a NaN or an infinity."""
    return [w.name for w in model.trainable_weights if not np.all(np.isfinite(w.numpy()))]


def check_finite(model, loss: float | None, where: str, hint: str = "") -> None:
    """Raises :class:`TrainingDiverged` when ``loss`` or a trainable weight of ``model`` is not finite."""
    bad_loss = loss is not None and not math.isfinite(float(loss))
    bad_weights = non_finite_weights(model)
    if bad_loss or bad_weights:
        what = f"loss {float(loss)}" if bad_loss else f"loss {loss}"
        if bad_weights:
            what += f", non-finite weights {bad_weights[:3]}{' ...' if len(bad_weights) > 3 else ''}"
        raise TrainingDiverged(f"training diverged {where}: {what}.{(' ' + hint) if hint else ''}")


class DivergenceGuard(keras.callbacks.Callback):
    """Raises :class:`TrainingDiverged` at the end of an epoch whose loss or weights are not finite.

    Args:
      hint: appended to the error (e.g. which config field to lower).
      where: how the epoch is named in the error (e.g. 'on day 3').
    """

    def __init__(self, hint: str = "", where: str = ""):
        super().__init__()
        self.hint = hint
        self.where = where

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        check_finite(self.model, None if loss is None else float(loss), f"{self.where} in epoch {epoch + 1}".strip(), self.hint)
