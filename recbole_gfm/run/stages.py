"""The stages of a run, each short and testable alone.

    prepare data -> [prepare the foundation and the model's inputs] -> build the model -> fit (with resume) -> evaluate -> record

:func:`recbole_gfm.quick_start.run_process` chains them. Everything flows one way: the split is
built once; a model that reads a foundation or other inputs gets them prepared from that same
split (:mod:`recbole_gfm.run.inputs`) and handed to its constructor, which does no file I/O.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from logging import getLogger
from typing import TYPE_CHECKING, Any, Callable

import torch.distributed as dist
from recbole.utils import init_seed, set_color

from recbole_gfm.artifacts import package_versions, write_json
from recbole_gfm.checkpoint import to_plain
from recbole_gfm.compat import is_leader
from recbole_gfm.config import Config, ConfigError
from recbole_gfm.data.protocol import data_preparation, dataset_fingerprint, split_fingerprint
from recbole_gfm.registry import create_dataset, get_trainer, training_data
from recbole_gfm.run.evaluation import evaluate_full
from recbole_gfm.run.per_user import per_user_record
from recbole_gfm.run.resume import TrainingResume

if TYPE_CHECKING:
    from recbole_gfm.foundation.store import Foundation

# Datasets this plugin can prepare from sources on this machine (recbole_gfm.data.prepare).
PREPARABLE = ("ml-1m", "ml-100k-typed", "ml-1m-typed")


def check_dataset_files(config: Config) -> None:
    """Fail early, naming the folder searched, when the dataset's atomic files are missing."""
    path, name = config["data_path"], config["dataset"]
    inter = os.path.join(path, f"{name}.inter")
    if os.path.isfile(inter):
        return
    hint = (
        f" Prepare it with: python -m recbole_gfm.data.prepare {name}"
        if name in PREPARABLE
        else " Put the atomic files there, or set data_path to the folder that holds the dataset's folder."
    )
    raise ConfigError(f"Dataset '{name}' not found: no file {inter}.{hint}")


@dataclass
class Split:
    """The run's data: RecBole's loaders, and what it is scored on."""

    train_data: Any
    valid_data: Any
    test_data: Any  # None for a run that never evaluates the test split (a search trial)
    evaluation_split: str | None  # protocol.split_fingerprint of the valid and test cases (None without test)


def prepare_data(config: Config, evaluate_test: bool = True, on_split: Callable[[str], None] | None = None) -> Split:
    """The dataset and its split (``config['split_fingerprint']`` set: serving checks it rebuilds this one).

    ``on_split(fingerprint)`` sees what the run will be scored on before anything trains; a run
    that does not evaluate the test split never reads it.
    """
    data = create_dataset(config)
    getLogger().info(data)
    train_data, valid_data, test_data = data_preparation(config, data)
    evaluation_split = split_fingerprint(valid_data, test_data) if evaluate_test else None
    if on_split is not None and evaluation_split is not None:
        on_split(evaluation_split)
    config["split_fingerprint"] = dataset_fingerprint(train_data.dataset)
    return Split(train_data, valid_data, test_data if evaluate_test else None, evaluation_split)


def model_inputs(config: Config) -> set[str]:
    """What the model class asks the run to prepare (``inputs(config)``; none for RecBole's models)."""
    inputs = getattr(config.model_class, "inputs", None)
    return set(inputs(config)) if inputs is not None else set()


def build_model(config: Config, split: Split, inputs: dict[str, Any] | None = None, seed: bool = True):
    """The model, on its device, from the ``inputs`` prepared for it (:mod:`recbole_gfm.run.inputs`).

    ``seed``: seed its initialisation with the run's seed (plus the process's rank) first.
    """
    if seed:
        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    return config.model_class(config, split.train_data.dataset, **(inputs or {})).to(config["device"])


