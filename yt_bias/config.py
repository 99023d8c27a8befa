"""Experiment configuration: frozen dataclasses, one per concern, named presets and overrides.

The library never reads flags or environment variables: the CLI turns ``--set section.field=value``
into :func:`override` calls on a preset and hands the result to the library.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from yt_bias.estimands import DEFAULT_ESTIMAND, ESTIMANDS, PAIRED_CANDIDATES, check_estimand

VARIANTS = ("plain-sfx", "correct-sfx", "correct-sfx-oracle")
LOSS_IMPLEMENTATIONS = ("auto", "dense", "blockwise")  # the in-batch softmax loss (yt_bias.core.losses.softmax_loss)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the built-in synthetic data generator (its generative story: :mod:`yt_bias.data.synthetic`)."""

    num_users: int = 6000
    num_items: int = 3000
    num_categories: int = 20
    tags_per_category: int = 8
    num_regions: int = 8
    latent_dim: int = 16
    interactions_per_user: int = 30
    popularity_exponent: float = 1.0
    popularity_weight: float = 1.0
    affinity_scale: float = 5.0
    history_length: int = 10
    train_fraction: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        for field in (
            "num_users",
            "num_items",
            "num_categories",
            "tags_per_category",
            "num_regions",
            "latent_dim",
            "interactions_per_user",
            "history_length",
        ):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SyntheticConfig.{field} must be an integer >= 1; received {value!r}.")
        if self.interactions_per_user >= self.num_items:
            raise ValueError(
                f"SyntheticConfig.interactions_per_user ({self.interactions_per_user}) must be < num_items ({self.num_items})."
            )
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"SyntheticConfig.train_fraction must be in (0, 1); received {self.train_fraction!r}.")
        if self.popularity_exponent < 0 or self.popularity_weight < 0 or self.affinity_scale < 0:
            raise ValueError("SyntheticConfig: popularity_exponent, popularity_weight and affinity_scale must be >= 0.")


@dataclasses.dataclass(frozen=True)
class ColumnsConfig:
    """Column mapping of a CSV / TSV / Parquet interactions file (``data.source='interactions'``).

    Feature lists are comma-separated column names, each optionally ``name:kind`` with kind
    ``categorical``, ``dense`` or ``bag`` (tokens separated by ``|``); without a kind, numeric
    columns are dense and others categorical. See yt_bias/data/interactions.py.
    """

    user: str = "user_id"
    item: str = "item_id"
    time: str = "timestamp"  # numbers or ISO 8601 dates; '' for none (then only data.split=random)
    rating: str = ""  # turned into rewards by data.reward; '' for implicit feedback (r = 1)
    reward: str = ""  # used as the reward as is (>= 0); excludes rating
    user_features: str = ""
    item_features: str = ""
    format: str = ""  # 'csv', 'tsv' or 'parquet'; '' from the file's extension
    delimiter: str = ""  # '' for the format's (',' or tab)
    encoding: str = "utf-8"


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the examples come from. ``source='synthetic'`` is the built-in default data."""

    source: str = "synthetic"
    path: str | None = None
    synthetic: SyntheticConfig = SyntheticConfig()
    # Real data (source 'movielens', 'recbole', 'mind' or 'interactions'; see yt_bias/data/splits.py and docs/real_data.md).
    split: str = "temporal"  # 'temporal' (global time cut), 'user-last-n' or 'random'
    test_fraction: float = 0.2  # share of interactions after the time cut / drawn at random
    last_n: int = 1  # held-out interactions per user for split='user-last-n'
    reward: str = "threshold"  # 'threshold': r = 1 if rating >= min_rating_positive else 0; 'rating'; 'binary'
    min_rating_positive: float = 4.0
    history_length: int = 10  # the bag of the user's most recent earlier interactions
    split_seed: int = 0
    columns: ColumnsConfig = ColumnsConfig()  # source 'interactions': which column is which


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Towers and score (section 3 of the paper)."""

    embedding_dim: int = 32
    hidden_units: tuple[int, ...] = (128, 64)
    normalize: bool = True
    temperature: float = 0.05
    share_embeddings: bool = True
    remove_accidental_hits: bool = False
    candidates: str = "rows"  # in-batch candidate columns: 'rows' (one per row) or 'unique' (one per distinct item)
    # Train a candidates/estimand pairing other than yt_bias.estimands.PAIRED_CANDIDATES (rows with expected_count,
    # unique with inclusion): off, so a mismatch is a config error; `yt-bias experiment estimand` sets it to compare them.
    allow_unpaired_estimand: bool = False
    # The softmax loss: 'dense' ([B, N] logits), 'blockwise' (candidate blocks, memory linear in B) or 'auto'
    # (blockwise from yt_bias.core.losses.BLOCKWISE_FROM_CANDIDATES candidates on; docs/performance.md).
    loss_implementation: str = "auto"
    loss_block_size: int = 256  # candidates per block of the blockwise loss

    def __post_init__(self) -> None:
        if self.loss_implementation not in LOSS_IMPLEMENTATIONS:
            raise ValueError(
                f"model.loss_implementation must be one of {LOSS_IMPLEMENTATIONS}; received {self.loss_implementation!r}."
            )
        block = self.loss_block_size
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise ValueError(f"model.loss_block_size must be an integer >= 1; received {block!r}.")


