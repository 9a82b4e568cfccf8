"""The cold-start scenarios: which interactions move or go, the same for every model and seed, and the errors."""

from __future__ import annotations

import pytest
from recbole.utils import init_seed
from test_benchmark import typed_data  # noqa: F401  (a fixture)

from recbole_gfm.config import Config, ConfigError
from recbole_gfm.data.protocol import data_preparation, protocol_file
from recbole_gfm.registry import create_dataset

LOAD = {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "item_type"]}


def split(model: str, data_path: str, seed: int = 1, protocol: str = "item_cold", **settings):
    """(user token, item token) pairs of train, valid and test under ``protocol``."""
    config = Config(model, "typed", [protocol_file(protocol)],
                    {"data_path": data_path, "load_col": LOAD, "state": "ERROR", "seed": seed, **settings})  # fmt: skip
    init_seed(seed, True)  # as a run does: RecBole's random split draws from the global generators
    dataset = create_dataset(config)
    parts = data_preparation(config, dataset)
    out = []
    for part in parts:
        data = part._dataset
        users = data.id2token(data.uid_field, data.inter_feat[data.uid_field].numpy())
        items = data.id2token(data.iid_field, data.inter_feat[data.iid_field].numpy())
        out.append(sorted(zip(users.tolist(), items.tolist())))
    return out


def test_item_cold_start_moves_every_train_interaction_of_a_fifth_of_the_items_by_user(typed_data):  # noqa: F811
    plain = split("BPR", typed_data, protocol="rs811")
    train, valid, test = split("BPR", typed_data)
    items = {i for part in plain for _, i in part}
    held = items - {i for _, i in train}
    assert len(held) == round(0.2 * len(items)), "a fifth of the items hold no train interaction"
    moved = [pair for pair in plain[0] if pair[1] in held]
    assert sorted(train + moved) == plain[0], "train lost exactly the held-out items' interactions"
    assert sorted(valid) == sorted(plain[1] + [p for p in moved if p in valid]) and sorted(test) == sorted(plain[2] + [p for p in moved if p in test])
    assert len(valid) + len(test) == len(plain[1]) + len(plain[2]) + len(moved), "every moved interaction is held out once"
    by_user = {}
    for side, part in (("valid", valid), ("test", test)):
        for user, item in part:
            if (user, item) in moved:
                by_user.setdefault(user, set()).add(side)
    assert by_user and all(len(sides) == 1 for sides in by_user.values()), "a user's moved interactions go to one side"
    assert {len(s) for s in by_user.values()} == {1} and {"valid", "test"} == set().union(*by_user.values())


def held_out(data_path: str, seed: int, **settings) -> set[str]:
    """Items in the plain split's train but in no train interaction under item cold start."""
    plain = split("BPR", data_path, seed=seed, protocol="rs811")[0]
    return {i for _, i in plain} - {i for _, i in split("BPR", data_path, seed=seed, **settings)[0]}


def test_the_held_out_items_are_the_same_for_every_model_and_seed(typed_data):  # noqa: F811
    assert split("LightGCN", typed_data, seed=1) == split("BPR", typed_data, seed=1)
    # another seed shuffles RecBole's random 8:1:1 split, but holds out the same items
    assert held_out(typed_data, 1) == held_out(typed_data, 7) and len(held_out(typed_data, 1)) == 5
    assert held_out(typed_data, 1, scenario_seed=99) != held_out(typed_data, 1), "scenario_seed draws other items"


def test_a_type_launch_keeps_a_seeded_share_of_the_types_train_interactions(typed_data):  # noqa: F811
    plain = split("BPR", typed_data, protocol="rs811")
    train, valid, test = split("BPR", typed_data, protocol="rs811", launch_type="Kids", launch_keep=0.25)
    kids = {f"{i}" for i in range(1, 25) if i % 3 == 1}  # item i has type ["Kids", "Drama", "Horror"][(i - 1) % 3]
    before = [p for p in plain[0] if p[1] in kids]
    after = [p for p in train if p[1] in kids]
    assert len(after) == round(0.25 * len(before)) and set(after) <= set(before)
    assert [p for p in train if p[1] not in kids] == [p for p in plain[0] if p[1] not in kids], "the other types keep theirs"
    assert (valid, test) == (plain[1], plain[2]), "the evaluation stays as it is"


@pytest.mark.parametrize(
    "model, settings, message",
    [
        ("SASRec", {"launch_type": "Kids"}, "sequential model"),
        ("BPR", {"launch_type": "Cartoons"}, "launch_type 'Cartoons': no item has this type"),
        ("BPR", {"cold_item_ratio": 1.5}, "cold_item_ratio must be in (0, 1)"),
        ("BPR", {"launch_type": "Kids", "load_col": {"inter": ["user_id", "item_id", "timestamp"]}}, "needs the item type field"),
    ],
)
def test_bad_scenarios_are_named(model, settings, message, typed_data):  # noqa: F811
    protocol = "temporal" if model == "SASRec" else "rs811"
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        split(model, typed_data, protocol=protocol, **settings)
