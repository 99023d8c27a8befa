"""The query and item towers: FeatureSpec-driven Keras layers (section 3 and 5 of the paper).

Each tower embeds its features (IDs and categories through embedding tables, bags of IDs as the
mean of their embeddings, dense features as given), concatenates them and runs a ReLU MLP whose
last layer is linear; the output is L2-normalised when ``normalize`` is on.
Both towers can share a :class:`SharedEmbeddings` so that one table serves, for example, the
seed video, the watch history and the candidate video.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from yt_bias._keras import keras, tf
from yt_bias.features import FeatureSpec, shared_tables


class _SpecsLayer(keras.layers.Layer):
    """A layer built from feature specs: the specs travel in its config as dicts."""

    def get_config(self) -> dict:
        return dict(super().get_config(), specs=[s.to_dict() for s in self.specs])

    @classmethod
    def from_config(cls, config: dict) -> keras.layers.Layer:
        return cls(**dict(config, specs=[FeatureSpec.from_dict(s) for s in config["specs"]]))


class SharedEmbeddings(_SpecsLayer):
    """Embedding tables by name, each with its own ID-to-row mapping.

    A table with a vocabulary maps known IDs to their own rows and unseen IDs to ``buckets``
    hashed rows (``StringLookup`` with OOV buckets); one without maps every ID by hashing.

    Args:
      specs: the embedded feature specs that use these tables (see :func:`shared_tables`).
    """

    def __init__(self, specs: Sequence[FeatureSpec], **kwargs):
        super().__init__(**kwargs)
        self.specs = tuple(specs)
        self._tables = shared_tables(self.specs)
        self._lookups = {}
        self._embeddings = {}
        for name, spec in self._tables.items():
            if spec.vocabulary:
                # A tuple, not a list: Keras wraps a list attribute in a tracked ListWrapper and walks
                # every element of it whenever it collects the model's layers or weights (several
                # times per ``fit`` call: about 2.5 s a walk at a million IDs); a tuple of strings is
                # not tracked, and the lookup, its config and its saving are the same.
                lookup = keras.layers.StringLookup(
                    vocabulary=tuple(spec.vocabulary), num_oov_indices=spec.buckets, mask_token=None, name=f"{name}_lookup"
                )
                rows = len(spec.vocabulary) + spec.buckets
            else:
                lookup = keras.layers.Hashing(num_bins=spec.buckets, name=f"{name}_hashing")
                rows = spec.buckets
            self._lookups[name] = lookup
            self._embeddings[name] = keras.layers.Embedding(rows, spec.dim, name=f"{name}_embedding")

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(self._tables)

    def lookup(self, table: str, ids: tf.Tensor) -> tf.Tensor:
        """Embeds string IDs of any shape ``[...]`` into ``[..., dim]`` with the named table."""
        if table not in self._embeddings:
            raise ValueError(f"Unknown embedding table '{table}'; known tables: {list(self._embeddings)}.")
        return self._embeddings[table](self._lookups[table](ids))

    def call(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Embeds ``{table name: IDs}`` into ``{table name: embeddings}``."""
        return {table: self.lookup(table, ids) for table, ids in inputs.items()}


class Tower(_SpecsLayer):
    """One tower: features -> concatenated embeddings -> ReLU MLP -> (L2-normalised) vector.

    Args:
      specs: the features this tower reads.
      hidden_units: MLP widths; ReLU on all but the last, which is linear and is the output width.
      normalize: L2-normalise the output (the paper does, before dividing by the temperature).
      embeddings: tables to use, possibly shared with the other tower; built from ``specs`` if None.

    Example:

    >>> from yt_bias.core.towers import Tower
    >>> from yt_bias.features import FeatureSpec
    >>> import tensorflow as tf
    >>> tower = Tower([FeatureSpec("user_id", "id", dim=8, buckets=100)], hidden_units=(16, 4))
    >>> vectors = tower({"user_id": tf.constant(["u1", "u2"])})
    >>> vectors.shape, [round(float(n), 3) for n in tf.norm(vectors, axis=1)]  # L2-normalised
    (TensorShape([2, 4]), [1.0, 1.0])
    """

    def __init__(
        self,
        specs: Sequence[FeatureSpec],
        hidden_units: Sequence[int] = (128, 64),
        normalize: bool = True,
        embeddings: SharedEmbeddings | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.specs = tuple(specs)
        if not self.specs:
            raise ValueError("Tower needs at least one feature spec.")
        self.hidden_units = tuple(int(h) for h in hidden_units)
        if any(h < 1 for h in self.hidden_units):
            raise ValueError(f"hidden_units must be positive integers; received {list(hidden_units)}.")
        self.normalize = bool(normalize)
        self.embeddings = embeddings if embeddings is not None else SharedEmbeddings(self.specs, name=f"{self.name}_tables")
        missing = [s.table_name for s in self.specs if s.is_embedded and s.table_name not in self.embeddings.table_names]
        if missing:
            raise ValueError(f"Tower '{self.name}': the shared embeddings have no table(s) {missing}.")
        self._layers = [
            keras.layers.Dense(units, activation="relu" if i < len(self.hidden_units) - 1 else None, name=f"dense_{i}")
            for i, units in enumerate(self.hidden_units)
        ]

    @property
    def output_dim(self) -> int:
        if self.hidden_units:
            return self.hidden_units[-1]
        return sum(s.width if s.kind == "dense" else s.dim for s in self.specs)

    def _feature_vector(self, spec: FeatureSpec, value: tf.Tensor) -> tf.Tensor:
        if spec.kind == "dense":
            return tf.reshape(tf.cast(value, tf.float32), [-1, spec.width])
        value = tf.convert_to_tensor(value)
        if value.dtype != tf.string:
            value = tf.strings.as_string(value)
        if spec.kind == "bag":
            value = tf.reshape(value, [-1, spec.max_len])
            vectors = self.embeddings.lookup(spec.table_name, value)  # [batch, max_len, dim]
            mask = tf.cast(tf.not_equal(value, ""), tf.float32)[..., None]
            return tf.reduce_sum(vectors * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
        return self.embeddings.lookup(spec.table_name, tf.reshape(value, [-1]))

    def call(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Maps a dict of feature tensors ``[batch, ...]`` to ``[batch, output_dim]``."""
        missing = [s.name for s in self.specs if s.name not in features]
        if missing:
            raise ValueError(f"Tower '{self.name}': missing feature(s) {missing}; received {sorted(features)}.")
        x = tf.concat([self._feature_vector(s, features[s.name]) for s in self.specs], axis=-1)
        for layer in self._layers:
            x = layer(x)
        if self.normalize:
            x = tf.math.l2_normalize(x, axis=-1)
        return x

    def get_config(self) -> dict:
        return dict(super().get_config(), hidden_units=list(self.hidden_units), normalize=self.normalize)


def build_towers(
    features, hidden_units=(128, 64), normalize: bool = True, share_embeddings: bool = True
) -> tuple[Tower, Tower]:
    """The query and item towers of a :class:`~yt_bias.features.FeatureConfig`.

    With ``share_embeddings`` both towers read one :class:`SharedEmbeddings` (tables matched by name).
    """
    shared = SharedEmbeddings(features.all, name="shared_embeddings") if share_embeddings else None
    query = Tower(features.query, hidden_units, normalize, embeddings=shared, name="query_tower")
    item = Tower(features.item, hidden_units, normalize, embeddings=shared, name="item_tower")
    return query, item
