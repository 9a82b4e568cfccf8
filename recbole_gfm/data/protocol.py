"""Named evaluation protocols (``properties/protocol/<name>.yaml``) and the split fixes they need.

RecBole honours ``rs811`` (RS 8:1:1, RO, user-grouped) and ``loo`` (LS valid_and_test, TO) as
configured. For ``temporal`` (RS, TO, ``group_by: none``) it does not quite, and
:func:`data_preparation` fixes three things:

1. RecBole cuts the time-sorted interactions by *position*, so interactions sharing the timestamp
   at a cut fall on both sides: the cut times here are taken at the ratio positions, and every
   interaction at a cut time goes to the later period.
2. Sequential datasets are cut after augmentation (one row per target, not per interaction), so a
   sequential model got other cut times than a general one: the cut times are computed once from
   all interactions, so every model type splits on the same times.
3. RecBole evaluates a sequential model once per held-out *interaction*, with the earlier held-out
   interactions of the period fed in as history: on a period split that leaks the period and is
   not the general models' case (one per user, all the user's period items as positives, the items
   seen before masked). :class:`PeriodSequentialEvalDataLoader` evaluates sequential models the
   general way, from the history before the period.

**One test set per board.** A user with no interaction before the period has no sequence to feed
a sequential model, yet a general model scores them. So that every row of a board is scored on
the same users, such a user gets a stated fallback: the **train-split item popularity** (train
interaction counts, ties broken by the lower internal item id; the user has no history to mask),
and the log says how many users got it. Where it goes: the loader decides who needs it, the
trainer scores. The loader gives a fallback user a sequence of length 1 holding the padding item
(every RecBole sequential model accepts it; length 0 breaks their ``gather_indexes``) and returns
its batches as :class:`FallbackBatch`, RecBole's 4-tuple carrying the flagged rows and the
popularity scores. RecBole's ``Trainer._full_sort_batch_eval``, through which both
``Trainer.evaluate`` and :mod:`recbole_gfm.run.evaluation` score every batch, overwrites the
flagged rows' scores after the model's ``full_sort_predict`` (:mod:`recbole_gfm.compat`): no
model, trainer subclass or RecBole loop is copied, and batches of any other loader pass through
untouched. (A trainer that overrides ``_full_sort_batch_eval`` itself would bypass the fallback.)

(RecBole's own ``TS`` split is no global cut either: it splits train / valid per user.)
"""

from __future__ import annotations

import hashlib
import math
import os
from logging import getLogger

import numpy as np
import pandas as pd
import torch
from recbole.data import data_preparation as recbole_data_preparation
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.data.interaction import Interaction, cat_interactions
from recbole.utils import ModelType

from recbole_gfm.config import PROPERTIES_DIR, ConfigError
from recbole_gfm.data.scenarios import use_scenarios

PROTOCOL_DIR = os.path.join(PROPERTIES_DIR, "protocol")


def available() -> list[str]:
    """Names of the protocols shipped in ``properties/protocol``."""
    return sorted(name[:-5] for name in os.listdir(PROTOCOL_DIR) if name.endswith(".yaml"))


def protocol_file(name: str) -> str:
    """The properties file of protocol ``name`` (e.g. ``temporal``), to use as a config file."""
    path = os.path.join(PROTOCOL_DIR, f"{name}.yaml")
    if not os.path.isfile(path):
        raise ConfigError(f"Unknown protocol '{name}'. Available: {', '.join(available())}.")
    return path


def is_global_time_split(config) -> bool:
    """True when the split is RS over all interactions ordered by time: a global temporal split."""
    args = config["eval_args"]
    group_by = args.get("group_by")
    return (
        args.get("order") == "TO"
        and "RS" in (args.get("split") or {})
        and (group_by is None or str(group_by).lower() == "none")
        and not config["benchmark_filename"]
    )


def _cut_times(config, dataset) -> list[float]:
    """Timestamps where the periods start: the times at RecBole's ratio positions over all interactions."""
    times = np.sort(dataset.inter_feat[dataset.time_field].to_numpy().astype(np.float32))
    ratios = config["eval_args"]["split"]["RS"]
    positions = dataset._calcu_split_ids(tot=len(times), ratios=[r / sum(ratios) for r in ratios])
    return [float(times[p]) if p < len(times) else math.inf for p in positions]


def _split_on_times(self, cut_times: list[float]):
    """``Dataset.split_by_ratio`` replacement: periods start at ``cut_times`` (data sorted by time)."""
    times = self.inter_feat[self.time_field].numpy()
    cuts = [int(np.searchsorted(times, np.float32(t), side="left")) for t in cut_times]
    bounds = [0] + cuts + [len(times)]
    self._drop_unused_col()
    return [self.copy(self.inter_feat[np.arange(start, end)]) for start, end in zip(bounds[:-1], bounds[1:])]


