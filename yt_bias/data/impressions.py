"""Impressions on the default data: a logging policy that shows slates, and a click model.

Three signals per request: shown-and-clicked items,
shown-not-clicked items (impressions: a weak positive or a hard negative) and never-shown items.
This module extends :func:`yt_bias.data.synthetic.generate` (whose output it leaves untouched)
with them. Generative story, all seeded:

* The logging policy is "an earlier recommender": an imperfect model of the user, with logits
  ``policy_popularity_weight * log pop_j + policy_affinity * <u~, v_j>``, where ``u~`` is the
  user's true latent vector plus Gaussian noise (``policy_noise``). Per request it draws a
  slate of ``slate_size - 1`` distinct items without replacement (Gumbel top-k), never the
  request's own item.
* The click model, ``click_model``:

  - ``"slate"`` (default): the slate is the policy's ``size - 1`` items plus the user's organic
    next item from the generator (the candidate a perfect retrieval source would add), at a random
    slot. Requests are processed in time order per user, and, as any recommender does, the policy
    never shows an item the user already consumed (clicked on an earlier slate, or watched
    organically: the generator's earlier items); an organic item already clicked is replaced by one
    more policy item. The user examines the slate and clicks exactly one item by a multinomial logit over the
    SHOWN items' ground-truth utilities ``U_j = w log pop_j + a <u, v_j> - position_bias * log(1 + slot)``
    (``w``, ``a``: the generator's own ``popularity_weight`` and ``affinity_scale``). This is the
    multinomial logit with a no-click option, kept to the requests that got a click (the no-click
    option only decides which requests survive, not which item is clicked). The request's row then
    holds the CLICKED item (its ``reward`` redrawn as the generator does, from the user's
    affinity); ``history`` stays the organic watch history. Shown-not-clicked items therefore
    carry preference signal (they lost a choice to the click), as in real logs, and
    ``P(click | shown)`` is the serving target of a ranker.
  - ``"organic"`` (the first version): the generator's choice from the WHOLE corpus is always
    the click, placed at a random slot of the policy's slate. The ranker can then only learn
    "true choice vs. policy-shown item", a signal misaligned with re-ranking candidates.

  With ``extra_clicks`` on, every other slate item is additionally clicked with probability
  ``sigmoid(click_bias + click_scale * <u, v_j>)`` (the same ground-truth affinity); those extra
  clicks are labels of the ranking stage and positives of the weak-positive strategy (off by
  default, so that every recall-stage strategy sees exactly the same clicks).
* Slates have between ``min_slate_size`` and ``slate_size`` items; the columns are padded to the
  fixed width ``slate_size`` with ``""`` (IDs) and ``-1`` (labels).

Added columns, in both ``train`` and ``test``:
  ``impressions`` [n, slate_size] str: the slate's item IDs ("" = padding),
  ``impression_clicks`` [n, slate_size] float32: 1 clicked, 0 shown-not-clicked, -1 padding.
``truth["impressions"]`` keeps the config and, with the slate click model, the generator's organic
item of each row (``organic_item_index``: {"train": [n], "test": [n]}).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from yt_bias.data.dataset import ITEM_INDEX, REWARD, RecDataset
from yt_bias.data.synthetic import SyntheticConfig, generate

IMPRESSIONS = "impressions"
IMPRESSION_CLICKS = "impression_clicks"
PADDING = ""
CLICK_MODELS = ("slate", "organic")


@dataclasses.dataclass(frozen=True)
class ImpressionsConfig:
    """The logging policy and click model (see the module docstring)."""

    slate_size: int = 10
    min_slate_size: int = 6
    policy_popularity_weight: float = 1.0
    policy_affinity: float = 3.0
    policy_noise: float = 0.6
    click_model: str = "slate"
    position_bias: float = 0.0
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
        if self.click_model not in CLICK_MODELS:
            raise ValueError(f"ImpressionsConfig.click_model must be one of {CLICK_MODELS}; received {self.click_model!r}.")
        if self.position_bias < 0:
            raise ValueError(f"ImpressionsConfig.position_bias must be >= 0; received {self.position_bias!r}.")
        if self.policy_noise < 0:
            raise ValueError(f"ImpressionsConfig.policy_noise must be >= 0; received {self.policy_noise!r}.")


def _user_rows(dataset: RecDataset, split: str) -> np.ndarray:
    return user_rows(np.asarray({"train": dataset.train, "test": dataset.test}[split]["user_id"]))


def user_rows(user_ids: np.ndarray) -> np.ndarray:
    """The synthetic users' rows in the ground truth (``"user_17"`` -> 17)."""
    return np.char.replace(np.asarray(user_ids).astype(str), "user_", "").astype(np.int64)


