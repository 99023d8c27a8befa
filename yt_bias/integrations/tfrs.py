"""A drop-in for ``tfrs.tasks.Retrieval`` with the streaming logQ correction.

:class:`CorrectedRetrieval` has the call signature of ``tfrs.tasks.Retrieval.call`` (plus
``training``), so an existing ``tfrs.Model`` changes one line, the task's construction::

    self.task = CorrectedRetrieval(temperature=0.05)          # was: tfrs.tasks.Retrieval()

    def compute_loss(self, features, training=False):
        ids = features["movie_id"]
        return self.task(self.user_model(features["user_id"]), self.movie_model(ids),
                         candidate_ids=ids, training=training)

``tfrs.tasks.Retrieval`` accepts (and ignores) the same ``candidate_ids`` and ``training``
arguments, so one ``compute_loss`` serves both tasks. Given ``candidate_ids`` and no
``candidate_sampling_probability``, the task

* in training (``training=True``): advances its frequency estimator by one step on the
  candidates' IDs (under a tf.distribute strategy once per global step, on the union of the
  replicas' IDs), then reads each candidate's sampling probability p;
* otherwise: reads p without updating;

and computes the sampling-bias-corrected in-batch softmax, ``logits / tau - log p``, averaged over
the batch (TFRS's default task sums; the mean keeps the gradient scale independent of the batch
size). ``training`` must be passed explicitly: ``tfrs.Model.train_step`` calls ``compute_loss``
outside any Keras call context, so the task cannot infer it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow_recommenders as tfrs

from yt_bias._keras import keras, tf
from yt_bias.core.frequency import FrequencySource, OracleFrequency, StreamingFrequencyEstimator
from yt_bias.core.losses import LOSS_IMPLEMENTATIONS, corrected_softmax_logits, softmax_loss
from yt_bias.source_contract import resolve_frequency

__all__ = ["CallableFrequency", "CorrectedRetrieval"]

_CUSTOM_OBJECTS = {cls.__name__: cls for cls in (StreamingFrequencyEstimator, OracleFrequency)}


class CallableFrequency(FrequencySource):
    """A read-only frequency source around a callable ``ids -> p`` (on the scale of ``estimand``).

    Args:
      read: ``read(ids [n]) -> [n]`` probabilities; never updated by training.
      estimand: the scale of what ``read`` returns (default: the default estimand).
    """

    def __init__(self, read: Callable[[tf.Tensor], tf.Tensor], **kwargs):
        super().__init__(**kwargs)
        self.read = read

    def probability(self, item_ids: tf.Tensor) -> tf.Tensor:
        return tf.convert_to_tensor(self.read(item_ids), tf.float32)

    def get_config(self) -> dict:
        raise NotImplementedError(
            "CorrectedRetrieval.get_config: a plain callable frequency source cannot be serialised; "
            "use a FrequencySource layer (StreamingFrequencyEstimator, OracleFrequency or your own subclass)."
        )


def _build_frequency(frequency) -> FrequencySource:
    """The frequency source of the ``frequency`` argument (see :class:`CorrectedRetrieval`)."""
    return resolve_frequency(
        frequency,
        estimator=StreamingFrequencyEstimator,
        source=FrequencySource,
        wrap=CallableFrequency,
        layer=keras.layers.Layer,
        deserialize=lambda config: keras.layers.deserialize(config, custom_objects=_CUSTOM_OBJECTS),
    )


def _check_training(training):
    """``training`` as given when it is a bool, 0/1 or a boolean tensor; ValueError (naming it) otherwise."""
    if isinstance(training, tf.Tensor) or isinstance(training, (bool, np.bool_)):
        return training
    if isinstance(training, (int, np.integer)) and training in (0, 1):
        return bool(training)
    raise ValueError(
        f"CorrectedRetrieval: training must be True or False (or a boolean tensor); received {training!r}. Pass the "
        "training flag of compute_loss (tfrs.Model.train_step passes training=True); omit it for inference."
    )


def _check_probability(probability: tf.Tensor) -> tf.Tensor:
    """Caller-given sampling probabilities, checked finite and >= 0 (a negative p would be clipped silently)."""
    message = "candidate_sampling_probability must be finite and >= 0"
    if tf.executing_eagerly():
        values = probability.numpy()
        bad = values[~(np.isfinite(values) & (values >= 0))]
        if bad.size:
            raise ValueError(f"{message}; received {float(bad.flat[0])!r} ({bad.size} such value(s)).")
        return probability
    checks = [tf.debugging.assert_all_finite(probability, message), tf.debugging.assert_non_negative(probability, message)]
    with tf.control_dependencies(checks[1:]):
        return tf.identity(checks[0])


class CorrectedRetrieval(tfrs.tasks.Retrieval):
    """``tfrs.tasks.Retrieval`` with a streaming frequency estimator and the logQ correction.

    Args:
      frequency: where the candidates' sampling probabilities come from:
        ``None`` (default): a :class:`~yt_bias.core.frequency.StreamingFrequencyEstimator` with
        ``hash_size=2**16`` and the estimator's defaults, owned by the task;
        a dict: the arguments of a StreamingFrequencyEstimator (``hash_size``, ``num_hashes``,
        ``alpha``, ``initial_interval``, ``bias_correction``, any other argument the estimator takes);
        a :class:`~yt_bias.core.frequency.FrequencySource` (a StreamingFrequencyEstimator, an
        :class:`~yt_bias.core.frequency.OracleFrequency` of exact probabilities, or a subclass of
        your own), updated by the task when training;
        a plain callable ``ids -> p`` ([num_candidates] float, on the default estimand's scale),
        read only (wrapped in a :class:`CallableFrequency`).
      temperature: tau; the dot products are divided by it (None: 1, as TFRS).
      remove_accidental_hits: mask in-batch negatives that carry the positive's ID.
      metrics: ``tfrs.metrics.FactorizedTopK`` metrics (or any ``tfrs.metrics.Factorized``), as TFRS.
      batch_metrics: Keras metrics of the in-batch scores (after the correction), as TFRS.
      loss_metrics: Keras metrics fed the loss, as TFRS.
      scale_by_replicas: under a tf.distribute strategy with R > 1 replicas in sync, return the
        replica's mean loss divided by R, so that the summed gradients of the replicas (what a
        distributed optimizer applies) are the gradient of the global batch mean, as a Keras loss
        with ``SUM_OVER_BATCH_SIZE`` does in ``fit``.
      loss_implementation: ``yt_bias.core.losses.softmax_loss``'s ``implementation``: "auto" (the
        blockwise loss for large or, when traced, unknown batch sizes; the dense one below),
        "dense" or "blockwise". The same loss either way.
      name: the layer's name.
    Raises:
      TypeError: a ``frequency`` of an unsupported type.
      ValueError: a temperature <= 0.

    Example:

    >>> from yt_bias.integrations.tfrs import CorrectedRetrieval
    >>> import tensorflow as tf
    >>> task = CorrectedRetrieval(temperature=0.1)  # owns a streaming estimator (H = 2^16)
    >>> query = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    >>> loss = task(query, query, candidate_ids=tf.constant(["a", "b"]), training=True)
    >>> int(task.frequency.step.numpy()), loss.shape  # one estimator step; a scalar batch mean
    (1, TensorShape([]))
    """

    def __init__(
        self,
        frequency=None,
        temperature: float | None = None,
        remove_accidental_hits: bool = False,
        metrics: Sequence[tfrs.metrics.Factorized] | tfrs.metrics.Factorized | None = None,
        batch_metrics: list[keras.metrics.Metric] | None = None,
        loss_metrics: list[keras.metrics.Metric] | None = None,
        scale_by_replicas: bool = True,
        loss_implementation: str = "auto",
        name: str | None = None,
        **kwargs,
    ):
        if temperature is not None and not (
            isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and 0 < temperature < float("inf")
        ):
            raise ValueError(f"temperature must be finite and > 0 (or None for 1); received {temperature!r}.")
        if loss_implementation not in LOSS_IMPLEMENTATIONS:
            raise ValueError(f"loss_implementation must be one of {LOSS_IMPLEMENTATIONS}; received {loss_implementation!r}.")
        unknown = set(kwargs) - {"trainable", "dtype"}  # the base Layer config keys are accepted and ignored
        if unknown:
            raise TypeError(f"CorrectedRetrieval got unexpected arguments {sorted(unknown)}.")
        super().__init__(
            metrics=metrics,
            batch_metrics=batch_metrics,
            loss_metrics=loss_metrics,
            temperature=temperature,
            remove_accidental_hits=remove_accidental_hits,
            name=name,
        )
        self.frequency = _build_frequency(frequency)
        self.scale_by_replicas = bool(scale_by_replicas)
        self.loss_implementation = loss_implementation

    def __call__(self, *args, **kwargs):
        """Checks ``training`` before Keras resolves it: True/False (or 0/1, or a boolean tensor) only.

        An explicit ``training=None`` is refused: Keras would resolve it to the call signature's
        default (False) outside ``fit``'s own call context, and the estimator would silently never
        be updated. Omitting ``training`` means inference (no update), as documented.
        """
        if "training" in kwargs:
            kwargs["training"] = _check_training(kwargs["training"])
        return super().__call__(*args, **kwargs)

    @property
    def estimand(self) -> str:
        """What p means: the frequency source's estimand (``"expected_count"`` or ``"inclusion"``)."""
        return self.frequency.estimand

    # Python control flow on Python values only (a tensor ``training`` goes through tf.cond): no AutoGraph.
    @tf.autograph.experimental.do_not_convert
    def call(
        self,
        query_embeddings: tf.Tensor,
        candidate_embeddings: tf.Tensor,
        sample_weight: tf.Tensor | None = None,
        candidate_sampling_probability: tf.Tensor | None = None,
        candidate_ids: tf.Tensor | None = None,
        compute_metrics: bool = True,
        compute_batch_metrics: bool = True,
        training: bool = False,
        score_mask: tf.Tensor | None = None,
    ) -> tf.Tensor:
        """The corrected in-batch softmax loss (mean over the queries), and the metrics' updates.

        Args:
          query_embeddings: [num_queries, dim]; row i's positive is candidate row i.
          candidate_embeddings: [num_candidates, dim], num_candidates >= num_queries (extra rows
            are extra negatives for every query).
          sample_weight: [num_queries] weights (rewards) >= 0 of the per-query losses.
          candidate_sampling_probability: [num_candidates] p given by the caller; the estimator is
            then neither updated nor read.
          candidate_ids: [num_candidates] IDs (strings or integers): the estimator's input, and
            the key of accidental hits and of ID-based FactorizedTopK metrics.
          compute_metrics: update the factorized (top-K) metrics.
          compute_batch_metrics: update the in-batch metrics.
          training: a training step: the estimator consumes ``candidate_ids`` first.
          score_mask: [num_queries, num_candidates] bool; False drops a negative for that query
            (the positive is always kept).
        Returns:
          Scalar float32 loss (divided by the number of replicas, see ``scale_by_replicas``).
        Raises:
          ValueError: neither ``candidate_ids`` nor ``candidate_sampling_probability``; mismatched
            shapes; multi-head (rank-3) query embeddings.
        """
        query_embeddings = tf.convert_to_tensor(query_embeddings)
        if query_embeddings.shape.rank == 3:
            raise ValueError(
                "CorrectedRetrieval takes query_embeddings [num_queries, dim]; received a rank-3 "
                f"(multi-head) tensor of shape {query_embeddings.shape}."
            )
        if candidate_sampling_probability is not None:
            probability = _check_probability(tf.convert_to_tensor(candidate_sampling_probability, tf.float32))
            log_q = self.frequency.log_of(probability)
        elif candidate_ids is not None:
            candidate_ids = tf.convert_to_tensor(candidate_ids)
            log_q = self.frequency.log_q(candidate_ids, update=training if isinstance(training, tf.Tensor) else bool(training))
        else:
            raise ValueError(
                "CorrectedRetrieval needs candidate_ids [num_candidates] (the estimator's input) or "
                "candidate_sampling_probability [num_candidates]; received neither."
            )
        options = dict(
            temperature=1.0 if self._temperature is None else float(self._temperature),
            log_q=log_q,
            candidate_ids=candidate_ids,
            remove_accidental_hits=self._remove_accidental_hits,
            candidate_mask=score_mask,
        )
        loss = softmax_loss(
            query_embeddings, candidate_embeddings, rewards=sample_weight, implementation=self.loss_implementation, **options
        )
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if self.scale_by_replicas and replicas > 1 and not tf.distribute.in_cross_replica_context():
            loss = loss / replicas

        update_ops = [metric.update_state(loss) for metric in self._loss_metrics]
        num_queries = tf.shape(query_embeddings)[0]
        if compute_metrics:
            for metric in self._factorized_metrics:
                update_ops.append(
                    metric.update_state(
                        query_embeddings,
                        candidate_embeddings[:num_queries],
                        true_candidate_ids=None if candidate_ids is None else candidate_ids[:num_queries],
                        sample_weight=sample_weight,
                    )
                )
        if compute_batch_metrics and self._batch_metrics:
            scores, _ = corrected_softmax_logits(query_embeddings, candidate_embeddings, **options)
            labels = tf.eye(num_queries, tf.shape(scores)[1])
            for metric in self._batch_metrics:
                update_ops.append(metric.update_state(labels, scores, sample_weight=sample_weight))
        update_ops = [op for op in update_ops if op is not None]
        with tf.control_dependencies(update_ops):
            return tf.identity(loss)

    def get_config(self) -> dict:
        """The task's arguments; the frequency layer is serialised with its own config.

        Metrics are not part of the config (a FactorizedTopK holds a candidate index): pass them
        again to ``from_config``'s result. Raises NotImplementedError for a plain-callable source.
        """
        return {
            "name": self.name,
            "frequency": keras.layers.serialize(self.frequency),
            "temperature": self._temperature,
            "remove_accidental_hits": self._remove_accidental_hits,
            "scale_by_replicas": self.scale_by_replicas,
            "loss_implementation": self.loss_implementation,
        }

    @classmethod
    def from_config(cls, config: dict) -> CorrectedRetrieval:
        return cls(**config)
