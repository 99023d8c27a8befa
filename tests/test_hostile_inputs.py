"""Hostile inputs a new user may give: each is a clear one-line error naming the input, or a correct result.

Run identity (a workdir holding another run, concurrent runs, stale locks, edited config or corpus,
an index of another model), divergence, damaged files, stream day files, data loaders (BOMs,
encodings, directories), the download command (non-zip archive, trickling server, half-extracted
cache) and the CLI's error contract (one line on stderr, exit 2; ``--debug`` shows the traceback).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest

from yt_bias import cli
from yt_bias.serving import export as serving
from yt_bias import config as config_lib
from yt_bias.config import DataConfig
from yt_bias.data.download import DownloadError, download
from yt_bias.data.loading import load_dataset
from yt_bias.evaluation.exact import coverage_at_k, recall_at_k
from yt_bias.retrieval.exact import top_k
from yt_bias.runs.reader import LOCK_FILE, RUN_FILE, read_npz
from yt_bias.training.run_directory import RunConflict, RunDirectory, write_json_atomic
from yt_bias.training.day_by_day import check_day, train_stream, write_days

SMOKE = ["--preset", "smoke", "--set", "train.epochs=1"]


def _cli(capsys, *argv):
    """Runs the CLI in-process: (exit code, stderr)."""
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def _one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.startswith("yt-bias")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One smoke run (the CLI's train) and a second one on other data, for the identity cases."""
    root = tmp_path_factory.mktemp("hostile")
    a, b = str(root / "a"), str(root / "b")
    assert cli.main(["train", *SMOKE, "--workdir", a]) == 0
    assert cli.main(["train", *SMOKE, "--set", "data.synthetic.seed=5", "--workdir", b]) == 0
    return {"root": root, "a": a, "b": b}


# ----------------------------------------------------------------------------- run identity
def test_another_run_in_the_workdir_is_refused_same_run_rerun_and_overwrite_allowed(trained, capsys):
    a = trained["a"]
    code, err = _cli(capsys, "train", *SMOKE, "--set", "data.synthetic.seed=7", "--workdir", a)
    assert code == 2
    _one_line_error(err, "holds another run", "data.synthetic.seed", "--overwrite")
    # Streaming into a non-stream workdir: the same refusal, not a missing-state crash.
    code, err = _cli(capsys, "train", "--stream", *SMOKE, "--workdir", a)
    assert code == 2
    _one_line_error(err, "holds another run", "kind")
    with open(os.path.join(a, RUN_FILE), encoding="utf-8") as f:
        assert json.load(f)["config"]["data"]["synthetic"]["seed"] == 0  # untouched
    # --resume is for streams only.
    code, err = _cli(capsys, "train", *SMOKE, "--resume", "--workdir", a)
    assert code == 2
    _one_line_error(err, "--resume only apply with --stream")


