"""Sequential (day by day) training: per-day checkpoints, and a SIGKILLed run resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from yt_bias import config as config_lib
from yt_bias.data.loading import load_dataset
from yt_bias.training.day_by_day import STATE_FILE, file_days, generator_days, train_stream, write_days

DAYS = 4
OVERRIDES = [f"stream.days={DAYS}", "stream.rows_per_day=3000", "stream.popularity_shift=2.0", "train.verbose=0"]


def _config():
    config = config_lib.smoke()
    for assignment in OVERRIDES:
        config = config_lib.override(config, assignment)
    return config


def _completed(workdir: str) -> int:
    try:
        with open(os.path.join(workdir, STATE_FILE), encoding="utf-8") as f:
            return int(json.load(f)["completed_days"])
    except (OSError, ValueError, KeyError):
        return 0


def _estimator_arrays(model):
    f = model.frequency
    return int(f.step.numpy()), f.last_step.numpy(), f.interval.numpy()


def test_generator_days_drift_and_file_round_trip(tmp_path):
    config = _config()
    dataset = load_dataset(config.data, config.model.embedding_dim)
    days = generator_days(dataset, config.stream, seed=0)
    assert len(days) == DAYS and all(len(d["item_index"]) == 3000 for d in days)
    first = np.bincount(days[0]["item_index"], minlength=dataset.num_items)
    last = np.bincount(days[-1]["item_index"], minlength=dataset.num_items)
    # The popularity shift moves the item distribution between the first and the last day.
    assert 0.5 * np.abs(first / first.sum() - last / last.sum()).sum() > 0.2
    again = generator_days(dataset, config.stream, seed=0)
    np.testing.assert_array_equal(again[2]["item_index"], days[2]["item_index"])
    write_days(days, str(tmp_path))
    loaded = file_days(str(tmp_path))
    assert len(loaded) == DAYS
    for name in days[1]:
        np.testing.assert_array_equal(loaded[1][name], days[1][name])


def test_killed_stream_resumes_with_identical_estimator(tmp_path):
    config = _config()
    dataset = load_dataset(config.data, config.model.embedding_dim)
    full_dir, killed_dir = str(tmp_path / "full"), str(tmp_path / "killed")

    cmd = [sys.executable, "-m", "yt_bias", "train", "--stream", "--preset", "smoke", "--workdir", killed_dir]
    for assignment in OVERRIDES:
        cmd += ["--set", assignment]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while _completed(killed_dir) < 1:
            assert proc.poll() is None, f"the stream process exited early (rc {proc.returncode})"
            assert time.monotonic() < deadline, "day 0 did not finish in time"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)  # interrupted after day 0's checkpoint, mid-way through the stream
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    interrupted_at = _completed(killed_dir)
    assert 1 <= interrupted_at < DAYS, interrupted_at

    resumed, resumed_info = train_stream(config, killed_dir, dataset=dataset)
    assert resumed_info["resumed_from"] == interrupted_at
    full, full_info = train_stream(config, full_dir, dataset=dataset)
    assert full_info["resumed_from"] == 0

    # Same batches in the same order after the resume: the estimator's arrays are identical.
    want, got = _estimator_arrays(full), _estimator_arrays(resumed)
    assert want[0] == got[0] == sum(d["steps"] for d in full_info["days"])
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])
    assert [d["day"] for d in resumed_info["days"]] == list(range(DAYS))
    for a, b in zip(full_info["days"], resumed_info["days"]):
        assert a["estimator_tv_error"] == b["estimator_tv_error"]  # a function of the arrays alone
        assert abs(a["recall@50"] - b["recall@50"]) < 0.05  # the towers: equal up to float noise
    # The estimator tracks the drift: its error against each day's frequencies stays bounded.
    assert max(d["estimator_tv_error"] for d in full_info["days"]) < 0.6


# ----------------------------------------------------------------------------- atomic day commits
SMALL = ["stream.days=3", "stream.rows_per_day=400", "stream.popularity_shift=2.0", "train.verbose=0"]


def _small_config(*extra):
    config = config_lib.smoke()
    for assignment in (*SMALL, *extra):
        config = config_lib.override(config, assignment)
    return config


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 3-day stream: its estimator arrays and per-day losses."""
    config = _small_config()
    dataset = load_dataset(config.data, config.model.embedding_dim)
    model, info = train_stream(config, str(tmp_path_factory.mktemp("reference")), dataset=dataset)
    return {"config": config, "dataset": dataset, "arrays": _estimator_arrays(model), "info": info}


def _assert_same_as_reference(model, info, reference):
    want, got = reference["arrays"], _estimator_arrays(model)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])
    assert [d["day"] for d in info["days"]] == [0, 1, 2]
    for a, b in zip(reference["info"]["days"], info["days"]):
        assert a["estimator_tv_error"] == b["estimator_tv_error"]


class _Crash(Exception):
    pass


