"""Leaderboards: a grid of models x datasets x seeds from one YAML file, tuned, resumable, one lock per board.

Every cell is one :func:`recbole_gfm.quick_start.run` in its own Python process (a crash or a memory
blow-up loses one cell, and every cell starts from a clean RNG state). A finished cell is stored
atomically as ``<output_dir>/cells/<label>__<dataset>__seed<seed>__<fingerprint>.json`` (its run
record, with a sha256 content hash) and ``<same name>.per_user.npz`` (its per-user test metric
values, for significance tests afterwards; :mod:`recbole_gfm.leaderboard`). The fingerprint covers
the fully resolved config, the dataset's files, this package's code and the package versions, so a
re-run skips exactly the cells whose inputs have not changed, a killed run loses nothing finished,
and a damaged cell is named in a warning, moved aside (``*.corrupt``) and run again.

Benchmark file (paths relative to the file; a model is one line under ``models``)::

    protocol: temporal                 # properties/protocol/<name>.yaml (optional)
    config_files: [extra.yaml]         # shared properties files (optional)
    config: {eval_batch_size: 40960}   # shared settings (optional)
    datasets: {ml-100k-typed: {}}      # name: settings for that dataset
    models:                            # label: settings for that model (model: Name if label differs)
      Pop: {}
      LightGCN: {learning_rate: 0.002, max_epochs: 10}   # a row's own cap overrides the file's
      GFM-noGNN: {model: GFM, use_foundation: False}
    seeds: [2020, 2021]
    max_epochs: 5                      # optional cap; rows that reach it are marked "capped" in the table
    columns: [hit@10, ndcg@10]         # leaderboard metrics (default: every overall metric)
    type_columns: [hit@10]             # metrics shown per item type, warm and cold (default: first column)
    reference: GFM-noGNN               # optional: every row is also tested against this row
    jobs: 2                            # cells run at a time (default 1; --jobs N overrides), the cores shared
    search:                            # optional: budget-matched tuning (recbole_gfm.search)
      trials: 8                        # one budget for every row that has a space
      seed: 2020                       # the trials' seed (default: the first of seeds)
      metric: ndcg@10                  # validation metric to optimise (default: each row's valid_metric)
      startup_trials: 10               # TPE's first random trials (default: Optuna's 10)
      pruner: median                   # optional: Optuna's median pruner stops trials below the median curve
      prune_warmup: 5                  # validations every trial runs before it can be pruned (default 5)
      spaces:                          # label: {setting: {choice | uniform | loguniform | int: values}}
        LightGCN: {learning_rate: {loguniform: [1.0e-4, 1.0e-2]}, n_layers: {choice: [1, 2, 3]}}
    output_dir: results/benchmark/quick  # default: results/benchmark/<file name>

A row with a space is tuned first: ``search.trials`` runs scored on the validation split only (the
test split is never evaluated during the search), each stored as ``<output_dir>/search/<label>__
<dataset>__trial<k>__<study>.json``; the best trial's settings then make the row's seed cells.

Before running anything the whole file is checked: every cell's config resolves, the dataset files
exist, known incompatible combinations (a sequential model under a random-order split, a time
ordered split without the time field, a knowledge model without its graph files) and every search
space key are caught, each error naming the file, the row and the fix. Only one run of a board at
a time: ``<output_dir>/.lock`` (``fcntl.flock``) holds the owner's pid. Child processes die with
the benchmark, even after kill -9 of it (Linux: ``PR_SET_PDEATHSIG``). Each running cell prints a
line per validation (epoch, best validation score so far, elapsed time) whatever the log level;
its full output is kept in ``<output_dir>/logs/<cell>.log``.
"""

from __future__ import annotations

import ctypes
import difflib
import fcntl
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterator

import optuna
import torch
from recbole.trainer import TraditionalTrainer
from recbole.utils import ModelType, set_color