def test_reproduce_runs_twice_and_overwrite_replaces(tmp_path, capsys):
    from yt_bias.experiments.comparison import run_comparison

    config = config_lib.override(config_lib.override(config_lib.smoke(), "train.epochs=1"), "eval.ks=10")
    dataset = load_dataset(config.data, config.model.embedding_dim)
    for _ in range(2):  # yt-bias reproduce's path: it owns its run directories, no flag needed
        rows = run_comparison(config, dataset, variants=("plain-sfx",), workdir=str(tmp_path / "r"))
        assert 0 <= rows[1].runs[0]["recall@10"] <= 1
    w = str(tmp_path / "r" / "plain-sfx_tau0.05_seed0")
    assert cli.main(["train", *SMOKE, "--set", "eval.ks=10", "--set", "model.temperature=0.1", "--workdir", w]) == 2
    assert cli.main(["train", *SMOKE, "--set", "eval.ks=10", "--set", "model.temperature=0.1", "--overwrite", "--workdir", w]) == 0
    with open(os.path.join(w, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["model"]["temperature"] == 0.1
    with open(os.path.join(w, RUN_FILE), encoding="utf-8") as f:
        record = json.load(f)
    assert record["status"] == "complete" and record["config"]["model"]["temperature"] == 0.1


def test_concurrent_run_refused_and_stale_lock_taken_over(tmp_path):
    config = config_lib.smoke()
    dataset = load_dataset(config.data, config.model.embedding_dim)
    w = str(tmp_path / "w")
    os.makedirs(w)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_json_atomic(os.path.join(w, LOCK_FILE), {"pid": sleeper.pid, "host": os.uname().nodename})
        with pytest.raises(RunConflict, match=f"in use by process {sleeper.pid}"):
            RunDirectory.start(w, config, dataset)
    finally:
        sleeper.kill()
        sleeper.wait()
    # The same lock, its process now dead: taken over with a warning.
    with pytest.warns(RuntimeWarning, match="stale lock"):
        run = RunDirectory.start(w, config, dataset)
    with run:
        assert os.path.exists(os.path.join(w, LOCK_FILE))
        with pytest.raises(RunConflict, match=f"in use by process {os.getpid()}"):  # held: a second run is refused
            RunDirectory.start(w, config, dataset)
    assert not os.path.exists(os.path.join(w, LOCK_FILE))


def test_interrupted_rerun_never_mixes_config_and_checkpoint(trained, tmp_path, capsys):
    import shutil

    w = str(tmp_path / "w")
    shutil.copytree(trained["a"], w)
    config = config_lib.override(config_lib.override(config_lib.smoke(), "train.epochs=1"), "data.synthetic.seed=5")
    dataset = load_dataset(config.data, config.model.embedding_dim)
    # A second run replaces the first and dies before its checkpoint (as a kill would).
    with pytest.raises(KeyboardInterrupt):
        with RunDirectory.start(w, config, dataset, mode="overwrite"):
            raise KeyboardInterrupt
    code, err = _cli(capsys, "export", "--workdir", w, "--out", str(tmp_path / "e"), "--index-kind", "brute_force")
    assert code == 2 and not os.path.exists(tmp_path / "e")
    _one_line_error(err, "w")


def test_export_uses_the_corpus_snapshot_and_refuses_edited_files(trained, tmp_path, capsys, monkeypatch):
    import shutil

    import yt_bias.data.loading

    w = str(tmp_path / "w")
    shutil.copytree(trained["a"], w)

    def no_data(*args, **kwargs):
        raise AssertionError("export must not rebuild the corpus from config.data")

    monkeypatch.setattr(yt_bias.data.loading, "load_dataset", no_data)
    _, snapshot, _ = serving.restore_model(w)
    np.testing.assert_array_equal(snapshot.item_ids, read_npz(os.path.join(w, "items.npz"), "items")["item_id"].astype(str))
    monkeypatch.undo()

    config_path = os.path.join(w, "config.json")
    with open(config_path, encoding="utf-8") as f:
        original = json.load(f)
    edited = json.loads(json.dumps(original))
    edited["data"]["synthetic"]["seed"] = 9
    write_json_atomic(config_path, edited)
    code, err = _cli(capsys, "export", "--workdir", w, "--out", str(tmp_path / "e1"), "--index-kind", "brute_force")
    assert code == 2
    _one_line_error(err, "config.json was changed after training", "data.synthetic.seed")
    write_json_atomic(config_path, original)

    items = read_npz(os.path.join(w, "items.npz"), "items")
    items["item_id"] = items["item_id"][::-1].copy()
    np.savez(os.path.join(w, "items.npz"), **items)
    code, err = _cli(capsys, "export", "--workdir", w, "--out", str(tmp_path / "e2"), "--index-kind", "brute_force")
    assert code == 2
    _one_line_error(err, "items.npz was changed after training")


def test_index_of_another_model_is_refused(trained, tmp_path, capsys):
    own, other = str(tmp_path / "own.npz"), str(tmp_path / "other.npz")
    assert cli.main(["index", "--workdir", trained["a"], "--index-kind", "brute_force", "--out", own]) == 0
    assert cli.main(["index", "--workdir", trained["b"], "--index-kind", "brute_force", "--out", other]) == 0
    capsys.readouterr()
    code, err = _cli(capsys, "export", "--workdir", trained["a"], "--out", str(tmp_path / "bad"), "--index", other)
    assert code == 2 and not os.path.exists(tmp_path / "bad")
    _one_line_error(err, "built by another item tower")
    assert cli.main(["export", "--workdir", trained["a"], "--out", str(tmp_path / "good"), "--index", own]) == 0
    (tmp_path / "text.npz").write_text("not an index")
    code, err = _cli(capsys, "export", "--workdir", trained["a"], "--out", str(tmp_path / "t"), "--index", str(tmp_path / "text.npz"))
    assert code == 2
    _one_line_error(err, "text.npz", "not an .npz archive")


# ----------------------------------------------------------------------------- divergence and damage
def test_diverged_run_exits_non_zero_without_metrics(tmp_path, capsys):
    w = str(tmp_path / "w")
    code, err = _cli(capsys, "train", *SMOKE, "--set", "train.learning_rate=1e38", "--workdir", w)
    assert code == 3
    _one_line_error(err, "training diverged", "train.learning_rate")
    assert not os.path.exists(os.path.join(w, "metrics.json"))
    with open(os.path.join(w, RUN_FILE), encoding="utf-8") as f:
        assert json.load(f)["status"] == "failed"
    code, err = _cli(capsys, "export", "--workdir", w, "--out", str(tmp_path / "e"), "--index-kind", "brute_force")
    assert code == 2
    code, err = _cli(capsys, "train", *SMOKE, "--set", "train.learning_rate=inf", "--workdir", w)
    assert code == 2
    _one_line_error(err, "train.learning_rate must be finite")


def test_damaged_checkpoint_is_a_clear_error(trained, tmp_path, capsys):
    import shutil

    w = str(tmp_path / "w")
    shutil.copytree(trained["a"], w)
    data = [p for p in os.listdir(os.path.join(w, "checkpoint")) if ".data-" in p]
    path = os.path.join(w, "checkpoint", data[0])
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    code, err = _cli(capsys, "export", "--workdir", w, "--out", str(tmp_path / "e"), "--index-kind", "brute_force")
    assert code == 2
    _one_line_error(err, "checkpoint", "damaged")
    with open(os.path.join(w, RUN_FILE), "w", encoding="utf-8") as f:
        f.write('{"kind": "tra')
    code, err = _cli(capsys, "train", *SMOKE, "--workdir", w)
    assert code == 2
    _one_line_error(err, "run.json", "not valid JSON", "--overwrite")


def test_non_npz_files_are_named(trained, tmp_path, capsys):
    text = tmp_path / "items.npz"
    text.write_text("id,genre\n1,a\n")
    code, err = _cli(capsys, "index", "--workdir", trained["a"], "--index-kind", "brute_force", "--items", str(text))
    assert code == 2
    _one_line_error(err, str(text), "not an .npz archive")
    assert "pickle" not in err


# ----------------------------------------------------------------------------- paths that are files
def test_workdir_out_and_cache_dir_that_are_files(trained, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv in (
        ["train", *SMOKE, "--workdir", str(afile)],
        ["train", *SMOKE, "--workdir", str(afile / "sub")],
        ["export", "--workdir", trained["a"], "--out", str(afile), "--index-kind", "brute_force"],
        ["export", "--workdir", str(afile), "--out", str(tmp_path / "o"), "--index-kind", "brute_force"],
        ["data", "download", "ml-100k", "--cache-dir", str(afile)],
    ):
        code, err = _cli(capsys, *argv)
        assert code == 2, argv
        _one_line_error(err, str(afile))


# ----------------------------------------------------------------------------- evaluation
def test_eval_ks_beyond_the_corpus_and_exclusion_beyond_the_unseen_items(tmp_path, capsys):
    code, err = _cli(capsys, "train", *SMOKE, "--set", "eval.ks=10,500", "--workdir", str(tmp_path / "w"))
    assert code == 2
    _one_line_error(err, "eval.ks", "[1, 200]")
    # 4 items, the query saw 3 of them: only one result remains for K=3; seen items never come back.
    scores = np.array([[4.0, 3.0, 2.0, 1.0]])
    top = top_k(lambda a, b: scores[a:b], 1, 4, 3, exclude=[np.array([0, 1, 2])])
    assert top.tolist() == [[3, -1, -1]]
    assert recall_at_k(top, np.array([0]), ks=(3,)) == {"recall@3": 0.0}  # a seen item is no hit
    assert coverage_at_k(top, 4, ks=(3,)) == {"coverage@3": 0.25}


# ----------------------------------------------------------------------------- CLI contract
def test_cli_user_errors_are_one_line_and_debug_shows_the_traceback(capsys):
    code, err = _cli(capsys, "train", *SMOKE, "--days", "3")
    assert code == 2
    _one_line_error(err, "--days only apply with --stream")
    code, err = _cli(capsys, "train", *SMOKE, "--set", "model.temperature=inf")
    assert code == 2
    _one_line_error(err, "model.temperature must be finite")
    with pytest.raises(ValueError, match="--days only apply with --stream"):
        cli.main(["--debug", "train", *SMOKE, "--days", "3"])


# ----------------------------------------------------------------------------- stream day files
def _stream_config(path):
    config = config_lib.smoke()
    for assignment in ("stream.source=files", f"stream.path={path}", "stream.days=2", "train.verbose=0"):
        config = config_lib.override(config, assignment)
    return config


def _bad_day(kind, day):
    day = {k: np.array(v) for k, v in day.items()}
    if kind == "missing column":
        del day["reward"]
    elif kind == "NaN reward":
        day["reward"][3] = np.nan
    elif kind == "out-of-range index":
        day["item_index"][5] = 10_000
    elif kind == "inconsistent index":
        day["item_index"][7] = (day["item_index"][7] + 1) % 200
    return day


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing column", "column 'reward' is missing"),
        ("NaN reward", "row 3 has nan"),
        ("out-of-range index", "row 5 has 10000"),
        ("inconsistent index", "row 7 has item_index="),
        ("truncated", "truncated or damaged"),
        ("not npz", "not an .npz archive"),
    ],
)
def test_bad_stream_day_files_name_the_file(tmp_path, kind, message):
    config = _stream_config(str(tmp_path / "days"))
    dataset = load_dataset(config.data, config.model.embedding_dim)
    rows = dataset.examples("train")
    days = [{k: v[:600] for k, v in rows.items()}, {k: v[600:1200] for k, v in rows.items()}]
    paths = write_days(days, str(tmp_path / "days"))
    target = paths[1]
    if kind == "truncated":
        with open(target, "r+b") as f:
            f.truncate(os.path.getsize(target) - 200)
    elif kind == "not npz":
        with open(target, "w", encoding="utf-8") as f:
            f.write("item_index,reward\n1,1\n")
    else:
        np.savez(target, **_bad_day(kind, days[1]))
    with pytest.raises(ValueError, match=message) as info:
        train_stream(config, str(tmp_path / "w"), dataset=dataset)
    assert "day_001.npz" in str(info.value)
    assert not os.path.exists(tmp_path / "w")  # checked before anything is written
    assert check_day(days[0], dataset, "day 0") == 600  # the good day passes


# ----------------------------------------------------------------------------- data loaders
def _write(path, text, encoding="utf-8"):
    with open(path, "w", encoding=encoding, newline="") as f:
        f.write(text)


def _ml1m(root, bom=b""):
    d = root / "ml-1m"
    d.mkdir(parents=True)
    movies = "1::Toy Story (1995)::Animation|Comedy\n2::Heat (1995)::Action\n3::Jumanji (1995)::Adventure\n"
    users = "1::M::25::4::85711\n2::F::35::7::94043\n"
    ratings = "1::1::5::100\n1::2::4::200\n2::1::3::150\n2::3::5::250\n1::3::2::300\n2::2::4::400\n"
    for name, text in (("movies.dat", movies), ("users.dat", users), ("ratings.dat", ratings)):
        (d / name).write_bytes(bom + text.encode("latin-1"))
    return str(d)


def test_byte_order_marks_are_stripped(tmp_path):
    plain = load_dataset(DataConfig(source="movielens", path=_ml1m(tmp_path / "a")))
    withbom = load_dataset(DataConfig(source="movielens", path=_ml1m(tmp_path / "b", bom=b"\xef\xbb\xbf")))
    assert withbom.truth["num_users"] == plain.truth["num_users"] == 2  # no phantom user
    np.testing.assert_array_equal(withbom.item_ids, plain.item_ids)
    # CSV release: a BOM before the header.
    c = tmp_path / "csv"
    c.mkdir()
    (c / "movies.csv").write_bytes(b"\xef\xbb\xbfmovieId,title,genres\n1,Toy Story (1995),Comedy\n2,Heat (1995),Action\n")
    (c / "ratings.csv").write_bytes(b"\xef\xbb\xbfuserId,movieId,rating,timestamp\n1,1,5,100\n1,2,4,200\n2,1,3,150\n2,2,5,250\n")
    assert load_dataset(DataConfig(source="movielens", path=str(c))).num_items == 2
    # RecBole: a BOM before the header's first field.
    r = tmp_path / "toy"
    r.mkdir()
    (r / "toy.inter").write_bytes(b"\xef\xbb\xbfuser_id:token\titem_id:token\ttimestamp:float\n1\t10\t1\n1\t20\t2\n2\t10\t3\n2\t20\t4\n")
    assert load_dataset(DataConfig(source="recbole", path=str(r))).num_items == 2
    # MIND: a BOM before the first news ID.
    m = tmp_path / "mind" / "MINDsmall_train"
    m.mkdir(parents=True)
    (m / "news.tsv").write_bytes(b"\xef\xbb\xbfN1\tsports\tfootball\tBig Match\ta\tu\t[]\t[]\nN2\tnews\tworld\tVote\ta\tu\t[]\t[]\n")
    _write(m / "behaviors.tsv", "1\tU1\t11/11/2019 9:05:58 AM\t\tN1-1 N2-0\n2\tU2\t11/12/2019 1:00:00 PM\t\tN2-1\n"
           "3\tU1\t11/13/2019 1:00:00 PM\t\tN2-1\n")
    assert sorted(load_dataset(DataConfig(source="mind", path=str(tmp_path / "mind"))).item_ids) == ["N1", "N2"]


def test_encoding_errors_and_directories_name_the_file(tmp_path):
    r = tmp_path / "toy"
    r.mkdir()
    (r / "toy.inter").write_bytes(b"user_id:token\titem_id:token\ttimestamp:float\n1\t10\t1\n1\t\xff\xfe20\t2\n")
    with pytest.raises(ValueError, match=r"toy\.inter:3: not valid utf-8"):
        load_dataset(DataConfig(source="recbole", path=str(r)))
    d = tmp_path / "dir"
    (d / "dir.inter").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"dir\.inter is a directory"):
        load_dataset(DataConfig(source="recbole", path=str(d), split="random"))


