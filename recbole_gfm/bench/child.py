"""One benchmark cell or search trial, in its own process: ``python -m recbole_gfm.bench.child JOB``.

The benchmark (:mod:`recbole_gfm.bench.runner`) starts one process per cell or trial
(:mod:`recbole_gfm.bench.process`), so a crash or a memory blow-up loses one cell, and every cell
starts from a clean random state. What the process needs is one :class:`Job`, passed as JSON.
It runs :func:`recbole_gfm.quick_start.run`, prints a progress line per validation for the
benchmark to show, and stores its result atomically: a cell its record and compact per-user test
values (:mod:`recbole_gfm.bench.cells`), a trial its trial file (:mod:`recbole_gfm.bench.search`).

A cell's record also names the code it ran with (:mod:`recbole_gfm.bench.record`): the commit,
and the fingerprint of every module of this package the run imported that can change a number.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
import torch

from recbole_gfm.artifacts import loaded_result_modules, machine, module_fingerprints, write_json
from recbole_gfm.bench.cells import compact_per_user, write_cell
from recbole_gfm.bench.search import Pruning, pruned_record, trial_record
from recbole_gfm.checkpoint import to_plain
from recbole_gfm.config import ConfigError
from recbole_gfm.quick_start import run

PROGRESS = "@@progress"  # starts a child's progress line, which the benchmark prints
CONFIG_ERROR_EXIT = 2  # a child that refused its settings (a ConfigError, e.g. another split) exits with this code


@dataclass
class Job:
    """Everything a cell's or trial's process needs, as plain data (it travels as JSON)."""

    model: str
    dataset: str
    config_files: list[str]
    config_dict: dict[str, Any]
    cmd_overrides: dict[str, str]
    out: str  # the cell's record or the trial's file
    valid_metric: str
    valid_bigger: bool
    evaluate_test: bool = True  # False for a trial: the test split is never scored
    threads: int | None = None  # torch threads (None: torch's default)
    meta: dict[str, Any] = field(default_factory=dict)  # what a cell's record adds (label, fingerprints, commit ...)
    per_user_keys: list[str] | None = None  # the per-user metrics a cell keeps (None: every one)
    expected_split: str | None = None  # the board's evaluation split: another one is refused before training
    final_checkpoint_dir: str | None = None  # where a finished cell's checkpoints go (None: they stay where they are)
    trial: dict[str, Any] | None = None  # a search trial (search.trial_job)
    pruning: dict[str, Any] | None = None  # its pruner (search.pruning_job)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Job":
        return cls(**json.loads(text))


class Progress:
    """RecBole's per-validation callback in the child: one line per validation for the benchmark to print.

    It keeps the validation curve (validated epoch, 0-based -> score) and the best so far.
    """

    def __init__(self, metric: str, bigger: bool, stage: str = ""):
        self.metric, self.bigger, self.stage = metric, bigger, stage
        self.best: tuple[int, float] | None = None
        self.curve: dict[int, float] = {}
        self.start = time.perf_counter()

    def __call__(self, epoch: int, score: float) -> None:
        self.curve[epoch] = score
        if self.best is None or (score >= self.best[1] if self.bigger else score <= self.best[1]):  # RecBole's rule
            self.best = (epoch, score)
        print(
            f"{PROGRESS} {self.stage}epoch {epoch + 1}: valid {self.metric} {score:.4f}, best {self.best[1]:.4f} (epoch {self.best[0] + 1}), "
            f"{time.perf_counter() - self.start:.1f} s",
            flush=True,
        )


class PrunedProgress:
    """:class:`Progress`, then the trial's pruner: raises ``optuna.TrialPruned`` to stop the trial."""

    def __init__(self, progress: Progress, pruner: Pruning):
        self.progress, self.pruner = progress, pruner

    def __call__(self, epoch: int, score: float) -> None:
        self.progress(epoch, score)
        if self.pruner(epoch, score):
            raise optuna.TrialPruned()


class SplitCheck:
    """``on_split`` of :func:`~recbole_gfm.quick_start.run`: refuse a split other than the board's, before training."""

    def __init__(self, expected: str | None, where: str):
        self.expected, self.where = expected, where

    def __call__(self, split: str) -> None:
        if self.expected is not None and split != self.expected:
            raise ConfigError(
                f"{self.where}: this row is scored on other validation / test cases (evaluation split {split}) than the "
                f"board's rows ({self.expected}): its dataset files or its split settings (eval_args, filters, load_col) "
                "differ from the board's. Use the board's data and protocol, so that its rows can be paired user by user."
            )


