"""notebooks/01_frequency_estimation.ipynb runs end to end (small stream, small Proposition 4.1 run)."""

from __future__ import annotations

from notebook_run import count_images, errors, run_notebook, shown_text


def test_notebook_runs_figures_variant_and_prop41(tmp_path):
    parameters = (
        "STREAM = dict(num_items=100, batch_size=12, num_steps=1000, switch_step=500, seed=0)\n"
        "EVAL_EVERY = 50\n"
        "PROP41 = dict(alphas=(0.2,), delta0_factors=(1.0, 4.0), num_hits=20, num_replicas=1000, hash_size=1 << 16)"
    )
    nb = run_notebook("01_frequency_estimation.ipynb", parameters, tmp_path)
    assert not errors(nb)
    text = shown_text(nb)
    assert count_images(nb) == 3  # Figure 4, Figure 5, Proposition 4.1
    assert "Sum of exact pi_i = 12.000000" in text
    assert "| alpha=0.001 m=1 H=5000 | " in text and "| alpha=0.01 m=4 H=1250 | " in text
    assert "warm-up (0, 100]" in text
    assert "for the corrected bias" in text