# ----------------------------------------------------------------------------- download
def test_download_of_a_non_zip_archive_with_a_matching_md5(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "ml-100k.zip").write_bytes(b"<html>not a zip</html>")
    digest = hashlib.md5(b"<html>not a zip</html>").hexdigest()
    (mirror / "ml-100k.zip.md5").write_text(f"MD5 (ml-100k.zip) = {digest}\n")
    with pytest.raises(DownloadError, match="not a readable zip archive"):
        download("ml-100k", str(tmp_path / "cache"), base_url="file://" + str(mirror), log=lambda m: None)
    assert not os.path.exists(tmp_path / "cache" / "ml-100k" / "ml-100k.zip")


def test_download_from_a_trickling_server_times_out(tmp_path):
    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        start = time.monotonic()
        with pytest.raises(DownloadError, match="stalled"):
            download("ml-100k", str(tmp_path), base_url=f"http://127.0.0.1:{server.server_port}", timeout=1.0, log=lambda m: None)
        assert time.monotonic() - start < 10
    finally:
        server.shutdown()
        server.server_close()


def test_half_extracted_cache_is_not_ready(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "ml-100k.zip", "w") as z:
        z.writestr("ml-100k/u.data", "1\t10\t4\t100\n")
        z.writestr("ml-100k/u.item", "10|Toy Story (1995)|01-Jan-1995||http://x|0|0|0\n")
    digest = hashlib.md5((mirror / "ml-100k.zip").read_bytes()).hexdigest()
    (mirror / "ml-100k.zip.md5").write_text(f"MD5 (ml-100k.zip) = {digest}\n")
    # A previous extraction died after u.data: the data set is not ready and is extracted again.
    partial = tmp_path / "cache" / "ml-100k" / "ml-100k"
    partial.mkdir(parents=True)
    (partial / "u.data").write_text("1\t10\t4\t100\n")
    logs = []
    path = download("ml-100k", str(tmp_path / "cache"), base_url="file://" + str(mirror), log=logs.append)
    assert not any("already" in m for m in logs) and os.path.isfile(os.path.join(path, "u.item"))
    logs.clear()
    download("ml-100k", str(tmp_path / "cache"), base_url="file://" + str(mirror), log=logs.append)
    assert any("already" in m for m in logs)


