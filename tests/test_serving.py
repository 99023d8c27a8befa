"""Export -> load in a fresh process -> the same top-K as the in-process model; refresh; errors; CLI."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from yt_bias import cli
from yt_bias.serving import export as serving
from yt_bias import config as config_lib
from yt_bias._keras import tf
from yt_bias.config import IndexConfig
from yt_bias.data.loading import load_dataset
from yt_bias.retrieval.embedding import embed
from yt_bias.serving.index import index_corpus
from yt_bias.training.train import checkpoint_for, fit

K = 10
SCANN_TREE = IndexConfig(brute_force_below=0, num_leaves=14, num_leaves_to_search=7, k=K)  # half the leaves: recall >= 0.95 on any seed


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A smoke model trained into a workdir, and its two exports (brute force and ScaNN tree-AH)."""
    root = tmp_path_factory.mktemp("serving")
    config = config_lib.smoke()
    dataset = load_dataset(config.data, config.model.embedding_dim)
    workdir = str(root / "workdir")
    model, _ = fit(config, dataset, workdir)
    exports = {
        "brute_force": serving.export_from_workdir(workdir, str(root / "bf"), IndexConfig(kind="brute_force", k=K)),
        "scann": serving.export_from_workdir(workdir, str(root / "scann"), SCANN_TREE),
    }
    return {"root": root, "workdir": workdir, "model": model, "dataset": dataset, "exports": exports}


def _queries(dataset, count=64):
    test = dataset.test
    return {s.name: np.asarray(test[s.name])[:count] for s in dataset.features.query}


def _exact_top_k(model, dataset, queries):
    scores = embed(model.query_tower, queries) @ embed(model.item_tower, dataset.items).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    return dataset.item_ids[order], np.take_along_axis(scores, order, axis=1)