from recbole_gfm.artifacts import (
    file_fingerprint, fingerprint, package_versions, result_code_fingerprint, settings_fingerprint, write_json,
)  # fmt: skip
from recbole_gfm.board import Benchmark, Cell, Row
from recbole_gfm.compat import to_plain
from recbole_gfm.config import Config, ConfigError, get_model, load_yaml
from recbole_gfm.leaderboard import load_or_quarantine, read_cell, warn, write_cell, write_leaderboard
from recbole_gfm.protocol import protocol_file
from recbole_gfm.quick_start import check_dataset_files, get_trainer, run
from recbole_gfm.resume import snapshots
from recbole_gfm.search import (
    Pruning, SearchResult, TrialNotStored, check_space, direction, parse_search, pruned_record,
    pruning_job, run_search, search_metric, study_fingerprint, trial_job, trial_record,
)  # fmt: skip

KEYS = {
    "name", "description", "protocol", "config_files", "config", "datasets", "models", "seeds",
    "max_epochs", "columns", "type_columns", "output_dir", "reference", "search", "jobs",
}  # fmt: skip


class BenchmarkError(ConfigError):
    """A problem in a benchmark file (or its board); the message names the file and the key."""


class _NoData(ConfigError):
    """A dataset's atomic files are missing (reported once per dataset, not once per row)."""


def _error(path: str, key: str, message: str) -> BenchmarkError:
    return BenchmarkError(f"{path}: '{key}': {message}")


def _mapping(value: Any, path: str, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {v: {} for v in value}
    if not isinstance(value, dict):
        raise _error(path, key, f"expected a mapping (name: settings) or a list of names, got {type(value).__name__}.")
    for name, settings in value.items():
        if settings is not None and not isinstance(settings, dict):
            raise _error(path, f"{key}.{name}", f"settings must be a mapping, got {settings!r}.")
    return {str(name): dict(settings or {}) for name, settings in value.items()}


def _files(value: Any, base: str, path: str, key: str) -> list[str]:
    if value is None:
        return []
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list):
        raise _error(path, key, "expected a file name or a list of them.")
    resolved = []
    for name in files:
        full = name if os.path.isabs(name) else os.path.normpath(os.path.join(base, name))
        if not os.path.isfile(full):
            raise _error(path, key, f"config file '{name}' not found (looked for {full}).")
        resolved.append(full)
    return resolved


def _data_fingerprint(config: Config) -> str:
    """Hash of the dataset's atomic files, so re-prepared data never reuses stale cells."""
    check_dataset_files(config)
    folder, name = config["data_path"], config["dataset"]
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith(f"{name}."))
    return file_fingerprint(*files)


def incompatibilities(config: Config) -> list[str]:
    """Combinations RecBole would only refuse after loading the data (or that fail later), each with its fix."""
    problems = []
    order = (config["eval_args"] or {}).get("order")
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL and order != "TO":
        problems.append(
            f"{config['model']} is a sequential model, which RecBole trains only on time-ordered interactions "
            f"(eval_args order TO), but this row's split orders them {order} (RecBole would stop after loading the "
            "data: \"The ordering args for sequential recommendation has to be 'TO'\"). Run it under protocol loo "
            "or temporal (in another benchmark file), or give the row eval_args with order TO."
        )
    load_col, time_field = config["load_col"], config["TIME_FIELD"]
    if order == "TO" and isinstance(load_col, dict) and time_field not in (load_col.get("inter") or []):
        problems.append(
            f"the split orders interactions by time (eval_args order TO), but load_col does not load the time "
            f"field '{time_field}': add it to load_col's inter columns."
        )
    if config["MODEL_TYPE"] == ModelType.KNOWLEDGE:
        for suffix in ("kg", "link"):
            needed = os.path.join(config["data_path"], f"{config['dataset']}.{suffix}")
            if not os.path.isfile(needed):
                problems.append(
                    f"{config['model']} is a knowledge-aware model and needs {needed}: add the dataset's knowledge "
                    "graph files (.kg, .link), or drop the row."
                )
    return problems


