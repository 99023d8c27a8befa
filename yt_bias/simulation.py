"""The paper's frequency-estimation simulation (section 6.1) and Proposition 4.1, on the package's estimator.

Everything here drives :class:`~yt_bias.frequency.StreamingFrequencyEstimator` itself (the same
TF code that training uses), inside ``tf.function`` loops over pre-sampled batches.

* The stream (section 6.1): ``M`` items, ``q_i`` proportional to ``i ** 2`` (item 0 has ``q = 0``),
  each step draws a batch of ``B`` distinct items by successive sampling without replacement
  (the distribution of ``numpy``'s ``choice(M, B, replace=False, p=q)``), and after
  ``switch_step`` steps the popularity is reversed, ``q_i`` proportional to ``(M - 1 - i) ** 2``.
* The target is the EXACT per-step inclusion probability ``pi_i`` of each item
  (:func:`inclusion_probabilities`, a numerical integral accurate to about 1e-12), not the
  approximation ``B * q_i`` (which is off by a total variation of about 0.023 on the paper's
  stream and exceeds 1 for very popular items); ``target="linear"`` selects ``B * q_i`` instead.
* The error is the paper's total variation ``(1 / 2B) * sum_i |p_hat_i - pi_i|``, measured every
  ``eval_every`` steps against the distribution that generated the step's batch.
* Proposition 4.1: i.i.d. geometric gaps with mean ``delta``; the bias and variance of the
  estimator's interval after its ``t``-th hit, against the corrected closed forms (and the
  paper's misprinted bias), see :func:`run_prop41`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import math
import time
from collections.abc import Iterable, Sequence

import numpy as np

from yt_bias._keras import tf
from yt_bias.frequency import StreamingFrequencyEstimator, total_variation_error

__all__ = [
    "REFERENCE_STEPS",
    "REFERENCE_TV",
    "EstimatorSetting",
    "Prop41Config",
    "Prop41Result",
    "SimulationResult",
    "StreamConfig",
    "checkpoint_steps",
    "compare_with_reference",
    "figure_settings",
    "inclusion_probabilities",
    "markdown_table",
    "numpy_reference_errors",
    "prop41_closed_forms",
    "run_figure",
    "run_prop41",
    "run_stream_simulation",
    "sample_batches",
    "variant_comparison",
]

# The reference run of PAPER.md section 3 (numpy, seed 0): TV error at these steps.
REFERENCE_STEPS = (5000, 10000, 10500, 12000, 20000)
REFERENCE_TV = {
    # (alpha, num_hashes): errors at REFERENCE_STEPS
    (0.001, 1): (0.416, 0.329, 0.565, 0.533, 0.366),
    (0.01, 1): (0.125, 0.123, 0.550, 0.228, 0.150),
    (0.1, 1): (0.176, 0.171, 0.265, 0.216, 0.200),
    (0.01, 2): (0.072, 0.071, 0.526, 0.166, 0.086),
    (0.01, 4): (0.055, 0.054, 0.504, 0.135, 0.063),
}


# --------------------------------------------------------------------------------------------
# Exact inclusion probabilities of successive sampling without replacement.
# --------------------------------------------------------------------------------------------


def _gauss_legendre(edges: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of composite Gauss-Legendre quadrature on the panels ``edges``."""
    x, w = np.polynomial.legendre.leggauss(order)
    a, b = edges[:-1, None], edges[1:, None]
    return ((b - a) / 2 * x + (a + b) / 2).ravel(), ((b - a) / 2 * w).ravel()


def _add_item(counts: np.ndarray, arrived: np.ndarray) -> np.ndarray:
    """Poisson-binomial step: ``counts`` [T, K] distribution of a count, one more Bernoulli(arrived [T])."""
    new = counts * (1.0 - arrived[:, None])
    new[:, 1:] += counts[:, :-1] * arrived[:, None]
    return new


def _prob_at_most(q: np.ndarray, t: float, k: int) -> float:
    """P(at most k of the exponential clocks with rates q have rung by time t)."""
    counts = np.zeros((1, k + 1))
    counts[0, 0] = 1.0
    for rate in q:
        counts = _add_item(counts, -np.expm1(-rate * np.array([t])))
    return float(counts.sum())


