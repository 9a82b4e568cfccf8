"""The new-item lane: a share of each top-k list kept for items nobody has interacted with yet.

A two-tower model trained with the logQ correction learns popularity from content, so an item
without interactions scores near the catalogue's mean and almost never reaches a top-k list,
though under a global time cut a large share of next-period traffic goes to such items (41% of the
test positives on amazon-food-kitchen; ``experiments/foundation_sources.md``). Ranked among
themselves, the towers and the texts find them well: what is missing is the calibration between new
and known items. The lane supplies it: ``m`` of the ``k`` places go to the new items whose texts
are nearest the user's history,

    lane(u, i) = sum_{j in H(u)} s(i, j),   s(i, j) = cos(t_i, t_j) if j is among the ``knn`` items nearest i, else 0

(ties broken by the tower's score, never by item id: ids follow first appearance in the data and
would leak popularity), placed evenly among the ``k - m`` best known items. ``m`` is chosen on
validation. Which items are new is what the model knows at scoring time: the train period for
validation, train and validation for the test (an inductive model learns of the validation period
without retraining, :meth:`recbole_gfm.model.gfm.GFM.know`).
"""

from __future__ import annotations

import torch

from recbole_gfm.model.contentknn import top_k_similarity


class NewItemLane:
    """The lane of one model: which items are new, their text neighbours, and the merge into a ranking."""

    def __init__(self, text: torch.Tensor, known: torch.Tensor, knn: int, k: int):
        self.text, self.knn, self.k = text, knn, k
        self.set_known(known)

    def set_known(self, known: torch.Tensor) -> None:
        """``known``: [n_items] bool, the items with an interaction the model may use; the others are new."""
        self.new = ~known
        self.new[0] = False  # padding
        # transposed similarity, rows restricted to the new items: lane scores = history @ this
        similarity = top_k_similarity(self.text, self.knn)
        keep = self.new[similarity.indices()[0]]
        self.similarity_t = torch.sparse_coo_tensor(
            similarity.indices()[:, keep].flip(0), similarity.values()[keep], similarity.shape, check_invariants=True
        ).coalesce()

    def scores(self, history: torch.Tensor) -> torch.Tensor:
        """[B, n_items] lane scores of the new items from the users' [B, n_items] sparse history rows."""
        return torch.sparse.mm(history, self.similarity_t).to_dense()

    def merge(self, tower: torch.Tensor, lane: torch.Tensor, slots: int) -> torch.Tensor:
        """[B, n_items] ranking scores: the ``slots`` best new items (by lane, then tower score) at even places of
        the top ``k``, the known items in the tower's order everywhere else; higher is better.

        ``tower``: the model's scores, the items a user may not be recommended (the history) already -inf.
        """
        if slots <= 0:
            return tower
        batch, n = tower.shape
        new = self.new.to(tower.device)
        known_order = torch.argsort(tower.masked_fill(new, -torch.inf), dim=1, descending=True, stable=True)
        by_tower = torch.argsort(tower, dim=1, descending=True, stable=True)  # lane ties: the tower decides
        lane_by_tower = torch.gather(lane.masked_fill(~new, -torch.inf), 1, by_tower)
        best_new = torch.gather(by_tower, 1, torch.argsort(lane_by_tower, dim=1, descending=True, stable=True)[:, :slots])
        places = (torch.round(torch.arange(1, slots + 1, device=tower.device) * self.k / slots) - 1).long()  # even, 0-based
        free = torch.ones(n + slots, dtype=torch.bool, device=tower.device)
        free[places] = False  # the known items take the places the new ones leave, in the tower's order
        position = torch.empty((batch, n), device=tower.device)
        position.scatter_(1, known_order, torch.nonzero(free).flatten()[:n].float().expand(batch, n))
        position.scatter_(1, best_new, places.float().expand(batch, slots))
        others = new.expand(batch, n).clone()
        others.scatter_(1, best_new, False)
        position[others] = torch.inf  # the other new items: after everything
        return -position
