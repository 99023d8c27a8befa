"""Feature specifications: the one description that the data, the towers and serving all read.

A :class:`FeatureSpec` says how one input feature becomes a vector in a tower:

* ``id``: one string ID per example, looked up in an embedding table (section 5 of the paper:
  video ID, channel ID). With a ``vocabulary``, known IDs get their own row and unseen IDs fall
  into ``oov_buckets`` hashed rows; without one, every ID is hashed into ``buckets`` rows. An
  unseen ID never fails.
* ``bag``: a fixed-width row of string IDs padded with ``""`` (a user's recent watches, an
  item's tags); the embeddings of the non-padding IDs are averaged (all-padding gives zeros).
* ``categorical``: like ``id``, for small closed sets (a genre, an age bucket).
* ``dense``: ``width`` floats per example, used as given (standardise them in the data).

Specs naming the same ``table`` share one embedding table: the paper shares one video-ID table
between the seed video, the watch history and the candidate video.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

KINDS = ("id", "bag", "categorical", "dense")


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """How one feature enters a tower.

    Attributes:
      name: the key of the feature in an example dict.
      kind: one of ``id``, ``bag``, ``categorical``, ``dense``.
      dim: embedding width (id, bag, categorical).
      buckets: hashed rows: all rows without a vocabulary, the out-of-vocabulary rows with one.
      vocabulary: known values; each gets its own embedding row.
      table: name of the embedding table; specs with the same table share it (default: name).
      max_len: width of a bag (the padded number of IDs per example).
      width: number of floats of a dense feature.
    """

    name: str
    kind: str
    dim: int = 32
    buckets: int = 1000
    vocabulary: tuple[str, ...] | None = None
    table: str | None = None
    max_len: int = 1
    width: int = 1

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"FeatureSpec.name must be a non-empty string; received {self.name!r}.")
        if self.kind not in KINDS:
            raise ValueError(f"FeatureSpec '{self.name}': kind must be one of {KINDS}; received {self.kind!r}.")
        for field, value in (("dim", self.dim), ("buckets", self.buckets), ("max_len", self.max_len), ("width", self.width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"FeatureSpec '{self.name}': {field} must be an integer >= 1; received {value!r}.")
        if self.vocabulary is not None:
            object.__setattr__(self, "vocabulary", tuple(str(v) for v in self.vocabulary))
            if "" in self.vocabulary:
                raise ValueError(f"FeatureSpec '{self.name}': the vocabulary may not contain '' (the padding value).")
            if len(set(self.vocabulary)) != len(self.vocabulary):
                raise ValueError(f"FeatureSpec '{self.name}': the vocabulary has duplicate values.")

    @property
    def table_name(self) -> str:
        return self.table or self.name

    @property
    def is_embedded(self) -> bool:
        return self.kind != "dense"

    @property
    def shape(self) -> tuple[int, ...]:
        """The per-example shape (without the batch dimension)."""
        if self.kind == "bag":
            return (self.max_len,)
        if self.kind == "dense":
            return (self.width,)
        return ()

    @property
    def dtype(self) -> str:
        return "float32" if self.kind == "dense" else "string"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        data = dict(data)
        if data.get("vocabulary") is not None:
            data["vocabulary"] = tuple(data["vocabulary"])
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """The features of both towers and which item feature is the item ID.

    Attributes:
      query: the specs the query tower reads.
      item: the specs the item tower reads.
      item_id: the name of the item feature that identifies an item (hashed by the estimator,
        compared for accidental hits, returned by serving).
    """

    query: tuple[FeatureSpec, ...]
    item: tuple[FeatureSpec, ...]
    item_id: str = "item_id"

    def __post_init__(self) -> None:
        object.__setattr__(self, "query", tuple(self.query))
        object.__setattr__(self, "item", tuple(self.item))
        if not self.query or not self.item:
            raise ValueError("FeatureConfig needs at least one query feature and one item feature.")
        names = [s.name for s in self.query + self.item]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"FeatureConfig: feature names must be unique across towers; repeated: {duplicates}.")
        if self.item_id not in {s.name for s in self.item}:
            raise ValueError(
                f"FeatureConfig: item_id '{self.item_id}' is not among the item features {[s.name for s in self.item]}."
            )
        table_specs = shared_tables(self.query + self.item)
        del table_specs  # validated there

    @property
    def all(self) -> tuple[FeatureSpec, ...]:
        return self.query + self.item

    def to_dict(self) -> dict:
        return {"query": [s.to_dict() for s in self.query], "item": [s.to_dict() for s in self.item], "item_id": self.item_id}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureConfig:
        return cls(
            query=tuple(FeatureSpec.from_dict(s) for s in data["query"]),
            item=tuple(FeatureSpec.from_dict(s) for s in data["item"]),
            item_id=data.get("item_id", "item_id"),
        )


def shared_tables(specs: Iterable[FeatureSpec]) -> dict[str, FeatureSpec]:
    """Groups embedded specs by table and checks that the specs of one table agree.

    Returns:
      table name -> the spec that defines the table (dim, buckets, vocabulary).
    Raises:
      ValueError: two specs of one table disagree on dim, buckets or vocabulary.
    """
    tables: dict[str, FeatureSpec] = {}
    for spec in specs:
        if not spec.is_embedded:
            continue
        first = tables.setdefault(spec.table_name, spec)
        for field in ("dim", "buckets", "vocabulary"):
            if getattr(first, field) != getattr(spec, field):
                raise ValueError(
                    f"Features '{first.name}' and '{spec.name}' share table '{spec.table_name}' but differ in {field}: "
                    f"{getattr(first, field)!r} vs {getattr(spec, field)!r}."
                )
    return tables


def validate_examples(examples: dict, specs: Sequence[FeatureSpec], where: str = "examples") -> int:
    """Checks that a dict of numpy arrays holds every feature of ``specs`` with the right shape.

    Returns:
      The number of examples.
    Raises:
      ValueError: a missing feature, a wrong shape, a row count mismatch or a non-finite dense value.
    """
    count = None
    for spec in specs:
        if spec.name not in examples:
            raise ValueError(f"{where}: feature '{spec.name}' is missing; present: {sorted(examples)}.")
        value = np.asarray(examples[spec.name])
        expected = spec.shape
        if value.shape[1:] != expected:
            raise ValueError(
                f"{where}: feature '{spec.name}' ({spec.kind}) must have per-example shape {expected}; received {value.shape[1:]}."
            )
        if spec.kind == "dense" and not np.all(np.isfinite(value.astype(np.float64))):
            raise ValueError(f"{where}: dense feature '{spec.name}' has NaN or infinite values.")
        if count is None:
            count = value.shape[0]
        elif value.shape[0] != count:
            raise ValueError(f"{where}: feature '{spec.name}' has {value.shape[0]} rows; expected {count}.")
    return int(count or 0)
