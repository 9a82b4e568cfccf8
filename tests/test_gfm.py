"""GFM: leakage, the papers' variant switches, and serving new users and new items."""

from __future__ import annotations

import pytest
import torch
from recbole.utils import init_seed

from conftest import typed_overrides
from recbole_gfm.config import Config, ConfigError
from recbole_gfm.data.graph import build_cointeraction_graph, interactions_before
from recbole_gfm.foundation.store import Foundation, foundation_config
from recbole_gfm.model.gfm import GFM
from recbole_gfm.run.inputs import build_with_inputs, prepare_foundation
from recbole_gfm.run.stages import prepare_data


def build(typed: dict, **settings):
    """As a run builds GFM: the split, the foundation, then the model from its prepared inputs."""
    config = Config("GFM", typed["dataset"], config_dict=typed_overrides(typed, **settings))
    init_seed(config["seed"], config["reproducibility"])
    split = prepare_data(config)
    model = build_with_inputs(config, split, prepare_foundation(config, split))
    return config, split.train_data, split.test_data, model


def test_the_target_item_never_reaches_its_own_user_history(typed_slice, workdir, monkeypatch):
    _, train_data, _, model = build(typed_slice, empty_history_prob=0.0)  # every history shown
    batch = next(iter(train_data))
    users, items = batch["user_id"], batch["item_id"]
    seen = {}

    def capture(users_, sums, counts, tower):
        seen["sums"], seen["counts"] = sums.detach().clone(), counts.detach().clone()
        return GFM.encode_users(model, users_, sums, counts, tower)

    monkeypatch.setattr(model, "encode_users", capture)
    model.calculate_loss(batch)
    types = model.item_type[items]
    rows = torch.arange(len(users))
    full_sum, full_count = model.history(users)
    assert torch.equal(seen["counts"][rows, types], full_count[rows, types] - 1)
    assert torch.allclose(seen["sums"][rows, types], full_sum[rows, types] - model.content[items], atol=1e-5)
    # other types' history untouched
    other = (types + 1) % model.n_types
    assert torch.equal(seen["counts"][rows, other], full_count[rows, other])


def test_a_user_whose_only_item_is_the_target_sees_an_empty_history(typed_slice, workdir, monkeypatch):
    _, train_data, _, model = build(typed_slice)
    user, item = train_data._dataset.inter_feat["user_id"][0], train_data._dataset.inter_feat["item_id"][0]
    t = model.item_type[item]
    # make `item` the user's whole history (and every other user's history empty)
    model.history_items = item.view(1)
    model.history_indptr = (torch.arange(model.n_users + 1) > user).long()
    assert torch.equal(model.history(user.view(1))[1][0], torch.eye(model.n_types)[t])
    seen = {}
    monkeypatch.setattr(model, "encode_users", lambda u, s, c, tw: seen.update(s=s, c=c) or GFM.encode_users(model, u, s, c, tw))
    from recbole.data.interaction import Interaction

    model.calculate_loss(Interaction({"user_id": user.view(1), "item_id": item.view(1)}))
    assert seen["c"].sum() == 0 and seen["s"].abs().sum() == 0


def test_empty_history_prob_hides_whole_histories_of_that_share_of_examples(typed_slice, workdir, monkeypatch):
    _, train_data, _, model = build(typed_slice, empty_history_prob=0.5)
    batch = next(iter(train_data))
    seen = {}
    monkeypatch.setattr(model, "encode_users", lambda u, s, c, tw: seen.update(s=s, c=c) or GFM.encode_users(model, u, s, c, tw))
    torch.manual_seed(0)
    model.calculate_loss(batch)
    hidden = seen["c"].sum(1) == 0
    had_history = model.history(batch["user_id"])[1].sum(1) > 1  # still non-empty once the target is left out
    share = float(hidden[had_history].float().mean())
    assert 0.4 < share < 0.6, share
    assert seen["s"][hidden].abs().sum() == 0  # hidden whole: sums as well as counts
    # never at 0, and a hidden history makes the loss blind to the history itself
    _, _, _, default = build(typed_slice, empty_history_prob=0.0)
    monkeypatch.setattr(default, "encode_users", lambda u, s, c, tw: seen.update(c=c) or GFM.encode_users(default, u, s, c, tw))
    default.calculate_loss(batch)
    assert (seen["c"].sum(1) > 0)[had_history].all()
    _, _, _, cold = build(typed_slice, empty_history_prob=1.0)
    cold.eval()  # no dropout: the loss is a function of the weights and the batch
    before = cold.calculate_loss(batch)
    cold.history_items = torch.randint(1, cold.n_items, cold.history_items.shape)  # other histories
    assert torch.equal(before, cold.calculate_loss(batch))
    with pytest.raises(ValueError, match="empty_history_prob"):
        build(typed_slice, empty_history_prob=1.5)


