"""Hostile inputs to ``yt-bias report`` and to the Table 1 experiment: named one-line errors, checked
before anything runs or is written."""

from __future__ import annotations

import json
import os

import pytest

from cli_errors import one_line_error
from yt_bias import cli
from yt_bias import config as config_lib
from yt_bias.config import SyntheticConfig
from yt_bias.data.synthetic import generate


def test_report_out_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    assert cli.main(["report", "--out", str(path), "--quick", "--only", "serving"]) == 2
    assert ".tmp" not in one_line_error(capsys, str(path), "is a file")
    assert path.read_text() == "x"


def test_report_merge_from_a_missing_or_empty_folder(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["report", "--out", str(out), "--merge", str(tmp_path / "missing")]) == 2
    one_line_error(capsys, "--merge", "missing", "not a directory")
    (tmp_path / "empty").mkdir()
    assert cli.main(["report", "--out", str(out), "--merge", str(tmp_path / "empty")]) == 2
    one_line_error(capsys, "--merge", "without report.json")
    assert not out.exists()


def test_report_merge_into_a_new_out_folder(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "report.json").write_text(json.dumps({"sections": {}}))
    out = tmp_path / "new" / "out"
    assert cli.main(["report", "--out", str(out), "--merge", str(other)]) == 0
    assert os.path.isfile(out / "report.json")


def test_a_damaged_report_json_is_named(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text('{"sections": {"main": ')
    assert cli.main(["report", "--out", str(out), "--render-only"]) == 2
    one_line_error(capsys, os.path.join(str(out), "report.json"), "is damaged")
    other = tmp_path / "other"
    other.mkdir()
    (other / "report.json").write_text("[1, 2]")
    assert cli.main(["report", "--out", str(tmp_path / "o2"), "--merge", str(other)]) == 2
    one_line_error(capsys, os.path.join(str(other), "report.json"), "not a yt-bias report")


@pytest.fixture(scope="module")
def tiny():
    return generate(SyntheticConfig(num_users=30, num_items=40, interactions_per_user=5, num_categories=3, seed=1))


def test_table1_refuses_ks_beyond_the_corpus_and_repeated_seeds(tiny):
    from yt_bias.experiments.table1 import run_table1

    config = config_lib.override(config_lib.smoke(), "eval.ks=[10,50,100,300]")
    with pytest.raises(ValueError, match=r"eval\.ks: every K must be in \[1, 40\]"):
        run_table1(config, tiny, temperatures=(0.05,), seeds=(0,), include_tfrs=False, progress=False)
    config = config_lib.override(config_lib.smoke(), "eval.ks=[5,10]")
    with pytest.raises(ValueError, match=r"seeds must be distinct .*received \[0, 0\]"):
        run_table1(config, tiny, temperatures=(0.05,), seeds=(0, 0), include_tfrs=False, progress=False)
