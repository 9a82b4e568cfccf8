"""The named protocols split the way they say, for general and sequential models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recbole_gfm.config import Config, ConfigError
from recbole_gfm.data.protocol import available, data_preparation, protocol_file, use_time_cuts
from recbole_gfm.registry import create_dataset

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


def config_of(model: str, protocol: str, data_path: str) -> Config:
    return Config(
        model,
        "tied",
        config_file_list=[protocol_file(protocol)],
        config_dict={"data_path": data_path, "state": "ERROR", "load_col": {"inter": ["user_id", "item_id", "timestamp"]}},
    )


def splits(model: str, protocol: str, data_path: str, fixed: bool = True) -> list:
    """The train / valid / test interactions (for sequential models: target rows) of a protocol."""
    config = config_of(model, protocol, data_path)
    dataset = create_dataset(config)
    if fixed:
        use_time_cuts(config, dataset)
    return [part.inter_feat for part in dataset.build()]


def loaders(model: str, protocol: str, data_path: str) -> list:
    config = config_of(model, protocol, data_path)
    return data_preparation(config, create_dataset(config))


@pytest.mark.parametrize("model", ["BPR", "SASRec"])
def test_temporal_split_has_no_held_out_interaction_earlier_than_an_earlier_period_one(model, tied):
    train, valid, test = (part["timestamp"].numpy() for part in splits(model, "temporal", tied))
    assert len(train) and len(valid) and len(test)
    assert train.max() < valid.min() and valid.max() < test.min(), "ties must not straddle a cut"
    assert 0.05 < len(test) / (len(train) + len(valid) + len(test)) < 0.25


def test_recbole_alone_splits_tied_timestamps_across_the_cut(tied):
    """The trap the temporal protocol fixes: RecBole cuts by position inside a tie."""
    train, valid, test = (part["timestamp"].numpy() for part in splits("BPR", "temporal", tied, fixed=False))
    assert train.max() == valid.min() or valid.max() == test.min()


def test_general_and_sequential_models_share_the_cut_times(tied):
    """RecBole would cut the sequential target rows at their own ratio positions."""
    general, sequential = splits("BPR", "temporal", tied), splits("SASRec", "temporal", tied)
    for g, s in zip(general, sequential):
        g_pairs = set(zip(g["user_id"].tolist(), g["item_id"].tolist()))
        s_pairs = set(zip(s["user_id"].tolist(), s["item_id"].tolist()))
        assert s_pairs <= g_pairs  # a sequential split lacks only users' first interactions (never targets)
        assert (g["timestamp"].min(), g["timestamp"].max()) == (s["timestamp"].min(), s["timestamp"].max())


def test_sequential_models_are_evaluated_once_per_user_like_general_ones(tied):
    _, _, general = loaders("BPR", "temporal", tied)
    _, _, sequential = loaders("SASRec", "temporal", tied)
    dataset = general._dataset

    def tokens(ids) -> list[str]:
        return sorted(dataset.id2token(dataset.iid_field, np.asarray(ids)).tolist())

    assert set(sequential.positives) <= {int(u) for u in general.uid_list}
    for user, items in sequential.positives.items():
        assert tokens(items) == tokens(general.uid2positive_item[user])
        assert tokens(sequential.history[user]) == tokens(general.uid2history_item[user])
    # one case per user, whose sequence holds only items from before the test period
    rows = sequential._dataset.inter_feat
    assert len(rows) == len(sequential.positives) == len(set(rows["user_id"].tolist()))
    for user, history in zip(rows["user_id"].tolist(), rows["item_id_list"].tolist()):
        listed = {i for i in history if i}
        assert listed <= set(sequential.history[user].tolist())


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


N_NEW = 5  # users who appear only at the last timestamp: no train or valid history


@pytest.fixture(scope="module")
def with_new_users(tied, tmp_path_factory) -> str:
    """The tied interactions plus N_NEW users whose interactions all fall in the test period."""
    frame = pd.read_csv(f"{tied}/tied/tied.inter", sep="\t")
    rng = np.random.default_rng(1)
    new = [
        (N_USERS + n, int(i), (N_TIMES - 1) * 1000)
        for n in range(1, N_NEW + 1)
        for i in rng.choice(np.arange(1, 61), n, replace=False)  # 1..5 interactions: user 41 has a single one
    ]
    frame = pd.concat([frame, pd.DataFrame(new, columns=frame.columns)])
    root = tmp_path_factory.mktemp("new_users")
    (root / "tied").mkdir()
    frame.to_csv(root / "tied" / "tied.inter", sep="\t", index=False)
    return str(root)


def test_sequential_models_score_every_user_of_the_period_new_ones_by_train_popularity(with_new_users):
    from recbole.trainer import Trainer

    train, _, general = loaders("BPR", "temporal", with_new_users)
    config = config_of("SASRec", "temporal", with_new_users)
    config["MAX_ITEM_LIST_LENGTH"], config["hidden_size"], config["inner_size"], config["n_layers"] = 10, 8, 16, 1
    _, _, sequential = data_preparation(config, create_dataset(config))
    dataset = general._dataset

    def tokens(ids) -> list[str]:
        return dataset.id2token(dataset.uid_field, np.asarray(ids)).tolist()

    # the same users, in the same order, as the general model's test loader
    rows = sequential._dataset.inter_feat
    assert tokens(rows["user_id"]) == tokens(general.uid_list)
    new = {str(N_USERS + n) for n in range(1, N_NEW + 1)}
    assert set(tokens(sorted(sequential.fallback_users))) == new
    pairs = set(zip(*(a.tolist() for a in sequential.train_interactions)))
    assert pairs == set(zip(train._dataset.inter_feat["user_id"].tolist(), train._dataset.inter_feat["item_id"].tolist()))
    for user in sequential.fallback_users:  # a padding-only sequence of length 1
        row = (rows["user_id"] == user).nonzero().item()
        assert rows["item_length"][row] == 1 and not rows["item_id_list"][row].any()

    # fallback rows ranked by train popularity (ties: lower internal id first), model rows by the model
    counts = np.bincount(train._dataset.inter_feat["item_id"].numpy(), minlength=dataset.item_num)
    ranking = [i for i in np.lexsort((np.arange(len(counts)), -counts)) if i != 0]
    from recbole.model.sequential_recommender import SASRec

    model = SASRec(config, sequential._dataset)
    trainer = Trainer(config, model)
    trainer.tot_item_num = dataset.item_num
    fallback_rows = model_rows = 0
    for batch in sequential:
        interaction, scores, _, _ = trainer._full_sort_batch_eval(batch)
        for row, user in enumerate(interaction["user_id"].tolist()):
            top = torch.argsort(scores[row], descending=True, stable=True)[: len(ranking)].tolist()
            if user in sequential.fallback_users:
                fallback_rows += 1
                assert top == ranking
            else:
                model_rows += 1
                assert top != ranking
    assert fallback_rows == N_NEW and model_rows > 0
