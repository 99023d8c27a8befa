"""The item index of serving (section 5.4 of the paper): corpus embeddings in ScaNN or brute force.

The item tower runs over the whole corpus in batches (:func:`yt_bias.retrieval.embedding.embed`);
the embeddings go into a ScaNN searcher (a k-means tree of about sqrt(N) leaves, asymmetric
hashing, exact reordering, with the settings of :mod:`yt_bias.retrieval.scann`; ScaNN's brute
force below ``brute_force_below`` items) or stay a plain matrix for exact brute force.
Rebuilding the index from a newer checkpoint or a changed corpus needs no retraining: call
:func:`build_index` again with the new tower or items (the paper rebuilds every few hours).
An :class:`ItemIndex` saves to and loads from one ``.npz`` file, so the build is never repeated.

Exclusions (a user's seen items): every search takes an optional padded ``[batch, n]`` string
matrix of item IDs (``""`` = padding) that are never returned; it fetches ``k + n`` results and
drops the excluded ones, so k valid items come back whenever the corpus has k others.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from yt_bias._keras import tf
from yt_bias.config import IndexConfig, from_dict
from yt_bias.features import validate_examples
from yt_bias.retrieval.embedding import embed
from yt_bias.retrieval.scann import SCANN_HINT, SETTING_NAMES, configure_builder, import_scann_ops, scann_settings
from yt_bias.runs.reader import read_npz, tower_fingerprint

EXCLUDE = "exclude_item_ids"
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


def scann_available() -> bool:
    """True where ScaNN's TensorFlow ops import (they are not installed on every platform)."""
    try:
        import_scann_ops()
    except ImportError:
        return False
    return True


def default_index_kind() -> str:
    """``"scann"`` where ScaNN's ops import, else ``"brute_force"`` (with a warning saying why)."""
    if scann_available():
        return "scann"
    warnings.warn(
        f"ScaNN is not available here, so the index is exact brute force (stock TensorFlow ops). For ScaNN: {SCANN_HINT}.",
        UserWarning,
        stacklevel=2,
    )
    return "brute_force"


