"""The named variants of the strategies experiment: negative-sampling strategies and ranker variants.

Names only need :mod:`yt_bias.config`, so the command line lists them (``yt-bias experiment
strategies --strategies/--rankers``) without loading TensorFlow; the experiment
(:mod:`yt_bias.experiments.strategies`, :mod:`yt_bias.experiments.ranking_ablations`) reads them here.
"""

from __future__ import annotations

from yt_bias.config import NegativesConfig

__all__ = ["RANKER_VARIANTS", "STRATEGIES"]

# name -> the negatives of the retriever (the recall stage) that the experiment trains
STRATEGIES: dict[str, NegativesConfig] = {
    "random": NegativesConfig(in_batch=False, uniform_per_query=16),
    "in-batch": NegativesConfig(),
    "mixed": NegativesConfig(mixed_uniform=256),
    "cross-batch": NegativesConfig(memory_size=1024, memory_warmup_steps=100),
    "impressions-weak-positive": NegativesConfig(impressions="weak-positive", impression_reward=0.3),
    "impressions-hard-negative": NegativesConfig(impressions="hard-negative"),
    "impressions-hard-negative-x30": NegativesConfig(impressions="hard-negative", hard_negative_log_q=-3.4),
    "corrected-logq-2025": NegativesConfig(loss="corrected-logq-2025"),
    "mined-hard": NegativesConfig(mined_hard_per_query=5),
}

# name -> the RankingConfig fields it changes from the experiment's ``ranking`` config: the examples
# (impressions / the retriever's candidates), the loss (pointwise / listwise), without the recall
# score as a feature, the unshown candidates weighted 1 instead of their inverse sampling rate
RANKER_VARIANTS: dict[str, dict] = {
    "impressions-pointwise": {"examples": "impressions", "loss": "pointwise"},
    "impressions-pointwise-no-score": {"examples": "impressions", "loss": "pointwise", "retrieval_score": False},
    "impressions-listwise": {"examples": "impressions", "loss": "listwise"},
    "candidates-pointwise": {"examples": "candidates", "loss": "pointwise"},
    "candidates-listwise": {"examples": "candidates", "loss": "listwise"},
    "candidates-listwise-no-score": {"examples": "candidates", "loss": "listwise", "retrieval_score": False},
    "candidates-listwise-unshown-w1": {"examples": "candidates", "loss": "listwise", "unshown_weight": 1.0},
}
