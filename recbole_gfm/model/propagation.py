"""Propagation: the parameter-free foundation, item texts smoothed over the co-interaction graph.

The strong baseline for "what does learning add" (SGC, Wu et al. 2019; SIGN, Rossi et al. 2020):
K hops of mean aggregation over every relation of the co-interaction graph, self included,

    Z = normalize((D~^-1 (A + I))^K X)

computed in seconds, with nothing to train (:class:`recbole_gfm.encoders.PropagationEncoder`). An
item without edges keeps its own text, so new items need no retraining either. As a recommender
(validation, a reference row), a user is the mean of their history's vectors.
"""

from __future__ import annotations

import torch
from recbole.utils import ModelType

from recbole_gfm.data.dataset import MultiTypeDataset
from recbole_gfm.data.graph import CoInteractionGraph
from recbole_gfm.data.link_loader import sample_blocks
from recbole_gfm.encoders import PropagationEncoder
from recbole_gfm.foundation.trainer import PropagationTrainer
from recbole_gfm.model.history_mean import HistoryMeanRecommender


class Propagation(HistoryMeanRecommender):
    """Item vectors: the texts averaged over ``propagation_hops`` hops of the co-interaction graph."""

    type = ModelType.TRADITIONAL  # one pass, nothing to fit; then the artifact is written
    dataset_class = MultiTypeDataset
    trainer = PropagationTrainer

    @staticmethod
    def inputs(config) -> set[str]:
        """The run prepares the item text vectors and the co-interaction graph of the train split."""
        return {"text", "graph"}

    def __init__(self, config, dataset, text: torch.Tensor, graph: CoInteractionGraph):
        super().__init__(config, dataset)
        self.csrs = [graph.relation_csr(r) for r in range(graph.num_relations)]
        self.register_buffer("text_features", text, persistent=False)
        self.encoder_args = {"kind": PropagationEncoder.kind, "n_layers": config["propagation_hops"]}
        self.encoder = PropagationEncoder(config["propagation_hops"])
        self.fake_loss = torch.nn.Parameter(torch.zeros(1))  # RecBole's Trainer needs a parameter to step

    def calculate_loss(self, interaction):
        return torch.nn.Parameter(torch.zeros(1))

    @torch.no_grad()
    def item_embeddings(self) -> torch.Tensor:
        """Every item's vector over its whole neighbourhood (fan-out 0: every neighbour, every hop)."""
        items = torch.arange(self.n_items, device="cpu")  # sampling runs where the graph lives
        blocks = sample_blocks(self.csrs, items, [0] * self.encoder.n_layers)
        z = self.encoder(self.text_features, [block.to(self.device) for block in blocks])
        z[0] = 0  # padding item
        return z
