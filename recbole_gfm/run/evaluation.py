"""Per-user, new / returning-user, per-item-type and warm / cold-user metrics for ANY RecBole model.

:func:`evaluate_full` runs the model once over a full-ranking loader, with the same scores and
history masking RecBole's Trainer uses (``trainer._full_sort_batch_eval`` is called, not copied),
and feeds RecBole's own metric classes. It gives:

**Per-user vectors.** For every evaluation case (a user; for RecBole's sequential loader, one
interaction row, recorded under its user's token) the value of every top-k metric of
``config['metrics']`` (Hit, MRR, NDCG, Recall, Precision, MAP @ every k), from the metric's own
``metric_info`` rows, whose mean is RecBole's value: ``hit@10 = mean_u hit@10(u)``. Stored as
float32 arrays beside the users' external tokens, in evaluation order (:mod:`recbole_gfm.run.per_user`).

**New and returning users.** When some evaluated user has no train interaction (a global temporal
split), every top-k metric also for each group: ``hit@10[users=new]``, ``hit@10[users=returning]``,
with case counts ``users=new`` / ``users=returning``. Under user-grouped splits (rs811, loo) every
evaluated user is returning and no such key is added.

**Items by their history.** Every test interaction is bucketed by its item's number of train
interactions (users who had it in train): ``items=cold`` (none: items the model never saw, new
items under a global temporal cut, the held-out items of item cold start), ``items=1-4``,
``items=5-19``, ``items=20+``, and ``items=warm`` (1 or more). Every top-k metric is also given per bucket:
``hit@10[items=1-4]`` ranks the catalogue for the cases with a positive in the bucket, with that
case's other positives left out of the ranking (masked, so they are neither hits nor misses); case
counts ``items=1-4`` ... A bucket that holds every positive (it would repeat the overall value) or
none is left out.

The group keys also get per-user vectors (``ndcg@10[users=returning]``, ``ndcg@10[items=cold]``
...), aligned with the users and NaN for the cases outside the group, so that significance tests
can be run on a group.

**Per item type** (the papers' protocol). For each item type ``t`` (the token field
``config['item_type_field']`` of the ``.item`` file) only type-``t`` items are ranked, for the
evaluation cases that have a type-``t`` positive; ``hit@10[type=Kids]`` means what ``hit@10``
means. Users are *cold* for a type when they have no train interaction of that type.

Keys: ``hit@10`` (overall, equal to RecBole's ``trainer.evaluate``), ``hit@10[type=Kids]``,
``hit@10[type=Kids,warm]``, ``hit@10[type=Kids,cold]``, ``itemcoverage@10`` (RecBole's
ItemCoverage), ``itemcoverage@10[type=Kids]``.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from logging import getLogger
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.evaluator import Collector, Evaluator
from recbole.evaluator.collector import DataStruct
from recbole.evaluator.register import metrics_dict
from recbole.utils import FeatureType, set_color
from tqdm import tqdm


# Items by their number of train interactions: (key, at least, at most), see the module doc.
ITEM_GROUPS = (
    ("items=cold", 0, 0), ("items=1-4", 1, 4), ("items=5-19", 5, 19), ("items=20+", 20, 2**62), ("items=warm", 1, 2**62),
)  # fmt: skip


class EvalResult(NamedTuple):
    """Metrics by key; how many evaluation cases (users; for RecBole's sequential loader,
    interactions) each group had: ``all``, ``users=new``, ``type=Kids``, ``type=Kids,cold`` ...;
    and the per-user vectors ``{"users": str array, "metrics": {"hit@10": float32 array, ...}}``
    (None when the loader does not rank the full catalogue)."""

    metrics: "OrderedDict[str, float]"
    cases: dict[str, int]
    per_user: dict | None


class ItemTypes(NamedTuple):
    """Type of every internal item id (0 = none, also for padding item 0) and the type names."""

    of_item: torch.Tensor
    names: list[str]


def item_types(dataset, field: str) -> ItemTypes | None:
    """The item types of ``dataset`` from its token item feature ``field``; None when it has none."""
    logger = getLogger()
    item_feat = dataset.item_feat
    if item_feat is None or field not in item_feat:
        logger.info(
            f"Per-type evaluation skipped: the dataset has no item field '{field}' "
            f"(set item_type_field, and load it with load_col: {{item: [item_id, {field}]}})."
        )
        return None
    if dataset.field2type[field] != FeatureType.TOKEN:
        logger.info(f"Per-type evaluation skipped: item field '{field}' is not a token field.")
        return None
    return ItemTypes(item_feat[field].long().clone(), list(dataset.field2id_token[field]))


def train_matrix(train_data, eval_data) -> sp.csr_matrix:
    """(user_num, item_num) train interactions, 1 per (user, item) pair.

    From the loader when it knows them (the temporal protocol's sequential loader:
    ``train_interactions``, every interaction before the valid period), else from the train split.
    A sequential split rebuilds them from its target rows and their sequences, and misses a user's
    first interaction when no train row follows it.
    """
    known = getattr(eval_data, "train_interactions", None)
    if known is None:
        matrix = train_data._dataset.inter_matrix(form="csr")
    else:
        users, items = known
        shape = (eval_data._dataset.user_num, eval_data._dataset.item_num)
        matrix = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=shape)
    matrix.data[:] = 1
    return matrix


def train_type_counts(matrix: sp.csr_matrix, types: ItemTypes) -> np.ndarray:
    """(user_num, n_types) number of train items of each user of each type (``matrix``: :func:`train_matrix`)."""
    one_hot = np.zeros((matrix.shape[1], len(types.names)), dtype=np.int64)
    one_hot[np.arange(matrix.shape[1]), types.of_item.numpy()] = 1
    return np.asarray(matrix @ one_hot)


def _topk_rows(scores: torch.Tensor, pos_u: torch.Tensor, pos_i: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RecBole's ``rec.topk`` rows (hit flags of the top k, number of positives) and the top-k items.

    The same computation as ``Collector.eval_batch_collect``, kept per row so rows can be grouped.
    """
    _, topk_idx = torch.topk(scores, k, dim=-1)
    pos_matrix = torch.zeros_like(scores, dtype=torch.int)
    pos_matrix[pos_u, pos_i] = 1
    pos_len = pos_matrix.sum(dim=1, keepdim=True)
    return torch.cat((torch.gather(pos_matrix, 1, topk_idx), pos_len), dim=1), topk_idx