def _resolve(bench: Benchmark, label: str, model: str, dataset: str, files: list[str], given: dict, cap: int | None,
             space: tuple[str, ...] = ()) -> tuple[Row, Config]:  # fmt: skip
    """The row's resolved settings, (capped) epochs and fingerprints; its Config for further checks.

    ``space``: the keys a search varies, left out of the search's own fingerprint.
    """
    config = Config(model, dataset, files, given, bench.cmd_overrides)
    one_pass = issubclass(get_trainer(config), TraditionalTrainer)
    settings, epochs, capped_from = dict(given), config["epochs"], None
    if one_pass:
        epochs = 1
    elif cap is not None and epochs > cap:
        settings["epochs"] = cap
        epochs, capped_from = cap, config["epochs"]
    if dataset not in bench.data_hashes:
        try:
            bench.data_hashes[dataset] = _data_fingerprint(config)
        except ConfigError as e:
            raise _NoData(str(e)) from None
    resolved = {**settings_fingerprint(to_plain(config), also_ignore={"seed"}), "epochs": epochs}  # the seed: the cell's part
    base = {k: v for k, v in resolved.items() if k not in space}
    data = bench.data_hashes[dataset]
    row = Row(
        label, model, dataset, files, dict(given), settings, cap, epochs, capped_from, one_pass,
        fingerprint(label, resolved, data, bench.code), tuple(bench.seeds),
        str(config["valid_metric"]).lower(), bool(config["valid_metric_bigger"]),
    )  # fmt: skip
    if bench.search is not None and label in bench.search.spaces:
        metric = search_metric(bench.search, config)
        base_fp = fingerprint(label, base, data, bench.code)
        row = replace(row, study=study_fingerprint(bench.search, label, base_fp, metric), search_metric=metric,
                      maximize=direction(metric) == "maximize")  # fmt: skip
    return row, config


def load_benchmark(path: str, cmd_overrides: dict[str, str] | None = None, jobs: int | None = None) -> Benchmark:
    """Parse and check a benchmark file and resolve every row's config (no data is loaded).

    Every problem found (a config that does not resolve, a missing dataset, an incompatible
    combination, a bad search space) is reported at once, before anything runs.
    """
    spec = load_yaml(path)
    base = os.path.dirname(os.path.abspath(path))
    for key in spec:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            raise _error(path, key, "unknown key." + (f" Did you mean '{close[0]}'?" if close else f" Known: {', '.join(sorted(KEYS))}."))
    for key in ("models", "datasets"):
        if not spec.get(key):
            raise _error(path, key, "missing: a benchmark needs at least one entry.")
    seeds = spec.get("seeds", [2020])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise _error(path, "seeds", f"expected a list of integers, got {seeds!r}.")
    jobs = spec.get("jobs", 1) if jobs is None else jobs
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise _error(path, "jobs", f"expected a positive integer (cells run at a time), got {jobs!r}.")
    max_epochs = spec.get("max_epochs")
    if max_epochs is not None and (not isinstance(max_epochs, int) or max_epochs < 1):
        raise _error(path, "max_epochs", f"expected a positive integer, got {max_epochs!r}.")
    shared = spec.get("config") or {}
    if not isinstance(shared, dict):
        raise _error(path, "config", "expected a mapping of settings.")
    try:
        protocol = [protocol_file(spec["protocol"])] if spec.get("protocol") else []
    except ConfigError as e:
        raise _error(path, "protocol", str(e)) from None
    shared_files = protocol + _files(spec.get("config_files"), base, path, "config_files")
    datasets = _mapping(spec["datasets"], path, "datasets")
    models = _mapping(spec["models"], path, "models")
    for label, settings in models.items():
        try:
            get_model(settings.get("model", label))
        except ConfigError as e:
            raise _error(path, f"models.{label}", str(e)) from None
    reference = spec.get("reference")
    if reference is not None and reference not in models:
        raise _error(path, "reference", f"'{reference}' is not a label under models ({', '.join(models)}).")

    name = spec.get("name") or os.path.splitext(os.path.basename(path))[0]
    bench = Benchmark(
        name=name,
        path=path,
        output_dir=spec.get("output_dir") or os.path.join("results", "benchmark", name),
        rows=[],
        seeds=seeds,
        columns=spec.get("columns"),
        type_columns=spec.get("type_columns"),
        reference=reference,
        search=parse_search(spec.get("search"), path, list(models), seeds),
        cmd_overrides=dict(cmd_overrides or {}),
        # the plugin's code and the package versions: a cell made by other code is run again
        code=(result_code_fingerprint(), package_versions()),
        jobs=jobs,
    )
    problems: list[str] = []
    for dataset, dataset_settings in datasets.items():
        dataset_files = _files(dataset_settings.pop("config_files", None), base, path, f"datasets.{dataset}.config_files")
        for label, model_settings in models.items():
            model_settings = dict(model_settings)
            model = model_settings.pop("model", label)
            row_cap = model_settings.pop("max_epochs", max_epochs)
            if row_cap is not None and (not isinstance(row_cap, int) or row_cap < 1):
                raise _error(path, f"models.{label}.max_epochs", f"expected a positive integer, got {row_cap!r}.")
            model_files = _files(model_settings.pop("config_files", None), base, path, f"models.{label}.config_files")
            space = tuple(bench.search.spaces.get(label, {})) if bench.search else ()
            where = f"models.{label} x datasets.{dataset}"
            try:
                row, config = _resolve(bench, label, model, dataset, shared_files + dataset_files + model_files,
                                       {**shared, **dataset_settings, **model_settings}, row_cap, space)  # fmt: skip
            except _NoData as e:
                problems.append(str(_error(path, f"datasets.{dataset}", str(e))))
                continue
            except ConfigError as e:
                problems.append(str(_error(path, where, str(e))))
                continue
            problems += [str(_error(path, where, p)) for p in incompatibilities(config)]
            if bench.search is not None and label in bench.search.spaces:
                problems += check_space(bench.search, label, config, path)
            bench.rows.append(row)
    problems = list(dict.fromkeys(problems))  # a missing dataset or a bad space: once, not once per row
    if len(problems) == 1:
        raise BenchmarkError(problems[0])
    if problems:
        raise BenchmarkError(f"{path}: {len(problems)} problems; nothing was run:\n" + "\n".join(problems))
    return bench