@dataclass
class Fit:
    """What training left: the trainer (its best checkpoint saved), the validation curve and times."""

    trainer: Any
    train_data: Any  # the loader it trained on (a model's own, e.g. HGNN's link batches)
    best_valid_score: float
    best_valid_result: dict
    best: dict = field(default_factory=dict)  # the best epoch and the training seconds to it
    curve: list = field(default_factory=list)  # (epoch, validation score) pairs
    train_time: float = 0.0
    resumed_at: int | None = None


def fit(config: Config, model, split: Split, saved: bool, callback_fn=None, leader: bool = True, foundation: str | None = None) -> Fit:
    """RecBole's Trainer on the train split, early-stopped on validation, resumable (:mod:`recbole_gfm.run.resume`).

    ``callback_fn(epoch, score)`` after each validation (rank 0 only); a resumed run replays its
    curve so far to it first. ``foundation``: the path of the foundation read (part of the snapshot's key).
    """
    train_data = training_data(config, split.train_data, graph=getattr(model, "graph", None))  # HGNN's links: its own graph
    # RecBole's ensure_dir checks, then creates: two ranks starting together race on it
    os.makedirs(config["checkpoint_dir"], exist_ok=True)
    trainer = get_trainer(config)(config, model)
    resume = TrainingResume(config, trainer, train_data, foundation) if TrainingResume.applies(config, trainer) else None
    # the validation curve, the best epoch and its training time, kept across a resume
    restored = resume.restore(saved) if resume else None
    progress: dict[str, Any] = restored or {"curve": [], "best": {}, "seconds": 0.0}
    start = time.perf_counter() - progress["seconds"]
    if callback_fn is not None and leader:  # a resumed run shows (and a search trial's pruner sees) its curve so far
        for epoch, score in progress["curve"]:
            callback_fn(epoch, score)

    def note_best(epoch: int, score: float) -> None:
        """RecBole's per-evaluation callback: early_stopping resets cur_step to 0 on a new best."""
        if trainer.cur_step == 0:
            progress["best"] = {"epoch": epoch, "seconds": time.perf_counter() - start}
        progress["curve"].append((epoch, score))
        if leader:  # the console's progress, as a benchmark's cells show theirs
            getLogger().info(
                set_color("validation", "blue") + f": epoch {epoch} {config['valid_metric'].lower()} {score:.4f}, best "
                f"{trainer.best_valid_score:.4f} (epoch {progress['best'].get('epoch')}), {time.perf_counter() - start:.1f} s elapsed"
            )
        if resume:
            resume.save(epoch, {**progress, "seconds": time.perf_counter() - start})
        if callback_fn is not None and leader:  # benchmark hook: progress lines
            callback_fn(epoch, score)

    try:
        best_valid_score, best_valid_result = trainer.fit(
            train_data, split.valid_data, saved=saved, show_progress=config["show_progress"], callback_fn=note_best
        )
    except Exception:
        if resume:  # a failed run would fail again from its snapshot; Ctrl-C and SIGTERM keep it
            resume.discard()
        raise
    if resume:
        resume.discard()
    return Fit(trainer, train_data, best_valid_score, dict(best_valid_result or {}), progress["best"],
               [tuple(p) for p in progress["curve"]], time.perf_counter() - start,
               trainer.start_epoch if restored else None)  # fmt: skip


@dataclass
class Evaluation:
    test_result: dict
    cases: dict[str, int]  # evaluation cases by group (all, type=..., users=new ...)
    per_user: dict | None  # JSON-ready per-user values of the test split
    seconds: float


def update_after_training(config: Config, result: Fit, split: Split, saved: bool) -> dict | None:
    """What a model learns after training, without retraining, before the test is scored.

    A model may choose settings that do not change its weights on validation (``calibrate``: GFM's
    new-item slots), then, with ``test_with_validation_history``, learn of the validation period
    (``know``: its interactions join the users' histories and their items are no longer new; the
    papers' inductive serving: under a time cut, the past of the test period). The best checkpoint is
    loaded first. Returns what was calibrated.
    """
    trainer, model = result.trainer, result.trainer.model
    calibration = None
    if hasattr(model, "calibrate"):
        first = [saved]  # load the best checkpoint with the first validation

        def validation_score() -> float:
            scores = trainer.evaluate(split.valid_data, load_best_model=first.pop() if first else False)
            return float(scores[config["valid_metric"].lower()])

        calibration = model.calibrate(validation_score)
    if split.test_data is not None and config["test_with_validation_history"] and hasattr(model, "know"):
        inter = split.valid_data._dataset.inter_feat
        model.know(inter[model.USER_ID], inter[model.ITEM_ID])
    return calibration


