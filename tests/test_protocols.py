"""The named protocols split the way they say, for general and sequential models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from recbole.data import data_preparation as recbole_data_preparation

from recbole_gfm.config import Config, ConfigError
from recbole_gfm.protocol import available, data_preparation, protocol_file
from recbole_gfm.quick_start import create_dataset

N_USERS, PER_USER, N_TIMES = 40, 12, 7  # 480 interactions on 7 timestamps: ties at every cut


@pytest.fixture(scope="module")
def tied(tmp_path_factory) -> str:
    """Random interactions whose timestamps take only a few values, in shuffled file order."""
    rng = np.random.default_rng(0)
    rows = [
        (u, int(i), int(rng.integers(N_TIMES)) * 1000)
        for u in range(1, N_USERS + 1)
        for i in rng.choice(np.arange(1, 61), PER_USER, replace=False)
    ]
    frame = pd.DataFrame(rows, columns=["user_id:token", "item_id:token", "timestamp:float"]).sample(frac=1, random_state=0)
    root = tmp_path_factory.mktemp("tied")
    (root / "tied").mkdir()
    frame.to_csv(root / "tied" / "tied.inter", sep="\t", index=False)
    return str(root)


def splits(model: str, protocol: str, data_path: str, prepare=data_preparation) -> list:
    config = Config(
        model,
        "tied",
        config_file_list=[protocol_file(protocol)],
        config_dict={"data_path": data_path, "state": "ERROR", "load_col": {"inter": ["user_id", "item_id", "timestamp"]}},
    )
    return [loader._dataset.inter_feat for loader in prepare(config, create_dataset(config))]


@pytest.mark.parametrize("model", ["BPR", "SASRec"])
def test_temporal_split_has_no_held_out_interaction_earlier_than_an_earlier_period_one(model, tied):
    train, valid, test = (part["timestamp"].numpy() for part in splits(model, "temporal", tied))
    assert len(train) and len(valid) and len(test)
    assert train.max() < valid.min() and valid.max() < test.min(), "ties must not straddle a cut"
    assert 0.05 < len(test) / (len(train) + len(valid) + len(test)) < 0.2


def test_recbole_alone_splits_tied_timestamps_across_the_cut(tied):
    """The trap the temporal protocol fixes: RecBole cuts by position inside a tie."""
    train, valid, test = (part["timestamp"].numpy() for part in splits("BPR", "temporal", tied, recbole_data_preparation))
    assert train.max() == valid.min() or valid.max() == test.min()


def test_rs811_is_a_random_per_user_split(tied):
    train, valid, test = splits("BPR", "rs811", tied)
    for part in (valid, test):
        assert set(part["user_id"].numpy()) <= set(train["user_id"].numpy())
    assert len(train) == N_USERS * (PER_USER - 2) and len(test) == N_USERS
    # random order, not time order: some user's test interaction is earlier than one of their train ones
    last_train = pd.Series(train["timestamp"].numpy()).groupby(train["user_id"].numpy()).max()
    test_time = pd.Series(test["timestamp"].numpy(), index=test["user_id"].numpy())
    assert (test_time.values < last_train.reindex(test_time.index).values).any()


@pytest.mark.parametrize("model", ["BPR", "SASRec"])
def test_leave_one_out_holds_out_each_users_last_two(model, tied):
    train, valid, test = splits(model, "loo", tied)
    for part in (valid, test):
        users = part["user_id"].numpy()
        assert len(users) == len(set(users)) == N_USERS
    last_train = pd.Series(train["timestamp"].numpy()).groupby(train["user_id"].numpy()).max()
    valid_time = pd.Series(valid["timestamp"].numpy(), index=valid["user_id"].numpy()).sort_index()
    test_time = pd.Series(test["timestamp"].numpy(), index=test["user_id"].numpy()).sort_index()
    assert (valid_time >= last_train.reindex(valid_time.index)).all()
    assert (test_time >= valid_time).all()


def test_unknown_protocol_names_the_available_ones():
    assert {"temporal", "rs811", "loo"} <= set(available())
    with pytest.raises(ConfigError, match="temporal"):
        protocol_file("temporl")
