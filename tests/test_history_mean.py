"""User vectors of the history-mean recommenders (HGNN, LLMKNN): the mean, or the population's."""

from __future__ import annotations

import torch
from recbole.utils import init_seed

from conftest import typed_overrides
from recbole_gfm.config import Config
from recbole_gfm.model.llmknn import LLMKNN
from recbole_gfm.data.protocol import data_preparation, protocol_file
from recbole_gfm.data.text import item_text_embeddings
from recbole_gfm.registry import create_dataset


def test_users_get_their_history_mean_and_new_users_the_population_mean(typed_slice, workdir):
    config = Config("LLMKNN", typed_slice["dataset"], [protocol_file("temporal")], typed_overrides(typed_slice))
    init_seed(config["seed"], True)
    train, _, test = data_preparation(config, create_dataset(config))
    model = LLMKNN(config, train._dataset, item_text_embeddings(config, train._dataset)).eval()
    users, items = model.user_and_item_vectors()
    user, item = train._dataset.inter_feat["user_id"], train._dataset.inter_feat["item_id"]

    someone = int(user[0])
    assert torch.allclose(users[someone], items[item[user == someone]].mean(0), atol=1e-6)
    newcomers = sorted(set(test._dataset.inter_feat["user_id"].tolist()) - set(user.tolist()))
    assert newcomers, "a temporal split of the slice has test users with no train history"
    population = items[item].mean(0)  # every train interaction counts once
    for u in newcomers:
        assert torch.allclose(users[u], population, atol=1e-6)
    scores = model.full_sort_predict({"user_id": torch.tensor(newcomers[:1])})
    assert scores.unique().numel() > 1, "a new user's items are ranked, not all tied"
