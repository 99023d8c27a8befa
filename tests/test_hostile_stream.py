"""Hostile inputs to the day-by-day stream: a changed --days on a generator stream is named as a
regeneration, and a resume that falls back past a missing committed checkpoint warns."""

from __future__ import annotations

import glob
import os

import pytest

from cli_errors import one_line_error
from yt_bias import cli

STREAM = ["train", "--stream", "--preset", "smoke", "--set", "train.verbose=0"]


def test_more_days_on_a_finished_generator_stream_says_days_are_regenerated(tmp_path, capsys):
    workdir = str(tmp_path / "w")
    assert cli.main([*STREAM, "--days", "2", "--workdir", workdir]) == 0
    capsys.readouterr()
    assert cli.main([*STREAM, "--days", "3", "--workdir", workdir]) == 2
    one_line_error(capsys, "generator draws every day again", "stream.days=3", "cannot be extended", "--overwrite")
    # A missing committed checkpoint: the resume falls back to the day before, with a warning.
    (index,) = glob.glob(os.path.join(workdir, "checkpoint", "ckpt-2.index"))
    os.remove(index)
    with pytest.warns(RuntimeWarning, match=r"committed checkpoint .*ckpt-2' of day 1 is missing"):
        assert cli.main([*STREAM, "--days", "2", "--workdir", workdir]) == 0
    assert "Resumed from day 1; 2 days done" in capsys.readouterr().out
