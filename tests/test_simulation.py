"""The frequency-estimation study (section 6.1, Proposition 4.1): the stream, the exact targets, the findings."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest

from yt_bias import StreamingFrequencyEstimator, cli, studies
from yt_bias.studies import EstimatorSetting, Prop41Config, SimulationStreamConfig


def _brute_force_inclusion(weights: np.ndarray, batch_size: int) -> np.ndarray:
    """Sums the probability of every ordered sequence of successive draws."""
    p = weights / weights.sum()
    out = np.zeros(weights.size)
    for sequence in itertools.permutations(range(weights.size), batch_size):
        prob, remaining = 1.0, 1.0
        for j in sequence:
            prob *= p[j] / remaining
            remaining -= p[j]
        out[list(sequence)] += prob
    return out


def test_inclusion_probabilities_equal_brute_force_and_sum_to_batch_size():
    weights = np.array([0.5, 1.0, 2.0, 3.0, 0.1, 0.0, 7.0])
    exact = studies.inclusion_probabilities(weights, 3)
    np.testing.assert_allclose(exact, _brute_force_inclusion(weights, 3), atol=1e-10)
    assert exact.sum() == pytest.approx(3.0, abs=1e-9)
    assert exact[5] == 0.0


def test_inclusion_probabilities_match_numpy_choice_and_gumbel_sampler_not_b_times_q():
    weights = np.arange(30, dtype=np.float64) ** 2
    batch_size, draws = 8, 20000
    exact = studies.inclusion_probabilities(weights, batch_size)
    assert exact.sum() == pytest.approx(batch_size, abs=1e-9)
    rng = np.random.default_rng(1)
    q = weights / weights.sum()
    numpy_counts = np.zeros(weights.size)
    for _ in range(draws):
        numpy_counts[rng.choice(weights.size, batch_size, replace=False, p=q)] += 1
    gumbel = studies.sample_batches(weights, batch_size, draws, rng)
    assert all(len(set(row)) == batch_size for row in gumbel[:100])  # distinct items per batch
    gumbel_counts = np.bincount(gumbel.ravel(), minlength=weights.size)
    se = np.sqrt(exact * (1 - exact) / draws) + 1e-12
    assert np.max(np.abs(numpy_counts / draws - exact) / se) < 5
    assert np.max(np.abs(gumbel_counts / draws - exact) / se) < 5
    # The paper's B * q_i is measurably wrong for the popular items.
    assert np.max(np.abs(batch_size * q - exact) / se) > 20


def test_inclusion_probabilities_reject_bad_input():
    with pytest.raises(ValueError, match="at least that many positive weights"):
        studies.inclusion_probabilities([1.0, 0.0, 2.0], 3)
    with pytest.raises(ValueError, match="non-negative"):
        studies.inclusion_probabilities([1.0, -1.0, 2.0], 1)
    with pytest.raises(ValueError, match="batch_size"):
        SimulationStreamConfig(num_items=10, batch_size=10)


def test_stream_switches_popularity():
    stream = SimulationStreamConfig(num_items=50, batch_size=5, num_steps=400, switch_step=200)
    batches = stream.batches()
    assert batches.shape == (400, 5)
    assert not np.any(batches[:200] == 0)  # q_0 = 0 before the switch
    assert not np.any(batches[200:] == 49)  # and q_{M-1} = 0 after it
    assert batches[:200].mean() > 35
    assert batches[200:].mean() < 15
    before, after = stream.targets()
    np.testing.assert_allclose(after, before[::-1])
    assert list(stream.phase_of_step(np.array([1, 200, 201]))) == [0, 0, 1]


@pytest.fixture(scope="module")
def smoke_run():
    """One small stream (M=200, B=25, 3000 steps, switch at 1500) for the qualitative findings."""
    settings = [
        EstimatorSetting(alpha=0.02, hash_size=1000),
        EstimatorSetting(alpha=0.2, hash_size=1000),
        EstimatorSetting(alpha=0.05, num_hashes=1, hash_size=400),
        EstimatorSetting(alpha=0.05, num_hashes=4, hash_size=100),
        EstimatorSetting(alpha=0.005, hash_size=1000),
        EstimatorSetting(alpha=0.005, hash_size=1000, bias_correction=True),
    ]
    return studies.run_stream_simulation(SimulationStreamConfig.smoke(), settings, eval_every=50)


def _mean(result, label, lo, hi):
    mask = (result.steps > lo) & (result.steps <= hi)
    return float(result.errors[label][mask].mean())


def test_error_decreases_during_warm_up_and_jumps_at_the_switch(smoke_run):
    errors = smoke_run.errors["alpha=0.02 m=1 H=1000"]
    steps = smoke_run.steps
    assert errors[steps == 1500][0] < 0.6 * errors[steps == 100][0]
    assert errors[steps == 1550][0] > 2 * errors[steps == 1500][0]
    assert errors[-1] < 0.5 * errors[steps == 1550][0]


def test_higher_alpha_adapts_faster_after_the_switch_and_settles_higher(smoke_run):
    low, high = "alpha=0.02 m=1 H=1000", "alpha=0.2 m=1 H=1000"
    assert _mean(smoke_run, high, 1500, 1800) < 0.8 * _mean(smoke_run, low, 1500, 1800)
    assert _mean(smoke_run, high, 1000, 1500) > 1.15 * _mean(smoke_run, low, 1000, 1500)


def test_more_hashes_lower_the_error_at_equal_memory(smoke_run):
    one, four = "alpha=0.05 m=1 H=400", "alpha=0.05 m=4 H=100"
    assert _mean(smoke_run, four, 1000, 1500) < 0.8 * _mean(smoke_run, one, 1000, 1500)
    assert _mean(smoke_run, four, 2500, 3000) < 0.8 * _mean(smoke_run, one, 2500, 3000)


def test_bias_correction_removes_the_slow_warm_up(smoke_run):
    plain, corrected = "alpha=0.005 m=1 H=1000", "alpha=0.005 m=1 H=1000 +bias_correction"
    assert _mean(smoke_run, corrected, 0, 1500) < 0.5 * _mean(smoke_run, plain, 0, 1500)


def test_bias_correction_reads_the_gap_average_and_round_trips():
    plain = StreamingFrequencyEstimator(64, 2, alpha=0.01, initial_interval=100.0)
    corrected = StreamingFrequencyEstimator(64, 2, alpha=0.01, initial_interval=100.0, bias_correction=True)
    for t in range(1, 13):  # item 7 every 3 steps (first gap 3), item 9 never
        ids = np.array([7, 1]) if t % 3 == 0 else np.array([1])
        plain.update(ids)
        corrected.update(ids)
    p_plain, p_corrected = plain.probability(np.array([7, 9])).numpy(), corrected.probability(np.array([7, 9])).numpy()
    assert p_plain[0] < 0.011  # Algorithm 2 still reads about B0 = 100
    assert p_corrected[0] == pytest.approx(1 / 3, rel=1e-4)  # the average of the gaps seen
    assert p_plain[1] == p_corrected[1] == pytest.approx(0.01)  # never hit: 1 / B0 for both
    clone = StreamingFrequencyEstimator.from_config(corrected.get_config())
    assert clone.bias_correction and not StreamingFrequencyEstimator.from_config(plain.get_config()).bias_correction
    with pytest.raises(TypeError, match="bias_correction"):
        StreamingFrequencyEstimator(64, bias_correction="yes")


def test_tf_estimator_equals_numpy_reference_and_per_item_loop_differs():
    stream = SimulationStreamConfig(num_items=100, batch_size=12, num_steps=600, switch_step=300)
    setting = EstimatorSetting(alpha=0.05, num_hashes=2, hash_size=60)
    tf_result = studies.run_stream_simulation(stream, [setting], eval_every=100, estimator_seed=3)
    steps, errors = studies.numpy_reference_errors(stream, setting, eval_every=100, estimator_seed=3)
    np.testing.assert_array_equal(steps, tf_result.steps)
    np.testing.assert_allclose(errors, tf_result.errors[setting.label], atol=1e-5)
    _, literal = studies.numpy_reference_errors(stream, setting, per_item_updates=True, eval_every=100, estimator_seed=3)
    assert np.max(np.abs(literal - errors)) > 1e-3  # in-batch collisions make the literal loop different


def test_checkpoint_steps_are_the_reference_steps_on_the_paper_stream():
    assert studies.checkpoint_steps(SimulationStreamConfig()) == list(studies.REFERENCE_STEPS)
    assert studies.checkpoint_steps(SimulationStreamConfig.smoke(), 50) == [750, 1500, 1550, 1800, 3000]


def test_variant_comparison_windows(smoke_run):
    rows = studies.variant_comparison(smoke_run)
    assert [r["window"] for r in rows] == [
        "warm-up (0, 300]",
        "settled (750, 1500]",
        "after switch (1500, 1800]",
        "end (2700, 3000]",
    ]
    assert rows[0]["ratio"] < 0.5  # alpha = 0.005: the variant removes the warm-up
    assert "| setting | window |" in studies.markdown_table(rows)


def test_compare_with_reference_reports_relative_differences():
    stream = SimulationStreamConfig()
    steps = np.array(studies.REFERENCE_STEPS)
    settings = studies.figure_settings(5, bias_correction=None)
    errors = {s.label: np.full(steps.size, 0.1) for s in settings}
    result = studies.SimulationResult(steps, errors, {s.label: s for s in settings}, stream, "exact", {})
    rows = studies.compare_with_reference(result)
    assert len(rows) == 3 * len(steps)  # the bias-corrected curves have no reference
    row = next(r for r in rows if r["label"] == "alpha=0.01 m=4 H=1250" and r["step"] == 20000)
    assert row["rel_diff"] == pytest.approx(0.1 / 0.063 - 1)


def test_prop41_closed_forms_unroll_the_recursion():
    alpha, delta, sigma2, delta0 = 0.1, 5.0, 20.0, 17.0
    mean, var, means, variances = delta0, 0.0, [], []
    for _ in range(30):
        mean = (1 - alpha) * mean + alpha * delta
        var = (1 - alpha) ** 2 * var + alpha**2 * sigma2
        means.append(mean)
        variances.append(var)
    closed = studies.prop41_closed_forms(alpha, delta, sigma2, delta0, np.arange(1, 31))
    np.testing.assert_allclose(closed["bias"], np.array(means) - delta, rtol=1e-12)
    np.testing.assert_allclose(closed["variance"], variances, rtol=1e-12)
    assert np.all(closed["variance_bound"] >= closed["variance"])
    assert not np.allclose(closed["bias_misprint"], closed["bias"])


def test_prop41_estimator_supports_the_corrected_bias_not_the_misprint():
    result = studies.run_prop41(Prop41Config.smoke())
    assert result.num_valid > 2900
    for row in result.summary():
        assert row["rms_z_corrected"] < 3, row
        assert 0.8 < row["max_variance_over_exact"] < 1.25, row
        if not row["bias_correction"]:
            assert row["rms_z_misprint"] > 5, row
            assert row["max_variance_over_bound"] <= 1.0, row
    ideal = [r for r in result.summary() if r["delta0"] in ("1*delta", "delta/(1-alpha)") and not r["bias_correction"]]
    by_label = {r["delta0"]: r for r in ideal}
    assert abs(by_label["1*delta"]["bias_t1"]) < 0.1 < abs(by_label["delta/(1-alpha)"]["bias_t1"])


def test_cli_simulate_writes_csv_and_png(tmp_path):
    out = tmp_path / "fig"
    argv = ["simulate", "--figure", "5", "--output", str(out), "--num-items", "60", "--batch-size", "6"]
    argv += ["--steps", "400", "--switch-step", "200", "--eval-every", "50", "--total-buckets", "240", "--variant", "none"]
    assert cli.main(argv) == 0
    with open(out / "figure5.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "alpha=0.01 m=1 H=240", "alpha=0.01 m=2 H=120", "alpha=0.01 m=4 H=60"]
    assert [int(r[0]) for r in rows[1:]] == list(range(50, 401, 50))
    assert all(0.0 <= float(v) <= 2.0 for r in rows[1:] for v in r[1:])
    assert (out / "figure5.png").read_bytes()[:4] == b"\x89PNG"

    argv = ["simulate", "--figure", "prop41", "--output", str(out), "--alphas", "0.2"]
    argv += ["--num-replicas", "500", "--num-hits", "10", "--variant", "none"]
    assert cli.main(argv) == 0
    with open(out / "prop41.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["bias_correction"] for r in rows} == {"False"}
    assert (out / "prop41.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_simulate_reports_bad_arguments(tmp_path, capsys):
    argv = ["simulate", "--figure", "4", "--num-items", "10", "--batch-size", "10", "--output", str(tmp_path)]
    assert cli.main(argv) == 2
    assert "batch_size" in capsys.readouterr().err