def test_user_features_reach_the_user_tower_and_tell_users_without_history_apart(typed_slice, workdir):
    load_col = {**typed_slice["load_col"], "user": ["user_id", "age", "gender", "occupation"]}
    _, _, _, model = build(typed_slice, load_col=load_col)
    assert model.user_fields == ["age", "gender", "occupation"]
    _, _, _, plain = build(typed_slice)
    assert plain.user_fields == [] and model.user_input(torch.tensor([1]), *model.history_features(torch.tensor([1])), 0).shape[1] == (
        plain.user_input(torch.tensor([1]), *plain.history_features(torch.tensor([1])), 0).shape[1] + 3 * 16
    )
    model.eval()
    empty = torch.zeros(2, model.n_types, model.content.shape[1]), torch.zeros(2, model.n_types)
    ids = model.user_feature_ids
    a, b = next((a, b) for a in range(1, len(ids)) for b in range(a + 1, len(ids)) if not torch.equal(ids[a], ids[b]))
    u = model.user_vectors(torch.tensor([a, b]), *empty)
    assert not torch.allclose(u[0], u[1])  # same (empty) history, different demographics
    same = model.user_vectors(torch.tensor([a, a]), *empty)
    assert torch.allclose(same[0], same[1])


def test_variant_switches_change_the_inputs_they_name(typed_slice, workdir, monkeypatch):
    _, _, _, both = build(typed_slice)
    _, _, _, no_text = build(typed_slice, use_text=False)
    assert both.content.shape[1] == 128 + 384 and no_text.content.shape[1] == 128
    assert torch.allclose(no_text.content, both.content[:, :128])

    def no_foundation(*args, **kwargs):
        raise AssertionError("w/o GNN must not touch the foundation")

    monkeypatch.setattr("recbole_gfm.run.inputs.train_foundation", no_foundation)
    monkeypatch.setattr("recbole_gfm.run.inputs.read_cached", no_foundation)
    _, _, _, no_gnn = build(typed_slice, use_foundation=False)
    assert no_gnn.content.shape[1] == 384 and no_gnn.foundation is None
    assert torch.allclose(no_gnn.content, both.content[:, 128:])
    with pytest.raises(ValueError, match="use_foundation or use_text"):
        build(typed_slice, use_foundation=False, use_text=False)


def test_per_type_variant_scores_each_item_with_its_types_towers(typed_slice, workdir, monkeypatch):
    monkeypatch.setattr("recbole_gfm.run.inputs.train_foundation", lambda *a, **k: pytest.fail("not needed"))
    _, _, test_data, model = build(typed_slice, unified=False, use_foundation=False)
    assert len(model.towers) == model.n_types
    model.eval()
    users = torch.tensor([1, 2, 3])
    scores = model.full_sort_predict({"user_id": users}).view(3, -1)
    for item in (1, 7, 30):
        t = int(model.item_type[item])
        u = model.encode_users(users, *model.history(users), t)
        v = model.encode_items(torch.tensor([item]), t)
        assert torch.allclose(scores[:, item], (u @ v.T).flatten(), atol=1e-5)
    # a per-type tower pair sees only its own type's history
    u_a = model.user_input(users, *model.history(users), 0)
    assert u_a.shape[1] == model.content.shape[1] + 1


def test_frozen_foundation_sees_only_the_earlier_part_of_the_train_timeline(typed_slice, workdir):
    config, train_data, _, _ = build(typed_slice)
    train = train_data._dataset
    early = interactions_before(train, 0.5)
    times = train.inter_feat["timestamp"]
    assert len(early) < len(train) and early.inter_feat["timestamp"].max() <= times.median() + 1e-9
    hgnn = foundation_config(Config("GFM", typed_slice["dataset"], config_dict=typed_overrides(
        typed_slice, foundation={"foundation_time_cutoff": 0.5})))
    full = build_cointeraction_graph(foundation_config(config), train)
    frozen = build_cointeraction_graph(hgnn, train)
    assert frozen.edge_index.shape[1] < full.edge_index.shape[1]


def test_foundation_artifact_round_trip_and_catalogue_mismatch(typed_slice, workdir, tmp_path):
    _, train_data, _, model = build(typed_slice)
    dataset = train_data._dataset
    embeddings = Foundation.read(model.foundation.path).item_embeddings(dataset)
    assert torch.allclose(embeddings.float(), model.content[:, :128].to(embeddings.dtype), atol=1e-6)
    other = dataset.copy(dataset.inter_feat)
    other.field2id_token = dict(dataset.field2id_token)
    other.field2id_token["item_id"] = dataset.field2id_token["item_id"][::-1]
    with pytest.raises(ConfigError, match="another item catalogue"):
        model.foundation.item_embeddings(other)
    with pytest.raises(ConfigError, match="incomplete or missing"):
        Foundation.read(str(tmp_path))


