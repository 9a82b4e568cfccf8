"""The run, as RecBole's ``quick_start`` has it: config -> data -> foundation -> model -> fit -> evaluate -> result.

Mirrors ``recbole.quick_start.run_recbole`` but never imports ``recbole.quick_start`` (it imports
ray 2.6, which no longer imports on today's stack), finds plugin models and trainers first
(:mod:`recbole_gfm.registry`), prepares what a model is built from before building it
(:mod:`recbole_gfm.run.stages`), and writes every result with its resolved config, seed and
package versions. Multi-process runs take RecBole's keys (:mod:`recbole_gfm.run.launch`).
"""

from __future__ import annotations

from logging import getLogger
from typing import Any, Callable

import torch
from recbole.utils import dict2str, init_logger, init_seed, set_color

from recbole_gfm.compat import is_leader
from recbole_gfm.config import Config
from recbole_gfm.data.validate import validate_atomic_files
from recbole_gfm.settings import check_resolved
from recbole_gfm.run.launch import RunJob, launch_plan, rank0_first, spawn, without_multi_process_keys
from recbole_gfm.run.stages import (
    build_model, check_dataset_files, evaluate, fit, model_inputs, prepare_data, result_record, update_after_training,
    write_result,
)  # fmt: skip


def run(
    model: str | type | None = None,
    dataset: str | None = None,
    config_file_list: list[str] | None = None,
    config_dict: dict[str, Any] | None = None,
    cmd_overrides: dict[str, str] | None = None,
    saved: bool = True,
    evaluate_test: bool = True,
    callback_fn: Callable[[int, float], None] | None = None,
    foundation_callback_fn: Callable[[int, float], None] | None = None,
    on_split: Callable[[str], None] | None = None,
) -> dict[str, Any] | None:
    """Train ``model`` on ``dataset``, evaluate the best checkpoint on the test split.

    Returns the result record (also written to ``<results_dir>/<model>-<dataset>-<time>.json``
    unless ``results_dir`` is empty): valid and test metrics, times, config, seed and versions.
    With ``per_type_eval`` the test metrics also hold per-item-type, warm / cold and coverage keys
    (:mod:`recbole_gfm.run.evaluation`), computed on the best checkpoint already loaded; when some
    test users have no train interaction, new / returning-user keys too. ``record["per_user"]``
    holds the test split's per-user metric values (:mod:`recbole_gfm.run.per_user`).

    With ``nproc`` > 1 or ``world_size`` > 1 (:func:`~recbole_gfm.run.launch.launch_plan`) the
    ranks of this machine are spawned here and the record is rank 0's (None on a machine without
    rank 0); the callbacks then run in rank 0 and must be picklable.

    For the benchmark (:mod:`recbole_gfm.bench.runner`, :mod:`recbole_gfm.bench.search`): with
    ``evaluate_test=False`` the test split is never evaluated (a search trial is scored on the
    validation split only; the record's test keys are empty); ``callback_fn(epoch, valid_score)``
    is called at each validation, as RecBole's ``Trainer.fit`` calls its own; the record gives
    ``epochs_trained`` and ``stopped_early`` (ended by early stopping, not by ``epochs``);
    ``on_split(fingerprint)`` is called once the split is built, before anything is trained, with
    :func:`recbole_gfm.data.protocol.split_fingerprint` of its validation and test cases (a board
    checks there that the split is the board's; not for a run that does not evaluate the test
    split); the record keeps it as ``evaluation_split``.
    """
    config = Config(model, dataset, config_file_list, config_dict, cmd_overrides)
    check_resolved(config.final_config_dict)  # what training will need of the settings, before any data
    job = RunJob(model, dataset, config_file_list, without_multi_process_keys(config_dict), without_multi_process_keys(cmd_overrides),
                 saved, evaluate_test, callback_fn, foundation_callback_fn, on_split)  # fmt: skip
    plan = launch_plan(config) if config["single_spec"] else None  # a rank (local_rank given) runs as it is
    if plan is None:
        return run_process(config, job)
    check_dataset_files(config)  # before spawning anything
    return spawn(plan, job, run_process)


def run_process(config: Config, job: RunJob) -> dict[str, Any] | None:
    """:func:`run` in this process: the whole run, or this rank's part of a multi-process one (rank 0's record, None elsewhere)."""
    leader = is_leader(config)
    check_dataset_files(config)
    validate_atomic_files(config)  # bad data: an error naming the file, line and field, before RecBole reads it
    init_seed(config["seed"], config["reproducibility"])
    # RecBole's init_seed only pins cuDNN; CPU scatter/index_put backward (HGNN) also needs this
    torch.use_deterministic_algorithms(config["reproducibility"], warn_only=True)
    if leader:  # one log file per run; the other ranks' errors still reach stderr
        init_logger(config)
    logger = getLogger()
    logger.info(config)

    split = prepare_data(config, job.evaluate_test, job.on_split)
    foundation = None
    with rank0_first(config):  # the foundation and the caches a model's inputs fill are written once
        if model_inputs(config):
            # imported by the runs of models that read inputs only: a RecBole model's run carries none of their code
            from recbole_gfm.run import inputs

            foundation = inputs.prepare_foundation(config, split, job.foundation_callback_fn if leader else None)
            model = inputs.build_with_inputs(config, split, foundation)
        else:
            model = build_model(config, split)
    logger.info(model)
    result = fit(config, model, split, job.saved, job.callback_fn, leader, foundation.path if foundation else None)
    calibration = update_after_training(config, result, split, job.saved)
    evaluation = evaluate(config, result, split, job.saved)
    if evaluation is None:  # a rank other than 0: the record is rank 0's
        return None
    logger.info(set_color("best valid ", "yellow") + f": {dict2str(result.best_valid_result)}")
    logger.info(set_color("test result", "yellow") + f": {dict2str(evaluation.test_result)}")
    record = result_record(config, split, result, evaluation, foundation, job.saved)
    record["calibration"] = calibration
    path = write_result(config, record)
    if path:
        record["result_file"] = path
    return record
