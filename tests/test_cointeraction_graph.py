"""The co-interaction item graph: hand-computed scores, window, pruning, relations, no leakage of held-out data."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from recbole.data import create_dataset

from recbole_gfm.config import Config
from recbole_gfm.data.graph import CoInteractionGraph, build_cointeraction_graph, cointeraction_graph
from conftest import quick_overrides

# users 0..2; items 1..3 (item 0 is padding); types: 1, 2 -> "a", 3 -> "b"
USERS = np.array([0, 0, 0, 1, 1, 2, 2])
ITEMS = np.array([1, 2, 3, 1, 2, 2, 3])
TIMES = np.array([0, 1, 100, 0, 5, 0, 1], dtype=float)
TYPES = np.array([-1, 0, 0, 1])


def edge_dict(graph: CoInteractionGraph) -> dict[tuple[int, int], float]:
    return {
        (s, d): w for (s, d), w in zip(graph.edge_index.t().tolist(), graph.edge_weight.tolist())
    }


def reference_scores(users, items, times=None, window=None) -> dict[tuple[int, int], tuple[int, float]]:
    """Brute force: (i, j) -> (users sharing them [within the window], c / sqrt(n_i n_j))."""
    events: dict[int, list[tuple[int, float]]] = {}
    for k, (u, i) in enumerate(zip(users.tolist(), items.tolist())):
        events.setdefault(u, []).append((i, 0.0 if times is None else float(times[k])))
    counts: dict[tuple[int, int], int] = {}
    popularity: dict[int, int] = {}
    for evs in events.values():
        for i in {i for i, _ in evs}:
            popularity[i] = popularity.get(i, 0) + 1
        joined = {
            (i, j)
            for (i, ti), (j, tj) in itertools.product(evs, evs)
            if i != j and (window is None or abs(ti - tj) <= window)
        }
        for pair in joined:
            counts[pair] = counts.get(pair, 0) + 1
    return {(i, j): (c, c / math.sqrt(popularity[i] * popularity[j])) for (i, j), c in counts.items()}


def random_interactions(seed=0, num_users=40, num_items=120, n=900, num_types=3):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, num_users, n)
    items = rng.integers(1, num_items, n)  # repeats of (user, item) included on purpose
    times = rng.integers(0, 1000, n).astype(float)
    types = np.r_[-1, rng.integers(0, num_types, num_items - 1)]
    return users, items, times, types


def test_hand_computed_scores_and_relations():
    graph = cointeraction_graph(USERS, ITEMS, TYPES, ["a", "b"], topk=None)
    # n1 = 2, n2 = 3, n3 = 2; c12 = 2 (users 0, 1), c13 = 1 (user 0), c23 = 2 (users 0, 2)
    expected = {(1, 2): 2 / math.sqrt(6), (1, 3): 1 / 2, (2, 3): 2 / math.sqrt(6)}
    expected.update({(j, i): w for (i, j), w in expected.items()})
    assert edge_dict(graph) == pytest.approx(expected)
    assert graph.relations == [("a", "a"), ("a", "b"), ("b", "b")]
    rel = {(s, d): r for (s, d), r in zip(graph.edge_index.t().tolist(), graph.edge_type.tolist())}
    assert rel == {(1, 2): 0, (2, 1): 0, (1, 3): 1, (3, 1): 1, (2, 3): 1, (3, 2): 1}
    assert graph.edges_per_relation() == {("a", "a"): 2, ("a", "b"): 4, ("b", "b"): 0}
    assert graph.num_items == 4 and graph.item_type.tolist() == [-1, 0, 0, 1]


def test_time_window_excludes_far_apart_pairs():
    graph = cointeraction_graph(USERS, ITEMS, TYPES, ["a", "b"], timestamps=TIMES, time_window=10, topk=None)
    # user 0 consumed item 3 at t=100, far from items 1, 2: only user 2 joins 2-3, nobody joins 1-3
    assert edge_dict(graph) == pytest.approx(
        {(1, 2): 2 / math.sqrt(6), (2, 1): 2 / math.sqrt(6), (2, 3): 1 / math.sqrt(6), (3, 2): 1 / math.sqrt(6)}
    )


def test_min_cocount():
    graph = cointeraction_graph(USERS, ITEMS, TYPES, ["a", "b"], min_cocount=2, topk=None)
    assert set(edge_dict(graph)) == {(1, 2), (2, 1), (2, 3), (3, 2)}


@pytest.mark.parametrize("window", [None, 300.0])
def test_matches_brute_force_and_chunking(window):
    users, items, times, types = random_interactions()
    reference = reference_scores(users, items, times, window)
    kwargs = dict(timestamps=times, time_window=window, topk=None)
    graph = cointeraction_graph(users, items, types, **kwargs)
    assert edge_dict(graph) == pytest.approx({pair: score for pair, (_, score) in reference.items()})
    tiny_chunks = cointeraction_graph(users, items, types, chunk_nnz=1, **kwargs)
    for field in ("edge_index", "edge_weight", "edge_type"):
        assert torch.equal(getattr(graph, field), getattr(tiny_chunks, field))


def test_sparse_catalogue_and_infinite_window_agree():
    """Few interactions over many items (the sorted counting path) with and without an endless window."""
    users, items, times, types = random_interactions(seed=1, num_users=30, num_items=3000, n=400)
    plain = cointeraction_graph(users, items, types, topk=2)
    windowed = cointeraction_graph(users, items, types, timestamps=times, time_window=1e9, topk=2)
    assert plain.edge_index.shape[1] > 0
    for field in ("edge_index", "edge_weight", "edge_type"):
        assert torch.equal(getattr(plain, field), getattr(windowed, field))


def test_topk_per_node_and_relation():
    users, items, times, types = random_interactions(seed=2)
    k = 3
    reference = reference_scores(users, items)
    graph = cointeraction_graph(users, items, types, min_cocount=2, topk=k)
    edges = edge_dict(graph)
    candidates: dict[tuple[int, int], list[tuple[float, int]]] = {}
    for (i, j), (c, score) in reference.items():
        if c >= 2:
            # ranked on float32 scores, ties by item id (1/sqrt(8) and 2/sqrt(32) differ in float64)
            candidates.setdefault((i, int(types[j])), []).append((-np.float32(score), j))
    chosen = {key: {j for _, j in sorted(cands)[:k]} for key, cands in candidates.items()}
    for (i, _), best in chosen.items():
        assert all((i, j) in edges for j in best)  # every node keeps its own top-k ...
    for (i, j), w in edges.items():  # ... and every edge is in the top-k of an endpoint, both ways
        assert (j, i) in edges and w == pytest.approx(reference[(i, j)][1])
        assert j in chosen[(i, int(types[j]))] or i in chosen[(j, int(types[i]))]
    relation_of = {tuple(sorted((a, b))): r for r, (a, b) in enumerate(itertools.combinations_with_replacement(range(3), 2))}
    for (s, d), r in zip(graph.edge_index.t().tolist(), graph.edge_type.tolist()):
        assert r == relation_of[tuple(sorted((int(types[s]), int(types[d]))))]


def test_mutual_topk_keeps_only_pairs_both_endpoints_chose_and_bounds_degree():
    users, items, times, types = random_interactions(seed=2)
    k = 3
    union = edge_dict(cointeraction_graph(users, items, types, min_cocount=2, topk=k))
    mutual = cointeraction_graph(users, items, types, min_cocount=2, topk=k, mutual=True)
    edges = edge_dict(mutual)
    assert 0 < len(edges) < len(union) and set(edges) <= set(union)
    reference = reference_scores(users, items)
    chosen: dict[tuple[int, int], list[tuple[float, int]]] = {}
    for (i, j), (c, score) in reference.items():
        if c >= 2:
            chosen.setdefault((i, int(types[j])), []).append((-np.float32(score), j))
    top = {key: {j for _, j in sorted(cands)[:k]} for key, cands in chosen.items()}
    for i, j in edges:
        assert j in top[(i, int(types[j]))] and i in top[(j, int(types[i]))]
    for i, j in set(union) - set(edges):
        assert not (j in top[(i, int(types[j]))] and i in top[(j, int(types[i]))])
    per_node_relation = np.zeros((len(types), mutual.num_relations), dtype=int)
    np.add.at(per_node_relation, (mutual.edge_index[0].numpy(), mutual.edge_type.numpy()), 1)
    assert per_node_relation.max() <= k


def test_relation_csr_and_hetero_round_trip():
    users, items, _, types = random_interactions(seed=3)
    graph = cointeraction_graph(users, items, types, ["x", "y", "z"], topk=4)
    for r in range(graph.num_relations):
        csr = graph.relation_csr(r)
        mask = graph.edge_type == r
        rows = torch.repeat_interleave(torch.arange(graph.num_items), csr.rowptr.diff())
        assert torch.equal(torch.stack([rows, csr.col]), graph.edge_index[:, mask])
        assert torch.equal(csr.weight, graph.edge_weight[mask])
    data = graph.to_hetero_data()
    assert set(data.node_types) == {"x", "y", "z"}
    assert ("x", "co", "y") in data.edge_types and ("y", "co", "x") in data.edge_types
    for name in data.node_types:
        assert (graph.item_type[data[name].item_id] == graph.type_names.index(name)).all()
    back = CoInteractionGraph.from_hetero_data(data, graph.num_items)
    for field in ("edge_index", "edge_weight", "edge_type", "item_type"):
        assert torch.equal(getattr(back, field), getattr(graph, field))
    assert back.relations == graph.relations


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="timestamps"):
        cointeraction_graph(USERS, ITEMS, TYPES, time_window=5)
    with pytest.raises(ValueError, match="item type"):
        cointeraction_graph(USERS, np.r_[ITEMS[:-1], 0], TYPES)


@pytest.fixture(scope="module")
def slice_split(ml100k_slice, tmp_path_factory):
    """A real RecBole RS 8:1:1 split of the ml-100k slice; item type derived from the raw id's parity."""
    config = Config(
        "BPR", "ml-100k-slice", config_dict=quick_overrides(ml100k_slice, graph_topk=None, graph_min_cocount=1)
    )
    dataset = create_dataset(config)
    train, valid, test = dataset.build()
    raw = dataset.id2token(dataset.iid_field, np.arange(1, dataset.item_num))
    item_type = torch.tensor([-1] + [int(r) % 2 for r in raw])
    train.item_type_ids = lambda: item_type
    train.item_type_names = lambda: ["even", "odd"]
    return config, dataset, train, valid, test