@dataclasses.dataclass(frozen=True)
class EstimatorConfig:
    """The streaming frequency estimator (section 4): H, m, alpha, B0, and the read order."""

    hash_size: int = 1 << 16
    num_hashes: int = 1
    alpha: float = 0.01
    initial_interval: float = 100.0
    read_after_update: bool = True
    bias_correction: bool = False
    seed: int = 0
    # What p estimates (yt_bias.estimands): 'expected_count' (rows of the item per batch; matches one candidate column
    # per row, the default, chosen by `yt-bias experiment estimand`) or 'inclusion' (P(item in batch); pairs with
    # model.candidates=unique).
    estimand: str = DEFAULT_ESTIMAND


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation. The paper uses Adagrad."""

    batch_size: int = 1024
    epochs: int = 20
    optimizer: str = "adagrad"
    learning_rate: float = 0.2
    seed: int = 0
    verbose: int = 1


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Exact Recall@K over the full corpus; seen-item exclusion on by default."""

    ks: tuple[int, ...] = (10, 50, 100, 300)
    exclude_seen: bool = True
    exclude: str = "train"  # with exclude_seen: 'train' (the user's training items) or 'known' (every earlier item)


STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "parameter_server")


@dataclasses.dataclass(frozen=True)
class DistributeConfig:
    """tf.distribute training (see yt_bias/training/distribute.py and docs/distributed.md); 'default' is one device."""

    strategy: str = "default"
    gather_negatives_across_replicas: bool = False  # in-batch negatives from all replicas' items
    num_logical_cpus: int = 0  # >0: split the CPU into this many logical devices (tests, MirroredStrategy on CPU)
    min_shard_bytes: int = 256 << 10  # PS: variables larger than this are sharded over the parameter servers
    max_shards: int = 0  # PS: at most this many shards per variable (0 = one per parameter server)
    steps: int = 0  # PS: training steps (closures) to schedule; 0 = train.epochs over the training data
    # PS: shards of each estimator array (bucket b -> shard b % S, placed round-robin over the parameter servers);
    # 0 = min(max_shards or number of PS, ceil(bytes of one [m, H] int64 array / min_shard_bytes)); 1 = unsharded.
    estimator_shards: int = 0
    checkpoint_every: int = 0  # PS: the chief also checkpoints every this many closures (0 = only at the end)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"distribute.strategy must be one of {STRATEGIES}; received {self.strategy!r}.")
        if self.estimator_shards < 0 or self.checkpoint_every < 0:
            raise ValueError(
                "distribute.estimator_shards and distribute.checkpoint_every must be >= 0; "
                f"received {self.estimator_shards}, {self.checkpoint_every}."
            )


