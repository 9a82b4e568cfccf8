"""Bad atomic files: each case is one clear DataError naming the file, the line and the field or key.

Every case runs through :func:`validate_atomic_files` (what the run pipeline calls before any
dataset is built) and through :class:`MultiTypeDataset` (which validates when used directly).
"""

from __future__ import annotations

import os

import pytest
from recbole.data import create_dataset

from recbole_gfm.config import Config, ConfigError
from recbole_gfm.data import validate
from recbole_gfm.data.dataset import DataError, MultiTypeDataset
from recbole_gfm.data.validate import validate_atomic_files
from recbole_gfm.data.protocol import data_preparation, protocol_file

NAME = "bad"
INTER = "user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t1\nu1\ti2\t2\nu2\ti1\t3\nu2\ti3\t4\n"
ITEM = (
    "item_id:token\titem_type:token\ttitle:token_seq\n"
    "i1\tpodcast\tDaily News\ni2\taudiobook\tThe Road\ni3\tpodcast\tTech Talk\n"
)
USER = "user_id:token\tage:float\nu1\t30\nu2\t41\n"
LOAD_COL = {
    "inter": ["user_id", "item_id", "timestamp"],
    "item": ["item_id", "item_type", "title"],
    "user": ["user_id", "age"],
}
VEC_ITEM = "item_id:token\titem_type:token\tvec:float_seq\ni1\tpodcast\t0.5 1\ni2\tpodcast\t0.5 x\ni3\tpodcast\t1\n"


def write_dataset(tmp_path, **files: str | bytes) -> str:
    """``data_path`` holding ``bad/bad.<suffix>`` for each file given (the good .inter/.item/.user otherwise)."""
    folder = tmp_path / NAME
    folder.mkdir(exist_ok=True)
    contents = {"inter": INTER, "item": ITEM, "user": USER, **files}
    for suffix, text in contents.items():
        if text is not None:
            path = folder / f"{NAME}.{suffix}"
            path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(tmp_path)


def make_config(data_path: str, files=(), **extra) -> Config:
    settings = {"data_path": data_path, "state": "ERROR", "load_col": LOAD_COL, "RATING_FIELD": None}
    settings.update(extra)
    return Config("BPR", NAME, files, config_dict=settings)


ENTRY_POINTS = {
    "validate": lambda config: validate_atomic_files(config),
    "MultiTypeDataset": lambda config: MultiTypeDataset(config),
}


@pytest.fixture(params=list(ENTRY_POINTS))
def load(request):
    """Validate through the public function, or by building the plugin dataset."""
    validate._validated.clear()
    return ENTRY_POINTS[request.param]


def error_of(load, config) -> str:
    with pytest.raises(DataError) as err:
        load(config)
    return str(err.value)


