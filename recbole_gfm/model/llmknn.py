"""LLM-KNN: the papers' text-only reference (2403.05185, Table 2): no training, no graph."""

from __future__ import annotations

import torch
from recbole.utils import ModelType

from recbole_gfm.data.dataset import MultiTypeDataset
from recbole_gfm.model.history_mean import HistoryMeanRecommender, unit_rows


class LLMKNN(HistoryMeanRecommender):
    """A user is the mean of the unit text embeddings of their history; items are scored by dot product."""

    type = ModelType.TRADITIONAL  # RecBole's TraditionalTrainer: one pass, nothing to fit
    dataset_class = MultiTypeDataset

    @staticmethod
    def inputs(config) -> set[str]:
        """The run prepares the item text vectors."""
        return {"text"}

    def __init__(self, config, dataset, text: torch.Tensor):
        super().__init__(config, dataset)
        self.register_buffer("text_features", unit_rows(text), persistent=False)
        self.fake_loss = torch.nn.Parameter(torch.zeros(1))  # RecBole's Trainer needs a parameter to step

    def calculate_loss(self, interaction):
        return torch.nn.Parameter(torch.zeros(1))

    def item_embeddings(self) -> torch.Tensor:
        return self.text_features
