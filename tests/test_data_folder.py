"""Data folders with identity: written whole or not at all, checked against their manifest before
training, and recorded by the runs that read them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from cli_errors import one_line_error
from yt_bias import cli
from yt_bias.data import manifest as manifest_lib
from yt_bias.data import shards as shards_lib
from yt_bias.data.convert import write_dataset_shards
from yt_bias.data.synthetic_shards import generate_shards

TRAIN = ["--set", "train.epochs=1", "--set", "train.batch_size=64", "--set", "train.verbose=0"]
TRAIN += ["--set", "eval.ks=[10,20]", "--set", "model.hidden_units=[16]"]


def _generate(out, items=120, seed=0, *extra):
    return cli.main(
        ["data", "generate", "--out", str(out), "--items", str(items), "--interactions", "1200", "--shard-rows", "400",
         "--chunk-rows", "400", "--seed", str(seed), *extra]
    )


def _hashes(folder) -> dict[str, str]:
    """Every file under ``folder`` -> its SHA-256."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return found


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Data set A (120 items), data set B (50 items) and a run trained on A's files."""
    root = tmp_path_factory.mktemp("folders")
    assert _generate(root / "a", 120) == 0
    assert _generate(root / "b", 50, 1) == 0
    run = root / "run"
    assert cli.main(["train", "--data-files", f"{root / 'a'}/*.tfrecord", "--workdir", str(run), *TRAIN]) == 0
    return root


def test_the_manifest_describes_the_folder(folders):
    manifest = manifest_lib.read_manifest(str(folders / "a"))
    assert manifest["format"] == manifest_lib.FORMAT
    assert manifest["items"]["rows"] == 120 and manifest["source"]["num_items"] == 120
    assert manifest["source"]["seed"] == 0 and manifest["source"]["rows_per_shard"] == 400
    train, test = manifest["splits"]["train"], manifest["splits"]["test"]
    assert train["rows"] + test["rows"] == 1200
    assert [entry["file"] for entry in train["shards"]] == ["part-00000.tfrecord", "part-00001.tfrecord", "part-00002.tfrecord"]
    assert sum(entry["rows"] for entry in train["shards"]) == train["rows"] == shards_lib.count_rows(str(folders / "a"))
    for entry in train["shards"] + test["shards"] + [manifest["items"]]:
        assert entry["sha256"] == manifest_lib.file_sha256(str(folders / "a" / entry["file"]))
    assert not [name for name in os.listdir(folders) if name.startswith(".")]  # no temporary folder left


def test_a_non_empty_out_is_refused_before_anything_is_written(folders, tmp_path, capsys):
    target = tmp_path / "data"
    shutil.copytree(folders / "a", target)
    before = _hashes(target)
    assert _generate(target, 50, 3) == 2
    one_line_error(capsys, str(target), "not empty", "--overwrite")
    assert _hashes(target) == before  # the items table is untouched
    code = cli.main(["data", "convert", "--preset", "smoke", "--out", str(target)])
    assert code == 2
    one_line_error(capsys, str(target), "not empty")
    assert _hashes(target) == before
    # --overwrite replaces the folder whole: no file of the old set is left.
    (target / "part-00009.tfrecord").write_bytes(b"an old shard")
    assert _generate(target, 50, 3, "--overwrite") == 0
    assert "part-00009.tfrecord" not in os.listdir(target)
    assert manifest_lib.read_manifest(str(target))["items"]["rows"] == 50
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]
    # A folder holding other files is never replaced, not even with --overwrite.
    (target / "notes.txt").write_text("mine")
    assert _generate(target, 50, 3, "--overwrite") == 2
    one_line_error(capsys, "notes.txt", "not a data set")
    assert (target / "notes.txt").read_text() == "mine"


def test_a_run_workdir_is_never_written_into(folders, capsys):
    run = folders / "run"
    before = _hashes(run)
    assert _generate(run, 50) == 2
    one_line_error(capsys, str(run), "training run's workdir", "run.json")
    assert _generate(run, 50, 0, "--overwrite") == 2
    one_line_error(capsys, "training run's workdir")
    assert cli.main(["data", "convert", "--preset", "smoke", "--out", str(run), "--overwrite"]) == 2
    one_line_error(capsys, "training run's workdir")
    assert _hashes(run) == before


