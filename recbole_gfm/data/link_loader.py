"""Link-prediction batches on the co-interaction graph: edges, negatives and sampled neighbour blocks.

The foundation's training data (2403.05185 section 3.2): positives are graph edges, negatives
random catalogue items, and each batch carries the blocks of a fixed fan-out neighbourhood
sample around every node it embeds, drawn afresh for every batch.

**Target edges are excluded from message passing.** An anchor must not see its positive in its
own sampled neighbourhood (nor the positive its anchor): max-pooling would learn "the other item
is in my pool", a shortcut that does not exist when recommending. Every batch's target edges and
their reverses are removed from the candidates *before* neighbours are drawn, the semantics of
DGL's ``exclude="reverse_id"`` and of PyG's disjoint training edges. ``exclude_target_edges:
False`` keeps the leaky behaviour reachable for comparison.

PyG's NeighborLoader / LinkNeighborLoader need pyg-lib or torch-sparse, which have no PyPI wheels
for current torch: :func:`sample_neighbours` is the vectorised replacement (no Python loop over
nodes): per relation, the CSR rows of the seed nodes are expanded, excluded edges dropped, every
remaining candidate gets a random key and the ``fanout`` smallest keys of each row are kept
(uniform sampling without replacement).

:class:`LinkLoader` follows RecBole's dataloader interface (``shuffle``, ``sampler``, ``set_epoch``
through the DistributedSampler RecBole installs, ``__len__``, ``dataset``): RecBole's Trainer drives
it like any train loader, and :meth:`LinkBatch.to` moves a whole batch, blocks included, to the
model's device in one call. Every random draw of a batch comes from a generator seeded by
(seed, epoch, the batch's first edge), so batches are the same whatever the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from recbole.data.dataloader.abstract_dataloader import AbstractDataLoader

from recbole_gfm.data.graph import CoInteractionGraph, RelationCSR
from recbole_gfm.errors import ConfigError


@dataclass
class Block:
    """One message-passing step: ``dst`` nodes receive from ``src`` nodes (sorted global item ids).

    ``edge_index`` [2, e] holds (index into src, index into dst), ``edge_type`` [e] the relation
    of each edge, with the edges sorted by (relation, dst) so that each node's neighbours in a
    relation are one contiguous segment; ``dst_in_src`` the position of every dst node inside
    ``src`` (for the node's own term).
    """

    src: torch.Tensor
    dst: torch.Tensor
    edge_index: torch.Tensor
    edge_type: torch.Tensor
    dst_in_src: torch.Tensor

    def to(self, device, non_blocking: bool = False) -> "Block":
        return Block(*(getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)))

    def pin_memory(self) -> "Block":
        return Block(*(getattr(self, f.name).pin_memory() for f in fields(self)))


def edge_keys(centre: torch.Tensor, neighbour: torch.Tensor, num_items: int) -> torch.Tensor:
    """One int64 key per directed (centre, neighbour) pair."""
    return centre * num_items + neighbour


def sample_neighbours(
    csr: RelationCSR,
    nodes: torch.Tensor,
    fanout: int | None,
    generator: torch.Generator | None = None,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Edges [2, e] (neighbour, centre) with at most ``fanout`` uniformly drawn neighbours per node.

    ``fanout=None`` (or <= 0) keeps every neighbour: the full-graph mode. ``exclude``: sorted keys
    (:func:`edge_keys`, centre first) of edges that must not be drawn. Runs on the CSR's device.
    """
    neighbour, row = _sample_rows(csr, nodes, fanout, generator, exclude)
    return torch.stack([neighbour, nodes[row]])


def _sample_rows(
    csr: RelationCSR,
    nodes: torch.Tensor,
    fanout: int | None,
    generator: torch.Generator | None = None,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample_neighbours` as (neighbour ids, index of the centre in ``nodes``), rows ascending.

    Reads only the CSR rows of ``nodes``: the work is their candidates (at most their degrees), and
    the exclusion test keys only the candidates of rows whose centre is the centre of an excluded
    edge (a batch's anchors and positives), never every candidate.
    """
    device = csr.rowptr.device
    start = csr.rowptr[nodes]
    degree = csr.rowptr[nodes + 1] - start
    total = int(degree.sum())
    if total == 0:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return empty, empty
    row = torch.repeat_interleave(torch.arange(len(nodes), device=device), degree, output_size=total)
    position = start[row] + torch.arange(total, device=device) - torch.repeat_interleave(degree.cumsum(0) - degree, degree, output_size=total)
    if exclude is not None and len(exclude):
        num_items = len(csr.rowptr) - 1
        centres = torch.unique_consecutive(exclude // num_items)  # keys sort by centre first
        found = torch.searchsorted(centres, nodes).clamp(max=len(centres) - 1)
        targeted = torch.nonzero((centres[found] == nodes)[row]).flatten()  # candidates of those rows only
        if len(targeted):
            keys = edge_keys(nodes[row[targeted]], csr.col[position[targeted]], num_items)
            hit = torch.searchsorted(exclude, keys).clamp(max=len(exclude) - 1)
            keep = torch.ones(total, dtype=torch.bool, device=device)
            keep[targeted[exclude[hit] == keys]] = False
            row, position = row[keep], position[keep]
            degree = torch.bincount(row, minlength=len(nodes))
    if fanout is not None and fanout > 0 and len(row) and int(degree.max()) > fanout:
        # rank the candidates of each row by a random key; keep the first `fanout`
        key = torch.rand(len(row), generator=generator, device=device, dtype=torch.float64)
        order = torch.argsort(row.double() + key)  # stays grouped by row (rows ascend)
        first = degree.cumsum(0) - degree
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(row), device=device) - first[row[order]]
        keep = rank < fanout
        row, position = row[keep], position[keep]
    return csr.col[position], row


def sample_blocks(
    csrs: list[RelationCSR],
    seeds: torch.Tensor,
    fanouts: list[int | None],
    generator: torch.Generator | None = None,
    exclude: torch.Tensor | None = None,
) -> list[Block]:
    """Blocks for len(fanouts) layers around ``seeds``, outermost (first layer) first.

    ``fanouts[l]`` is the fan-out of layer l+1 (papers: 2 layers, uniform fixed-size sampling);
    ``exclude`` as in :func:`sample_neighbours`, applied at every layer.
    """
    blocks: list[Block] = []
    dst = torch.unique(seeds)
    for fanout in reversed(fanouts):
        blocks.append(_block([_sample_rows(csr, dst, fanout, generator, exclude) for csr in csrs], dst))
        dst = blocks[-1].src
    return blocks[::-1]


def _block(per_relation: list[tuple[torch.Tensor, torch.Tensor]], dst: torch.Tensor) -> Block:
    """Assemble a block from per-relation (global neighbour id, index of the centre in ``dst``) edge lists."""
    neighbour = torch.cat([n for n, _ in per_relation])
    centre = torch.cat([c for _, c in per_relation])
    edge_type = torch.repeat_interleave(
        torch.arange(len(per_relation), device=dst.device),
        torch.tensor([len(n) for n, _ in per_relation], dtype=torch.long, device=dst.device),
        output_size=len(neighbour),
    )
    # one sort gives the sources and where every dst node and every neighbour sits among them
    src, where = torch.unique(torch.cat([dst, neighbour]), return_inverse=True)
    return Block(src, dst, torch.stack([where[len(dst) :], centre]), edge_type, where[: len(dst)])


def epoch_batch_size(batch_size: int, epoch_edges: int, max_steps: int | None) -> int:
    """Edges per step: ``batch_size``, grown so that ``epoch_edges`` take at most ``max_steps`` steps.

    Once a step's sampled neighbourhood spans the catalogue (a 4,096-edge batch with 10 negatives
    an edge and two hops of fan-out 10 per relation does from a few 10^4 items on), a step costs
    about one full-graph pass whatever its batch. Capping the steps keeps an epoch's cost linear in
    the graph instead of quadratic (steps x step cost, both growing with it); ``~``: no cap.
    """
    if not max_steps:
        return batch_size
    return max(batch_size, -(-epoch_edges // max_steps))


@dataclass
class LinkBatch:
    """One training step of the foundation: ``anchor`` -> ``positive`` edges, ``negative`` [B, K]
    items, and the ``blocks`` that embed ``nodes`` (sorted unique ids of all three)."""

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    relation: torch.Tensor
    nodes: torch.Tensor
    blocks: list[Block]

    def __len__(self) -> int:
        return len(self.anchor)

    def to(self, device, non_blocking: bool = False) -> "LinkBatch":
        tensors = (getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)[:-1])
        return LinkBatch(*tensors, [b.to(device, non_blocking) for b in self.blocks])

    def pin_memory(self) -> "LinkBatch":
        return LinkBatch(*(getattr(self, f.name).pin_memory() for f in fields(self)[:-1]), [b.pin_memory() for b in self.blocks])


class LinkLoader(AbstractDataLoader):
    """RecBole train loader of link-prediction batches over ``graph``, the co-interaction graph of
    ``dataset`` that the run prepared (the model reads the same one).

    Config keys: ``train_batch_size`` (edges per batch; grown by :func:`epoch_batch_size` so that an
    epoch takes at most ``max_steps_per_epoch`` steps), ``num_negatives`` (uniform random
    catalogue items per edge, ids 1..n-1), ``balanced_sampling`` (each epoch draws, per relation,
    as many edges as the rarest relation has: the papers' balanced multi-link sampler, redrawn
    every epoch; otherwise every edge once), ``fanouts``, ``exclude_target_edges``, and
    ``hard_negatives`` (PinSage's curriculum, Ying et al. 2018: in epoch e, min(e, hard_negatives)
    extra negatives per edge drawn two hops from the anchor, as a random walk anchor -> neighbour ->
    neighbour that is neither the anchor nor one of its neighbours; a walk that finds none falls
    back to a uniform item). Hard negatives follow the uniform ones in ``LinkBatch.negative``.
    """

    def __init__(self, config, dataset, sampler=None, shuffle: bool = True, graph: CoInteractionGraph | None = None):
        if graph is None:
            raise ConfigError("LinkLoader trains on the co-interaction graph the run prepares: pass graph= (recbole_gfm.run.inputs).")
        self.graph = graph
        self.csrs = [graph.relation_csr(r) for r in range(graph.num_relations)]
        self.fanouts = list(config["fanouts"])
        self.num_negatives = config["num_negatives"]
        self.balanced = config["balanced_sampling"]
        self.exclude_target_edges = config["exclude_target_edges"]
        self.hard_negatives = config["hard_negatives"] or 0
        self.seed = config["seed"]
        self.epoch = -1
        if self.hard_negatives:  # every relation's neighbours, one CSR: the walks ignore the relation
            self.neighbours = graph.relation_csr(None)
            self.edge_keys = torch.sort(edge_keys(graph.edge_index[1], graph.edge_index[0], graph.num_items)).values
        # edge indices of every non-empty relation; an epoch's size is fixed by the sampling rule
        self.relation_edges = [torch.nonzero(graph.edge_type == r).flatten() for r in torch.unique(graph.edge_type).tolist()]
        self.per_relation = min((len(e) for e in self.relation_edges), default=0) if self.balanced else None
        self.sample_size = self.per_relation * len(self.relation_edges) if self.balanced else len(graph.edge_type)
        self._epoch_edges = torch.arange(self.sample_size)
        super().__init__(config, dataset, sampler, shuffle=shuffle)

    def _init_batch_size_and_step(self):
        if self.config["max_steps_per_epoch"] is not None and self.config["max_steps_per_epoch"] < 1:
            raise ConfigError(f"max_steps_per_epoch must be at least 1 (or ~: no cap), got {self.config['max_steps_per_epoch']!r}.")
        batch_size = epoch_batch_size(self.config["train_batch_size"], self.sample_size, self.config["max_steps_per_epoch"])
        self.set_batch_size(batch_size)
        self.step = batch_size  # RecBole's loader then divides it among the ranks of a multi-process run

    @property
    def batch_growth(self) -> float:
        """How many times ``train_batch_size`` a step's batch is (1 while the epoch fits the step cap)."""
        return self._batch_size / self.config["train_batch_size"]

    def _generator(self, *parts: int) -> torch.Generator:
        return torch.Generator().manual_seed(hash((self.seed, self.epoch, *parts)) & ((1 << 63) - 1))

    def __iter__(self):
        self.epoch += 1
        if self.balanced:
            generator = self._generator(-1)
            self._epoch_edges = torch.cat(
                [e[torch.randperm(len(e), generator=generator)[: self.per_relation]] for e in self.relation_edges]
                + [self.graph.edge_type.new_empty(0)]
            )
        return super().__iter__()

    def collate_fn(self, index) -> LinkBatch:
        edges = self._epoch_edges[torch.as_tensor(index, dtype=torch.long)]
        generator = self._generator(int(edges[0]) if len(edges) else 0)
        anchor, positive = self.graph.edge_index[1, edges], self.graph.edge_index[0, edges]
        negative = torch.randint(1, self.graph.num_items, (len(edges), self.num_negatives), generator=generator)
        if self.hard_negatives and self.epoch > 0:
            hard = self._two_hop(anchor, min(self.epoch, self.hard_negatives), generator)
            negative = torch.cat([negative, hard], dim=1)
        nodes = torch.unique(torch.cat([anchor, positive, negative.flatten()]))
        exclude = None
        if self.exclude_target_edges:
            n = self.graph.num_items
            exclude = torch.sort(torch.cat([edge_keys(anchor, positive, n), edge_keys(positive, anchor, n)])).values
        blocks = sample_blocks(self.csrs, nodes, self.fanouts, generator, exclude)
        return LinkBatch(anchor, positive, negative, self.graph.edge_type[edges], nodes, blocks)

    def _two_hop(self, anchor: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
        """[B, count] items two random-walk steps from each anchor, not the anchor nor a neighbour of it."""
        csr, n = self.neighbours, self.graph.num_items
        start = anchor.repeat_interleave(count)

        def step(nodes: torch.Tensor) -> torch.Tensor:
            degree = csr.rowptr[nodes + 1] - csr.rowptr[nodes]
            pick = (torch.rand(len(nodes), generator=generator, dtype=torch.float64) * degree).long()
            return torch.where(degree > 0, csr.col[(csr.rowptr[nodes] + pick).clamp(max=max(len(csr.col) - 1, 0))], 0)

        reached = step(step(start))
        keys = edge_keys(start, reached, n)
        found = torch.searchsorted(self.edge_keys, keys).clamp(max=max(len(self.edge_keys) - 1, 0))
        bad = (reached == 0) | (reached == start) | (self.edge_keys[found] == keys)  # none, itself, a neighbour
        fallback = torch.randint(1, n, (len(start),), generator=generator)
        return torch.where(bad, fallback, reached).view(len(anchor), count)
