"""Experiment configuration: frozen dataclasses, one per concern, named presets and overrides.

The library never reads flags or environment variables: the CLI turns ``--set section.field=value``
into :func:`override` calls on a preset and hands the result to the library.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from yt_bias.data.synthetic import SyntheticConfig

VARIANTS = ("plain-sfx", "correct-sfx", "correct-sfx-oracle")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the examples come from. ``source='synthetic'`` is the built-in default data."""

    source: str = "synthetic"
    path: str | None = None
    synthetic: SyntheticConfig = SyntheticConfig()


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Towers and score (section 3 of the paper)."""

    embedding_dim: int = 32
    hidden_units: tuple[int, ...] = (128, 64)
    normalize: bool = True
    temperature: float = 0.05
    share_embeddings: bool = True
    remove_accidental_hits: bool = False


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


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation. The paper uses Adagrad."""

    batch_size: int = 1024
    epochs: int = 8
    optimizer: str = "adagrad"
    learning_rate: float = 0.2
    seed: int = 0
    verbose: int = 1


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Exact Recall@K over the full corpus; seen-item exclusion on by default."""

    ks: tuple[int, ...] = (10, 50, 100, 300)
    exclude_seen: bool = True


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

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}; received {self.variant!r}.")
        if self.train.batch_size < 2:
            raise ValueError(f"train.batch_size must be >= 2 (in-batch negatives); received {self.train.batch_size}.")
        if self.train.epochs < 1:
            raise ValueError(f"train.epochs must be >= 1; received {self.train.epochs}.")
        if not self.train.learning_rate > 0:
            raise ValueError(f"train.learning_rate must be > 0; received {self.train.learning_rate}.")
        if not self.eval.ks or min(self.eval.ks) < 1:
            raise ValueError(f"eval.ks must be positive integers; received {self.eval.ks}.")

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


def override(config: Any, assignment: str) -> Any:
    """Returns ``config`` with one ``section.field=value`` assignment applied (nested paths allowed)."""
    if "=" not in assignment:
        raise ValueError(f"An override must look like section.field=value; received {assignment!r}.")
    path, text = assignment.split("=", 1)
    keys = path.strip().split(".")

    def apply(obj: Any, keys: list[str], prefix: str) -> Any:
        name = keys[0]
        fields = {f.name for f in dataclasses.fields(obj)}
        if name not in fields:
            raise ValueError(f"Unknown config field '{prefix}{name}'; known: {sorted(fields)}.")
        current = getattr(obj, name)
        if len(keys) == 1:
            if dataclasses.is_dataclass(current):
                raise ValueError(f"'{prefix}{name}' is a section; set one of its fields, e.g. {prefix}{name}.<field>=...")
            return dataclasses.replace(obj, **{name: _parse_value(text.strip(), current, prefix + name)})
        if not dataclasses.is_dataclass(current):
            raise ValueError(f"'{prefix}{name}' is not a section; received the path {path!r}.")
        return dataclasses.replace(obj, **{name: apply(current, keys[1:], f"{prefix}{name}.")})

    return apply(config, keys, "")