def check_k(k, num_items: int) -> int:
    """A requested result count, validated and capped at the corpus size.

    Raises:
      ValueError: ``k`` is not an integer >= 1.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1; received {k!r}.")
    return int(min(k, num_items))


def exclusion_matrix(exclude_item_ids, batch: int) -> np.ndarray:
    """Item IDs to exclude as a padded ``[batch, n]`` str matrix (``""`` = padding).

    Args:
      exclude_item_ids: one sequence of item IDs per query (ragged lists are padded), or a
        ``[batch, n]`` array of strings.
      batch: the number of queries.
    Raises:
      ValueError: not one row per query, or a row that is not a sequence of strings.
      TypeError: an ID that is not a string.
    """
    if isinstance(exclude_item_ids, (str, bytes)) or not isinstance(exclude_item_ids, (Sequence, np.ndarray)):
        raise ValueError(
            f"{EXCLUDE}: expected one sequence of item IDs per query ([batch, n]); received {type(exclude_item_ids).__name__}."
        )
    if len(exclude_item_ids) != batch:
        raise ValueError(f"{EXCLUDE}: expected {batch} row(s), one per query; received {len(exclude_item_ids)}.")
    rows = []
    for i, row in enumerate(exclude_item_ids):
        if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, np.ndarray)):
            raise ValueError(f"{EXCLUDE}[{i}]: expected a sequence of item IDs; received {row!r}.")
        values = []
        for value in np.asarray(row, dtype=object).ravel().tolist():
            if isinstance(value, bytes):
                value = value.decode()
            if not isinstance(value, str):
                raise TypeError(f"{EXCLUDE}[{i}]: expected string item IDs; received {value!r}.")
            values.append(value)
        rows.append(values)
    width = max((len(r) for r in rows), default=0)
    return np.array([r + [""] * (width - len(r)) for r in rows], dtype=str).reshape(batch, width)


def filter_excluded(ids: tf.Tensor, scores: tf.Tensor, exclude: tf.Tensor, k) -> tuple[tf.Tensor, tf.Tensor]:
    """Drops missing and excluded results, keeping the order: the first k of what is left.

    Args:
      ids: [batch, F] string results sorted by descending score, ``""`` for a missing result.
      scores: [batch, F] float32 scores (``-inf`` for a missing result).
      exclude: [batch, n] string IDs never to return (``""`` = padding).
      k: how many to keep (<= F).
    Returns:
      (ids [batch, k], scores [batch, k]); ``""`` / ``-inf`` where fewer than k are left.
    """
    excluded = tf.reduce_any(tf.equal(ids[:, :, None], exclude[:, None, :]), axis=2)
    keep = tf.logical_and(tf.not_equal(ids, ""), tf.logical_not(excluded))
    top = tf.math.top_k(tf.where(keep, scores, tf.constant(-np.inf, scores.dtype)), k=k)  # ties: lower index first
    kept = tf.gather(keep, top.indices, batch_dims=1)
    return tf.where(kept, tf.gather(ids, top.indices, batch_dims=1), ""), tf.where(kept, top.values, -np.inf)


def scann_parameters(num_items: int, config: IndexConfig) -> dict:
    """The ScaNN settings of the index for a corpus of ``num_items`` (:func:`~yt_bias.retrieval.scann.scann_settings`).

    Returns:
      ``{"mode": "brute_force", "num_items", "reorder": 0}`` below ``config.brute_force_below`` items,
      else ``{"mode": "tree_ah", "num_items", **scann_settings(...)}``.
    """
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1; received {num_items}.")
    if num_items < config.brute_force_below:
        return {"mode": "brute_force", "num_items": num_items, "reorder": 0}
    try:
        settings = scann_settings(num_items, **{name: getattr(config, name) for name in SETTING_NAMES})
    except ValueError as error:
        raise ValueError(f"IndexConfig.{error}") from None
    return {"mode": "tree_ah", "num_items": num_items, **settings}


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

    def search(self, queries: np.ndarray, k: int | None = None, exclude_item_ids=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items of each query embedding: (ids [batch, k] str, scores [batch, k] float32).

        Scores are dot products (ScaNN reorders its candidates with exact scores). Missing results
        (fewer than k found) have ID ``""`` and score ``-inf``.

        Args:
          queries: [batch, dim] query embeddings (batch may be 0).
          k: how many items per query (``config.k`` if None), capped at the corpus size.
          exclude_item_ids: per query, item IDs never to return (see :func:`exclusion_matrix`);
            the search fetches k + n and drops them, so k items remain when the corpus has them.
        Raises:
          ValueError: queries of the wrong shape, k < 1, or malformed exclusions.
        """
        queries = np.asarray(queries, np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"queries must have shape [batch, {self.embeddings.shape[1]}]; received {queries.shape}.")
        k = check_k(self.config.k if k is None else k, self.num_items)
        batch = queries.shape[0]
        exclude = np.zeros((batch, 0), str) if exclude_item_ids is None else exclusion_matrix(exclude_item_ids, batch)
        if batch == 0:
            return np.zeros((0, k), str), np.zeros((0, k), np.float32)
        fetch = min(k + exclude.shape[1], self.num_items)
        if self.scann_tensors is None:
            top = tf.math.top_k(queries @ self.embeddings.T, k=fetch)
            ids, scores = self.ids[top.indices.numpy()], top.values.numpy()
        else:
            if "scann" not in self._search_fns:
                state, parallel, reorder = self.scann_state(), self.config.parallel, int(self.parameters.get("reorder", 0))
                signature = [tf.TensorSpec([None, self.embeddings.shape[1]], tf.float32)] + [tf.TensorSpec([], tf.int32)] * 2
                self._search_fns["scann"] = tf.function(
                    lambda q, n, k: scann_top(state, q, n, parallel, reorder, k), input_signature=signature
                )
            indices, scores = self._search_fns["scann"](queries, tf.constant(fetch, tf.int32), tf.constant(k, tf.int32))
            ids, scores = lookup_ids(self.ids, indices.numpy(), scores.numpy())
        if exclude.shape[1] == 0:
            return ids, scores
        ids, scores = filter_excluded(tf.constant(ids), tf.constant(scores), tf.constant(exclude), k)
        return ids.numpy().astype(str), scores.numpy()

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


