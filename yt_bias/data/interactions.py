"""Bring your own data: one CSV / TSV / Parquet file of interactions and a column mapping.

``data.source='interactions'`` with ``data.path=FILE`` reads one row per interaction; the
columns named by :class:`~yt_bias.config.ColumnsConfig` (``data.columns.*``) say which is which:

* ``user``, ``item`` (required): IDs, read as strings;
* ``time``: numbers (any monotone clock) or ISO 8601 dates/times (``2024-05-01T12:00:00``);
  without one only ``data.split=random`` is possible;
* ``rating`` (rewards by ``data.reward``) or ``reward`` (used as is, >= 0); neither: r = 1;
* ``user_features`` / ``item_features``: comma-separated columns, each optionally ``name:kind``
  with kind ``categorical``, ``dense`` (standardised; an empty cell is the mean) or ``bag``
  (tokens separated by ``|``); without a kind, a column whose non-empty cells are all numbers is
  dense and any other is categorical. A user's (item's) features come from its latest row in time.

CSV and TSV are parsed by Python's csv module (quotes allowed) with a header line; a leading
UTF-8 byte-order mark is dropped. Parquet needs ``pyarrow`` (``pip install yt-bias[parquet]``).
Every malformed cell raises a ValueError naming the file, the line (row) and the column. The
split, reward rule and history bags are those of every loader (:mod:`yt_bias.data.splits`); the
corpus is the set of items in the file.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import os
from collections.abc import Sequence

import numpy as np

from yt_bias.data.dataset import RecDataset
from yt_bias.data.splits import Interactions, bag_spec, build_dataset, categorical_spec, pad_bags, undecodable_line
from yt_bias.features import FeatureSpec

FORMATS = ("csv", "tsv", "parquet")
FEATURE_KINDS = ("categorical", "dense", "bag")
MAX_BAG = 16
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_RESERVED = {"user_id", "item_id", "history"}


def detect_format(path: str, fmt: str = "") -> str:
    """``fmt`` if given, else the format of ``path``'s extension (.csv, .tsv/.tab, .parquet/.pq)."""
    if fmt:
        if fmt not in FORMATS:
            raise ValueError(f"data.columns.format must be one of {FORMATS} or ''; received {fmt!r}.")
        return fmt
    ext = os.path.splitext(path)[1].lower()
    if ext not in _EXTENSIONS:
        raise ValueError(
            f"{path}: cannot tell the format from the extension {ext!r}; expected one of {sorted(_EXTENSIONS)} "
            "or set data.columns.format to csv, tsv or parquet."
        )
    return _EXTENSIONS[ext]


class Table:
    """Columns of strings read from a file, with each row's line (CSV/TSV) or row number (Parquet).

    Attributes:
      path: the file.
      columns: header name -> [n] list of cell strings ('' for an empty / null cell).
      numbers: [n] line numbers (text) or 1-based row numbers (Parquet) of the rows.
      unit: ``"line"`` or ``"row"``, how :meth:`where` names a position.
    """

    def __init__(self, path: str, columns: dict[str, list[str]], numbers: list[int], unit: str):
        self.path, self.columns, self.numbers, self.unit = path, columns, numbers, unit

    def __len__(self) -> int:
        return len(self.numbers)

    def where(self, index: int, column: str) -> str:
        """``'FILE:line N, column NAME'`` for error messages."""
        return f"{self.path}:{self.unit} {self.numbers[index]}, column '{column}'"

    def column(self, name: str, field: str) -> list[str]:
        """The cells of column ``name``, which ``data.columns.<field>`` names; ValueError if it is absent."""
        if name not in self.columns:
            raise ValueError(
                f"{self.path}: data.columns.{field}={name!r} is not a column of the file; its columns are {list(self.columns)}."
            )
        return self.columns[name]