# The popularity drifts of the synthetic day-by-day stream (yt_bias.data.drift); "" in stream.drift_kind = none.
DRIFT_KINDS: tuple[str, ...] = ("none", "gradual", "sudden", "lifecycle", "periodic")


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    """Sequential (day by day) training, section 5 of the paper (see yt_bias/training/day_by_day.py)."""

    days: int = 5
    source: str = "generator"  # 'generator' (the synthetic data, resampled per day) or 'files' (day_*.npz in path)
    path: str | None = None
    rows_per_day: int = 0  # generator: rows sampled per day (0 = the training rows / days)
    popularity_shift: float = 1.0  # generator: strength of the day-to-day popularity drift (0 = none)
    epochs_per_day: int = 1
    # generator: a drift kind of DRIFT_KINDS (yt_bias.data.drift):
    # the days are drawn from the synthetic data's generative model under that drift ("" = the resampling above)
    drift_kind: str = ""
    # a frequency source by name (yt_bias.training.day_by_day.build_frequency_source: 'stream-a0.01', the past-only
    # 'frozen-day0', 'cumulative', 'previous-day', the oracles, 'none'); "" = the one config.variant names
    frequency_source: str = ""

    def __post_init__(self) -> None:
        if self.days < 1 or self.epochs_per_day < 1:
            raise ValueError(f"stream.days and stream.epochs_per_day must be >= 1; received {self.days}, {self.epochs_per_day}.")
        if self.source not in ("generator", "files"):
            raise ValueError(f"stream.source must be 'generator' or 'files'; received {self.source!r}.")


NEGATIVE_LOSSES = ("sampled-softmax", "corrected-logq-2025")
IMPRESSION_MODES = ("none", "weak-positive", "hard-negative")