def scann_search(state, queries: tf.Tensor, k: int, parallel: bool = True, pre_reorder=-1) -> tuple[tf.Tensor, tf.Tensor]:
    """Searches ScaNN's assets inside a ``tf.function``: (indices [batch, k] int32, scores [batch, k]).

    The searcher is rebuilt from ``state`` once per traced function (the first call is slow), then
    reused: call it from a ``tf.function`` with a fixed input signature, never eagerly per query.
    ``k`` and ``pre_reorder`` (ScaNN's reordering pool; -1 = the searcher's own) may be tensors.
    """
    scann_ops = import_scann_ops()
    return scann_ops.scann_search_batched(state.recreate_handle(), queries, k, pre_reorder, -1, parallel)


def scann_top(state, queries: tf.Tensor, fetch, parallel: bool, reorder: int, k=None) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`scann_search` for ``fetch`` results (a tensor is fine), safe on an empty batch.

    Over-fetching k + n results for n exclusions widens ScaNN's reordering pool in proportion
    (``reorder * fetch / k``): the deeper ranks that replace excluded items need the same pool per
    result as the top k (2,000 clustered points, all 20 leaves searched, reorder 40, each query's
    top 45 excluded: recall@10 0.91 with n more slots, 1.00 scaled). The pool is at least ``fetch``, since ScaNN returns
    at most the pool's size. An empty batch gives [0, fetch] results instead of reaching ScaNN.

    Args:
      state: the searcher's assets (:meth:`ItemIndex.scann_state`).
      queries: [batch, dim] float32.
      fetch: how many results per query.
      parallel: ScaNN's batched parallel search.
      reorder: the configured reordering pool (0: no reordering).
      k: the results wanted before over-fetching (``fetch`` if None).
    """
    fetch = tf.cast(fetch, tf.int32)
    wanted = tf.cast(fetch if k is None else k, tf.int32)
    pre_reorder = tf.maximum(reorder * fetch // tf.maximum(wanted, 1), fetch) if reorder else tf.constant(-1, tf.int32)
    return tf.cond(
        tf.shape(queries)[0] > 0,
        lambda: tuple(scann_search(state, queries, fetch, parallel, pre_reorder)),
        lambda: (tf.zeros([0, fetch], tf.int32), tf.zeros([0, fetch], tf.float32)),
    )


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
      config: brute force or ScaNN, and ScaNN's knobs (see :func:`scann_parameters`); if None,
        the defaults with :func:`default_index_kind`.
    Raises:
      ValueError: an empty corpus, mismatched or duplicate IDs, non-finite embeddings.
      ImportError: ``kind='scann'`` where ScaNN is not installed (the message says what to install).
    """
    config = config or IndexConfig(kind=default_index_kind())
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
    builder = builder.score_brute_force() if params["mode"] == "brute_force" else configure_builder(builder, params)
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
    config = config or IndexConfig(kind=default_index_kind())
    if item_id not in items:
        raise ValueError(f"items: the item ID feature '{item_id}' is missing; present: {sorted(items)}.")
    if validate_examples(items, item_tower.specs, where="items") == 0:
        raise ValueError("items: the corpus is empty; expected at least one item to index.")
    embeddings = embed(item_tower, items, config.embed_batch_size)
    index = build_index(embeddings, np.asarray(items[item_id]).astype(str), config)
    index.tower_fingerprint = tower_fingerprint(item_tower)
    return index