def tuned_row(bench: Benchmark, row: Row, params: dict[str, Any]) -> Row:
    """``row`` with the search's ``params`` over its given settings, resolved again (capped, fingerprinted)."""
    tuned, _ = _resolve(bench, row.label, row.model, row.dataset, row.config_files, {**row.given, **params}, row.cap)
    return replace(tuned, study=row.study, search_metric=row.search_metric, maximize=row.maximize)


def cell_path(bench: Benchmark, cell: Cell) -> str:
    return os.path.join(bench.output_dir, "cells", f"{cell.name}.json")


# ---------------------------------------------------------------------------------------------
# Child processes: one per cell or trial; they die with the benchmark, their output goes to a log

PROGRESS = "@@progress"  # starts a child's progress line, which the benchmark prints
_BAR = re.compile(r"\d+/\d+ \[")  # a tqdm bar (shown when the run's show_progress is on)
BAR_EVERY_S = 10.0
_PR_SET_PDEATHSIG = 1
_libc = None


def _die_with_parent(parent: int) -> Callable[[], None]:
    """``preexec_fn`` for a child: the kernel kills it when the benchmark dies, even by kill -9 (Linux)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork: nothing to load in the child

    def preexec() -> None:
        if _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(1)  # cannot be tied to the parent, or the parent died already

    return preexec


def pump(stream, log, show: Callable[[str], None]) -> None:
    """Copy a child's output to its ``log``; ``show`` its progress lines and, every BAR_EVERY_S, a progress bar."""
    pending, last_bar = b"", -math.inf
    while chunk := stream.read1(1 << 16):
        log.write(chunk)
        log.flush()
        *segments, pending = re.split(rb"[\r\n]", pending + chunk)
        for segment in segments:
            text = segment.decode(errors="replace").strip()
            if text.startswith(PROGRESS):
                show(text[len(PROGRESS) :].strip())
            elif _BAR.search(text) and time.monotonic() - last_bar >= BAR_EVERY_S:
                show(text)
                last_bar = time.monotonic()


