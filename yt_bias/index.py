"""The item index of serving (section 5.4 of the paper): corpus embeddings in ScaNN or brute force.

The item tower runs over the whole corpus in batches (tf.data); the embeddings go into a ScaNN
searcher (a k-means tree of about sqrt(N) leaves, asymmetric hashing, exact reordering; ScaNN's
brute force below ``brute_force_below`` items) or stay a plain matrix for exact brute force.
Rebuilding the index from a newer checkpoint or a changed corpus needs no retraining: call
:func:`build_index` again with the new tower or items (the paper rebuilds every few hours).
An :class:`ItemIndex` saves to and loads from one ``.npz`` file, so the build is never repeated.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping

import numpy as np

from yt_bias._keras import tf
from yt_bias.config import IndexConfig
from yt_bias.features import validate_examples

SCANN_HINT = "pip install scann==1.4.2 (it needs tensorflow 2.20.*)"
_SCANN_TENSORS = (
    "scann_config",
    "serialized_partitioner",
    "datapoint_to_token",
    "ah_codebook",
    "hashed_dataset",
    "int8_dataset",
    "int8_multipliers",
    "dp_norms",
    "dataset",
)


def import_scann_ops():
    """Imports ScaNN's TensorFlow ops (registers the ``Scann>*`` op types) or says what to install.

    Raises:
      ImportError: ScaNN is not installed or its ops do not load against this TensorFlow.
    """
    try:
        from scann.scann_ops.py import scann_ops
    except Exception as error:  # a missing package, or ops built for another TensorFlow
        raise ImportError(
            f"This needs ScaNN's TensorFlow ops, which failed to import ({error}). Install them: {SCANN_HINT}."
        ) from error
    return scann_ops


def embed_corpus(item_tower, items: Mapping[str, np.ndarray], batch_size: int = 8192) -> np.ndarray:
    """Runs the item tower over every item in batches (tf.data): [num_items, dim] float32.

    Args:
      item_tower: a :class:`~yt_bias.towers.Tower` whose ``specs`` name the item features.
      items: item feature name -> [num_items, ...] array.
    Raises:
      ValueError: an item feature is missing or malformed, or the corpus is empty.
    """
    count = validate_examples(items, item_tower.specs, where="items")
    if count == 0:
        raise ValueError("items: the corpus is empty; expected at least one item to index.")
    features = {spec.name: np.asarray(items[spec.name]) for spec in item_tower.specs}
    for spec in item_tower.specs:
        if spec.kind != "dense" and features[spec.name].dtype.kind != "U":
            features[spec.name] = features[spec.name].astype(str)
    data = tf.data.Dataset.from_tensor_slices(features).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    embed = tf.function(lambda batch: item_tower(batch, training=False))
    return np.concatenate([embed(batch).numpy() for batch in data], axis=0).astype(np.float32)


def scann_parameters(num_items: int, config: IndexConfig) -> dict:
    """The ScaNN settings for a corpus of ``num_items``, with the automatic (0) values resolved.

    Returns:
      ``{"mode": "tree_ah" | "brute_force", "num_leaves", "num_leaves_to_search", "reorder", ...}``.
    """
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1; received {num_items}.")
    reorder = min(config.reorder, num_items) if config.reorder else 0
    if num_items < config.brute_force_below:
        return {"mode": "brute_force", "num_items": num_items, "reorder": 0}
    leaves = config.num_leaves or max(1, round(math.sqrt(num_items)))
    leaves = min(leaves, num_items)
    to_search = config.num_leaves_to_search or max(1, math.ceil(leaves / 10))
    if to_search > leaves:
        raise ValueError(f"IndexConfig.num_leaves_to_search must be <= num_leaves ({leaves}); received {to_search}.")
    return {
        "mode": "tree_ah",
        "num_items": num_items,
        "num_leaves": leaves,
        "num_leaves_to_search": to_search,
        "training_sample_size": min(config.training_sample_size, num_items),
        "dimensions_per_block": config.dimensions_per_block,
        "anisotropic_quantization_threshold": config.anisotropic_quantization_threshold,
        "reorder": reorder,
    }


@dataclasses.dataclass
class ItemIndex:
    """A searchable corpus: item IDs, their embeddings and (for ScaNN) the serialised searcher.

    Attributes:
      ids: [num_items] str, row j is the ID of embedding j.
      embeddings: [num_items, dim] float32 (kept for brute force, reordering checks and refreshes).
      config: the :class:`IndexConfig` it was built with.
      parameters: the resolved ScaNN settings (:func:`scann_parameters`), empty for brute force.
      scann_tensors: ScaNN's serialised searcher (``scann_to_tensors``), None for brute force.
      build_seconds: wall time of the build (embedding excluded).
      tower_fingerprint: a hash of the item tower that embedded the corpus (None: unknown).
    """

    ids: np.ndarray
    embeddings: np.ndarray
    config: IndexConfig
    parameters: dict
    scann_tensors: dict | None
    build_seconds: float
    tower_fingerprint: str | None = None
    _state: object = dataclasses.field(default=None, repr=False)
    _search_fns: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def num_items(self) -> int:
        return len(self.ids)

    @property
    def size_bytes(self) -> int:
        """Bytes of what serving holds: the ScaNN tensors (or the embedding matrix) plus the IDs."""
        ids = int(sum(len(i.encode()) for i in self.ids.tolist()))
        if self.scann_tensors is None:
            return int(self.embeddings.nbytes) + ids
        return (
            int(sum(np.asarray(t).nbytes if np.asarray(t).dtype != object else len(t) for t in self.scann_tensors.values())) + ids
        )

    def scann_state(self):
        """ScaNN's searcher assets as a trackable ``tf.Module`` (what a SavedModel stores)."""
        if self.scann_tensors is None:
            raise ValueError(f"IndexConfig.kind is {self.kind!r}; only a 'scann' index has a ScaNN searcher.")
        if self._state is None:
            scann_ops = import_scann_ops()
            self._state = scann_ops.ScannState([self.scann_tensors[name] for name in _SCANN_TENSORS])
        return self._state

    def search(self, queries: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items of each query embedding: (ids [batch, k] str, scores [batch, k] float32).

        Scores are dot products (ScaNN reorders its candidates with exact scores). Missing results
        (fewer than k found) have ID ``""`` and score ``-inf``.
        """
        queries = np.asarray(queries, np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"queries must have shape [batch, {self.embeddings.shape[1]}]; received {queries.shape}.")
        k = min(k or self.config.k, self.num_items)
        if self.scann_tensors is None:
            top = tf.math.top_k(queries @ self.embeddings.T, k=k)
            return self.ids[top.indices.numpy()], top.values.numpy()
        if k not in self._search_fns:
            state, parallel = self.scann_state(), self.config.parallel
            signature = [tf.TensorSpec([None, self.embeddings.shape[1]], tf.float32)]
            self._search_fns[k] = tf.function(lambda q: scann_search(state, q, k, parallel), input_signature=signature)
        indices, scores = self._search_fns[k](queries)
        return lookup_ids(self.ids, indices.numpy(), scores.numpy())

    def save(self, path: str) -> None:
        """Writes the whole index (IDs, embeddings, ScaNN tensors, config) to one ``.npz`` file."""
        arrays = {"ids": self.ids.astype(str), "embeddings": self.embeddings}
        meta = {"config": dataclasses.asdict(self.config), "parameters": self.parameters, "build_seconds": self.build_seconds,
                "tower_fingerprint": self.tower_fingerprint}
        arrays["meta"] = np.array(json.dumps(meta))
        for name, value in (self.scann_tensors or {}).items():
            value = np.asarray(value)
            if value.dtype == object:  # serialised protos: [1] bytes, kept byte-exact as uint8
                if value.shape != (1,):
                    raise ValueError(f"ScaNN tensor '{name}': expected one serialised string; received shape {value.shape}.")
                arrays[f"scann_bytes/{name}"] = np.frombuffer(value[0], np.uint8)
            else:
                arrays[f"scann/{name}"] = value
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str) -> ItemIndex:
        """Reads an index written by :meth:`save`.

        Raises:
          ValueError: the file is missing, not an npz archive, damaged, or not an index.
        """
        from yt_bias.config import from_dict
        from yt_bias.run_directory import read_npz

        data = read_npz(path, "index")
        missing = [name for name in ("ids", "embeddings", "meta") if name not in data]
        if missing:
            raise ValueError(f"index: {path!r} is not an ItemIndex file (yt-bias index --out); arrays {missing} are missing.")
        meta = json.loads(str(data["meta"]))
        tensors = {n[len("scann/") :]: data[n] for n in data if n.startswith("scann/")}
        for n in data:
            if n.startswith("scann_bytes/"):
                tensors[n[len("scann_bytes/") :]] = np.array([data[n].tobytes()], dtype=object)
        return cls(
            data["ids"].astype(str),
            data["embeddings"],
            from_dict(meta["config"], IndexConfig),
            meta["parameters"],
            tensors or None,
            float(meta["build_seconds"]),
            meta.get("tower_fingerprint"),
        )


def scann_search(state, queries: tf.Tensor, k: int, parallel: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """Searches ScaNN's assets inside a ``tf.function``: (indices [batch, k] int32, scores [batch, k]).

    The searcher is rebuilt from ``state`` once per traced function (the first call is slow), then
    reused: call it from a ``tf.function`` with a fixed input signature, never eagerly per query.
    """
    scann_ops = import_scann_ops()
    return scann_ops.scann_search_batched(state.recreate_handle(), queries, k, -1, -1, parallel)


def lookup_ids(ids: np.ndarray, indices: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maps ScaNN's row indices to item IDs; its padding (-1 or NaN) becomes ``""`` and ``-inf``."""
    valid = (indices >= 0) & np.isfinite(scores)
    safe = np.where(valid, indices, 0)
    return np.where(valid, ids[safe], ""), np.where(valid, scores, -np.inf).astype(np.float32)


def build_index(embeddings: np.ndarray, ids, config: IndexConfig | None = None) -> ItemIndex:
    """Builds the serving index over item embeddings.

    Args:
      embeddings: [num_items, dim] float32, row j is item ``ids[j]``.
      ids: [num_items] item IDs (unique, non-empty strings).
      config: brute force or ScaNN, and ScaNN's knobs (see :func:`scann_parameters`).
    Raises:
      ValueError: an empty corpus, mismatched or duplicate IDs, non-finite embeddings.
      ImportError: ``kind='scann'`` where ScaNN is not installed (the message says what to install).
    """
    config = config or IndexConfig()
    embeddings = np.ascontiguousarray(np.asarray(embeddings, np.float32))
    ids = np.asarray(ids).astype(str)
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ValueError(
            f"embeddings: expected a non-empty [num_items, dim] matrix (the corpus is empty?); received shape {embeddings.shape}."
        )
    if ids.shape != (embeddings.shape[0],):
        raise ValueError(f"ids: expected shape ({embeddings.shape[0]},), one ID per embedding row; received {ids.shape}.")
    if len(np.unique(ids)) != len(ids) or np.any(ids == ""):
        raise ValueError("ids: item IDs must be unique and non-empty; received duplicates or ''.")
    if not np.all(np.isfinite(embeddings)):
        raise ValueError("embeddings: expected finite values; received NaN or infinity.")
    start = time.perf_counter()
    if config.kind == "brute_force":
        return ItemIndex(ids, embeddings, config, {}, None, round(time.perf_counter() - start, 3))
    scann_ops = import_scann_ops()
    params = scann_parameters(len(ids), config)
    k = min(config.k, len(ids))
    builder = scann_ops.builder(embeddings, k, "dot_product").set_n_training_threads(config.training_threads)
    if params["mode"] == "brute_force":
        builder = builder.score_brute_force()
    else:
        builder = builder.tree(
            num_leaves=params["num_leaves"],
            num_leaves_to_search=params["num_leaves_to_search"],
            training_sample_size=params["training_sample_size"],
        ).score_ah(
            params["dimensions_per_block"], anisotropic_quantization_threshold=params["anisotropic_quantization_threshold"]
        )
        if params["reorder"]:
            builder = builder.reorder(params["reorder"])
    searcher = builder.build()
    tensors = dict(zip(_SCANN_TENSORS, [t.numpy() for t in scann_ops.scann_to_tensors(searcher.searcher_handle)]))
    seconds = round(time.perf_counter() - start, 3)
    return ItemIndex(ids, embeddings, config, params, tensors, seconds)


def index_corpus(item_tower, items: Mapping[str, np.ndarray], item_id: str, config: IndexConfig | None = None) -> ItemIndex:
    """Embeds the corpus with the item tower and builds the index over it (section 5.4).

    Args:
      item_tower: the trained item tower.
      items: item feature name -> [num_items, ...] array; ``items[item_id]`` are the IDs served.
      item_id: the name of the item ID feature (``FeatureConfig.item_id``).
    """
    from yt_bias.run_directory import tower_fingerprint

    config = config or IndexConfig()
    if item_id not in items:
        raise ValueError(f"items: the item ID feature '{item_id}' is missing; present: {sorted(items)}.")
    embeddings = embed_corpus(item_tower, items, config.embed_batch_size)
    index = build_index(embeddings, np.asarray(items[item_id]).astype(str), config)
    index.tower_fingerprint = tower_fingerprint(item_tower)
    return index
