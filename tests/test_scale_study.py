"""The scale study's pieces on a tiny shard set, and file training's known epoch length."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from yt_bias.data.synthetic_shards import generate_shards
from yt_bias.experiments.scale import (
    ROWS,
    StudySettings,
    collision_statistics,
    count_items,
    load_rows,
    row_config,
    run_row,
)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("scale") / "data")
    generate_shards(out, num_items=400, num_interactions=6000, rows_per_shard=1500, chunk_rows=2000, seed=3)
    return out


def test_collision_statistics_by_hand():
    # Items 0..3 with 100, 5, 1, 0 rows; one hash puts 0 and 1 together, 2 alone.
    counts = np.array([100, 5, 1, 0])
    stats = collision_statistics(np.array([[0, 0, 1, 0]]), counts)
    assert stats["training_items"] == 3
    assert stats["items_per_bucket"] == pytest.approx(1.5)  # 3 training items in 2 occupied buckets
    assert stats["drowned_share"] == pytest.approx(5 / 106)  # item 1 shares with a 20x more frequent item
    assert stats["alone_share"] == pytest.approx(1 / 106)
    assert stats["items_sharing"] == pytest.approx((100 * 2 + 5 * 2 + 1 * 1) / 106)
    # A second hash that separates 0 and 1 saves item 1 (Algorithm 3 reads its cleaner bucket).
    two = collision_statistics(np.array([[0, 0, 1, 0], [0, 1, 1, 2]]), counts)
    assert two["drowned_share"] == 0.0
    with pytest.raises(ValueError, match="buckets must be"):
        collision_statistics(np.zeros((1, 3), np.int64), counts)


def test_count_items_matches_the_shards(shards):
    files = sorted(f for f in os.listdir(shards) if f.endswith(".tfrecord"))
    counts, per_file = count_items([os.path.join(shards, f) for f in files], 400)
    assert counts.sum() == sum(per_file) and len(per_file) == len(files)
    with pytest.raises(ValueError, match="item_index must be in"):
        count_items([os.path.join(shards, files[0])], 10)


def test_row_config_and_settings_are_checked(shards):
    config = row_config("H14m4", StudySettings(data=shards, batch_size=128))
    assert (config.estimator.hash_size, config.estimator.num_hashes, config.variant) == (1 << 14, 4, "correct-sfx")
    assert row_config("exact", StudySettings(data=shards)).variant == "correct-sfx-oracle"
    with pytest.raises(ValueError, match="unknown row"):
        row_config("H99m1", StudySettings(data=shards))
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        StudySettings(data=shards, epochs=0)


def test_rows_train_on_the_same_rows_and_queries(shards, tmp_path):
    settings = StudySettings(data=shards, train_rows=3000, epochs=2, batch_size=256, eval_queries=150, ks=(10, 50))
    out = str(tmp_path / "results" / "study" / "seed0")
    for name in ("H12m16", "exact", "popular"):
        run_row(name, settings, out, command=f"test {name}", log=lambda line: None)
    rows = load_rows(out)
    assert set(rows) == {"H12m16", "exact", "popular"}
    hashed, exact, popular = rows["H12m16"], rows["exact"], rows["popular"]
    assert hashed["train_rows"] == exact["train_rows"] == popular["train_rows"] >= 3000
    # The known epoch length: both epochs ran, and the optimizer counted exactly the batches trained.
    assert hashed["steps"] == 2 * hashed["batches_per_epoch"] == 2 * (hashed["train_rows"] // 256)
    assert len(hashed["loss_history"]) == 2
    assert hashed["eval_queries"] == exact["eval_queries"] == popular["eval_queries"] == 150
    assert hashed["collisions"]["items_per_bucket"] >= 1.0
    assert exact["tv_error"] < 1e-3 < hashed["tv_error"]
    assert "collisions" not in exact and "tv_error" not in popular
    assert hashed["command"] == "test H12m16" and hashed["machine"]["cpus"] >= 1
    with open(os.path.join(out, "row_exact.json")) as f:
        assert json.load(f)["settings"]["epochs"] == 2
    # A results folder made for other training rows is refused, naming both.
    with pytest.raises(ValueError, match="Use another results folder"):
        run_row("popular", StudySettings(data=shards, train_rows=1500, eval_queries=150, ks=(10,)), out)
    # The report section renders the rows (table, figure, README block) from the row files alone.
    from yt_bias.report.base import Settings
    from yt_bias.report.scale_study import read_study, readme_blocks
    from yt_bias.report.scale_study import run as run_section

    report = tmp_path / "report"
    report.mkdir()
    section = run_section(Settings(scale_results=str(tmp_path / "results")), str(report))
    table = (report / section.tables[0]).read_text()
    assert "H = 2^12, m = 16" in table and "exact counts" in table and "test H12m16" in table
    assert section.numbers["H12m16/recall@10/mean"] == hashed["recall@10"]
    assert (report / section.figures[0]).stat().st_size > 1000
    entry = {"numbers": section.numbers, "config": section.config, "figures": section.figures, "command": "yt-bias report"}
    assert "scale_study" in readme_blocks(entry)
    # Rows trained with different settings are not put in one table.
    other = str(tmp_path / "results" / "study" / "seed1")
    run_row("popular", StudySettings(data=shards, train_rows=1500, eval_queries=150, ks=(10, 50), seed=1), other)
    with pytest.raises(ValueError, match="train_rows"):
        read_study(str(tmp_path / "results"))


def test_fit_on_files_knows_its_epoch_length(shards, capsys):
    from yt_bias.config import ExperimentConfig, override
    from yt_bias.training.from_files import epoch_batches, fit_on_files

    config = ExperimentConfig()
    for assignment in ("variant=correct-sfx", "train.batch_size=512", "train.epochs=2", "train.verbose=1", "eval.ks=[10]"):
        config = override(config, assignment)
    metrics = fit_on_files(config, shards)
    batches = epoch_batches(shards + "/*.tfrecord", 512)
    assert metrics["steps"] == 2 * batches  # the optimizer's iterations are the batches trained, no extra call
    out = capsys.readouterr().out
    assert f"{batches}/{batches}" in out and "Unknown" not in out  # the progress bar has a total
    with pytest.raises(ValueError, match="larger than the"):
        epoch_batches(shards + "/*.tfrecord", 10**6)


def test_every_row_has_a_variant():
    assert {v for v, _, _ in ROWS.values()} == {"plain-sfx", "correct-sfx", "correct-sfx-oracle"}


def test_the_command_refuses_unknown_rows_and_bad_sizes(shards, capsys):
    from yt_bias.cli import main

    assert main(["experiment", "scale", "--data", shards, "--rows", "H99m1"]) == 2
    assert "unknown rows ['H99m1']" in capsys.readouterr().err
    assert main(["experiment", "scale", "--data", shards, "--epochs", "0"]) == 2
    assert "epochs must be an integer >= 1" in capsys.readouterr().err


def test_a_summary_of_earlier_seeds_pools_exactly_with_new_row_files(shards, tmp_path):
    """Seeds whose row files are gone stand in a summary of the report that rendered them; pooled
    with new row files, every mean, sd and count equals the table rendered from all the row files."""
    import dataclasses
    import shutil

    from yt_bias.report.base import Settings
    from yt_bias.report.scale_study import run as run_section
    from yt_bias.report.scale_study import summary_of

    settings = StudySettings(data=shards, train_rows=3000, epochs=1, batch_size=256, eval_queries=150, ks=(10, 50))
    every = tmp_path / "every"
    for seed in (0, 1, 2):
        out = str(every / "study" / f"seed{seed}")
        run_row("H12m16", dataclasses.replace(settings, seed=seed), out, command=f"seed {seed}", log=lambda line: None)

    def render(folder):
        report = tmp_path / f"report_{folder.name}"
        report.mkdir(exist_ok=True)
        return run_section(Settings(scale_results=str(folder)), str(report))

    reference = render(every)
    earlier = tmp_path / "earlier"
    for seed in (0, 1):
        shutil.copytree(every / "study" / f"seed{seed}", earlier / "study" / f"seed{seed}")
    entry = render(earlier)
    later = tmp_path / "later"
    shutil.copytree(every / "study" / "seed2", later / "study" / "seed2")
    summary = summary_of({"numbers": entry.numbers, "config": entry.config}, note="seeds 0 and 1")
    (later / "study" / "summary_seeds_0_1.json").write_text(json.dumps(summary))
    pooled = render(later)
    n, ref = pooled.numbers, reference.numbers
    assert n["H12m16/seeds"] == ref["H12m16/seeds"] == [0, 1, 2]
    for key in ("recall@10", "recall@50", "tv_error", "tv_error_seen", "wall_seconds"):
        assert n[f"H12m16/{key}/n"] == ref[f"H12m16/{key}/n"] == 3
        np.testing.assert_allclose([n[f"H12m16/{key}/mean"], n[f"H12m16/{key}/sd"]],
                                   [ref[f"H12m16/{key}/mean"], ref[f"H12m16/{key}/sd"]], rtol=1e-9, atol=1e-12)
    assert len({ref[f"H12m16/tv_error/{s}"] for s in ("mean", "sd")}) == 2 and ref["H12m16/tv_error/sd"] > 0
    assert pooled.config["commands"]["H12m16"] == ["seed 0", "seed 1", "seed 2"]
    assert n["H12m16/collisions/items_per_bucket"] == ref["H12m16/collisions/items_per_bucket"]
    # A seed in the summary and in a row file, or a summary trained otherwise, is refused.
    shutil.copytree(every / "study" / "seed1", later / "study" / "seed1")
    with pytest.raises(ValueError, match="a seed is in a summary and in a row file"):
        render(later)
    shutil.rmtree(later / "study" / "seed1")
    summary["settings"] = dict(summary["settings"], batch_size=512)
    (later / "study" / "summary_seeds_0_1.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="batch_size"):
        render(later)


def test_the_report_command_shows_committed_results_and_hides_machine_paths():
    from yt_bias.report.base import Settings, command_for

    assert command_for("scale_study", Settings(scale_results="docs/scale_study/"), "docs/report").endswith(
        "--only scale_study --scale-results docs/scale_study")
    for elsewhere in ("/work/runs/scale", "../runs/scale"):
        assert command_for("scale_study", Settings(scale_results=elsewhere)).endswith("--scale-results BENCH_SCALE_DIR")
