"""The cold-start references: ContentKNN (item-KNN over text similarity) and DropoutNet (input dropout)."""

from __future__ import annotations

import math

import pytest
import torch
from recbole.utils import init_seed

from conftest import typed_overrides
from recbole_gfm.config import Config
from recbole_gfm.model.contentknn import top_k_similarity
from recbole_gfm.quick_start import run
from recbole_gfm.run.inputs import build_with_inputs
from recbole_gfm.run.stages import prepare_data


def test_top_k_similarity_keeps_each_items_nearest_texts_by_cosine():
    text = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    sim = top_k_similarity(text, k=2).to_dense()
    cos = torch.nn.functional.normalize(text[1:], dim=1) @ torch.nn.functional.normalize(text[1:], dim=1).T
    assert sim[0].sum() == 0 and sim[:, 0].sum() == 0, "padding has and is no neighbour"
    assert torch.all(sim.diagonal() == 0), "an item is not its own neighbour"
    assert (sim[1] > 0).sum() == 1 and math.isclose(float(sim[1, 2]), float(cos[0, 1]), rel_tol=1e-5)  # 2, then 3 at cos 0
    assert float(sim[4].sum()) == 0, "item 4 has no text pointing its way: negative and zero cosines add nothing"


def model_of(typed: dict, name: str, **settings):
    config = Config(name, typed["dataset"], config_dict=typed_overrides(typed, **settings))
    init_seed(config["seed"], True)
    split = prepare_data(config)
    return build_with_inputs(config, split), split


def test_content_knn_scores_sum_the_text_similarity_of_the_history(typed_slice, workdir):
    model, split = model_of(typed_slice, "ContentKNN", k=5)
    users = torch.tensor([1, 2, 3])
    scores = model.full_sort_predict({"user_id": users}).view(3, -1)
    history = split.train_data.dataset.inter_matrix(form="csr")
    sim = model.similarity_t.to_dense().T  # [i, j]: j among i's neighbours
    for row, user in enumerate(users.tolist()):
        seen = history[user].indices
        expected = sim[:, seen].sum(dim=1)
        assert torch.allclose(scores[row], expected, atol=1e-5)
    assert all((sim[i] > 0).sum() <= 5 for i in range(1, len(sim)))


def test_dropoutnet_scores_an_unseen_item_from_its_text_alone(typed_slice, workdir):
    model, split = model_of(typed_slice, "DropoutNet", dropout_ratio=0.5, cold_item_ratio=0.2)  # a fifth of the items unseen
    unseen = torch.nonzero(~model.known_item[1:]).flatten() + 1
    seen = torch.nonzero(model.known_item).flatten()
    model.eval()
    before = model.items(torch.cat([unseen[:3], seen[:3]])).detach()
    with torch.no_grad():
        model.item_preference.weight.mul_(5.0)  # another preference vector changes seen items only
    after = model.items(torch.cat([unseen[:3], seen[:3]])).detach()
    assert len(unseen) > 0
    assert torch.allclose(before[:3], after[:3]) and not torch.allclose(before[3:], after[3:])
    model.train()
    kept = model._keep(torch.ones(4000, dtype=torch.bool)).mean()
    assert abs(float(kept) - 0.5) < 0.05, "training drops the preference part half of the time"


@pytest.mark.parametrize("name, settings", [("ContentKNN", {}), ("DropoutNet", {"epochs": 2})])
def test_cold_start_references_run_end_to_end_and_reach_items_never_seen(typed_slice, workdir, name, settings):
    settings = typed_overrides(typed_slice, per_type_eval=True, cold_item_ratio=0.2, **settings)  # item cold start
    result = run(name, typed_slice["dataset"], config_dict=settings)["test_result"]
    assert all(math.isfinite(v) for v in result.values()) and result["hit@10"] > 0
    assert "hit@10[items=cold]" in result, "the held-out items are in the test split and scored"
    if name == "ContentKNN":  # content alone: the held-out items have text neighbours in every history
        assert result["hit@10[items=cold]"] > 0
