"""Neighbour sampling and balanced edge sampling on a small random multi-relation graph."""

from __future__ import annotations

import torch

from recbole_gfm.data.graph import CoInteractionGraph
from recbole_gfm.model.sampler import EdgeBatchLoader, sample_blocks, sample_neighbours


def csrs_of(edge_index, edge_type, num_nodes, num_relations):
    # CoInteractionGraph keeps edges sorted by (relation, source, target)
    order = torch.argsort((edge_type * num_nodes + edge_index[0]) * num_nodes + edge_index[1])
    edge_index, edge_type = edge_index[:, order], edge_type[order]
    graph = CoInteractionGraph(
        num_nodes, edge_index, torch.ones(edge_index.shape[1]), edge_type,
        [("t", "t")] * num_relations, torch.zeros(num_nodes, dtype=torch.long), ["t"],
    )
    return [graph.relation_csr(r) for r in range(num_relations)]


def random_graph(num_nodes=60, num_edges=700, num_relations=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(1, num_nodes, (num_edges,), generator=g)
    dst = torch.randint(1, num_nodes, (num_edges,), generator=g)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    # relation sizes deliberately unequal: 70%, 25%, 5%
    rel = torch.bucketize(torch.rand(len(src), generator=g), torch.tensor([0.7, 0.95]))
    pairs = torch.unique(torch.stack([torch.minimum(src, dst), torch.maximum(src, dst), rel]), dim=1)
    a, b, r = pairs
    edge_index = torch.cat([torch.stack([a, b]), torch.stack([b, a])], dim=1)
    return edge_index, torch.cat([r, r]), num_nodes, num_relations


def neighbour_sets(edge_index, edge_type, r):
    sets: dict[int, set[int]] = {}
    for s, d in edge_index[:, edge_type == r].T.tolist():
        sets.setdefault(d, set()).add(s)
    return sets


def test_sampled_neighbours_are_real_neighbours_within_fanout_and_distinct():
    edge_index, edge_type, n, R = random_graph()
    csrs = csrs_of(edge_index, edge_type, n, R)
    seeds = torch.arange(1, n)
    for r in range(R):
        truth = neighbour_sets(edge_index, edge_type, r)
        for fanout in (1, 3, None):
            neighbour, centre = sample_neighbours(csrs[r], seeds, fanout)
            per_node: dict[int, list[int]] = {}
            for s, c in zip(neighbour.tolist(), centre.tolist()):
                per_node.setdefault(c, []).append(s)
            for c, got in per_node.items():
                assert set(got) <= truth[c], "a sampled node is not a neighbour"
                assert len(got) == len(set(got)), "sampling is without replacement"
                assert len(got) == (len(truth[c]) if fanout is None else min(fanout, len(truth[c])))
            assert set(per_node) == {c for c in truth if c in set(seeds.tolist())}


def test_sampling_is_uniform_and_redrawn_each_call():
    edge_index = torch.tensor([[1, 2, 3, 4], [0, 0, 0, 0]])
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    (csr,) = csrs_of(edge_index, torch.zeros(8, dtype=torch.long), 5, 1)
    torch.manual_seed(0)
    counts = torch.zeros(5)
    draws = [tuple(sorted(sample_neighbours(csr, torch.tensor([0]), 2)[0].tolist())) for _ in range(4000)]
    for d in draws:
        counts[list(d)] += 1
    assert len(set(draws)) == 6  # all C(4,2) pairs appear
    assert torch.allclose(counts[1:] / 4000, torch.full((4,), 0.5), atol=0.03)


def test_blocks_chain_layers_and_cover_the_seeds():
    edge_index, edge_type, n, R = random_graph()
    csrs = csrs_of(edge_index, edge_type, n, R)
    seeds = torch.tensor([5, 9, 9, 17])
    blocks = sample_blocks(csrs, seeds, [4, 2])
    assert torch.equal(blocks[-1].dst, torch.tensor([5, 9, 17]))
    assert torch.equal(blocks[0].dst, blocks[1].src)  # layer 1 computes what layer 2 reads
    for block in blocks:
        assert torch.equal(block.src[block.dst_in_src], block.dst)
        truths = [neighbour_sets(edge_index, edge_type, r) for r in range(R)]
        sources, targets = block.src[block.edge_index[0]], block.dst[block.edge_index[1]]
        for s, d, r in zip(sources.tolist(), targets.tolist(), block.edge_type.tolist()):
            assert s in truths[r][d]
        segment = block.edge_type * len(block.dst) + block.edge_index[1]  # the layer's max relies on this order
        assert bool((segment[1:] >= segment[:-1]).all())
    (full,) = sample_blocks(csrs, torch.arange(n), [0])  # fan-out 0: every neighbour
    assert full.edge_index.shape[1] == edge_index.shape[1]
    assert torch.equal(torch.bincount(full.edge_type, minlength=R), torch.bincount(edge_type, minlength=R))


def test_balanced_sampler_draws_the_rarest_relations_size_from_each_relation_every_epoch():
    edge_index, edge_type, n, R = random_graph()
    sizes = torch.bincount(edge_type).tolist()
    loader = EdgeBatchLoader(edge_index, edge_type, n, batch_size=16, balanced=True, seed=1, num_negatives=3)
    epochs = []
    for _ in range(2):
        batches = list(loader)
        relation = torch.cat([b["relation"] for b in batches])
        assert torch.bincount(relation, minlength=R).tolist() == [min(sizes)] * R
        assert len(batches) == len(loader)
        anchors, positives = torch.cat([b["anchor"] for b in batches]), torch.cat([b["positive"] for b in batches])
        pairs = set(zip(positives.tolist(), anchors.tolist(), relation.tolist()))
        assert pairs <= set(zip(*edge_index.tolist(), edge_type.tolist())), "positives must be graph edges"
        negatives = torch.cat([b["negative"] for b in batches])
        assert negatives.shape == (len(anchors), 3) and negatives.min() >= 1 and negatives.max() < n
        epochs.append(sorted(pairs))
    assert epochs[0] != epochs[1], "the balanced sample is redrawn every epoch"

    plain = EdgeBatchLoader(edge_index, edge_type, n, batch_size=16, balanced=False, seed=1)
    assert sum(len(b["anchor"]) for b in plain) == edge_index.shape[1]

