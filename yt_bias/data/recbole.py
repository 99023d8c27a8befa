"""RecBole atomic files (``.inter``, ``.item``, ``.user``): the format many public data sets ship in.

Each file is tab-separated with a header of ``name:type`` fields, type one of ``token``,
``token_seq`` (space-separated tokens), ``float`` or ``float_seq``. The directory holds
``NAME.inter`` and optionally ``NAME.item`` and ``NAME.user`` (RecBole's layout; NAME is the
directory's name, or the only ``.inter`` file's stem).

Fields (RecBole's default names): ``.inter`` needs ``user_id`` and ``item_id``; ``rating`` and
``timestamp`` are used when present (without ``rating`` every interaction has r = 1; without
``timestamp`` only ``split='random'`` is possible). Other fields become features:

* ``.item``: ``token`` -> categorical; ``token_seq`` -> bag (over its vocabulary; a field whose
  name contains "title" -> lower-cased word tokens, hashed); ``float`` -> dense, standardised
  (an empty value becomes the mean, i.e. 0); ``float_seq`` is not used.
* ``.user``: the same, on the query side (demographics).

Items of ``.inter`` missing from ``.item`` join the corpus with empty features (counted in
``dataset.truth['items_without_metadata']``).
"""

from __future__ import annotations

import glob
import os

import numpy as np

from yt_bias.data.dataset import RecDataset
from yt_bias.data import splits
from yt_bias.features import FeatureSpec

TYPES = ("token", "token_seq", "float", "float_seq")
MAX_BAG = 16
_RESERVED = {"user_id", "history", "item_id"}


def _header(path: str, fields: list[str]) -> list[tuple[str, str]]:
    columns = []
    for position, field in enumerate(fields, start=1):
        if ":" not in field:
            raise ValueError(f"{path}:1: header field {position} must look like name:type; received {field!r}.")
        name, kind = field.rsplit(":", 1)
        if kind not in TYPES:
            raise ValueError(f"{path}:1: field '{name}' has type {kind!r}; expected one of {TYPES}.")
        columns.append((name, kind))
    return columns


def read_atomic(path: str) -> tuple[list[tuple[str, str]], list[tuple[int, list[str]]]]:
    """The (name, type) columns and the (line, fields) rows of one atomic file."""
    rows = list(splits.read_rows(path, "\t", encoding="utf-8"))
    if not rows or rows[0][0] != 1:
        raise ValueError(f"{path}:1: the header line (name:type fields) is missing.")
    columns = _header(path, rows[0][1])
    for line, fields in rows[1:]:
        if len(fields) != len(columns):
            raise ValueError(
                f"{path}:{line}: expected {len(columns)} tab-separated fields (as the header); received {len(fields)}."
            )
    return columns, rows[1:]


