"""Hostile inputs at serving: dense values far outside the training range, and raw-signature misuse.

Dense query features are clipped to the range the run saw in training (recorded in run.json,
carried in the export's metadata), so a huge value ranks like the largest seen value instead of
giving every item score 0; the raw signature names the feature on a wrong width, a batch-size
mismatch or a non-finite value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from yt_bias import cli
from yt_bias.config import IndexConfig

K = 5

# Run in a fresh process: load each export, query once with activity = 1e30 and once at the top
# of its training range, and call the raw signature with bad inputs.
_FRESH = r"""
import json, sys, warnings
import numpy as np
from yt_bias.serving import export as serving
from yt_bias._keras import tf

out = {}
for kind in ("bf", "scann"):
    model = serving.load(sys.argv[1] + "/" + kind)
    top = model.metadata["dense_ranges"]["activity"]["max"][0]
    query = {s.name: np.full((1, *s.shape), "", dtype=object).astype(str) for s in model.specs if s.kind != "dense"}
    query["user_id"] = np.asarray(["user_3"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        huge = model.query({**query, "activity": np.asarray([[1e30]], np.float32)})
    at_top = model.query({**query, "activity": np.asarray([[top]], np.float32)})
    raw = {}
    base = model.check_features({**query, "activity": np.asarray([[0.0]], np.float32)})
    wide = dict(base, history=tf.constant(np.full((1, 25), "x")))
    two = dict(base, activity=tf.constant(np.zeros((2, 1), np.float32)))
    nan = dict(base, activity=tf.constant(np.full((1, 1), np.nan, np.float32)))
    for name, inputs in (("wide", wide), ("batch", two), ("nan", nan)):
        try:
            model.signature(**inputs)
            raw[name] = "accepted"
        except Exception as error:  # noqa: BLE001
            raw[name] = str(error)
    out[kind] = {
        "huge_ids": huge[0].tolist(), "huge_scores": huge[1].tolist(),
        "top_ids": at_top[0].tolist(), "top_scores": at_top[1].tolist(),
        "warnings": [str(w.message) for w in caught], "raw": raw,
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_serving")
    workdir = str(root / "run")
    assert cli.main(["train", "--preset", "smoke", "--set", "train.epochs=1", "--workdir", workdir]) == 0
    from yt_bias.serving.export import export_from_workdir

    export_from_workdir(workdir, str(root / "bf"), IndexConfig(kind="brute_force", k=K))
    export_from_workdir(workdir, str(root / "scann"), IndexConfig(k=K))
    return {"root": root, "workdir": workdir}


def test_the_run_records_the_training_range_and_the_export_carries_it(exported):
    from yt_bias.config import smoke
    from yt_bias.data.loading import load_dataset

    with open(os.path.join(exported["workdir"], "run.json"), encoding="utf-8") as f:
        ranges = json.load(f)["dense_ranges"]
    config = smoke()
    activity = np.asarray(load_dataset(config.data, config.model.embedding_dim).train["activity"])
    assert ranges["activity"] == {"min": [float(activity.min())], "max": [float(activity.max())]}
    with open(exported["root"] / "bf" / "assets.extra" / "yt_bias.json", encoding="utf-8") as f:
        assert json.load(f)["dense_ranges"] == ranges


def test_a_huge_dense_value_is_clipped_in_a_fresh_process(exported):
    done = subprocess.run(
        [sys.executable, "-c", _FRESH, str(exported["root"])], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for kind in ("bf", "scann"):
        answer = result[kind]
        scores = np.asarray(answer["huge_scores"])
        assert np.isfinite(scores).all() and np.abs(scores).max() > 1e-3, (kind, scores)  # not all zero
        assert answer["huge_ids"] == answer["top_ids"], kind  # ranks as the largest value seen in training
        np.testing.assert_allclose(scores, answer["top_scores"], rtol=1e-5)
        assert len(answer["warnings"]) == 1 and "'activity'" in answer["warnings"][0] and "1e+30" in answer["warnings"][0]
        raw = {name: message.replace("\\'", "'") for name, message in answer["raw"].items()}  # the graph quotes ' as \'
        assert "query feature 'history' (bag): expected shape [batch, 4]" in raw["wide"], raw["wide"]
        assert "query feature 'activity': expected the batch size of 'user_id'" in raw["batch"], raw["batch"]
        assert "query feature 'activity' (dense): expected finite values" in raw["nan"], raw["nan"]


def test_cli_query_with_a_huge_value_warns_and_ranks(exported, capsys):
    path = str(exported["root"] / "bf")
    argv = ["query", path, "--feature", "user_id=user_3", "--feature", "region=region_1", "--feature", "history=item_1"]
    assert cli.main([*argv, "--feature", "activity=1e30"]) == 0
    captured = capsys.readouterr()
    assert "yt-bias query: warning: query feature 'activity' (dense)" in captured.err and "clipped" in captured.err
    scores = [float(line.split()[-1]) for line in captured.out.splitlines()[1:]]
    assert len(scores) == K and max(abs(s) for s in scores) > 1e-3