@pytest.mark.parametrize(("point", "day"), [("checkpoint", 0), ("checkpoint", 1), ("state", 1)])
def test_a_crash_at_each_commit_point_leaves_a_resumable_workdir(tmp_path, monkeypatch, reference, point, day):
    import yt_bias.training.day_by_day as stream

    def crash(at, d):
        if (at, d) == (point, day):
            raise _Crash(f"{at} {d}")

    workdir = str(tmp_path / "w")
    monkeypatch.setattr(stream, "_FAULT_HOOK", crash)
    with pytest.raises(_Crash):
        train_stream(reference["config"], workdir, dataset=reference["dataset"])
    monkeypatch.setattr(stream, "_FAULT_HOOK", None)
    committed = day if point == "checkpoint" else day + 1  # a checkpoint without its state is not committed
    assert _completed(workdir) == committed
    assert os.path.exists(os.path.join(workdir, "checkpoint", f"ckpt-{day + 1}.index"))  # written, maybe uncommitted
    model, info = train_stream(reference["config"], workdir, dataset=reference["dataset"])
    assert info["resumed_from"] == committed
    _assert_same_as_reference(model, info, reference)


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_day(tmp_path, monkeypatch, reference):
    import yt_bias.training.day_by_day as stream

    def crash(at, d):
        if (at, d) == ("state", 1):
            raise _Crash("killed")

    workdir = str(tmp_path / "w")
    monkeypatch.setattr(stream, "_FAULT_HOOK", crash)
    with pytest.raises(_Crash):
        train_stream(reference["config"], workdir, dataset=reference["dataset"])
    monkeypatch.setattr(stream, "_FAULT_HOOK", None)
    data = [p for p in os.listdir(os.path.join(workdir, "checkpoint")) if p.startswith("ckpt-2.data")]
    path = os.path.join(workdir, "checkpoint", data[0])
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.warns(RuntimeWarning, match="ckpt-2"):
        model, info = train_stream(reference["config"], workdir, dataset=reference["dataset"])
    assert info["resumed_from"] == 1
    _assert_same_as_reference(model, info, reference)


def test_random_negatives_are_the_same_after_a_resume(tmp_path, monkeypatch):
    import yt_bias.training.day_by_day as stream

    config = _small_config("stream.days=2", "negatives.uniform_per_query=8")
    dataset = load_dataset(config.data, config.model.embedding_dim)
    _, full = train_stream(config, str(tmp_path / "full"), dataset=dataset)

    def crash(at, d):
        if (at, d) == ("state", 0):
            raise _Crash("killed")

    monkeypatch.setattr(stream, "_FAULT_HOOK", crash)
    with pytest.raises(_Crash):
        train_stream(config, str(tmp_path / "resumed"), dataset=dataset)
    monkeypatch.setattr(stream, "_FAULT_HOOK", None)
    _, resumed = train_stream(config, str(tmp_path / "resumed"), dataset=dataset)
    assert resumed["resumed_from"] == 1
    # Day 1 starts from the same restored state, sees the same batches and draws the same random negatives.
    assert abs(resumed["days"][1]["loss"] - full["days"][1]["loss"]) < 1e-5


def test_a_changed_day_file_is_refused_on_resume(tmp_path):
    config = _small_config("stream.days=2")
    dataset = load_dataset(config.data, config.model.embedding_dim)
    days = generator_days(dataset, config.stream, seed=0)
    write_days(days, str(tmp_path / "days"))
    files = config_lib.override(config_lib.override(config, "stream.source=files"), f"stream.path={tmp_path / 'days'}")
    train_stream(files, str(tmp_path / "w"), dataset=dataset)
    changed = dict(days[0], reward=np.zeros_like(days[0]["reward"]))
    write_days([changed, days[1]], str(tmp_path / "days"))
    with pytest.raises(ValueError, match=r"day_000\.npz: its rows changed"):
        train_stream(files, str(tmp_path / "w"), dataset=dataset)


def test_cli_stream_with_a_drift_kind_and_a_past_only_source(tmp_path, capsys):
    from yt_bias import cli
    from yt_bias.core.frequency_baselines import CumulativeFrequency
    from yt_bias.data.drift import DriftConfig, drift_days

    workdir = str(tmp_path / "drift")
    assignments = ["stream.rows_per_day=320", "train.verbose=0"]
    args = ["train", "--stream", "--preset", "smoke", "--workdir", workdir, "--days", "3", "--drift", "lifecycle",
            "--frequency-source", "cumulative"]
    assert cli.main(args + [a for assignment in assignments for a in ("--set", assignment)]) == 0
    with open(os.path.join(workdir, STATE_FILE), encoding="utf-8") as f:
        state = json.load(f)
    days = state["days"]
    assert state["completed_days"] == 3 and [d["day"] for d in days] == [0, 1, 2]
    assert all(d["frequency_source"] == "cumulative" and np.isfinite(d["estimator_tv_error"]) for d in days)
    assert all(d["next_day_queries"] > 0 for d in days[:2]) and "next_day_queries" not in days[2]
    # The days are the lifecycle drift's, and the past-only table was closed after every day: resumed from
    # its checkpoint, it holds the counts of all three days.
    config = config_lib.override(config_lib.smoke(), *assignments, "stream.days=3", "stream.drift_kind=lifecycle",
                                 "stream.frequency_source=cumulative")
    dataset = load_dataset(config.data, config.model.embedding_dim)
    model, result = train_stream(config, workdir, mode="resume")
    assert result["resumed_from"] == 3 and isinstance(model.frequency, CumulativeFrequency)
    drawn = drift_days(dataset, DriftConfig(kind="lifecycle", days=3, rows_per_day=320, shift=1.0, seed=0))
    ids = np.concatenate([dataset.item_ids[day["item_index"]] for day in drawn.days])
    expected = dict(zip(*np.unique(ids, return_counts=True)))
    assert model.frequency.counts() == {str(k): int(v) for k, v in expected.items()}
    with pytest.raises(ValueError, match="stream.drift_kind"):
        train_stream(config_lib.override(config, "stream.drift_kind=sideways"), str(tmp_path / "bad"))
