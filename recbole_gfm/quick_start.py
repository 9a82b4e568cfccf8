"""The run pipeline: config -> dataset -> split -> foundation -> model -> RecBole Trainer -> evaluation -> result.

Mirrors ``recbole.quick_start.run_recbole`` but never imports ``recbole.quick_start`` (it imports
ray 2.6, which no longer imports on today's stack), finds plugin models and trainers first, and
writes every result with its resolved config, seed and package versions.

Everything flows one way. The run builds the split once; a model that reads a foundation
(``uses_foundation``) gets it prepared first, from that same split (:func:`prepare_foundation`:
the cached artifact, or an HGNN trained here and stored), and its constructor only loads the
artifact that ``config['foundation_path']`` names. A model that trains on other batches than
user-item pairs names its loader (``train_loader``, e.g. HGNN's link-prediction batches).

**Multi-process runs** take RecBole's keys: ``nproc`` processes on this machine, ``world_size`` in
all (default ``nproc``), ranks ``offset .. offset + nproc - 1`` here, rank 0 reachable at
``ip:port``. :func:`run` spawns the ranks (as RecBole's ``run_recboles`` does) and returns rank 0's
record. Every rank builds the config, the data and the split; rank 0 prepares the foundation (and
any cache the model's constructor writes) and builds its model first while the others wait, then
they build theirs from what it wrote. RecBole's Trainer trains each rank on its shard of the
train loader (its DistributedSampler; HGNN's link loader too) with gradients all-reduced
(gloo on the CPU, nccl on CUDA: :mod:`recbole_gfm.compat`); rank 0 alone evaluates, on unsharded
loaders, and writes the checkpoint, the result file, the logs and any artifact.
"""

from __future__ import annotations

import copy
import ctypes
import importlib
import os
import pickle
import signal
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from logging import getLogger
from typing import Any, Callable

import psutil
import torch
import torch.distributed as dist
import torch.multiprocessing
from recbole.data import create_dataset as recbole_create_dataset
from recbole.utils import get_trainer as recbole_get_trainer
from recbole.utils import dict2str, init_logger, init_seed, set_color

from recbole_gfm.artifacts import exclusive, package_versions, write_json
from recbole_gfm.compat import is_leader, to_plain, wait_for_rank0
from recbole_gfm.config import MULTI_PROCESS_KEYS, Config, ConfigError
from recbole_gfm.data.validate import validate_atomic_files
from recbole_gfm.evaluation import evaluate_full
from recbole_gfm.foundation import artifact_dir, dataset_fingerprint, foundation_config, foundation_meta, is_complete
from recbole_gfm.per_user import per_user_record
from recbole_gfm.protocol import data_preparation
from recbole_gfm.resume import TrainingResume
from recbole_gfm.schema import check_resolved
from recbole_gfm.trainer import foundation_checkpoint

# Datasets this plugin can prepare from sources on this machine (recbole_gfm.data.prepare).
PREPARABLE = ("ml-1m", "ml-100k-typed", "ml-1m-typed")
_PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


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


@dataclass(frozen=True)
class Launch:
    """The processes of a multi-process run on this machine (RecBole's keys, resolved and checked)."""

    nproc: int  # processes on this machine
    world_size: int  # processes in all
    ip: str  # where rank 0 listens
    port: int
    offset: int  # rank of this machine's first process
    threads: int  # torch threads per process on the CPU (the machine's, shared)

    def settings(self, local_rank: int) -> dict[str, Any]:
        """The config keys of process ``local_rank`` of this machine."""
        return {
            "nproc": self.nproc, "world_size": self.world_size, "ip": self.ip, "port": self.port,
            "offset": self.offset, "local_rank": local_rank,
        }  # fmt: skip


