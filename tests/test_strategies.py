"""``yt-bias experiment strategies``: the grid runs end to end and writes honest tables."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from yt_bias.cli import main
from yt_bias.experiments.strategies import STRATEGIES, StrategiesConfig, format_tables, quick


def test_strategies_config_errors():
    with pytest.raises(ValueError, match="unknown"):
        StrategiesConfig(strategies=("in-batch", "hard"))
    with pytest.raises(ValueError, match="retriever must be one of"):
        StrategiesConfig(retriever="nope")
    assert set(quick().strategies) == set(STRATEGIES)


def test_cli_runs_the_grid_and_writes_tables(tmp_path, capsys):
    workdir = tmp_path / "strategies"
    code = main(
        [
            "experiment",
            "strategies",
            "--quick",
            "--seeds",
            "0",
            "1",
            "--strategies",
            "in-batch",
            "impressions-hard-negative",
            "--workdir",
            str(workdir),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "| in-batch |" in out and "| impressions-hard-negative |" in out and "| popularity CTR |" in out
    results = json.loads((workdir / "strategies.json").read_text())
    assert list(results["recall"]) == ["in-batch", "impressions-hard-negative"]
    for runs in results["recall"].values():
        assert [r["seed"] for r in runs] == [0, 1]
        for run in runs:
            assert 0.0 <= run["recall@10"] <= run["recall@50"] <= 1.0
            assert run["seconds_per_epoch"] > 0
            shares = [run[f"share/{b}"] for b in ("head", "torso", "tail")]
            assert sum(shares) == pytest.approx(1.0)
            bands = [run[f"recall@10/{b}"] for b in ("head", "torso", "tail")]
            weighted = np.nansum([s * r for s, r in zip(shares, bands)])
            assert weighted == pytest.approx(run["recall@10"])  # bands partition the queries
    assert len(results["ranking"]) == 2 and 0.0 <= results["ranking"][0]["auc"] <= 1.0
    assert len(results["pipeline"]) == 2 and "two_stage/ndcg@10" in results["pipeline"][0]
    table = (workdir / "strategies.md").read_text()
    assert "±" in table and "Two stages" in table


def test_format_tables_single_seed():
    config = dataclasses.replace(quick(), strategies=("in-batch",), seeds=(0,))
    run = {f"recall@{k}": 0.5 for k in (10, 50)}
    run.update({f"recall@10/{b}": 0.5 for b in ("head", "torso", "tail")}, seconds_per_epoch=1.0)
    table = format_tables({"recall": {"in-batch": [run]}, "ranking": [], "pipeline": [], "wall_seconds": 1.0}, config)
    assert "| in-batch | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 1.0 |" in table and "0.5000 ±" not in table


def test_cli_rejects_bad_epochs(capsys):
    assert main(["experiment", "strategies", "--quick", "--epochs", "0"]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err