def click_utility(truth: dict, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The slate click model's ground-truth utility ``w log pop_j + a <u, v_j>`` (before the position
    cost) of user rows ``users`` [n] for items ``items`` [n, m] (or [m]): [n, m]."""
    users_v, items_v = truth["user_vectors"], truth["item_vectors"]
    affinity = np.einsum("nd,n...d->n...", users_v[users], items_v[items]) if np.ndim(items) == 2 else users_v[users] @ items_v[items].T
    return truth.get("popularity_weight", 1.0) * np.log(truth["popularity"])[items] + float(truth.get("affinity_scale", 5.0)) * affinity


def _slate_split(
    data: dict,
    users: np.ndarray,
    sizes: np.ndarray,
    consumed: np.ndarray,
    policy_logits,
    utility: np.ndarray,
    config: ImpressionsConfig,
    truth: dict,
    rng: np.random.Generator,
):
    """The slate click model on one split (module docstring). Requests are processed in time order per
    user (all users' t-th requests together), so that the policy never shows, and the user never
    clicks, an item the user already consumed (``consumed`` [num_users, num_items] bool, updated in place
    with every click and every organic watch). Returns ``(data, slates, clicks, organic)``."""
    items_v, users_v = truth["item_vectors"], truth["user_vectors"]
    organic = np.asarray(data[ITEM_INDEX])
    n, width = len(organic), config.slate_size
    order = np.argsort(users, kind="stable")
    starts = np.searchsorted(users[order], users[order])
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - starts
    slates = np.full((n, width), -1, np.int64)
    clicks = np.full((n, width), -1.0, np.float32)
    clicked = np.empty(n, np.int64)
    position_cost = config.position_bias * np.log1p(np.arange(width))
    for step in range(int(rank.max()) + 1 if n else 0):
        rows = np.flatnonzero(rank == step)
        u = users[rows]
        logits = policy_logits(u)
        logits[consumed[u]] = -np.inf
        logits[np.arange(len(rows)), organic[rows]] = -np.inf  # the organic item is placed below
        keys = logits + rng.gumbel(size=logits.shape)
        top = np.argpartition(-keys, width, axis=1)[:, :width]
        shown = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1), axis=1)
        available = np.isfinite(np.take_along_axis(keys, shown, axis=1))  # False: the user consumed the whole corpus
        fresh = ~consumed[u, organic[rows]]  # an organic item already clicked on the slate is not shown again
        for r, row in enumerate(rows):
            policy = shown[r][available[r]]
            size = min(sizes[row], len(policy) + int(fresh[r]))
            if size == 0:
                raise ValueError(
                    f"ImpressionsConfig: user row {u[r]} has consumed the whole corpus; expected "
                    f"num_items ({consumed.shape[1]}) well above the interactions per user."
                )
            if fresh[r]:
                slates[row, :size] = np.insert(policy[: size - 1], rng.integers(size), organic[row])
            else:
                slates[row, :size] = policy[:size]
        slate = slates[rows]
        shown_mask = slate >= 0
        safe = np.maximum(slate, 0)
        affinity = np.einsum("nd,nsd->ns", users_v[u], items_v[safe])
        score = np.where(shown_mask, utility[u[:, None], safe] - position_cost[None, :], -np.inf)
        slot = np.argmax(score + rng.gumbel(size=score.shape), axis=1)
        extra = np.zeros(slate.shape, bool)
        if config.extra_clicks:
            extra = rng.random(slate.shape) < 1.0 / (1.0 + np.exp(-(config.click_bias + config.click_scale * affinity)))
        labels = np.where(shown_mask, extra.astype(np.float32), -1.0)
        labels[np.arange(len(rows)), slot] = 1.0
        clicks[rows] = labels
        clicked[rows] = slate[np.arange(len(rows)), slot]
        consumed[u, clicked[rows]] = True
        consumed[u, organic[rows]] = True
    data = dict(data)
    data[ITEM_INDEX] = clicked
    if REWARD in data:  # as the generator: a full watch with probability sigmoid(4 <u, v_j>)
        affinity = np.einsum("nd,nd->n", users_v[users], items_v[clicked])
        data[REWARD] = (rng.random(n) < 1.0 / (1.0 + np.exp(-4.0 * affinity))).astype(np.float32)
    return data, slates, clicks, organic


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

    slate_mode = config.click_model == "slate"
    if slate_mode:
        utility = click_utility(truth, np.arange(len(users_v)), np.arange(num_items))  # [num_users, num_items] ground truth
        consumed = np.zeros((len(users_v), num_items), bool)  # carried from train into test (test is later)

    def policy_logits(user_rows: np.ndarray) -> np.ndarray:
        return policy_base[None, :] + config.policy_affinity * (noisy[user_rows] @ items_v.T)

    splits, organic = {}, {}
    for split in ("train", "test"):
        data = dict({"train": dataset.train, "test": dataset.test}[split])
        users = _user_rows(dataset, split)
        chosen = np.asarray(data[ITEM_INDEX])
        n, width = len(chosen), config.slate_size
        sizes = rng.integers(config.min_slate_size, width + 1, size=n)
        if slate_mode:
            data, slates, clicks, organic[split] = _slate_split(
                data, users, sizes, consumed, policy_logits, utility, config, truth, rng
            )
        else:
            slates = np.full((n, width), -1, np.int64)
            clicks = np.full((n, width), -1.0, np.float32)
            for start in range(0, n, 2048):
                stop = min(start + 2048, n)
                logits = policy_logits(users[start:stop])
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
    if organic:  # the generator's organic item of each row (the slate click model replaces the row's item)
        new_truth["impressions"]["organic_item_index"] = organic
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
        raise ValueError(
            f"the data set '{dataset.name}' has no '{IMPRESSIONS}' columns; build it with generate_with_impressions."
        )
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