def _inclusion_integral(q: np.ndarray, batch_size: int, panels: int, order: int, chunk: int) -> np.ndarray:
    t_end = batch_size / q.max()
    while _prob_at_most(q, t_end, batch_size) > 1e-17:
        t_end *= 2.0
    edges = np.unique(np.concatenate([np.linspace(0.0, t_end, panels + 1), np.geomspace(1e-2 / q.max(), t_end, panels + 1)]))
    nodes, weights = _gauss_legendre(edges, order)
    n, k = q.size, batch_size
    pi = np.zeros(n)
    for start in range(0, nodes.size, chunk):
        t, wt = nodes[start : start + chunk], weights[start : start + chunk]
        survive = np.exp(-np.outer(q, t))  # [n, T]: P(clock j has not rung by t)
        prefix = np.empty((n, t.size, k))  # distribution of the count among items < i, truncated to < k
        counts = np.zeros((t.size, k))
        counts[:, 0] = 1.0
        for i in range(n):
            prefix[i] = counts
            counts = _add_item(counts, 1.0 - survive[i])
        suffix_cdf = np.empty((n, t.size, k))  # CDF of the count among items > i
        counts = np.zeros((t.size, k))
        counts[:, 0] = 1.0
        for i in range(n - 1, -1, -1):
            suffix_cdf[i] = np.cumsum(counts, axis=1)
            counts = _add_item(counts, 1.0 - survive[i])
        # P(fewer than k other clocks rang by t) = sum_a P(prefix = a) P(suffix <= k - 1 - a).
        others_below = np.einsum("ita,ita->it", prefix, suffix_cdf[:, :, ::-1])
        pi += (q[:, None] * survive * others_below) @ wt
    return pi


