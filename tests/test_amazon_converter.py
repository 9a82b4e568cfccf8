"""recbole_gfm.data.amazon: 2014 / 2018 / 2023 Amazon Reviews files -> one multi-type dataset."""

from __future__ import annotations

import gzip
import json
import os
import shutil

import pandas as pd
import pytest

from recbole_gfm.config import Config, ConfigError
from recbole_gfm.data import amazon
from recbole_gfm.data.amazon import AmazonFormatError, Category
from recbole_gfm.data.dataset import MultiTypeDataset
from recbole_gfm.data.validate import validate_atomic_files

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "amazon")
FILES = {  # format -> (Food reviews, Food meta, Kitchen reviews, Kitchen meta)
    "2014": ("ratings_Food.csv", "meta_Food_2014.json", "ratings_Kitchen.csv", None),
    "2018": ("Food_2018.json", "meta_Food_2018.json", "Kitchen_2018.json", "meta_Kitchen_2018.json"),
    "2023": ("Food_2023.jsonl", "meta_Food_2023.jsonl", "Kitchen_2023.jsonl", "meta_Kitchen_2023.jsonl"),
}
# Hand-derived: uA's second review of F1 is dropped; rows by user (first seen), then time.
EXPECTED_INTER = [
    ["uA", "F1", "5", "1000000000"],
    ["uA", "F2", "4", "1000000100"],
    ["uA", "K1", "4", "1000000500"],
    ["uA", "K2", "3", "1000000800"],
    ["uB", "F1", "3", "1000000200"],
    ["uB", "F2", "5", "1000000400"],
    ["uB", "K1", "5", "1000000600"],
    ["uC", "F3", "2", "1000000300"],
    ["uD", "K2", "1", "1000000700"],
]
EXPECTED_ITEM = [
    ["F1", "Food", "Green Tea", "Loose leaf. Organic tea from Japan"],
    ["F2", "Food", "Rice Crackers", ""],
    ["F3", "Food", "", ""],
    ["K1", "Kitchen", "Chef Knife", "8 inch"],
    ["K2", "Kitchen", "", ""],
]


def fixture_categories(fmt: str, folder: str, gz: bool) -> list[Category]:
    paths = []
    for name in FILES[fmt]:
        if name is None:
            paths.append(None)
            continue
        source = os.path.join(FIXTURES, name)
        if gz:
            target = os.path.join(folder, name + ".gz")
            with open(source, "rb") as f, gzip.open(target, "wb") as g:
                shutil.copyfileobj(f, g)
            source = target
        paths.append(source)
    return [Category("Food", paths[0], paths[1]), Category("Kitchen", paths[2], paths[3])]


def read(path: str) -> list[list[str]]:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False).values.tolist()


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("fmt", ["2014", "2018", "2023"])
def test_round_trip(fmt, gz, tmp_path):
    out = amazon.convert(fixture_categories(fmt, str(tmp_path), gz), str(tmp_path / "amz"))
    assert read(os.path.join(out, "amz.inter")) == EXPECTED_INTER
    items = read(os.path.join(out, "amz.item"))
    if fmt == "2014":  # no Kitchen metadata; the 2014 description is a string
        assert items[:3] == EXPECTED_ITEM[:3]
        assert [row[2:] for row in items[3:]] == [["", ""], ["", ""]]
    else:
        assert items == EXPECTED_ITEM
    stats = json.load(open(os.path.join(out, "prepare.json")))["type_statistics"]
    assert stats["types"] == {
        "Food": {"items": 3, "interactions": 5, "users": 3},
        "Kitchen": {"items": 2, "interactions": 4, "users": 3},
    }
    assert stats["shared_users"] == {"Food & Kitchen": 2}


def test_filters_and_loading_as_multitype_dataset(tmp_path, caplog):
    out = amazon.convert(
        fixture_categories("2023", str(tmp_path), gz=True), str(tmp_path / "amz"), item_core=2, min_user_types=2
    )
    assert [row[:2] for row in read(os.path.join(out, "amz.inter"))] == [
        ["uA", "F1"], ["uA", "F2"], ["uA", "K1"], ["uB", "F1"], ["uB", "F2"], ["uB", "K1"]
    ]
    config = Config(
        "BPR",
        "amz",
        config_dict={
            "data_path": str(tmp_path),
            "state": "ERROR",
            "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
        },
    )
    dataset = MultiTypeDataset(config)
    assert dataset.type_statistics()["types"] == {
        "Food": {"items": 2, "interactions": 4, "users": 2},
        "Kitchen": {"items": 1, "interactions": 2, "users": 2},
    }
    texts = dataset.item_texts()
    assert texts[int(dataset.token2id("item_id", "F1"))] == "Green Tea. Description: Loose leaf. Organic tea from Japan"
    assert texts[int(dataset.token2id("item_id", "K1"))] == "Chef Knife. Description: 8 inch"

    with caplog.at_level("INFO"):
        amazon.convert(fixture_categories("2023", str(tmp_path), gz=False), out)
    assert "already exists: nothing to do" in caplog.text