def _topk_metrics(config) -> list:
    """RecBole's metric objects for ``config['metrics']`` that need only ``rec.topk`` (Hit, NDCG, MRR ...)."""
    chosen = []
    for name in config["metrics"]:
        metric = metrics_dict[name.lower()]
        if list(metric.metric_need) == ["rec.topk"]:
            chosen.append(metric(config))
    return chosen


def per_row_values(metric, struct: DataStruct) -> np.ndarray:
    """(cases, max k) values of a RecBole top-k metric per case: the rows its ``calculate_metric`` averages.

    ``calculate_metric`` calls ``metric_info(pos_index)`` or ``metric_info(pos_index, pos_len)``,
    as the metric needs; so does this.
    """
    pos_index, pos_len = metric.used_info(struct)
    if len(inspect.signature(metric.metric_info).parameters) == 2:
        return metric.metric_info(pos_index, pos_len)
    return metric.metric_info(pos_index)


def train_users(train_data, eval_data) -> np.ndarray | None:
    """Internal ids of the users with a train interaction; None when every evaluated user has one.

    RecBole's sequential loader is only used with user-grouped splits, where a user's first
    interaction, never a target, precedes every held-out one: each evaluated user has train
    history, though their train *rows* may not show it. Otherwise: the users of :func:`train_matrix`.
    """
    if eval_data.is_sequential and getattr(eval_data, "train_interactions", None) is None:
        return None
    return np.flatnonzero(np.diff(train_matrix(train_data, eval_data).indptr))


