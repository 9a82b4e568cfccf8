"""Multi-process runs (RecBole's nproc / world_size / ip / port / offset) on this CPU with gloo.

Each ``nproc=2`` run spawns two ranks. What must hold: every model trains and evaluates; the
record's metrics are those one process gives for the same checkpoint, exactly (rank 0 evaluates
unsharded loaders: no padded duplicates); checkpoints, result files, logs, foundation artifacts and
benchmark cells are written once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict

import psutil
import pytest
import torch
import yaml
from recbole.utils import init_seed

from conftest import quick_overrides, typed_overrides
from recbole_gfm.config import Config, ConfigError
from recbole_gfm.bench.runner import run_benchmark
from recbole_gfm.run.evaluation import evaluate_full
from recbole_gfm.inference import Recommender
from recbole_gfm.quick_start import run
from recbole_gfm.registry import get_trainer
from recbole_gfm.run.launch import Launch, launch_plan, single_process_view
from recbole_gfm.run.inputs import build_with_inputs, prepare_foundation
from recbole_gfm.run.stages import prepare_data

SMALL = {
    "BPR": {"embedding_size": 16},
    "LightGCN": {"embedding_size": 16, "n_layers": 1},
    "SASRec": {"n_layers": 1, "n_heads": 1, "hidden_size": 32, "inner_size": 64, "MAX_ITEM_LIST_LENGTH": 20, "learning_rate": 0.01},
}


def settings(**values) -> defaultdict:
    """What launch_plan reads of a config (absent keys are None, as in a RecBole Config)."""
    return defaultdict(lambda: None, {"device": torch.device("cpu"), "gpu_id": "0", **values})


def test_one_process_unless_asked_and_recbole_defaults_for_the_rest():
    assert launch_plan(settings()) is None and launch_plan(settings(nproc=1, world_size=-1)) is None
    plan = launch_plan(settings(nproc=2, port=free_port()))
    assert (plan.nproc, plan.world_size, plan.ip, plan.offset) == (2, 2, "localhost", 0)
    assert plan.settings(1) == {"nproc": 2, "world_size": 2, "ip": "localhost", "port": plan.port, "offset": 0, "local_rank": 1}
    # a second machine of a 4-process run: ranks 2 and 3 here, rank 0 elsewhere (its port is not probed here)
    assert launch_plan(settings(nproc=2, world_size=4, offset=2, ip="10.0.0.1")) == Launch(2, 4, "10.0.0.1", 5678, 2, plan.threads)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"nproc": 0}, "nproc must be at least 1"),
        ({"nproc": "2"}, "nproc: expected an integer, got .2."),
        ({"nproc": 2, "world_size": 1}, "world_size=1, nproc=2, offset=0"),
        ({"nproc": 2, "world_size": 3, "offset": 2}, "must lie in 0 .. world_size - 1"),
        ({"nproc": 2, "port": 70000}, "port must be in 1 .. 65535"),
    ],
)
def test_bad_multi_process_settings_are_clear_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        launch_plan(settings(**values))


def test_a_port_in_use_and_too_few_gpus_are_clear_errors(monkeypatch):
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # the process that holds it is named: here, this test's own
        with pytest.raises(ConfigError, match=rf"port {port} is in use on this machine \(.*, held by pid {os.getpid()} \(.*python.*--port=N"):
            launch_plan(settings(nproc=2, port=port))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="nproc=2 on CUDA needs one GPU per process.*--gpu_id=0,1"):
        launch_plan(settings(nproc=2, port=free_port(), device=torch.device("cuda"), gpu_id="0,1"))


def test_the_foundation_config_of_a_rank_is_the_one_process_runs(typed_slice):
    config = Config("GFM", typed_slice["dataset"], config_dict=typed_overrides(typed_slice, nproc=2, world_size=2, port=1234))
    view = single_process_view(config)
    assert not {"nproc", "world_size", "port"} & set(view.external_config_dict)
    assert config.external_config_dict["nproc"] == 2  # the run's own config is untouched


def only_files(folder: str) -> list[str]:
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def written_once(record: dict) -> None:
    """One result file, one checkpoint (and its hash), one log file and one tensorboard folder."""
    assert len(only_files("results")) == 1 and os.path.abspath(record["result_file"]) == os.path.abspath(os.path.join("results", only_files("results")[0]))
    name = os.path.basename(record["saved_model_file"])
    assert only_files("saved") == [name, f"{name}.sha256"]
    assert len(only_files(os.path.join("log", record["model"]))) == 1
    assert len(only_files("log_tensorboard")) == 1


def alone(record: dict, model: str, dataset: str, overrides: dict) -> tuple[dict, dict]:
    """(test, valid) metrics one process gives for the run's checkpoint, per-user/type keys included."""
    config = Config(model, dataset, config_dict={**overrides, "foundation_path": record["foundation_path"]})
    init_seed(config["seed"], config["reproducibility"])
    split = prepare_data(config)
    train_data, valid_data, test_data = split.train_data, split.valid_data, split.test_data
    trainer = get_trainer(config)(config, build_with_inputs(config, split, prepare_foundation(config, split), seed=False))
    test = dict(trainer.evaluate(test_data, model_file=record["saved_model_file"]))
    full = evaluate_full(trainer, train_data, test_data, config["per_type_eval"])
    test.update({k: v for k, v in full.metrics.items() if k not in test})
    valid = dict(trainer.evaluate(valid_data, load_best_model=False))
    return test, valid


