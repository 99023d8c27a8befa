"""Quiet TF retracing warnings in the studies' loops (each run builds a fresh estimator on purpose)."""

from __future__ import annotations

import contextlib
import logging

from yt_bias._keras import tf

__all__ = ["quiet_retracing"]


@contextlib.contextmanager
def quiet_retracing():
    """Hides TF's retracing warning: each run builds a fresh estimator, hence a fresh tf.function, on purpose."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
