"""The HGNN learns links its text features cannot predict, without the target-edge shortcut.

A planted graph: 240 items in 4 communities, every user consumes items of one community only, and
item titles are random words (no community in the text). Link prediction between items of one
community that share no train edge (held-out links) against items of different communities is
possible only from the graph's structure; the model must learn it with every batch's target edges
hidden from its message passing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import quick_overrides
from recbole_gfm.config import Config
from recbole_gfm.data.graph import build_cointeraction_graph
from recbole_gfm.data.text import item_text_embeddings
from recbole_gfm.foundation.store import Foundation
from recbole_gfm.data.protocol import data_preparation
from recbole_gfm.quick_start import run
from recbole_gfm.registry import create_dataset

N_ITEMS, N_COMMUNITIES, N_USERS, PER_USER = 240, 4, 600, 6
WORDS = "amber basil cedar delta ember fjord garnet harbor indigo juniper kelp lumen maple nectar onyx".split()


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(0)
    community = np.arange(N_ITEMS) % N_COMMUNITIES
    root = tmp_path_factory.mktemp("planted")
    folder = root / "planted"
    folder.mkdir()
    rows = []
    for user in range(N_USERS):
        items = rng.choice(np.flatnonzero(community == user % N_COMMUNITIES), PER_USER, replace=False)
        rows += [(f"u{user}", f"i{item}", float(user * PER_USER + k)) for k, item in enumerate(items)]
    pd.DataFrame(rows, columns=["user_id:token", "item_id:token", "timestamp:float"]).to_csv(folder / "planted.inter", sep="\t", index=False)
    titles = [" ".join(rng.choice(WORDS, 3)) for _ in range(N_ITEMS)]
    kinds = ["book" if i % 2 else "podcast" for i in range(N_ITEMS)]  # two types: three relations
    pd.DataFrame({"item_id:token": [f"i{i}" for i in range(N_ITEMS)], "item_type:token": kinds, "title:token_seq": titles}).to_csv(
        folder / "planted.item", sep="\t", index=False
    )
    return str(root), community


def link_auc(embeddings: torch.Tensor, tokens: list[str], graph, community: np.ndarray) -> float:
    """AUC of same-community pairs without a train edge (held-out links) against cross-community pairs."""
    ids = np.array([int(t[1:]) for t in tokens[1:]])
    z = embeddings[1:]
    score = (z @ z.T).numpy()
    same = community[ids][:, None] == community[ids][None, :]
    linked = np.zeros_like(same)
    linked[graph.edge_index[0].numpy() - 1, graph.edge_index[1].numpy() - 1] = True
    upper = np.triu(np.ones_like(same), 1)
    positive, negative = score[same & ~linked & upper], score[~same & upper]
    ranks = pd.Series(np.concatenate([positive, negative])).rank().to_numpy()
    return (ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative))


@pytest.mark.slow
def test_hgnn_learns_held_out_links_with_target_edges_excluded(planted, workdir):
    data_path, community = planted
    settings = quick_overrides(
        data_path, load_col={"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "item_type", "title"]},
        RATING_FIELD=None, item_type_field="item_type", text_fields=["title"], per_type_eval=False, cache_dir="cache",
        epochs=15, eval_step=5, stopping_step=10, train_batch_size=128, graph_topk=8, learning_rate=0.01,
        exclude_target_edges=True,
    )  # fmt: skip
    record = run("HGNN", "planted", config_dict=settings, saved=False)
    foundation = Foundation.read(record["foundation_path"])
    embeddings = foundation.item_embeddings(dataset := split_of(settings))
    graph = build_cointeraction_graph(record_config(settings), dataset)
    text = torch.nn.functional.normalize(item_text_embeddings(record_config(settings), dataset), dim=-1)
    tokens = foundation.meta["item_tokens"]
    text_auc, auc = link_auc(text, tokens, graph, community), link_auc(embeddings, tokens, graph, community)
    assert text_auc < 0.6, f"the titles must not give the links away ({text_auc:.3f})"
    assert auc >= 0.9, f"held-out link AUC {auc:.3f} (text alone {text_auc:.3f})"


def record_config(settings: dict) -> Config:
    return Config("HGNN", "planted", config_dict=settings)


def split_of(settings: dict):
    config = record_config(settings)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    return train_data.dataset
