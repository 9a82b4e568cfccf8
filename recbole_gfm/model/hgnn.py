"""HGNN: the foundation encoder of the papers as a RecBole model (2403.07478 section 3; 2403.05185 section 3.2).

The network is :class:`recbole_gfm.encoders.HGNNEncoder`. Trained self-supervised as link
prediction on :class:`recbole_gfm.data.link_loader.LinkLoader` batches (the run gives it that loader
as its train data: :attr:`HGNN.train_loader`): max(0, z_a.z_n - z_a.z_p + margin), positives = graph
edges, negatives = random catalogue items, the batch's own target edges hidden from message
passing. An item without edges is embedded from its text alone. As a recommender (validation,
the papers' "HGNN" row), a user is the mean embedding of their history.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recbole_gfm.config import ConfigError
from recbole_gfm.data.dataset import MultiTypeDataset
from recbole_gfm.data.graph import CoInteractionGraph
from recbole_gfm.data.link_loader import LinkBatch, LinkLoader, sample_blocks
from recbole_gfm.encoders import HGNNEncoder
from recbole_gfm.foundation.trainer import HGNNTrainer
from recbole_gfm.model.history_mean import HistoryMeanRecommender


INFERENCE_CHUNK = 16384  # items embedded per forward pass in item_embeddings


class HGNN(HistoryMeanRecommender):
    """The foundation encoder as a RecBole model; as a recommender, a user is their history's mean."""

    dataset_class = MultiTypeDataset
    train_loader = LinkLoader  # the run trains it on link-prediction batches, not user-item pairs
    trainer = HGNNTrainer  # RecBole's Trainer, then the foundation artifact written

    @staticmethod
    def inputs(config) -> set[str]:
        """The run prepares the item text vectors and the co-interaction graph of the train split."""
        return {"text", "graph"}

    def __init__(self, config, dataset, text: torch.Tensor, graph: CoInteractionGraph):
        super().__init__(config, dataset)
        self.graph = graph
        self.register_buffer("text_features", text, persistent=False)
        self.csrs = [self.graph.relation_csr(r) for r in range(self.graph.num_relations)]  # CPU: sampling runs there
        self.encoder_args = {
            "in_dim": self.text_features.shape[1],
            "hidden_size": config["hidden_size"],
            "embedding_size": config["embedding_size"],
            "n_layers": len(config["fanouts"]),
            "n_relations": max(1, len(self.graph.relations)),
            "activation": config["activation"],
            "dropout": config["dropout"],
            "aggregation": config["aggregation"],
        }
        self.encoder = HGNNEncoder(**self.encoder_args)
        self.inference_fanouts = list(config["inference_fanouts"] or config["fanouts"])
        self.link_loss = config["link_loss"]
        if self.link_loss not in ("margin", "infonce"):
            raise ConfigError(f"link_loss '{self.link_loss}' unknown: choose margin (the papers') or infonce.")
        self.margin, self.temperature, self.logq = config["margin"], config["temperature"], config["logq_correction"]
        # log of each item's share of positive endpoints (in-batch candidates) and of a uniform draw
        degree = torch.bincount(self.graph.edge_index[0], minlength=self.n_items).double().clamp(min=1)
        self.register_buffer("log_positive_share", (degree / degree.sum()).log().float(), persistent=False)
        self.log_uniform_share = -float(torch.log(torch.tensor(self.n_items - 1.0)))

    def calculate_loss(self, batch: LinkBatch):
        z = self.encoder(self.text_features, batch.blocks)  # embeddings of batch.nodes
        # index_select: its backward (index_add) is cheaper than advanced indexing's index_put
        z_a, z_p, z_n = (
            z.index_select(0, torch.searchsorted(batch.nodes, ids.flatten())) for ids in (batch.anchor, batch.positive, batch.negative)
        )
        z_n = z_n.view(*batch.negative.shape, -1)  # [B, K, d]
        if self.link_loss == "margin":
            positive_score = (z_a * z_p).sum(-1, keepdim=True)  # [B, 1]
            negative_score = torch.einsum("bd,bkd->bk", z_a, z_n)  # [B, K]
            return F.relu(negative_score - positive_score + self.margin).mean()
        return self.infonce(batch, z_a, z_p, z_n)

    def infonce(self, batch: LinkBatch, z_a, z_p, z_n) -> torch.Tensor:
        """Softmax over [the batch's positives ; the anchor's random negatives], the own positive the label."""
        in_batch = z_a @ z_p.T / self.temperature  # [B, B]
        negative = torch.einsum("bd,bkd->bk", z_a, z_n) / self.temperature  # [B, K]
        if self.logq:
            in_batch = in_batch - self.log_positive_share[batch.positive].unsqueeze(0)
            negative = negative - self.log_uniform_share
        rows = torch.arange(len(batch.anchor), device=in_batch.device)
        # a candidate that is the row's own positive item (a duplicate edge end, or a negative that
        # happens to be it) is no negative: masked
        same = batch.positive.unsqueeze(0) == batch.positive.unsqueeze(1)
        same[rows, rows] = False
        in_batch = in_batch.masked_fill(same | (batch.positive.unsqueeze(0) == batch.anchor.unsqueeze(1)), -torch.inf)
        negative = negative.masked_fill(batch.negative == batch.positive.unsqueeze(1), -torch.inf)
        return F.cross_entropy(torch.cat([in_batch, negative], dim=1), rows)

    @torch.no_grad()
    def item_embeddings(self) -> torch.Tensor:
        """Every item's embedding from neighbourhoods sampled as in training, with a fixed seed.

        Max-pooling over a full neighbourhood would shift the distribution the layers were
        trained on (a max over more values is larger); a fan-out of 0 takes every neighbour.
        Items go through in chunks of :data:`INFERENCE_CHUNK`, so memory is bounded by a chunk's
        neighbourhood, not the catalogue's.
        """
        generator = torch.Generator().manual_seed(0)
        parts = []
        for items in torch.arange(self.n_items, device="cpu").split(INFERENCE_CHUNK):  # sampling runs where the graph lives
            blocks = sample_blocks(self.csrs, items, self.inference_fanouts, generator)
            parts.append(self.encoder(self.text_features, [block.to(self.device) for block in blocks]))
        z = torch.cat(parts)
        z[0] = 0  # padding item
        return z