def find_files(path: str) -> dict[str, str]:
    """``{'inter': ..., 'item': ..., 'user': ...}`` paths of the atomic files in a directory."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"data.path {path!r} is not a directory; expected one with NAME.inter.")
    stem = os.path.basename(os.path.normpath(path))
    for suffix in ("inter", "item", "user"):
        for candidate in glob.glob(os.path.join(path, f"*.{suffix}")):
            if os.path.isdir(candidate):
                raise ValueError(f"{candidate} is a directory; expected a RecBole atomic file (tab-separated text).")
    if not os.path.isfile(os.path.join(path, f"{stem}.inter")):
        inters = sorted(glob.glob(os.path.join(path, "*.inter")))
        if len(inters) != 1:
            raise FileNotFoundError(f"{path}: expected {stem}.inter or exactly one *.inter file; found {inters}.")
        stem = os.path.splitext(os.path.basename(inters[0]))[0]
    found = {}
    for suffix in ("inter", "item", "user"):
        full = os.path.join(path, f"{stem}.{suffix}")
        if os.path.isfile(full):
            found[suffix] = full
    return found


def _features(path: str, columns, rows, key: str, prefix: str) -> tuple[np.ndarray, dict, tuple]:
    """Keys [n] and feature arrays/specs of the non-key columns of an .item or .user file."""
    names = [c[0] for c in columns]
    if key not in names:
        raise ValueError(f"{path}:1: the header has no '{key}' field; received {names}.")
    key_at = names.index(key)
    keys = [splits.require_id(fields[key_at], path, line, key) for line, fields in rows]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{path}: '{key}' values must be unique (one line per {prefix}); found duplicates.")
    arrays, specs = {}, []
    for at, (name, kind) in enumerate(columns):
        if at == key_at or kind == "float_seq":
            continue
        feature = name if name not in _RESERVED else f"{prefix}_{name}"
        values = [fields[at] for _, fields in rows]
        if kind == "token":
            arrays[feature] = np.asarray([v.strip() for v in values], dtype=str)
            specs.append(splits.categorical_spec(feature, arrays[feature]))
        elif kind == "token_seq" and "title" in name.lower():
            arrays[feature] = splits.pad_bags([splits.title_tokens(v) for v in values], splits.TITLE_TOKENS)
            specs.append(splits.bag_spec(feature, arrays[feature], hashed_buckets=splits.TITLE_BUCKETS))
        elif kind == "token_seq":
            bags = [v.split() for v in values]
            arrays[feature] = splits.pad_bags(bags, min(MAX_BAG, max([len(b) for b in bags] + [1])))
            specs.append(splits.bag_spec(feature, arrays[feature]))
        else:  # float
            numbers = np.array(
                [
                    np.nan if not v.strip() else splits.parse_number(v, path, line, name)
                    for (line, _), v in zip(rows, values)
                ]
            )
            known = numbers[np.isfinite(numbers)]
            mean, std = (known.mean(), known.std()) if len(known) else (0.0, 1.0)
            standard = (numbers - mean) / (std if std > 0 else 1.0)
            arrays[feature] = np.nan_to_num(standard, nan=0.0).astype(np.float32)[:, None]
            specs.append(FeatureSpec(feature, "dense", width=1))
    return np.asarray(keys, dtype=str), arrays, tuple(specs)


def _interactions(path: str, split: str) -> splits.Interactions:
    columns, rows = read_atomic(path)
    names = [c[0] for c in columns]
    for required in ("user_id", "item_id"):
        if required not in names:
            raise ValueError(f"{path}:1: the header has no '{required}' field; received {names}.")
    if "timestamp" not in names and split != "random":
        raise ValueError(f"{path}: no 'timestamp' field, so data.split={split!r} is impossible; use data.split=random.")
    if not rows:
        raise ValueError(f"{path}: no interactions after the header line; expected at least one line.")
    u, i = names.index("user_id"), names.index("item_id")
    users = [splits.require_id(f[u], path, line, "user_id") for line, f in rows]
    items = [splits.require_id(f[i], path, line, "item_id") for line, f in rows]
    if "timestamp" in names:
        t = names.index("timestamp")
        times = [splits.parse_number(f[t], path, line, "timestamp") for line, f in rows]
    else:
        times = [float(line) for line, _ in rows]
    ratings = None
    if "rating" in names:
        r = names.index("rating")
        ratings = [splits.parse_number(f[r], path, line, "rating") for line, f in rows]
    return splits.Interactions(users, items, times, ratings)


def load_recbole(path: str, config, embedding_dim: int = 32) -> RecDataset:
    """Loads a directory of RecBole atomic files into a :class:`RecDataset` with ``config``'s protocol.

    Raises:
      FileNotFoundError: no ``.inter`` file. ValueError: a malformed header or line (file:line named).
    """
    files = find_files(path)
    interactions = _interactions(files["inter"], config.split)
    item_ids = np.asarray(sorted(set(interactions.item.tolist())), dtype=str)
    items, item_specs = {"item_id": item_ids}, ()
    if "item" in files:
        columns, rows = read_atomic(files["item"])
        item_ids, items, item_specs = _features(files["item"], columns, rows, "item_id", "item")
        items["item_id"] = item_ids
    extra = sorted(set(interactions.item.tolist()) - set(item_ids.tolist()))
    if extra:  # interacted items without metadata join the corpus with empty features
        for spec in item_specs:
            width = items[spec.name].shape[1:]
            fill = np.zeros((len(extra),) + width, np.float32) if spec.kind == "dense" else np.full((len(extra),) + width, "")
            items[spec.name] = np.concatenate([items[spec.name], fill.astype(items[spec.name].dtype)])
        items["item_id"] = np.concatenate([item_ids, np.asarray(extra, dtype=str)])
    users, user_specs = None, ()
    if "user" in files:
        columns, rows = read_atomic(files["user"])
        user_ids, users, user_specs = _features(files["user"], columns, rows, "user_id", "user")
        users["user_id"] = user_ids
        missing = sorted(set(interactions.user.tolist()) - set(user_ids.tolist()))
        if missing:
            raise ValueError(f"{files['user']}: {len(missing)} users of {files['inter']} have no line, e.g. {missing[:5]}.")
    name = f"recbole:{os.path.splitext(os.path.basename(files['inter']))[0]}"
    dataset = splits.build_dataset(
        name, interactions, items, item_specs, config, embedding_dim, users=users, user_specs=user_specs
    )
    dataset.truth["items_without_metadata"] = len(extra)
    return dataset
