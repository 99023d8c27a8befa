"""Shared pieces of the real-data loaders: parsing helpers, rewards, splits and history bags.

Every loader (MovieLens, RecBole atomic files, MIND) parses its files into an
:class:`Interactions` table plus item (and user) feature arrays, then calls
:func:`build_dataset`, which applies the protocol of a :class:`~yt_bias.config.DataConfig`:

* rewards from ratings (``reward='threshold'``: r = 1 if rating >= ``min_rating_positive`` else 0;
  ``'rating'``: r = the rating; ``'binary'``: r = 1 for every interaction);
* the split: ``'temporal'`` (one global time cut at the ``1 - test_fraction`` quantile of time),
  ``'user-last-n'`` (each user's ``last_n`` latest interactions are held out) or ``'random'``
  (``test_fraction`` of the rows, seeded by ``split_seed``);
* the user's recent-history bag (the paper's past watches): the ``history_length`` most recent
  interactions of the same user strictly earlier in (timestamp, file order). A training row's bag
  is built from training rows only, so no held-out interaction ever reaches training; a test row's
  bag may use every earlier interaction of its user (known at query time), never a later one;
* the shared item-ID table (``table='item'``): the vocabulary is the training items, unseen items
  fall into OOV buckets; the history bag and the candidate's ID use the same table.
"""

from __future__ import annotations

import codecs
import dataclasses
import os
import re
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, REWARD, RecDataset
from yt_bias.features import FeatureConfig, FeatureSpec

SPLITS = ("temporal", "user-last-n", "random")
REWARD_RULES = ("threshold", "rating", "binary")
ITEM_OOV_BUCKETS = 16
TITLE_TOKENS = 8
TITLE_BUCKETS = 4096
_TOKEN = re.compile(r"[^\W_]+")
_STOPWORDS = frozenset({"the", "a", "an", "of", "and", "in", "on", "to", "for", "la", "le", "les", "de", "il"})


@dataclasses.dataclass
class Interactions:
    """Parsed interactions, one row each.

    Attributes:
      user: [n] str user IDs.
      item: [n] str item IDs (must be in the item table).
      timestamp: [n] float seconds (any monotone clock).
      rating: [n] float ratings, or None when the source has none (rewards then count every row as 1).
    """

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    rating: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.user = np.asarray(self.user).astype(str)
        self.item = np.asarray(self.item).astype(str)
        self.timestamp = np.asarray(self.timestamp, dtype=np.float64)
        n = len(self.user)
        for name in ("item", "timestamp"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Interactions.{name} has {len(getattr(self, name))} rows; expected {n} (as user).")
        if self.rating is not None:
            self.rating = np.asarray(self.rating, dtype=np.float64)
            if len(self.rating) != n:
                raise ValueError(f"Interactions.rating has {len(self.rating)} rows; expected {n} (as user).")
        if n == 0:
            raise ValueError("Interactions: no interactions were read; expected at least one.")

    def __len__(self) -> int:
        return len(self.user)


# ----------------------------------------------------------------------------- parsing helpers
def read_rows(
    path: str,
    sep: str,
    num_fields: int | None = None,
    encoding: str = "utf-8",
    skip_header: bool = False,
    min_fields: int | None = None,
) -> Iterator[tuple[int, list[str]]]:
    """Yields (line number, fields) of a delimited text file; blank lines are skipped.

    A byte-order mark at the start of the file is dropped (UTF-8's, also when read as latin-1).

    Raises:
      ValueError: a path that is a directory, text that is not ``encoding``, or a line with the wrong
        number of fields, naming the file and the line number.
    """
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory; expected a text file.")
    with open(path, "rb") as f:
        for number, line in _lines(f, path, encoding):
            if number == 1:
                line = strip_bom(line)
            line = line.rstrip("\r\n")
            if skip_header and number == 1:
                continue
            if not line.strip():
                continue
            fields = line.split(sep)
            if num_fields is not None and len(fields) != num_fields:
                raise ValueError(
                    f"{path}:{number}: expected {num_fields} fields separated by {sep!r}; received {len(fields)}: {line[:80]!r}."
                )
            if min_fields is not None and len(fields) < min_fields:
                raise ValueError(
                    f"{path}:{number}: expected at least {min_fields} fields separated by {sep!r}; "
                    f"received {len(fields)}: {line[:80]!r}."
                )
            yield number, fields


_BOMS = ("\ufeff", "\xef\xbb\xbf")  # UTF-8's byte-order mark, decoded as UTF-8 and as latin-1


def strip_bom(text: str) -> str:
    """``text`` without a leading byte-order mark."""
    for bom in _BOMS:
        if text.startswith(bom):
            return text[len(bom) :]
    return text


def undecodable_line(path: str, encoding: str) -> tuple[int, UnicodeDecodeError] | None:
    """The first line of a file that is not valid ``encoding`` text, with its error (None: the file decodes).

    A text reader decodes ahead in blocks, so its error does not say which line is bad; this reads
    the raw lines through an incremental decoder and names the exact one.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    number = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as error:
                return number, error
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        return max(number, 1), error
    return None


def _lines(f, path: str, encoding: str) -> Iterator[tuple[int, str]]:
    """(line number, decoded line) of a file opened in binary mode; a decoding error names the file and line."""
    for number, raw in enumerate(f, start=1):
        try:
            yield number, raw.decode(encoding)
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{path}:{number}: not valid {encoding} text ({error.reason} at byte {error.start + 1} of the line); "
                "re-save the file in that encoding."
            ) from None


def parse_number(text: str, path: str, line: int, field: str) -> float:
    """A finite float from ``text``, or a ValueError naming file, line and field."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}:{line}: field '{field}' must be a number; received {text!r}.") from None
    if not np.isfinite(value):
        raise ValueError(f"{path}:{line}: field '{field}' must be finite; received {text!r}.")
    return value


