"""ContentKNN: item-KNN with the similarity of the items' texts, the content-based reference for unseen items.

RecBole's ItemKNN scores an item by its co-occurrence neighbours in the user's history; here the
neighbours come from the text vectors instead (cosine of the sentence embeddings), so an item no
one has interacted with has neighbours too:

    score(u, i) = sum_{j in H(u)} s(i, j),   s(i, j) = cos(t_i, t_j) if j is among the k items most similar to i, else 0

(item-based collaborative filtering, Sarwar et al. 2001, with content similarity). Nothing to
train; the top-k similarity is computed once, in blocks, so memory stays O(items x k).
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType, ModelType

from recbole_gfm.data.dataset import MultiTypeDataset
from recbole_gfm.model.history_mean import unit_rows

BLOCK = 4096  # items whose neighbours are found per matrix product


def top_k_similarity(text: torch.Tensor, k: int) -> torch.Tensor:
    """Sparse [n, n] matrix of each item's ``k`` most similar items by text cosine (itself and padding excluded)."""
    unit = unit_rows(text)
    n = len(unit)
    k = min(k, n - 2)
    rows, cols, values = [], [], []
    for start in range(1, n, BLOCK):
        items = torch.arange(start, min(start + BLOCK, n))
        sim = unit[items] @ unit.T
        sim[:, 0] = -torch.inf  # padding
        sim[torch.arange(len(items)), items] = -torch.inf  # itself
        best = torch.topk(sim, k, dim=1)
        rows.append(items.repeat_interleave(k))
        cols.append(best.indices.flatten())
        values.append(best.values.flatten().clamp(min=0))  # an unrelated text is no evidence against an item
    indices = torch.stack([torch.cat(rows), torch.cat(cols)])
    return torch.sparse_coo_tensor(indices, torch.cat(values), (n, n), check_invariants=True).coalesce()


class ContentKNN(GeneralRecommender):
    """Item-KNN whose item neighbours are the most similar texts (``k`` per item)."""

    input_type = InputType.POINTWISE
    type = ModelType.TRADITIONAL  # RecBole's TraditionalTrainer: one pass, nothing to fit
    dataset_class = MultiTypeDataset

    @staticmethod
    def inputs(config) -> set[str]:
        """The run prepares the item text vectors."""
        return {"text"}

    def __init__(self, config, dataset, text: torch.Tensor):
        super().__init__(config, dataset)
        history = dataset.inter_matrix(form="csr").astype("float32")
        history.data[:] = 1.0
        coo = history.tocoo()
        self.register_buffer(
            "history",
            torch.sparse_coo_tensor(torch.from_numpy(np.stack([coo.row, coo.col])).long(), torch.from_numpy(coo.data),
                                    history.shape, check_invariants=True).coalesce(),
            persistent=False,
        )  # fmt: skip
        # scores = history @ similarity^T: an item's score sums its neighbours' presence in the history
        self.register_buffer("similarity_t", top_k_similarity(text, config["k"]).t().coalesce(), persistent=False)
        self.fake_loss = torch.nn.Parameter(torch.zeros(1))  # RecBole's Trainer needs a parameter to step

    def calculate_loss(self, interaction):
        return torch.nn.Parameter(torch.zeros(1))

    def _scores(self, users: torch.Tensor) -> torch.Tensor:
        """[B, n_items]: the users' history rows times the transposed similarity."""
        return torch.sparse.mm(torch.index_select(self.history, 0, users), self.similarity_t).to_dense()

    def predict(self, interaction):
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        return self._scores(users)[torch.arange(len(users)), items]

    def full_sort_predict(self, interaction):
        return self._scores(interaction[self.USER_ID]).flatten()