def pairs_of(ds) -> set[tuple[int, int]]:
    """Item pairs some user of ``ds`` consumed both of (dense user x item matrix: small data)."""
    inter = ds.inter_feat
    consumed = np.zeros((ds.user_num, ds.item_num), dtype=np.int64)
    consumed[inter[ds.uid_field].numpy(), inter[ds.iid_field].numpy()] = 1
    shared = consumed.T @ consumed
    np.fill_diagonal(shared, 0)
    return set(zip(*map(np.ndarray.tolist, np.nonzero(shared))))


def test_graph_of_recbole_train_split_only(slice_split):
    config, dataset, train, valid, test = slice_split
    graph = build_cointeraction_graph(config, train)
    edges = set(edge_dict(graph))
    train_pairs = pairs_of(train)
    assert edges == train_pairs  # every edge supported by train co-occurrences, and all of them
    held_out_only = pairs_of(dataset) - train_pairs
    assert held_out_only and not (edges & held_out_only)
    assert graph.relations == [("even", "even"), ("even", "odd"), ("odd", "odd")]


def test_plain_recbole_dataset_has_one_type(slice_split):
    config, dataset, *_ = slice_split
    config["graph_topk"] = 5
    try:
        graph = build_cointeraction_graph(config, dataset)
    finally:
        config["graph_topk"] = None
    assert graph.relations == [("item", "item")] and graph.item_type[0] == -1
    assert (graph.item_type[1:] == 0).all() and graph.edge_index.shape[1] > 0
