"""Proposition 4.1 of the paper: bias and variance of the estimator's interval on i.i.d. gaps.

For ``delta_t = (1 - a) delta_{t-1} + a Delta_t`` with i.i.d. gaps of mean ``delta`` and variance
``sigma^2``: the closed forms (corrected, and the paper's misprinted ones) and a measurement of the
package's own estimator, read through ``probability`` right after each hit (see :func:`run_prop41`).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from yt_bias._keras import tf
from yt_bias.core.frequency import StreamingFrequencyEstimator
from yt_bias.studies.tracing import quiet_retracing

__all__ = ["Prop41Config", "Prop41Result", "prop41_closed_forms", "run_prop41"]


def prop41_closed_forms(alpha: float, mean_gap: float, gap_variance: float, delta0: float, t: np.ndarray) -> dict:
    """Closed forms of Proposition 4.1 for ``delta_t = (1 - a) delta_{t-1} + a Delta_t`` (i.i.d. gaps).

    Returns a dict of [len(t)] arrays:
      bias: the corrected ``(1 - a)^t (delta_0 - delta)``;
      bias_misprint: the paper's printed ``(1 - a)^t delta_0 - (1 - a)^(t-1) delta``;
      variance: the exact ``a sigma^2 (1 - (1 - a)^(2t)) / (2 - a)`` (it does not depend on delta_0);
      variance_bound: the corrected bound ``(1 - a)^(2t) (delta_0 - delta)^2 + a sigma^2``;
      variance_bound_misprint: the printed ``(1 - a)^(2t) (delta_0 - delta)^2 + a E[(Delta - a)^2]``;
      variance_debiased: the exact variance of the bias-corrected read-out
        ``a sigma^2 (1 + (1 - a)^t) / ((2 - a)(1 - (1 - a)^t))`` (its bias is 0).
    """
    t = np.asarray(t, dtype=np.float64)
    a, d = float(alpha), float(mean_gap)
    decay = (1.0 - a) ** t
    return {
        "bias": decay * (delta0 - d),
        "bias_misprint": decay * delta0 - (1.0 - a) ** (t - 1) * d,
        "variance": a * gap_variance * (1.0 - decay**2) / (2.0 - a),
        "variance_bound": decay**2 * (delta0 - d) ** 2 + a * gap_variance,
        "variance_bound_misprint": decay**2 * (delta0 - d) ** 2 + a * (gap_variance + (d - a) ** 2),
        "variance_debiased": a * gap_variance * (1.0 + decay) / ((2.0 - a) * (1.0 - decay)),
    }


@dataclasses.dataclass(frozen=True)
class Prop41Config:
    """The i.i.d.-gap experiment of Proposition 4.1.

    Each of ``num_replicas`` items is in the batch of each step independently with probability
    ``1 / mean_gap``, so its gaps are i.i.d. geometric on {1, 2, ...} with mean ``delta = mean_gap``
    and variance ``delta^2 - delta`` (the first gap is measured from A0 = 0). The estimator's
    interval after an item's ``t``-th hit is ``delta_t``; t runs over 1..T with
    ``T = min(num_hits, ceil(4 / alpha))`` (where ``(1 - alpha)^T`` is about ``e^-4``).

    Args:
      alphas: the learning rates.
      delta0_factors: initial intervals as multiples of delta; the paper's "ideal"
        ``delta / (1 - alpha)`` is always added.
      mean_gap: delta.
      num_hits: the largest T.
      num_replicas: independent items (those whose bucket collides with another are dropped).
      hash_size: buckets of the estimator (large, so that few replicas collide).
      seed: numpy seed of the gaps.
    """

    alphas: tuple[float, ...] = (0.01, 0.05, 0.2)
    delta0_factors: tuple[float, ...] = (0.2, 1.0, 4.0)
    mean_gap: float = 5.0
    num_hits: int = 300
    num_replicas: int = 8000
    hash_size: int = 1 << 22
    seed: int = 0

    def __post_init__(self):
        if not self.alphas or any(not 0.0 < a < 1.0 for a in self.alphas):
            raise ValueError(f"alphas must be non-empty, each in (0, 1); received {self.alphas}.")
        if self.mean_gap < 1.0:
            raise ValueError(f"mean_gap must be >= 1 (gaps are whole steps); received {self.mean_gap}.")
        if any(f * self.mean_gap < 1.0 for f in self.delta0_factors):
            raise ValueError(f"every delta0_factors * mean_gap must be >= 1; received {self.delta0_factors}.")
        if self.num_hits < 2 or self.num_replicas < 2:
            raise ValueError(f"need num_hits >= 2 and num_replicas >= 2; received {self.num_hits}, {self.num_replicas}.")

    @classmethod
    def smoke(cls) -> Prop41Config:
        return cls(alphas=(0.1,), delta0_factors=(1.0, 4.0), num_hits=40, num_replicas=3000, hash_size=1 << 18)

    def hits_for(self, alpha: float) -> int:
        return int(min(self.num_hits, math.ceil(4.0 / alpha)))


@dataclasses.dataclass
class Prop41Result:
    """Measured mean and variance of delta_t for each (alpha, delta0, read-out).

    Attributes:
      runs: list of dicts with alpha, delta0, delta0_label, bias_correction, t [T] (the hits
        1..T; 2..T for the bias-corrected read-out, which reads B0 until an item's second hit),
        bias [T], variance [T], bias_se [T] (standard error of the measured bias), and the closed
        forms bias_closed (the corrected bias; 0 for the bias-corrected read-out), bias_misprint,
        variance_closed (exact), variance_bound, variance_bound_misprint (the last three: NaN for
        the bias-corrected read-out, to which the proposition does not apply).
      config, num_valid (replicas kept), seconds.
    """

    runs: list[dict]
    config: Prop41Config
    num_valid: int
    seconds: float

    def summary(self) -> list[dict]:
        """One row per run: the bias at the first compared hit (``bias_t1``: t = 1, or t = 2 for the
        bias-corrected read-out; measured, corrected, misprinted), the RMS over t of
        (measured - form) / standard error for both forms, and the max over t of the measured
        variance over the exact variance and over the corrected bound."""
        rows = []
        for run in self.runs:
            se = np.maximum(run["bias_se"], 1e-12)
            rows.append(
                {
                    "alpha": run["alpha"],
                    "delta0": run["delta0_label"],
                    "bias_correction": run["bias_correction"],
                    "hits": int(run["t"][-1]),
                    "bias_t1": float(run["bias"][0]),
                    "corrected_t1": float(run["bias_closed"][0]),
                    "misprint_t1": float(run["bias_misprint"][0]),
                    "rms_z_corrected": float(np.sqrt(np.mean(((run["bias"] - run["bias_closed"]) / se) ** 2))),
                    "rms_z_misprint": float(np.sqrt(np.mean(((run["bias"] - run["bias_misprint"]) / se) ** 2))),
                    "max_variance_over_exact": float(np.max(run["variance"] / run["variance_closed"])),
                    "max_variance_over_bound": float(np.max(run["variance"] / run["variance_bound"])),
                }
            )
        return rows


def _hits_readout(
    estimator: StreamingFrequencyEstimator, flat_ids: np.ndarray, row_splits: np.ndarray, pad_id: int
) -> np.ndarray:
    """Runs the hit stream through ``estimator``; returns ``1 / p_hat`` of each hit item right after its hit.

    Args:
      flat_ids: [num_hits] item of each hit, in step order.
      row_splits: [num_steps + 1]: step s (1-based) holds ``flat_ids[row_splits[s-1]:row_splits[s]]``.
      pad_id: an item added to every batch, so that no step is empty.
    Returns:
      [num_hits] float32 ``delta`` read through ``estimator.probability`` after each hit's step.
    """
    ids = tf.constant(flat_ids, tf.int64)
    splits = tf.constant(row_splits, tf.int64)
    pad = tf.constant([pad_id], tf.int64)

    @tf.function(reduce_retracing=True)
    def loop():
        num_steps = tf.size(splits, out_type=tf.int64) - 1
        reads = tf.TensorArray(tf.float32, size=tf.cast(num_steps, tf.int32), infer_shape=False, element_shape=[None])
        for s in tf.range(num_steps):
            hit = ids[splits[s] : splits[s + 1]]
            estimator.update(tf.concat([hit, pad], axis=0))
            reads = reads.write(tf.cast(s, tf.int32), 1.0 / estimator.probability(hit))
        return reads.concat()

    with quiet_retracing():
        return loop().numpy()


def run_prop41(config: Prop41Config | None = None, bias_correction: bool | None = None) -> Prop41Result:
    """Measures the bias and variance of delta_t on i.i.d. gaps (Proposition 4.1) with the package's estimator.

    Each (alpha, delta0) pair runs a fresh :class:`StreamingFrequencyEstimator` (``m = 1``) on
    the same gaps (the first ``T`` of each replica). The interval is read through
    ``probability`` (``delta_t = 1 / p_hat``) right after the hit, so the measurement goes through
    the same code as training. The bias-corrected read-out ignores an item's first sighting (its
    gap since step 0 is not an interval between sightings), so after hit ``t >= 2`` it is the
    debiased average of ``t - 1`` gaps, independent of delta0: it runs once per alpha, from the
    largest delta0, and is compared from the second hit on.

    Args:
      config: the experiment; defaults to :class:`Prop41Config`.
      bias_correction: False: Algorithm 2 only; True: the variant only; None: both.
    Returns:
      A :class:`Prop41Result`.
    """
    config = config or Prop41Config()
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    p = 1.0 / config.mean_gap
    gap_variance = (1.0 - p) / p**2
    n = config.num_replicas
    gaps = rng.geometric(p, size=(n, max(config.hits_for(a) for a in config.alphas)))
    pad_id = n
    valid = None
    runs = []
    nan = np.full(1, np.nan)
    for alpha in config.alphas:
        hits = config.hits_for(alpha)
        times = np.cumsum(gaps[:, :hits], axis=1)  # [n, T] step of each hit
        order = np.argsort(times.ravel(), kind="stable")
        flat_ids = (order // hits).astype(np.int64)
        flat_k = order % hits
        row_splits = np.searchsorted(times.ravel()[order], np.arange(0, times.max() + 1), side="right")
        t = np.arange(1, hits + 1)
        delta0s = [(f"{f:g}*delta", f * config.mean_gap) for f in config.delta0_factors]
        delta0s.append(("delta/(1-alpha)", config.mean_gap / (1.0 - alpha)))
        jobs = []
        if bias_correction is not True:
            jobs += [(label, delta0, False) for label, delta0 in delta0s]
        if bias_correction is not False:
            jobs.append(max(delta0s, key=lambda d: d[1]) + (True,))
        for label, delta0, flag in jobs:
            estimator = StreamingFrequencyEstimator(
                config.hash_size, 1, alpha=alpha, initial_interval=delta0, seed=config.seed, bias_correction=flag,
                estimand="inclusion",
            )
            if valid is None:  # replicas alone in their bucket (the pad item included)
                buckets = estimator.buckets(np.arange(n + 1, dtype=np.int64)).numpy()[0]
                _, inverse, counts = np.unique(buckets, return_inverse=True, return_counts=True)
                valid = counts[inverse][:n] == 1
            delta_t = np.empty((n, hits))
            delta_t[flat_ids, flat_k] = _hits_readout(estimator, flat_ids, row_splits, pad_id)
            delta_t = delta_t[valid]
            t_run, averaged = t, t  # hits, and gaps averaged into the read-out after each
            if flag:  # a first sighting only sets A: after hit t the read-out averages t - 1 gaps
                t_run, averaged, delta_t = t[1:], t[1:] - 1, delta_t[:, 1:]
            closed = prop41_closed_forms(alpha, config.mean_gap, gap_variance, delta0, averaged)
            variance = delta_t.var(axis=0, ddof=1)
            runs.append(
                {
                    "alpha": alpha,
                    "delta0": delta0,
                    "delta0_label": label,
                    "bias_correction": flag,
                    "t": t_run,
                    "bias": delta_t.mean(axis=0) - config.mean_gap,
                    "variance": variance,
                    "bias_se": np.sqrt(variance / delta_t.shape[0]),
                    "bias_closed": np.zeros(t_run.size) if flag else closed["bias"],
                    "bias_misprint": nan * t_run if flag else closed["bias_misprint"],
                    "variance_closed": closed["variance_debiased"] if flag else closed["variance"],
                    "variance_bound": nan * t_run if flag else closed["variance_bound"],
                    "variance_bound_misprint": nan * t_run if flag else closed["variance_bound_misprint"],
                }
            )
    return Prop41Result(runs=runs, config=config, num_valid=int(valid.sum()), seconds=time.perf_counter() - start)
