"""Days of interactions whose item popularity drifts, generated from the synthetic data's own story.

Each day draws fresh interactions from the generative model of :mod:`yt_bias.data.synthetic`
(its users, items and ground truth): a row's user is drawn by activity, and the user's next item,
among the items that are alive that day and that the user has not consumed on an earlier row,
with probability ``P(j | u, d) ~ pop_j ** popularity_weight * exp(affinity_scale * <u, v_j>
+ w_dj)``. The per-day log-weights ``w_dj`` and the alive mask are the drift (:func:`drift_schedule`):

* ``none``: ``w = 0`` (no drift: every day comes from one distribution).
* ``gradual``: ``w_dj = shift * (2d / (D - 1) - 1) * z_j`` for a fixed random direction ``z``
  over items (the ``generator`` source of ``yt-bias train --stream`` uses the same form).
* ``sudden``: ``w_dj = -shift * z_j`` before ``switch_day``, ``+shift * z_j`` from it on.
* ``lifecycle``: ``new_fraction`` of the items are born on a day in [1, D - 1] (absent before,
  with a freshness boost ``shift * exp(-(d - birth) / freshness_days)`` after), and
  ``dead_fraction`` die on a day in [1, D - 1] (absent from that day on).
* ``periodic``: ``w_dj = shift * cos(2 pi d / period) * z_j``: day d and day d + period share
  one distribution (a weekly pattern, shortened).

Every row carries the user's ``history_length`` most recent earlier items (across days, never the
future), a reward (1 with probability ``sigmoid(4 <u, v_j>)``, as the generator), and its query key
(the user). Items born after day 0 are not in the ID vocabulary of :func:`stream_dataset`: like a
catalogue's new uploads, they reach the towers through the hashed out-of-vocabulary rows and the
frequency estimator through its hashing.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from yt_bias.config import DRIFT_KINDS
from yt_bias.data.dataset import ITEM_INDEX, QUERY_KEY, REWARD, RecDataset
from yt_bias.features import FeatureConfig

__all__ = ["DRIFT_KINDS", "DriftConfig", "DriftStream", "drift_days", "drift_schedule", "stream_dataset"]


@dataclasses.dataclass(frozen=True)
class DriftConfig:
    """How the days drift (see the module docstring).

    Attributes:
      kind: one of :data:`DRIFT_KINDS`.
      days: D, the number of days.
      rows_per_day: interactions drawn per day (fewer only if users run out of unconsumed items).
      shift: strength of the popularity change (on the log-weight scale).
      switch_day: ``sudden``: the first day of the new popularity (0 = D // 2).
      period: ``periodic``: days per cycle.
      new_fraction: ``lifecycle``: share of the items born after day 0.
      dead_fraction: ``lifecycle``: share of the items that die before the last day.
      freshness_days: ``lifecycle``: decay time of a new item's boost.
      seed: seeds the direction z, the lifecycle and the draws.
    """

    kind: str = "gradual"
    days: int = 6
    rows_per_day: int = 3000
    shift: float = 2.0
    switch_day: int = 0
    period: int = 3
    new_fraction: float = 0.2
    dead_fraction: float = 0.2
    freshness_days: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in DRIFT_KINDS:
            raise ValueError(f"DriftConfig.kind must be one of {DRIFT_KINDS}; received {self.kind!r}.")
        for field in ("days", "rows_per_day", "period"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DriftConfig.{field} must be an integer >= 1; received {value!r}.")
        if self.kind in ("sudden", "lifecycle") and self.days < 2:
            raise ValueError(f"DriftConfig.days must be >= 2 for kind={self.kind!r}; received {self.days}.")
        if self.kind == "sudden" and not 0 <= self.switch_day < self.days:
            raise ValueError(f"DriftConfig.switch_day must be in [0, days={self.days}); received {self.switch_day}.")
        if not (0.0 <= self.new_fraction <= 1.0 and 0.0 <= self.dead_fraction <= 1.0
                and self.new_fraction + self.dead_fraction < 1.0):
            raise ValueError(
                "DriftConfig.new_fraction and dead_fraction must be in [0, 1] with a sum < 1; "
                f"received {self.new_fraction}, {self.dead_fraction}."
            )
        if not self.freshness_days > 0 or not np.isfinite(self.shift):
            raise ValueError(
                f"DriftConfig.freshness_days must be > 0 and shift finite; received {self.freshness_days}, {self.shift}."
            )

    @property
    def first_switched_day(self) -> int:
        """``sudden``: the day the popularity changes."""
        return self.switch_day or self.days // 2


@dataclasses.dataclass
class DriftStream:
    """Generated days and the schedule behind them.

    Attributes:
      config: the drift.
      days: D dicts of rows (query features, item features, ``reward``, ``item_index``, ``query_key``).
      log_weights: [D, num_items] the per-day log-weights ``w``.
      alive: [D, num_items] whether each item can be drawn on each day.
      birth: [num_items] each item's first day (0 for items present from the start).
      death: [num_items] each item's first absent day after its life (D = never dies).
    """

    config: DriftConfig
    days: list[dict[str, np.ndarray]]
    log_weights: np.ndarray
    alive: np.ndarray
    birth: np.ndarray
    death: np.ndarray


def drift_schedule(config: DriftConfig, num_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The per-day log-weights and lifecycle of a drift.

    Returns:
      ``(log_weights [D, N], alive [D, N] bool, birth [N] int, death [N] int)``.
    """
    days = config.days
    direction = np.random.default_rng([config.seed, 7919]).normal(size=num_items)
    log_weights = np.zeros((days, num_items))
    birth = np.zeros(num_items, np.int64)
    death = np.full(num_items, days, np.int64)
    day = np.arange(days)[:, None]
    if config.kind == "gradual" and days > 1:
        log_weights = config.shift * (2.0 * day / (days - 1) - 1.0) * direction[None, :]
    elif config.kind == "sudden":
        sign = np.where(day >= config.first_switched_day, 1.0, -1.0)
        log_weights = config.shift * sign * direction[None, :]
    elif config.kind == "periodic":
        log_weights = config.shift * np.cos(2.0 * np.pi * day / config.period) * direction[None, :]
    elif config.kind == "lifecycle":
        rng = np.random.default_rng([config.seed, 104729])
        order = rng.permutation(num_items)
        num_new = int(round(config.new_fraction * num_items))
        num_dead = int(round(config.dead_fraction * num_items))
        new, dead = order[:num_new], order[num_new : num_new + num_dead]
        birth[new] = rng.integers(1, days, size=num_new)
        death[dead] = rng.integers(1, days, size=num_dead)
        age = day - birth[None, :]
        boost = config.shift * np.exp(-np.maximum(age, 0) / config.freshness_days)
        log_weights = np.where((age >= 0) & (birth[None, :] > 0), boost, 0.0)
    alive = (day >= birth[None, :]) & (day < death[None, :])
    return log_weights, alive, birth, death


def _user_table(dataset: RecDataset) -> dict[str, np.ndarray]:
    """One row per user of the synthetic data: name, index into the truth, region, activity."""
    names = np.concatenate([np.asarray(dataset.train["user_id"]), np.asarray(dataset.test["user_id"])]).astype(str)
    unique, first = np.unique(names, return_index=True)
    try:
        index = np.array([int(name.rsplit("_", 1)[1]) for name in unique])
    except (IndexError, ValueError):
        raise ValueError(f"drift days need the synthetic data's user IDs 'user_<n>'; received e.g. {unique[0]!r}.") from None
    region = np.concatenate([np.asarray(dataset.train["region"]), np.asarray(dataset.test["region"])])[first]
    activity = np.concatenate([np.asarray(dataset.train["activity"]), np.asarray(dataset.test["activity"])])[first]
    return {"name": unique, "index": index, "region": region, "activity": activity.astype(np.float32)}


def drift_days(dataset: RecDataset, config: DriftConfig) -> DriftStream:
    """Draws ``config.days`` days of interactions from the synthetic data's generative model.

    Args:
      dataset: a data set from :func:`yt_bias.data.synthetic.generate` (its ``truth`` and users).
      config: the drift.
    Returns:
      The days and their schedule.
    Raises:
      ValueError: a data set without the generator's ground truth.
    """
    truth = dataset.truth
    missing = [key for key in ("popularity", "item_vectors", "user_vectors") if key not in truth]
    if missing:
        raise ValueError(f"drift days need the synthetic generator's ground truth; dataset {dataset.name!r} lacks {missing}.")
    num_items = dataset.num_items
    log_weights, alive, birth, death = drift_schedule(config, num_items)
    users = _user_table(dataset)
    history_length = next(s.max_len for s in dataset.features.query if s.name == "history")
    user_vectors = truth["user_vectors"][users["index"]]
    base = truth.get("popularity_weight", 1.0) * np.log(truth["popularity"])
    scale = truth.get("affinity_scale", 5.0)
    pick = np.exp(users["activity"][:, 0].astype(np.float64))
    pick /= pick.sum()
    consumed = np.zeros((len(users["name"]), num_items), bool)
    recent: list[list[int]] = [[] for _ in users["name"]]
    item_names = dataset.item_ids
    item_index_columns = {spec.name: np.asarray(dataset.items[spec.name]) for spec in dataset.features.item}
    days = []
    for d in range(config.days):
        rng = np.random.default_rng([config.seed, 31337, d])
        per_user = np.bincount(rng.choice(len(pick), size=config.rows_per_day, p=pick), minlength=len(pick))
        active = np.flatnonzero(per_user)
        row_user, row_item = [], []
        for start in range(0, len(active), 1024):
            chunk = active[start : start + 1024]
            logits = base[None, :] + scale * user_vectors[chunk] @ truth["item_vectors"].T + log_weights[d][None, :]
            allowed = alive[d][None, :] & ~consumed[chunk]
            keys = np.where(allowed, logits + rng.gumbel(size=logits.shape), -np.inf)
            order = np.argsort(-keys, axis=1)
            for row, u in enumerate(chunk):
                count = min(per_user[u], int(allowed[row].sum()))
                chosen = order[row, :count]
                row_user.append(np.full(count, u))
                row_item.append(chosen)
                consumed[u, chosen] = True
        row_user = np.concatenate(row_user) if row_user else np.zeros(0, np.int64)
        row_item = np.concatenate(row_item).astype(np.int64) if row_item else np.zeros(0, np.int64)
        history = np.full((len(row_item), history_length), "", dtype=object)
        for i, (u, j) in enumerate(zip(row_user.tolist(), row_item.tolist())):
            past = recent[u][-history_length:][::-1]
            history[i, : len(past)] = item_names[past]
            recent[u].append(j)
        affinity = np.einsum("ij,ij->i", user_vectors[row_user], truth["item_vectors"][row_item])
        reward = (rng.random(len(row_item)) < 1.0 / (1.0 + np.exp(-4.0 * affinity))).astype(np.float32)
        rows = {
            "user_id": users["name"][row_user],
            "region": users["region"][row_user],
            "history": history.astype(str),
            "activity": users["activity"][row_user],
        }
        rows.update({name: values[row_item] for name, values in item_index_columns.items()})
        rows.update({REWARD: reward, ITEM_INDEX: row_item, QUERY_KEY: users["name"][row_user]})
        days.append(rows)
    return DriftStream(config, days, log_weights, alive, birth, death)


def stream_dataset(dataset: RecDataset, stream: DriftStream) -> RecDataset:
    """``dataset`` with the item-ID vocabulary cut to the items alive on day 0.

    Items born later then map to the hashed out-of-vocabulary rows of the shared item table, as a
    catalogue's new uploads would. Without births the data set is returned unchanged.
    """
    born_later = stream.birth > 0
    if not born_later.any():
        return dataset
    features = dataset.features
    id_spec = next(s for s in features.item if s.name == features.item_id)
    if id_spec.vocabulary is None:
        return dataset
    keep_ids = set(np.asarray(dataset.item_ids)[~born_later].tolist())
    known = tuple(v for v in id_spec.vocabulary if v in keep_ids)

    def cut(spec):
        if spec.vocabulary is not None and spec.table_name == id_spec.table_name:
            return dataclasses.replace(spec, vocabulary=known)
        return spec

    cut_features = FeatureConfig(
        query=tuple(cut(s) for s in features.query), item=tuple(cut(s) for s in features.item), item_id=features.item_id
    )
    return RecDataset(dataset.name, cut_features, dataset.items, dataset.train, dataset.test, dataset.truth)
