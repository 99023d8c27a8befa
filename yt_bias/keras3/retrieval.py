"""A retrieval task with the streaming logQ correction for Keras 3 models (keras-rs style), any backend.

:class:`CorrectedRetrieval` has the call signature of the tf-keras drop-in
(:class:`yt_bias.integrations.tfrs.CorrectedRetrieval`), so a Keras 3 model's ``compute_loss``
reads::

    self.task = yt_bias.keras3.CorrectedRetrieval(temperature=0.05)

    def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
        query, candidates = y_pred
        return self.task(query, candidates, candidate_ids=x["movie_id"], training=training)

With ``training=True`` the task's frequency source consumes the candidates' IDs as one step and
then reads p (Keras 3's trainers carry the estimator's variable updates out of ``compute_loss``,
on JAX out of the jitted stateless step); otherwise it only reads. The loss is
:func:`yt_bias.keras3.losses.softmax_loss`: ``logits / tau - log p`` on every logit, averaged
over the batch.
"""

from __future__ import annotations

import keras

from yt_bias.config import LOSS_IMPLEMENTATIONS
from yt_bias.keras3.frequency import StreamingFrequencyEstimator
from yt_bias.keras3.losses import DEFAULT_BLOCK_SIZE, softmax_loss
from yt_bias.keras3.source import CallableFrequency, FrequencySource
from yt_bias.source_contract import resolve_frequency


def _build_frequency(frequency) -> FrequencySource:
    """The frequency source of the ``frequency`` argument (see :class:`CorrectedRetrieval`)."""
    return resolve_frequency(
        frequency,
        estimator=StreamingFrequencyEstimator,
        source=FrequencySource,
        wrap=CallableFrequency,
        layer=keras.layers.Layer,
        deserialize=keras.saving.deserialize_keras_object,
    )


@keras.saving.register_keras_serializable(package="yt_bias")
class CorrectedRetrieval(keras.layers.Layer):
    """In-batch softmax retrieval loss with a streaming frequency estimator and the logQ correction.

    Example::

        task = CorrectedRetrieval(temperature=0.05)
        loss = task(query_embeddings, candidate_embeddings, candidate_ids=ids, training=True)

    Args:
      frequency: where p comes from: ``None`` (a :class:`StreamingFrequencyEstimator` with
        ``hash_size=2**16``, owned by the task); a dict of StreamingFrequencyEstimator arguments;
        a :class:`yt_bias.keras3.source.FrequencySource` layer (StreamingFrequencyEstimator,
        :class:`OracleFrequency` or a subclass of your own), updated by the task when training; or
        a plain callable ``ids -> p`` ([num_candidates] float), read only (wrapped in a
        :class:`yt_bias.keras3.source.CallableFrequency` of the default estimand).
      temperature: tau; the dot products are divided by it (None: 1).
      remove_accidental_hits: mask in-batch negatives that carry the positive's ID.
      loss_implementation: "auto", "dense" or "blockwise" (:func:`yt_bias.keras3.losses.softmax_loss`).
      block_size: candidates per block of the blockwise loss.
      **kwargs: the base layer's arguments (``name``, ...).
    Raises:
      TypeError: a ``frequency`` of an unsupported type (a layer that is not a FrequencySource).
      ValueError: a temperature <= 0, an unknown implementation, a ``frequency`` dict with an
        argument the estimator does not take.
    """

    def __init__(
        self,
        frequency=None,
        temperature: float | None = None,
        remove_accidental_hits: bool = False,
        loss_implementation: str = "auto",
        block_size: int = DEFAULT_BLOCK_SIZE,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if temperature is not None and not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
                                            and temperature > 0):
            raise ValueError(f"temperature must be > 0 (or None for 1); received {temperature!r}.")
        if loss_implementation not in LOSS_IMPLEMENTATIONS:
            raise ValueError(f"loss_implementation must be one of {LOSS_IMPLEMENTATIONS}; received {loss_implementation!r}.")
        self.frequency = _build_frequency(frequency)
        self.temperature = temperature
        self.remove_accidental_hits = bool(remove_accidental_hits)
        self.loss_implementation = loss_implementation
        self.block_size = block_size
        self.built = True

    @property
    def estimand(self) -> str:
        """What p means (:mod:`yt_bias.estimands`): the frequency source's estimand."""
        return self.frequency.estimand

    def call(
        self,
        query_embeddings,
        candidate_embeddings,
        sample_weight=None,
        candidate_sampling_probability=None,
        candidate_ids=None,
        compute_metrics: bool = True,
        compute_batch_metrics: bool = True,
        training: bool = False,
        score_mask=None,
    ):
        """The corrected in-batch softmax loss, the mean over the queries.

        Args:
          query_embeddings: [num_queries, dim]; row i's positive is candidate row i.
          candidate_embeddings: [num_candidates, dim], num_candidates >= num_queries (extra rows
            are negatives for every query).
          sample_weight: [num_queries] rewards >= 0 weighting the per-query losses.
          candidate_sampling_probability: [num_candidates] p given by the caller; the frequency
            source is then neither updated nor read.
          candidate_ids: [num_candidates] or [num_candidates, 1] integer IDs: the source's input
            and the key of accidental hits.
          compute_metrics, compute_batch_metrics: accepted for the tf-keras signature; this task
            holds no metrics (evaluate top-K with exact scoring, e.g.
            ``keras_rs.layers.BruteForceRetrieval``).
          training: a training step (a Python bool): the source consumes ``candidate_ids`` first.
          score_mask: [num_queries, num_candidates] bool; False drops a negative for that query.
        Returns:
          Scalar float32 loss.
        Raises:
          TypeError: ``training`` that is not a Python bool (when the source is read).
          ValueError: neither ``candidate_ids`` nor ``candidate_sampling_probability``; the loss's errors.
        """
        if candidate_sampling_probability is not None:
            log_q = self.frequency.log_of(candidate_sampling_probability)
        elif candidate_ids is not None:
            if not isinstance(training, bool):
                raise TypeError(f"training must be a Python bool; received {type(training).__name__}.")
            log_q = self.frequency.log_q(candidate_ids, update=training)
        else:
            raise ValueError(
                "CorrectedRetrieval needs candidate_ids [num_candidates] (the estimator's input) or "
                "candidate_sampling_probability [num_candidates]; received neither."
            )
        return softmax_loss(
            query_embeddings,
            candidate_embeddings,
            temperature=1.0 if self.temperature is None else float(self.temperature),
            log_q=log_q,
            rewards=sample_weight,
            candidate_ids=candidate_ids,
            remove_accidental_hits=self.remove_accidental_hits,
            candidate_mask=score_mask,
            implementation=self.loss_implementation,
            block_size=self.block_size,
        )

    def get_config(self) -> dict:
        """The task's arguments, the frequency layer serialised with its own config (and state, in a .keras file)."""
        config = super().get_config()
        config.update(
            frequency=keras.saving.serialize_keras_object(self.frequency),
            temperature=self.temperature,
            remove_accidental_hits=self.remove_accidental_hits,
            loss_implementation=self.loss_implementation,
            block_size=self.block_size,
        )
        return config
