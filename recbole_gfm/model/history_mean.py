"""Recommenders whose user is the mean embedding of the items in the user's train history."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType


class HistoryMeanRecommender(GeneralRecommender):
    """Scores an item by the dot product of its embedding with the user's mean history embedding.

    The papers' "HGNN" and "LLM-KNN" baselines (2403.05185, Table 2). A user with an empty train
    history (common under a temporal split: most of ml-100k's test users arrive after the cut)
    has no mean; they get the population's, the mean item vector over all train interactions,
    rather than a zero vector that ties every item. Subclasses implement
    :meth:`item_embeddings`; user and item vectors are computed once per evaluation (the cache is
    dropped whenever the model switches to training mode) and reused by every batch.
    """

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        history = dataset.inter_matrix(form="coo")
        row, col = torch.from_numpy(history.row).long(), torch.from_numpy(history.col).long()
        count = torch.bincount(row, minlength=self.n_users)
        degree = count.clamp(min=1).float()
        self.register_buffer("empty_history", count == 0, persistent=False)
        self.register_buffer(
            "item_share", torch.bincount(col, minlength=self.n_items).float() / max(len(col), 1), persistent=False
        )
        # row-normalised history: one sparse product gives every user's mean item vector
        self.register_buffer(
            "history",
            torch.sparse_coo_tensor(
                torch.stack([row, col]), 1.0 / degree[row], (self.n_users, self.n_items), check_invariants=True
            ).coalesce(),
            persistent=False,
        )
        self._vectors: tuple[torch.Tensor, torch.Tensor] | None = None

    def item_embeddings(self) -> torch.Tensor:
        """[n_items, d] item vectors (row 0 is padding)."""
        raise NotImplementedError

    def train(self, mode: bool = True):
        self._vectors = None
        return super().train(mode)

    def user_and_item_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._vectors is None or self.training:
            items = self.item_embeddings()
            users = torch.sparse.mm(self.history, items)
            users[self.empty_history] = self.item_share @ items
            self._vectors = (users, items)
        return self._vectors

    def predict(self, interaction):
        users, items = self.user_and_item_vectors()
        user, item = interaction[self.USER_ID], interaction[self.ITEM_ID]
        return (users[user] * items[item]).sum(-1)

    def full_sort_predict(self, interaction):
        users, items = self.user_and_item_vectors()
        return (users[interaction[self.USER_ID]] @ items.T).flatten()


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise rows, leaving all-zero rows (padding, empty texts) at zero."""
    return F.normalize(x, dim=-1)
