"""DropoutNet: a two-tower model trained with its preference input dropped, so that content carries cold items.

Volkovs, Yu and Poutanen, "DropoutNet: Addressing Cold Start in Recommender Systems" (NeurIPS 2017):

    f_U([U_u ; Phi_u]),  f_V([V_v ; Phi_v]),  score = f_U . f_V

where ``U_u``, ``V_v`` are preference (collaborative) vectors and ``Phi`` content. During training
each input's preference part is set to zero with probability ``dropout_ratio`` (the paper's input
dropout), so the towers learn to score from content alone; an item (user) never seen in training
is scored with its preference part zero, as in the paper's cold-start inference.

Here, as in the cold-start literature that runs DropoutNet without a pretrained factor model
(CLCRec, ALDI), the preference vectors are ID embeddings learned with the towers, and training
uses RecBole's pairwise BPR loss on sampled negatives instead of the paper's regression onto a
pretrained model's scores (a RecBole model never trains another). Content: the item's text
vector (``Phi_v``) and the mean text vector of the user's train history (``Phi_u``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.loss import BPRLoss
from recbole.utils import InputType
from torch import nn

from recbole_gfm.config import ConfigError
from recbole_gfm.data.dataset import MultiTypeDataset
from recbole_gfm.model.gfm import mlp


class DropoutNet(GeneralRecommender):
    """Two towers over [ID embedding ; text], the ID part dropped in training and absent for unseen items and users."""

    input_type = InputType.PAIRWISE
    dataset_class = MultiTypeDataset

    @staticmethod
    def inputs(config) -> set[str]:
        """The run prepares the item text vectors."""
        return {"text"}

    def __init__(self, config, dataset, text: torch.Tensor):
        super().__init__(config, dataset)
        self.dropout_ratio = config["dropout_ratio"]
        if not 0.0 <= self.dropout_ratio <= 1.0:
            raise ConfigError(f"dropout_ratio must be in [0, 1], got {self.dropout_ratio!r}.")
        content = F.normalize(text, dim=-1)
        content[0] = 0
        self.register_buffer("item_content", content, persistent=False)
        history = dataset.inter_matrix(form="coo")
        rows, cols = torch.from_numpy(history.row).long(), torch.from_numpy(history.col).long()
        degree = torch.bincount(rows, minlength=self.n_users).clamp(min=1).float()
        mean = torch.sparse_coo_tensor(torch.stack([rows, cols]), 1.0 / degree[rows], (self.n_users, self.n_items), check_invariants=True)
        self.register_buffer("user_content", torch.sparse.mm(mean.coalesce(), content), persistent=False)
        # ids seen in training have a preference vector; the others are scored from content alone
        self.register_buffer("known_item", torch.bincount(cols, minlength=self.n_items) > 0, persistent=False)
        self.register_buffer("known_user", torch.bincount(rows, minlength=self.n_users) > 0, persistent=False)
        size = config["embedding_size"]
        self.user_preference = nn.Embedding(self.n_users, size)
        self.item_preference = nn.Embedding(self.n_items, size)
        hidden = list(config["mlp_hidden_sizes"])
        self.user_tower = mlp(size + content.shape[1], hidden, size, config["dropout_prob"])
        self.item_tower = mlp(size + content.shape[1], hidden, size, config["dropout_prob"])
        self.loss = BPRLoss()
        self._item_vectors: torch.Tensor | None = None  # every item's vector, kept through an evaluation

    def train(self, mode: bool = True):
        self._item_vectors = None
        return super().train(mode)

    def _keep(self, known: torch.Tensor) -> torch.Tensor:
        """1 where the preference part is used: a known id, not dropped (training draws the dropout)."""
        keep = known.float()
        if self.training and self.dropout_ratio > 0:
            keep = keep * (torch.rand(len(known), device=known.device) >= self.dropout_ratio).float()
        return keep.unsqueeze(1)

    def users(self, users: torch.Tensor) -> torch.Tensor:
        preference = self.user_preference(users) * self._keep(self.known_user[users])
        return self.user_tower(torch.cat([preference, self.user_content[users]], dim=1))

    def items(self, items: torch.Tensor) -> torch.Tensor:
        preference = self.item_preference(items) * self._keep(self.known_item[items])
        return self.item_tower(torch.cat([preference, self.item_content[items]], dim=1))

    def calculate_loss(self, interaction):
        u = self.users(interaction[self.USER_ID])
        positive, negative = self.items(interaction[self.ITEM_ID]), self.items(interaction[self.NEG_ITEM_ID])
        return self.loss((u * positive).sum(-1), (u * negative).sum(-1))

    def predict(self, interaction):
        return (self.users(interaction[self.USER_ID]) * self.items(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction):
        if self._item_vectors is None or self.training:
            self._item_vectors = self.items(torch.arange(self.n_items, device=self.item_content.device))
        return (self.users(interaction[self.USER_ID]) @ self._item_vectors.T).flatten()
