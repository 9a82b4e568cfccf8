"""Sampling on the co-interaction graph: fixed fan-out neighbour blocks and balanced edge batches.

PyG's NeighborLoader needs pyg-lib or torch-sparse, which have no wheels for current torch on
PyPI; this module is the vectorised replacement (no Python loop over nodes): per relation, the
CSR rows (:meth:`CoInteractionGraph.relation_csr`, symmetric graph) of the seed nodes are expanded, every candidate edge gets a random key, and the ``fanout``
smallest keys of each row are kept (uniform sampling without replacement, redrawn every call).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from recbole.data.interaction import Interaction

from recbole_gfm.data.graph import RelationCSR


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


def sample_neighbours(
    csr: RelationCSR, nodes: torch.Tensor, fanout: int | None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Edges [2, e] (neighbour, centre) with at most ``fanout`` uniformly drawn neighbours per node.

    ``fanout=None`` (or <= 0) keeps every neighbour: the full-graph mode.
    """
    start = csr.rowptr[nodes]
    degree = csr.rowptr[nodes + 1] - start
    total = int(degree.sum())
    if total == 0:
        return nodes.new_empty((2, 0))
    row = torch.repeat_interleave(torch.arange(len(nodes)), degree)
    offset = torch.arange(total) - torch.repeat_interleave(degree.cumsum(0) - degree, degree)
    position = start[row] + offset
    if fanout is not None and fanout > 0 and int(degree.max()) > fanout:
        # rank the candidates of each row by a random key; keep the first `fanout`
        key = torch.rand(total, generator=generator)
        order = torch.argsort(row.double() + key.double())  # stays grouped by row
        rank = torch.empty_like(order)
        rank[order] = offset  # a row's sorted positions are its offsets 0..deg-1
        keep = rank < fanout
        row, position = row[keep], position[keep]
    return torch.stack([csr.col[position], nodes[row]])


def sample_blocks(
    csrs: list[RelationCSR], seeds: torch.Tensor, fanouts: list[int | None], generator: torch.Generator | None = None
) -> list[Block]:
    """Blocks for len(fanouts) layers around ``seeds``, outermost (first layer) first.

    ``fanouts[l]`` is the fan-out of layer l+1 (papers: 2 layers, uniform fixed-size sampling).
    """
    blocks: list[Block] = []
    dst = torch.unique(seeds)
    for fanout in reversed(fanouts):
        blocks.append(_block([sample_neighbours(csr, dst, fanout, generator) for csr in csrs], dst))
        dst = blocks[-1].src
    return blocks[::-1]


def _block(per_relation: list[torch.Tensor], dst: torch.Tensor) -> Block:
    """Assemble a block from per-relation (global neighbour, global centre) edge lists."""
    edges = torch.cat(per_relation, dim=1)
    edge_type = torch.repeat_interleave(
        torch.arange(len(per_relation)), torch.tensor([e.shape[1] for e in per_relation], dtype=torch.long)
    )
    src = torch.unique(torch.cat([dst, edges[0]]))
    edge_index = torch.stack([torch.searchsorted(src, edges[0]), torch.searchsorted(dst, edges[1])])
    return Block(src, dst, edge_index, edge_type, torch.searchsorted(src, dst))


class EdgeBatchLoader:
    """Link-prediction batches for RecBole's Trainer: ``Interaction`` of anchor, positive, negatives.

    Positives are graph edges; ``num_negatives`` negatives per edge are uniform random catalogue
    items (ids 1..num_items-1).
    With ``balanced=True`` each epoch draws, per relation, as many edges as the rarest relation has
    (the papers' balanced multi-link sampler), redrawn every epoch; otherwise every edge once.
    """

    def __init__(
        self,
        edge_index: torch.Tensor,
        edge_type: torch.Tensor,
        num_items: int,
        batch_size: int,
        balanced: bool,
        seed: int,
        num_negatives: int = 1,
    ):
        self.edge_index, self.edge_type = edge_index, edge_type
        self.num_items, self.batch_size, self.balanced = num_items, batch_size, balanced
        self.num_negatives = num_negatives
        self.generator = torch.Generator().manual_seed(seed)
        # edge indices of every non-empty relation; an epoch's size is fixed by the sampling rule
        self.relation_edges = [torch.nonzero(edge_type == r).flatten() for r in torch.unique(edge_type).tolist()]
        self.per_relation = min((len(e) for e in self.relation_edges), default=0) if balanced else None
        self.epoch_size = self.per_relation * len(self.relation_edges) if balanced else len(edge_type)

    def epoch_edges(self) -> torch.Tensor:
        """Indices of the edges of one epoch, shuffled."""
        if self.balanced:
            edges = torch.cat(
                [e[torch.randperm(len(e), generator=self.generator)[: self.per_relation]] for e in self.relation_edges]
                + [self.edge_type.new_empty(0)]
            )
        else:
            edges = torch.arange(len(self.edge_type))
        return edges[torch.randperm(len(edges), generator=self.generator)]

    def __len__(self) -> int:
        return (self.epoch_size + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        edges = self.epoch_edges()
        for start in range(0, len(edges), self.batch_size):
            batch = edges[start : start + self.batch_size]
            yield Interaction(
                {
                    "anchor": self.edge_index[1, batch],
                    "positive": self.edge_index[0, batch],
                    "negative": torch.randint(
                        1, self.num_items, (len(batch), self.num_negatives), generator=self.generator
                    ),
                    "relation": self.edge_type[batch],
                }
            )
