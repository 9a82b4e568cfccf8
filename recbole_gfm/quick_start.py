"""The run pipeline: config -> dataset -> split -> model -> RecBole Trainer -> evaluation -> result file.

Mirrors ``recbole.quick_start.run_recbole`` but never imports ``recbole.quick_start`` (it imports
ray 2.6, which no longer imports on today's stack), finds plugin models and trainers first, and
writes every result with its resolved config, seed and package versions.
"""

from __future__ import annotations

import importlib
import os
import time
from logging import getLogger
from typing import Any

import torch
from recbole.data import create_dataset as recbole_create_dataset
from recbole.utils import get_trainer as recbole_get_trainer
from recbole.utils import init_logger, init_seed, set_color

from recbole_gfm.artifacts import package_versions, write_json
from recbole_gfm.compat import to_plain
from recbole_gfm.config import Config, ConfigError
from recbole_gfm.evaluation import evaluate_full
from recbole_gfm.per_user import per_user_record
from recbole_gfm.protocol import data_preparation

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


def create_dataset(config: Config):
    """The model's own dataset class when it names one (``dataset_class``), RecBole's otherwise."""
    dataset_class = getattr(config.model_class, "dataset_class", None)
    if dataset_class is None:
        return recbole_create_dataset(config)
    return dataset_class(config)


def get_trainer(config: Config):
    """``recbole_gfm.trainer.<Model>Trainer`` if it exists, else RecBole's choice."""
    plugin_trainers = importlib.import_module("recbole_gfm.trainer")
    trainer = getattr(plugin_trainers, f"{config['model']}Trainer", None)
    return trainer or recbole_get_trainer(config["MODEL_TYPE"], config["model"])


def run(
    model: str | type | None = None,
    dataset: str | None = None,
    config_file_list: list[str] | None = None,
    config_dict: dict[str, Any] | None = None,
    cmd_overrides: dict[str, str] | None = None,
    saved: bool = True,
) -> dict[str, Any]:
    """Train ``model`` on ``dataset``, evaluate the best checkpoint on the test split.

    Returns the result record (also written to ``<results_dir>/<model>-<dataset>-<time>.json``
    unless ``results_dir`` is empty): valid and test metrics, times, config, seed and versions.
    With ``per_type_eval`` the test metrics also hold per-item-type, warm / cold and coverage keys
    (:mod:`recbole_gfm.evaluation`), computed on the best checkpoint already loaded; when some test
    users have no train interaction, new / returning-user keys too. ``record["per_user"]`` holds
    the test split's per-user metric values (:mod:`recbole_gfm.per_user`).
    """
    config = Config(model, dataset, config_file_list, config_dict, cmd_overrides)
    check_dataset_files(config)
    init_seed(config["seed"], config["reproducibility"])
    # RecBole's init_seed only pins cuDNN; CPU scatter/index_put backward (HGNN) also needs this
    torch.use_deterministic_algorithms(config["reproducibility"], warn_only=True)
    init_logger(config)
    logger = getLogger()
    logger.info(config)

    data = create_dataset(config)
    logger.info(data)
    train_data, valid_data, test_data = data_preparation(config, data)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_obj = config.model_class(config, train_data._dataset).to(config["device"])
    logger.info(model_obj)
    trainer = get_trainer(config)(config, model_obj)

    start = time.perf_counter()
    best: dict[str, float] = {}

    def note_best(epoch: int, _score: float) -> None:
        """RecBole's per-evaluation callback: early_stopping resets cur_step to 0 on a new best."""
        if trainer.cur_step == 0:
            best.update(epoch=epoch, seconds=time.perf_counter() - start)

    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"], callback_fn=note_best
    )
    train_time = time.perf_counter() - start
    start = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    eval_time = time.perf_counter() - start
    test_result = dict(test_result or {})
    # --- recbole_gfm.evaluation hook: per-user vectors and new / returning keys always, per-type keys with per_type_eval
    per_type_cases: dict[str, int] = {}
    per_user = None
    if test_data:
        start = time.perf_counter()
        full = evaluate_full(trainer, train_data, test_data, config["per_type_eval"], config["show_progress"])
        eval_time += time.perf_counter() - start
        test_result.update({k: v for k, v in full.metrics.items() if k not in test_result})
        per_type_cases, per_user = full.cases, per_user_record(full.per_user)
    # --- end of hook

    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    foundation_time = getattr(model_obj, "foundation_train_time_s", None)
    record = {
        "model": config["model"],
        "dataset": config["dataset"],
        "seed": config["seed"],
        "best_valid_score": best_valid_score,
        "best_valid_result": dict(best_valid_result or {}),
        "test_result": test_result,
        "test_cases_by_type": per_type_cases,
        "per_user": per_user,  # {"users": [token, ...], "metrics": {"hit@10": [value per user], ...}} (test split)
        # a model built on a foundation (GFM) counts the foundation's training too, cached or not
        "train_time_s": round(train_time + (foundation_time or 0.0), 3),
        "foundation_train_time_s": foundation_time,
        # the epoch whose checkpoint is tested, and the training time it took to get there
        "best_epoch": best.get("epoch"),
        "train_time_to_best_s": round(best["seconds"] + (foundation_time or 0.0), 3) if best else None,
        "eval_time_s": round(eval_time, 3),
        "saved_model_file": trainer.saved_model_file if saved else None,
        "config": to_plain(config),
        "versions": package_versions(),
    }
    results_dir = config["results_dir"]
    if results_dir:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = os.path.join(results_dir, f"{config['model']}-{config['dataset']}-{stamp}.json")
        write_json(path, to_plain(record))
        record["result_file"] = path
        logger.info(set_color("result file", "yellow") + f": {path}")
    return record