def inclusion_probabilities(weights: Sequence[float], batch_size: int) -> np.ndarray:
    """Exact per-step inclusion probabilities of a batch drawn without replacement, proportional to weights.

    The batch is drawn by successive sampling: each draw picks one of the remaining items with
    probability proportional to its weight. This is the distribution of
    ``numpy.random.Generator.choice(M, B, replace=False, p=q)`` (numpy keeps the distinct items
    of i.i.d. draws in order of first appearance, which is successive sampling) and of
    :func:`sample_batches` (Gumbel top-k). Computed exactly, not by Monte Carlo: give item ``j``
    an exponential clock of rate ``q_j``; the batch is the first ``B`` clocks to ring, so
    ``pi_i = int_0^inf q_i exp(-q_i t) P(fewer than B other clocks rang by t) dt``. The inner
    probability is a Poisson-binomial CDF (prefix/suffix dynamic programme, ``O(M B)`` per node)
    and the integral is composite Gauss-Legendre, refined until ``sum_i pi_i = B`` to 1e-9.
    Costs ``O(M B T)`` with ``T`` about 1000 nodes: about 2 s for M = 1000, B = 128.

    Args:
      weights: [num_items] non-negative weights (need not sum to 1); items of weight 0 get 0.
      batch_size: B, the number of distinct items per batch.
    Returns:
      [num_items] float64 inclusion probabilities in [0, 1], summing to ``batch_size``.
    Raises:
      ValueError: negative or non-finite weights, or fewer than ``batch_size`` positive weights.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be a 1-D array of finite non-negative numbers; received shape {w.shape}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; received {batch_size!r}.")
    positive = np.flatnonzero(w > 0)
    if positive.size < batch_size:
        raise ValueError(
            f"batch_size={batch_size} distinct items need at least that many positive weights; received {positive.size}."
        )
    out = np.zeros(w.size)
    if positive.size == batch_size:
        out[positive] = 1.0
        return out
    q = w[positive] / w[positive].sum()
    for panels in (32, 64, 128, 256):
        pi = _inclusion_integral(q, int(batch_size), panels=panels, order=16, chunk=64)
        if abs(pi.sum() - batch_size) < 1e-9 * batch_size:
            break
    else:  # pragma: no cover - no weights met in practice get here
        raise ValueError(f"inclusion probabilities did not converge: they sum to {pi.sum()!r}, not {batch_size}.")
    out[positive] = np.clip(pi, 0.0, 1.0)
    return out


def sample_batches(weights: Sequence[float], batch_size: int, num_steps: int, rng: np.random.Generator) -> np.ndarray:
    """Batches of distinct items drawn by successive sampling, proportional to ``weights``.

    Gumbel top-k: the ``B`` largest ``log w_i + G_i`` with i.i.d. Gumbel ``G_i`` are distributed as
    ``B`` successive draws without replacement (same law as ``numpy``'s
    ``choice(M, B, replace=False, p=q)``, vectorised over steps).

    Args:
      weights: [num_items] non-negative weights.
      batch_size: B.
      num_steps: the number of batches.
      rng: the numpy generator.
    Returns:
      [num_steps, batch_size] int64 item indices (order within a batch is arbitrary).
    """
    w = np.asarray(weights, dtype=np.float64)
    if np.count_nonzero(w > 0) < batch_size:
        raise ValueError(f"need at least batch_size={batch_size} positive weights; received {np.count_nonzero(w > 0)}.")
    with np.errstate(divide="ignore"):
        log_w = np.log(w)
    out = np.empty((num_steps, batch_size), dtype=np.int64)
    chunk = max(1, 2_000_000 // max(w.size, 1))
    for start in range(0, num_steps, chunk):
        keys = log_w + rng.gumbel(size=(min(chunk, num_steps - start), w.size))
        out[start : start + chunk] = np.argpartition(-keys, batch_size - 1, axis=1)[:, :batch_size]
    return out


# --------------------------------------------------------------------------------------------
# The section 6.1 stream and Figures 4 and 5.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    """The simulated stream of section 6.1.

    Args:
      num_items: M.
      batch_size: B, distinct items per step.
      num_steps: steps to simulate.
      switch_step: the last step drawn from ``q_i ~ i^exponent``; later steps draw from
        ``q_i ~ (M - 1 - i)^exponent``. ``None``: no switch.
      exponent: 2 in the paper.
      seed: the numpy seed of the batches.
    """

    num_items: int = 1000
    batch_size: int = 128
    num_steps: int = 20000
    switch_step: int | None = 10000
    exponent: float = 2.0
    seed: int = 0

    def __post_init__(self):
        if self.num_items < 2 or self.batch_size < 1 or self.batch_size >= self.num_items:
            raise ValueError(
                f"need num_items >= 2 and 1 <= batch_size < num_items; received {self.num_items} and {self.batch_size}."
            )
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1; received {self.num_steps}.")
        if self.switch_step is not None and not 0 <= self.switch_step <= self.num_steps:
            raise ValueError(f"switch_step must be in [0, num_steps={self.num_steps}] or None; received {self.switch_step}.")

    @classmethod
    def smoke(cls) -> StreamConfig:
        """A stream small enough for tests: 200 items, batches of 25 (B/M as in the paper), 3000 steps, switch at 1500."""
        return cls(num_items=200, batch_size=25, num_steps=3000, switch_step=1500)

    def phase_weights(self) -> list[np.ndarray]:
        """[before, after] the switch: [num_items] unnormalised weights of each phase."""
        i = np.arange(self.num_items, dtype=np.float64)
        return [i**self.exponent, (self.num_items - 1 - i) ** self.exponent]

    def phase_of_step(self, steps: np.ndarray) -> np.ndarray:
        """0 for steps 1..switch_step, 1 after (the phase that generated each step's batch)."""
        steps = np.asarray(steps)
        if self.switch_step is None:
            return np.zeros(steps.shape, dtype=np.int64)
        return (steps > self.switch_step).astype(np.int64)

    def batches(self) -> np.ndarray:
        """[num_steps, batch_size] int64 item indices; row t - 1 is the batch of step t."""
        rng = np.random.default_rng(self.seed)
        before, after = self.phase_weights()
        n_before = self.num_steps if self.switch_step is None else self.switch_step
        parts = [sample_batches(before, self.batch_size, n_before, rng)]
        if n_before < self.num_steps:
            parts.append(sample_batches(after, self.batch_size, self.num_steps - n_before, rng))
        return np.concatenate(parts, axis=0)

    def targets(self, target: str = "exact") -> list[np.ndarray]:
        """[before, after]: [num_items] per-step probabilities of each phase.

        ``target="exact"``: the inclusion probabilities (:func:`inclusion_probabilities`);
        ``"linear"``: the paper's approximation ``B * q_i`` (not clipped; it is not a probability
        when ``B q_i > 1``).
        """
        weights = self.phase_weights()
        if target == "linear":
            return [self.batch_size * w / w.sum() for w in weights]
        if target != "exact":
            raise ValueError(f"target must be 'exact' or 'linear'; received {target!r}.")
        before = inclusion_probabilities(weights[0], self.batch_size)
        # The second phase is the first one reversed: its inclusion probabilities are too.
        return [before, before[::-1].copy()]


@dataclasses.dataclass(frozen=True)
class EstimatorSetting:
    """One estimator of a simulation: the arguments of ``StreamingFrequencyEstimator``."""

    alpha: float = 0.01
    num_hashes: int = 1
    hash_size: int = 5000
    initial_interval: float = 100.0
    bias_correction: bool = False

    @property
    def label(self) -> str:
        suffix = " +bias_correction" if self.bias_correction else ""
        return f"alpha={self.alpha:g} m={self.num_hashes} H={self.hash_size}{suffix}"

    def build(self, seed: int = 0) -> StreamingFrequencyEstimator:
        return StreamingFrequencyEstimator(
            hash_size=self.hash_size,
            num_hashes=self.num_hashes,
            alpha=self.alpha,
            initial_interval=self.initial_interval,
            seed=seed,
            bias_correction=self.bias_correction,
        )


@dataclasses.dataclass
class SimulationResult:
    """TV error by step of each estimator setting on one stream.

    Attributes:
      steps: [num_evals] the steps at which the error was measured (after that step's update).
      errors: label -> [num_evals] TV errors.
      settings: label -> the setting.
      stream: the stream.
      target: "exact" or "linear".
      seconds: label -> wall time of the estimator loop; "targets" and "batches" for the rest.
    """

    steps: np.ndarray
    errors: dict[str, np.ndarray]
    settings: dict[str, EstimatorSetting]
    stream: StreamConfig
    target: str
    seconds: dict[str, float]

    def at(self, steps: Iterable[int]) -> dict[str, list[float]]:
        """label -> errors at the given steps (each must be a measured step)."""
        index = []
        for step in steps:
            found = np.flatnonzero(self.steps == step)
            if found.size == 0:
                raise ValueError(f"step {step} was not measured; measured steps are multiples of the eval interval.")
            index.append(int(found[0]))
        return {label: [float(err[i]) for i in index] for label, err in self.errors.items()}

    def to_csv(self, path: str) -> None:
        """Writes ``step,<label>,...`` rows, one per measured step."""
        labels = list(self.errors)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step"] + labels)
            for i, step in enumerate(self.steps):
                writer.writerow([int(step)] + [f"{self.errors[label][i]:.6f}" for label in labels])


@contextlib.contextmanager
def _quiet_retracing():
    """Hides TF's retracing warning: each run builds a fresh estimator, hence a fresh tf.function, on purpose."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _estimator_trajectory(
    estimator: StreamingFrequencyEstimator, batches: np.ndarray, eval_steps: np.ndarray, item_ids: np.ndarray
) -> np.ndarray:
    """Feeds ``batches`` to ``estimator`` step by step; returns ``p_hat`` of all items at ``eval_steps``.

    Returns:
      [num_evals, num_items] float32 probabilities read after the update of each eval step.
    """
    ids = tf.constant(item_ids, tf.int64)

    @tf.function(input_signature=[tf.TensorSpec([None, batches.shape[1]], tf.int64)])
    def advance(chunk):
        for s in tf.range(tf.shape(chunk)[0]):
            estimator.update(chunk[s])
        return estimator.probability(ids)

    out = np.empty((len(eval_steps), item_ids.size), dtype=np.float32)
    previous = 0
    with _quiet_retracing():
        for i, step in enumerate(eval_steps):
            out[i] = advance(batches[previous:step]).numpy()
            previous = int(step)
    return out


def run_stream_simulation(
    stream: StreamConfig,
    settings: Sequence[EstimatorSetting],
    eval_every: int = 100,
    target: str = "exact",
    estimator_seed: int = 0,
) -> SimulationResult:
    """Runs each estimator setting on the same stream and measures the TV error (section 6.1).

    Args:
      stream: the stream (every setting sees the same batches).
      settings: the estimators.
      eval_every: measure the error every this many steps (and at the last step).
      target: "exact" inclusion probabilities or the "linear" approximation ``B * q_i``.
      estimator_seed: the hash seed of every estimator.
    Returns:
      A :class:`SimulationResult`.
    """
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1; received {eval_every}.")
    labels = [s.label for s in settings]
    if len(set(labels)) != len(labels):
        raise ValueError(f"settings must be distinct; received labels {labels}.")
    seconds = {}
    start = time.perf_counter()
    targets = stream.targets(target)
    seconds["targets"] = time.perf_counter() - start
    start = time.perf_counter()
    batches = stream.batches()
    seconds["batches"] = time.perf_counter() - start
    eval_steps = np.unique(np.append(np.arange(eval_every, stream.num_steps + 1, eval_every), stream.num_steps))
    phases = stream.phase_of_step(eval_steps)
    item_ids = np.arange(stream.num_items, dtype=np.int64)
    errors = {}
    for setting in settings:
        start = time.perf_counter()
        p_hat = _estimator_trajectory(setting.build(estimator_seed), batches, eval_steps, item_ids)
        errors[setting.label] = np.array(
            [total_variation_error(p, targets[phase], stream.batch_size) for p, phase in zip(p_hat, phases)]
        )
        seconds[setting.label] = time.perf_counter() - start
    return SimulationResult(
        steps=eval_steps,
        errors=errors,
        settings={s.label: s for s in settings},
        stream=stream,
        target=target,
        seconds=seconds,
    )


def numpy_reference_errors(
    stream: StreamConfig,
    setting: EstimatorSetting,
    per_item_updates: bool = False,
    eval_every: int = 100,
    target: str = "exact",
    estimator_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 2/3 re-implemented in numpy on the estimator's own buckets: a cross-check and the paper's literal loop.

    With ``per_item_updates=False`` this is the update rule of
    :class:`~yt_bias.frequency.StreamingFrequencyEstimator` (each bucket hit by a step is updated
    once), so its errors equal :func:`run_stream_simulation`'s up to float32 rounding. With
    ``per_item_updates=True`` it runs the paper's pseudo-code literally, one update per item:
    when ``k`` items of one batch share a bucket, the 2nd..k-th updates see a gap of 0, so
    ``B <- (1 - alpha)^(k - 1) * ((1 - alpha) * B + alpha * (t - A))``.

    Args:
      stream, setting, eval_every, target, estimator_seed: as in :func:`run_stream_simulation`
        (``bias_correction`` is not supported here).
      per_item_updates: the paper's literal per-item loop.
    Returns:
      ([num_evals] steps, [num_evals] TV errors).
    """
    if setting.bias_correction:
        raise ValueError("numpy_reference_errors implements Algorithm 2/3 only; received bias_correction=True.")
    alpha = setting.alpha
    buckets = setting.build(estimator_seed).buckets(np.arange(stream.num_items, dtype=np.int64)).numpy()  # [m, M]
    targets = stream.targets(target)
    batches = stream.batches()
    last = np.zeros((setting.num_hashes, setting.hash_size))
    interval = np.full((setting.num_hashes, setting.hash_size), setting.initial_interval)
    rows = np.arange(setting.num_hashes)[:, None]
    steps, errors = [], []
    for t in range(1, stream.num_steps + 1):
        for i in range(setting.num_hashes):
            hit, counts = np.unique(buckets[i, batches[t - 1]], return_counts=True)
            new = (1.0 - alpha) * interval[i, hit] + alpha * (t - last[i, hit])
            if per_item_updates:
                new *= (1.0 - alpha) ** (counts - 1)
            interval[i, hit] = new
            last[i, hit] = t
        if t % eval_every == 0 or t == stream.num_steps:
            p_hat = 1.0 / np.maximum(interval[rows, buckets].max(axis=0), 1.0)
            phase = int(stream.phase_of_step(np.array([t]))[0])
            steps.append(t)
            errors.append(total_variation_error(p_hat, targets[phase], stream.batch_size))
    return np.array(steps), np.array(errors)


def figure_settings(figure: int, bias_correction: bool | None = None, total_buckets: int = 5000) -> list[EstimatorSetting]:
    """The estimators of Figure 4 (alpha in {0.001, 0.01, 0.1}, m = 1) or 5 (m in {1, 2, 4}, equal memory).

    Args:
      figure: 4 or 5.
      bias_correction: False: Algorithm 2/3 only; True: the variant only; None: both.
      total_buckets: m * H, the memory of each estimator (H = 5000 in the paper).
    """
    if figure == 4:
        base = [EstimatorSetting(alpha=a, num_hashes=1, hash_size=total_buckets) for a in (0.001, 0.01, 0.1)]
    elif figure == 5:
        base = [EstimatorSetting(alpha=0.01, num_hashes=m, hash_size=total_buckets // m) for m in (1, 2, 4)]
    else:
        raise ValueError(f"figure must be 4 or 5; received {figure!r}.")
    flags = [False, True] if bias_correction is None else [bool(bias_correction)]
    return [dataclasses.replace(s, bias_correction=flag) for flag in flags for s in base]


def run_figure(
    figure: int,
    stream: StreamConfig | None = None,
    bias_correction: bool | None = None,
    eval_every: int = 100,
    target: str = "exact",
    total_buckets: int = 5000,
    estimator_seed: int = 0,
) -> SimulationResult:
    """Reproduces Figure 4 or 5 of the paper (plus the bias-corrected variant when asked).

    Args:
      figure: 4 (alpha grid) or 5 (number of hashes at equal memory).
      stream: defaults to the paper's: M = 1000, B = 128, 20000 steps, switch at 10000.
      bias_correction: see :func:`figure_settings`; None runs Algorithm 2/3 and the variant.
      eval_every, target: see :func:`run_stream_simulation`.
      total_buckets: m * H.
      estimator_seed: the hash seed of the estimators.
    """
    return run_stream_simulation(
        stream or StreamConfig(),
        figure_settings(figure, bias_correction, total_buckets),
        eval_every=eval_every,
        target=target,
        estimator_seed=estimator_seed,
    )


def compare_with_reference(result: SimulationResult) -> list[dict]:
    """Rows (label, step, measured, reference, relative difference) for the settings of the reference table.

    Only settings with H * m = 5000 and no bias correction have a reference; steps beyond the
    run are skipped.
    """
    rows = []
    for label, setting in result.settings.items():
        key = (setting.alpha, setting.num_hashes)
        if setting.bias_correction or key not in REFERENCE_TV or setting.hash_size * setting.num_hashes != 5000:
            continue
        for step, reference in zip(REFERENCE_STEPS, REFERENCE_TV[key]):
            if step > result.stream.num_steps or step not in result.steps:
                continue
            measured = result.at([step])[label][0]
            rows.append(
                {
                    "label": label,
                    "step": step,
                    "measured": measured,
                    "reference": reference,
                    "rel_diff": measured / reference - 1.0,
                }
            )
    return rows


def checkpoint_steps(stream: StreamConfig, eval_every: int = 100) -> list[int]:
    """The reference table's steps scaled to ``stream``: T/4, switch, switch + T/40, switch + T/10, T.

    For the paper's stream (T = 20000, switch at 10000) they are exactly :data:`REFERENCE_STEPS`;
    each is rounded down to the evaluation grid.
    """
    t, switch = stream.num_steps, stream.switch_step if stream.switch_step is not None else stream.num_steps // 2
    steps = [t // 4, switch, switch + t // 40, switch + t // 10, t]
    return sorted({max(eval_every, min(t, s // eval_every * eval_every)) for s in steps})


def variant_comparison(result: SimulationResult) -> list[dict]:
    """Mean TV error of Algorithm 2/3 and of its bias-corrected variant in four windows of the stream.

    Windows (T steps, switch at S): warm-up (0, S/5], settled (S/2, S], after the switch
    (S, S + (T-S)/5], end (T - (T-S)/5, T]. One row per (setting, window) whose both curves ran.
    """
    t = result.stream.num_steps
    s = result.stream.switch_step if result.stream.switch_step is not None else t
    windows = {
        "warm-up": (0, s // 5),
        "settled": (s // 2, s),
        "after switch": (s, s + (t - s) // 5),
        "end": (t - (t - s) // 5, t),
    }
    rows = []
    for label, setting in result.settings.items():
        corrected = dataclasses.replace(setting, bias_correction=True).label
        if setting.bias_correction or corrected not in result.errors:
            continue
        for name, (lo, hi) in windows.items():
            mask = (result.steps > lo) & (result.steps <= hi)
            if not mask.any():
                continue
            plain, variant = float(result.errors[label][mask].mean()), float(result.errors[corrected][mask].mean())
            rows.append(
                {
                    "setting": label,
                    "window": f"{name} ({lo}, {hi}]",
                    "algorithm": plain,
                    "bias_correction": variant,
                    "ratio": variant / plain,
                }
            )
    return rows


def markdown_table(rows: Sequence[dict], digits: int = 3) -> str:
    """A Markdown table of ``rows`` (dicts with the same keys); floats with ``digits`` decimals."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])

    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Proposition 4.1.
# --------------------------------------------------------------------------------------------


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
        if self.num_hits < 1 or self.num_replicas < 2:
            raise ValueError(f"need num_hits >= 1 and num_replicas >= 2; received {self.num_hits}, {self.num_replicas}.")

    @classmethod
    def smoke(cls) -> Prop41Config:
        return cls(alphas=(0.1,), delta0_factors=(1.0, 4.0), num_hits=40, num_replicas=3000, hash_size=1 << 18)

    def hits_for(self, alpha: float) -> int:
        return int(min(self.num_hits, math.ceil(4.0 / alpha)))


@dataclasses.dataclass
class Prop41Result:
    """Measured mean and variance of delta_t for each (alpha, delta0, read-out).

    Attributes:
      runs: list of dicts with alpha, delta0, delta0_label, bias_correction, t [T] (1..T),
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
        """One row per run: the bias at t = 1 (measured, corrected, misprinted), the RMS over t of
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

    with _quiet_retracing():
        return loop().numpy()


def run_prop41(config: Prop41Config | None = None, bias_correction: bool | None = None) -> Prop41Result:
    """Measures the bias and variance of delta_t on i.i.d. gaps (Proposition 4.1) with the package's estimator.

    Each (alpha, delta0) pair runs a fresh :class:`StreamingFrequencyEstimator` (``m = 1``) on
    the same gaps (the first ``T`` of each replica). The interval is read through
    ``probability`` (``delta_t = 1 / p_hat``) right after the hit, so the measurement goes through
    the same code as training. The bias-corrected read-out does not depend on delta0 once an
    item was hit, so it runs once per alpha, from the largest delta0.

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
                config.hash_size, 1, alpha=alpha, initial_interval=delta0, seed=config.seed, bias_correction=flag
            )
            if valid is None:  # replicas alone in their bucket (the pad item included)
                buckets = estimator.buckets(np.arange(n + 1, dtype=np.int64)).numpy()[0]
                _, inverse, counts = np.unique(buckets, return_inverse=True, return_counts=True)
                valid = counts[inverse][:n] == 1
            delta_t = np.empty((n, hits))
            delta_t[flat_ids, flat_k] = _hits_readout(estimator, flat_ids, row_splits, pad_id)
            delta_t = delta_t[valid]
            closed = prop41_closed_forms(alpha, config.mean_gap, gap_variance, delta0, t)
            variance = delta_t.var(axis=0, ddof=1)
            runs.append(
                {
                    "alpha": alpha,
                    "delta0": delta0,
                    "delta0_label": label,
                    "bias_correction": flag,
                    "t": t,
                    "bias": delta_t.mean(axis=0) - config.mean_gap,
                    "variance": variance,
                    "bias_se": np.sqrt(variance / delta_t.shape[0]),
                    "bias_closed": np.zeros(hits) if flag else closed["bias"],
                    "bias_misprint": nan * t if flag else closed["bias_misprint"],
                    "variance_closed": closed["variance_debiased"] if flag else closed["variance"],
                    "variance_bound": nan * t if flag else closed["variance_bound"],
                    "variance_bound_misprint": nan * t if flag else closed["variance_bound_misprint"],
                }
            )
    return Prop41Result(runs=runs, config=config, num_valid=int(valid.sum()), seconds=time.perf_counter() - start)
