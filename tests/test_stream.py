"""Sequential (day by day) training: per-day checkpoints, and a SIGKILLed run resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from yt_bias import config as config_lib
from yt_bias.data.loading import load_dataset
from yt_bias.stream import STATE_FILE, file_days, generator_days, train_stream, write_days

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

    cmd = [sys.executable, "-m", "yt_bias.cli", "train", "--stream", "--preset", "smoke", "--workdir", killed_dir]
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
