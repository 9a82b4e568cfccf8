"""GFM: the two-tower adaptation layer on top of the foundation (2403.07478 section 4; 2T-HGNN 2403.05185).

Item tower:  MLP([foundation_i ; text_i ; type_i (; id_i)])                      -> unit vector
User tower:  MLP([mean foundation/text vector of the user's history, per item type ;
                  log(1 + count per type) ; user features])                      -> unit vector
Score:       u . v / temperature. Loss: softmax over in-batch items with the logQ correction
             (logits minus log item frequency: Yi et al., RecSys 2019), duplicates of the
             positive item masked. The target never appears in its own user history: its
             content vector and count are subtracted before the user tower sees the history.
Cold start:  with probability ``empty_history_prob`` a training example's history is hidden
             whole, so the user tower also learns the users who arrive with none (most of a
             temporal split's new users); with the logQ correction their scores approach log
             item popularity, given their user features. With probability ``cold_item_prob`` a
             training item's foundation vector is replaced by the one the encoder gives an item
             without edges (its text alone), so the item tower also learns the vectors new items
             get, and a new item is not penalised for being new.

Memory: the train history is kept as a CSR over users (an item id per interaction), and each
batch's per-type sums and counts are built from its users' rows (:meth:`GFM.history`); serving
builds them the same way from the history it is given. O(interactions + items x d). The content
vectors are fixed, so when every user's per-type sums fit in ``history_cache_mb`` they are built
once (the same sums, to the bit) and a batch gathers its users' rows: a user's history is then
summed once, not once per training example of theirs (202 history rows per interaction on
ml-100k). A users x types x d table that does not fit (10^6 users x 10 types x 512 floats would be
20 GB) is never built.

``unified: False`` trains one pair of towers per item type (the papers' per-type baseline): a
pair sees only interactions and history of its type, and an item is scored by its type's pair.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType
from torch import nn

from recbole_gfm.config import ConfigError
from recbole_gfm.data.dataset import MultiTypeDataset
from recbole_gfm.foundation.store import Foundation
from recbole_gfm.model.new_item_lane import NewItemLane


def mlp(in_dim: int, hidden: list[int], out_dim: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class Towers(nn.Module):
    """One user tower and one item tower."""

    def __init__(self, user_dim: int, item_dim: int, hidden: list[int], out_dim: int, dropout: float):
        super().__init__()
        self.user = mlp(user_dim, hidden, out_dim, dropout)
        self.item = mlp(item_dim, hidden, out_dim, dropout)


class GFM(GeneralRecommender):
    """Graph Foundation Model adapter: unified two-tower model over the foundation's item embeddings.

    Built from what the run prepared (:mod:`recbole_gfm.run.stages`): ``text``, the items' text
    vectors [n_items, d_text], and ``foundation``, the foundation artifact read once
    (:class:`recbole_gfm.foundation.store.Foundation`); the constructor reads no file.
    """

    input_type = InputType.POINTWISE
    dataset_class = MultiTypeDataset

    @staticmethod
    def inputs(config) -> set[str]:
        """What the run prepares for it: the text vectors, and the foundation unless ``use_foundation`` is off."""
        return {"text", "foundation"} if config["use_foundation"] else {"text"}

    def __init__(self, config, dataset, text: torch.Tensor, foundation: Foundation | None = None):
        super().__init__(config, dataset)
        self.use_foundation, self.use_text = config["use_foundation"], config["use_text"]
        if not (self.use_foundation or self.use_text):
            raise ConfigError("GFM needs item content: set use_foundation or use_text (or both) to True.")
        self.unified = config["unified"]
        self.temperature = config["temperature"]
        self.logq = config["logq_correction"]
        self.empty_history_prob = config["empty_history_prob"]
        if not 0.0 <= self.empty_history_prob <= 1.0:
            raise ConfigError(f"empty_history_prob must be in [0, 1], got {self.empty_history_prob!r}.")

        content = []  # fixed per-item content vectors: the foundation's and the text encoder's
        self.foundation = foundation if self.use_foundation else None
        if self.use_foundation:
            if foundation is None:
                raise ConfigError(
                    "GFM with use_foundation reads a foundation, and none was given: run it through run_recbole_gfm.py / "
                    "recbole_gfm.quick_start.run (they prepare it first), or build it with "
                    "recbole_gfm.run.stages.prepare_foundation and pass it as foundation=."
                )
            embeddings = foundation.item_embeddings(dataset).float()
            content.append(embeddings)
        if self.use_text:
            content.append(F.normalize(text, dim=-1))
        content = torch.cat(content, dim=1)
        content[0] = 0
        self.register_buffer("content", content, persistent=False)
        self.cold_item_prob = config["cold_item_prob"] if self.use_foundation else 0.0
        if not 0.0 <= self.cold_item_prob <= 1.0:
            raise ConfigError(f"cold_item_prob must be in [0, 1], got {self.cold_item_prob!r}.")
        if self.cold_item_prob > 0:  # every item's foundation vector as if it had no edges
            cold = content.clone()
            cold[:, : embeddings.shape[1]] = foundation.embed_without_edges(text)
            cold[0] = 0
            self.register_buffer("cold_content", cold, persistent=False)

        item_type = dataset.item_type_ids().clone()
        self.n_types = len(dataset.item_type_names())
        item_type[0] = 0  # padding never scored; any valid type index keeps lookups simple
        self.register_buffer("item_type", item_type, persistent=False)

        # the train history as a CSR over users (interactions in the split's order): each batch's
        # per-type sums are built from its users' rows (:meth:`history`), never a users x types x d table
        inter = dataset.inter_feat
        users, items = inter[self.USER_ID], inter[self.ITEM_ID]
        order = torch.argsort(users, stable=True)
        self.register_buffer("history_items", items[order].clone(), persistent=False)
        indptr = torch.zeros(self.n_users + 1, dtype=torch.long)
        indptr[1:] = torch.bincount(users, minlength=self.n_users).cumsum(0)
        self.register_buffer("history_indptr", indptr, persistent=False)
        self.history_cache_mb = config["history_cache_mb"] or 0
        if self.history_cache_mb < 0:
            raise ConfigError(f"history_cache_mb must be 0 (no cache) or more, got {self.history_cache_mb!r}.")
        self._history_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        frequency = torch.bincount(items, minlength=self.n_items).float() + 1.0
        self.register_buffer("log_item_prob", (frequency / frequency.sum()).log(), persistent=False)

        self.user_fields = [
            f for f in (dataset.user_feat.columns if dataset.user_feat is not None else []) if f != self.USER_ID
            and dataset.field2type[f].name == "TOKEN"
        ]
        self.user_embeddings = nn.ModuleDict(
            {f: nn.Embedding(dataset.num(f), config["feature_embedding_size"]) for f in self.user_fields}
        )
        if self.user_fields:
            self.register_buffer(
                "user_feature_ids", torch.stack([dataset.user_feat[f] for f in self.user_fields], dim=1), persistent=False
            )
        self.type_embedding = nn.Embedding(self.n_types, config["feature_embedding_size"])
        self.id_embedding = nn.Embedding(self.n_items, config["feature_embedding_size"]) if config["use_item_id"] else None

        history_types = self.n_types if self.unified else 1
        user_dim = history_types * (content.shape[1] + 1) + len(self.user_fields) * config["feature_embedding_size"]
        item_dim = content.shape[1] + config["feature_embedding_size"] * (2 if self.id_embedding is not None else 1)
        n_towers = 1 if self.unified else self.n_types
        self.towers = nn.ModuleList(
            Towers(user_dim, item_dim, list(config["mlp_hidden_sizes"]), config["embedding_size"], config["dropout_prob"])
            for _ in range(n_towers)
        )
        self._item_vectors: torch.Tensor | None = None
        # the new-item lane (recbole_gfm.model.new_item_lane): slots of each top-k list kept for items without
        # interactions; "auto": chosen on validation after training (calibrate)
        self.new_item_slots = config["new_item_slots"]
        if not (self.new_item_slots == "auto" or isinstance(self.new_item_slots, int) and 0 <= self.new_item_slots <= max(config["topk"])):
            raise ConfigError(f"new_item_slots must be auto or an integer in 0 .. {max(config['topk'])} (the top k), got {self.new_item_slots!r}.")
        self.slots = 0 if self.new_item_slots == "auto" else self.new_item_slots
        self.lane = None
        if self.new_item_slots != 0:
            known = torch.bincount(items, minlength=self.n_items) > 0
            self.lane = NewItemLane(F.normalize(text, dim=-1), known, config["new_item_knn"], max(config["topk"]))

    # --- towers -------------------------------------------------------------------------------
    def user_input(self, users: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor, tower: int) -> torch.Tensor:
        """Tower input from per-type history sums [B, T, d] and counts [B, T]."""
        if not self.unified:
            sums, counts = sums[:, tower : tower + 1], counts[:, tower : tower + 1]
        means = sums / counts.clamp(min=1).unsqueeze(-1)
        parts = [means.flatten(1), torch.log1p(counts)]
        if self.user_fields:
            ids = self.user_feature_ids[users]
            parts += [self.user_embeddings[f](ids[:, k]) for k, f in enumerate(self.user_fields)]
        return torch.cat(parts, dim=1)

    def item_input(self, items: torch.Tensor, cold: torch.Tensor | None = None) -> torch.Tensor:
        """Item tower input; rows where ``cold`` is True read the item's no-edge foundation vector."""
        content = self.content[items]
        if cold is not None:
            content = torch.where(cold.unsqueeze(1), self.cold_content[items], content)
        parts = [content, self.type_embedding(self.item_type[items])]
        if self.id_embedding is not None:
            parts.append(self.id_embedding(items))
        return torch.cat(parts, dim=1)

    def encode_users(self, users, sums, counts, tower: int) -> torch.Tensor:
        return F.normalize(self.towers[tower].user(self.user_input(users, sums, counts, tower)), dim=-1)

    def encode_items(self, items: torch.Tensor, tower: int, cold: torch.Tensor | None = None) -> torch.Tensor:
        return F.normalize(self.towers[tower].item(self.item_input(items, cold)), dim=-1)

    def history(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-type content sums [B, T, d] and counts [B, T] of the train histories of ``users``.

        ``sums[b, t] = sum_{i in H(u_b), type(i) = t} content_i`` and ``counts[b, t] = |{i in H(u_b):
        type(i) = t}|`` over the user's train interactions (a repeated interaction counts each time),
        from the rows of ``users`` in the history CSR: memory O(B x T x d + the batch's interactions),
        or gathered from every user's sums built once, when they fit in ``history_cache_mb``.
        """
        if self._history_cache is not None and self._history_cache[0].device != self.history_indptr.device:
            self._history_cache = None  # the model moved
        if self._history_cache is None and self.n_users * self.n_types * (self.content.shape[1] + 1) * 4 <= self.history_cache_mb * 2**20:
            self._history_cache = self._history_sums(torch.arange(self.n_users, device=self.history_indptr.device))
        if self._history_cache is not None:
            sums, counts = self._history_cache
            return sums[users], counts[users]  # copies: the caller may change them in place
        return self._history_sums(users)

    def _history_sums(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`history` from the history CSR rows of ``users``."""
        start = self.history_indptr[users]
        degree = self.history_indptr[users + 1] - start
        row = torch.repeat_interleave(torch.arange(len(users), device=users.device), degree)
        offset = torch.arange(len(row), device=users.device) - torch.repeat_interleave(degree.cumsum(0) - degree, degree)
        items = self.history_items[start[row] + offset]
        return self._type_sums(row * self.n_types + self.item_type[items], items, len(users))

    def _type_sums(self, cell: torch.Tensor, items: torch.Tensor, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Content sums [n_rows, T, d] and counts [n_rows, T] of ``items``, each added into its ``cell`` (row x T + type).

        One ``embedding_bag`` sum per cell, the items of a cell in the order given (a stable sort by
        cell): no [items, d] copy of their content vectors, and, with deterministic algorithms (the
        run's ``reproducibility``), the same bits as adding them one by one.
        """
        counts = torch.bincount(cell, minlength=n_rows * self.n_types)
        order = torch.argsort(cell, stable=True)
        sums = F.embedding_bag(items[order], self.content, counts.cumsum(0) - counts, mode="sum")
        return sums.view(n_rows, self.n_types, -1), counts.view(n_rows, self.n_types).float()

    def user_vectors(self, users: torch.Tensor, sums=None, counts=None) -> torch.Tensor:
        """[B, n_towers, d] user vectors from the train history (or the given history sums/counts)."""
        if sums is None:
            sums, counts = self.history(users)
        return torch.stack([self.encode_users(users, sums, counts, t) for t in range(len(self.towers))], dim=1)

    def item_vectors(self) -> torch.Tensor:
        """[n_items, d] item vectors, each from its type's towers; computed once per evaluation."""
        if self._item_vectors is None or self.training:
            items = torch.arange(self.n_items, device=self.content.device)
            if self.unified:
                vectors = self.encode_items(items, 0)
            else:
                vectors = torch.stack([self.encode_items(items, t) for t in range(len(self.towers))], dim=1)
                vectors = vectors[items, self.item_type]
            self._item_vectors = vectors
        return self._item_vectors

    def train(self, mode: bool = True):
        self._item_vectors = None
        return super().train(mode)

    # --- serving: histories given at call time, items added after training ----------------------
    def history_features(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-type content sums [1, T, d] and counts [1, T] of a history of internal item ids."""
        return self._type_sums(self.item_type[items], items, 1)

    @torch.no_grad()
    def score_history(self, items: torch.Tensor) -> torch.Tensor:
        """Scores of every item for a user known only by ``items`` (no retraining, no user features)."""
        sums, counts = self.history_features(items)
        u = self.user_vectors(torch.zeros(1, dtype=torch.long, device=items.device), sums, counts)[0]
        v = self.item_vectors()
        return (u @ v.T)[0] if self.unified else (u @ v.T).gather(0, self.item_type.unsqueeze(0))[0]

    def add_items(self, content: torch.Tensor, item_type: torch.Tensor) -> torch.Tensor:
        """Append items by their content vectors and type ids; returns their new internal ids."""
        if self.id_embedding is not None:
            raise ValueError("GFM with use_item_id has no vector for an item it was not trained on.")
        start = self.content.shape[0]
        self.content = torch.cat([self.content, content.to(self.content)])
        self.item_type = torch.cat([self.item_type, item_type.to(self.item_type)])
        self.n_items = self.content.shape[0]
        self._item_vectors = None
        return torch.arange(start, self.n_items)

    # --- RecBole API --------------------------------------------------------------------------
    def calculate_loss(self, interaction):
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        types = self.item_type[items]
        # leave-target-out history: the positive item is removed from its own user's history
        sums, counts = self.history(users)
        rows = torch.arange(len(users), device=users.device)
        sums[rows, types] -= self.content[items]
        counts[rows, types] = (counts[rows, types] - 1).clamp(min=0)
        if self.empty_history_prob > 0:  # cold-start examples: the whole history hidden
            keep = (torch.rand(len(users), device=users.device) >= self.empty_history_prob).float()
            sums, counts = sums * keep.view(-1, 1, 1), counts * keep.view(-1, 1)

        loss = 0.0
        groups = [(rows, 0)] if self.unified else [(rows[types == t], t) for t in range(self.n_types)]
        for index, tower in groups:
            if len(index) == 0:
                continue
            u = self.encode_users(users[index], sums[index], counts[index], tower)
            cold = torch.rand(len(index), device=items.device) < self.cold_item_prob if self.cold_item_prob > 0 else None
            v = self.encode_items(items[index], tower, cold)
            logits = u @ v.T / self.temperature
            if self.logq:
                logits = logits - self.log_item_prob[items[index]].unsqueeze(0)
            same_item = items[index].unsqueeze(0) == items[index].unsqueeze(1)
            logits = logits.masked_fill(same_item & ~torch.eye(len(index), dtype=torch.bool, device=logits.device), -1e9)
            loss = loss + F.cross_entropy(logits, torch.arange(len(index), device=logits.device), reduction="sum")
        return loss / len(users)

    def predict(self, interaction):
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        u = self.user_vectors(users)
        tower = torch.zeros_like(items) if self.unified else self.item_type[items]
        return (u[torch.arange(len(users)), tower] * self.item_vectors()[items]).sum(-1)

    def full_sort_predict(self, interaction):
        users = interaction[self.USER_ID]
        u = self.user_vectors(users)  # [B, n_towers, d]
        v = self.item_vectors()
        if self.unified:
            scores = u[:, 0] @ v.T
        else:  # every tower's user vector against every item, each item by its type's
            scores = torch.einsum("btd,nd->btn", u, v).gather(1, self.item_type.expand(len(users), 1, -1)).squeeze(1)
        if self.lane is not None and self.slots > 0:
            seen = self.history_rows(users)  # RecBole masks them after: masked first, the lane's places stay even
            scores = self.lane.merge(scores.masked_fill(seen.to_dense() > 0, -torch.inf), self.lane.scores(seen), self.slots)
        return scores.flatten()

    # --- what the run tells the model after training ------------------------------------------
    def history_rows(self, users: torch.Tensor) -> torch.Tensor:
        """[B, n_items] sparse: 1 for the items in each user's history (the items RecBole masks)."""
        start = self.history_indptr[users]
        degree = self.history_indptr[users + 1] - start
        row = torch.repeat_interleave(torch.arange(len(users), device=users.device), degree)
        offset = torch.arange(len(row), device=users.device) - torch.repeat_interleave(degree.cumsum(0) - degree, degree)
        items = self.history_items[start[row] + offset]
        pairs = torch.sparse_coo_tensor(torch.stack([row, items]), torch.ones(len(items), device=users.device),
                                        (len(users), self.n_items), check_invariants=True).coalesce()  # fmt: skip
        ones = torch.ones_like(pairs.values())  # a repeated interaction counts once
        return torch.sparse_coo_tensor(pairs.indices(), ones, pairs.shape, check_invariants=True).coalesce()

    def calibrate(self, validation_score) -> dict | None:
        """With ``new_item_slots: auto``, the lane's slots that maximise ``validation_score()`` (ties: fewer slots)."""
        if self.new_item_slots != "auto":
            return None
        scores = {}
        for slots in range(self.lane.k + 1):
            self.slots = slots
            scores[slots] = validation_score()
        self.slots = max(scores, key=lambda m: (scores[m], -m))
        return {"new_item_slots": self.slots, "validation": scores}

    def know(self, users: torch.Tensor, items: torch.Tensor) -> None:
        """Learn of interactions that happened after training, without retraining (the papers' inductive
        serving): they join the users' histories (their tower inputs and masks) and their items are no
        longer new. The run calls it with the validation period before scoring the test period."""
        users, items = users.to(self.history_items.device), items.to(self.history_items.device)
        owners = torch.repeat_interleave(torch.arange(self.n_users, device=users.device), self.history_indptr.diff())
        all_users, all_items = torch.cat([owners, users]), torch.cat([self.history_items, items])
        order = torch.argsort(all_users, stable=True)
        self.history_items = all_items[order]
        indptr = torch.zeros_like(self.history_indptr)
        indptr[1:] = torch.bincount(all_users, minlength=self.n_users).cumsum(0)
        self.history_indptr = indptr
        self._history_cache = None  # rebuilt from the grown histories
        if self.lane is not None:
            self.lane.set_known(torch.bincount(all_items, minlength=self.n_items).cpu() > 0)