def launch_plan(config: Config) -> Launch | None:
    """The multi-process launch ``config`` asks for (None: one process), or a ConfigError saying what is wrong.

    ``nproc`` (default 1) processes here, ``world_size`` in all (default ``nproc``; RecBole's -1 too),
    this machine's ranks from ``offset`` (default 0), rank 0 at ``ip`` (default localhost) : ``port``
    (default 5678). On CUDA each process needs its own GPU among ``gpu_id``.
    """
    def integer(key: str, default: int) -> int:
        value = config[key]
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}.")
        return value

    nproc = integer("nproc", 1)
    world_size = integer("world_size", -1)
    world_size = nproc if world_size == -1 else world_size
    offset = integer("offset", 0)
    if nproc < 1:
        raise ConfigError(f"nproc must be at least 1, got {nproc}.")
    if nproc == 1 and world_size == 1:
        return None
    if world_size < nproc or not 0 <= offset <= world_size - nproc:
        raise ConfigError(
            f"world_size={world_size}, nproc={nproc}, offset={offset}: this machine's ranks offset .. offset + nproc - 1 "
            "must lie in 0 .. world_size - 1 (world_size counts the processes of every machine)."
        )
    port = integer("port", 5678)
    if not 0 < port < 65536:
        raise ConfigError(f"port must be in 1 .. 65535, got {port}.")
    ip = str(config["ip"] or "localhost")
    if torch.device(config["device"]).type == "cuda":
        gpus = [g for g in str(config["gpu_id"]).split(",") if g.strip()]
        if nproc > min(len(gpus), torch.cuda.device_count()):
            raise ConfigError(
                f"nproc={nproc} on CUDA needs one GPU per process: gpu_id '{config['gpu_id']}' names {len(gpus)} and "
                f"this machine has {torch.cuda.device_count()}. Set gpu_id to {nproc} ids (e.g. --gpu_id="
                f"{','.join(map(str, range(nproc)))}), lower nproc, or run on the CPU (--use_gpu=False)."
            )
    if offset == 0:  # rank 0 runs here and listens on the port: it must be free
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("", port))
            except OSError as e:
                raise ConfigError(
                    f"port {port} is in use on this machine ({e.strerror}{port_holder(port)}): choose a free one with --port=N."
                ) from None
    return Launch(nproc, world_size, ip, port, offset, threads=max(1, torch.get_num_threads() // nproc))


def port_holder(port: int) -> str:
    """``", held by pid N (its command line)"`` for the processes listening on TCP ``port`` here that this
    user can see (psutil), or where to look when none can be seen."""
    try:
        pids = sorted({c.pid for c in psutil.net_connections(kind="tcp") if c.laddr and c.laddr.port == port and c.pid})
    except psutil.AccessDenied:
        pids = []
    holders = []
    for pid in pids:
        try:
            command = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            command = "?"
        holders.append(f"pid {pid} ({command[:160]})")
    if not holders:
        return f"; its process is not visible to this user: 'ss -ltnp sport = :{port}' as root names it"
    return ", held by " + ", ".join(holders)


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when process ``parent`` (the one that started it) dies, even
    by kill -9 (Linux's parent-death signal; elsewhere nothing). Exits at once if it is gone already."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the signal was set
        os._exit(1)


def single_process_view(config: Config) -> Config:
    """``config`` as a one-process run gives it to the configs built from it (the foundation's): its
    multi-process keys removed, so rank 0 trains the foundation alone, into the artifact a one-process
    run would write and read."""
    view = copy.copy(config)
    view.external_config_dict = {k: v for k, v in config.external_config_dict.items() if k not in MULTI_PROCESS_KEYS}
    return view


@contextmanager
def rank0_first(config: Config):
    """Rank 0 runs the block, then the other ranks do (reading what rank 0 wrote); one process: just the block."""
    distributed = not config["single_spec"]
    if distributed and not is_leader(config):
        wait_for_rank0()
    yield
    if distributed and is_leader(config):
        wait_for_rank0()


def training_data(config: Config, train_data):
    """The model's own train loader (``train_loader``: e.g. HGNN's link batches) or RecBole's."""
    loader = getattr(config.model_class, "train_loader", None)
    return train_data if loader is None else loader(config, train_data.dataset, shuffle=True)


def train_foundation(config: Config, train_data, valid_data, show_progress: bool = False, callback_fn=None) -> str:
    """Train the foundation of foundation config ``config`` on the run's split; store it; return its path.

    Early stopping on ``valid_data`` (the run's own validation split); the best encoder is kept in
    memory, so no checkpoint file is written.
    """
    init_seed(config["seed"], config["reproducibility"])
    model = config.model_class(config, train_data.dataset).to(config["device"])
    trainer = get_trainer(config)(config, model)
    trainer.fit(training_data(config, train_data), valid_data, saved=False, show_progress=show_progress, callback_fn=callback_fn)
    return trainer.foundation_path


def prepare_foundation(config: Config, train_data, valid_data, callback_fn=None) -> str | None:
    """Make sure the foundation a model reads exists; set ``config['foundation_path']``; return it.

    Nothing to do for models without one (``uses_foundation``) or when ``foundation_path`` is set.
    Otherwise the artifact of this run's split and its foundation settings
    (:func:`recbole_gfm.foundation.foundation_config`) is read from the cache, or trained now
    (``callback_fn(epoch, valid_score)`` after each of its validations).
    """
    uses = getattr(config.model_class, "uses_foundation", None)
    if uses is None or not uses(config):
        return None
    if not config["foundation_path"]:
        fconfig = foundation_config(single_process_view(config))
        path = artifact_dir(fconfig, train_data.dataset, foundation_checkpoint(fconfig, valid_data))
        with exclusive(path):  # runs that share the cache (parallel benchmark cells) train it once
            if not is_complete(path):
                getLogger().info(set_color(f"training the foundation ({fconfig['model']})", "green") + f" -> {path}")
                path = train_foundation(fconfig, train_data, valid_data, config["show_progress"], callback_fn)
        config["foundation_path"] = path
    getLogger().info(set_color("foundation", "blue") + f": {config['foundation_path']}")
    return config["foundation_path"]


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
) -> dict[str, Any] | None:
    """Train ``model`` on ``dataset``, evaluate the best checkpoint on the test split.

    Returns the result record (also written to ``<results_dir>/<model>-<dataset>-<time>.json``
    unless ``results_dir`` is empty): valid and test metrics, times, config, seed and versions.
    With ``per_type_eval`` the test metrics also hold per-item-type, warm / cold and coverage keys
    (:mod:`recbole_gfm.evaluation`), computed on the best checkpoint already loaded; when some test
    users have no train interaction, new / returning-user keys too. ``record["per_user"]`` holds
    the test split's per-user metric values (:mod:`recbole_gfm.per_user`).

    With ``nproc`` > 1 or ``world_size`` > 1 (:func:`launch_plan`) the ranks of this machine are
    spawned here and the record is rank 0's (None on a machine without rank 0); the callbacks then
    run in rank 0 and must be picklable.

    For the benchmark (:mod:`recbole_gfm.benchmark`, :mod:`recbole_gfm.search`): with
    ``evaluate_test=False`` the test split is never evaluated (a search trial is scored on the
    validation split only; the record's test keys are empty); ``callback_fn(epoch, valid_score)``
    is called at each validation, as RecBole's ``Trainer.fit`` calls its own; the record gives
    ``epochs_trained`` and ``stopped_early`` (ended by early stopping, not by ``epochs``).
    """
    config = Config(model, dataset, config_file_list, config_dict, cmd_overrides)
    check_resolved(config.final_config_dict)  # what training will need of the settings, before any data
    plan = launch_plan(config) if config["single_spec"] else None  # a rank (local_rank given) runs as it is
    if plan is None:
        return run_process(config, saved, evaluate_test, callback_fn, foundation_callback_fn)
    check_dataset_files(config)  # before spawning anything
    settings = {k: v for k, v in (config_dict or {}).items() if k not in MULTI_PROCESS_KEYS}
    overrides = {k: v for k, v in (cmd_overrides or {}).items() if k not in MULTI_PROCESS_KEYS}
    job = (model, dataset, config_file_list, settings, overrides, saved, evaluate_test, callback_fn, foundation_callback_fn)
    return spawn(plan, job)


def spawn(plan: Launch, job: tuple) -> dict[str, Any] | None:
    """Run ``job`` (:func:`run`'s arguments) in ``plan.nproc`` spawned processes; rank 0's record.

    As RecBole's ``run_recboles`` (``torch.multiprocessing.spawn``: a failed rank stops the others),
    but the record comes back through a file, not a pipe a large record would block on, and an
    error raised in a rank (a ConfigError ...) is raised here as it was. The ranks die with this
    process, however it ends (:func:`die_with_parent`): none trains on, or holds the port, alone.
    """
    with tempfile.TemporaryDirectory(prefix="recbole_gfm-ranks-") as outbox:
        try:
            torch.multiprocessing.spawn(_rank_main, args=(plan, job, outbox, os.getpid()), nprocs=plan.nproc, join=True)
        except torch.multiprocessing.ProcessRaisedException as failure:
            error = _read(outbox, "error")
            if error is None:
                raise
            raise error from failure
        return _read(outbox, "record")


def _rank_main(local_rank: int, plan: Launch, job: tuple, outbox: str, parent: int) -> None:
    """One spawned process: rank ``plan.offset + local_rank`` of the run, started by process ``parent``."""
    die_with_parent(parent)
    model, dataset, config_file_list, settings, overrides, saved, evaluate_test, callback_fn, foundation_callback_fn = job
    torch.set_num_threads(plan.threads)
    try:
        config = Config(model, dataset, config_file_list, {**settings, **plan.settings(local_rank)}, overrides)
        record = run_process(config, saved, evaluate_test, callback_fn, foundation_callback_fn)
    except BaseException as error:
        _write(outbox, "error", error)
        raise
    if record is not None:
        _write(outbox, "record", record)


def _write(outbox: str, name: str, value: Any) -> None:
    """Pickle ``value`` to ``<outbox>/<name>.pkl`` (the first writer wins; an unpicklable error is left to spawn's report)."""
    path = os.path.join(outbox, f"{name}.pkl")
    try:
        data = pickle.dumps(value)
    except Exception:
        return
    try:
        with open(path, "xb") as f:
            f.write(data)
    except FileExistsError:
        pass


def _read(outbox: str, name: str) -> Any:
    path = os.path.join(outbox, f"{name}.pkl")
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return pickle.load(f)


def run_process(
    config: Config,
    saved: bool = True,
    evaluate_test: bool = True,
    callback_fn: Callable[[int, float], None] | None = None,
    foundation_callback_fn: Callable[[int, float], None] | None = None,
) -> dict[str, Any] | None:
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

    data = create_dataset(config)
    logger.info(data)
    train_data, valid_data, test_data = data_preparation(config, data)
    if not evaluate_test:  # benchmark hook: a search trial never touches the test split
        test_data = None
    # recorded in checkpoints and results: serving rebuilds the split and checks it is this one
    config["split_fingerprint"] = dataset_fingerprint(train_data.dataset)
    with rank0_first(config):  # the foundation and the caches a constructor fills are written once
        foundation_path = prepare_foundation(config, train_data, valid_data, foundation_callback_fn if leader else None)
        foundation_time = foundation_meta(foundation_path).get("train_time_s", 0.0) if foundation_path else None
        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        model_obj = config.model_class(config, train_data.dataset).to(config["device"])
    logger.info(model_obj)
    train_data = training_data(config, train_data)
    # RecBole's ensure_dir checks, then creates: two ranks starting together race on it
    os.makedirs(config["checkpoint_dir"], exist_ok=True)
    trainer = get_trainer(config)(config, model_obj)

    resume = TrainingResume(config, trainer, train_data, foundation_path) if TrainingResume.applies(config, trainer) else None
    # the validation curve, the best epoch and its training time, kept across a resume
    restored = resume.restore(saved) if resume else None
    resumed_at = trainer.start_epoch if restored else None
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
            logger.info(
                set_color("validation", "blue") + f": epoch {epoch} {config['valid_metric'].lower()} {score:.4f}, best "
                f"{trainer.best_valid_score:.4f} (epoch {progress['best'].get('epoch')}), {time.perf_counter() - start:.1f} s elapsed"
            )
        if resume:
            resume.save(epoch, {**progress, "seconds": time.perf_counter() - start})
        if callback_fn is not None and leader:  # benchmark hook: progress lines
            callback_fn(epoch, score)

    try:
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"], callback_fn=note_best
        )
    except Exception:
        if resume:  # a failed run would fail again from its snapshot; Ctrl-C and SIGTERM keep it
            resume.discard()
        raise
    if resume:
        resume.discard()
    best = progress["best"]
    train_time = time.perf_counter() - start
    start = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    eval_time = time.perf_counter() - start
    if not config["single_spec"]:
        dist.destroy_process_group()  # what remains is rank 0's alone
        if not leader:
            return None
    test_result = dict(test_result or {})
    # per-user vectors and new / returning-user keys always, per-type keys with per_type_eval
    per_type_cases: dict[str, int] = {}
    per_user = None
    if test_data:
        start = time.perf_counter()
        full = evaluate_full(trainer, train_data, test_data, config["per_type_eval"], config["show_progress"])
        eval_time += time.perf_counter() - start
        test_result.update({k: v for k, v in full.metrics.items() if k not in test_result})
        per_type_cases, per_user = full.cases, per_user_record(full.per_user)

    logger.info(set_color("best valid ", "yellow") + f": {dict2str(best_valid_result or {})}")
    logger.info(set_color("test result", "yellow") + f": {dict2str(test_result)}")
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
        # the foundation this model read, or the one this run wrote (HGNN)
        "foundation_path": foundation_path or getattr(trainer, "foundation_path", None),
        # the epoch whose checkpoint is tested, and the training time it took to get there
        "best_epoch": best.get("epoch"),
        "train_time_to_best_s": round(best["seconds"] + (foundation_time or 0.0), 3) if best else None,
        # benchmark hook: how training ended (RecBole's early_stopping counts cur_step past stopping_step)
        "epochs_trained": len(trainer.train_loss_dict),
        # a run resumed from its snapshot (recbole_gfm.resume): the epoch it went on from
        "resumed_at_epoch": resumed_at,
        "stopped_early": trainer.cur_step > trainer.stopping_step,
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