def _run_in_fresh_process(script, root, answers_file):
    """Runs `script` with `root` as its argument in a fresh Python process; its JSON report and saved answers."""
    result = subprocess.run(
        [sys.executable, "-c", script, str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), np.load(root / answers_file)


_SUBPROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from yt_bias.serving import export as serving
    root = sys.argv[1]
    queries = dict(np.load(root + "/queries.npz"))
    out, report = {}, {}
    # 1. ScaNN blocked: the ScaNN export refuses with what to install; the brute-force one still works.
    sys.modules["scann"] = None
    try:
        serving.load(root + "/scann")
        report["scann_missing_error"] = None
    except ImportError as error:
        report["scann_missing_error"] = str(error)
    bf = serving.load(root + "/bf")
    out["bf_ids"], out["bf_scores"] = bf.query(queries)
    report["scann_imported_for_bf"] = any(m.startswith("scann.") for m in sys.modules)
    # 2. ScaNN available again: its export loads and answers.
    del sys.modules["scann"]
    sc = serving.load(root + "/scann")
    out["scann_ids"], out["scann_scores"] = sc.query(queries)
    report["metadata"] = sc.metadata
    np.savez(root + "/answers.npz", **out)
    print(json.dumps(report))
    """
)


def test_export_loaded_in_fresh_process_matches_in_process_model(trained):
    root, model, dataset = trained["root"], trained["model"], trained["dataset"]
    queries = _queries(dataset)
    np.savez(root / "queries.npz", **queries)
    report, answers = _run_in_fresh_process(_SUBPROCESS, root, "answers.npz")
    exact_ids, exact_scores = _exact_top_k(model, dataset, queries)

    # Brute force: identical IDs, same scores; loaded without ScaNN at all.
    np.testing.assert_array_equal(answers["bf_ids"], exact_ids)
    np.testing.assert_allclose(answers["bf_scores"], exact_scores, rtol=1e-4, atol=1e-5)
    assert report["scann_imported_for_bf"] is False
    # ScaNN (tree + AH + reorder): recall@10 against exact.
    recall = np.mean([len(set(a) & set(e)) / K for a, e in zip(answers["scann_ids"], exact_ids)])
    assert recall >= 0.95, recall
    assert "pip install scann" in report["scann_missing_error"] and "brute_force" in report["scann_missing_error"]
    meta = report["metadata"]
    assert meta["k"] == K and meta["num_items"] == dataset.num_items and meta["needs_scann"] is True
    assert [s["name"] for s in meta["inputs"]] == [s.name for s in dataset.features.query]
    assert config_lib.from_dict(meta["config"]) == config_lib.smoke()
    assert meta["index"]["parameters"]["mode"] == "tree_ah" and meta["index"]["parameters"]["num_leaves"] == 14


def test_signature_has_named_query_inputs_and_top_k_outputs(trained):
    loaded = tf.saved_model.load(str(trained["root"] / "bf"))
    signature = loaded.signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    specs = {s.name: s for s in trained["dataset"].features.query}
    assert set(inputs) == set(specs)
    for name, spec in specs.items():
        assert inputs[name].dtype == tf.as_dtype(spec.dtype) and tuple(inputs[name].shape) == (None, *spec.shape)
    outputs = signature.structured_outputs
    assert outputs["item_ids"].dtype == tf.string and tuple(outputs["scores"].shape) == (None, K)


def test_query_feature_errors_and_hash_bucket_behaviour(trained):
    model = serving.load(str(trained["root"] / "bf"))
    good = _queries(trained["dataset"], 2)
    with pytest.raises(ValueError, match=r"unknown feature\(s\) \['bogus'\]"):
        model.query({**good, "bogus": np.array(["x", "y"])})
    with pytest.raises(ValueError, match=r"missing feature\(s\) \['region'\]"):
        model.query({k: v for k, v in good.items() if k != "region"})
    with pytest.raises(ValueError, match=r"'history' \(bag\): expected shape \[batch, 4\]; received \[2, 3\]"):
        model.query({**good, "history": good["history"][:, :3]})
    with pytest.raises(TypeError, match=r"'activity' \(dense\): expected float"):
        model.query({**good, "activity": np.array([["a"], ["b"]])})
    with pytest.raises(ValueError, match="expected batch size"):
        model.query({**good, "user_id": good["user_id"][:1]})
    # Never-seen IDs and categories are not errors: they hash into the tables' OOV rows.
    unseen = {**good, "user_id": np.array(["never-seen-user", "x"]), "region": np.array(["atlantis", "mars"])}
    ids, scores = model.query(unseen)
    assert ids.shape == (2, K) and set(ids.ravel()) <= set(trained["dataset"].item_ids) and np.all(np.isfinite(scores))


def test_refused_exports(trained, tmp_path):
    workdir = trained["workdir"]
    with pytest.raises(ValueError, match="corpus is empty"):
        empty = {name: values[:0] for name, values in trained["dataset"].items.items()}
        serving.export_from_workdir(workdir, str(tmp_path / "empty"), IndexConfig(kind="brute_force"), items=empty)
    no_checkpoint = tmp_path / "no_checkpoint"
    no_checkpoint.mkdir()
    shutil.copy(os.path.join(workdir, "config.json"), no_checkpoint / "config.json")
    with pytest.raises(ValueError, match="expected a checkpoint"):
        serving.export_from_workdir(str(no_checkpoint), str(tmp_path / "x"), IndexConfig(kind="brute_force"))
    with pytest.raises(ValueError, match="does not exist"):
        serving.export_from_workdir(workdir, str(tmp_path / "y"), checkpoint=str(tmp_path / "ckpt-404"))
    with pytest.raises(ValueError, match="config.json"):
        serving.restore_model(str(tmp_path))
    assert not os.path.exists(tmp_path / "empty") and not os.path.exists(tmp_path / "x")


def test_refresh_from_changed_corpus_and_newer_checkpoint(trained, tmp_path):
    dataset, workdir = trained["dataset"], trained["workdir"]
    queries = _queries(dataset, 8)
    before, _ = _exact_top_k(trained["model"], dataset, queries)
    # Changed corpus: the top-1 item of query 0 is removed, everything else kept; re-export.
    keep = dataset.item_ids != before[0, 0]
    items = {name: np.asarray(values)[keep] for name, values in dataset.items.items()}
    serving.export_from_workdir(workdir, str(tmp_path / "smaller"), IndexConfig(kind="brute_force", k=K), items=items)
    ids, _ = serving.load(str(tmp_path / "smaller")).query(queries)
    assert before[0, 0] not in set(ids.ravel())
    np.testing.assert_array_equal(ids[0, : K - 1], before[0, 1:])  # the rest moves up by one

    # Newer checkpoint: a changed item tower is picked up (latest checkpoint), without retraining.
    _, _, model = serving.restore_model(workdir)
    old = index_corpus(model.item_tower, dataset.items, "item_id", IndexConfig(kind="brute_force")).embeddings
    layer = model.item_tower._layers[0]
    layer.kernel.assign(layer.kernel * -1.0)
    checkpoint_for(model).save(os.path.join(workdir, "checkpoint", "ckpt"))
    _, _, refreshed, _ = serving.index_from_workdir(workdir, IndexConfig(kind="brute_force"))
    assert not np.allclose(refreshed.embeddings, old, atol=1e-3)
    expected = index_corpus(model.item_tower, dataset.items, "item_id", IndexConfig(kind="brute_force")).embeddings
    np.testing.assert_allclose(refreshed.embeddings, expected, rtol=1e-5, atol=1e-6)


def test_cli_query_prints_top_k_and_reports_bad_features(trained, capsys):
    path = str(trained["root"] / "bf")
    argv = [
        "query",
        path,
        "--feature",
        "user_id=user_3",
        "--feature",
        "region=region_1",
        "--feature",
        "history=item_1,item_2",
        "--feature",
        "activity=0.5",
    ]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["rank", "item_id", "score"] and len(lines) == K + 1
    assert all(line.split()[1] in set(trained["dataset"].item_ids) for line in lines[1:])
    assert cli.main(["query", path, "--feature", "activity=1,2"]) == 2
    assert "(dense): expected 1 value(s); received 2" in capsys.readouterr().err
    assert cli.main(["query", path, "--feature", "history=" + ",".join(["a"] * 5)]) == 2
    assert "expected at most 4 IDs" in capsys.readouterr().err


_EXCLUDE_SUBPROCESS = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    sys.modules["scann"] = None  # where ScaNN is missing the default index is brute force, with a warning
    from yt_bias.serving.index import default_index_kind
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = {"kind_without_scann": default_index_kind(), "warning": " ".join(str(w.message) for w in caught)}
    del sys.modules["scann"]
    report["kind_with_scann"] = default_index_kind()
    from yt_bias.serving import export as serving
    root = sys.argv[1]
    queries = dict(np.load(root + "/queries.npz"))
    exclude = np.load(root + "/exclude.npy")
    nearly_all = np.load(root + "/nearly_all.npy")
    out = {}
    for name in ("bf", "scann"):
        model = serving.load(root + "/" + name)
        out[name + "_ids"], out[name + "_scores"] = model.query(queries, exclude_item_ids=exclude)
        one = {key: value[:1] for key, value in queries.items()}
        out[name + "_few_ids"], out[name + "_few_scores"] = model.query(one, exclude_item_ids=nearly_all)
        empty = {key: value[:0] for key, value in queries.items()}
        report[name + "_empty"] = [list(model.query(empty)[0].shape),
                                   list(model.query(empty, exclude_item_ids=np.zeros((0, 3), str))[0].shape)]
    np.savez(root + "/excluded_answers.npz", **out)
    print(json.dumps(report))
    """
)


