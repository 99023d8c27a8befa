"""One SavedModel from raw query features to top-K items (section 5.4 of the paper).

:func:`export` stitches the trained query tower and an :class:`~yt_bias.serving.index.ItemIndex` into one
``tf.Module`` whose ``serving_default`` signature takes the query features of the config (named
inputs, one per :class:`~yt_bias.features.FeatureSpec`: string ``[batch]`` for id/categorical,
string ``[batch, max_len]`` for bags, float32 ``[batch, width]`` for dense) and returns
``item_ids`` (string ``[batch, k]``) and ``scores`` (float32 ``[batch, k]``, dot products).
``assets.extra/yt_bias.json`` holds what a user needs: the experiment config, the feature spec,
the index settings, k and the number of items.

Exclusions: a second signature, ``serving_with_exclusions``, takes the same inputs plus
``exclude_item_ids`` (string ``[batch, n]``, a user's seen item IDs, ``""`` = padding) and never
returns those items: it fetches k + n results from the index and drops them, so k valid items
come back whenever the corpus has k others (:meth:`ServingModel.query` picks the signature).

Index choice: ``scann`` (the default where ScaNN is installed; needs ScaNN's custom ops wherever
it is loaded, so stock TensorFlow Serving cannot load it) or ``brute_force`` (exact, stock
TensorFlow ops only; the default where ScaNN is not installed).
Query values that were never seen in training are not errors: an unseen ID or category falls
into the hashed out-of-vocabulary rows of its table, exactly as in training.

Dense features are clipped to the range seen in training (each column's min and max over the
training rows, recorded by the run: :mod:`yt_bias.data.ranges`; ``dense_ranges`` in the
metadata). Unclipped, a value far outside it (``activity=1e30``) overflows the tower and every
score becomes 0, an arbitrary ranking. :meth:`ServingModel.query` (and ``yt-bias query``) also
warns, naming the feature, the value and the range. Inside the signature, a non-finite dense
value, an input of the wrong width and inputs of different batch sizes fail with a message that
names the feature.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from yt_bias._keras import tf
from yt_bias.config import IndexConfig
from yt_bias.data.manifest import manifest_fingerprint
from yt_bias.features import FeatureSpec
from yt_bias.retrieval.scann import SCANN_HINT, import_scann_ops
from yt_bias.runs.reader import RUN_FILE, read_json, read_npz, restore_model, tower_fingerprint
from yt_bias.serving.index import (
    EXCLUDE,
    ItemIndex,
    check_k,
    default_index_kind,
    exclusion_matrix,
    filter_excluded,
    index_corpus,
    scann_top,
)

METADATA_FILE = os.path.join("assets.extra", "yt_bias.json")
SIGNATURE = "serving_default"
SIGNATURE_EXCLUDING = "serving_with_exclusions"


def input_signature(specs: Sequence[FeatureSpec]) -> dict[str, tf.TensorSpec]:
    """One named ``tf.TensorSpec`` per query feature, with a free batch dimension."""
    return {s.name: tf.TensorSpec((None, *s.shape), s.dtype, name=s.name) for s in specs}


class RetrievalModule(tf.Module):
    """Query tower + item index: raw query features -> (item_ids [batch, k], scores [batch, k]).

    Args:
      query_tower: the trained :class:`~yt_bias.core.towers.Tower` of the queries.
      index: the item index (ScaNN or brute force) over the corpus.
      k: how many items to return (at most the corpus size).
      dense_ranges: per dense query feature, ``{"min": [...], "max": [...]}`` (one value per
        column): its inputs are clipped to them (features without a range are not clipped).
    """

    def __init__(self, query_tower, index: ItemIndex, k: int, dense_ranges: Mapping | None = None):
        super().__init__(name="retrieval")
        self.ranges = check_dense_ranges(dense_ranges, query_tower.specs)
        self.range_bounds = {
            name: (tf.constant(r["min"], tf.float32), tf.constant(r["max"], tf.float32)) for name, r in self.ranges.items()
        }
        self.query_tower = query_tower
        self.k = check_k(k, index.num_items)
        self.num_items = index.num_items
        self.kind = index.kind
        self.parallel = bool(index.config.parallel)
        self.reorder = int(index.parameters.get("reorder", 0))
        self.item_ids = tf.Variable(index.ids.astype(str), trainable=False, name="item_ids")
        if index.kind == "scann":
            self.scann = index.scann_state()
        else:
            self.item_embeddings = tf.Variable(index.embeddings, trainable=False, name="item_embeddings")
        features = input_signature(query_tower.specs)
        if EXCLUDE in features:
            raise ValueError(f"query features: a feature may not be named '{EXCLUDE}' (the exclusions input); rename it.")
        self.serve = tf.function(self._serve, input_signature=[features])
        excluding = {**features, EXCLUDE: tf.TensorSpec((None, None), tf.string, name=EXCLUDE)}
        self.serve_excluding = tf.function(self._serve_excluding, input_signature=[excluding])

    def _top(self, query: tf.Tensor, fetch) -> tuple[tf.Tensor, tf.Tensor]:
        """The index's top ``fetch`` of each query: (ids [batch, fetch], scores), ``""`` / -inf when missing."""
        if self.kind == "scann":
            indices, scores = scann_top(self.scann, query, fetch, self.parallel, self.reorder, self.k)
            valid = tf.logical_and(indices >= 0, tf.math.is_finite(scores))  # ScaNN pads with -1 / NaN
            return tf.where(valid, tf.gather(self.item_ids, tf.maximum(indices, 0)), ""), tf.where(valid, scores, -np.inf)
        top = tf.math.top_k(tf.matmul(query, self.item_embeddings, transpose_b=True), k=fetch)
        return tf.gather(self.item_ids, top.indices), top.values

    def _inputs(self, features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The query features checked (row shape, one batch size, finite dense values) and dense ones clipped."""
        checked, first = {}, None
        for spec in self.query_tower.specs:
            value = features[spec.name]
            shape = tf.shape(value)
            checks = [
                tf.debugging.assert_equal(
                    shape[1:], tf.constant(spec.shape, tf.int32),
                    message=f"query feature '{spec.name}' ({spec.kind}): expected shape [batch, {', '.join(map(str, spec.shape))}]",
                )
            ]
            if first is None:
                first = (spec.name, shape[0])
            else:
                checks.append(
                    tf.debugging.assert_equal(
                        shape[0], first[1], message=f"query feature '{spec.name}': expected the batch size of '{first[0]}'"
                    )
                )
            with tf.control_dependencies(checks):  # the named checks run before the static shape is set
                value = tf.ensure_shape(tf.identity(value), [None, *spec.shape])
            if spec.kind == "dense":
                value = tf.debugging.assert_all_finite(value, f"query feature '{spec.name}' (dense): expected finite values")
                if spec.name in self.range_bounds:
                    value = tf.clip_by_value(value, *self.range_bounds[spec.name])
            checked[spec.name] = value
        return checked

    def _serve(self, features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        ids, scores = self._top(self.query_tower(self._inputs(features), training=False), self.k)
        return {"item_ids": tf.ensure_shape(ids, [None, self.k]), "scores": tf.ensure_shape(scores, [None, self.k])}

    def _serve_excluding(self, features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        features = dict(features)
        exclude = features.pop(EXCLUDE)
        query = self.query_tower(self._inputs(features), training=False)
        fetch = tf.minimum(self.k + tf.shape(exclude)[1], self.num_items)  # over-fetch k + n, then drop
        ids, scores = filter_excluded(*self._top(query, fetch), exclude, self.k)
        return {"item_ids": tf.ensure_shape(ids, [None, self.k]), "scores": tf.ensure_shape(scores, [None, self.k])}


def export(
    path: str, query_tower, index: ItemIndex, metadata: dict | None = None, k: int | None = None, dense_ranges: Mapping | None = None
) -> dict:
    """Writes the SavedModel (``serving_default``) and ``assets.extra/yt_bias.json``; returns the metadata.

    ``dense_ranges`` (per dense query feature, ``{"min": [...], "max": [...]}``: the training
    range) clips dense inputs inside the signature (see the module docstring).

    Raises:
      ValueError: ``path`` exists and is not empty, or an empty index.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"export path {path!r} is a file; expected a new directory.")
    if os.path.exists(path) and os.listdir(path):
        raise ValueError(f"export path {path!r} exists and is not empty; expected a new directory.")
    if index.num_items == 0:
        raise ValueError("index: the corpus is empty; expected at least one item to export.")
    module = RetrievalModule(query_tower, index, index.config.k if k is None else k, dense_ranges)
    concrete = module.serve.get_concrete_function()
    excluding = module.serve_excluding.get_concrete_function()
    warm = {s.name: tf.zeros((1, *s.shape), s.dtype) for s in query_tower.specs}
    concrete(warm)  # ScaNN: the searcher must be built once before saving
    excluding({**warm, EXCLUDE: tf.fill([1, 1], "")})
    options = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]) if index.kind == "scann" else None
    start = time.perf_counter()
    tf.saved_model.save(module, path, signatures={SIGNATURE: concrete, SIGNATURE_EXCLUDING: excluding}, options=options)
    meta = dict(metadata or {})
    meta.update(
        format="yt_bias.serving.export/1",
        signature=SIGNATURE,
        inputs=[s.to_dict() for s in query_tower.specs],
        outputs={"item_ids": "string [batch, k]", "scores": "float32 [batch, k]"},
        exclusions={"signature": SIGNATURE_EXCLUDING, "input": EXCLUDE, "shape": "string [batch, n], '' = padding"},
        k=module.k,
        num_items=index.num_items,
        index={
            "config": dataclasses.asdict(index.config),
            "parameters": index.parameters,
            "build_seconds": index.build_seconds,
            "size_bytes": index.size_bytes,
        },
        needs_scann=index.kind == "scann",
        dense_ranges=module.ranges,
    )
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    with open(os.path.join(path, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    meta["save_seconds"] = round(time.perf_counter() - start, 3)
    return meta


def load_items(path: str) -> dict[str, np.ndarray]:
    """Reads an item corpus (item feature name -> [num_items, ...] array) from an ``.npz`` file."""
    return read_npz(path, "items")


def index_from_workdir(
    workdir: str, config: IndexConfig | None = None, items: Mapping[str, np.ndarray] | None = None, checkpoint: str | None = None
):
    """Restores a trained model and indexes a corpus (the data set's by default): (model, dataset, index, config).

    Refreshing without retraining: pass a newer ``checkpoint`` or a changed ``items`` corpus.
    """
    config = config or IndexConfig(kind=default_index_kind())
    experiment, dataset, model = restore_model(workdir, checkpoint)
    corpus = dataset.items if items is None else items  # the training-time snapshot by default
    index = index_corpus(model.item_tower, corpus, dataset.features.item_id, config)
    return model, dataset, index, experiment


def export_from_workdir(
    workdir: str,
    path: str,
    config: IndexConfig | None = None,
    items: Mapping[str, np.ndarray] | None = None,
    checkpoint: str | None = None,
    index: ItemIndex | None = None,
) -> dict:
    """Exports a training workdir as one SavedModel (re-run it to refresh the index without retraining).

    Args:
      workdir: the training workdir.
      path: the new SavedModel directory.
      config: the index settings (ignored when ``index`` is given).
      items: a new corpus (added or removed items); the training data set's corpus if None.
      checkpoint: a newer checkpoint prefix; the workdir's latest if None.
      index: a prebuilt index (``yt-bias index --out``) to use instead of building one.
    Returns:
      The export's metadata, with ``index_build_seconds``, ``index_size_bytes`` and timings.
    """
    if index is None:
        model, dataset, index, experiment = index_from_workdir(workdir, config, items, checkpoint)
    else:
        experiment, dataset, model = restore_model(workdir, checkpoint)
        expected = tower_fingerprint(model.item_tower)
        if index.tower_fingerprint != expected:
            raise ValueError(
                f"index: built by another item tower (fingerprint {index.tower_fingerprint or 'none recorded'}); the item "
                f"tower of {workdir!r} has {expected}. Rebuild it: yt-bias index --workdir {workdir} --out FILE."
            )
    metadata = {"config": experiment.to_dict(), "features": dataset.features.to_dict(), "workdir": os.path.abspath(workdir)}
    record = read_json(os.path.join(workdir, RUN_FILE), "run record")
    training_data = training_data_status(record)
    if training_data is not None:
        metadata["training_data"] = training_data
        if training_data["status"] != "unchanged":
            warnings.warn(f"export of {workdir!r}: {training_data['message']}", stacklevel=2)
    return export(path, model.query_tower, index, metadata, dense_ranges=record.get("dense_ranges"))


def check_dense_ranges(ranges: Mapping | None, specs: Sequence[FeatureSpec]) -> dict[str, dict[str, list[float]]]:
    """The ranges of the dense features among ``specs``, checked: finite, min <= max, one value per column.

    Raises:
      ValueError: a range of an unknown or non-dense feature, or a malformed range (named).
    """
    dense = {s.name: s for s in specs if s.kind == "dense"}
    checked = {}
    for name, r in (ranges or {}).items():
        if name not in dense:
            raise ValueError(f"dense_ranges: {name!r} is not a dense query feature; expected one of {sorted(dense)}.")
        try:
            low, high = np.asarray(r["min"], np.float64), np.asarray(r["max"], np.float64)
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"dense_ranges[{name!r}]: expected {{'min': [...], 'max': [...]}}; received {r!r}.") from None
        width = dense[name].width
        if low.shape != (width,) or high.shape != (width,) or not (np.isfinite(low).all() and np.isfinite(high).all()) or (low > high).any():
            raise ValueError(
                f"dense_ranges[{name!r}]: expected {width} finite value(s) in min and max with min <= max; received {r!r}."
            )
        checked[name] = {"min": low.tolist(), "max": high.tolist()}
    return checked


def training_data_status(record: Mapping) -> dict | None:
    """Whether the data folder a file-trained run read still holds the same data (None for other runs).

    Compares the manifest fingerprint recorded in ``run.json`` at training time with the folder's
    ``manifest.json`` now. The export does not need the folder (it serves the run's corpus
    snapshot); the status says whether the data named in the run's record is still the data it
    was trained on.

    Returns:
      ``{"directory", "manifest_sha256" (recorded), "status", "message"}`` with status
      ``unchanged``, ``changed``, ``missing`` (folder or manifest gone) or ``unknown`` (no manifest
      was recorded).
    """
    data = record.get("data_files")
    if not isinstance(data, Mapping) or not data.get("directory"):
        return None
    directory, recorded = data["directory"], data.get("manifest_sha256")
    now = manifest_fingerprint(directory) if os.path.isdir(directory) else None
    if recorded is None:
        status, message = "unknown", f"the data folder {directory!r} had no manifest at training time; its identity is unknown."
    elif now is None:
        status, message = "missing", f"the data folder {directory!r} (or its manifest) no longer exists."
    elif now != recorded:
        status, message = "changed", (
            f"the data folder {directory!r} changed after training (manifest SHA-256 {now[:12]}... now, "
            f"{recorded[:12]}... at training); the run was trained on the earlier data."
        )
    else:
        status, message = "unchanged", f"the data folder {directory!r} is unchanged since training."
    return {"directory": directory, "manifest_sha256": recorded, "status": status, "message": message}


class ServingModel:
    """A loaded export: call :meth:`query` with raw query features, get top-K IDs and scores.

    Attributes:
      metadata: the contents of ``assets.extra/yt_bias.json``.
      specs: the query feature specs (the signature's named inputs).
      signature: the ``serving_default`` concrete function.
      excluding_signature: the ``serving_with_exclusions`` concrete function (None in exports
        written before it existed).
    """

    def __init__(self, loaded, metadata: dict):
        self.loaded = loaded
        self.metadata = metadata
        self.specs = tuple(FeatureSpec.from_dict(s) for s in metadata["inputs"])
        self.signature = loaded.signatures[metadata.get("signature", SIGNATURE)]
        excluding = metadata.get("exclusions", {}).get("signature")
        self.excluding_signature = loaded.signatures[excluding] if excluding in loaded.signatures else None

    @property
    def k(self) -> int:
        return int(self.metadata["k"])

    def check_features(self, features: Mapping[str, object]) -> dict[str, tf.Tensor]:
        """Validates raw query features and makes the signature's tensors.

        Raises:
          ValueError: an unknown or missing feature, a wrong shape, or a batch size mismatch.
          TypeError: a value that is not of the feature's type (string / float).
        """
        expected = [s.name for s in self.specs]
        unknown = sorted(set(features) - set(expected))
        if unknown:
            raise ValueError(f"query features: unknown feature(s) {unknown}; expected exactly {expected}.")
        missing = [name for name in expected if name not in features]
        if missing:
            raise ValueError(f"query features: missing feature(s) {missing}; expected exactly {expected}.")
        tensors, batch = {}, None
        for spec in self.specs:
            value = np.asarray(features[spec.name])
            if spec.kind == "dense":
                if value.dtype.kind not in "fiub":
                    raise TypeError(f"query feature '{spec.name}' (dense): expected float values; received dtype {value.dtype}.")
                value = value.astype(np.float32)
                if not np.all(np.isfinite(value)):
                    raise ValueError(f"query feature '{spec.name}' (dense): expected finite values; received NaN or infinity.")
            else:
                if value.dtype.kind not in "USO":
                    raise TypeError(f"query feature '{spec.name}' ({spec.kind}): expected strings; received dtype {value.dtype}.")
                if value.dtype.kind == "O":  # None or numbers would silently become "None" / "3"
                    flat = [v.decode() if isinstance(v, bytes) else v for v in value.ravel().tolist()]
                    bad = [v for v in flat if not isinstance(v, str)]
                    if bad:
                        raise TypeError(f"query feature '{spec.name}' ({spec.kind}): expected strings; received {bad[0]!r}.")
                    value = np.array(flat, dtype=str).reshape(value.shape)
                value = value.astype(str)
            if value.ndim == 0:
                raise ValueError(f"query feature '{spec.name}' ({spec.kind}): expected a batch of values; received a scalar.")
            if value.shape[1:] != spec.shape:
                raise ValueError(
                    f"query feature '{spec.name}' ({spec.kind}): expected shape [batch, {', '.join(map(str, spec.shape))}]".replace(
                        ", ]", "]"
                    )
                    + f"; received {list(value.shape)}."
                )
            if batch is not None and value.shape[0] != batch:
                raise ValueError(
                    f"query feature '{spec.name}': expected batch size {batch} like the others; received {value.shape[0]}."
                )
            batch = value.shape[0]
            tensors[spec.name] = tf.constant(value)
        return tensors

    def out_of_range(self, tensors: Mapping[str, tf.Tensor]) -> list[str]:
        """Dense inputs outside the training range the export clips to: one description per feature."""
        found = []
        for name, r in self.metadata.get("dense_ranges", {}).items():
            if name not in tensors:
                continue
            value = tensors[name].numpy()
            low, high = np.asarray(r["min"]), np.asarray(r["max"])
            outside = (value < low) | (value > high)
            if outside.any():
                worst = value[outside].flat[np.argmax(np.abs(value[outside]))]
                found.append(
                    f"query feature '{name}' (dense): {outside.sum()} value(s) outside the training range "
                    f"[{', '.join(f'{v:g}' for v in low)}] .. [{', '.join(f'{v:g}' for v in high)}] (e.g. {worst:g}); "
                    "clipped to it"
                )
        return found

    def query(self, features: Mapping[str, object], exclude_item_ids=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-K of a batch of raw queries: (item_ids [batch, k] str, scores [batch, k] float32).

        Dense values outside the training range are clipped to it (inside the export) and a
        warning names them.

        Args:
          features: query feature name -> [batch, ...] values.
          exclude_item_ids: per query, item IDs never to return (e.g. the user's seen items; ragged
            lists are padded with ``""``); k valid items still come back when the corpus has them.
        Raises:
          ValueError: bad features or exclusions, or exclusions on an export without that signature.
        """
        tensors = self.check_features(features)
        for message in self.out_of_range(tensors):
            warnings.warn(message, stacklevel=2)
        if exclude_item_ids is None:
            out = self.signature(**tensors)
        else:
            if self.excluding_signature is None:
                raise ValueError(f"{EXCLUDE}: this export has no '{SIGNATURE_EXCLUDING}' signature; re-export it to use exclusions.")
            batch = int(next(iter(tensors.values())).shape[0]) if tensors else 0
            exclude = exclusion_matrix(exclude_item_ids, batch)
            out = self.excluding_signature(**tensors, **{EXCLUDE: tf.constant(exclude, tf.string)})
        return out["item_ids"].numpy().astype(str), out["scores"].numpy()


def load(path: str, warmup: bool = True) -> ServingModel:
    """Loads an export in this process, registering ScaNN's ops first when the export needs them.

    Args:
      path: the SavedModel directory written by :func:`export`.
      warmup: run one query so that ScaNN's searcher is rebuilt now, not on the first request.
    Raises:
      ValueError: ``path`` is not a yt_bias export.
      ImportError: the export uses ScaNN and ScaNN is missing (the message says what to install).
    """
    meta_path = os.path.join(path, METADATA_FILE)
    if not os.path.isfile(meta_path):
        raise ValueError(f"path {path!r}: expected a yt_bias export with {METADATA_FILE}; found none.")
    with open(meta_path, encoding="utf-8") as f:
        metadata = json.load(f)
    if metadata.get("needs_scann"):
        try:
            import_scann_ops()
        except ImportError as error:
            raise ImportError(
                f"The export {path!r} uses a ScaNN index, whose TensorFlow ops are missing here. Install them: {SCANN_HINT}; "
                "or re-export with the brute-force index (yt-bias export --index-kind brute_force), which needs stock TensorFlow only."
            ) from error
    model = ServingModel(tf.saved_model.load(path), metadata)
    if warmup:
        model.signature(**model.check_features({s.name: np.zeros((1, *s.shape), np.float32 if s.kind == "dense" else "U1") for s in model.specs}))
    return model


def parse_feature_values(specs: Sequence[FeatureSpec], assignments: Sequence[str]) -> dict[str, np.ndarray]:
    """Turns ``name=value`` strings into a batch of one query (bags and dense: comma-separated values).

    Raises:
      ValueError: a malformed assignment, an unknown or repeated name, or a value of the wrong length.
    """
    by_name = {s.name: s for s in specs}
    features: dict[str, np.ndarray] = {}
    for assignment in assignments:
        if "=" not in assignment:
            raise ValueError(f"--feature expects name=value; received {assignment!r}.")
        name, text = (part.strip() for part in assignment.split("=", 1))
        if name not in by_name:
            raise ValueError(f"--feature: unknown feature {name!r}; expected one of {list(by_name)}.")
        if name in features:
            raise ValueError(f"--feature: {name!r} given twice.")
        spec = by_name[name]
        if spec.kind == "dense":
            try:
                values = [float(v) for v in text.split(",")]
            except ValueError:
                raise ValueError(
                    f"--feature {name} (dense): expected {spec.width} comma-separated floats; received {text!r}."
                ) from None
            if len(values) != spec.width:
                raise ValueError(f"--feature {name} (dense): expected {spec.width} value(s); received {len(values)}.")
            features[name] = np.asarray([values], np.float32)
        elif spec.kind == "bag":
            values = [v.strip() for v in text.split(",") if v.strip()]
            if len(values) > spec.max_len:
                raise ValueError(f"--feature {name} (bag): expected at most {spec.max_len} IDs; received {len(values)}.")
            features[name] = np.asarray([values + [""] * (spec.max_len - len(values))])
        else:
            features[name] = np.asarray([text])
    return features
