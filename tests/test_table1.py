"""The table1 grid (variants x tau x seeds + MostPop + TFRS Retrieval) and its CLI on tiny real-format data."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from cli_args import TINY_MODEL, set_args
from yt_bias.config import DataConfig, EvalConfig, ModelConfig, TrainConfig
from yt_bias.data.loading import load_dataset
from yt_bias.experiments.table1 import TFRS_METHOD, format_table1, movielens_config, run_table1


def _write_recbole(root, users=40, items=30, per_user=12, seed=0):
    """A small popularity-skewed RecBole data set written to ``root/tiny``."""
    rng = np.random.default_rng(seed)
    d = os.path.join(root, "tiny")
    os.makedirs(d)
    popularity = 1.0 / np.arange(1, items + 1)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(users):
        chosen = rng.choice(items, per_user, replace=False, p=popularity / popularity.sum())
        for t, i in enumerate(chosen):
            lines.append(f"u{u}\ti{i}\t{rng.integers(1, 6)}\t{1000 * t + u}")
    with open(os.path.join(d, "tiny.inter"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(d, "tiny.item"), "w") as f:
        f.write("item_id:token\tclass:token_seq\n" + "".join(f"i{i}\tg{i % 3} g{i % 5}\n" for i in range(items)))
    return d


def _tiny_config(path):
    config = movielens_config()
    return dataclasses.replace(
        config,
        data=DataConfig(source="recbole", path=path, split="temporal", history_length=3),
        model=ModelConfig(embedding_dim=8, hidden_units=(8,)),
        train=TrainConfig(batch_size=32, epochs=1, verbose=0),
        eval=EvalConfig(ks=(5, 10)),
    )


def test_grid_rows_metrics_and_spread(tmp_path):
    config = _tiny_config(_write_recbole(str(tmp_path)))
    dataset = load_dataset(config.data, config.model.embedding_dim)
    # The CLI test below runs all three variants; here the oracle and TFRS, with two seeds each.
    rows = run_table1(config, dataset, temperatures=(0.1,), variants=("correct-sfx-oracle",), seeds=(0, 1), progress=False)
    assert [r.method for r in rows] == ["most-popular", "correct-sfx-oracle", TFRS_METHOD]
    for row in rows[1:]:
        assert row.temperature == 0.1 and [run["seed"] for run in row.runs] == [0, 1]
        for run in row.runs:
            assert 0 <= run["recall@5"] <= run["recall@10"] <= 1
            assert 0 <= run["ndcg@10"] <= run["recall@10"]
            assert 0 < run["coverage@10"] <= 1
            assert np.isfinite(run["final_loss"])
    # Seeds differ, so the spread over seeds is computed from two different runs.
    assert rows[1].runs[0]["final_loss"] != rows[1].runs[1]["final_loss"]
    # MostPop recommends one list to everyone, minus each user's seen items: coverage@5 <= (5 + max seen) / corpus.
    popular = rows[0].runs[0]
    max_seen = max(len(v) for v in dataset.seen_items().values())
    assert popular["coverage@5"] <= (5 + max_seen) / dataset.num_items
    shares = sum(popular[f"share/{b}"] for b in ("head", "torso", "tail"))
    assert shares == pytest.approx(1.0)
    table = format_table1(rows, config.eval.ks)
    assert "| tfrs-retrieval tau=0.1 |" in table and "±" in table and "Recall@10 by popularity band" in table


def test_cli_table1_writes_markdown_and_json(tmp_path, capsys):
    from yt_bias.cli import main

    path = _write_recbole(str(tmp_path))
    workdir = str(tmp_path / "out")
    options = ["--data", path, "--seeds", "0", "--temperatures", "0.07", "--no-tfrs", "--workdir", workdir]
    code = main(["experiment", "table1", *options, *set_args("train.epochs=1", "train.batch_size=32"), *TINY_MODEL])
    assert code == 0
    out = capsys.readouterr().out
    assert "recbole:tiny" in out and "| correct-sfx tau=0.07 |" in out
    with open(os.path.join(workdir, "table1.json")) as f:
        data = json.load(f)
    assert [d["method"] for d in data] == ["most-popular", "plain-sfx", "correct-sfx", "correct-sfx-oracle"]
    assert os.path.isfile(os.path.join(workdir, "table1.md"))
    assert main(["experiment", "table1", "--data", str(tmp_path / "missing")]) == 2