def test_exclusions_in_a_fresh_process_equal_brute_force_over_the_rest(trained):
    root, model, dataset = trained["root"], trained["model"], trained["dataset"]
    queries = _queries(dataset, 32)
    rng = np.random.default_rng(0)
    scores = embed(model.query_tower, queries) @ embed(model.item_tower, dataset.items).T
    order = np.argsort(-scores, axis=1, kind="stable")
    rows = []
    for i in range(len(scores)):  # the exact top 3, a random item, an unknown ID, and a varying amount of padding
        row = list(dataset.item_ids[order[i, :3]]) + [str(rng.choice(dataset.item_ids)), "not-an-item"]
        rows.append(row + [""] * (i % 4))
    width = max(len(r) for r in rows)
    exclude = np.array([r + [""] * (width - len(r)) for r in rows])
    keep = order[0][-4:]  # query 0 excludes every item but its 4 lowest-scoring ones
    nearly_all = np.array([[i for i in dataset.item_ids if i not in set(dataset.item_ids[keep])]])
    np.savez(root / "queries.npz", **queries)
    np.save(root / "exclude.npy", exclude)
    np.save(root / "nearly_all.npy", nearly_all)
    report, answers = _run_in_fresh_process(_EXCLUDE_SUBPROCESS, root, "excluded_answers.npz")
    assert report["kind_without_scann"] == "brute_force" and "pip install scann" in report["warning"]
    assert report["kind_with_scann"] == "scann"
    assert report["bf_empty"] == report["scann_empty"] == [[0, K], [0, K]]

    expected_ids, expected_scores = [], []
    for i, row in enumerate(exclude):
        rest = [j for j in order[i] if dataset.item_ids[j] not in set(row)][:K]
        expected_ids.append(dataset.item_ids[rest])
        expected_scores.append(scores[i, rest])
    # Brute force: exactly the brute-force top-k over the non-excluded corpus.
    np.testing.assert_array_equal(answers["bf_ids"], np.array(expected_ids))
    np.testing.assert_allclose(answers["bf_scores"], np.array(expected_scores), rtol=1e-4, atol=1e-5)
    # ScaNN (tree + AH + reorder): never an excluded ID, always k valid items, recall against the same truth.
    for name in ("bf", "scann"):
        ids = answers[f"{name}_ids"]
        assert not any(set(got) & set(row) for got, row in zip(ids, exclude)) and np.all(ids != "")
    recall = np.mean([len(set(a) & set(e)) / K for a, e in zip(answers["scann_ids"], expected_ids)])
    assert recall >= 0.9, recall
    # Fewer than k items left: those items, in order, then "" / -inf.
    np.testing.assert_array_equal(answers["bf_few_ids"][0], list(dataset.item_ids[keep]) + [""] * (K - 4))
    assert np.all(np.isneginf(answers["bf_few_scores"][0, 4:])) and np.all(np.isfinite(answers["bf_few_scores"][0, :4]))
    found = [i for i in answers["scann_few_ids"][0] if i]
    assert set(found) <= set(dataset.item_ids[keep])