def require_id(text: str, path: str, line: int, field: str) -> str:
    text = text.strip()
    if not text:
        raise ValueError(f"{path}:{line}: field '{field}' is empty; expected an ID.")
    return text


def title_tokens(title: str, max_tokens: int = TITLE_TOKENS) -> list[str]:
    """Lower-cased word tokens of a title (a trailing '(1995)' year and stop words removed)."""
    title = re.sub(r"\(\s*\d{4}\s*\)\s*$", "", title.strip())
    tokens = [t for t in _TOKEN.findall(title.lower()) if t not in _STOPWORDS]
    return tokens[:max_tokens]


def title_year(title: str) -> str:
    """The '(1995)' year at the end of a MovieLens title, or '' when there is none."""
    match = re.search(r"\((\d{4})\)\s*$", title.strip())
    return match.group(1) if match else ""


def pad_bags(bags: Sequence[Sequence[str]], width: int | None = None) -> np.ndarray:
    """[n, width] str array of bags padded with '' (width: the longest bag, at least 1)."""
    width = width or max([len(b) for b in bags] + [1])
    out = np.full((len(bags), width), "", dtype=object)
    for row, bag in enumerate(bags):
        bag = list(bag)[:width]
        out[row, : len(bag)] = bag
    return out.astype(str)


def vocabulary_of(values: np.ndarray) -> tuple[str, ...]:
    """Sorted distinct non-empty strings of an array of any shape."""
    return tuple(sorted(set(np.asarray(values).astype(str).ravel().tolist()) - {""}))


def categorical_spec(name: str, values: np.ndarray, dim: int = 8) -> FeatureSpec:
    """A categorical feature over the values present (one OOV row for unseen values)."""
    vocabulary = vocabulary_of(values)
    return FeatureSpec(name, "categorical", dim=dim, vocabulary=vocabulary or None, buckets=1 if vocabulary else 16)


def bag_spec(name: str, values: np.ndarray, dim: int = 8, hashed_buckets: int | None = None) -> FeatureSpec:
    """A bag feature: over its vocabulary, or hashed into ``hashed_buckets`` rows (title tokens)."""
    values = np.asarray(values)
    if hashed_buckets:
        return FeatureSpec(name, "bag", dim=dim, buckets=hashed_buckets, max_len=values.shape[1])
    vocabulary = vocabulary_of(values)
    return FeatureSpec(
        name, "bag", dim=dim, vocabulary=vocabulary or None, buckets=1 if vocabulary else 16, max_len=values.shape[1]
    )


# ----------------------------------------------------------------------------- protocol
def check_protocol(config) -> None:
    """Validates the real-data fields of a DataConfig (split, fractions, reward rule, history)."""
    if config.split not in SPLITS:
        raise ValueError(f"data.split must be one of {SPLITS}; received {config.split!r}.")
    if not 0.0 < config.test_fraction < 1.0:
        raise ValueError(f"data.test_fraction must be in (0, 1); received {config.test_fraction!r}.")
    if isinstance(config.last_n, bool) or not isinstance(config.last_n, int) or config.last_n < 1:
        raise ValueError(f"data.last_n must be an integer >= 1; received {config.last_n!r}.")
    if config.reward not in REWARD_RULES:
        raise ValueError(f"data.reward must be one of {REWARD_RULES}; received {config.reward!r}.")
    if isinstance(config.history_length, bool) or not isinstance(config.history_length, int) or config.history_length < 1:
        raise ValueError(f"data.history_length must be an integer >= 1; received {config.history_length!r}.")


