"""``yt-bias experiment strategies``: the grid and the two-stage ablations run end to end and write honest tables."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from yt_bias.cli import main
from yt_bias.experiments.ranking_ablations import RANKER_VARIANTS, ablation_rows, choose, default_variant, paired
from yt_bias.experiments.strategies import STRATEGIES, StrategiesConfig, format_tables, quick
from yt_bias.ranking.model import RankingConfig


def test_strategies_config_errors():
    with pytest.raises(ValueError, match="unknown"):
        StrategiesConfig(strategies=("in-batch", "hard"))
    with pytest.raises(ValueError, match="retriever must be one of"):
        StrategiesConfig(retriever="nope")
    with pytest.raises(ValueError, match="rankers must be among"):
        StrategiesConfig(rankers=("pointwise",))
    with pytest.raises(ValueError, match="num_candidates .* must be one of depths"):
        StrategiesConfig(num_candidates=200)
    assert set(quick().strategies) == set(STRATEGIES)
    assert default_variant(RankingConfig()) == "candidates-listwise"
    assert default_variant(RankingConfig(examples="impressions", loss="pointwise", retrieval_score=False)) == "impressions-pointwise-no-score"


def _run(seed: int, validation: dict, test: dict) -> dict:
    """A run_seed result with one variant whose grid cells have the given NDCG@10 on validation and on test."""
    grid = {key: {"validation": {"ndcg@10": validation[key]}, "test": {"ndcg@10": test[key]}} for key in validation}
    return {
        "seed": seed,
        "retrieval": {"validation": {"ndcg@10": 0.1}, "test": {"ndcg@10": 0.1 + seed / 100}},
        "variants": {"candidates-listwise": {"grid": grid}},
    }


def test_choices_are_made_on_validation_only():
    validation = {"20/0": 0.30, "20/1": 0.20, "100/0": 0.25, "100/1": 0.26}
    test = {"20/0": 0.10, "20/1": 0.50, "100/0": 0.20, "100/1": 0.40}  # the test optimum is elsewhere
    assert choose(_run(0, validation, test)["variants"]["candidates-listwise"]["grid"]) == (20, 0.0)
    assert choose(_run(0, validation, test)["variants"]["candidates-listwise"]["grid"], (100,)) == (100, 1.0)
    runs = [_run(0, validation, test), _run(1, validation, test)]
    rows = ablation_rows(runs, "candidates-listwise", 100, (20, 100))
    labels = [r.label for r in rows]
    assert labels[0] == "retrieval alone" and labels[-1].startswith("**default**")
    default = rows[-1]
    assert default.choices == [(20, 0.0), (20, 0.0)]
    assert paired(default, rows[0], "ndcg@10") == pytest.approx([0.10 - 0.10, 0.10 - 0.11])
    fixed = next(r for r in rows if r.label.startswith("candidates-listwise: ranker order"))
    assert fixed.choices == [(100, 0.0), (100, 0.0)] and [m["ndcg@10"] for m in fixed.test] == [0.20, 0.20]


def test_cli_runs_the_grid_and_writes_tables(tmp_path, capsys):
    workdir = tmp_path / "strategies"
    code = main(
        [
            "experiment",
            "strategies",
            "--quick",
            "--seeds",
            "0",
            "--strategies",
            "in-batch",
            "impressions-hard-negative",
            "--rankers",
            "impressions-pointwise",
            "candidates-listwise",
            "--workdir",
            str(workdir),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "| in-batch |" in out and "| impressions-hard-negative |" in out and "| popularity CTR (baseline) |" in out
    results = json.loads((workdir / "strategies.json").read_text())
    assert list(results["recall"]) == ["in-batch", "impressions-hard-negative"]
    for runs in results["recall"].values():
        assert [r["seed"] for r in runs] == [0]
        for run in runs:
            assert 0.0 <= run["recall@10"] <= run["recall@50"] <= 1.0
            assert run["seconds_per_epoch"] > 0
            shares = [run[f"share/{b}"] for b in ("head", "torso", "tail")]
            assert sum(shares) == pytest.approx(1.0)
            bands = [run[f"recall@10/{b}"] for b in ("head", "torso", "tail")]
            weighted = np.nansum([s * r for s, r in zip(shares, bands)])
            assert weighted == pytest.approx(run["recall@10"])  # bands partition the queries
    assert [p["seed"] for p in results["pipeline"]] == [0]
    config = quick()
    for pipe in results["pipeline"]:
        assert list(pipe["variants"]) == ["impressions-pointwise", "candidates-listwise"]
        assert 0.0 <= pipe["variants"]["impressions-pointwise"]["ranking"]["auc"] <= 1.0
        grid = pipe["variants"]["candidates-listwise"]["grid"]
        assert len(grid) == len(config.depths) * len(config.blends)
        for key, cell in grid.items():
            depth = int(key.split("/")[0])
            # re-ranking permutes the retriever's candidates: recall at the depth is retrieval's
            if depth in config.pipeline_ks:
                assert cell["test"][f"recall@{depth}"] == pytest.approx(pipe["retrieval"]["test"][f"recall@{depth}"])
            assert cell["validation"]["ndcg@10"] <= cell["validation"]["ndcg@50"] + 1e-12
    assert results["command"].startswith("yt-bias experiment strategies --data synthetic") and "--rankers" in results["command"]
    table = (workdir / "strategies.md").read_text()
    assert "retrieval alone (absolute)" in table and "**default**: candidates-listwise" in table
    assert results["command"] in table


def test_format_tables_single_seed():
    config = dataclasses.replace(quick(), strategies=("in-batch",), seeds=(0,))
    run = {f"recall@{k}": 0.5 for k in (10, 50)}
    run.update({f"recall@10/{b}": 0.5 for b in ("head", "torso", "tail")}, seconds_per_epoch=1.0)
    table = format_tables({"recall": {"in-batch": [run]}, "pipeline": [], "wall_seconds": 1.0}, config)
    assert "| in-batch | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 1.0 |" in table and "0.5000 ±" not in table


def test_cli_rejects_bad_epochs(capsys):
    assert main(["experiment", "strategies", "--quick", "--epochs", "0"]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err
