"""Neighbour sampling, target-edge exclusion and the link loader (balanced edge batches, RecBole interface)."""

from __future__ import annotations

from collections import Counter

import torch

import pytest
from recbole.utils import init_seed

from conftest import typed_overrides
from recbole_gfm.config import Config
from recbole_gfm.data.graph import CoInteractionGraph, RelationCSR, build_cointeraction_graph
from recbole_gfm.data.link_loader import LinkBatch, LinkLoader, edge_keys, epoch_batch_size, sample_blocks, sample_neighbours
from recbole_gfm.foundation.trainer import FoundationExport, HGNNTrainer, batch_lr_scale
from recbole_gfm.model.hgnn import HGNN
from recbole_gfm.data.protocol import data_preparation
from recbole_gfm.errors import ConfigError
from recbole_gfm.registry import create_dataset


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


def test_excluded_edges_are_never_drawn_and_the_fanout_is_filled_from_the_others():
    edge_index, edge_type, n, R = random_graph()
    csrs = csrs_of(edge_index, edge_type, n, R)
    truth = neighbour_sets(edge_index, edge_type, 0)
    centre = max(truth, key=lambda c: len(truth[c]))
    hidden = sorted(truth[centre])[:2]
    exclude = torch.sort(edge_keys(torch.tensor([centre] * 2), torch.tensor(hidden), n)).values
    fanout = len(truth[centre]) - 2
    for _ in range(50):
        neighbour, _ = sample_neighbours(csrs[0], torch.tensor([centre]), fanout, exclude=exclude)
        assert not set(neighbour.tolist()) & set(hidden)
        assert set(neighbour.tolist()) == truth[centre] - set(hidden)  # the fan-out is filled from the rest
    # the reverse direction is another key: excluding (c, h) leaves (h, c) drawable
    neighbour, _ = sample_neighbours(csrs[0], torch.tensor([hidden[0]]), None, exclude=exclude)
    assert centre in neighbour.tolist()


class _Spy(torch.Tensor):
    """A tensor that records the size of every result computed directly from it (results are plain tensors)."""

    sizes: list[int] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        out = super().__torch_function__(func, types, args, kwargs or {})
        for x in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(x, torch.Tensor):
                cls.sizes.append(x.numel())
        if isinstance(out, (tuple, list)):
            return type(out)(x.as_subclass(torch.Tensor) if isinstance(x, torch.Tensor) else x for x in out)
        return out.as_subclass(torch.Tensor) if isinstance(out, torch.Tensor) else out


def test_sampling_reads_only_the_seed_rows_never_whole_csr_arrays():
    # a per-step cost over the whole graph (degrees of every node, keys over every edge, a sort
    # of a CSR array) shows as a result sized by the catalogue or the edges: none may exceed the
    # candidates of the seed rows
    edge_index, edge_type, n, R = random_graph(num_nodes=5000, num_edges=60000)
    csrs = [RelationCSR(*(t.as_subclass(_Spy) for t in csr)) for csr in csrs_of(edge_index, edge_type, n, R)]
    seeds = torch.tensor([3, 77, 78, 1200, 4999])
    anchor, positive = seeds[:2], torch.stack([csrs[0].col[csrs[0].rowptr[s]] for s in seeds[:2]]).as_subclass(torch.Tensor)
    exclude = torch.sort(torch.cat([edge_keys(anchor, positive, n), edge_keys(positive, anchor, n)])).values
    _Spy.sizes = []
    (block,) = sample_blocks(csrs, seeds, [3], torch.Generator().manual_seed(0), exclude)
    candidates = sum(int(csr.rowptr[s + 1] - csr.rowptr[s]) for csr in csrs for s in seeds)
    assert _Spy.sizes and max(_Spy.sizes) <= candidates < edge_index.shape[1] // 100
    drawn = set(zip(block.dst[block.edge_index[1]].tolist(), block.src[block.edge_index[0]].tolist()))
    assert not drawn & set(zip(anchor.tolist(), positive.tolist())), "a target edge was drawn"


@pytest.fixture(scope="module")
def typed_train(typed_slice):
    config = Config("HGNN", typed_slice["dataset"], config_dict=typed_overrides(typed_slice, train_batch_size=64, num_negatives=3))
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    return config, train_data.dataset


def block_edges(batch: LinkBatch) -> set[tuple[int, int]]:
    """(centre, neighbour) pairs over every block of a batch."""
    pairs = set()
    for block in batch.blocks:
        pairs |= set(zip(block.dst[block.edge_index[1]].tolist(), block.src[block.edge_index[0]].tolist()))
    return pairs


