"""Multi-process runs: RecBole's keys resolved into a launch, the ranks spawned, and what rank 0 does first.

A run takes RecBole's keys: ``nproc`` processes on this machine, ``world_size`` in all (default
``nproc``), ranks ``offset .. offset + nproc - 1`` here, rank 0 reachable at ``ip:port``.
:func:`spawn` starts the ranks (as RecBole's ``run_recboles`` does) and returns rank 0's record.
Every rank builds the config, the data and the split; rank 0 prepares the foundation while the
others wait (:func:`rank0_first`), then they read what it wrote. RecBole's Trainer trains each rank
on its shard of the train loader with gradients all-reduced (gloo on the CPU, nccl on CUDA:
:mod:`recbole_gfm.compat`); rank 0 alone evaluates, on unsharded loaders, and writes the
checkpoint, the result file, the logs and any artifact.
"""

from __future__ import annotations

import copy
import ctypes
import os
import pickle
import signal
import socket
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import psutil
import torch
import torch.multiprocessing

from recbole_gfm.compat import is_leader, wait_for_rank0
from recbole_gfm.config import MULTI_PROCESS_KEYS, Config, ConfigError
from recbole_gfm.settings import whole_number


def without_multi_process_keys(settings: dict[str, Any] | None) -> dict[str, Any]:
    """``settings`` without RecBole's multi-process keys: what each rank's own keys are added to."""
    return {k: v for k, v in (settings or {}).items() if k not in MULTI_PROCESS_KEYS}


@dataclass
class RunJob:
    """What every rank of a multi-process run is given (:func:`recbole_gfm.quick_start.run`'s arguments)."""

    model: str | type | None
    dataset: str | None
    config_file_list: list[str] | None
    config_dict: dict[str, Any] = field(default_factory=dict)  # without the multi-process keys
    cmd_overrides: dict[str, str] = field(default_factory=dict)  # likewise
    saved: bool = True
    evaluate_test: bool = True
    callback_fn: Callable[[int, float], None] | None = None  # run in rank 0 only; must pickle
    foundation_callback_fn: Callable[[int, float], None] | None = None
    on_split: Callable[[str], None] | None = None


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
        return default if config[key] is None else whole_number(config[key], key)

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


_PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
# loaded at import, so that a process forked by this one (a benchmark's cell) has nothing to load
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when process ``parent`` (the one that started it) dies, even
    by kill -9 (Linux's parent-death signal; elsewhere nothing). Exits at once if it is gone already.

    ``torch.multiprocessing.spawn`` gives its ranks SIGINT, which a shell's background job ignores.
    """
    if _LIBC is None:
        return
    if _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the signal was set
        os._exit(1)


def spawn(plan: Launch, job: RunJob, run_process: Callable) -> dict[str, Any] | None:
    """Run ``job`` in ``plan.nproc`` spawned processes, each calling ``run_process(config, job)``; rank 0's record.

    As RecBole's ``run_recboles`` (``torch.multiprocessing.spawn``: a failed rank stops the others),
    but the record comes back through a file, not a pipe a large record would block on, and an
    error raised in a rank (a ConfigError ...) is raised here as it was. The ranks die with this
    process, however it ends (:func:`die_with_parent`): none trains on, or holds the port, alone.
    """
    with tempfile.TemporaryDirectory(prefix="recbole_gfm-ranks-") as outbox:
        try:
            torch.multiprocessing.spawn(_rank_main, args=(plan, job, run_process, outbox, os.getpid()), nprocs=plan.nproc, join=True)
        except torch.multiprocessing.ProcessRaisedException as failure:
            error = _read(outbox, "error")
            if error is None:
                raise
            raise error from failure
        return _read(outbox, "record")


def _rank_main(local_rank: int, plan: Launch, job: RunJob, run_process: Callable, outbox: str, parent: int) -> None:
    """One spawned process: rank ``plan.offset + local_rank`` of the run, started by process ``parent``."""
    die_with_parent(parent)
    torch.set_num_threads(plan.threads)
    try:
        config = Config(job.model, job.dataset, job.config_file_list, {**job.config_dict, **plan.settings(local_rank)}, job.cmd_overrides)
        record = run_process(config, job)
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


def single_process_view(config: Config) -> Config:
    """``config`` as a one-process run gives it to the configs built from it (the foundation's): its
    multi-process keys removed, so rank 0 trains the foundation alone, into the artifact a one-process
    run would write and read."""
    view = copy.copy(config)
    view.external_config_dict = without_multi_process_keys(config.external_config_dict)
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