@torch.no_grad()
def evaluate_full(trainer, train_data, eval_data, per_type: bool = True, show_progress: bool = False) -> EvalResult:
    """Overall, per-user, new / returning and (with ``per_type``) per-type metrics of ``trainer.model``.

    Args:
        trainer: a RecBole trainer holding the model to evaluate (best checkpoint already loaded).
        train_data: the train dataloader (its interactions decide new / returning, warm / cold).
        eval_data: a full-ranking valid or test dataloader.
        per_type: also compute the per-item-type, warm / cold and coverage keys.
    """
    config = trainer.config
    logger = getLogger()
    if not isinstance(eval_data, FullSortEvalDataLoader):
        logger.info("Per-user and per-type evaluation skipped: they need full ranking (eval_args mode 'full').")
        return EvalResult(OrderedDict(), {}, None)
    dataset = eval_data._dataset
    types = item_types(dataset, config["item_type_field"]) if per_type else None
    maxk = max(config["topk"])

    # what Trainer.evaluate sets up before calling _full_sort_batch_eval
    trainer.model.eval()
    trainer.tot_item_num = dataset.item_num
    if trainer.item_tensor is None:
        trainer.item_tensor = dataset.get_item_feature().to(trainer.device)
    collector = Collector(config)
    collector.data_collect(train_data)
    uid_field = dataset.uid_field
    row_users: list[torch.Tensor] = []
    train = train_matrix(train_data, eval_data)
    by_type = _TypeRows(types, train, trainer.device, maxk) if types is not None else None
    history = torch.from_numpy(train.getnnz(axis=0)).to(trainer.device)  # each item's train interactions
    by_item: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {label: [] for label, _, _ in ITEM_GROUPS}
    positives = {label: 0 for label, _, _ in ITEM_GROUPS}
    seen_rows = 0

    batches = tqdm(eval_data, total=len(eval_data), ncols=100, desc=set_color("Full eval", "pink")) if show_progress else eval_data
    for batched_data in batches:
        interaction, scores, pos_u, pos_i = trainer._full_sort_batch_eval(batched_data)
        collector.eval_batch_collect(scores, interaction, pos_u, pos_i)
        row_users.append(interaction[uid_field].cpu())
        if by_type is not None:
            by_type.collect(scores, row_users[-1], pos_u, pos_i)
        counts = history[pos_i]
        for label, low, high in ITEM_GROUPS:
            selected = (counts >= low) & (counts <= high)
            positives[label] += int(selected.sum())
            if bool(selected.any()):  # kept even when the whole batch is in the bucket: others may not be
                by_item[label].append(_item_group_rows(scores, pos_u, pos_i, selected, maxk, seen_rows))
        seen_rows += len(row_users[-1])

    struct = collector.get_data_struct()
    result = Evaluator(config).evaluate(struct)
    users = torch.cat(row_users).numpy()
    cases = {"all": len(users)}
    metrics = _topk_metrics(config)
    per_user = {"users": dataset.id2token(uid_field, users).astype(str), "metrics": {}}
    if "rec.topk" in struct:
        for metric in metrics:
            values = per_row_values(metric, struct)
            name = type(metric).__name__.lower()
            per_user["metrics"].update({f"{name}@{k}": values[:, k - 1].astype(np.float32) for k in config["topk"]})
        with_history = train_users(train_data, eval_data)
        returning = np.isin(users, with_history) if with_history is not None else np.ones(len(users), bool)
        groups: dict[str, tuple[np.ndarray, torch.Tensor]] = {}  # label: (case indices, rec.topk rows)
        if not returning.all():
            old = torch.from_numpy(returning)
            for label, mask in (("users=new", ~old), ("users=returning", old)):
                groups[label] = (np.flatnonzero(mask.numpy()), struct.get("rec.topk")[mask])
        n_positives = int(struct.get("rec.topk")[:, -1].sum())
        for label, parts in by_item.items():  # a bucket with every positive would repeat the overall value
            if parts and positives[label] < n_positives:
                groups[label] = (torch.cat([i for i, _ in parts]).numpy(), torch.cat([r for _, r in parts]))
        for label, (index, rows) in groups.items():
            cases[label] = len(index)
            result.update(_group_metrics(metrics, rows, label))
            per_user["metrics"].update(_group_vectors(metrics, rows, index, len(users), label, config["topk"]))
    if by_type is not None:
        by_type.update(result, cases, metrics, config, dataset)
    return EvalResult(result, cases, per_user)


