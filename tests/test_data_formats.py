"""Real-data loaders on small files written in each exact format, the split/history protocol,
the download command (offline, against unreachable and file:// URLs) and the extra metrics."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
import zipfile

import numpy as np
import pytest

from yt_bias.config import DataConfig
from yt_bias.data.dataset import ITEM_INDEX, REWARD
from yt_bias.data.download import DownloadError, download
from yt_bias.data.loading import detect_source, load_dataset
from yt_bias.data.splits import history_bags, rewards, split_mask
from yt_bias.evaluation.exact import coverage_at_k, ndcg_at_k, popularity_bands, recall_by_band

GENRES = ["unknown", "Action", "Comedy", "Drama"]
# (user, item, rating, timestamp): user 1 watches 10, 20, 30, 40 in time; user 2 watches 20, 30, 10.
RATINGS = [
    (1, 20, 4, 200),
    (1, 10, 5, 100),
    (1, 30, 2, 300),
    (1, 40, 4, 400),
    (2, 20, 5, 150),
    (2, 30, 3, 250),
    (2, 10, 4, 450),
    (3, 20, 1, 120),
    (3, 30, 5, 130),
]


def _write(path, text, encoding="utf-8"):
    with open(path, "w", encoding=encoding) as f:
        f.write(text)


def _ml100k(tmp_path):
    d = tmp_path / "ml-100k"
    d.mkdir()
    _write(d / "u.data", "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS), "latin-1")
    items = [
        (10, "Toy Story (1995)", "01-Jan-1995", "0|0|1|0"),
        (20, "GoldenEye (1995)", "01-Jan-1995", "0|1|0|0"),
        (30, "Café Society (1997)", "", "0|0|1|1"),
        (40, "Heat (1995)", "15-Dec-1995", "0|1|0|1"),
        (50, "Never Rated (1998)", "01-Jan-1998", "1|0|0|0"),
    ]
    _write(d / "u.item", "".join(f"{i}|{t}|{r}||http://x|{g}\n" for i, t, r, g in items), "latin-1")
    _write(d / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n3|16|M|student|15213\n", "latin-1")
    _write(d / "u.genre", "".join(f"{g}|{k}\n" for k, g in enumerate(GENRES)), "latin-1")
    return str(d)


def _config(path, source="movielens", **kwargs):
    return DataConfig(source=source, path=path, **{"history_length": 3, **kwargs})


def _rows(data, user):
    keep = data["user_id"] == user
    order = np.argsort(data["timestamp"][keep])
    return {k: np.asarray(v)[keep][order] for k, v in data.items()}


def test_ml100k_features_rewards_and_temporal_split(tmp_path):
    ds = load_dataset(_config(_ml100k(tmp_path), test_fraction=0.25))
    ids = ds.item_ids.tolist()
    assert ids == ["10", "20", "30", "40", "50"] and ds.num_items == 5
    j = ids.index("30")
    assert sorted(set(ds.items["genres"][j]) - {""}) == ["Comedy", "Drama"]
    assert ds.items["title"][j].tolist()[:2] == ["café", "society"]  # latin-1 decoded, lower-cased
    assert ds.items["year"][j] == "1997" and ds.items["year"][ids.index("40")] == "1995"
    # Temporal: every test row is at or after the cut, every training row before it.
    assert ds.train["timestamp"].max() < ds.test["timestamp"].min()
    assert ds.num_train + ds.num_test == len(RATINGS)
    # Rewards: r = 1 for rating >= 4.
    by_time = {
        int(t): r for t, r in zip(np.r_[ds.train["timestamp"], ds.test["timestamp"]], np.r_[ds.train[REWARD], ds.test[REWARD]])
    }
    assert by_time == {t: float(r >= 4) for _, _, r, t in RATINGS}
    # User features: ml-100k ages are bucketed like ml-1m.
    assert set(ds.train["age"][ds.train["user_id"] == "3"]) == {"under18"}
    # The item-ID vocabulary is the training items; the history bag shares its table.
    spec = {s.name: s for s in ds.features.all}
    assert set(spec["item_id"].vocabulary) == set(ds.item_ids[ds.train[ITEM_INDEX]])
    assert spec["history"].table_name == spec["item_id"].table_name == "item"


def test_history_bags_use_only_the_past(tmp_path):
    ds = load_dataset(_config(_ml100k(tmp_path), test_fraction=0.25))
    user1 = _rows({k: np.r_[ds.train[k], ds.test[k]] for k in ("user_id", "timestamp", "history", ITEM_INDEX)}, "1")
    items = ds.item_ids[user1[ITEM_INDEX]].tolist()
    assert items == ["10", "20", "30", "40"]
    assert user1["history"].tolist() == [["", "", ""], ["10", "", ""], ["20", "10", ""], ["30", "20", "10"]]


def test_random_split_never_leaks_test_items_into_training_bags(tmp_path):
    users = np.repeat(np.arange(30), 12).astype(str)
    items = np.tile(np.arange(12), 30).astype(str)
    rng = np.random.default_rng(0)
    times = rng.permutation(len(users)).astype(float)
    test = split_mask(users, times, "random", 0.25, seed=3)
    assert test.sum() == 90
    bags = history_bags(users[~test], items[~test], times[~test], 5)
    test_pairs = set(zip(users[test], items[test]))
    train_users = users[~test]
    assert not any((u, i) in test_pairs for u, row in zip(train_users, bags) for i in row if i)


def test_user_last_n_split():
    users = np.array(["a", "a", "a", "b", "b", "c"])
    times = np.array([3.0, 1.0, 2.0, 5.0, 4.0, 9.0])
    test = split_mask(users, times, "user-last-n", last_n=2)
    # a: its two latest (t=3, t=2); b has only 2 rows and c 1 row: kept in training entirely.
    assert test.tolist() == [True, False, True, False, False, False]
    assert split_mask(users, times, "user-last-n", last_n=1).tolist() == [True, False, False, True, False, False]


def test_history_ties_follow_file_order():
    bags = history_bags(np.array(["u", "u", "u"]), np.array(["x", "y", "z"]), np.array([5.0, 5.0, 1.0]), 2)
    assert bags.tolist() == [["z", ""], ["x", "z"], ["", ""]]


def test_reward_rules():
    r = np.array([1.0, 3.5, 4.0, 5.0])
    assert rewards(r, "threshold", 4.0).tolist() == [0, 0, 1, 1]
    assert rewards(r, "threshold", 3.5).tolist() == [0, 1, 1, 1]
    assert rewards(r, "rating").tolist() == [1.0, 3.5, 4.0, 5.0]
    assert rewards(r, "binary").tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="reward must be one of"):
        rewards(r, "likes")


def test_protocol_fields_are_validated(tmp_path):
    path = _ml100k(tmp_path)
    with pytest.raises(ValueError, match="data.split must be one of .* received 'weekly'"):
        load_dataset(_config(path, split="weekly"))
    with pytest.raises(ValueError, match="data.test_fraction must be in"):
        load_dataset(_config(path, test_fraction=1.5))
    with pytest.raises(ValueError, match="data.path must name a directory"):
        load_dataset(DataConfig(source="movielens"))
    with pytest.raises(ValueError, match="data.source must be one of"):
        load_dataset(DataConfig(source="netflix", path=path))


def test_malformed_lines_name_file_and_line(tmp_path):
    path = _ml100k(tmp_path)
    with open(os.path.join(path, "u.data"), "a", encoding="latin-1") as f:
        f.write("3\t10\t4\n")
    with pytest.raises(ValueError, match=r"u\.data:10: expected 4 fields"):
        load_dataset(_config(path))
    _write(os.path.join(path, "u.data"), "1\t10\t4\t100\n1\t20\tfive\t200\n", "latin-1")
    with pytest.raises(ValueError, match=r"u\.data:2: field 'rating' must be a number; received 'five'"):
        load_dataset(_config(path))
    _write(os.path.join(path, "u.data"), "1\t10\t4\t100\n1\t99\t4\t200\n", "latin-1")
    with pytest.raises(ValueError, match=r"not in the item table, e.g. \['99'\]"):
        load_dataset(_config(path))


def test_ml1m_dat_format(tmp_path):
    d = tmp_path / "ml-1m"
    d.mkdir()
    _write(
        d / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n2::661::5::978299000\n", "latin-1"
    )
    _write(
        d / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)"
        "::Animation|Children's|Musical\n",
        "latin-1",
    )
    _write(d / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n", "latin-1")
    ds = load_dataset(_config(str(d), split="user-last-n", last_n=1))
    j = ds.item_ids.tolist().index("661")
    assert sorted(set(ds.items["genres"][j]) - {""}) == ["Animation", "Children's", "Musical"]
    assert ds.items["year"][j] == "1996"
    assert ds.num_test == 2 and set(ds.test["user_id"]) == {"1", "2"}
    assert set(ds.train["age"]) == {"age_1", "age_56"} and set(ds.train["gender"]) == {"F", "M"}


def test_ml_csv_format_with_quoted_titles(tmp_path):
    d = tmp_path / "ml-latest-small"
    d.mkdir()
    _write(
        d / "movies.csv",
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\n99,Empty (2001),(no genres listed)\n',
    )
    _write(
        d / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,11,3.5,964981247\n2,11,5.0,964982224\n2,1,2.5,964983815\n",
    )
    assert detect_source(str(d)) == "movielens"
    ds = load_dataset(_config(str(d), split="random", test_fraction=0.25, min_rating_positive=3.5))
    j = ds.item_ids.tolist().index("11")
    assert ds.items["title"][j].tolist()[:2] == ["american", "president"]
    assert ds.items["year"][j] == "1995" and (ds.items["genres"][ds.item_ids.tolist().index("99")] == "").all()
    assert np.r_[ds.train[REWARD], ds.test[REWARD]].sum() == 3  # 4.0, 3.5 and 5.0 are >= 3.5
    assert not any(s.name == "age" for s in ds.features.query)
    _write(d / "ratings.csv", "user,movie,rating,timestamp\n1,1,4.0,1\n")
    with pytest.raises(ValueError, match=r"ratings\.csv:1: expected the header userId,movieId,rating,timestamp"):
        load_dataset(_config(str(d)))


def _recbole(tmp_path, inter_header="user_id:token\titem_id:token\trating:float\ttimestamp:float"):
    d = tmp_path / "toy"
    d.mkdir()
    _write(d / "toy.inter", inter_header + "\n" + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS))
    _write(
        d / "toy.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\tprice:float\n"
        "10\tToy Story\t1995\tAnimation Comedy\t1.0\n20\tGoldenEye\t1995\tAction\t3.0\n"
        "30\tHeat\t1995\tAction Crime Drama\t\n40\tThe Firm\t1993\tDrama\t5.0\n",
    )
    _write(d / "toy.user", "user_id:token\tage:token\tgender:token\n1\t24\tM\n2\t53\tF\n3\t16\tM\n")
    return str(d)


def test_recbole_atomic_files(tmp_path):
    path = _recbole(tmp_path)
    assert detect_source(path) == "recbole"
    ds = load_dataset(_config(path, source="recbole", test_fraction=0.25))
    kinds = {s.name: s.kind for s in ds.features.all}
    assert kinds["class"] == "bag" and kinds["release_year"] == "categorical" and kinds["price"] == "dense"
    assert kinds["movie_title"] == "bag" and kinds["age"] == "categorical"
    j = ds.item_ids.tolist().index("30")
    assert sorted(set(ds.items["class"][j]) - {""}) == ["Action", "Crime", "Drama"]
    # price 1, 3, 5 standardised (mean 3, std 1.633); the empty value becomes the mean (0).
    np.testing.assert_allclose(ds.items["price"][:, 0], [-1.2247449, 0.0, 0.0, 1.2247449], rtol=1e-5)
    assert ds.truth["items_without_metadata"] == 0


def test_recbole_errors(tmp_path):
    path = _recbole(tmp_path, inter_header="user_id:token\titem_id:token\trating:float\ttimestamp:date")
    with pytest.raises(ValueError, match=r"toy\.inter:1: field 'timestamp' has type 'date'"):
        load_dataset(_config(path, source="recbole"))
    os.remove(os.path.join(path, "toy.inter"))
    _write(os.path.join(path, "toy.inter"), "user_id:token\titem_id:token\n1\t10\n2\t20\n3\t10\t9\n")
    with pytest.raises(ValueError, match=r"toy\.inter:4: expected 2 tab-separated fields"):
        load_dataset(_config(path, source="recbole", split="random"))
    _write(os.path.join(path, "toy.inter"), "user_id:token\titem_id:token\n1\t10\n2\t20\n")
    with pytest.raises(ValueError, match="no 'timestamp' field, so data.split='temporal' is impossible"):
        load_dataset(_config(path, source="recbole"))


def _mind(tmp_path):
    d = tmp_path / "MINDsmall_train"
    d.mkdir(parents=True)
    news = [
        ("N1", "sports", "football", "Big Match Tonight"),
        ("N2", "news", "world", "Elections"),
        ("N3", "sports", "tennis", "Final Set"),
        ("N4", "lifestyle", "food", "Best Soup"),
    ]
    _write(d / "news.tsv", "".join(f"{n}\t{c}\t{s}\t{t}\tabstract\thttp://x\t[]\t[]\n" for n, c, s, t in news))
    _write(
        d / "behaviors.tsv",
        "1\tU1\t11/11/2019 9:05:58 AM\tN4 N2\tN1-1 N2-0 N3-0\n"
        "2\tU2\t11/12/2019 1:00:00 PM\t\tN3-1 N1-1 N4-0\n"
        "3\tU1\t11/13/2019 2:00:00 PM\tN4 N2\tN3-1 N4-0\n"
        "4\tU2\t11/14/2019 8:00:00 AM\t\tN2-1\n",
    )
    return str(tmp_path)


def test_mind_clicks_impressions_and_prior_history(tmp_path):
    path = _mind(tmp_path)
    assert detect_source(path) == "mind"
    ds = load_dataset(_config(path, source="mind", test_fraction=0.2))
    assert ds.num_train + ds.num_test == 5  # five clicks
    assert ds.test["user_id"].tolist() == ["U2"] and ds.item_ids[ds.test[ITEM_INDEX]].tolist() == ["N2"]
    first = _rows(ds.train, "U1")
    assert ds.item_ids[first[ITEM_INDEX]].tolist() == ["N1", "N3"]
    assert first["history"].tolist() == [["N2", "N4", ""], ["N1", "N2", "N4"]]  # MIND's history column, then clicks
    assert sorted(set(first["impressions"][0]) - {""}) == ["N2", "N3"]
    assert set(ds.items["category"]) == {"sports", "news", "lifestyle"}
    assert (ds.train[REWARD] == 1).all()


def test_mind_malformed_impression(tmp_path):
    path = _mind(tmp_path)
    with open(os.path.join(path, "MINDsmall_train", "behaviors.tsv"), "a", encoding="utf-8") as f:
        f.write("5\tU3\t11/14/2019 9:00:00 AM\t\tN1-1 N2\n")
    with pytest.raises(ValueError, match=r"behaviors\.tsv:5: impression 'N2' must look like N123-1"):
        load_dataset(_config(path, source="mind"))


def test_download_fails_fast_offline_naming_url_and_folder(tmp_path):
    start = time.perf_counter()
    with pytest.raises(DownloadError) as info:
        download("ml-100k", str(tmp_path), base_url="http://127.0.0.1:9/", timeout=5, log=lambda m: None)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "http://127.0.0.1:9/ml-100k.zip" in message and os.path.join(str(tmp_path), "ml-100k") in message
    with pytest.raises(ValueError, match="data set must be one of .* received 'ml-7m'"):
        download("ml-7m", str(tmp_path))


def _mirror(tmp_path, md5_text=None):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "ml-100k.zip", "w") as z:
        z.writestr("ml-100k/u.data", "1\t10\t4\t100\n")
    digest = hashlib.md5((mirror / "ml-100k.zip").read_bytes()).hexdigest()
    _write(mirror / "ml-100k.zip.md5", md5_text or f"MD5 (ml-100k.zip) = {digest}\n")
    return "file://" + str(mirror)


def test_download_verifies_the_published_md5(tmp_path):
    from yt_bias.cli import main

    cache = tmp_path / "cache"
    path = download("ml-100k", str(cache), base_url=_mirror(tmp_path), log=lambda m: None)
    assert path == os.path.join(str(cache), "ml-100k", "ml-100k") and os.path.isfile(os.path.join(path, "u.data"))
    assert main(["data", "download", "ml-100k", "--cache-dir", str(cache)]) == 0  # already there: no network


def test_download_rejects_a_checksum_mismatch(tmp_path, capsys):
    from yt_bias.cli import main

    url = _mirror(tmp_path, md5_text="0123456789abcdef0123456789abcdef  ml-100k.zip\n")
    with pytest.raises(DownloadError, match="does not match the published 0123456789abcdef0123456789abcdef"):
        download("ml-100k", str(tmp_path / "cache"), base_url=url, log=lambda m: None)
    assert not os.path.exists(tmp_path / "cache" / "ml-100k" / "ml-100k.zip")
    assert main(["data", "download", "mind-small", "--cache-dir", str(tmp_path), "--base-url", "http://127.0.0.1:9"]) == 1
    assert "http://127.0.0.1:9/MINDsmall_train.zip" in capsys.readouterr().err


def test_ndcg_coverage_and_bands_by_hand():
    top = np.array([[3, 1, 2], [0, 2, 1], [4, 0, 1]])
    targets = np.array([1, 0, 3])
    ndcg = ndcg_at_k(top, targets, ks=(1, 3))
    assert ndcg["ndcg@1"] == pytest.approx(1 / 3)
    assert ndcg["ndcg@3"] == pytest.approx((1 / np.log2(3) + 1.0 + 0.0) / 3)
    assert coverage_at_k(top, 10, ks=(1, 3)) == {"coverage@1": 0.3, "coverage@3": 0.5}
    counts = np.array([50, 30, 10, 10, 0])  # 100 interactions: item 0 starts at 0%, item 1 at 50%, 2 at 80%
    bands = popularity_bands(counts, shares=(0.4, 0.7))
    assert bands.tolist() == ["head", "torso", "tail", "tail", "tail"]
    by_band = recall_by_band(top, targets, bands, ks=(1, 3))
    assert by_band["recall@1/head"] == 1.0 and by_band["recall@3/torso"] == 1.0 and by_band["recall@3/tail"] == 0.0
    assert by_band["share/head"] == pytest.approx(1 / 3)


def test_real_loader_output_trains(tmp_path):
    from yt_bias.config import smoke
    from yt_bias.training.train import train_and_evaluate

    config = smoke()
    config = dataclasses.replace(
        config,
        data=_config(_recbole(tmp_path), source="recbole", split="user-last-n"),
        train=dataclasses.replace(config.train, batch_size=4, epochs=1),
        eval=dataclasses.replace(config.eval, ks=(1, 3)),
    )
    metrics = train_and_evaluate(config)
    assert 0.0 <= metrics["recall@3"] <= 1.0 and metrics["num_items"] == 4 and np.isfinite(metrics["loss_history"][0])