def evaluate(config: Config, result: Fit, split: Split, saved: bool) -> Evaluation | None:
    """The best checkpoint on the test split: RecBole's metrics, then per-user, per-type and group keys.

    A multi-process run ends its process group after RecBole's evaluation: what remains is rank 0's
    alone, and the other ranks get None.
    """
    start = time.perf_counter()
    trainer = result.trainer
    leader = is_leader(config)
    test_result = dict(trainer.evaluate(split.test_data, load_best_model=saved, show_progress=config["show_progress"]) or {})
    if not config["single_spec"]:
        dist.destroy_process_group()
        if not leader:
            return None
    cases, per_user = {}, None
    if split.test_data:
        full = evaluate_full(trainer, result.train_data, split.test_data, config["per_type_eval"], config["show_progress"])
        test_result.update({k: v for k, v in full.metrics.items() if k not in test_result})
        cases, per_user = full.cases, per_user_record(full.per_user)
    return Evaluation(test_result, cases, per_user, time.perf_counter() - start)


def result_record(config: Config, split: Split, result: Fit, evaluation: Evaluation, foundation: Foundation | None,
                  saved: bool) -> dict[str, Any]:  # fmt: skip
    """The run's record: valid and test metrics, times, config, seed and versions."""
    trainer = result.trainer
    foundation_time = foundation.train_time_s if foundation is not None else None
    best = result.best
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "seed": config["seed"],
        "best_valid_score": result.best_valid_score,
        "best_valid_result": result.best_valid_result,
        "test_result": evaluation.test_result,
        "test_cases_by_type": evaluation.cases,
        "evaluation_split": split.evaluation_split,  # the validation and test cases scored (protocol.split_fingerprint)
        "per_user": evaluation.per_user,  # {"users": [token, ...], "metrics": {"hit@10": [value per user], ...}} (test split)
        # a model built on a foundation (GFM) counts the foundation's training too, cached or not
        "train_time_s": round(result.train_time + (foundation_time or 0.0), 3),
        "foundation_train_time_s": foundation_time,
        # the foundation this model read, or the one this run wrote (HGNN)
        "foundation_path": foundation.path if foundation is not None else getattr(trainer, "foundation_path", None),
        # the epoch whose checkpoint is tested, and the training time it took to get there
        "best_epoch": best.get("epoch"),
        "train_time_to_best_s": round(best["seconds"] + (foundation_time or 0.0), 3) if best else None,
        # benchmark hook: how training ended (RecBole's early_stopping counts cur_step past stopping_step)
        "epochs_trained": len(trainer.train_loss_dict),
        # a run resumed from its snapshot (recbole_gfm.run.resume): the epoch it went on from
        "resumed_at_epoch": result.resumed_at,
        "stopped_early": trainer.cur_step > trainer.stopping_step,
        "eval_time_s": round(evaluation.seconds, 3),
        "saved_model_file": trainer.saved_model_file if saved else None,
        "config": to_plain(config),
        "versions": package_versions(),
    }


def write_result(config: Config, record: dict[str, Any]) -> str | None:
    """``<results_dir>/<model>-<dataset>-<time>.json`` (atomic, hashed); None when ``results_dir`` is empty."""
    if not config["results_dir"]:
        return None
    path = os.path.join(config["results_dir"], f"{config['model']}-{config['dataset']}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    write_json(path, to_plain(record))
    getLogger().info(set_color("result file", "yellow") + f": {path}")
    return path