def test_the_link_loader_hides_every_batchs_target_edges_from_its_blocks(typed_train):
    config, dataset = typed_train
    leaks = {}
    for exclude in (True, False):
        config["exclude_target_edges"] = exclude
        loader = LinkLoader(config, dataset, shuffle=True, graph=build_cointeraction_graph(config, dataset))
        leaked = total = 0
        for batch in loader:
            seen = block_edges(batch)
            for a, p in zip(batch.anchor.tolist(), batch.positive.tolist()):
                leaked += (a, p) in seen or (p, a) in seen
                total += 1
        leaks[exclude] = leaked / total
    assert leaks[True] == 0
    assert leaks[False] > 0.3, leaks  # the shortcut is common when it is not excluded


def test_balanced_loader_draws_the_rarest_relations_size_from_each_relation_every_epoch(typed_train):
    config, dataset = typed_train
    config["exclude_target_edges"] = True
    graph = build_cointeraction_graph(config, dataset)
    sizes = torch.bincount(graph.edge_type, minlength=graph.num_relations)
    present = sizes > 0
    loader = LinkLoader(config, dataset, shuffle=True, graph=build_cointeraction_graph(config, dataset))
    assert loader.dataset is dataset and loader.shuffle and len(loader) == -(-loader.sample_size // 64)
    edges = set(zip(*graph.edge_index.tolist(), graph.edge_type.tolist()))
    epochs = []
    for _ in range(2):
        batches = list(loader)
        relation = torch.cat([b.relation for b in batches])
        assert torch.bincount(relation, minlength=graph.num_relations)[present].tolist() == [int(sizes[present].min())] * int(present.sum())
        assert len(batches) == len(loader)
        anchors, positives = torch.cat([b.anchor for b in batches]), torch.cat([b.positive for b in batches])
        pairs = set(zip(positives.tolist(), anchors.tolist(), relation.tolist()))
        assert pairs <= edges, "positives must be graph edges"
        negatives = torch.cat([b.negative for b in batches])
        assert negatives.shape == (len(anchors), 3) and negatives.min() >= 1 and negatives.max() < graph.num_items
        for b in batches:
            assert torch.equal(b.nodes, torch.unique(torch.cat([b.anchor, b.positive, b.negative.flatten()])))
            assert torch.equal(b.blocks[-1].dst, b.nodes)
        epochs.append(sorted(pairs))
    assert epochs[0] != epochs[1], "the balanced sample is redrawn every epoch"
    # the same seed gives the same batches
    again = LinkLoader(config, dataset, shuffle=True, graph=build_cointeraction_graph(config, dataset))
    first, repeat = next(iter(LinkLoader(config, dataset, shuffle=True, graph=build_cointeraction_graph(config, dataset)))), next(iter(again))
    assert torch.equal(first.negative, repeat.negative) and torch.equal(first.blocks[0].edge_index, repeat.blocks[0].edge_index)

    config["balanced_sampling"] = False
    plain = LinkLoader(config, dataset, shuffle=True, graph=build_cointeraction_graph(config, dataset))
    assert sum(len(b) for b in plain) == graph.edge_index.shape[1]
    config["balanced_sampling"] = True


def test_hard_negatives_are_two_hops_away_and_grow_one_per_epoch(typed_train):
    config, dataset = typed_train
    config["hard_negatives"] = 2
    graph = build_cointeraction_graph(config, dataset)
    neighbours = {}
    for s, d in graph.edge_index.T.tolist():
        neighbours.setdefault(d, set()).add(s)
    loader = LinkLoader(config, dataset, shuffle=True, graph=build_cointeraction_graph(config, dataset))
    widths, two_hop, total = [], 0, 0
    for _ in range(3):
        batch = next(iter(loader))
        widths.append(batch.negative.shape[1])
        for a, row in zip(batch.anchor.tolist(), batch.negative[:, 3:].tolist()):
            for n in row:
                total += 1
                # a walk's item is never the anchor or its neighbour (a uniform fallback may be, rarely)
                two_hop += n != a and n not in neighbours.get(a, set()) and any(n in neighbours.get(m, set()) for m in neighbours.get(a, set()))
    assert widths == [3, 4, 5]  # 3 uniform, then one more hard negative per epoch up to 2
    assert total == 64 * 3 and two_hop > 0.8 * total  # the rest: walks that met the anchor or a neighbour
    config["hard_negatives"] = 0


def test_ranks_draw_the_same_balanced_epoch_and_each_trains_on_its_own_shard(typed_train, monkeypatch):
    """Two ranks (torch.distributed's rank and world size faked): RecBole installs its DistributedSampler
    in the link loader; both ranks draw the same balanced edges, split them, and reshuffle on set_epoch."""
    config, dataset = typed_train
    config["exclude_target_edges"] = True
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    loaders = []
    for rank in (0, 1):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None, _rank=rank: _rank)
        monkeypatch.setitem(config.final_config_dict, "single_spec", False)
        monkeypatch.setitem(config.final_config_dict, "world_size", 2)
        loaders.append(LinkLoader(config, dataset, shuffle=True, graph=build_cointeraction_graph(config, dataset)))
    assert all(isinstance(l.sampler, torch.utils.data.DistributedSampler) for l in loaders)
    assert loaders[0].step == 32 and len(loaders[0]) == len(loaders[1])  # 64 edges a step in all, 32 per rank
    shards = []
    for epoch in (0, 1):
        pairs = []
        for loader in loaders:
            loader.sampler.set_epoch(epoch)  # what RecBole's Trainer does for a shuffled train loader
            batches = list(loader)
            pairs.append(sorted(zip(torch.cat([b.anchor for b in batches]).tolist(), torch.cat([b.positive for b in batches]).tolist())))
        assert torch.equal(loaders[0]._epoch_edges, loaders[1]._epoch_edges), "one balanced draw per epoch for all ranks"
        edges = loaders[0]._epoch_edges
        drawn = sorted(zip(loaders[0].graph.edge_index[1, edges].tolist(), loaders[0].graph.edge_index[0, edges].tolist()))
        together, drawn = Counter(pairs[0] + pairs[1]), Counter(drawn)
        assert len(pairs[0]) == len(pairs[1]) and not drawn - together, "every drawn edge is trained on"
        # but for the DistributedSampler's padding (the first edge again, to even the shards), once
        assert sum((together - drawn).values()) == len(edges) % 2
        shards.append(pairs[0])
    assert shards[0] != shards[1]