@dataclasses.dataclass(frozen=True)
class NegativesConfig:
    """Negative-sampling strategy of the recall stage (yt_bias/core/negatives.py; docs/negative_sampling.md).

    The defaults mean "in-batch negatives only", the paper's setting. Fields combine:
      in_batch: the other positives of the batch are negatives (off + ``uniform_per_query`` > 0:
        random negatives only).
      uniform_per_query: K items drawn uniformly from the corpus for each query (random negatives).
      mixed_uniform: B' items drawn uniformly from the corpus, shared by the batch (mixed negative
        sampling, Yang et al. 2020); corrected with the batch/uniform mixture proposal.
      memory_size, memory_warmup_steps: cross-batch negatives (Wang et al. 2021): a FIFO memory of
        the last ``memory_size`` item embeddings (no gradient), used after the warm-up steps.
      impressions: 'weak-positive' (shown items as extra positives with reward
        ``impression_reward``) or 'hard-negative' (the query's shown-not-clicked items as extra
        negatives of that query only); needs a data set with impressions.
      hard_negative_log_q: the log q of hard-negative columns: 0 (default) treats them as
        included with probability 1; a negative value up-weights them like sampled negatives.
      loss: 'sampled-softmax' (the paper's corrected softmax) or 'corrected-logq-2025'
        (Khrylchenko et al. 2025).
      correct_positive: subtract log q from the positive's logit too (the paper's choice).
      mined_hard_per_query: k hard negatives per query mined from the model itself: the k
        highest-scoring items under the current towers, the positive excluded, masked to their
        query (0 = off).
      mined_pool: where they are mined: 0 = the whole corpus (exact top-k); P > 0 = a pool of P
        items drawn uniformly per step (cheaper on large corpora; needs P > mined_hard_per_query).
    """

    in_batch: bool = True
    uniform_per_query: int = 0
    mixed_uniform: int = 0
    memory_size: int = 0
    memory_warmup_steps: int = 50
    impressions: str = "none"
    impression_reward: float = 0.3
    hard_negative_log_q: float = 0.0
    loss: str = "sampled-softmax"
    correct_positive: bool = True
    mined_hard_per_query: int = 0
    mined_pool: int = 0

    def __post_init__(self) -> None:
        for field in ("uniform_per_query", "mixed_uniform", "memory_size", "memory_warmup_steps", "mined_hard_per_query",
                      "mined_pool"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"NegativesConfig.{field} must be an integer >= 0; received {value!r}.")
        if self.impressions not in IMPRESSION_MODES:
            raise ValueError(f"NegativesConfig.impressions must be one of {IMPRESSION_MODES}; received {self.impressions!r}.")
        if self.loss not in NEGATIVE_LOSSES:
            raise ValueError(f"NegativesConfig.loss must be one of {NEGATIVE_LOSSES}; received {self.loss!r}.")
        if not 0.0 < self.impression_reward <= 1.0:
            raise ValueError(f"NegativesConfig.impression_reward must be in (0, 1]; received {self.impression_reward!r}.")
        if self.mined_pool and not 0 < self.mined_hard_per_query < self.mined_pool:
            raise ValueError(f"NegativesConfig.mined_pool must be 0 (whole corpus) or > mined_hard_per_query >= 1 "
                             f"(mined_hard_per_query={self.mined_hard_per_query}); received {self.mined_pool}.")
        if not self.in_batch and not (self.uniform_per_query or self.mixed_uniform or self.memory_size
                                      or self.impressions == "hard-negative" or self.mined_hard_per_query):
            raise ValueError("NegativesConfig.in_batch=False needs another source of negatives (uniform_per_query, "
                             "mixed_uniform, memory_size, mined_hard_per_query or impressions='hard-negative'); "
                             "received none.")

    @property
    def is_default(self) -> bool:
        """True for plain in-batch negatives (the model then runs the paper's loss unchanged)."""
        return self == NegativesConfig()


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one training run needs."""

    name: str = "default"
    variant: str = "correct-sfx"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    estimator: EstimatorConfig = EstimatorConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    negatives: NegativesConfig = NegativesConfig()
    distribute: DistributeConfig = DistributeConfig()
    stream: StreamConfig = StreamConfig()

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}; received {self.variant!r}.")
        if self.train.batch_size < 2:
            raise ValueError(f"train.batch_size must be >= 2 (in-batch negatives); received {self.train.batch_size}.")
        if self.train.epochs < 1:
            raise ValueError(f"train.epochs must be >= 1; received {self.train.epochs}.")
        if not 0 < self.train.learning_rate < float("inf"):
            raise ValueError(f"train.learning_rate must be finite and > 0; received {self.train.learning_rate}.")
        if not 0 < self.model.temperature < float("inf"):
            raise ValueError(f"model.temperature must be finite and > 0; received {self.model.temperature}.")
        check_estimand(self.estimator.estimand, "estimator.estimand")
        if self.eval.exclude not in ("train", "known"):
            raise ValueError(f"eval.exclude must be 'train' or 'known'; received {self.eval.exclude!r}.")
        if self.model.candidates not in ("rows", "unique"):
            raise ValueError(f"model.candidates must be 'rows' or 'unique'; received {self.model.candidates!r}.")
        paired = PAIRED_CANDIDATES[self.estimator.estimand]
        if self.variant != "plain-sfx" and self.model.candidates != paired and not self.model.allow_unpaired_estimand:
            pairs = ", ".join(f"estimator.estimand={e} with model.candidates={PAIRED_CANDIDATES[e]}" for e in ESTIMANDS)
            raise ValueError(
                f"model.candidates={self.model.candidates!r} does not pair with estimator.estimand="
                f"{self.estimator.estimand!r}: expected model.candidates={paired!r} ({pairs}). Set "
                "model.allow_unpaired_estimand=true to train the unpaired combination on purpose."
            )
        if not self.eval.ks or min(self.eval.ks) < 1:
            raise ValueError(f"eval.ks must be positive integers; received {self.eval.ks}.")
        for field, value, low in (("train.seed", self.train.seed, 0), ("model.embedding_dim", self.model.embedding_dim, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{field} must be an integer >= {low}; received {value!r}.")
        if not 0.0 < self.data.test_fraction < 1.0:
            raise ValueError(f"data.test_fraction must be in (0, 1); received {self.data.test_fraction!r}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def default() -> ExperimentConfig:
    """The default data and settings of ``yt-bias train`` and ``yt-bias reproduce`` (a few minutes on 2 cores)."""
    return ExperimentConfig()


def smoke() -> ExperimentConfig:
    """A tiny configuration for tests: seconds, not minutes."""
    return ExperimentConfig(
        name="smoke",
        data=DataConfig(
            synthetic=SyntheticConfig(num_users=300, num_items=200, interactions_per_user=12, num_categories=5, history_length=4)
        ),
        model=ModelConfig(embedding_dim=8, hidden_units=(16, 8)),
        estimator=EstimatorConfig(hash_size=1024),
        train=TrainConfig(batch_size=64, epochs=2, verbose=0),
        eval=EvalConfig(ks=(10, 50)),
    )


PRESETS = {"default": default, "smoke": smoke}


def preset(name: str) -> ExperimentConfig:
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; known presets: {sorted(PRESETS)}.")
    return PRESETS[name]()


def _parse_value(text: str, current: Any, path: str) -> Any:
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{path} expects a boolean (true/false); received {text!r}.")
    try:
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, tuple):
            parts = [p for p in text.replace("[", "").replace("]", "").split(",") if p.strip()]
            kind = type(current[0]) if current else int
            return tuple(kind(p.strip()) for p in parts)
    except ValueError:
        raise ValueError(f"{path} expects a value like {current!r}; received {text!r}.") from None
    if current is None or isinstance(current, str):
        return None if text.lower() == "none" else text
    raise ValueError(f"{path} cannot be set from the command line (type {type(current).__name__}).")


def override(config: Any, *assignments: str) -> Any:
    """Returns ``config`` with ``section.field=value`` assignments applied (nested paths allowed).

    The assignments are applied together and the result is validated once, so that fields that
    must agree (``model.candidates`` and ``estimator.estimand``) can be changed in one call.
    """
    values = dataclasses.asdict(config)
    for assignment in assignments:
        if "=" not in assignment:
            raise ValueError(f"An override must look like section.field=value; received {assignment!r}.")
        path, text = assignment.split("=", 1)
        keys = path.strip().split(".")
        obj, node, prefix = config, values, ""
        for depth, name in enumerate(keys):
            fields = {f.name for f in dataclasses.fields(obj)}
            if name not in fields:
                raise ValueError(f"Unknown config field '{prefix}{name}'; known: {sorted(fields)}.")
            current = getattr(obj, name)
            if depth == len(keys) - 1:
                if dataclasses.is_dataclass(current):
                    raise ValueError(f"'{prefix}{name}' is a section; set one of its fields, e.g. {prefix}{name}.<field>=...")
                node[name] = _parse_value(text.strip(), current, prefix + name)
            elif not dataclasses.is_dataclass(current):
                raise ValueError(f"'{prefix}{name}' is not a section; received the path {path!r}.")
            else:
                obj, node, prefix = current, node[name], f"{prefix}{name}."
    return _from_dict(type(config), values, "")


INDEX_KINDS = ("scann", "brute_force")


@dataclasses.dataclass(frozen=True)
class IndexConfig:
    """The serving index (section 5.4 of the paper): ScaNN or exact brute force, and every ScaNN knob.

    Zero means "choose from the corpus size, as ScaNN's guidance says": ``num_leaves`` about
    sqrt(N), ``num_leaves_to_search`` a tenth of the leaves (at least 1), corpora smaller than
    ``brute_force_below`` scored by ScaNN's brute force (no tree, no quantisation).
    """

    kind: str = "scann"
    k: int = 10
    num_leaves: int = 0
    num_leaves_to_search: int = 0
    training_sample_size: int = 250_000
    dimensions_per_block: int = 2
    anisotropic_quantization_threshold: float = 0.2
    reorder: int = 200
    brute_force_below: int = 20_000
    training_threads: int = 0
    embed_batch_size: int = 8192
    parallel: bool = True

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"IndexConfig.kind must be one of {INDEX_KINDS}; received {self.kind!r}.")
        for field in ("k", "training_sample_size", "dimensions_per_block", "embed_batch_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"IndexConfig.{field} must be an integer >= 1; received {value!r}.")
        for field in ("num_leaves", "num_leaves_to_search", "reorder", "brute_force_below", "training_threads"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"IndexConfig.{field} must be an integer >= 0 (0 = automatic); received {value!r}.")


def _from_dict(cls: Any, data: dict, prefix: str) -> Any:
    defaults = cls()
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"Unknown config field(s) {[prefix + u for u in unknown]}; known: {sorted(known)}.")
    values = {}
    for name, value in data.items():
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current):
            values[name] = _from_dict(type(current), value, f"{prefix}{name}.")
        elif isinstance(current, tuple) and value is not None:
            values[name] = tuple(value)
        else:
            values[name] = value
    return cls(**values)


def from_dict(data: dict, cls: Any = None) -> Any:
    """Rebuilds a config dataclass (an :class:`ExperimentConfig` by default) from its ``to_dict()``/config.json."""
    if not isinstance(data, dict):
        raise TypeError(f"from_dict expects a dict (a config's to_dict()); received {type(data).__name__}.")
    return _from_dict(cls or ExperimentConfig, data, "")