class FallbackBatch(tuple):
    """A batch of :class:`PeriodSequentialEvalDataLoader`: RecBole's ``(interaction, history_index,
    positive_u, positive_i)``, plus ``fallback_rows`` (bool, the rows to score by ``fallback_scores``)
    and ``fallback_scores`` (the popularity score of every item, -inf for the padding item 0).
    RecBole's ``Trainer._full_sort_batch_eval`` applies them (:mod:`recbole_gfm.compat`)."""

    def __new__(cls, batch: tuple, rows: torch.Tensor, scores: torch.Tensor):
        self = super().__new__(cls, batch)
        self.fallback_rows, self.fallback_scores = rows, scores
        return self

    def __reduce__(self):  # DataLoader workers pickle batches
        return FallbackBatch, (tuple(self), self.fallback_rows, self.fallback_scores)


def popularity_scores(counts: np.ndarray) -> torch.Tensor:
    """Scores whose descending order is by count, ties by the lower item id; item 0 (padding) -inf.

    Distinct integers (``n_items - rank``), so ``torch.topk`` cannot break ties its own way.
    """
    order = np.lexsort((np.arange(len(counts)), -counts))
    scores = np.empty(len(counts), dtype=np.float32)
    scores[order] = len(counts) - np.arange(len(counts))
    scores[0] = -np.inf
    return torch.from_numpy(scores)


class PeriodSequentialEvalDataLoader(FullSortEvalDataLoader):
    """Full ranking for a sequential model once per user of the period, like a general model.

    The user's sequence is the one of their first target in the period (everything before the
    period), the positives are all their items in the period, and items seen before the period are
    masked. Users with nothing before the period are scored by train-split popularity (see the
    module doc). Rows are in user id order, as in RecBole's general full-sort loader.

    Attributes:
        train_interactions: (user ids, item ids) of the train split's interactions, every one: the
            sequential train split lacks users' first interactions (never targets).
        fallback_users: the period's users scored by popularity.
        popularity: :func:`popularity_scores` of the train split's item counts.
    """

    def __init__(self, config, dataset, interactions: pd.DataFrame, start: float, end: float, train_end: float):
        uid, iid, time = dataset.uid_field, dataset.iid_field, dataset.time_field
        times = interactions[time].to_numpy(np.float32)
        before = interactions[times < np.float32(start)].groupby(uid)[iid]
        during = interactions[(times >= np.float32(start)) & (times < np.float32(end))].groupby(uid)[iid]
        seen = {u: set(items) for u, items in before}
        self.positives = {u: torch.tensor(items.to_numpy()) for u, items in during}
        self.history = {
            u: torch.tensor(sorted(seen.get(u, set()) - set(p.tolist())), dtype=torch.long) for u, p in self.positives.items()
        }
        train = interactions[times < np.float32(train_end)]
        self.train_interactions = (train[uid].to_numpy(), train[iid].to_numpy())
        self.popularity = popularity_scores(np.bincount(train[iid].to_numpy(), minlength=dataset.item_num))
        self.fallback_users = {u for u in self.positives if u not in seen}

        users = dataset.inter_feat[uid].numpy()
        order = np.lexsort((dataset.inter_feat[time].numpy(), users))
        first = order[np.r_[True, users[order][1:] != users[order][:-1]]]
        rows = dataset.inter_feat[first[np.isin(users[first], [u for u in self.positives if u in seen])]]
        rows = cat_interactions([rows, self._padding_rows(dataset, sorted(self.fallback_users))])
        rows.sort(by=uid)
        getLogger().info(
            f"Per-user sequential evaluation: {len(rows)} users of the period, of whom "
            f"{len(self.fallback_users)} without history before it are scored by train-split popularity (fallback)."
        )
        super().__init__(config, dataset.copy(rows), None)

    @staticmethod
    def _padding_rows(dataset, users: list[int]) -> Interaction:
        """One row per user: the padding item as a length-1 sequence, every other field 0."""
        feat = dataset.inter_feat
        rows = {field: torch.zeros((len(users), *feat[field].shape[1:]), dtype=feat[field].dtype) for field in feat.columns}
        rows[dataset.uid_field] = torch.tensor(users, dtype=feat[dataset.uid_field].dtype)
        rows[dataset.item_list_length_field] = torch.ones(len(users), dtype=feat[dataset.item_list_length_field].dtype)
        return Interaction(rows)

    def collate_fn(self, index):
        interaction = self.transform(self._dataset, self._dataset[np.array(index)])
        users = interaction[self.uid_field].tolist()
        positive_u = torch.cat([torch.full_like(self.positives[u], i) for i, u in enumerate(users)])
        history_u = torch.cat([torch.full_like(self.history[u], i) for i, u in enumerate(users)])
        positive_i = torch.cat([self.positives[u] for u in users])
        history_i = torch.cat([self.history[u] for u in users])
        fallback = torch.tensor([u in self.fallback_users for u in users])
        return FallbackBatch((interaction, (history_u, history_i), positive_u, positive_i), fallback, self.popularity)