def test_out_that_is_a_file_names_it(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    assert _generate(path, 50) == 2
    one_line_error(capsys, str(path), "is a file")
    assert path.read_text() == "x"


def test_a_failed_write_leaves_the_old_folder_and_no_temporary_one(folders, tmp_path, monkeypatch):
    target = tmp_path / "data"
    shutil.copytree(folders / "a", target)
    before = _hashes(target)

    def broken(self, chunk):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(shards_lib.ShardWriter, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        generate_shards(str(target), 50, 1000, rows_per_shard=400, chunk_rows=400, overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        generate_shards(str(tmp_path / "new"), 50, 1000, rows_per_shard=400, chunk_rows=400)
    assert _hashes(target) == before
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_convert_writes_a_manifest_with_the_data_config(tmp_path, capsys):
    out = tmp_path / "converted"
    assert cli.main(["data", "convert", "--preset", "smoke", "--out", str(out), "--shard-rows", "300"]) == 0
    manifest = manifest_lib.read_manifest(str(out))
    assert manifest["source"]["data"]["source"] == "synthetic" and manifest["source"]["rows_per_shard"] == 300
    assert manifest["splits"]["train"]["rows"] == shards_lib.count_rows(str(out))
    with pytest.raises(manifest_lib.DataFolderError, match="not empty"):
        write_dataset_shards(None, str(out))  # refused before the data set is even looked at


def _train_files(capsys, folder, workdir):
    code = cli.main(["train", "--data-files", f"{folder}/*.tfrecord", "--workdir", str(workdir), *TRAIN])
    return code


def test_an_items_table_of_another_data_set_is_refused(folders, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    shutil.copytree(folders / "a", mixed)
    shutil.copy(folders / "b" / "items.npz", mixed / "items.npz")  # shards of 120 items, a table of 50
    assert _train_files(capsys, mixed, tmp_path / "run") == 2
    one_line_error(capsys, "has 50 items", "records 120 items", "manifest.json")
    assert not (tmp_path / "run" / "metrics.json").exists()
    # Without a manifest, the shards' first blocks still catch it.
    os.remove(mixed / "manifest.json")
    with pytest.warns(UserWarning, match="no manifest.json"):
        assert _train_files(capsys, mixed, tmp_path / "run") == 2
    one_line_error(capsys, "item_index", "50 items", "another data set")


def test_a_changed_or_foreign_shard_is_refused(folders, tmp_path, capsys):
    changed = tmp_path / "changed"
    shutil.copytree(folders / "a", changed)
    shard = changed / "part-00001.tfrecord"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF  # same size, other bytes
    shard.write_bytes(bytes(data))
    assert _train_files(capsys, changed, tmp_path / "run") == 2
    one_line_error(capsys, "part-00001.tfrecord", "SHA-256", "manifest")
    shutil.copy(folders / "b" / "part-00000.tfrecord", changed / "part-00001.tfrecord")
    assert _train_files(capsys, changed, tmp_path / "run") == 2
    one_line_error(capsys, "part-00001.tfrecord", "bytes", "records")
    shutil.copy(folders / "a" / "part-00001.tfrecord", changed / "part-00001.tfrecord")
    shutil.copy(folders / "b" / "part-00000.tfrecord", changed / "part-00007.tfrecord")
    assert _train_files(capsys, changed, tmp_path / "run") == 2
    one_line_error(capsys, "part-00007.tfrecord", "not listed in the manifest")


def test_a_run_records_the_manifest_and_export_tells_when_the_data_changed(folders, tmp_path):
    from yt_bias.serving.export import training_data_status

    with open(folders / "run" / "run.json", encoding="utf-8") as f:
        record = json.load(f)
    assert record["data_files"]["manifest_sha256"] == manifest_lib.manifest_fingerprint(str(folders / "a"))
    assert record["data_files"]["rows"] == manifest_lib.read_manifest(str(folders / "a"))["splits"]["train"]["rows"]
    assert training_data_status(record)["status"] == "unchanged"
    moved = dict(record, data_files=dict(record["data_files"], directory=str(tmp_path / "a")))
    shutil.copytree(folders / "a", tmp_path / "a")
    assert training_data_status(moved)["status"] == "unchanged"
    assert _generate(tmp_path / "a", 120, 9, "--overwrite") == 0  # the same path, other data
    status = training_data_status(moved)
    assert status["status"] == "changed" and str(tmp_path / "a") in status["message"]
    # Through the export: its metadata says so, and a warning too.
    from yt_bias.config import IndexConfig
    from yt_bias.serving.export import export_from_workdir

    run = tmp_path / "run"
    shutil.copytree(folders / "run", run)
    with open(run / "run.json", "w", encoding="utf-8") as f:
        json.dump(moved, f)
    with pytest.warns(UserWarning, match="changed after training"):
        meta = export_from_workdir(str(run), str(tmp_path / "export"), IndexConfig(kind="brute_force", k=10))
    assert meta["training_data"]["status"] == "changed"
    shutil.rmtree(tmp_path / "a")
    assert training_data_status(moved)["status"] == "missing"