def _read_text(path: str, delimiter: str, encoding: str) -> Table:
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    rows, numbers = [], []
    try:
        with open(path, encoding=codec, newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            if not header or not any(h.strip() for h in header):
                raise ValueError(f"{path}:1: the header line (column names) is missing or empty.")
            header = [h.strip().lstrip("\ufeff") for h in header]
            duplicates = sorted({h for h in header if header.count(h) > 1})
            if duplicates:
                raise ValueError(f"{path}:1: the header names columns {duplicates} more than once.")
            for fields in reader:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # blank line
                if len(fields) != len(header):
                    raise ValueError(
                        f"{path}:line {reader.line_num}: expected {len(header)} fields separated by {delimiter!r} "
                        f"(as the header); received {len(fields)}: {delimiter.join(fields)[:80]!r}."
                    )
                rows.append(fields)
                numbers.append(reader.line_num)
    except UnicodeDecodeError as error:
        line, error = undecodable_line(path, codec) or ("?", error)  # the reader decodes ahead: find the exact line
        raise ValueError(
            f"{path}:line {line}: not valid {encoding} text ({error.reason} at byte {error.start + 1} of the line); "
            "set data.columns.encoding to the file's encoding (e.g. latin-1)."
        ) from None
    except csv.Error as error:
        raise ValueError(f"{path}: malformed {delimiter!r}-separated text: {error}.") from None
    columns = {name: [r[j] for r in rows] for j, name in enumerate(header)}
    return Table(path, columns, numbers, "line")


def _read_parquet(path: str) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(f"{path}: reading Parquet needs pyarrow: pip install 'yt-bias[parquet]' (or pyarrow).") from None
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises its own ArrowInvalid / OSError types
        raise ValueError(f"{path}: not a readable Parquet file ({type(error).__name__}: {error}).") from None
    columns = {}
    for name in table.column_names:
        values = table.column(name).to_pylist()
        columns[name.lstrip("\ufeff")] = ["" if _is_null(v) else _cell(v) for v in values]
    return Table(path, columns, list(range(1, table.num_rows + 1)), "row")


def _is_null(value) -> bool:
    """A missing Parquet value: null, or a float NaN (pandas writes missing floats as NaN, not null)."""
    return value is None or (isinstance(value, float) and value != value)


def _cell(value) -> str:
    """A Parquet value as the text a CSV would hold (timestamps as ISO 8601, lists joined with '|')."""
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "|".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def read_table(path: str, fmt: str = "", delimiter: str = "", encoding: str = "utf-8") -> Table:
    """Reads a CSV / TSV (header line) or Parquet file into a :class:`Table` of string cells."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data.path {path!r} is not a file; expected a CSV, TSV or Parquet file of interactions.")
    fmt = detect_format(path, fmt)
    if fmt == "parquet":
        return _read_parquet(path)
    delimiter = delimiter.replace("\\t", "\t") or ("," if fmt == "csv" else "\t")
    if len(delimiter) != 1:
        raise ValueError(f"data.columns.delimiter must be one character; received {delimiter!r}.")
    return _read_text(path, delimiter, encoding)


def _ids(table: Table, name: str, field: str) -> np.ndarray:
    cells = table.column(name, field)
    out = []
    for i, cell in enumerate(cells):
        cell = cell.strip()
        if not cell:
            raise ValueError(f"{table.where(i, name)}: empty; expected an ID (data.columns.{field}).")
        out.append(cell)
    return np.asarray(out, dtype=str)


def _numbers(table: Table, name: str, field: str, dates: bool = False) -> np.ndarray:
    out = np.empty(len(table), np.float64)
    for i, cell in enumerate(table.column(name, field)):
        out[i] = _number(cell, lambda i=i: table.where(i, name), dates)
    return out


def _number(cell: str, where, dates: bool = False) -> float:
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None and dates and text:
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.timezone.utc)
            value = moment.timestamp()
    if value is None:
        expected = "a number or an ISO 8601 date/time" if dates else "a number"
        raise ValueError(f"{where()}: expected {expected}; received {cell!r}.")
    if not np.isfinite(value):
        raise ValueError(f"{where()}: must be finite; received {cell!r}.")
    return value


def parse_feature_list(text: str, field: str) -> list[tuple[str, str]]:
    """``"genre, price:dense, tags:bag"`` -> ``[("genre", ""), ("price", "dense"), ("tags", "bag")]``."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, kind = part.partition(":")
        name, kind = name.strip(), kind.strip()
        if kind and kind not in FEATURE_KINDS:
            raise ValueError(f"data.columns.{field}: column {name!r} has kind {kind!r}; expected one of {FEATURE_KINDS}.")
        if not name:
            raise ValueError(f"data.columns.{field}: an empty column name in {text!r}.")
        out.append((name, kind))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"data.columns.{field}: a column is listed twice in {text!r}.")
    return out


def _is_number(text: str) -> bool:
    try:
        return bool(np.isfinite(float(text)))
    except ValueError:
        return False


