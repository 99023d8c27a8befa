"""The ranking stage: a pCTR model trained on impressions.

No sampling: every shown item of a request is one example, label 1 if clicked and 0 if shown
but not clicked. The model reads user (query-tower) features, item features (including the item's
log popularity, ``log_views`` on the synthetic data), context features of the impression (its slot
and the slate size) and, given a recall-stage model (standard industry practice), the recall
stage's score ``<u, v>`` of the (request, item) pair as one more dense feature, so that the ranker
refines rather than replaces the retrieval order. It embeds them with the project's
:class:`~yt_bias.core.towers.Tower` machinery (no MLP: the concatenated embeddings x0), then a DCN-v2
cross layer (``tfrs.layers.dcn.Cross``) and a ReLU MLP to one logit: ``P(click | user, item, context)``.
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
from yt_bias.retrieval.embedding import embed
from yt_bias.features import FeatureSpec

LABEL = "label"
POSITION = "position"
SLATE_SIZE = "slate_size"
RETRIEVAL_SCORE = "retrieval_score"


@dataclasses.dataclass(frozen=True)
class RankingConfig:
    """The pCTR model and its training.

    ``retrieval_score``: read the recall stage's score as a feature (needs a retriever in
    :func:`train_ranking`; False, or no retriever, trains on user, item and context features only).
    """

    cross_layers: int = 1
    hidden_units: tuple[int, ...] = (64, 32)
    batch_size: int = 512
    epochs: int = 2
    learning_rate: float = 0.005
    seed: int = 0
    retrieval_score: bool = True

    def __post_init__(self) -> None:
        for field in ("batch_size", "epochs"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RankingConfig.{field} must be an integer >= 1; received {value!r}.")
        if self.cross_layers < 0:
            raise ValueError(f"RankingConfig.cross_layers must be >= 0; received {self.cross_layers}.")
        if not self.learning_rate > 0:
            raise ValueError(f"RankingConfig.learning_rate must be > 0; received {self.learning_rate}.")


def context_specs(max_slate: int) -> tuple[FeatureSpec, ...]:
    """The impression's context: its slot in the slate (categorical) and the slate size (dense)."""
    return (
        FeatureSpec(POSITION, "categorical", dim=4, vocabulary=tuple(str(p) for p in range(max_slate)), buckets=1),
        FeatureSpec(SLATE_SIZE, "dense", width=1),
    )


def retrieval_scores(
    retriever, dataset: RecDataset, queries: Mapping[str, np.ndarray], rows: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """The recall stage's score ``<u, v>`` (towers' outputs, before the temperature) of each
    (query row, item) pair: [n, 1] float32."""
    q = embed(retriever.query_tower, queries)
    v = embed(retriever.item_tower, dataset.items)
    return np.einsum("nd,nd->n", q[rows], v[items]).astype(np.float32)[:, None]


def ranking_examples(dataset: RecDataset, split: str, retriever=None) -> dict[str, np.ndarray]:
    """One row per shown item of ``split``: user, item and context features and ``label`` (plus
    ``retrieval_score`` when a recall-stage ``retriever`` is given)."""
    table = impression_table(dataset, split)
    data = {"train": dataset.train, "test": dataset.test}[split]
    rows, index = table["row"], table[ITEM_INDEX]
    sizes = np.bincount(rows, minlength=len(data[ITEM_INDEX]))[rows]
    examples = {spec.name: np.asarray(data[spec.name])[rows] for spec in dataset.features.query}
    examples.update({spec.name: np.asarray(dataset.items[spec.name])[index] for spec in dataset.features.item})
    examples[POSITION] = table["position"].astype(str)
    examples[SLATE_SIZE] = np.log(sizes.astype(np.float32))[:, None]
    if retriever is not None:
        examples[RETRIEVAL_SCORE] = retrieval_scores(retriever, dataset, data, rows, index)
    examples[LABEL] = table["label"]
    examples[ITEM_INDEX] = index
    examples["row"] = rows
    return examples


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


def _dataset(examples: Mapping[str, np.ndarray], names: Sequence[str], batch_size: int, shuffle: bool, seed: int):
    inputs = {name: examples[name] for name in names}
    ds = tf.data.Dataset.from_tensor_slices((inputs, examples[LABEL].astype(np.float32)))
    if shuffle:
        ds = ds.shuffle(len(examples[LABEL]), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def uses_retrieval_score(model: RankingModel) -> bool:
    return any(spec.name == RETRIEVAL_SCORE for spec in model.specs)


def train_ranking(
    dataset: RecDataset, config: RankingConfig | None = None, verbose: int = 0, retriever=None
) -> tuple[RankingModel, dict]:
    """Trains the pCTR model on the training impressions; returns it and ``{"train_seconds", "loss_history"}``.

    Args:
      retriever: the recall-stage model whose score becomes a feature (with ``config.retrieval_score``).
    """
    config = config or RankingConfig()
    keras.utils.set_random_seed(config.seed)
    width = np.asarray(dataset.train["impressions"]).shape[1]
    specs = dataset.features.query + dataset.features.item + context_specs(width)
    retriever = retriever if config.retrieval_score else None
    if retriever is not None:
        specs = specs + (FeatureSpec(RETRIEVAL_SCORE, "dense", width=1),)
    model = RankingModel(specs, config.cross_layers, config.hidden_units)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    examples = ranking_examples(dataset, "train", retriever)
    start = time.perf_counter()
    history = model.fit(
        _dataset(examples, [s.name for s in specs], config.batch_size, True, config.seed), epochs=config.epochs, verbose=verbose
    )
    return model, {
        "train_seconds": round(time.perf_counter() - start, 2),
        "loss_history": [float(v) for v in history.history["loss"]],
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


def ctr_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """AUC, log loss and calibration in one dict."""
    result = {"auc": auc(labels, probabilities), "log_loss": log_loss(labels, probabilities)}
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
    """Test-impression AUC, log loss and calibration of ``model`` (None: the popularity-CTR baseline).

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
    return ctr_metrics(examples[LABEL], predictions)
