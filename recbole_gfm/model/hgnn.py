"""HGNN: the foundation encoder of the papers, a heterogeneous GraphSAGE over the co-interaction graph.

Damianou et al. 2403.07478 (section 3) / 2T-HGNN 2403.05185 (section 3.2). Per layer and relation r,

    agg_r(i) = max_{j in sample_r(i)} sigma(W_r h_j + b_r)           (GraphSAGE max-pool aggregator)
    h_i'     = sigma(W_self h_i + sum_r W'_r agg_r(i))                 (sum over relations)

with the item's text embedding (projected to ``hidden_size``) as h^0 and an L2-normalised output.
Trained self-supervised as link prediction: max(0, z_a.z_n - z_a.z_p + margin), positives = graph
edges, negatives = random catalogue items. An item without edges is embedded from its text alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recbole_gfm.data.dataset import MultiTypeDataset
from recbole_gfm.foundation import FoundationInputs
from recbole_gfm.model.history_mean import HistoryMeanRecommender
from recbole_gfm.model.sampler import Block, EdgeBatchLoader, sample_blocks

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


class HGNN(HistoryMeanRecommender):
    """The foundation encoder as a RecBole model; as a recommender, a user is their history's mean."""

    dataset_class = MultiTypeDataset

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        inputs = FoundationInputs.build(config, dataset)
        self.graph = inputs.graph
        self.register_buffer("text_features", inputs.text_features, persistent=False)
        self.csrs = [self.graph.relation_csr(r) for r in range(self.graph.num_relations)]
        self.encoder_args = {
            "in_dim": self.text_features.shape[1],
            "hidden_size": config["hidden_size"],
            "embedding_size": config["embedding_size"],
            "n_layers": len(config["fanouts"]),
            "n_relations": max(1, len(self.graph.relations)),
            "activation": config["activation"],
            "dropout": config["dropout"],
        }
        self.encoder = HGNNEncoder(**self.encoder_args)
        self.fanouts = list(config["fanouts"])
        self.inference_fanouts = list(config["inference_fanouts"] or self.fanouts)
        self.margin = config["margin"]
        self.edge_loader = EdgeBatchLoader(
            self.graph.edge_index,
            self.graph.edge_type,
            self.n_items,
            batch_size=config["train_batch_size"],
            balanced=config["balanced_sampling"],
            seed=config["seed"],
            num_negatives=config["num_negatives"],
        )

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        """Embeddings of ``items`` (sorted unique ids) from freshly sampled neighbourhoods."""
        return self.encoder(self.text_features, sample_blocks(self.csrs, items, self.fanouts))

    def calculate_loss(self, interaction):
        anchor, positive, negative = interaction["anchor"], interaction["positive"], interaction["negative"]
        nodes = torch.unique(torch.cat([anchor, positive, negative.flatten()]))
        z = self.embed(nodes)
        # index_select: its backward (index_add) is cheaper than advanced indexing's index_put
        z_a, z_p, z_n = (z.index_select(0, torch.searchsorted(nodes, ids.flatten())) for ids in (anchor, positive, negative))
        z_n = z_n.view(*negative.shape, -1)  # [B, K, d]
        positive_score = (z_a * z_p).sum(-1, keepdim=True)  # [B, 1]
        negative_score = torch.einsum("bd,bkd->bk", z_a, z_n)  # [B, K]
        return F.relu(negative_score - positive_score + self.margin).mean()

    @torch.no_grad()
    def item_embeddings(self) -> torch.Tensor:
        """Every item's embedding from neighbourhoods sampled as in training, with a fixed seed.

        Max-pooling over a full neighbourhood would shift the distribution the layers were
        trained on (a max over more values is larger); a fan-out of 0 takes every neighbour.
        """
        blocks = sample_blocks(
            self.csrs, torch.arange(self.n_items), self.inference_fanouts, torch.Generator().manual_seed(0)
        )
        z = self.encoder(self.text_features, blocks)
        z[0] = 0  # padding item
        return z
