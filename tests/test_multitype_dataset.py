"""MultiTypeDataset on a hand-written fixture: types, texts, per-type statistics, clear errors."""

from __future__ import annotations

import os
import shutil

import pytest
from recbole.data import create_dataset

from recbole_gfm.config import Config, ConfigError
from recbole_gfm.data.dataset import DataError, MultiTypeDataset

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
NAME = "tiny-typed"


def make_config(data_path: str = FIXTURES, **extra) -> Config:
    settings = {
        "data_path": data_path,
        "state": "ERROR",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "RATING_FIELD": None,
    }
    settings.update(extra)
    return Config("BPR", NAME, config_dict=settings)


@pytest.fixture(scope="module")
def dataset() -> MultiTypeDataset:
    return MultiTypeDataset(make_config())


def internal(dataset: MultiTypeDataset, token: str) -> int:
    return int(dataset.token2id(dataset.iid_field, token))


def test_types_follow_sorted_names(dataset):
    assert dataset.item_type_names() == ["audiobook", "music", "podcast"]
    types = dataset.item_type_ids()
    assert types.shape == (dataset.item_num,) and types.dtype.is_floating_point is False
    assert types[0] == -1
    expected = {"p1": 2, "p2": 2, "p3": 2, "a1": 0, "a2": 0, "m1": 1}
    assert {t: int(types[internal(dataset, t)]) for t in expected} == expected


def test_texts_label_fields_and_fall_back(dataset, caplog):
    texts = dataset.item_texts()
    assert len(texts) == dataset.item_num and texts[0] == ""
    assert texts[internal(dataset, "p1")] == "Daily News Show. Genres: news daily"
    assert texts[internal(dataset, "a2")] == "Quiet Stars"
    assert texts[internal(dataset, "p3")] == "podcast. Year: 2019"  # no text: type and other fields
    assert "title" not in dataset.item_feat  # text fields are not carried into batches


def test_missing_text_is_counted_in_one_warning(caplog):
    with caplog.at_level("WARNING"):
        MultiTypeDataset(make_config(text_fields=["title"]))
    warnings = [r.message for r in caplog.records if "have no text" in r.message]
    assert warnings == ["1 of 6 items have no text in ['title']: their text is built from their type and other fields."]


def test_type_statistics_equal_hand_counts(dataset):
    stats = dataset.type_statistics()
    assert stats["types"] == {
        "audiobook": {"items": 2, "interactions": 4, "users": 3},
        "music": {"items": 1, "interactions": 1, "users": 1},
        "podcast": {"items": 3, "interactions": 5, "users": 4},
    }
    assert stats["shared_users"] == {
        "audiobook": {"music": 0, "podcast": 2},
        "music": {"audiobook": 0, "podcast": 1},
        "podcast": {"audiobook": 2, "music": 1},
    }
    text = str(dataset)
    assert "podcast: 3 items, 5 interactions, 4 users" in text
    assert "audiobook & podcast: 2" in text


def test_split_copies_keep_types_and_count_their_own_interactions():
    split = {"split": {"RS": [0.5, 0.25, 0.25]}, "order": "TO", "group_by": None, "mode": "full"}
    full = MultiTypeDataset(make_config(eval_args=split))
    parts = full.build()
    assert all(isinstance(p, MultiTypeDataset) for p in parts)
    assert all(p.item_texts() == full.item_texts() and p.item_type_names() == full.item_type_names() for p in parts)
    per_part = [p.type_statistics()["types"] for p in parts]
    assert [sum(t["interactions"] for t in s.values()) for s in per_part] == [6, 2, 2]
    for name in full.item_type_names():
        assert sum(s[name]["interactions"] for s in per_part) == full.type_statistics()["types"][name]["interactions"]


def test_plain_recbole_dataset_reads_the_same_files():
    config = make_config(load_col={"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "item_type"]})
    plain = create_dataset(config)
    assert plain.inter_num == 10 and plain.item_num == 7
    assert "item_type" in plain.item_feat


def copy_fixture(tmp_path, item_lines=None, inter_extra=None) -> str:
    folder = tmp_path / NAME
    shutil.copytree(os.path.join(FIXTURES, NAME), folder)
    if item_lines is not None:
        (folder / f"{NAME}.item").write_text("\n".join(item_lines) + "\n")
    if inter_extra:
        with open(folder / f"{NAME}.inter", "a") as f:
            f.write(inter_extra)
    return str(tmp_path)


def test_error_type_field_missing(tmp_path):
    lines = ["item_id:token\ttitle:token_seq"] + [f"{item}\tSome title" for item in ("p1", "p2", "p3", "a1", "a2", "m1")]
    data = copy_fixture(tmp_path, lines)
    with pytest.raises(DataError) as err:
        MultiTypeDataset(make_config(data))
    message = str(err.value)
    assert f"{NAME}.item has no field 'item_type' (item_type_field)" in message
    assert "Add a 'item_type:token' column" in message


def test_error_items_absent_from_item_file(tmp_path):
    data = copy_fixture(tmp_path, inter_extra="u6\tx9\t11\nu6\tx9\t12\n")
    with pytest.raises(DataError) as err:
        MultiTypeDataset(make_config(data))
    message = str(err.value)
    assert f"{NAME}.inter: 2 interactions with 1 items absent from" in message
    assert f"{NAME}.item (field 'item_id'; e.g. x9)" in message


def test_error_empty_type(tmp_path):
    lines = open(os.path.join(FIXTURES, NAME, f"{NAME}.item")).read().splitlines()
    lines[3] = lines[3].replace("podcast", "")
    data = copy_fixture(tmp_path, lines)
    with pytest.raises(DataError, match=rf"{NAME}.item: 1 items have an empty 'item_type' .* line 4 \(item 'p3'\)"):
        MultiTypeDataset(make_config(data))


def test_error_declared_type_without_items():
    with pytest.raises(DataError, match=rf"{NAME}.item: no item has 'item_type' 'video', declared in item_types"):
        MultiTypeDataset(make_config(item_types=["audiobook", "podcast", "video"]))


def test_error_unknown_text_field_and_missing_item_file(tmp_path):
    with pytest.raises(DataError, match=rf"{NAME}.item has no field 'summary' listed in text_fields"):
        MultiTypeDataset(make_config(text_fields=["title", "summary"]))
    data = copy_fixture(tmp_path)
    os.remove(os.path.join(data, NAME, f"{NAME}.item"))
    with pytest.raises(ConfigError, match=rf"{NAME}.item not found: MultiTypeDataset needs an .item file"):
        MultiTypeDataset(make_config(data))


def test_type_filtered_away_is_reported(caplog):
    with caplog.at_level("WARNING"):
        dataset = MultiTypeDataset(make_config(item_inter_num_interval="[2,inf)"))
    assert dataset.item_type_names() == ["audiobook", "podcast"]  # m1 (music) had one interaction
    assert "No item of type ['music'] is left after filtering" in caplog.text
    assert dataset.type_statistics()["types"]["podcast"] == {"items": 2, "interactions": 4, "users": 3}