def use_time_cuts(config, dataset) -> list[float] | None:
    """Make ``dataset.build()`` split a global temporal protocol on shared, tie-aware cut times.

    Returns the times where the valid and test periods start (None for other protocols).
    """
    if not is_global_time_split(config):
        return None
    if not dataset.time_field or dataset.time_field not in dataset.inter_feat:
        raise ConfigError(
            f"The global temporal split (order TO, group_by none) needs the time field "
            f"'{config['TIME_FIELD']}': add it to load_col's inter columns."
        )
    cut_times = _cut_times(config, dataset)
    getLogger().info(f"Global temporal split: valid from time {cut_times[0]}, test from {cut_times[-1]}.")
    dataset.split_by_ratio = lambda ratios, group_by=None: _split_on_times(dataset, cut_times)
    return cut_times


def data_preparation(config, dataset):
    """RecBole's ``data_preparation``, with the global temporal split fixed (see the module doc) and the
    cold-start scenarios applied (:mod:`recbole_gfm.data.scenarios`)."""
    interactions = None
    if is_global_time_split(config) and dataset.time_field in dataset.inter_feat:
        interactions = dataset.inter_feat[[dataset.uid_field, dataset.iid_field, dataset.time_field]].copy()
    cut_times = use_time_cuts(config, dataset)
    use_scenarios(config, dataset)
    train, valid, test = recbole_data_preparation(config, dataset)
    if cut_times and config["MODEL_TYPE"] == ModelType.SEQUENTIAL and isinstance(test, FullSortEvalDataLoader):
        bounds = [*cut_times, math.inf]
        valid = PeriodSequentialEvalDataLoader(config, valid._dataset, interactions, bounds[0], bounds[1], cut_times[0])
        test = PeriodSequentialEvalDataLoader(config, test._dataset, interactions, bounds[-2], bounds[-1], cut_times[0])
    return train, valid, test


def evaluation_pairs(loader) -> list[tuple[str, str]]:
    """The (user, positive item) pairs a full-ranking loader scores, as sorted external tokens.

    The same for every model type on one split: a general loader's split interactions, a sequential
    leave-one-out loader's target rows, :class:`PeriodSequentialEvalDataLoader`'s period positives.
    """
    dataset = loader._dataset
    uid, iid = dataset.uid_field, dataset.iid_field
    if isinstance(loader, PeriodSequentialEvalDataLoader):
        users = np.concatenate([np.full(len(items), u) for u, items in loader.positives.items()] or [np.zeros(0, int)])
        items = np.concatenate([items.numpy() for items in loader.positives.values()] or [np.zeros(0, int)])
    else:
        users, items = dataset.inter_feat[uid].numpy(), dataset.inter_feat[iid].numpy()
    pairs = zip(dataset.id2token(uid, users).astype(str).tolist(), dataset.id2token(iid, items).astype(str).tolist())
    return sorted(set(pairs))


def split_fingerprint(valid_data, test_data) -> str:
    """Hash of what a run is scored on: the validation and test (user, positive item) pairs.

    Rows of one board must share it: their per-user values are then paired on the same cases.
    """
    digest = hashlib.sha256()
    for loader in (valid_data, test_data):
        for user, item in evaluation_pairs(loader):
            digest.update(f"{user}\x1f{item}\x1e".encode())
        digest.update(b"\x1d")
    return digest.hexdigest()[:16]


def item_tokens(dataset) -> list[str]:
    """External item ids in internal-id order (index 0 is padding)."""
    return [str(t) for t in dataset.field2id_token[dataset.iid_field]]


def dataset_fingerprint(dataset) -> str:
    """Hash of a split's interactions (users, items, times), the item catalogue order and the item texts."""
    digest = hashlib.sha256()
    for field in (dataset.uid_field, dataset.iid_field, dataset.time_field):
        if field and field in dataset.inter_feat:
            digest.update(dataset.inter_feat[field].numpy().tobytes())
    digest.update("\x1f".join(item_tokens(dataset)).encode())
    if hasattr(dataset, "item_texts"):
        digest.update("\x1f".join(dataset.item_texts()).encode())
    return digest.hexdigest()[:16]