def rewards(ratings: np.ndarray | None, rule: str = "threshold", min_rating_positive: float = 4.0) -> np.ndarray | None:
    """Rewards [n] float32 from ratings [n]; None for implicit feedback (the caller sets r = 1)."""
    if rule not in REWARD_RULES:
        raise ValueError(f"reward must be one of {REWARD_RULES}; received {rule!r}.")
    if ratings is None:
        return None
    if rule == "binary":
        return np.ones(len(ratings), np.float32)
    ratings = np.asarray(ratings, dtype=np.float64)
    if rule == "rating":
        if np.any(ratings < 0):
            raise ValueError(f"reward='rating' needs ratings >= 0; received a minimum of {ratings.min()}.")
        return ratings.astype(np.float32)
    return (ratings >= min_rating_positive).astype(np.float32)


def _chronological(users: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Row order by (user, timestamp, file order)."""
    return np.lexsort((np.arange(len(users)), timestamps, users))


def split_mask(
    users: np.ndarray, timestamps: np.ndarray, split: str, test_fraction: float = 0.2, last_n: int = 1, seed: int = 0
) -> np.ndarray:
    """Which rows are held out: [n] bool.

    ``temporal``: rows at or after the ``1 - test_fraction`` quantile of time; ``user-last-n``: each
    user's ``last_n`` latest rows (a user with <= last_n rows keeps them all in training);
    ``random``: a seeded ``test_fraction`` of the rows.
    """
    users = np.asarray(users).astype(str)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    n = len(users)
    if split == "temporal":
        cut = np.quantile(timestamps, 1.0 - test_fraction)
        test = timestamps >= cut
        if test.all():  # every row shares one timestamp: nothing is "before" the cut
            raise ValueError("split='temporal': all interactions fall after the time cut; the timestamps do not vary.")
        return test
    if split == "random":
        rng = np.random.default_rng(seed)
        test = np.zeros(n, bool)
        test[rng.permutation(n)[: round(test_fraction * n)]] = True
        return test
    if split == "user-last-n":
        order = _chronological(users, timestamps)
        sorted_users = users[order]
        starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
        sizes = np.diff(np.r_[starts, n])
        rank_from_end = np.concatenate([np.arange(s)[::-1] for s in sizes])
        keep_all = np.repeat(sizes <= last_n, sizes)
        test = np.zeros(n, bool)
        test[order] = (rank_from_end < last_n) & ~keep_all
        return test
    raise ValueError(f"split must be one of {SPLITS}; received {split!r}.")


def history_bags(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, length: int) -> np.ndarray:
    """Each row's ``length`` previous items of the same user, most recent first: [n, length] str.

    "Previous" means strictly earlier in (timestamp, row order); the row's own item and every later
    one are never in its bag. Pads with ''.
    """
    users = np.asarray(users).astype(str)
    items = np.asarray(items).astype(str)
    n = len(users)
    bags = np.full((n, length), "", dtype=object)
    if n == 0:
        return bags.astype(str)
    order = _chronological(users, np.asarray(timestamps, dtype=np.float64))
    sorted_users, sorted_items = users[order], items[order]
    starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
    position = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    for lag in range(1, length + 1):
        valid = position >= lag
        column = np.full(n, "", dtype=object)
        column[valid] = sorted_items[np.flatnonzero(valid) - lag]
        bags[order, lag - 1] = column
    return bags.astype(str)


def build_dataset(
    name: str,
    interactions: Interactions,
    items: Mapping[str, np.ndarray],
    item_specs: Sequence[FeatureSpec],
    config,
    embedding_dim: int = 32,
    users: Mapping[str, np.ndarray] | None = None,
    user_specs: Sequence[FeatureSpec] = (),
    prior_history: Mapping[str, Sequence[str]] | None = None,
    extra_columns: Mapping[str, np.ndarray] | None = None,
) -> RecDataset:
    """Applies the protocol of ``config`` (a DataConfig) and returns a :class:`RecDataset`.

    Args:
      interactions: the parsed rows.
      items: ``item_id`` [num_items] str plus one array per spec of ``item_specs`` (row j = item j).
      item_specs: the item features besides the ID (genres, title tokens, year, ...).
      users: ``user_id`` [num_users] str plus one array per spec of ``user_specs`` (demographics).
      prior_history: user -> items consumed before the first interaction (MIND's history column),
        oldest first; they fill the bag before any interaction of the data.
      extra_columns: per-interaction arrays carried into train/test unchanged (e.g. impressions).
    Raises:
      ValueError: an interaction names an item or user missing from the tables, or a bad protocol field.
    """
    check_protocol(config)
    item_ids = np.asarray(items["item_id"]).astype(str)
    index_of = {item: j for j, item in enumerate(item_ids.tolist())}
    missing = sorted(set(interactions.item.tolist()) - index_of.keys())
    if missing:
        raise ValueError(f"{name}: {len(missing)} interacted item IDs are not in the item table, e.g. {missing[:5]}.")
    item_index = np.array([index_of[i] for i in interactions.item.tolist()], np.int64)
    reward = rewards(interactions.rating, config.reward, config.min_rating_positive)
    if reward is None:
        reward = np.ones(len(interactions), np.float32)
    is_test = split_mask(
        interactions.user, interactions.timestamp, config.split, config.test_fraction, config.last_n, config.split_seed
    )
    if not (~is_test).any():
        raise ValueError(f"{name}: the split left no training interactions.")

    # History bags: training rows see training rows only; test rows see every earlier row.
    user, item, time = interactions.user, interactions.item, interactions.timestamp
    prior_user, prior_item, prior_time = [], [], []
    for u, past in (prior_history or {}).items():
        prior_user += [u] * len(past)
        prior_item += list(past)
        prior_time += [-np.inf] * len(past)  # before everything; ties keep list order (oldest first)
    n_prior = len(prior_user)

    def bags(mask: np.ndarray) -> np.ndarray:
        all_users = np.r_[np.asarray(prior_user, dtype=str), user[mask]]
        all_items = np.r_[np.asarray(prior_item, dtype=str), item[mask]]
        all_times = np.r_[np.asarray(prior_time, dtype=np.float64), time[mask]]
        return history_bags(all_users, all_items, all_times, config.history_length)[n_prior:]

    history = np.full((len(interactions), config.history_length), "", dtype=object)
    history[~is_test] = bags(~is_test)
    history[is_test] = bags(np.ones(len(interactions), bool))[is_test]
    history = history.astype(str)

    train_items = vocabulary_of(item[~is_test])
    train_users = vocabulary_of(user[~is_test])
    item_table = {"dim": embedding_dim, "vocabulary": train_items, "buckets": ITEM_OOV_BUCKETS, "table": "item"}
    query_specs = [
        FeatureSpec("user_id", "id", dim=embedding_dim, vocabulary=train_users, buckets=1),
        FeatureSpec("history", "bag", max_len=config.history_length, **item_table),
    ]
    rows: dict[str, np.ndarray] = {"user_id": user, "history": history}
    if users is not None and user_specs:
        user_row = {u: j for j, u in enumerate(np.asarray(users["user_id"]).astype(str).tolist())}
        unknown = sorted(set(user.tolist()) - user_row.keys())
        if unknown:
            raise ValueError(f"{name}: {len(unknown)} interacting user IDs are not in the user table, e.g. {unknown[:5]}.")
        user_index = np.array([user_row[u] for u in user.tolist()], np.int64)
        for spec in user_specs:
            rows[spec.name] = np.asarray(users[spec.name])[user_index]
            query_specs.append(spec)
    rows.update({ITEM_INDEX: item_index, REWARD: reward, QUERY_KEY: user, "timestamp": time})
    rows.update(dict(extra_columns or {}))
    features = FeatureConfig(
        query=tuple(query_specs),
        item=(FeatureSpec("item_id", "id", **item_table),) + tuple(item_specs),
        item_id="item_id",
    )
    item_arrays = {"item_id": item_ids}
    item_arrays.update({spec.name: np.asarray(items[spec.name]) for spec in item_specs})
    train = {k: np.asarray(v)[~is_test] for k, v in rows.items()}
    test = {k: np.asarray(v)[is_test] for k, v in rows.items()}
    truth = {"split": config.split, "num_users": len(np.unique(user)), "train_users": len(train_users)}
    return RecDataset(name, features, item_arrays, train, test, truth)