def _item_group_rows(scores, pos_u, pos_i, selected, maxk: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(case indices, ``rec.topk`` rows) of the cases with a ``selected`` positive, ranked with their
    other positives masked (neither hits nor misses)."""
    case_rows, local_u = torch.unique(pos_u[selected], return_inverse=True)
    ranked = scores[case_rows].clone()
    local = torch.full((len(scores),), -1, dtype=torch.long, device=scores.device)
    local[case_rows] = torch.arange(len(case_rows), device=scores.device)
    other = ~selected & (local[pos_u] >= 0)
    ranked[local[pos_u[other]], pos_i[other]] = -np.inf
    topk_rows, _ = _topk_rows(ranked, local_u, pos_i[selected], maxk)
    return (case_rows + offset).cpu(), topk_rows.cpu()


def _group_vectors(metrics: list, rows: torch.Tensor, index: np.ndarray, n: int, label: str, topk: list[int]) -> dict[str, np.ndarray]:
    """Per-user vectors of a group's keys: the group's values at its cases, NaN elsewhere."""
    struct = DataStruct()
    struct.set("rec.topk", rows)
    vectors = {}
    for metric in metrics:
        values = per_row_values(metric, struct)
        for k in topk:
            full = np.full(n, np.nan, dtype=np.float32)
            full[index] = values[:, k - 1]
            vectors[f"{type(metric).__name__.lower()}@{k}[{label}]"] = full
    return vectors


class _TypeRows:
    """The per-item-type rows of an evaluation, collected batch by batch (see the module doc)."""

    def __init__(self, types: ItemTypes, train: sp.csr_matrix, device, maxk: int):
        self.types, self.maxk = types, maxk
        self.counts = train_type_counts(train, types)
        self.present = [t for t in range(1, len(types.names)) if bool((types.of_item == t).any())]
        self.of_item = types.of_item.to(device)
        self.rows: dict[int, list[torch.Tensor]] = {t: [] for t in self.present}
        self.users: dict[int, list[torch.Tensor]] = {t: [] for t in self.present}
        self.recommended: dict[int, list[torch.Tensor]] = {t: [] for t in self.present}
        self.overall_items: list[torch.Tensor] = []

    def collect(self, scores: torch.Tensor, batch_users: torch.Tensor, pos_u: torch.Tensor, pos_i: torch.Tensor) -> None:
        of_item = self.of_item
        self.overall_items.append(torch.topk(scores, self.maxk, dim=-1)[1].cpu())
        item_type = of_item[pos_i]
        for t in self.present:
            selected = item_type == t
            if not bool(selected.any()):
                continue
            case_rows, local_u = torch.unique(pos_u[selected], return_inverse=True)
            typed = scores[case_rows].masked_fill(of_item != t, -np.inf)  # rank only type-t items
            topk_rows, topk_idx = _topk_rows(typed, local_u, pos_i[selected], self.maxk)
            self.rows[t].append(topk_rows.cpu())
            self.users[t].append(batch_users[case_rows.cpu()])
            finite = torch.gather(typed, 1, topk_idx).isfinite()  # a type with < k items pads with -inf
            self.recommended[t].append(torch.where(finite, topk_idx, torch.zeros_like(topk_idx)).cpu())

    def update(self, result, cases: dict[str, int], metrics: list, config, dataset) -> None:
        """Add the per-type, warm / cold and coverage keys to ``result`` and their case counts to ``cases``."""
        types = self.types
        for t in (t for t in self.present if self.rows[t]):
            name = types.names[t]
            cold = torch.from_numpy(self.counts[torch.cat(self.users[t]).numpy(), t] == 0)
            for group, mask in (("", torch.ones_like(cold)), ("warm", ~cold), ("cold", cold)):
                label = f"type={name}" + (f",{group}" if group else "")
                cases[label] = int(mask.sum())
                result.update(_group_metrics(metrics, torch.cat(self.rows[t])[mask], label))
            result.update(_type_coverage(torch.cat(self.recommended[t]), int((types.of_item == t).sum()), config, name))
        if "itemcoverage" not in [m.lower() for m in config["metrics"]]:
            struct = DataStruct()
            struct.set("rec.items", torch.cat(self.overall_items))
            struct.set("data.num_items", dataset.num(dataset.iid_field))
            result.update(metrics_dict["itemcoverage"](config).calculate_metric(struct))


def _group_metrics(metrics: list, topk_rows: torch.Tensor, label: str) -> dict[str, float]:
    """RecBole's metric values over the given ``rec.topk`` rows, keyed ``hit@10[<label>]``."""
    if len(topk_rows) == 0:
        return {}
    struct = DataStruct()
    struct.set("rec.topk", topk_rows)
    return {f"{key}[{label}]": value for metric in metrics for key, value in metric.calculate_metric(struct).items()}


def _type_coverage(recommended: torch.Tensor, n_items: int, config, name: str) -> dict[str, float]:
    """Fraction of the type's items in anyone's type-ranked top k (0 marks a padded slot).

    RecBole's ItemCoverage counts every distinct id in the lists over the whole catalogue; here
    padded slots must be left out and the denominator is the type's catalogue.
    """
    coverage = {}
    for k in config["topk"]:
        ids = torch.unique(recommended[:, :k])
        coverage[f"itemcoverage@{k}[type={name}]"] = round(
            int((ids > 0).sum()) / n_items, config["metric_decimal_place"]
        )
    return coverage