def _child_env() -> dict[str, str]:
    """The child imports this very recbole_gfm (whose code the cell fingerprints name), whatever its cwd."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


_running: set[subprocess.Popen] = set()  # the children of this benchmark, stopped with it
_running_lock = threading.Lock()
_stopping = threading.Event()  # set when the benchmark stops: a child started after that is killed at once


def run_child(job: dict[str, Any], log_path: str, show: Callable[[str], None]) -> int:
    """Run one cell or trial in a child process that dies with this one; returns its exit code."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    preexec = _die_with_parent(os.getpid()) if sys.platform.startswith("linux") else None
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recbole_gfm.benchmark", "--cell", json.dumps(job)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=preexec,
            env=_child_env(),
        )  # fmt: skip
        with _running_lock:
            _running.add(proc)
            if _stopping.is_set():
                proc.kill()
        try:
            pump(proc.stdout, log, show)
            return proc.wait()
        except BaseException:  # Ctrl-C or SIGTERM of the benchmark: do not leave the child running
            proc.kill()
            proc.wait()
            raise
        finally:
            with _running_lock:
                _running.discard(proc)


def stop_children() -> None:
    """Kill every running child (the benchmark is stopping): their cells are not stored, so they run again next time."""
    with _running_lock:
        _stopping.set()
        for proc in _running:
            proc.kill()


def cell_threads(jobs: int) -> int | None:
    """Torch threads per child when ``jobs`` cells share this machine's cores (None: torch's default)."""
    if jobs == 1:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)


def _job(bench: Benchmark, row: Row, seed: int, out: str, evaluate_test: bool, threads: int | None) -> dict[str, Any]:
    return {
        "threads": threads,
        "model": row.model,
        "dataset": row.dataset,
        "config_files": row.config_files,
        "config_dict": {
            **row.settings,
            "seed": seed,
            "results_dir": "",
            # one folder per cell: RecBole names a checkpoint <model>-<time to the second>.pth, so two
            # cells of one model started in the same second (jobs > 1) would save to one file
            "checkpoint_dir": os.path.join(bench.output_dir, "checkpoints", os.path.basename(out).removesuffix(".json")),
            "text_show_progress": True,  # a long encoding shows its bar (printed every BAR_EVERY_S)
        },
        "cmd_overrides": bench.cmd_overrides,
        "evaluate_test": evaluate_test,
        "progress": {"metric": row.valid_metric, "bigger": row.valid_bigger},
        "out": out,
    }


class _Progress:
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


class _PrunedProgress:
    """:class:`_Progress`, then the trial's pruner: raises ``optuna.TrialPruned`` to stop the trial."""

    def __init__(self, progress: _Progress, pruner: Pruning):
        self.progress, self.pruner = progress, pruner

    def __call__(self, epoch: int, score: float) -> None:
        self.progress(epoch, score)
        if self.pruner(epoch, score):
            raise optuna.TrialPruned()


def child_main(job: dict[str, Any]) -> None:
    """In the child: run the cell (or trial) and store it atomically.

    A cell stores its record and its per-user test vectors (:func:`recbole_gfm.leaderboard.write_cell`);
    a trial (``job["trial"]``), run on the validation split only, its trial file.
    """
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    start, start_time = time.perf_counter(), time.time()
    progress = callback = _Progress(**job["progress"])
    if job.get("pruning"):
        callback = _PrunedProgress(progress, Pruning(job["pruning"], job["trial"]["params"], job["trial"]["distributions"]))
    try:
        record = run(
            job["model"], job["dataset"], job["config_files"], job["config_dict"], job["cmd_overrides"],
            saved=job["evaluate_test"], evaluate_test=job["evaluate_test"], callback_fn=callback,
            foundation_callback_fn=_Progress("ndcg@10", True, stage="foundation "),
        )  # fmt: skip
    except optuna.TrialPruned:
        print(f"{PROGRESS} pruned after epoch {max(progress.curve) + 1} (Optuna's median pruner)", flush=True)
        seconds = time.perf_counter() - start
        write_json(job["out"], pruned_record(job["trial"], progress.curve, progress.bigger, seconds))
        return
    record.update(job.get("meta", {}), wall_time_s=round(time.perf_counter() - start, 3), started_at=start_time,
                  torch_threads=torch.get_num_threads())
    per_user = record.pop("per_user")
    if "trial" in job:
        write_json(job["out"], trial_record(**job["trial"], record=to_plain(record), curve=progress.curve))
    else:
        write_cell(job["out"], to_plain(record), per_user)