def test_an_epoch_over_the_step_cap_grows_the_batch_and_the_trainer_scales_the_learning_rate(typed_train, monkeypatch):
    """max_steps_per_epoch: the epoch's edges all train, in at most that many steps (ceil(edges / cap)
    edges each); the HGNN trainer's learning rate follows batch_lr_scaling (sqrt: Adam's rule)."""
    config, dataset = typed_train
    graph = build_cointeraction_graph(config, dataset)
    before = config["max_steps_per_epoch"], config["train_batch_size"], config["batch_lr_scaling"]
    config["train_batch_size"] = 16
    try:
        uncapped = LinkLoader(config, dataset, shuffle=True, graph=graph)
        assert uncapped.batch_growth == 1 and len(uncapped) == -(-uncapped.sample_size // 16) > 3
        config["max_steps_per_epoch"] = 3
        capped = LinkLoader(config, dataset, shuffle=True, graph=graph)
        batches = list(capped)
        step = -(-capped.sample_size // 3)
        assert len(capped) == len(batches) == 3 and [len(b) for b in batches[:-1]] == [step, step]
        assert sum(len(b) for b in batches) == capped.sample_size and capped.batch_growth == step / 16
        # the batches are drawn as before: the same balanced epoch, every edge once
        assert sorted(torch.cat([b.anchor for b in batches]).tolist()) == sorted(torch.cat([b.anchor for b in uncapped]).tolist())
        text = torch.randn(graph.num_items, 8)
        trainer = HGNNTrainer(config, HGNN(config, dataset, text, graph))
        seen = []
        monkeypatch.setattr(FoundationExport, "fit", lambda self, *a, **k: seen.append(self.optimizer.param_groups[0]["lr"]))
        for rule in ("sqrt", "none"):
            config["batch_lr_scaling"] = rule
            trainer.fit(capped)
        trainer.fit(uncapped)
        lr = config["learning_rate"]
        assert seen == pytest.approx([lr * capped.batch_growth**0.5, lr, lr]) and capped.batch_growth > 1
    finally:
        config["max_steps_per_epoch"], config["train_batch_size"], config["batch_lr_scaling"] = before
    assert epoch_batch_size(64, 1000, None) == 64 and epoch_batch_size(64, 1000, 20) == 64 and epoch_batch_size(64, 1000, 10) == 100
    assert batch_lr_scale("sqrt", 4.0) == 2.0 and batch_lr_scale("linear", 4.0) == 4.0 and batch_lr_scale("none", 4.0) == 1.0
    with pytest.raises(ConfigError, match="batch_lr_scaling 'cubic' unknown"):
        batch_lr_scale("cubic", 4.0)
    config["max_steps_per_epoch"] = 0
    try:
        with pytest.raises(ConfigError, match="max_steps_per_epoch must be at least 1"):
            LinkLoader(config, dataset, shuffle=True, graph=graph)
    finally:
        config["max_steps_per_epoch"] = before[0]
