"""The ranking stage (pCTR on impressions or on the retriever's candidates, pointwise or listwise) and the two-stage pipeline."""

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
from yt_bias.ranking.two_stage import evaluate_two_stage, rerank, retrieve, two_stage_order, validation_split
from yt_bias.ranking.model import (
    LABEL,
    RETRIEVAL_SCORE,
    WEIGHT,
    RankingConfig,
    RankingModel,
    auc,
    calibration,
    candidate_examples,
    evaluate_ranking,
    listwise_loss,
    log_loss,
    popularity_ctr,
    ranking_examples,
    slate_auc,
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
    config = RankingConfig(epochs=2, hidden_units=(16,), batch_size=256, learning_rate=0.01, examples="impressions", loss="pointwise")
    return train_ranking(data, config, retriever=retriever)


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
    plain, _ = train_ranking(
        data, RankingConfig(epochs=1, hidden_units=(8,), retrieval_score=False, examples="impressions"), retriever=retriever
    )
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


def test_ranking_config_errors():
    with pytest.raises(ValueError, match="RankingConfig.examples must be one of"):
        RankingConfig(examples="clicks")
    with pytest.raises(ValueError, match="RankingConfig.loss must be one of"):
        RankingConfig(loss="pairwise")
    with pytest.raises(ValueError, match="unshown_weight must be > 0; received 0"):
        RankingConfig(unshown_weight=0.0)
    with pytest.raises(ValueError, match="unshown_per_request must be <= candidate_depth"):
        RankingConfig(candidate_depth=5, unshown_per_request=6)


def test_slate_auc_is_the_mean_within_request_auc():
    labels = np.array([1, 0, 0, 0, 1, 1, 0])
    scores = np.array([0.9, 0.1, 0.95, 0.2, 0.3, 0.2, 0.4])
    rows = np.array([0, 0, 0, 1, 1, 2, 2])  # request 1 has one non-click and one click; request 2 the same
    assert slate_auc(labels, scores, rows) == pytest.approx(np.mean([0.5, 1.0, 0.0]))
    assert slate_auc(labels, scores + 10.0 * rows, rows) == pytest.approx(slate_auc(labels, scores, rows))  # offsets per request
    with pytest.raises(ValueError, match="both a click and a non-click"):
        slate_auc([1, 1], [0.1, 0.2], [0, 1])


def test_listwise_loss_is_the_weighted_softmax_cross_entropy():
    logits = np.array([1.0, 0.2, -0.5, 0.3, 0.7], np.float32)
    labels = np.array([1, 0, 0, 0, 1], np.float32)
    weights = np.array([1, 1, 4, 1, 2], np.float32)
    groups = np.array([0, 0, 0, 1, 1], np.int32)
    loss = listwise_loss(tf.constant(logits), tf.constant(labels), tf.constant(weights), tf.constant(groups), 2)
    first = -(1.0 - np.log(np.exp(1.0) + np.exp(0.2) + 4 * np.exp(-0.5)))
    second = -(0.7 - np.log(np.exp(0.3) + 2 * np.exp(0.7)))
    assert float(loss) == pytest.approx((first + second) / 2, rel=1e-5)
    no_click = listwise_loss(tf.constant(logits), tf.constant(labels * np.float32([1, 1, 1, 0, 0])), tf.constant(weights), tf.constant(groups), 2)
    assert float(no_click) == pytest.approx(first, rel=1e-5)  # a request without a click does not count


def test_candidate_examples(data, retriever):
    config = RankingConfig(candidate_depth=30, unshown_per_request=4, click_weight=2.0, impression_weight=0.5)
    examples = candidate_examples(data, "train", retriever, config)
    shown = ranking_examples(data, "train")
    unshown = examples[WEIGHT] > 2.0  # the inverse sampling rate (30 - slate) / 4 > 2
    assert len(examples[LABEL]) == len(shown[LABEL]) + unshown.sum() and np.all(np.diff(examples["row"]) >= 0)
    assert unshown.sum() == 4 * data.num_train
    np.testing.assert_array_equal(np.unique(examples[WEIGHT][~unshown]), [0.5, 2.0])
    assert np.all(examples[LABEL][examples[WEIGHT] == 2.0] == 1) and np.all(examples[LABEL][unshown] == 0)
    queries = {k: np.asarray(v) for k, v in data.train.items()}
    top = retrieve(retriever, data, queries, 30)
    seen = data.seen_items()
    slates = {(r, i) for r, i in zip(shown["row"].tolist(), shown[ITEM_INDEX].tolist())}
    for row, item in list(zip(examples["row"][unshown].tolist(), examples[ITEM_INDEX][unshown].tolist()))[:200]:
        assert item in top[row] and (row, item) not in slates and item not in seen[str(queries["user_id"][row])]
    width = np.bincount(shown["row"])[examples["row"][unshown]]
    assert np.all(examples["position"][unshown].astype(int) < width)
    with pytest.raises(ValueError, match="needs the recall-stage model"):
        candidate_examples(data, "train", None, config)


def test_listwise_ranker_on_candidates_learns(data, retriever):
    config = RankingConfig(epochs=2, hidden_units=(16,), batch_size=256, learning_rate=0.01, candidate_depth=30, unshown_per_request=4)
    model, info = train_ranking(data, config, retriever=retriever)
    assert (config.examples, config.loss) == ("candidates", "listwise")  # the defaults
    assert info["loss_history"][-1] < info["loss_history"][0] and info["num_examples"] > 4 * data.num_train
    assert evaluate_ranking(model, data, retriever)["slate_auc"] > 0.55


def test_validation_split(data):
    held = validation_split(data, per_user=2)
    assert held.num_train + held.num_test == data.num_train
    users = np.asarray(data.train["user_id"]).astype(str)
    times = np.asarray(data.train["timestamp"])
    held_users = np.asarray(held.test["user_id"]).astype(str)
    for user in np.unique(users):
        mine = np.sort(times[users == user])
        validation = np.sort(np.asarray(held.test["timestamp"])[held_users == user])
        np.testing.assert_array_equal(validation, mine[-2:] if len(mine) > 2 else [])  # a short history stays in training
    assert len(set(held_users.tolist())) > 0.9 * len(np.unique(users))
    with pytest.raises(ValueError, match="per_user .* must be an integer >= 1; received 0"):
        validation_split(data, per_user=0)


def test_two_stage_order_depth_and_blend():
    candidates = np.array([[5, 6, 7, 8]])
    ranker = np.array([[0.0, 1.0, 2.0, 3.0]])
    recall = np.array([[4.0, 1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(two_stage_order(candidates, ranker), [[8, 7, 6, 5]])
    np.testing.assert_array_equal(two_stage_order(candidates, ranker, depth=2), [[6, 5, 7, 8]])  # below depth: retrieval order
    np.testing.assert_array_equal(two_stage_order(candidates, ranker, recall, blend=1.0), [[5, 8, 6, 7]])  # scores 4, 2, 2, 3
    with pytest.raises(ValueError, match="depth must be in"):
        two_stage_order(candidates, ranker, depth=5)
    with pytest.raises(ValueError, match="blend must be >= 0"):
        two_stage_order(candidates, ranker, recall, blend=-1.0)
