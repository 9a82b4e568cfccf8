"""Per-item-type and warm / cold-user metrics for ANY RecBole model (the papers' protocol).

For each item type ``t`` (the token field ``config['item_type_field']`` of the ``.item`` file) only
type-``t`` items are ranked, for the evaluation cases that have a type-``t`` positive, with the same
scores and history masking RecBole's Trainer uses (``trainer._full_sort_batch_eval`` is called, not
copied). Metric values come from RecBole's own metric classes, so ``hit@10[type=Kids]`` means what
``hit@10`` means. Users are *cold* for a type when they have no train interaction of that type.

Keys: ``hit@10`` (overall, equal to RecBole's ``trainer.evaluate``), ``hit@10[type=Kids]``,
``hit@10[type=Kids,warm]``, ``hit@10[type=Kids,cold]``, ``itemcoverage@10`` (RecBole's
ItemCoverage), ``itemcoverage@10[type=Kids]``.
"""

from __future__ import annotations

from collections import OrderedDict
from logging import getLogger
from typing import NamedTuple

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.evaluator import Collector, Evaluator
from recbole.evaluator.collector import DataStruct
from recbole.evaluator.register import metrics_dict
from recbole.utils import FeatureType, set_color
from tqdm import tqdm

class TypeEvalResult(NamedTuple):
    """Metrics by key, and how many evaluation cases (users; for RecBole's sequential loader,
    interactions) each group had: ``all``, ``type=Kids``, ``type=Kids,cold`` ..."""

    metrics: "OrderedDict[str, float]"
    cases: dict[str, int]


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


def train_type_counts(train_dataset, types: ItemTypes) -> np.ndarray:
    """(user_num, n_types) number of train interactions of each user with each type."""
    matrix = train_dataset.inter_matrix(form="csr")  # sequential datasets rebuild it from their lists
    matrix.data[:] = 1
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


@torch.no_grad()
def evaluate_by_type(trainer, train_data, eval_data, show_progress: bool = False) -> TypeEvalResult:
    """Overall, per-type and warm/cold metrics of ``trainer.model`` (as it is now) on ``eval_data``.

    Args:
        trainer: a RecBole trainer holding the model to evaluate (best checkpoint already loaded).
        train_data: the train dataloader (its interactions decide warm / cold).
        eval_data: a full-ranking valid or test dataloader.
    """
    config = trainer.config
    logger = getLogger()
    if not isinstance(eval_data, FullSortEvalDataLoader):
        logger.info("Per-type evaluation skipped: it needs full ranking (eval_args mode 'full').")
        return TypeEvalResult(OrderedDict(), {})
    dataset = eval_data._dataset
    types = item_types(dataset, config["item_type_field"])
    if types is None:
        return TypeEvalResult(OrderedDict(), {})
    counts = train_type_counts(train_data._dataset, types)
    maxk = max(config["topk"])
    n_types = len(types.names)
    present = [t for t in range(1, n_types) if bool((types.of_item == t).any())]

    # what Trainer.evaluate sets up before calling _full_sort_batch_eval
    trainer.model.eval()
    trainer.tot_item_num = dataset.item_num
    if trainer.item_tensor is None:
        trainer.item_tensor = dataset.get_item_feature().to(trainer.device)
    collector = Collector(config)
    collector.data_collect(train_data)
    uid_field = dataset.uid_field
    of_item = types.of_item.to(trainer.device)
    rows: dict[int, list[torch.Tensor]] = {t: [] for t in present}
    users: dict[int, list[torch.Tensor]] = {t: [] for t in present}
    recommended: dict[int, list[torch.Tensor]] = {t: [] for t in present}
    overall_items: list[torch.Tensor] = []

    batches = tqdm(eval_data, total=len(eval_data), ncols=100, desc=set_color("Per-type eval", "pink")) if show_progress else eval_data
    for batched_data in batches:
        interaction, scores, pos_u, pos_i = trainer._full_sort_batch_eval(batched_data)
        collector.eval_batch_collect(scores, interaction, pos_u, pos_i)
        overall_items.append(torch.topk(scores, maxk, dim=-1)[1].cpu())
        batch_users = interaction[uid_field].cpu()
        item_type = of_item[pos_i]
        for t in present:
            selected = item_type == t
            if not bool(selected.any()):
                continue
            case_rows, local_u = torch.unique(pos_u[selected], return_inverse=True)
            typed = scores[case_rows].masked_fill(of_item != t, -np.inf)  # rank only type-t items
            topk_rows, topk_idx = _topk_rows(typed, local_u, pos_i[selected], maxk)
            rows[t].append(topk_rows.cpu())
            users[t].append(batch_users[case_rows.cpu()])
            finite = torch.gather(typed, 1, topk_idx).isfinite()  # a type with < k items pads with -inf
            recommended[t].append(torch.where(finite, topk_idx, torch.zeros_like(topk_idx)).cpu())

    result = Evaluator(config).evaluate(collector.get_data_struct())
    cases = {"all": int(sum(len(r) for r in overall_items))}
    metrics = _topk_metrics(config)
    for t in (t for t in present if rows[t]):
        name = types.names[t]
        cold = torch.from_numpy(counts[torch.cat(users[t]).numpy(), t] == 0)
        for group, mask in (("", torch.ones_like(cold)), ("warm", ~cold), ("cold", cold)):
            label = f"type={name}" + (f",{group}" if group else "")
            cases[label] = int(mask.sum())
            result.update(_group_metrics(metrics, torch.cat(rows[t])[mask], label))
        result.update(_type_coverage(torch.cat(recommended[t]), int((types.of_item == t).sum()), config, name))
    if "itemcoverage" not in [m.lower() for m in config["metrics"]]:
        struct = DataStruct()
        struct.set("rec.items", torch.cat(overall_items))
        struct.set("data.num_items", dataset.num(dataset.iid_field))
        result.update(metrics_dict["itemcoverage"](config).calculate_metric(struct))
    return TypeEvalResult(result, cases)


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
