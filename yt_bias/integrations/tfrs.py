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

import inspect
from collections.abc import Sequence

import tensorflow_recommenders as tfrs

from yt_bias._keras import keras, tf
from yt_bias.core.frequency import OracleFrequency, StreamingFrequencyEstimator, update_once_per_global_step
from yt_bias.core.losses import LOSS_IMPLEMENTATIONS, corrected_softmax_logits, log_probability, softmax_loss

__all__ = ["CorrectedRetrieval"]

DEFAULT_HASH_SIZE = 1 << 16
_CUSTOM_OBJECTS = {"StreamingFrequencyEstimator": StreamingFrequencyEstimator, "OracleFrequency": OracleFrequency}


def _has_training_call(source) -> bool:
    """Whether ``source(ids, training=...)`` is the estimator's own update-and-read entry point."""
    if not isinstance(source, keras.layers.Layer):
        return False
    return "training" in inspect.signature(source.call).parameters


def _build_frequency(frequency):
    """The frequency source of the ``frequency`` argument (see :class:`CorrectedRetrieval`)."""
    if frequency is None:
        return StreamingFrequencyEstimator(DEFAULT_HASH_SIZE, name="frequency")
    if isinstance(frequency, dict):
        if "class_name" in frequency:  # a Keras-serialised layer (get_config of this task)
            return keras.layers.deserialize(frequency, custom_objects=_CUSTOM_OBJECTS)
        config = dict(frequency)
        config.setdefault("hash_size", DEFAULT_HASH_SIZE)
        config.setdefault("name", "frequency")
        return StreamingFrequencyEstimator(**config)
    if isinstance(frequency, keras.layers.Layer) or callable(frequency):
        return frequency
    raise TypeError(
        "frequency must be None, a dict of StreamingFrequencyEstimator arguments, a frequency layer "
        f"(StreamingFrequencyEstimator, OracleFrequency) or a callable ids -> p; received {type(frequency).__name__}."
    )


class CorrectedRetrieval(tfrs.tasks.Retrieval):
    """``tfrs.tasks.Retrieval`` with a streaming frequency estimator and the logQ correction.

    Args:
      frequency: where the candidates' sampling probabilities come from:
        ``None`` (default): a :class:`~yt_bias.core.frequency.StreamingFrequencyEstimator` with
        ``hash_size=2**16`` and the estimator's defaults, owned by the task;
        a dict: the arguments of a StreamingFrequencyEstimator (``hash_size``, ``num_hashes``,
        ``alpha``, ``initial_interval``, ``bias_correction``, any other argument the estimator takes);
        a frequency layer (a StreamingFrequencyEstimator, an
        :class:`~yt_bias.core.frequency.OracleFrequency` of exact probabilities, or any layer with
        ``update(ids)`` and ``probability(ids)``), updated by the task when training;
        a callable ``ids -> p`` ([num_candidates] float), read only.
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
        if temperature is not None and not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"temperature must be > 0 (or None for 1); received {temperature!r}.")
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

    @property
    def estimand(self) -> str:
        """What p means: ``"inclusion"`` (probability of being in a batch, at most 1) or ``"expected_count"``."""
        return str(getattr(self.frequency, "estimand", "inclusion"))

    def sampling_probability(self, candidate_ids: tf.Tensor, training: bool | tf.Tensor = False) -> tf.Tensor:
        """p of each candidate; with ``training`` the estimator first consumes the IDs (one global step).

        Args:
          candidate_ids: [num_candidates] strings or integers.
          training: update the estimator before reading (a Python bool or a scalar bool tensor).
        Returns:
          [num_candidates] float32 probabilities.
        """
        source = self.frequency
        if _has_training_call(source):
            if isinstance(training, tf.Tensor):
                return tf.cond(
                    training, lambda: source(candidate_ids, training=True), lambda: source(candidate_ids, training=False)
                )
            return source(candidate_ids, training=bool(training))
        if not (hasattr(source, "update") and hasattr(source, "probability")):
            return tf.convert_to_tensor(source(candidate_ids), tf.float32)

        def update_then_read():
            with tf.control_dependencies([update_once_per_global_step(source, candidate_ids)]):
                return tf.identity(source.probability(candidate_ids))

        if isinstance(training, tf.Tensor):
            return tf.cond(training, update_then_read, lambda: source.probability(candidate_ids))
        return update_then_read() if training else source.probability(candidate_ids)

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
            probability = tf.convert_to_tensor(candidate_sampling_probability, tf.float32)
        elif candidate_ids is not None:
            candidate_ids = tf.convert_to_tensor(candidate_ids)
            probability = self.sampling_probability(candidate_ids, training)
        else:
            raise ValueError(
                "CorrectedRetrieval needs candidate_ids [num_candidates] (the estimator's input) or "
                "candidate_sampling_probability [num_candidates]; received neither."
            )
        log_q = log_probability(probability, None if self.estimand == "expected_count" else 1.0)
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
        if not isinstance(self.frequency, keras.layers.Layer):
            raise NotImplementedError(
                "CorrectedRetrieval.get_config: a plain callable frequency source cannot be serialised; "
                "use a StreamingFrequencyEstimator or OracleFrequency layer."
            )
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