# Modules that only check and resolve settings: judged by the resolved settings a cell records
# (bench.record compares those), so editing a check or an error message leaves a row current.
SETTINGS_MODULES = frozenset({"recbole_gfm.config", "recbole_gfm.schema", "recbole_gfm.settings", "recbole_gfm.errors",
                              "recbole_gfm.data.validate"})  # fmt: skip


def code_identity(commit: dict[str, Any]) -> dict[str, Any]:
    """What a cell records of its code: the commit (``artifacts.git_state``) and the fingerprint of each
    module it imported that can change a number (:data:`SETTINGS_MODULES` aside)."""
    modules = [m for m in loaded_result_modules() if m not in SETTINGS_MODULES]
    return {**commit, "modules": module_fingerprints(modules)}


def child_main(job: Job) -> None:
    """Run the cell (or trial) and store it atomically."""
    if job.threads:
        torch.set_num_threads(job.threads)
    start, start_time = time.perf_counter(), time.time()
    progress = callback = Progress(job.valid_metric, job.valid_bigger)
    if job.pruning:
        callback = PrunedProgress(progress, Pruning(job.pruning, job.trial["params"], job.trial["distributions"]))
    meta = dict(job.meta)
    commit = meta.pop("commit", None) or {}
    label = meta.get("label") or (job.trial or {}).get("label") or job.model
    try:
        record = run(
            job.model, job.dataset, job.config_files, job.config_dict, job.cmd_overrides,
            saved=job.evaluate_test, evaluate_test=job.evaluate_test, callback_fn=callback,
            foundation_callback_fn=Progress("ndcg@10", True, stage="foundation "),
            on_split=SplitCheck(job.expected_split, f"row '{label}' on {job.dataset}"),
        )  # fmt: skip
    except optuna.TrialPruned:
        shutil.rmtree(job.config_dict["checkpoint_dir"], ignore_errors=True)  # a trial keeps no checkpoint
        print(f"{PROGRESS} pruned after epoch {max(progress.curve) + 1} (Optuna's median pruner)", flush=True)
        seconds = time.perf_counter() - start
        write_json(job.out, {**pruned_record(job.trial, progress.curve, progress.bigger, seconds), "code": code_identity(commit)})
        return
    except ConfigError as e:
        print(f"error: {e}", flush=True)
        sys.exit(CONFIG_ERROR_EXIT)
    record.update(meta, wall_time_s=round(time.perf_counter() - start, 3), started_at=start_time,
                  torch_threads=torch.get_num_threads(), curve=sorted(progress.curve.items()))  # fmt: skip
    if record.get("foundation_path"):  # the settings its foundation was trained with, which a board compares (bench.record)
        from recbole_gfm.foundation.store import Foundation  # here: a baseline's cell must not load (and record) foundation code

        record["foundation_config"] = Foundation.read(record["foundation_path"]).meta["config"]
    per_user = record.pop("per_user")
    if job.trial is not None:
        shutil.rmtree(job.config_dict["checkpoint_dir"], ignore_errors=True)  # a trial keeps no checkpoint
        write_json(job.out, {**trial_record(**job.trial, record=to_plain(record), curve=progress.curve), "code": code_identity(commit)})
        return
    if job.final_checkpoint_dir:  # a board of record keeps only unfinished cells' snapshots in its folder
        shutil.rmtree(job.final_checkpoint_dir, ignore_errors=True)
        os.makedirs(os.path.dirname(job.final_checkpoint_dir), exist_ok=True)
        os.replace(job.config_dict["checkpoint_dir"], job.final_checkpoint_dir)
        if record.get("saved_model_file"):
            record["saved_model_file"] = os.path.join(job.final_checkpoint_dir, os.path.basename(record["saved_model_file"]))
    record.update(code=code_identity(commit), machine=machine())
    write_cell(job.out, to_plain(record), compact_per_user(per_user, job.per_user_keys))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m recbole_gfm.bench.child JOB_JSON  (run benchmarks with run_recbole_gfm.py --benchmark FILE)")
    import recbole_gfm  # noqa: F401  (compatibility fixes)

    child_main(Job.from_json(sys.argv[1]))
