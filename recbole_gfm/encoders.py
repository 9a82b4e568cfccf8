"""The foundation encoder networks, as plain torch modules built from their arguments.

Kept apart from the RecBole model (:mod:`recbole_gfm.model.hgnn`) so the artifact store can rebuild
an encoder from the arguments saved beside its weights, and embed items that did not exist at
training time, without importing any model.

HGNN (Damianou et al. 2403.07478 section 3; 2T-HGNN 2403.05185 section 3.2). Per layer and relation r,

    agg_r(i) = max_{j in sample_r(i)} sigma(W_r h_j + b_r)           (GraphSAGE max-pool aggregator)
    h_i'     = sigma(W_self h_i + sum_r W'_r agg_r(i))                 (sum over relations)

with the item's text embedding (projected to ``hidden_size``) as h^0 and an L2-normalised output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recbole_gfm.data.link_loader import Block

_ACTIVATIONS = {"relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class RelationalMaxPoolConv(nn.Module):
    """One HGNN layer: per relation a GraphSAGE max-pool aggregator, summed, plus the node's own term.

    Equivalent to ``HeteroConv({r: SAGEConv(aggr="max", project=True, root_weight=False)}, aggr="sum")``
    plus a self linear map, but fused across relations (one batched projection, one gather, one
    segment max): R separate SAGEConv calls cost R times the kernel launches on CPU.
    """

    def __init__(self, in_dim: int, out_dim: int, n_relations: int):
        super().__init__()
        self.pool_weight = nn.Parameter(torch.empty(n_relations, in_dim, in_dim))
        self.pool_bias = nn.Parameter(torch.zeros(n_relations, 1, in_dim))
        self.out_weight = nn.Parameter(torch.empty(n_relations, in_dim, out_dim))
        self.self_lin = nn.Linear(in_dim, out_dim)
        for weight in (self.pool_weight, self.out_weight):  # nn.Linear's default: U(-1/sqrt(fan_in), ..)
            bound = weight.shape[1] ** -0.5
            nn.init.uniform_(weight, -bound, bound)

    def forward(self, h_src: torch.Tensor, h_dst: torch.Tensor, block: Block) -> torch.Tensor:
        n_rel, n_src, n_dst = self.pool_weight.shape[0], h_src.shape[0], h_dst.shape[0]
        pooled = torch.relu(torch.matmul(h_src.unsqueeze(0), self.pool_weight) + self.pool_bias)  # [R, N_src, d]
        src, dst = block.edge_index
        messages = pooled.flatten(0, 1).index_select(0, block.edge_type * n_src + src)
        # max over each (relation, node) segment (edges arrive sorted so); an empty segment gives
        # 0, which the ReLU makes the max's identity. segment_reduce's backward is ~2x cheaper on
        # CPU than scatter-max's (PyG's scatter / SAGEConv(aggr="max")).
        lengths = torch.bincount(block.edge_type * n_dst + dst, minlength=n_rel * n_dst)
        agg = torch.segment_reduce(messages, "max", lengths=lengths, initial=0.0).view(n_rel, n_dst, -1)
        return self.self_lin(h_dst) + torch.einsum("rnd,rde->ne", agg, self.out_weight)


class HGNNEncoder(nn.Module):
    """Text features -> projection -> ``n_layers`` relational max-pool layers -> unit vectors."""

    def __init__(
        self,
        in_dim: int,
        hidden_size: int,
        embedding_size: int,
        n_layers: int,
        n_relations: int,
        activation: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        if activation.lower() not in _ACTIVATIONS:
            raise ValueError(f"activation '{activation}' unknown: choose one of {sorted(_ACTIVATIONS)}")
        self.act = _ACTIVATIONS[activation.lower()]()
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Linear(in_dim, hidden_size)
        dims = [hidden_size] * n_layers + [embedding_size]
        self.layers = nn.ModuleList(RelationalMaxPoolConv(dims[l], dims[l + 1], n_relations) for l in range(n_layers))

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def forward(self, features: torch.Tensor, blocks: list[Block]) -> torch.Tensor:
        """Unit-norm embeddings of ``blocks[-1].dst``; ``features`` holds every item's text vector."""
        h = self.dropout(self.act(self.project(features[blocks[0].src])))
        for l, (layer, block) in enumerate(zip(self.layers, blocks)):
            h = layer(h, h[block.dst_in_src], block)
            # no activation on the output layer: a ReLU there would confine all vectors to one orthant
            if l + 1 < self.n_layers:
                h = self.dropout(self.act(h))
        return F.normalize(h, dim=-1)


def build_encoder(args: dict) -> HGNNEncoder:
    """The encoder described by ``args`` (the ``encoder_args`` an artifact keeps)."""
    return HGNNEncoder(**args)


def embed_without_edges(encoder: HGNNEncoder, features: torch.Tensor) -> torch.Tensor:
    """Embeddings of items that have no edges, from their text alone (the inductive case)."""
    nodes = torch.arange(len(features), device=features.device)
    no_edges = Block(nodes, nodes, torch.zeros(2, 0, dtype=torch.long, device=features.device), nodes.new_zeros(0), nodes)
    return encoder(features, [no_edges] * encoder.n_layers)