# ---------------------------------------------------------------------------------------------
# The run


@contextmanager
def board_lock(output_dir: str) -> Iterator[str]:
    """Hold ``<output_dir>/.lock`` (``fcntl.flock``, holding this pid) or refuse: one run per board at a time."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise BenchmarkError(
                f"{path}: this board is being run by another process (pid {owner}). Wait for it to finish, or stop "
                f"it (kill {owner}) and run again: two runs of one board would run the same cells twice."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock (a killed process's lock is released by the kernel)


def run_benchmark(path: str, cmd_overrides: dict[str, str] | None = None, jobs: int | None = None) -> int:
    """Run (or resume) every search and cell, then write the leaderboard. Returns the number of failed cells.

    Searches run first, one trial at a time (each trial's sampler reads the ones before it); then
    the cells, ``jobs`` at a time (``--jobs`` or the file's ``jobs``), each child with its share of
    the cores as torch threads. A foundation or text cache two cells need is made once
    (:func:`recbole_gfm.artifacts.exclusive`).
    """
    bench = load_benchmark(path, cmd_overrides, jobs)
    with board_lock(bench.output_dir):
        tuned = sum(row.tuned for row in bench.rows)
        cells = sum(len(row.seeds) for row in bench.rows)
        searches = f", {tuned} rows tuned with {bench.search.trials} trials each" if tuned else ""
        at_once = f", {bench.jobs} at a time ({cell_threads(bench.jobs)} torch threads each)" if bench.jobs > 1 else ""
        print(set_color(f"benchmark {bench.name}: {cells} cells{searches}{at_once} -> {bench.output_dir}", "green"), flush=True)
        start = time.perf_counter()
        # SIGTERM becomes SystemExit, so the running children are stopped instead of orphaned
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        try:
            for i, row in enumerate(bench.rows):
                if row.tuned:
                    bench.rows[i] = _search(bench, row)
            queue = [Cell(row, seed) for row in bench.rows for seed in row.seeds]
            counters = [f"[{k}/{cells}]" for k in range(1, cells + 1)]
            _stopping.clear()
            with ThreadPoolExecutor(bench.jobs, thread_name_prefix="cell") as pool:
                try:
                    done = list(pool.map(lambda c, n: c.row.ready and _run_or_skip(bench, n, c), queue, counters))
                except BaseException:  # Ctrl-C or SIGTERM: no new cell, the running ones stopped
                    pool.shutdown(wait=False, cancel_futures=True)
                    stop_children()
                    raise
            failed = done.count(False)
        finally:
            signal.signal(signal.SIGTERM, previous)
        paths = write_leaderboard(bench)
        print(set_color(f"{cells - failed}/{cells} cells done in {time.perf_counter() - start:.1f} s", "green"))
    with open(paths["md"]) as f:
        print(f.read())
    for kind, file in paths.items():
        print(f"{kind}: {file}")
    return failed


def _say(line: str) -> None:
    print(line, flush=True)


def _search(bench: Benchmark, row: Row) -> Row:
    """Run (or resume) ``row``'s search; the row with the chosen settings, or unchanged (not ready) if none finished."""
    spec = bench.search
    head = f"search {row.label} on {row.dataset}"

    def run_trial(number: int, params: dict[str, Any], out: str, previous: list[dict]) -> None:
        trial_row = tuned_row(bench, row, params)
        job = _job(bench, trial_row, spec.seed, out, evaluate_test=False, threads=None)  # trials run alone: every core
        job["trial"] = trial_job(spec, row.label, row.search_metric, row.study, number, params)
        job["pruning"] = pruning_job(spec, row.search_metric, previous)
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())
        print(f"{head}, trial {number + 1}/{spec.trials} ({shown}) ...", flush=True)
        log_path = os.path.join(bench.output_dir, "logs", os.path.basename(out).removesuffix(".json") + ".log")
        code = run_child(job, log_path, lambda line: _say(f"    {line}"))
        if not os.path.isfile(out):
            if code < 0:  # killed by a signal: nothing to store, the trial runs again next time
                raise TrialNotStored(f"{head}, trial {number + 1}: killed by signal {-code}; log: {log_path}")
            write_json(out, trial_record(**job["trial"], record=None, log=log_path, error=f"the run failed (exit {code})"))

    try:
        result: SearchResult = run_search(
            spec, row.label, row.dataset, row.search_metric, row.study, bench.output_dir, run_trial, say=_say, warn=warn
        )
    except TrialNotStored as e:
        print(set_color(f"{e}: the row's cells are not run", "red"), flush=True)
        return row
    if result.chosen is None:
        print(set_color(f"{head}: no trial finished; the row's cells are not run (see the trials' logs)", "red"), flush=True)
        return row
    return replace(tuned_row(bench, row, result.chosen["params"]), tuning=result.summary())


def _run_or_skip(bench: Benchmark, counter: str, cell: Cell) -> bool:
    """Run one cell unless it is stored already (and intact), printing its progress; False if it failed."""
    head = f"{counter} {cell.label} on {cell.dataset}, seed {cell.seed}"
    out = cell_path(bench, cell)
    if os.path.isfile(out) and load_or_quarantine(out) is not None:
        print(f"{head}: " + set_color("done before, skipped", "blue"), flush=True)
        return True
    print(f"{head} ...", flush=True)
    job = _job(bench, cell.row, cell.seed, out, evaluate_test=True, threads=cell_threads(bench.jobs))
    job["meta"] = {
        "label": cell.label,
        "fingerprint": cell.fingerprint,
        "row_fingerprint": cell.row_fingerprint,
        "epochs": cell.epochs,
        "epochs_capped_from": cell.capped_from,
        "one_pass": cell.row.one_pass,
        "tuning": cell.row.tuning,
        "parallel_cells": bench.jobs,
    }
    start = time.perf_counter()
    log_path = os.path.join(bench.output_dir, "logs", f"{cell.name}.log")
    who = f"{cell.label}, seed {cell.seed}: " if bench.jobs > 1 else ""  # whose line, when cells interleave
    code = run_child(job, log_path, lambda line: _say(f"    {who}{line}"))
    seconds = time.perf_counter() - start
    if code != 0 or not os.path.isfile(out):
        if code < 0:  # stopped by a signal: recbole_gfm.resume keeps the snapshot of its last validation
            again = "resumes it from its last validated epoch" if snapshots(job["config_dict"]["checkpoint_dir"]) else "starts it again"
            print(f"{head}: " + set_color(f"stopped after {seconds:.1f} s (signal {-code}); a re-run {again}", "yellow"), flush=True)
        else:
            print(f"{head}: " + set_color(f"FAILED after {seconds:.1f} s (exit {code}); log: {log_path}", "red"), flush=True)
        return False
    record = read_cell(out)
    name = (bench.columns or list(record["test_result"]) or ["no metric"])[0]
    print(
        f"{head}: {seconds:.1f} s (train {record['train_time_s']:.1f} s, eval {record['eval_time_s']:.1f} s), "
        f"test {name} {record['test_result'].get(name, math.nan):.4f}",
        flush=True,
    )
    return True


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--cell":
        import recbole_gfm  # noqa: F401  (compatibility fixes)

        child_main(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: python -m recbole_gfm.benchmark --cell JSON  (run benchmarks with run_recbole_gfm.py --benchmark FILE)")