def test_cli_query_excludes_items_and_rejects_none_values(trained, capsys):
    path = str(trained["root"] / "bf")
    features = ["--feature", "user_id=user_3", "--feature", "region=region_1", "--feature", "history=item_1,item_2"]
    features += ["--feature", "activity=0.5"]
    assert cli.main(["query", path, *features]) == 0
    top = [line.split()[1] for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert cli.main(["query", path, *features, "--exclude", top[0], "--exclude", top[2]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == K + 1
    assert [line.split()[1] for line in lines[1:]][: K - 2] == [top[1]] + top[3:]
    model = serving.load(path, warmup=False)
    good = _queries(trained["dataset"], 2)
    with pytest.raises(TypeError, match=r"query feature 'user_id' \(id\): expected strings; received None"):
        model.query({**good, "user_id": np.array([None, "user_1"], dtype=object)})
    with pytest.raises(ValueError, match=r"exclude_item_ids: expected 2 row\(s\), one per query; received 1"):
        model.query(good, exclude_item_ids=[["item_1"]])
    with pytest.raises(TypeError, match=r"exclude_item_ids\[1\]: expected string item IDs; received None"):
        model.query(good, exclude_item_ids=[["item_1"], [None]])
    ids, _ = model.query(good, exclude_item_ids=[["item_1"], []])  # ragged rows are padded
    assert ids.shape == (2, K) and "item_1" not in ids[0]
