"""The ranking stage (pCTR on impressions) and the two-stage pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from yt_bias import config as config_lib
from yt_bias._keras import tf
from yt_bias.data.dataset import ITEM_INDEX
from yt_bias.data.impressions import ImpressionsConfig, generate_with_impressions
from yt_bias.data.synthetic import SyntheticConfig
from yt_bias.retrieval.embedding import embed
from yt_bias.ranking.two_stage import evaluate_two_stage, rerank, retrieve
from yt_bias.ranking.model import (
    LABEL,
    RETRIEVAL_SCORE,
    RankingConfig,
    RankingModel,
    auc,
    calibration,
    evaluate_ranking,
    log_loss,
    popularity_ctr,
    ranking_examples,
    train_ranking,
    uses_retrieval_score,
)
from yt_bias.training.train import fit


@pytest.fixture(scope="module")
def data():
    synthetic = SyntheticConfig(num_users=250, num_items=120, interactions_per_user=10, num_categories=4, history_length=4)
    return generate_with_impressions(synthetic, ImpressionsConfig(slate_size=6, min_slate_size=4), embedding_dim=8)


@pytest.fixture(scope="module")
def retriever(data):
    config = dataclasses.replace(
        config_lib.smoke(),
        model=config_lib.ModelConfig(embedding_dim=8, hidden_units=(8,)),
        train=config_lib.TrainConfig(batch_size=64, epochs=1, verbose=0),
    )
    return fit(config, data)[0]


@pytest.fixture(scope="module")
def ranker(data, retriever):
    return train_ranking(
        data, RankingConfig(epochs=2, hidden_units=(16,), batch_size=256, learning_rate=0.01), retriever=retriever
    )


def test_auc_matches_pairwise_count():
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.3
    scores = np.round(rng.normal(size=200) + labels, 1)  # ties on purpose
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert auc(labels, scores) == pytest.approx(pairwise, abs=1e-12)
    assert auc([0, 1], [0.2, 0.9]) == 1.0
    with pytest.raises(ValueError, match="both classes"):
        auc([1, 1], [0.1, 0.2])


def test_log_loss_and_calibration():
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    result = calibration(np.array([0, 0, 1, 1]), np.array([0.1, 0.1, 0.9, 0.9]), bins=2)
    assert result["observed_ctr"] == 0.5 and result["calibration_ratio"] == pytest.approx(1.0)
    assert result["ece"] == pytest.approx(0.1)
    assert [b["observed"] for b in result["bins"]] == [0.0, 1.0]


def test_ranking_examples(data):
    examples = ranking_examples(data, "train")
    shown = (np.asarray(data.train["impressions"]) != "").sum()
    assert len(examples[LABEL]) == shown
    assert examples[LABEL].sum() == data.num_train  # one click per request by default
    np.testing.assert_array_equal(examples["item_id"], data.item_ids[examples[ITEM_INDEX]])


def test_retrieval_score_feature(data, retriever, ranker):
    model, _ = ranker
    assert uses_retrieval_score(model)
    examples = ranking_examples(data, "test", retriever)
    q = embed(retriever.query_tower, {k: np.asarray(v)[examples["row"][:5]] for k, v in data.test.items()})
    v = embed(retriever.item_tower, data.items)[examples[ITEM_INDEX][:5]]
    np.testing.assert_allclose(examples[RETRIEVAL_SCORE][:5, 0], np.sum(q * v, axis=1), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="retrieval_score.*received None"):
        evaluate_ranking(model, data)
    plain, _ = train_ranking(data, RankingConfig(epochs=1, hidden_units=(8,), retrieval_score=False), retriever=retriever)
    assert not uses_retrieval_score(plain) and 0.0 <= evaluate_ranking(plain, data)["auc"] <= 1.0


def test_ranking_model_config_round_trip(ranker):
    model, _ = ranker
    clone = RankingModel.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert [s.name for s in clone.specs] == [s.name for s in model.specs]
    assert len(clone.crosses) == model.cross_layers == 1


def test_ranker_learns_and_beats_chance(data, ranker, retriever):
    model, info = ranker
    assert info["loss_history"][-1] < info["loss_history"][0]
    metrics = evaluate_ranking(model, data, retriever)
    assert 0.55 < metrics["auc"] <= 1.0
    assert 0.5 < metrics["calibration_ratio"] < 2.0
    baseline = evaluate_ranking(None, data)
    assert 0.0 <= baseline["auc"] <= 1.0
    ctr = popularity_ctr(data)
    assert ctr.shape == (data.num_items,) and np.all((ctr > 0) & (ctr < 1))


def test_two_stage_pipeline(data, ranker, retriever):
    model, _ = ranker
    result = evaluate_two_stage(retriever, model, data, num_candidates=20, ks=(5, 20), max_queries=150, blend=1.0)
    assert result["num_queries"] == 150
    # re-ranking permutes the same N candidates: Recall@N is unchanged, Recall@K <= Recall@N
    for order in ("two_stage", "two_stage_blend"):
        assert result[f"{order}/recall@20"] == result["retrieval/recall@20"]
        assert result[f"{order}/ndcg@5"] <= result[f"{order}/ndcg@20"] + 1e-12
    assert result["two_stage/recall@5"] <= result["two_stage/recall@20"]
    queries = {k: np.asarray(v)[:7] for k, v in data.test.items()}
    candidates = retrieve(retriever, data, queries, 10)
    reordered = rerank(model, data, queries, candidates, retriever=retriever)
    np.testing.assert_array_equal(np.sort(candidates, axis=1), np.sort(reordered, axis=1))
    assert not np.array_equal(candidates, reordered)  # the ranker does re-order
    with pytest.raises(ValueError, match="ks must be <= num_candidates"):
        evaluate_two_stage(retriever, model, data, num_candidates=5, ks=(10,))
    with pytest.raises(ValueError, match="needs retrieval_scores"):
        rerank(model, data, queries, candidates, blend=1.0, retriever=retriever)
    with pytest.raises(ValueError, match="expected retriever"):
        rerank(model, data, queries, candidates)
    assert tf.executing_eagerly()