def test_cli(tmp_path):
    food, kitchen = (os.path.join(FIXTURES, n) for n in ("Food_2018.json", "Kitchen_2018.json"))
    meta = os.path.join(FIXTURES, "meta_Food_2018.json")
    out = str(tmp_path / "cli")
    amazon.main(["--category", f"Food={food},{meta}", "--category", f"Kitchen={kitchen}", "--out", out])
    assert len(read(str(tmp_path / "cli" / "cli.inter"))) == 9
    with pytest.raises(SystemExit):
        amazon.main(["--category", "Food", "--out", str(tmp_path / "x")])


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.csv", "u1,i1,5.0,1000\nu2,i1,5.0\n", r"bad.csv, line 2: 3 comma-separated fields"),
        ("bad.csv", "u1,i1,five,1000\n", r"bad.csv, line 1: field 'rating' is 'five', not a number"),
        ("bad.json", '{"reviewerID": "u", "asin": "i", "overall": 5, "unixReviewTime": 1}\n{"reviewerID": \n',
         r"bad.json, line 2: not valid JSON"),
        ("bad.jsonl", '{"user_id": "u", "parent_asin": "i", "timestamp": 1000}\n',
         r"bad.jsonl, line 1: field 'rating' missing from a 2023 review"),
        ("bad.json", '{"user": "u", "item": "i"}\n', r"bad.json, line 1: a JSON review without reviewerID/asin"),
    ],
)
def test_malformed_reviews_name_file_and_line(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(AmazonFormatError, match=message):
        amazon.convert([Category("Food", path)], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_malformed_meta_and_arguments(tmp_path):
    reviews = os.path.join(FIXTURES, "ratings_Food.csv")
    meta = write(tmp_path, "meta.json", '{"title": "no id"}\n')
    with pytest.raises(AmazonFormatError, match=r"meta.json, line 1: metadata without 'parent_asin'"):
        amazon.convert([Category("Food", reviews, meta)], str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="expected NAME=REVIEWS_PATH"):
        amazon.parse_category("Food")
    with pytest.raises(ConfigError, match="file 'nope.csv' does not exist"):
        amazon.parse_category("Food=nope.csv")
    with pytest.raises(ConfigError, match="No interaction is left after filtering"):
        amazon.convert([Category("Food", reviews)], str(tmp_path / "out"), user_core=50)


def test_control_characters_in_text_cannot_break_a_line(tmp_path):
    """Tabs, CR / LF, NUL and other control characters inside titles become spaces; quotes survive."""
    reviews = os.path.join(FIXTURES, "Food_2023.jsonl")
    titles = {"F1": '"Green"\tTea\r\nfrom\x00Japan\x1b', "F2": "Rice\u2028Crackers\x7f\x85", "F3": "Soy\rSauce\x0b"}
    meta = tmp_path / "meta.jsonl"
    records = [{"parent_asin": item, "title": title, "description": ["a\nb"]} for item, title in titles.items()]
    meta.write_text("".join(json.dumps(record) + "\n" for record in records))
    out = amazon.convert([Category("Food", reviews, str(meta))], str(tmp_path / "amz"))
    item_file = os.path.join(out, "amz.item")
    with open(item_file, "rb") as f:
        assert len(f.read().splitlines()) == 4  # the header and three items, nothing split
    assert [row[2:] for row in read(item_file)] == [
        ['"Green" Tea from Japan', "a b"], ["Rice Crackers", "a b"], ["Soy Sauce", "a b"]
    ]
    config = Config("BPR", "amz", config_dict={"data_path": str(tmp_path), "state": "ERROR", "RATING_FIELD": None})
    validate_atomic_files(config)
    texts = MultiTypeDataset(config).item_texts()
    assert '"Green" Tea from Japan. Description: a b' in texts
