"""The ranking stage: a pCTR model trained on impressions or on the recall stage's own candidates.

Examples (``RankingConfig.examples``):

* ``"impressions"`` (no sampling): every shown item of a request is one example, label 1 if clicked
  and 0 if shown but not clicked;
* ``"candidates"``: the same shown items plus, per request, ``unshown_per_request`` items drawn
  uniformly from the retriever's top ``candidate_depth`` (the user's training items and the
  request's own slate left out) as label-0 examples: the distribution the ranker re-orders at
  serving time (the retriever's top N), with the impressions as hard negatives. Each kind of
  example has its weight (``click_weight``, ``impression_weight``, ``unshown_weight``); an unshown
  example's default weight is the inverse of its sampling rate, so that the sampled ones stand for
  every unshown candidate of the top ``candidate_depth``. An unshown candidate gets a slot drawn
  uniformly from its request's slate, so the context features carry no label.

The model reads user (query-tower) features, item features (including the item's log popularity,
``log_views`` on the synthetic data), context features of the impression (its slot and the slate
size) and, given a recall-stage model (``retrieval_score``), the recall stage's score ``<u, v>`` of
the (request, item) pair as one more dense feature, so that the ranker can refine rather than
replace the retrieval order. It embeds them with the project's :class:`~yt_bias.core.towers.Tower`
machinery (no MLP: the concatenated embeddings x0), then a DCN-v2 cross layer
(``tfrs.layers.dcn.Cross``) and a ReLU MLP to one logit.

Losses (``RankingConfig.loss``):

* ``"pointwise"``: weighted binary cross-entropy, ``P(click | user, item, context)``;
* ``"listwise"``: per request, a softmax over its examples (the click against its slate, and the
  sampled unshown candidates with ``"candidates"``), each example's weight counted in the
  partition sum (``logit + log weight``). The data's slate click model is exactly a multinomial
  logit over the shown items, which this loss fits without the slate's competitors confounding
  the target; the logit is then a utility, and ``sigmoid(logit)`` is a score, not a calibrated CTR.

Metrics: exact AUC, log loss, calibration (mean predicted against observed CTR, overall and in
equal-count bins). Baseline: the item's smoothed training CTR (popularity CTR).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import numpy as np

from yt_bias._keras import keras, tf
from yt_bias.core.towers import SharedEmbeddings, Tower
from yt_bias.data.dataset import ITEM_INDEX, RecDataset
from yt_bias.data.impressions import impression_table
from yt_bias.features import FeatureSpec
from yt_bias.ranking.recall import retrieval_scores, retrieve

LABEL = "label"
WEIGHT = "weight"
POSITION = "position"
SLATE_SIZE = "slate_size"
RETRIEVAL_SCORE = "retrieval_score"
EXAMPLE_SOURCES = ("impressions", "candidates")
LOSSES = ("pointwise", "listwise")


@dataclasses.dataclass(frozen=True)
class RankingConfig:
    """The pCTR model, its examples and its training (module docstring).

    ``retrieval_score``: read the recall stage's score as a feature (needs a retriever in
    :func:`train_ranking`; False, or no retriever, trains on user, item and context features only).
    ``examples``: ``"impressions"`` or ``"candidates"`` (the latter needs a retriever).
    ``unshown_weight``: None = ``(candidate_depth - slate) / unshown_per_request``, the inverse sampling rate.
    The defaults (candidates, listwise, with the recall score) are the variant of
    :mod:`yt_bias.experiments.ranking_ablations` best at NDCG@10 on the validation requests
    (``docs/negative_sampling.md``); ``RankingConfig(examples="impressions", loss="pointwise")`` is the
    classic pCTR model on impressions.
    """

    cross_layers: int = 1
    hidden_units: tuple[int, ...] = (64, 32)
    batch_size: int = 512
    epochs: int = 2
    learning_rate: float = 0.005
    seed: int = 0
    retrieval_score: bool = True
    examples: str = "candidates"
    loss: str = "listwise"
    candidate_depth: int = 100
    unshown_per_request: int = 10
    click_weight: float = 1.0
    impression_weight: float = 1.0
    unshown_weight: float | None = None

    def __post_init__(self) -> None:
        for field in ("batch_size", "epochs", "candidate_depth", "unshown_per_request"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RankingConfig.{field} must be an integer >= 1; received {value!r}.")
        if self.cross_layers < 0:
            raise ValueError(f"RankingConfig.cross_layers must be >= 0; received {self.cross_layers}.")
        if not self.learning_rate > 0:
            raise ValueError(f"RankingConfig.learning_rate must be > 0; received {self.learning_rate}.")
        if self.examples not in EXAMPLE_SOURCES:
            raise ValueError(f"RankingConfig.examples must be one of {EXAMPLE_SOURCES}; received {self.examples!r}.")
        if self.loss not in LOSSES:
            raise ValueError(f"RankingConfig.loss must be one of {LOSSES}; received {self.loss!r}.")
        for field in ("click_weight", "impression_weight", "unshown_weight"):
            value = getattr(self, field)
            if value is not None and not value > 0:
                raise ValueError(f"RankingConfig.{field} must be > 0; received {value!r}.")
        if self.unshown_per_request > self.candidate_depth:
            raise ValueError(
                f"RankingConfig.unshown_per_request must be <= candidate_depth ({self.candidate_depth}); "
                f"received {self.unshown_per_request}."
            )


def context_specs(max_slate: int) -> tuple[FeatureSpec, ...]:
    """The impression's context: its slot in the slate (categorical) and the slate size (dense)."""
    return (
        FeatureSpec(POSITION, "categorical", dim=4, vocabulary=tuple(str(p) for p in range(max_slate)), buckets=1),
        FeatureSpec(SLATE_SIZE, "dense", width=1),
    )


