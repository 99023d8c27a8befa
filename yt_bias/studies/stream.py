"""The simulated stream of the paper's section 6.1 and the estimator's error on it.

``M`` items, ``q_i`` proportional to ``i ** 2`` (item 0 has ``q = 0``); each step draws a batch of
``B`` distinct items by successive sampling without replacement, and after ``switch_step`` steps
the popularity is reversed, ``q_i`` proportional to ``(M - 1 - i) ** 2``. The target is the EXACT
per-step inclusion probability ``pi_i`` of each item (:func:`~yt_bias.studies.inclusion.inclusion_probabilities`,
accurate to about 1e-12), not the approximation ``B * q_i`` (off by a total variation of about
0.023 on the paper's stream, and above 1 for very popular items); ``target="linear"`` selects
``B * q_i`` instead. The error is the paper's total variation ``(1 / 2B) * sum_i |p_hat_i - pi_i|``,
measured every ``eval_every`` steps against the distribution that generated the step's batch.

The runs drive :class:`~yt_bias.core.frequency.StreamingFrequencyEstimator` itself (the TF code that
training uses) inside ``tf.function`` loops over pre-sampled batches;
:func:`numpy_reference_errors` re-implements Algorithms 2 and 3 in numpy as a cross-check.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from collections.abc import Iterable, Sequence

import numpy as np

from yt_bias._keras import tf
from yt_bias.core.frequency import StreamingFrequencyEstimator, total_variation_error
from yt_bias.studies.inclusion import inclusion_probabilities, sample_batches
from yt_bias.studies.tracing import quiet_retracing

__all__ = [
    "EstimatorSetting",
    "SimulationResult",
    "SimulationStreamConfig",
    "numpy_reference_errors",
    "run_stream_simulation",
]


@dataclasses.dataclass(frozen=True)
class SimulationStreamConfig:
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
    def smoke(cls) -> SimulationStreamConfig:
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
        """The estimator of these arguments (every field is one), with ``seed``, estimating inclusion probabilities."""
        # the study's target: the exact probability of being in a batch
        return StreamingFrequencyEstimator(**dataclasses.asdict(self), seed=seed, estimand="inclusion")


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
    stream: SimulationStreamConfig
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
    with quiet_retracing():
        for i, step in enumerate(eval_steps):
            out[i] = advance(batches[previous:step]).numpy()
            previous = int(step)
    return out


def run_stream_simulation(
    stream: SimulationStreamConfig,
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
    stream: SimulationStreamConfig,
    setting: EstimatorSetting,
    per_item_updates: bool = False,
    eval_every: int = 100,
    target: str = "exact",
    estimator_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 2/3 re-implemented in numpy on the estimator's own buckets: a cross-check and the paper's literal loop.

    With ``per_item_updates=False`` this is the update rule of
    :class:`~yt_bias.core.frequency.StreamingFrequencyEstimator` (each bucket hit by a step is updated
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