def two_processes_equal_one(model: str, dataset: str, overrides: dict) -> dict:
    record = run(model, dataset, config_dict={**overrides, "nproc": 2, "port": free_port()})
    assert record["config"]["world_size"] == 2 and record["config"]["local_rank"] == 0
    assert record["test_result"]["hit@10"] > 0 and record["epochs_trained"] == overrides.get("epochs", 1)
    written_once(record)
    test, valid = alone(record, model, dataset, overrides)
    assert record["test_result"] == test  # every metric, exactly
    assert record["best_valid_result"] == valid
    return record


@pytest.mark.slow
@pytest.mark.parametrize("model", ["BPR", "LightGCN", "SASRec"])
def test_recbole_models_train_on_two_processes_and_evaluate_as_one(model, ml100k_slice, workdir):
    overrides = quick_overrides(ml100k_slice, **SMALL[model])
    record = two_processes_equal_one(model, "ml-100k-slice", overrides)
    one = run(model, "ml-100k-slice", config_dict=overrides)
    assert one["train_time_s"] > 0 and one["test_result"].keys() == record["test_result"].keys()


@pytest.fixture
def fresh_cache(typed_slice, tmp_path) -> dict:
    """The typed slice with an empty foundation cache (its text embeddings copied if encoded already)."""
    cache, encoded = tmp_path / "cache", os.path.join(typed_slice["cache_dir"], "text_embeddings")
    if os.path.isdir(encoded):
        shutil.copytree(encoded, cache / "text_embeddings")
    return {**typed_slice, "cache_dir": str(cache)}


def foundations(cache_dir: str) -> list[str]:
    return [d for d in only_files(os.path.join(cache_dir, "foundation")) if not d.startswith(".")]


@pytest.mark.slow
def test_hgnn_trains_on_two_processes_writes_its_artifact_once_and_evaluates_as_one(fresh_cache, workdir):
    overrides = typed_overrides(fresh_cache, epochs=1, eval_step=1, per_type_eval=True)
    record = two_processes_equal_one("HGNN", fresh_cache["dataset"], overrides)
    assert foundations(fresh_cache["cache_dir"]) == [os.path.basename(record["foundation_path"])]


@pytest.mark.slow
def test_gfm_on_two_processes_reads_the_foundation_one_process_trains_and_evaluates_as_one(fresh_cache, workdir):
    overrides = typed_overrides(fresh_cache, per_type_eval=True)
    record = two_processes_equal_one("GFM", fresh_cache["dataset"], overrides)
    assert foundations(fresh_cache["cache_dir"]) == [os.path.basename(record["foundation_path"])]
    assert any(k.startswith("hit@10[type=") for k in record["test_result"])
    rec = Recommender.load(record["saved_model_file"])  # served by one process: no process group
    assert not torch.distributed.is_initialized() and len(rec.recommend(rec.tokens[1:4], k=5)) == 5
    for folder in ("results", "saved", "log", "log_tensorboard"):
        shutil.rmtree(folder)
    one = run("GFM", fresh_cache["dataset"], config_dict=overrides)
    assert one["foundation_path"] == record["foundation_path"], "rank 0 trained the one-process run's foundation"
    assert foundations(fresh_cache["cache_dir"]) == [os.path.basename(record["foundation_path"])]


