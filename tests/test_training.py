import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from yt_bias import config as config_lib
from yt_bias._keras import tf
from yt_bias.data.loading import load_dataset
from yt_bias.evaluation.exact import evaluate_most_popular
from yt_bias.retrieval.embedding import embed
from yt_bias.training.train import build_model, checkpoint_for, fit, train_and_evaluate

SMOKE = config_lib.smoke()


@pytest.fixture(scope="module")
def dataset():
    return load_dataset(SMOKE.data, SMOKE.model.embedding_dim)


@pytest.mark.parametrize("variant", ["plain-sfx", "correct-sfx", "correct-sfx-oracle"])
def test_each_variant_trains_and_evaluates(dataset, variant):
    metrics = train_and_evaluate(dataclasses.replace(SMOKE, variant=variant), None, dataset)
    assert set(metrics) >= {"recall@10", "recall@50", "loss_history", "train_seconds"}
    assert 0.0 <= metrics["recall@10"] <= metrics["recall@50"] <= 1.0
    assert all(np.isfinite(metrics["loss_history"]))
    if variant == "plain-sfx":
        assert metrics["estimator_tv_error"] is None
    elif variant == "correct-sfx-oracle":
        assert metrics["estimator_tv_error"] < 1e-4
    else:
        assert 0.0 < metrics["estimator_tv_error"] < 1.0


def test_training_reduces_the_loss_and_the_estimator_error(dataset):
    config = dataclasses.replace(SMOKE, train=dataclasses.replace(SMOKE.train, epochs=6))
    metrics = train_and_evaluate(config, None, dataset)
    assert metrics["loss_history"][-1] < metrics["loss_history"][0]
    short = train_and_evaluate(dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=1)), None, dataset)
    assert metrics["estimator_tv_error"] < short["estimator_tv_error"]


def test_workdir_checkpoint_restores_towers_and_estimator(dataset, tmp_path):
    model, _ = fit(SMOKE, dataset, str(tmp_path))
    for name in ("config.json", "features.json"):
        assert (tmp_path / name).exists()
    assert tf.io.gfile.glob(str(tmp_path / "tensorboard" / "*"))
    restored = build_model(SMOKE, dataset)
    restored(next(iter(tf.data.Dataset.from_tensor_slices(dataset.examples("test")).batch(4))))
    checkpoint_for(restored).restore(tf.train.latest_checkpoint(str(tmp_path / "checkpoint"))).assert_existing_objects_matched()
    np.testing.assert_array_equal(restored.frequency.interval.numpy(), model.frequency.interval.numpy())
    np.testing.assert_array_equal(restored.frequency.last_step.numpy(), model.frequency.last_step.numpy())
    assert restored.frequency.step.numpy() == model.frequency.step.numpy() > 0
    np.testing.assert_allclose(embed(restored.item_tower, dataset.items), embed(model.item_tower, dataset.items), rtol=1e-6)


def test_read_order_option_changes_what_the_first_step_sees(dataset):
    after = build_model(SMOKE, dataset)
    before = build_model(
        dataclasses.replace(SMOKE, estimator=dataclasses.replace(SMOKE.estimator, read_after_update=False)), dataset
    )
    ids = tf.constant(["item_1", "item_2"])
    np.testing.assert_allclose(
        np.exp(before.sampling_log_q(ids, update=True).numpy()), 1 / SMOKE.estimator.initial_interval, rtol=1e-5
    )
    assert np.all(np.exp(after.sampling_log_q(ids, update=True).numpy()) > 1 / SMOKE.estimator.initial_interval)


def test_model_get_config_round_trip(dataset):
    model = build_model(SMOKE, dataset)
    clone = type(model).from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.features == dataset.features


def test_the_run_directory_measures_the_estimator_on_its_estimand(dataset):
    from yt_bias.core.frequency import OracleFrequency
    from yt_bias.data.dataset import batch_frequencies
    from yt_bias.training.run_directory import estimator_tv_error

    counts = dataset.item_counts("train")
    for estimand in ("inclusion", "expected_count"):
        exact = OracleFrequency(dataset.item_ids, np.maximum(batch_frequencies(counts, 64, estimand), 1e-9), estimand=estimand)
        assert estimator_tv_error(exact, dataset.item_ids, counts, 64) < 1e-6
    # The expected-count table measured as if it estimated inclusion probabilities would be off.
    table = batch_frequencies(counts, 64, "expected_count")
    mislabelled = OracleFrequency(dataset.item_ids, np.clip(table, 1e-9, 1.0), estimand="inclusion")
    assert estimator_tv_error(mislabelled, dataset.item_ids, counts, 64) > 1e-3
    assert estimator_tv_error(None, dataset.item_ids, counts, 64) is None
    expected = rf"item_counts must have one count per item ID: expected shape \({dataset.num_items},\); received \(3,\)"
    with pytest.raises(ValueError, match=expected):
        estimator_tv_error(exact, dataset.item_ids, counts[:3], 64)


def test_most_popular_baseline_and_seen_exclusion(dataset):
    excluded = evaluate_most_popular(dataset, (10, 50), exclude_seen=True)
    kept = evaluate_most_popular(dataset, (10, 50), exclude_seen=False)
    assert excluded["recall@10"] >= kept["recall@10"]  # seen items no longer crowd out the targets
    assert 0 < excluded["recall@50"] <= 1


def test_config_overrides_and_their_errors():
    config = config_lib.override(SMOKE, "train.epochs=3")
    config = config_lib.override(config, "model.hidden_units=32,16")
    config = config_lib.override(config, "estimator.read_after_update=false")
    assert (config.train.epochs, config.model.hidden_units, config.estimator.read_after_update) == (3, (32, 16), False)
    with pytest.raises(ValueError, match="Unknown config field 'train.epoch'"):
        config_lib.override(SMOKE, "train.epoch=3")
    with pytest.raises(ValueError, match="train.epochs expects a value like 2; received 'many'"):
        config_lib.override(SMOKE, "train.epochs=many")
    with pytest.raises(ValueError, match="variant must be one of"):
        config_lib.override(SMOKE, "variant=best")


def _run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "yt_bias", *args], capture_output=True, text=True, timeout=300, env=env or os.environ.copy()
    )


def test_cli_train_and_reproduce_smoke_end_to_end(tmp_path):
    result = _run_cli("train", "--preset", "smoke", "--set", "train.epochs=1", "--workdir", str(tmp_path / "t"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["variant"] == "correct-sfx" and "recall@10" in metrics
    result = _run_cli("reproduce", "--preset", "smoke", "--set", "train.epochs=1", "--workdir", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    for method in ("most-popular", "plain-sfx tau=0.05", "correct-sfx tau=0.05", "correct-sfx-oracle tau=0.05"):
        assert f"| {method} |" in result.stdout
    assert (tmp_path / "r" / "table.md").exists()
    bad = _run_cli("train", "--preset", "smoke", "--set", "train.learning_rate=-1", "--workdir", str(tmp_path / "b"))
    assert bad.returncode == 2 and "train.learning_rate must be finite and > 0; received -1.0" in bad.stderr


def test_importing_tensorflow_with_keras_3_first_is_refused():
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    code = "import tensorflow\nimport yt_bias.core.model"  # a tf-keras part
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode != 0
    assert "Call yt_bias.use_tf_keras() (or import those parts) before tensorflow, or set TF_USE_LEGACY_KERAS=1" in result.stderr