def test_gfm_never_trains_a_foundation_itself(typed_slice, workdir):
    config = Config("GFM", typed_slice["dataset"], config_dict=typed_overrides(typed_slice))
    split = prepare_data(config)
    text = torch.zeros(split.train_data.dataset.item_num, 8)
    with pytest.raises(ConfigError, match="none was given"):
        GFM(config, split.train_data.dataset, text)


def test_cold_item_prob_shows_the_item_tower_the_no_edge_foundation_vectors(typed_slice, workdir, monkeypatch):
    from recbole_gfm.data.text import item_text_embeddings

    config, train_data, _, model = build(typed_slice, cold_item_prob=1.0)
    text = item_text_embeddings(config, train_data.dataset)
    expected = Foundation.read(model.foundation.path).embed_without_edges(text)
    assert torch.allclose(model.cold_content[1:, :128], expected[1:], atol=1e-6)
    assert torch.equal(model.cold_content[:, 128:], model.content[:, 128:])  # the text part is the same
    assert not torch.allclose(model.cold_content[1:, :128], model.content[1:, :128])  # warm items differ
    seen = {}
    original = GFM.item_input
    monkeypatch.setattr(GFM, "item_input", lambda self, items, cold=None: seen.setdefault("x", original(self, items, cold)))
    batch = next(iter(train_data))
    model.calculate_loss(batch)
    items = batch["item_id"]
    assert torch.allclose(seen["x"][:, : model.content.shape[1]], model.cold_content[items])
    _, _, _, plain = build(typed_slice)
    assert plain.cold_item_prob == 0.0 and not hasattr(plain, "cold_content")


def dense_history(model: GFM, dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The users x types x d history table GFM kept before histories were built per batch (the reference)."""
    users, items = dataset.inter_feat["user_id"], dataset.inter_feat["item_id"]
    sums = torch.zeros(model.n_users, model.n_types, model.content.shape[1])
    sums.index_put_((users, model.item_type[items]), model.content[items], accumulate=True)
    counts = torch.zeros(model.n_users, model.n_types)
    counts.index_put_((users, model.item_type[items]), torch.ones(len(items)), accumulate=True)
    return sums, counts


@pytest.mark.parametrize("unified,cache_mb", [(True, 0), (False, 0), (True, 1024)])
def test_histories_built_per_batch_or_cached_give_the_dense_tables_numbers(typed_slice, workdir, unified, cache_mb):
    """Same loss on the same batch and the same full-ranking scores as the dense per-user table, bit for bit,
    whether each batch sums its users' histories (history_cache_mb 0) or gathers them from sums built once.

    Under deterministic algorithms, as runs are (``reproducibility``): without them the dense table's
    own ``index_put_`` adds in a thread-dependent order.
    """
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        _check_histories_against_the_dense_table(typed_slice, unified, cache_mb)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def _check_histories_against_the_dense_table(typed_slice, unified, cache_mb):
    _, train_data, _, model = build(typed_slice, unified=unified, empty_history_prob=0.3, history_cache_mb=cache_mb)
    sums, counts = dense_history(model, train_data.dataset)
    users = torch.arange(model.n_users)
    some = users[torch.randperm(len(users), generator=torch.Generator().manual_seed(0))[:50]]
    assert all(torch.equal(a, b) for a, b in zip(model.history(some), (sums[some], counts[some])))
    assert (model._history_cache is not None) == bool(cache_mb)  # the slice's table is well under 1 GB
    new_sums, new_counts = model.history(users)
    assert counts.sum() == len(train_data.dataset) and torch.equal(new_counts, counts)
    assert torch.equal(new_sums, sums)
    batch = next(iter(train_data))
    torch.manual_seed(7)
    loss = model.calculate_loss(batch).detach()  # dropout, empty_history_prob: the same draws in both runs
    model.eval()
    scores = model.full_sort_predict({"user_id": users})
    model.train()
    model.history = lambda u: (sums[u], counts[u])  # the reference: rows of the dense table
    torch.manual_seed(7)
    assert torch.equal(loss, model.calculate_loss(batch).detach()) and float(loss) > 0
    model.eval()
    assert torch.equal(scores, model.full_sort_predict({"user_id": users}))
    # what the model holds grows with interactions and items, not users x types x d
    held = sum(b.numel() for b in model.buffers())
    assert held < len(train_data.dataset) + 3 * model.n_users + model.n_items * (model.content.shape[1] + 4)
