"""Samplers of softmax candidates, without any model: an item tower (a plain function) and a frequency source.

Each sampler returns a typed block of the right shapes, whose log q is the log of the expected
count under the samplers' proposal; :func:`concat_blocks` stacks blocks into the loss's inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from yt_bias._keras import tf
from yt_bias.core.candidates import BatchView, CandidateBlock, Proposal, concat_blocks
from yt_bias.core.cross_batch import CrossBatchMemory, CrossBatchSampler
from yt_bias.core.frequency import OracleFrequency
from yt_bias.core.samplers import (
    HARD_NEGATIVES,
    ImpressionSampler,
    InBatchSampler,
    ItemCorpus,
    MinedSampler,
    SharedUniformSampler,
    UniformPerQuerySampler,
)

NUM_ITEMS, DIM, BATCH = 12, 4, 3
IDS = np.array([f"item_{i}" for i in range(NUM_ITEMS)])
TABLE = np.random.default_rng(0).normal(size=(NUM_ITEMS, DIM)).astype(np.float32)
P = np.linspace(0.02, 0.6, NUM_ITEMS).astype(np.float32)


def item_tower(rows, training=False):
    """A fixed embedding per item, looked up by the 'index' feature: no model, no weights."""
    return tf.gather(tf.constant(TABLE), rows["index"])


@pytest.fixture
def corpus():
    return ItemCorpus({"item_id": IDS, "index": np.arange(NUM_ITEMS, dtype=np.int64)}, "item_id")


@pytest.fixture
def frequency():
    return OracleFrequency(IDS, P, estimand="expected_count")


def _view(positives=(1, 5, 7), query=None, features=None):
    index = np.asarray(positives)
    query = TABLE[index] if query is None else query
    return BatchView(
        features={"item_id": tf.constant(IDS[index]), **(features or {})},
        query=tf.constant(query),
        items=tf.constant(TABLE[index]),
        ids=tf.constant(IDS[index]),
        log_p=tf.math.log(tf.constant(P[index])),
    )


PROPOSAL = Proposal(unigram=1.0, uniform_draws=3, num_items=NUM_ITEMS)


def _p(ids) -> np.ndarray:
    return P[[int(i.decode().split("_")[1]) for i in ids.numpy()]]


def test_in_batch_block_is_the_batch_with_the_mixture_count(frequency):
    view = _view()
    block = InBatchSampler().sample(view, item_tower, frequency, PROPOSAL, training=False)
    assert block.embeddings.shape == (BATCH, DIM) and block.ids.shape == (BATCH,) and block.mask.shape == (BATCH, BATCH)
    assert block.mask.numpy().all()
    np.testing.assert_allclose(block.log_q.numpy(), np.log(P[[1, 5, 7]] + 3 / NUM_ITEMS), rtol=1e-6)
    own = InBatchSampler(in_batch=False).sample(view, item_tower, frequency, PROPOSAL, training=False)
    np.testing.assert_array_equal(own.mask.numpy(), np.eye(BATCH, dtype=bool))  # each query sees its own positive
    assert InBatchSampler().sample(view, item_tower, None, PROPOSAL, training=False).log_q is None


def test_shared_uniform_block(corpus, frequency):
    sampler = SharedUniformSampler(corpus, 5)
    assert sampler.uniform_draws == 5 and sampler.unigram(BATCH) == 0.0
    tf.random.set_seed(1)
    block = sampler.sample(_view(), item_tower, frequency, PROPOSAL, training=False)
    assert block.embeddings.shape == (5, DIM) and block.ids.shape == (5,) and block.mask is None
    index = [int(i.decode().split("_")[1]) for i in block.ids.numpy()]
    np.testing.assert_allclose(block.embeddings.numpy(), TABLE[index])  # the item tower's embeddings of the drawn items
    np.testing.assert_allclose(block.log_q.numpy(), np.log(_p(block.ids) + 3 / NUM_ITEMS), rtol=1e-6)


def test_uniform_per_query_block_is_masked_to_its_query(corpus, frequency):
    block = UniformPerQuerySampler(corpus, 2).sample(_view(), item_tower, frequency, PROPOSAL, training=False)
    assert block.embeddings.shape == (BATCH * 2, DIM) and block.mask.shape == (BATCH, BATCH * 2)
    np.testing.assert_array_equal(block.mask.numpy(), np.repeat(np.eye(BATCH, dtype=bool), 2, axis=1))
    np.testing.assert_allclose(block.log_q.numpy(), np.log(_p(block.ids) + 3 / NUM_ITEMS), rtol=1e-6)


def test_impression_block_is_fixed_and_masked(corpus, frequency):
    shown = np.array([[2, 3], [4, -1], [-1, -1]])
    view = _view(features={HARD_NEGATIVES: tf.constant(shown)})
    block = ImpressionSampler(corpus, log_q=-1.5).sample(view, item_tower, frequency, PROPOSAL, training=False)
    assert block.embeddings.shape == (BATCH * 2, DIM) and block.ids.shape == (BATCH * 2,)
    expected = np.repeat(np.eye(BATCH, dtype=bool), 2, axis=1) & (shown.reshape(-1) >= 0)[None, :]
    np.testing.assert_array_equal(block.mask.numpy(), expected)
    np.testing.assert_array_equal(block.ids.numpy()[:3].astype(str), IDS[[2, 3, 4]])
    np.testing.assert_allclose(block.log_q.numpy(), -1.5)  # a fixed set: one constant, whatever p
    assert ImpressionSampler(corpus).sample(view, item_tower, None, PROPOSAL, training=False).log_q is None
    with pytest.raises(ValueError, match="hard negatives need the batch column 'hard_negative_index'"):
        ImpressionSampler(corpus).sample(_view(), item_tower, frequency, PROPOSAL, training=False)


def test_mined_block_holds_each_querys_best_items(corpus, frequency):
    query = np.random.default_rng(1).normal(size=(BATCH, DIM)).astype(np.float32)
    view = _view(query=query)
    sampler = MinedSampler(corpus, 2)
    block = sampler.sample(view, item_tower, frequency, PROPOSAL, training=False)
    assert block.embeddings.shape == (BATCH * 2, DIM) and block.sure_ids.shape == (BATCH, 2)
    scores = query @ TABLE.T
    for i, positive in enumerate((1, 5, 7)):
        scores[i, positive] = -np.inf  # the positive is never mined
        best = set(IDS[np.argsort(-scores[i])[:2]])
        assert set(block.ids.numpy()[2 * i : 2 * i + 2].astype(str)) == best
        assert set(block.sure_ids.numpy()[i].astype(str)) == best
    np.testing.assert_array_equal(block.mask.numpy(), np.repeat(np.eye(BATCH, dtype=bool), 2, axis=1))
    assert sampler.inclusion == 1.0 and MinedSampler(corpus, 2, pool=6).inclusion == 0.5
    with pytest.raises(ValueError, match="mined_pool must be <= the corpus size 12; received 13"):
        MinedSampler(corpus, 2, pool=13)


def test_cross_batch_block_reads_the_memory_and_observe_pushes(corpus, frequency):
    memory = CrossBatchMemory(size=4, dim=DIM, warmup_steps=1)
    sampler = CrossBatchSampler(memory, corpus)
    view = _view(features={"item_index": tf.constant([1, 5, 7], tf.int64)})
    empty = sampler.sample(view, item_tower, frequency, PROPOSAL, training=True)
    assert empty.embeddings.shape == (4, DIM) and not empty.mask.numpy().any() and not empty.gradient
    assert float(sampler.unigram(BATCH)) == 0.0
    loss = sampler.observe(view, tf.constant(2.5))
    assert float(loss) == 2.5
    block = sampler.sample(view, item_tower, frequency, PROPOSAL, training=True)
    np.testing.assert_array_equal(block.mask.numpy(), np.tile([True, True, True, False], (BATCH, 1)))
    np.testing.assert_array_equal(block.ids.numpy()[:3].astype(str), IDS[[1, 5, 7]])
    np.testing.assert_allclose(block.embeddings.numpy()[:3], TABLE[[1, 5, 7]])
    np.testing.assert_allclose(float(sampler.unigram(BATCH)), 3 / BATCH)  # 3 filled slots of a batch of 3


def test_concat_blocks_adds_sure_inclusions_and_keeps_fixed_log_q(corpus, frequency):
    view = _view()
    proposal = Proposal(unigram=1.0, uniform_draws=0, num_items=NUM_ITEMS)
    positives = InBatchSampler().sample(view, item_tower, frequency, proposal, training=False)
    # query 0 surely sees item_5 (a positive column) and item_9; the other queries none of them
    sure = CandidateBlock(
        tf.constant(TABLE[[9, 5]]),
        tf.constant(IDS[[9, 5]]),
        mask=tf.constant([[True, True], [False, False], [False, False]]),
        expected_count=tf.constant(P[[9, 5]]),
        sure_ids=tf.constant([[IDS[9], IDS[5]], [IDS[0], IDS[0]], [IDS[0], IDS[0]]]),
        sure_probability=0.5,
    )
    fixed = CandidateBlock(tf.constant(TABLE[[3]]), tf.constant(IDS[[3]]), fixed_log_q=-2.0)
    candidates = concat_blocks([positives, sure, fixed], view.batch_size)
    assert candidates.embeddings.shape == (6, DIM) and candidates.mask.shape == (BATCH, 6)
    log_q = candidates.log_q.numpy()
    np.testing.assert_allclose(log_q[0, :5], np.log(P[[1, 5, 7, 9, 5]] + 0.5 * np.array([0, 1, 0, 1, 1])), rtol=1e-6)
    np.testing.assert_allclose(log_q[1:, :5], np.log(np.tile(P[[1, 5, 7, 9, 5]], (2, 1))), rtol=1e-6)
    np.testing.assert_allclose(log_q[:, 5], -2.0)
    np.testing.assert_array_equal(candidates.mask.numpy()[:, 5], True)  # no mask: every query sees the column
    uncorrected = InBatchSampler().sample(view, item_tower, None, proposal, training=False)
    assert concat_blocks([uncorrected], view.batch_size).log_q is None
    with pytest.raises(ValueError, match=r"every block must carry a correction or none; received corrected=\[False, True\]"):
        concat_blocks([uncorrected, fixed], view.batch_size)
    with pytest.raises(ValueError, match="at least one block"):
        concat_blocks([], view.batch_size)


def test_corpus_errors():
    with pytest.raises(ValueError, match="items has no item-ID feature 'item_id'; present: \\['id'\\]"):
        ItemCorpus({"id": IDS})
    with pytest.raises(ValueError, match="one row per item"):
        ItemCorpus({"item_id": IDS, "index": np.arange(3)})


def test_sampled_counts_use_the_sources_own_clip_of_p():
    """A sampled column's expected count reads log q through the source: an expected count above 1 is not cut to 1."""
    ids = tf.constant(["a", "b", "z"])  # "z" is not in the tables: the default probability
    proposal = Proposal(unigram=1.0, uniform_draws=0, num_items=NUM_ITEMS)
    counts = OracleFrequency(["a", "b"], [2.5, 0.5], estimand="expected_count")
    np.testing.assert_allclose(proposal.count_of(counts, ids).numpy(), [2.5, 0.5, 1e-6], rtol=1e-5)
    inclusion = OracleFrequency(["a", "b"], [1.0, 0.5], estimand="inclusion")
    np.testing.assert_allclose(proposal.count_of(inclusion, ids).numpy(), [1.0, 0.5, 1e-6], rtol=1e-5)
    assert proposal.count_of(None, ids) is None
