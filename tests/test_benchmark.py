"""Benchmark files: clear errors, stable fingerprints, a leaderboard, and resuming after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from recbole_gfm.benchmark import BenchmarkError, load_benchmark, run_benchmark, summarise

RUN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_recbole_gfm.py")
BENCHMARKS = os.path.join(os.path.dirname(RUN), "recbole_gfm", "properties", "benchmark")


@pytest.fixture(scope="module")
def typed_data(tmp_path_factory) -> str:
    """30 users x 8 interactions over 24 items of 3 types, with timestamps."""
    rng = np.random.default_rng(1)
    rows = [(u, int(i), int(t)) for u in range(1, 31) for i, t in zip(rng.choice(24, 8, replace=False) + 1, rng.integers(0, 10**6, 8))]
    root = tmp_path_factory.mktemp("bench")
    (root / "typed").mkdir()
    pd.DataFrame(rows, columns=["user_id:token", "item_id:token", "timestamp:float"]).to_csv(root / "typed" / "typed.inter", sep="\t", index=False)
    pd.DataFrame({"item_id:token": range(1, 25), "item_type:token": [["Kids", "Drama", "Horror"][i % 3] for i in range(24)]}).to_csv(
        root / "typed" / "typed.item", sep="\t", index=False
    )
    return str(root)


def write_bench(folder, data_path: str, **changes) -> str:
    spec = {
        "protocol": "temporal",
        "config": {
            "data_path": data_path,
            "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "item_type"]},
            "state": "ERROR",
            "show_progress": False,
            "embedding_size": 8,
        },
        "datasets": {"typed": {}},
        "models": {"Pop": {}, "BPR": {"learning_rate": 0.01}},
        "seeds": [1, 2],
        "max_epochs": 1,
        "columns": ["hit@10", "ndcg@10"],
        "output_dir": str(folder / "out"),
    }
    spec.update(changes)
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


@pytest.mark.parametrize(
    "change, key, message",
    [
        ({"modles": {"Pop": {}}}, "modles", "Did you mean 'models'"),
        ({"models": {"LightGNC": {}}}, "models.LightGNC", "LightGCN"),
        ({"models": {}}, "models", "missing"),
        ({"seeds": "2020"}, "seeds", "list of integers"),
        ({"config_files": ["nope.yaml"]}, "config_files", "nope.yaml"),
        ({"protocol": "temporl"}, "protocol", "temporal"),
        ({"models": {"Pop": 3}}, "models.Pop", "mapping"),
        ({"models": {"BPR": {"max_epochs": 0}}}, "models.BPR.max_epochs", "positive integer"),
    ],
)
def test_bad_benchmark_files_name_the_file_and_the_key(change, key, message, typed_data, tmp_path):
    path = write_bench(tmp_path, typed_data, **change)
    with pytest.raises(BenchmarkError) as error:
        load_benchmark(path)
    assert path in str(error.value) and f"'{key}'" in str(error.value) and message in str(error.value)


def test_cli_rejects_a_benchmark_mixed_with_a_single_run(capsys):
    from recbole_gfm.cli import main

    assert main(["--benchmark=any.yaml", "--model=Pop"]) == 2
    assert "--benchmark takes its models" in capsys.readouterr().err
    assert main(["--model=Pop", "--dataset=ml-100k", "--protocol=temporl"]) == 2
    assert "Unknown protocol 'temporl'" in capsys.readouterr().err


def test_fingerprints_are_stable_and_cover_the_settings(typed_data, tmp_path):
    first = load_benchmark(write_bench(tmp_path, typed_data))
    again = load_benchmark(write_bench(tmp_path, typed_data))
    assert [c.fingerprint for c in first.cells] == [c.fingerprint for c in again.cells]
    assert len({c.fingerprint for c in first.cells}) == 4
    tuned = load_benchmark(write_bench(tmp_path, typed_data, models={"Pop": {}, "BPR": {"learning_rate": 0.02}}))
    assert tuned.cells[0].fingerprint == first.cells[0].fingerprint  # Pop untouched
    assert tuned.cells[2].fingerprint != first.cells[2].fingerprint
    assert first.cells[2].capped_from == 300 and first.cells[2].config_dict["epochs"] == 1
    import recbole_gfm.benchmark as benchmark_module

    with pytest.MonkeyPatch.context() as patch:  # other code (an edited source file) means other cells
        patch.setattr(benchmark_module, "code_fingerprint", lambda *paths: "edited")
        edited = load_benchmark(write_bench(tmp_path, typed_data))
    assert all(a.fingerprint != b.fingerprint for a, b in zip(edited.cells, first.cells))
    own_cap = load_benchmark(write_bench(tmp_path, typed_data, models={"Pop": {}, "BPR": {"max_epochs": 3}}))
    assert own_cap.cells[2].capped_from == 300 and own_cap.cells[2].config_dict["epochs"] == 3
    assert own_cap.cells[0].epochs == 1  # the file's cap still holds for the other rows
    # Pop trains one pass (RecBole's TraditionalTrainer) whatever the cap: it is not a capped row
    uncapped = load_benchmark(write_bench(tmp_path, typed_data, models={"Pop": {"max_epochs": 5}}))
    assert uncapped.cells[0].epochs == 1 and uncapped.cells[0].capped_from is None


def test_mean_and_sample_std_over_seeds():
    records = [{"test_result": {"hit@10": v}, "train_time_s": 1.0, "eval_time_s": 2.0} for v in (0.2, 0.4)]
    mean, std = summarise(records)["hit@10"]
    assert mean == pytest.approx(0.3) and std == pytest.approx(0.1414, abs=1e-4)


def test_resume_skips_finished_cells_and_survives_kill_9(typed_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write_bench(tmp_path, typed_data, models={"Pop": {}})
    cells = tmp_path / "out" / "cells"
    proc = subprocess.Popen([sys.executable, RUN, f"--benchmark={path}"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not (cells.is_dir() and any(cells.glob("*.json"))):
        assert proc.poll() is None, "the benchmark ended before its first cell was stored"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the benchmark and its running cell
    proc.wait()
    stored = list(cells.glob("*.json"))
    assert len(stored) == 1, "killed right after the first cell"
    first, mtime = stored[0], stored[0].stat().st_mtime_ns

    assert run_benchmark(path) == 0
    out = capsys.readouterr().out
    skipped = [line for line in out.splitlines() if "done before, skipped" in line]
    assert len(skipped) == 1 and skipped[0].startswith("[1/2] Pop on typed, seed 1: ")
    assert first.stat().st_mtime_ns == mtime, "the finished cell was not recomputed"
    assert len(list(cells.glob("*.json"))) == 2

    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "| typed | Pop | 2/2 | 1 |" in board and "capped" not in board and " ± " in board
    assert "hit@10 per item type" in board and "| Drama | Drama,warm | Drama,cold |" in board
    table = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert list(table["model"]) == ["Pop"] and list(table["seeds"]) == [2]
    assert {"hit@10_mean", "hit@10_std", "hit@10[type=Kids]_mean", "train_time_s_mean", "train_time_to_best_s_mean"} <= set(table.columns)
    assert "| best epoch |" in board and "| typed | Pop | 2/2 | 1 | 0/0 |" in board
    assert (tmp_path / "out" / "leaderboard.png").stat().st_size > 1000
    record = json.loads(first.read_text())
    assert record["epochs_capped_from"] is None and record["versions"]["recbole"] == "1.2.1"


@pytest.mark.parametrize("name", sorted(f[: -len(".yaml")] for f in os.listdir(BENCHMARKS) if f.endswith(".yaml")))
def test_shipped_benchmark_files_parse(name, monkeypatch):
    """The shipped files name known models and keys (their datasets may not be prepared here)."""
    import recbole_gfm.benchmark as benchmark

    monkeypatch.setattr(benchmark, "_data_fingerprint", lambda config: "no-data")
    bench = load_benchmark(os.path.join(BENCHMARKS, f"{name}.yaml"))
    assert bench.cells