@pytest.mark.slow
def test_an_error_in_rank_0_stops_the_waiting_rank_and_is_raised_as_it_was(typed_slice, workdir):
    overrides = typed_overrides(typed_slice, nproc=2, port=free_port(), use_foundation=False, use_text=False)
    with pytest.raises(ConfigError, match="GFM needs item content"):  # raised by rank 0's GFM, while rank 1 waits for it
        run("GFM", typed_slice["dataset"], config_dict=overrides)


@pytest.mark.slow
def test_a_benchmark_cell_on_two_processes_is_stored_once(ml100k_slice, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = {
        "config": {**quick_overrides(ml100k_slice), "embedding_size": 8},
        "datasets": {"ml-100k-slice": {}},
        "models": {"BPR": {"nproc": 2, "port": free_port()}},
        "seeds": [1],
        "columns": ["hit@10"],
        "output_dir": str(tmp_path / "out"),
    }
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(spec))
    assert run_benchmark(str(tmp_path / "bench.yaml")) == 0
    cells = tmp_path / "out" / "cells"
    stored = sorted(p.name for p in cells.iterdir())
    assert len(stored) == 2 and stored[1] == stored[0].removesuffix(".json") + ".per_user.npz"
    record = json.loads((cells / stored[0]).read_text())
    assert record["config"]["nproc"] == 2 and record["test_result"]["hit@10"] > 0
    cell_checkpoints = tmp_path / "out" / "checkpoints" / stored[0].removesuffix(".json")
    assert len(os.listdir(tmp_path / "out" / "checkpoints")) == 1 and len(os.listdir(cell_checkpoints)) == 2  # one checkpoint and its hash


@pytest.mark.slow
def test_the_ranks_die_with_their_parent_even_by_kill_9(ml100k_slice, workdir):
    """The issue's case: kill -9 of a --nproc=2 run started in the background by a shell left both ranks
    (and the resource tracker) training to the end under PID 1, holding the port. A shell's background
    job ignores SIGINT, the parent-death signal torch.multiprocessing.spawn gives its processes."""
    port = free_port()
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [
        sys.executable, os.path.join(repository, "run_recbole_gfm.py"), "--model=BPR", "--dataset=ml-100k-slice",
        f"--data_path={ml100k_slice}", "--nproc=2", f"--port={port}", "--epochs=100000", "--eval_step=0", "--nosave",
        "--state=INFO", "--show_progress=False",
    ]  # fmt: skip  (eval_step 0: never validated, so no early stop ends the ranks)
    env = {**os.environ, "PYTHONPATH": repository}
    log = workdir / "console.log"
    with open(log, "w") as out:
        parent = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)
        )
    family: list[psutil.Process] = []
    try:
        while parent.poll() is None and "epoch 2 training" not in log.read_text():  # the ranks train
            time.sleep(0.5)
        assert parent.poll() is None, f"the run ended before its ranks trained:\n{log.read_text()[-2000:]}"
        family = psutil.Process(parent.pid).children(recursive=True)  # the ranks, multiprocessing's resource tracker
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        alive = still_running(family, within=120)
        assert not alive, f"outlived their parent: {[' '.join(p.cmdline())[:90] for p in alive]}"
    finally:
        parent.kill()
        for process in family:
            if process.is_running():
                process.kill()


def still_running(processes: list[psutil.Process], within: float) -> list[psutil.Process]:
    """Those of ``processes`` that have not ended ``within`` seconds (psutil.wait_procs misses processes
    that are not this one's children)."""
    deadline = time.monotonic() + within
    while True:
        alive = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)