# ----------------------------------------------------------------------------- misc
def test_resuming_a_finished_stream_prints_no_checkpoint_warnings(tmp_path, capsys):
    import gc
    import logging

    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    args = ["train", "--stream", "--preset", "smoke", "--workdir", str(tmp_path / "w"),
            "--set", "stream.days=1", "--set", "stream.rows_per_day=300", "--set", "train.verbose=0"]
    assert cli.main(args) == 0
    handler = Collect()
    logging.getLogger("tensorflow").addHandler(handler)
    try:
        assert cli.main(args) == 0
        gc.collect()  # unresolved restores warn when their status objects are collected
    finally:
        logging.getLogger("tensorflow").removeHandler(handler)
    assert not [m for m in records if "could not be found" in m or "Unresolved object" in m], records[:3]
    assert "Resumed from day 1" in capsys.readouterr().out


def test_write_json_atomic_leaves_no_partial_file(tmp_path, monkeypatch):
    path = str(tmp_path / "state.json")
    write_json_atomic(path, {"a": 1})

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", broken)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(path, {"a": 2})
    monkeypatch.undo()
    with open(path, encoding="utf-8") as f:
        assert json.load(f) == {"a": 1}
    assert os.listdir(tmp_path) == ["state.json"]


def test_stream_resume_may_change_training_fields_not_the_model(tmp_path):
    config = config_lib.smoke()
    dataset = load_dataset(config.data, config.model.embedding_dim)
    w = str(tmp_path / "w")
    with RunDirectory.start(w, config, dataset, kind="stream", resumable=True) as run:
        run.finish()
    faster = config_lib.override(config, "train.learning_rate=0.1")
    with pytest.raises(RunConflict, match="train.learning_rate"):
        RunDirectory.start(w, faster, dataset, kind="stream", mode="refuse", resumable=True)
    with RunDirectory.start(w, faster, dataset, kind="stream", mode="resume", resumable=True) as run:
        assert run.resumed
    warmer = config_lib.override(config, "model.temperature=0.2")
    with pytest.raises(RunConflict, match="--resume cannot change config model.temperature"):
        RunDirectory.start(w, warmer, dataset, kind="stream", mode="resume", resumable=True)