# case, files, expected message parts (the file is checked in every case)
CASES = [
    ("empty .inter", {"inter": ""}, [f"{NAME}.inter is empty", "header line of name:type fields"]),
    ("header-only .inter", {"inter": "user_id:token\titem_id:token\ttimestamp:float\n"},
     [f"{NAME}.inter has no interactions: only the header line"]),
    ("header-only .item", {"item": "item_id:token\titem_type:token\ttitle:token_seq\n"}, [f"{NAME}.item has no items"]),
    ("header field without type", {"inter": INTER.replace("user_id:token", "user_id")},
     [f"{NAME}.inter, line 1: header field 1 'user_id' is not name:type", "'user_id:token'"]),
    ("unknown type", {"inter": INTER.replace("timestamp:float", "timestamp:int")},
     [f"{NAME}.inter, line 1: field 'timestamp' has type 'int'", "token, float, token_seq, float_seq"]),
    ("wrong separator", {"user": USER.replace("\t", ",")},
     [f"{NAME}.user, line 1: the header is one field, 'user_id:token,age:float'", "field_separator"]),
    ("field named twice", {"user": "user_id:token\tage:float\tage:float\nu1\t3\t4\n"},
     [f"{NAME}.user, line 1: field 'age' appears twice"]),
    ("byte-order mark", {"inter": "\ufeff" + INTER},
     [f"{NAME}.inter, line 1: the file starts with a byte-order mark", "utf-8-sig"]),
    ("non-numeric timestamp", {"inter": INTER.replace("u1\ti2\t2", "u1\ti2\tyesterday")},
     [f"{NAME}.inter, line 3, field 'timestamp' (float): 'yesterday' is not a number",
      "drop 'timestamp' from load_col"]),
    ("negative timestamp", {"inter": INTER.replace("u2\ti1\t3", "u2\ti1\t-3")},
     [f"{NAME}.inter, line 4, field 'timestamp' (TIME_FIELD): '-3' is a negative timestamp", "leave it empty"]),
    ("non-numeric float_seq", {"item": VEC_ITEM}, [f"{NAME}.item, line 3, field 'vec' (float_seq): 'x' is not a number"],
     {"load_col": {**LOAD_COL, "item": ["item_id", "item_type", "vec"]}}),
    ("header repeated", {"inter": INTER.replace("\n", "\n" + INTER.split("\n")[0] + "\n", 1)},
     [f"{NAME}.inter, line 2 repeats the header line"]),
    ("tab inside a title", {"item": ITEM.replace("The Road", "The\tRoad")},
     [f"{NAME}.item, line 3: 4 fields where the header has 3 (item_id, item_type, title)",
      "tabs and line breaks inside text"]),
    ("missing field", {"inter": INTER.replace("u2\ti1\t3", "u2\ti1")},
     [f"{NAME}.inter, line 4: 2 fields where the header has 3", "a field is missing"]),
    ("unclosed quote", {"item": ITEM.replace("\tThe Road", '\t"The Road')},
     [f"{NAME}.item, line 3: a quoted value opened on this line is never closed", "double quote"]),
    ("quoted line break", {"item": ITEM.replace("\tThe Road", '\t"The Road').replace("Tech Talk", 'Tech Talk"')},
     [f"{NAME}.item, line 3: a quoted value in field 'title' runs on to line 4", "lines 3-4 would be read as one row"]),
    ("text after a closing quote", {"item": ITEM.replace("The Road", '"The" Road')},
     [f"{NAME}.item, line 3: malformed quoting", "double quote"]),
    ("duplicate item", {"item": ITEM + "i2\tpodcast\tOther\n"},
     [f"{NAME}.item, lines 3, 5: item id 'i2' (field 'item_id', ITEM_ID_FIELD) is listed 2 times",
      "keep only the first"]),
    ("duplicate user", {"user": USER + "u1\t31\n"},
     [f"{NAME}.user, lines 2, 4: user id 'u1' (field 'user_id', USER_ID_FIELD)"]),
    ("empty user id", {"inter": INTER.replace("u2\ti1\t3", "\ti1\t3")},
     [f"{NAME}.inter, line 4: field 'user_id' (USER_ID_FIELD) is empty"]),
    ("id read as missing", {"inter": INTER.replace("u1\ti2", "u1\tNA")},
     [f"{NAME}.inter, line 3: field 'item_id' (ITEM_ID_FIELD) is 'NA', which pandas (RecBole's reader) reads as missing"]),
    ("id field absent", {"user": "uid:token\tage:float\nu1\t30\n"},
     [f"{NAME}.user has no field 'user_id' (USER_ID_FIELD)"]),
    ("id field not loaded", {}, [f"{NAME}.user: field 'user_id' (USER_ID_FIELD) is not loaded", "load_col['user']"],
     {"load_col": {**LOAD_COL, "user": ["age"]}}),
    ("not the configured encoding", {"inter": INTER.encode().replace(b"u2\ti3", b"u\xe9\ti3")},
     [f"{NAME}.inter, line 5: byte 0xe9 is not valid utf-8", "set encoding"], {"encoding": "utf-8"}),
    ("no .inter", {"inter": None}, [f"{NAME}.inter not found"]),
    ("additional feature file missing", {}, [f"{NAME}.ent not found: additional_feat_suffix lists 'ent'"],
     {"additional_feat_suffix": ["ent"]}),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_file_is_named_with_line_and_field(tmp_path, load, case):
    _, files, expected, *extra = case
    config = make_config(write_dataset(tmp_path, **files), **(extra[0] if extra else {}))
    message = error_of(load, config)
    for part in expected:
        assert part in message


def test_repeated_header_under_the_temporal_protocol(tmp_path, load):
    """The issue's case: pandas' 'Unable to convert column timestamp:float' with no file and no line."""
    data = write_dataset(tmp_path, inter=INTER + INTER.split("\n")[0] + "\n")
    message = error_of(load, make_config(data, [protocol_file("temporal")]))
    assert f"{NAME}.inter, line 6 repeats the header line" in message


def test_temporal_protocol_needs_the_time_column_in_the_file(tmp_path, load):
    inter = "".join(line.rsplit("\t", 1)[0] + "\n" for line in INTER.splitlines())
    config = make_config(write_dataset(tmp_path, inter=inter), [protocol_file("temporal")])
    message = error_of(load, config)
    assert f"{NAME}.inter has no field 'timestamp' (TIME_FIELD)" in message and "--protocol=rs811" in message


def test_temporal_protocol_needs_the_time_column_loaded(tmp_path):
    """Column in the file but not in load_col: the protocol's own check says so (not duplicated here)."""
    config = make_config(
        write_dataset(tmp_path), [protocol_file("temporal")], load_col={"inter": ["user_id", "item_id"]}
    )
    with pytest.raises(ConfigError, match="time field 'timestamp': add it to load_col's inter columns"):
        data_preparation(config, create_dataset(config))


def test_bad_rows_are_counted_and_the_first_is_named(tmp_path):
    inter = INTER.replace("\t1\n", "\tmonday\n").replace("\t3\n", "\ttuesday\n").replace("\t4\n", "\twednesday\n")
    with pytest.raises(DataError, match=r"line 2, field 'timestamp' \(float\): 'monday' .* \(3 lines like it\.\)"):
        validate_atomic_files(make_config(write_dataset(tmp_path, inter=inter)))


def test_a_bad_part_of_benchmark_files_is_named(tmp_path):
    lines = INTER.splitlines(keepends=True)
    parts = {
        "train.inter": "".join(lines[:3]),
        "valid.inter": lines[0] + lines[3],
        "test.inter": lines[0] + "u2\ti3\t4\textra\n",
    }
    data = write_dataset(tmp_path, inter=None, **parts)
    config = make_config(data, benchmark_filename=["train", "valid", "test"])
    with pytest.raises(DataError, match=rf"{NAME}.test.inter, line 2: 4 fields where the header has 3"):
        validate_atomic_files(config)
    os.remove(os.path.join(data, NAME, f"{NAME}.valid.inter"))
    with pytest.raises(DataError, match=rf"{NAME}.valid.inter not found: benchmark_filename lists 'valid'"):
        validate_atomic_files(config)


def test_only_loaded_columns_must_parse(tmp_path):
    user = "user_id:token\tage:float\tscore:float\nu1\t30\tunknown\nu2\t41\t2\n"
    config = make_config(write_dataset(tmp_path, user=user))
    validate_atomic_files(config)  # score is not in load_col
    with pytest.raises(DataError, match=rf"{NAME}.user, line 2, field 'score'"):
        validate_atomic_files(make_config(write_dataset(tmp_path, user=user), load_col={**LOAD_COL, "user": "*"}))


def test_valid_files_read_as_recbole_reads_them(tmp_path):
    """CRLF line ends, blank lines, a quoted value holding a tab, numbers pandas accepts: no error, nothing lost."""
    inter = INTER.replace("\n", "\r\n") + "\r\n"
    item = ITEM.replace("The Road", '"The\tRoad ""Redux"""') + "\n"
    user = "user_id:token\tage:float\nu1\t 1_000\nu2\tNA\n"
    config = make_config(write_dataset(tmp_path, inter=inter, item=item, user=user))
    validate_atomic_files(config)
    dataset = MultiTypeDataset(config)
    assert dataset.inter_num == 4 and dataset.item_num == 4 and dataset.user_num == 3
    assert 'The\tRoad "Redux"' in dataset.item_texts()


def test_a_second_call_on_unchanged_files_is_free(tmp_path, monkeypatch):
    data = write_dataset(tmp_path)
    config = make_config(data)
    validate_atomic_files(config)
    checked = []
    monkeypatch.setattr(validate, "_check_file", lambda config, spec: checked.append(spec.path))
    validate_atomic_files(config)
    assert checked == []
    with open(os.path.join(data, NAME, f"{NAME}.inter"), "a") as f:
        f.write("u3\ti1\t5\n")
    validate_atomic_files(config)
    assert len(checked) == 3  # .inter, .user, .item again


def test_plugin_models_print_the_item_columns_they_load():
    settings = {"text_fields": ["title"], "load_col": {"inter": ["user_id", "item_id"]}}
    config = Config("GFM", "ml-100k-typed", config_dict=settings)
    assert config["load_col"] == {"inter": ["user_id", "item_id"], "item": ["item_id", "item_type", "title"]}
    every_field = Config("GFM", "ml-100k-typed", config_dict={"text_fields": None, "load_col": {"inter": ["user_id"]}})
    assert every_field["load_col"]["item"] == "*"  # text_fields ~: any item field may be text


def test_the_dataset_records_the_columns_it_loads(tmp_path):
    config = make_config(write_dataset(tmp_path), load_col={"inter": ["user_id", "item_id"]}, text_fields=["title"])
    dataset = MultiTypeDataset(config)
    assert config["load_col"]["item"] == ["item_id", "item_type", "title"]
    assert set(dataset.item_feat.columns) | set(dataset._used_text_fields) == set(config["load_col"]["item"])


def test_unknown_item_type_names_the_known_ones(tmp_path):
    dataset = MultiTypeDataset(make_config(write_dataset(tmp_path)))
    assert dataset.item_type_id("podcast") == dataset.item_type_names().index("podcast")
    with pytest.raises(DataError) as err:
        dataset.item_type_id("vinyl")
    message = str(err.value)
    assert "Unknown item type 'vinyl'" in message and "audiobook, podcast" in message
    assert f"{NAME}.item (field 'item_type', item_type_field)" in message


def test_lines_are_numbered_across_chunks(tmp_path, monkeypatch):
    """Files are read in chunks of rows: line numbers, counts and duplicates span them."""
    monkeypatch.setattr(validate, "CHUNK_ROWS", 2)
    inter = INTER.replace("u2\ti3\t4", "u2\ti3\tfriday") + "\n" + "u3\ti1\tsaturday\n"
    with pytest.raises(DataError, match=r"bad.inter, line 5, field 'timestamp' .*'friday' .*\(2 lines like it\.\)"):
        validate_atomic_files(make_config(write_dataset(tmp_path, inter=inter)))
    with pytest.raises(DataError, match=r"bad.item, lines 2, 5: item id 'i1'"):
        validate_atomic_files(make_config(write_dataset(tmp_path, item=ITEM + "i1\tpodcast\tAgain\n")))
    item = ITEM.replace("\tTech Talk", '\t"Tech\nTalk"')
    with pytest.raises(DataError, match=r"bad.item, line 4: a quoted value in field 'title' runs on to line 5"):
        validate_atomic_files(make_config(write_dataset(tmp_path, item=item)))