def _split_data(dataset: RecDataset, split: str) -> dict:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; received {split!r}.")
    return {"train": dataset.train, "test": dataset.test}[split]


def _features(dataset: RecDataset, data: Mapping, rows: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
    examples = {spec.name: np.asarray(data[spec.name])[rows] for spec in dataset.features.query}
    examples.update({spec.name: np.asarray(dataset.items[spec.name])[items] for spec in dataset.features.item})
    return examples


def ranking_examples(dataset: RecDataset, split: str, retriever=None) -> dict[str, np.ndarray]:
    """One row per shown item of ``split``: user, item and context features, ``label``, ``weight``
    (1), ``row`` (the request) and ``retrieval_score`` when a recall-stage ``retriever`` is given."""
    table = impression_table(dataset, split)
    data = _split_data(dataset, split)
    rows, index = table["row"], table[ITEM_INDEX]
    sizes = np.bincount(rows, minlength=len(data[ITEM_INDEX]))[rows]
    examples = _features(dataset, data, rows, index)
    examples[POSITION] = table["position"].astype(str)
    examples[SLATE_SIZE] = np.log(sizes.astype(np.float32))[:, None]
    if retriever is not None:
        examples[RETRIEVAL_SCORE] = retrieval_scores(retriever, dataset, data, rows, index)
    examples[LABEL] = table["label"]
    examples[WEIGHT] = np.ones(len(rows), np.float32)
    examples[ITEM_INDEX] = index
    examples["row"] = rows
    return examples


def candidate_examples(dataset: RecDataset, split: str, retriever, config: RankingConfig) -> dict[str, np.ndarray]:
    """The ``"candidates"`` examples of ``split`` (module docstring), sorted by request: the shown items
    (clicks weighted ``click_weight``, shown-not-clicked ``impression_weight``) and, per request,
    ``unshown_per_request`` items drawn uniformly from the retriever's top ``candidate_depth`` that
    the request did not show (label 0, weight ``unshown_weight``)."""
    if retriever is None:
        raise ValueError("RankingConfig.examples='candidates' needs the recall-stage model; expected retriever=..., received None.")
    shown = ranking_examples(dataset, split)
    data = _split_data(dataset, split)
    n = len(data[ITEM_INDEX])
    queries = {name: np.asarray(values) for name, values in data.items()}
    depth = min(config.candidate_depth, dataset.num_items)
    top = retrieve(retriever, dataset, queries, depth, exclude_seen=True)
    on_slate = np.zeros((n, dataset.num_items), bool)
    on_slate[shown["row"], shown[ITEM_INDEX]] = True
    unshown = (top >= 0) & ~np.take_along_axis(on_slate, np.maximum(top, 0), axis=1)
    rng = np.random.default_rng(config.seed)
    keys = np.where(unshown, rng.random(top.shape), -1.0)
    per = min(config.unshown_per_request, depth)
    pick = np.argsort(-keys, axis=1)[:, :per]
    chosen = np.take_along_axis(top, pick, axis=1)
    valid = np.take_along_axis(unshown, pick, axis=1)
    rows = np.repeat(np.arange(n), per)[valid.reshape(-1)]
    items = chosen.reshape(-1)[valid.reshape(-1)]
    available = unshown.sum(axis=1)
    rate = np.minimum(per, available) / np.maximum(available, 1)
    weight = np.full(len(rows), config.unshown_weight, np.float32) if config.unshown_weight else (1.0 / rate[rows]).astype(np.float32)
    slate_sizes = np.bincount(shown["row"], minlength=n)
    slots = (rng.random(len(rows)) * np.maximum(slate_sizes[rows], 1)).astype(np.int64)
    extra = _features(dataset, data, rows, items)
    extra[POSITION] = slots.astype(str)
    extra[SLATE_SIZE] = np.log(np.maximum(slate_sizes[rows], 1).astype(np.float32))[:, None]
    extra[LABEL] = np.zeros(len(rows), np.float32)
    extra[WEIGHT] = weight
    extra[ITEM_INDEX] = items
    extra["row"] = rows
    shown[WEIGHT] = np.where(shown[LABEL] > 0.5, config.click_weight, config.impression_weight).astype(np.float32)
    merged = {name: np.concatenate([shown[name], extra[name]]) for name in shown}
    order = np.argsort(merged["row"], kind="stable")
    merged = {name: values[order] for name, values in merged.items()}
    merged[RETRIEVAL_SCORE] = retrieval_scores(retriever, dataset, queries, merged["row"], merged[ITEM_INDEX])
    return merged


class RankingModel(keras.Model):
    """pCTR: features -> embeddings x0 -> ``cross_layers`` DCN cross layers -> MLP -> one logit.

    Args:
      specs: every feature the model reads (user, item and context specs).
      cross_layers: number of ``tfrs.layers.dcn.Cross`` layers (0: a plain MLP).
      hidden_units: ReLU MLP widths after the cross layers.
    """

    def __init__(self, specs: Sequence[FeatureSpec], cross_layers: int = 1, hidden_units=(64, 32), **kwargs):
        super().__init__(**kwargs)
        import tensorflow_recommenders as tfrs

        self.specs = tuple(specs)
        self.cross_layers = int(cross_layers)
        self.hidden_units = tuple(int(h) for h in hidden_units)
        tables = SharedEmbeddings(self.specs, name="ranking_embeddings")
        self.features = Tower(self.specs, hidden_units=(), normalize=False, embeddings=tables, name="features")
        self.crosses = [tfrs.layers.dcn.Cross(name=f"cross_{i}") for i in range(self.cross_layers)]
        self.mlp = [keras.layers.Dense(h, activation="relu", name=f"dense_{i}") for i, h in enumerate(self.hidden_units)]
        self.logit = keras.layers.Dense(1, name="logit")

    def call(self, inputs: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """Click logits [batch_size]."""
        x0 = self.features(inputs, training=training)
        x = x0
        for cross in self.crosses:
            x = cross(x0, x)
        for layer in self.mlp:
            x = layer(x)
        return tf.squeeze(self.logit(x), axis=-1)

    def get_config(self) -> dict:
        return {
            "specs": [s.to_dict() for s in self.specs],
            "cross_layers": self.cross_layers,
            "hidden_units": list(self.hidden_units),
        }

    @classmethod
    def from_config(cls, config: dict) -> RankingModel:
        config = dict(config)
        config["specs"] = [FeatureSpec.from_dict(s) for s in config["specs"]]
        return cls(**config)


def _dataset(examples: Mapping[str, np.ndarray], names: Sequence[str], batch_size: int, seed: int):
    inputs = {name: examples[name] for name in names}
    ds = tf.data.Dataset.from_tensor_slices((inputs, examples[LABEL].astype(np.float32), examples[WEIGHT].astype(np.float32)))
    ds = ds.shuffle(len(examples[LABEL]), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def uses_retrieval_score(model: RankingModel) -> bool:
    return any(spec.name == RETRIEVAL_SCORE for spec in model.specs)


def pointwise_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy of each example ([batch]; Keras applies the example weights and averages)."""
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, logits.dtype), logits=logits)


def listwise_loss(logits: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor, groups: tf.Tensor, num_groups) -> tf.Tensor:
    """Mean over groups (requests) of the softmax cross-entropy of the group's clicks against all its
    examples, each example counted ``weight`` times in the partition sum (``logit + log weight``);
    a group's clicks share its target mass equally. Groups without a click contribute nothing.

    Args:
      logits, labels, weights: [m] per example; groups: [m] int32 group of each example in [0, num_groups).
    """
    adjusted = logits + tf.math.log(weights)
    peak = tf.stop_gradient(tf.math.unsorted_segment_max(adjusted, groups, num_groups))
    partition = tf.math.unsorted_segment_sum(tf.exp(adjusted - tf.gather(peak, groups)), groups, num_groups)
    log_norm = tf.math.log(tf.maximum(partition, 1e-30)) + peak
    clicks = tf.math.unsorted_segment_sum(labels, groups, num_groups)
    target = labels / tf.maximum(tf.gather(clicks, groups), 1.0)
    per_group = -tf.math.unsorted_segment_sum(target * (logits - tf.gather(log_norm, groups)), groups, num_groups)
    has_click = tf.cast(clicks > 0, logits.dtype)
    return tf.reduce_sum(per_group * has_click) / tf.maximum(tf.reduce_sum(has_click), 1.0)


def _fit_listwise(model: RankingModel, examples: Mapping[str, np.ndarray], config: RankingConfig) -> list[float]:
    """Adam on :func:`listwise_loss`, whole requests per batch (about ``batch_size`` examples)."""
    names = [s.name for s in model.specs]
    rows = np.asarray(examples["row"])
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    ends = np.r_[starts[1:], len(rows)]
    per_batch = max(1, int(round(config.batch_size * len(starts) / max(len(rows), 1))))
    optimizer = keras.optimizers.Adam(config.learning_rate)
    rng = np.random.default_rng(config.seed)

    @tf.function(reduce_retracing=True)
    def step(inputs, labels, weights, groups, num_groups):
        with tf.GradientTape() as tape:
            loss = listwise_loss(model(inputs, training=True), labels, weights, groups, num_groups)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    history = []
    for _ in range(config.epochs):
        order = rng.permutation(len(starts))
        losses = []
        for b in range(0, len(order), per_batch):
            chosen = order[b : b + per_batch]
            lengths = ends[chosen] - starts[chosen]
            index = np.repeat(starts[chosen] - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(lengths.sum())
            groups = np.repeat(np.arange(len(chosen), dtype=np.int32), lengths)
            inputs = {n: tf.constant(np.asarray(examples[n])[index]) for n in names}
            loss = step(
                inputs,
                tf.constant(examples[LABEL][index].astype(np.float32)),
                tf.constant(examples[WEIGHT][index].astype(np.float32)),
                tf.constant(groups),
                tf.constant(len(chosen), tf.int32),
            )
            losses.append(float(loss))
        history.append(float(np.mean(losses)))
    return history


def train_ranking(
    dataset: RecDataset, config: RankingConfig | None = None, verbose: int = 0, retriever=None
) -> tuple[RankingModel, dict]:
    """Trains the pCTR model on the training split; returns it and ``{"train_seconds", "loss_history", "num_examples"}``.

    Args:
      retriever: the recall-stage model whose score becomes a feature (with ``config.retrieval_score``)
        and whose top candidates are the examples with ``config.examples="candidates"``.
    """
    config = config or RankingConfig()
    keras.utils.set_random_seed(config.seed)
    width = np.asarray(dataset.train["impressions"]).shape[1]
    specs = dataset.features.query + dataset.features.item + context_specs(width)
    feature_retriever = retriever if config.retrieval_score else None
    if feature_retriever is not None:
        specs = specs + (FeatureSpec(RETRIEVAL_SCORE, "dense", width=1),)
    model = RankingModel(specs, config.cross_layers, config.hidden_units)
    if config.examples == "candidates":
        examples = candidate_examples(dataset, "train", retriever, config)
    else:
        examples = ranking_examples(dataset, "train", feature_retriever)
    start = time.perf_counter()
    if config.loss == "listwise":
        losses = _fit_listwise(model, examples, config)
    else:
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=pointwise_loss)
        history = model.fit(
            _dataset(examples, [s.name for s in specs], config.batch_size, config.seed), epochs=config.epochs, verbose=verbose
        )
        losses = [float(v) for v in history.history["loss"]]
    return model, {
        "train_seconds": round(time.perf_counter() - start, 2),
        "loss_history": losses,
        "num_examples": len(examples[LABEL]),
    }


def predict_ctr(model: RankingModel, examples: Mapping[str, np.ndarray], batch_size: int = 8192) -> np.ndarray:
    """P(click) of each example row: [n] float64."""
    names = [s.name for s in model.specs]
    count = len(examples[names[0]])
    out = []
    for start in range(0, count, batch_size):
        batch = {n: tf.constant(np.asarray(examples[n])[start : start + batch_size]) for n in names}
        out.append(tf.sigmoid(model(batch, training=False)).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact ROC AUC (ties count one half), by the rank-sum (Mann-Whitney) formula."""
    labels = np.asarray(labels) > 0.5
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"auc needs both classes; received {n_pos} positives and {n_neg} negatives.")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks of ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def slate_auc(labels: np.ndarray, scores: np.ndarray, rows: np.ndarray) -> float:
    """The mean over requests (``rows``) with a click and a non-click of the AUC within the request:
    how well the model orders a slate, whatever its offset per request."""
    labels = np.asarray(labels) > 0.5
    scores = np.asarray(scores, dtype=np.float64)
    rows = np.asarray(rows)
    order = np.argsort(rows, kind="stable")
    bounds = np.flatnonzero(np.diff(rows[order])) + 1
    values = []
    for group in np.split(order, bounds):
        y, s = labels[group], scores[group]
        if y.any() and not y.all():
            pos, neg = s[y], s[~y]
            values.append(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg)))
    if not values:
        raise ValueError("slate_auc needs a request with both a click and a non-click; received none.")
    return float(np.mean(values))


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean binary cross-entropy, with p clipped to [1e-7, 1 - 1e-7]."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def calibration(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> dict:
    """Predicted against observed CTR: overall ratio, per equal-count bin, and the expected calibration error."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, bins)
    table = [{"predicted": float(p[g].mean()), "observed": float(y[g].mean()), "count": len(g)} for g in groups if len(g)]
    ece = sum(abs(r["predicted"] - r["observed"]) * r["count"] for r in table) / len(p)
    return {
        "predicted_ctr": float(p.mean()),
        "observed_ctr": float(y.mean()),
        "calibration_ratio": float(p.mean() / max(y.mean(), 1e-12)),
        "ece": float(ece),
        "bins": table,
    }


def ctr_metrics(labels: np.ndarray, probabilities: np.ndarray, rows: np.ndarray | None = None) -> dict:
    """AUC, log loss and calibration in one dict (and the slate AUC, given each example's request ``rows``)."""
    result = {"auc": auc(labels, probabilities), "log_loss": log_loss(labels, probabilities)}
    if rows is not None:
        result["slate_auc"] = slate_auc(labels, probabilities, rows)
    result.update(calibration(labels, probabilities))
    return result


def popularity_ctr(dataset: RecDataset, prior_strength: float = 20.0) -> np.ndarray:
    """The baseline: each item's training CTR, shrunk to the global CTR (Beta prior): [num_items]."""
    table = impression_table(dataset, "train")
    shows = np.bincount(table[ITEM_INDEX], minlength=dataset.num_items).astype(np.float64)
    clicks = np.bincount(table[ITEM_INDEX], weights=table["label"], minlength=dataset.num_items)
    mean = clicks.sum() / max(shows.sum(), 1.0)
    return (clicks + prior_strength * mean) / (shows + prior_strength)


def evaluate_ranking(model: RankingModel | None, dataset: RecDataset, retriever=None) -> dict:
    """Test-impression AUC, slate AUC, log loss and calibration of ``model`` (None: the popularity-CTR baseline).

    Raises:
      ValueError: the model reads the recall stage's score but no ``retriever`` is given.
    """
    if model is not None and uses_retrieval_score(model) and retriever is None:
        raise ValueError(
            f"the ranking model reads the feature '{RETRIEVAL_SCORE}'; expected the recall-stage "
            "model as retriever=..., received None."
        )
    examples = ranking_examples(dataset, "test", retriever if model is not None and uses_retrieval_score(model) else None)
    if model is None:
        predictions = popularity_ctr(dataset)[examples[ITEM_INDEX]]
    else:
        predictions = predict_ctr(model, examples)
    return ctr_metrics(examples[LABEL], predictions, examples["row"])