def _entity_features(
    table: Table, keys: np.ndarray, order: np.ndarray, features: Sequence[tuple[str, str]], field: str, prefix: str
) -> tuple[np.ndarray, dict, tuple]:
    """Per distinct key (sorted), each feature's value on the key's latest row in ``order``."""
    unique, first_in_order = np.unique(keys[order][::-1], return_index=True)  # reversed: latest row first
    rows = order[::-1][first_in_order]  # each key's latest row
    arrays, specs = {"__keys__": unique}, []
    for name, kind in features:
        cells = table.column(name, field)
        values = [cells[r].strip() for r in rows]
        feature = f"{prefix}_{name}" if name in _RESERVED else name
        if not kind:
            known = [v for v in values if v]
            kind = "dense" if known and all(_is_number(v) for v in known) else "categorical"
        if kind == "categorical":
            arrays[feature] = np.asarray(values, dtype=str)
            specs.append(categorical_spec(feature, arrays[feature]))
        elif kind == "bag":
            bags = [[t.strip() for t in v.split("|") if t.strip()] for v in values]
            arrays[feature] = pad_bags(bags, min(MAX_BAG, max([len(b) for b in bags] + [1])))
            specs.append(bag_spec(feature, arrays[feature]))
        else:
            numbers = np.array(
                [np.nan if not v else _number(v, lambda r=r, name=name: table.where(int(r), name)) for v, r in zip(values, rows)]
            )
            known = numbers[np.isfinite(numbers)]
            mean, std = (known.mean(), known.std()) if len(known) else (0.0, 1.0)
            arrays[feature] = np.nan_to_num((numbers - mean) / (std if std > 0 else 1.0), nan=0.0).astype(np.float32)[:, None]
            specs.append(FeatureSpec(feature, "dense", width=1))
    return arrays.pop("__keys__"), arrays, tuple(specs)


def _check_mapping(columns, split: str) -> None:
    if not columns.user or not columns.item:
        raise ValueError(
            f"data.columns.user and data.columns.item must name columns; received {columns.user!r} and {columns.item!r}."
        )
    if columns.rating and columns.reward:
        raise ValueError(
            f"data.columns.rating ({columns.rating!r}) and data.columns.reward ({columns.reward!r}) are exclusive; set one."
        )
    if not columns.time and split != "random":
        raise ValueError(
            f"data.columns.time is '' (no time column), so data.split={split!r} is impossible; use data.split=random."
        )
    roles = [
        ("user", columns.user),
        ("item", columns.item),
        ("time", columns.time),
        ("rating", columns.rating),
        ("reward", columns.reward),
    ]
    used = {}
    for field, name in roles:
        if name and name in used:
            raise ValueError(f"data.columns.{field} and data.columns.{used[name]} both name the column {name!r}.")
        if name:
            used[name] = field
    for field in ("user_features", "item_features"):
        for name, _ in parse_feature_list(getattr(columns, field), field):
            if name in used:
                raise ValueError(f"data.columns.{field} lists {name!r}, which is already data.columns.{used[name]}.")


def load_interactions(path: str, config, embedding_dim: int = 32) -> RecDataset:
    """Loads one interactions file into a :class:`RecDataset` with ``config``'s protocol.

    Args:
      path: a CSV, TSV or Parquet file with one interaction per row.
      config: a :class:`~yt_bias.config.DataConfig`; ``config.columns`` maps the columns, and the
        split, reward rule and history length apply as for every loader.
      embedding_dim: width of the ID embeddings (user, item, history).
    Returns:
      The data set: items are the distinct item IDs of the file (sorted), queries the user ID,
      the history bag and the user features.
    Raises:
      FileNotFoundError: no such file. ValueError: a missing column, a malformed row or cell
      (file, line or row, and column named), an undecodable file, or a bad mapping.
    """
    columns = config.columns
    _check_mapping(columns, config.split)
    table = read_table(path, columns.format, columns.delimiter, columns.encoding)
    if len(table) == 0:
        raise ValueError(f"{path}: no interactions after the header; expected at least one row.")
    users = _ids(table, columns.user, "user")
    items = _ids(table, columns.item, "item")
    times = _numbers(table, columns.time, "time", dates=True) if columns.time else np.arange(len(table), dtype=np.float64)
    ratings = None
    if columns.rating:
        ratings = _numbers(table, columns.rating, "rating")
    elif columns.reward:
        ratings = _numbers(table, columns.reward, "reward")
        negative = np.flatnonzero(ratings < 0)
        if len(negative):
            raise ValueError(
                f"{table.where(int(negative[0]), columns.reward)}: a reward must be >= 0; received {ratings[negative[0]]}."
            )
        config = dataclasses.replace(config, reward="rating")  # the column is the reward itself
    interactions = Interactions(users, items, times, ratings)

    order = np.lexsort((np.arange(len(table)), times))  # time, then file order
    item_features = parse_feature_list(columns.item_features, "item_features")
    item_ids, item_arrays, item_specs = _entity_features(table, items, order, item_features, "item_features", "item")
    item_arrays["item_id"] = item_ids
    user_table, user_specs = None, ()
    user_features = parse_feature_list(columns.user_features, "user_features")
    if user_features:
        user_ids, user_table, user_specs = _entity_features(table, users, order, user_features, "user_features", "user")
        user_table["user_id"] = user_ids
    name = f"interactions:{os.path.splitext(os.path.basename(path))[0]}"
    return build_dataset(
        name, interactions, item_arrays, item_specs, config, embedding_dim, users=user_table, user_specs=user_specs
    )
