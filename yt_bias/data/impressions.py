"""Impressions on the default data: a logging policy that shows slates, and a click model.

Section 7 of PAPER.md distinguishes three signals per request: shown-and-clicked items,
shown-not-clicked items (impressions: a weak positive or a hard negative) and never-shown items.
This module extends :func:`yt_bias.data.synthetic.generate` (whose output it leaves untouched)
with them. Generative story, all seeded:

* The logging policy is "an earlier recommender": an imperfect model of the user, with logits
  ``policy_popularity_weight * log pop_j + policy_affinity * <u~, v_j>``, where ``u~`` is the
  user's true latent vector plus Gaussian noise (``policy_noise``). Per request it draws a
  slate of ``slate_size - 1`` distinct items without replacement (Gumbel top-k), never the
  request's own item.
* The click model: the synthetic generator's interaction is the item the user chose, driven by
  the ground-truth preference ``P(j | u) ~ pop_j^w * exp(a * <u, v_j>)``; it is placed at a
  random slot of the slate and is the click (shown-and-clicked): a multinomial-logit click
  model over the corpus. The other slate items are shown-not-clicked. With ``extra_clicks`` on,
  every other slate item is additionally clicked with probability
  ``sigmoid(click_bias + click_scale * <u, v_j>)`` (the same ground-truth affinity); those extra
  clicks are labels of the ranking stage and positives of the weak-positive strategy (off by
  default, so that every recall-stage strategy sees exactly the same clicks).
* Slates have between ``min_slate_size`` and ``slate_size`` items; the columns are padded to the
  fixed width ``slate_size`` with ``""`` (IDs) and ``-1`` (labels).

Added columns, in both ``train`` and ``test``:
  ``impressions`` [n, slate_size] str: the slate's item IDs ("" = padding),
  ``impression_clicks`` [n, slate_size] float32: 1 clicked, 0 shown-not-clicked, -1 padding.
``truth["impressions"]`` keeps the config and the policy's per-item logits of each user.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from yt_bias.data.dataset import ITEM_INDEX, RecDataset
from yt_bias.data.synthetic import SyntheticConfig, generate

IMPRESSIONS = "impressions"
IMPRESSION_CLICKS = "impression_clicks"
PADDING = ""


@dataclasses.dataclass(frozen=True)
class ImpressionsConfig:
    """The logging policy and click model (see the module docstring)."""

    slate_size: int = 10
    min_slate_size: int = 6
    policy_popularity_weight: float = 1.0
    policy_affinity: float = 3.0
    policy_noise: float = 0.6
    extra_clicks: bool = False
    click_bias: float = -3.5
    click_scale: float = 3.0
    seed: int = 1

    def __post_init__(self) -> None:
        for field in ("slate_size", "min_slate_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"ImpressionsConfig.{field} must be an integer >= 2; received {value!r}.")
        if self.min_slate_size > self.slate_size:
            raise ValueError(
                f"ImpressionsConfig.min_slate_size must be <= slate_size ({self.slate_size}); received {self.min_slate_size}."
            )
        if self.policy_noise < 0:
            raise ValueError(f"ImpressionsConfig.policy_noise must be >= 0; received {self.policy_noise!r}.")


def _user_rows(dataset: RecDataset, split: str) -> np.ndarray:
    keys = np.asarray({"train": dataset.train, "test": dataset.test}[split]["user_id"]).astype(str)
    return np.char.replace(keys, "user_", "").astype(np.int64)


def add_impressions(dataset: RecDataset, config: ImpressionsConfig | None = None) -> RecDataset:
    """Returns a copy of a synthetic ``dataset`` with slates and clicks added to train and test.

    Raises:
      ValueError: the data set has no ground truth (it is not the synthetic data) or its corpus
        is smaller than ``slate_size``.
    """
    config = config or ImpressionsConfig()
    truth = dataset.truth
    for key in ("popularity", "item_vectors", "user_vectors"):
        if key not in truth:
            raise ValueError(f"add_impressions needs the synthetic ground truth; truth['{key}'] is missing.")
    num_items = dataset.num_items
    if num_items < config.slate_size:
        raise ValueError(f"ImpressionsConfig.slate_size ({config.slate_size}) must be <= the corpus size ({num_items}).")
    rng = np.random.default_rng(config.seed)
    items_v, users_v = truth["item_vectors"], truth["user_vectors"]
    noisy = users_v + config.policy_noise * rng.normal(size=users_v.shape) / np.sqrt(users_v.shape[1])
    policy_base = config.policy_popularity_weight * np.log(truth["popularity"])
    item_names = dataset.item_ids

    splits = {}
    for split in ("train", "test"):
        data = dict({"train": dataset.train, "test": dataset.test}[split])
        users = _user_rows(dataset, split)
        chosen = np.asarray(data[ITEM_INDEX])
        n, width = len(chosen), config.slate_size
        slates = np.full((n, width), -1, np.int64)
        clicks = np.full((n, width), -1.0, np.float32)
        sizes = rng.integers(config.min_slate_size, width + 1, size=n)
        for start in range(0, n, 2048):
            stop = min(start + 2048, n)
            logits = policy_base[None, :] + config.policy_affinity * (noisy[users[start:stop]] @ items_v.T)
            logits[np.arange(stop - start), chosen[start:stop]] = -np.inf  # the chosen item is placed below
            keys = logits + rng.gumbel(size=logits.shape)
            top = np.argpartition(-keys, width - 1, axis=1)[:, : width - 1]
            order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1)
            shown = np.take_along_axis(top, order, axis=1)  # [rows, width - 1], the policy's ranking
            for r in range(stop - start):
                row, size = start + r, sizes[start + r]
                slate = shown[r, : size - 1]
                slot = rng.integers(size)
                slates[row, :size] = np.insert(slate, slot, chosen[row])
                extra = np.zeros(size - 1, bool)
                if config.extra_clicks:
                    affinity = items_v[slate] @ users_v[users[row]]
                    extra = rng.random(size - 1) < 1.0 / (1.0 + np.exp(-(config.click_bias + config.click_scale * affinity)))
                clicks[row, :size] = np.insert(extra.astype(np.float32), slot, 1.0)
        names = np.where(slates >= 0, item_names[np.maximum(slates, 0)], PADDING)
        data[IMPRESSIONS] = names.astype(str)
        data[IMPRESSION_CLICKS] = clicks
        splits[split] = data
    new_truth = dict(truth)
    new_truth["impressions"] = {"config": dataclasses.asdict(config)}
    return RecDataset(dataset.name + "+impressions", dataset.features, dataset.items, splits["train"], splits["test"], new_truth)


def generate_with_impressions(
    config: SyntheticConfig | None = None,
    impressions: ImpressionsConfig | None = None,
    embedding_dim: int = 32,
) -> RecDataset:
    """The default data (:func:`~yt_bias.data.synthetic.generate`, unchanged) plus slates and clicks."""
    dataset = generate(config or SyntheticConfig(), embedding_dim)
    return add_impressions(dataset, impressions or ImpressionsConfig())


def has_impressions(dataset: RecDataset) -> bool:
    return IMPRESSIONS in dataset.train and IMPRESSION_CLICKS in dataset.train


def impression_indices(dataset: RecDataset, split: str, label: float | None = 0.0) -> np.ndarray:
    """The slate items of each row as corpus indices, -1 elsewhere: [n, slate_size] int64.

    Args:
      label: keep only slots with this click label (0: shown-not-clicked; 1: clicked);
        None keeps every shown item.
    """
    if not has_impressions(dataset):
        raise ValueError(f"the data set '{dataset.name}' has no '{IMPRESSIONS}' columns; build it with generate_with_impressions.")
    data = {"train": dataset.train, "test": dataset.test}[split]
    names = np.asarray(data[IMPRESSIONS]).astype(str)
    lookup = {name: j for j, name in enumerate(dataset.item_ids.tolist())}
    index = np.vectorize(lambda s: lookup.get(s, -1), otypes=[np.int64])(names)
    clicks = np.asarray(data[IMPRESSION_CLICKS])
    keep = clicks >= 0 if label is None else clicks == label
    return np.where(keep & (index >= 0), index, -1)


def impression_table(dataset: RecDataset, split: str) -> dict[str, np.ndarray]:
    """One row per shown item (the ranking stage's data): ``row`` (the request), ``item_index``,
    ``position`` (slot in the slate) and ``label`` (1 clicked, 0 shown-not-clicked)."""
    index = impression_indices(dataset, split, label=None)
    clicks = np.asarray({"train": dataset.train, "test": dataset.test}[split][IMPRESSION_CLICKS])
    rows, slots = np.nonzero(index >= 0)
    return {
        "row": rows.astype(np.int64),
        ITEM_INDEX: index[rows, slots],
        "position": slots.astype(np.int64),
        "label": clicks[rows, slots].astype(np.float32),
    }
