"""Benchmark files: clear errors, stable fingerprints, a leaderboard, and resuming after kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from recbole_gfm.bench.process import cell_threads
from recbole_gfm.bench.rows import summarise
from recbole_gfm.bench.runner import run_benchmark
from recbole_gfm.bench.spec import BenchmarkError, load_benchmark
from recbole_gfm.run.per_user import load_per_user

RUN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_recbole_gfm.py")
BENCHMARKS = os.path.join(os.path.dirname(RUN), "recbole_gfm", "properties", "benchmark")
RECORDS = os.path.join(os.path.dirname(RUN), "benchmarks")  # the boards of record


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
        ({"jobs": 0}, "jobs", "positive integer"),
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
    assert first.cells[2].row.capped_from == 300 and first.cells[2].row.settings["epochs"] == 1
    own_cap = load_benchmark(write_bench(tmp_path, typed_data, models={"Pop": {}, "BPR": {"max_epochs": 3}}))
    assert own_cap.cells[2].row.capped_from == 300 and own_cap.cells[2].row.settings["epochs"] == 3
    assert own_cap.cells[0].row.epochs == 1  # the file's cap still holds for the other rows
    # Pop trains one pass (RecBole's TraditionalTrainer) whatever the cap: it is not a capped row
    uncapped = load_benchmark(write_bench(tmp_path, typed_data, models={"Pop": {"max_epochs": 5}}))
    assert uncapped.cells[0].row.epochs == 1 and uncapped.cells[0].row.capped_from is None


def test_every_row_loads_the_item_type_its_dataset_has_even_when_its_settings_load_no_item_file(typed_data, tmp_path):
    """A board on the user's own data: a baseline whose load_col names no .item field is scored per type like the others."""
    config = {"data_path": typed_data, "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "state": "ERROR"}
    bench = load_benchmark(write_bench(tmp_path, typed_data, config=config))
    assert {cell.row.label for cell in bench.cells} == {"Pop", "BPR"}
    for cell in bench.cells:
        assert cell.row.settings["load_col"] == {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "item_type"]}


def test_jobs_come_from_the_file_unless_given_and_split_the_cores(typed_data, tmp_path, monkeypatch):
    path = write_bench(tmp_path, typed_data, jobs=3)
    assert load_benchmark(path).jobs == 3 and load_benchmark(path, jobs=1).jobs == 1
    assert load_benchmark(write_bench(tmp_path, typed_data)).jobs == 1  # the default: one cell at a time
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert cell_threads(1) is None and cell_threads(2) == 4 and cell_threads(3) == 2 and cell_threads(16) == 1


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
    assert "| Pop | 2/2 | 1 (one pass) |" in board and "capped" not in board and " ± " in board
    assert "hit@10 per item type" in board and "| Drama | Drama,warm | Drama,cold |" in board
    table = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert list(table["model"]) == ["Pop"] and list(table["seeds"]) == [2]
    assert {"hit@10_mean", "hit@10_std", "hit@10[type=Kids]_mean", "train_time_s_mean", "train_time_to_best_s_mean"} <= set(table.columns)
    assert (tmp_path / "out" / "leaderboard.png").stat().st_size > 1000
    record = json.loads(first.read_text())
    assert record["epochs_capped_from"] is None and record["versions"]["recbole"] == "1.2.1"
    assert "per_user" not in record, "the per-user vectors live beside the cell, not inline"
    vectors = load_per_user(str(first).removesuffix(".json") + ".per_user.npz")
    assert len(vectors["users"]) == record["test_cases_by_type"]["all"]
    assert np.isclose(vectors["metrics"]["hit@10"].mean(), record["test_result"]["hit@10"])


SHIPPED = sorted(os.path.join(BENCHMARKS, f) for f in os.listdir(BENCHMARKS) if f.endswith(".yaml"))
BOARDS = sorted(os.path.join(RECORDS, d) for d in os.listdir(RECORDS) if os.path.isfile(os.path.join(RECORDS, d, "board.yaml")))


@pytest.mark.parametrize("path", SHIPPED + BOARDS, ids=os.path.basename)
def test_shipped_benchmark_files_and_boards_parse(path, monkeypatch):
    """The shipped files and boards of record name known models and keys (their datasets may not be prepared here)."""
    import recbole_gfm.bench.spec as spec

    monkeypatch.setattr(spec, "_data_fingerprint", lambda config: "no-data")
    bench = load_benchmark(path)
    assert bench.cells or bench.search
    assert bench.record == (path in BOARDS)


# ---------------------------------------------------------------------------------------------
# The board from hand-made cells (no training): significance, stale and foreign rows, epochs


def fake_cell(bench, label, seed, hits, *, users=None, fingerprint=None, dataset="typed", **record):
    """Store a finished cell as the benchmark would: record + per-user hit@10 / ndcg@10 vectors."""
    from recbole_gfm.bench.cells import write_cell

    row = next((r for r in bench.rows if r.label == label), None)
    fingerprint = fingerprint or row.fingerprint
    hits = np.asarray(hits, dtype=np.float32)
    users = users or [str(u) for u in range(1, len(hits) + 1)]
    record = {
        "label": label, "dataset": dataset, "seed": seed, "row_fingerprint": fingerprint,
        "fingerprint": f"{fingerprint}-{seed}", "epochs": row.epochs if row else 10, "epochs_capped_from": row.capped_from if row else None,
        "one_pass": row.one_pass if row else False, "epochs_trained": 3, "best_epoch": 1, "stopped_early": True,
        "test_result": {"hit@10": float(hits.mean()), "ndcg@10": float(hits.mean() / 2)},
        "test_cases_by_type": {"all": len(hits)}, "train_time_s": 1.0, "eval_time_s": 0.5, "versions": {"recbole": "1.2.1"},
        **record,
    }  # fmt: skip
    name = f"{label}__{dataset}__seed{seed}__{record['fingerprint']}"
    write_cell(os.path.join(bench.output_dir, "cells", f"{name}.json"), record,
               {"users": users, "metrics": {"hit@10": hits, "ndcg@10": hits / 2}})  # fmt: skip
    return os.path.join(bench.output_dir, "cells", f"{name}.json")


def test_the_board_tests_significance_counts_stale_cells_and_keeps_other_files_rows(typed_data, tmp_path):
    from recbole_gfm.bench.report import write_leaderboard
    from recbole_gfm.bench.significance import compare

    bench = load_benchmark(write_bench(tmp_path, typed_data, models={"Pop": {}, "BPR": {}, "LightGCN": {}}, reference="Pop"))
    rng = np.random.default_rng(0)
    runs = {label: {seed: (rng.random(60) < p).astype(np.float32) for seed in (1, 2)}
            for label, p in (("Pop", 0.2), ("BPR", 0.8), ("LightGCN", 0.25))}  # fmt: skip
    for label, seeds in runs.items():
        for seed, hits in seeds.items():
            fake_cell(bench, label, seed, hits)
    fake_cell(bench, "Pop", 1, np.ones(60), fingerprint="older-settings")  # stale: not mixed into Pop's row
    fake_cell(bench, "ItemKNN", 1, np.zeros(60), fingerprint="another-file")  # another file's row, same folder
    paths = write_leaderboard(bench)

    board = open(paths["md"]).read()
    expected = compare(  # among this file's rows: the other file's one-seed row does not shrink the cases
        {label: {seed: ([str(u) for u in range(1, 61)], hits) for seed, hits in seeds.items()} for label, seeds in runs.items()},
        reference="Pop",
    )  # fmt: skip
    bpr_line = next(line for line in board.splitlines() if line.startswith("| BPR |"))
    assert "†▲" in bpr_line, "BPR is far above every other row and above the reference"
    pop_line = next(line for line in board.splitlines() if line.startswith("| Pop |"))
    assert f"{runs['Pop'][1].mean() / 2 + runs['Pop'][2].mean() / 2:.4f}" in pop_line, "the stale cell is not averaged in"
    assert "| ItemKNN | 1* |" in board and "other benchmark files" in board
    assert "made with other settings or data: Pop 1" in board
    assert "paired t-test over 120 (seed, user) pairs" in board and "Holm" in board and "not in the tests" in board
    table = pd.read_csv(paths["significance"])
    got = table[(table.metric == "hit@10") & (table.family == "reference") & (table.model == "BPR")].iloc[0]
    want = expected.of("BPR", "reference")
    assert got.compared_to == "Pop" and np.isclose(got.t_p, want.t_p, rtol=1e-5) and np.isclose(got.wilcoxon_p_holm, want.w_p_holm, rtol=1e-5)
    assert list(pd.read_csv(paths["csv"])["model"]) == ["Pop", "BPR", "LightGCN", "ItemKNN"], "this file's rows first"


def test_rows_scored_on_different_users_are_compared_on_the_common_subset(typed_data, tmp_path):
    from recbole_gfm.bench.report import write_leaderboard

    bench = load_benchmark(write_bench(tmp_path, typed_data, seeds=[1]))
    rng = np.random.default_rng(0)
    fake_cell(bench, "Pop", 1, rng.random(40) < 0.3)
    fake_cell(bench, "BPR", 1, rng.random(30) < 0.6, users=[str(u) for u in range(11, 41)])  # 10 users fewer
    board = open(write_leaderboard(bench)["md"]).read()
    assert "left out: Pop 10" in board and "30 (seed, user) pairs" in board


def test_epochs_show_training_and_the_best_epoch_and_capped_only_at_the_cap():
    from recbole_gfm.bench.rows import epochs_text

    stopped = {"epochs": 30, "epochs_trained": 7, "best_epoch": 3, "stopped_early": True}
    assert epochs_text([stopped]) == "7 (best 4)"
    at_cap = {"epochs": 5, "epochs_capped_from": 300, "epochs_trained": 5, "best_epoch": 4, "stopped_early": False}
    assert epochs_text([at_cap]) == "5 (best 5), capped at 5 (from 300)"
    stopped_at_cap = {**at_cap, "stopped_early": True}  # early stopping ended it in its last epoch
    assert epochs_text([stopped_at_cap]) == "5 (best 5)"
    assert epochs_text([{"epochs": 1, "one_pass": True, "epochs_trained": 1, "best_epoch": 0}]) == "1 (one pass)"


def test_pump_logs_everything_and_shows_progress_lines_and_bars():
    import io as io_module

    from recbole_gfm.bench.child import PROGRESS
    from recbole_gfm.bench.process import pump

    output = (
        b"INFO loading\n" + PROGRESS.encode() + b" epoch 1: valid ndcg@10 0.1000, best 0.1000 (epoch 1), 2.0 s\n"
        + b"Batches:  50%|#####     | 1/2 [00:01<00:01]\rBatches: 100%|##########| 2/2 [00:02<00:00]\n"
    )  # fmt: skip
    log, shown = io_module.BytesIO(), []
    pump(io_module.BufferedReader(io_module.BytesIO(output)), log, shown.append)
    assert log.getvalue() == output
    assert shown[0] == "epoch 1: valid ndcg@10 0.1000, best 0.1000 (epoch 1), 2.0 s"
    assert shown[1].startswith("Batches:  50%") and len(shown) == 2, "bars are shown at most every BAR_EVERY_S"


# ---------------------------------------------------------------------------------------------
# Start-up checks, damaged cells, the lock and process lifetime


@pytest.mark.parametrize(
    "change, key, message",
    [
        ({"protocol": "rs811", "models": {"SASRec": {}}}, "models.SASRec x datasets.typed", "protocol loo or temporal"),
        ({"datasets": {"typed": {}, "nowhere": {}}}, "datasets.nowhere", "Dataset 'nowhere' not found"),
        ({"models": {"Pop": {}}, "reference": "GFM-noGNN"}, "reference", "not a label under models"),
        ({"targets": [{"row": "BPR", "metric": "mrr@10", "over": ["Pop"]}]}, "targets", "target 1: metric 'mrr@10' is not one of"),
        ({"protocol": "loo", "config": {"load_col": {"inter": ["user_id", "item_id"]}, "data_path": "."}},
         "models.Pop x datasets.typed", "add it to load_col"),
    ],
)  # fmt: skip
def test_incompatible_cells_are_refused_before_anything_runs(change, key, message, typed_data, tmp_path):
    if "config" in change:
        change["config"]["data_path"] = typed_data
    path = write_bench(tmp_path, typed_data, **change)
    with pytest.raises(BenchmarkError) as error:
        load_benchmark(path)
    assert path in str(error.value) and f"'{key}'" in str(error.value) and message in str(error.value)
    assert not (tmp_path / "out").exists(), "nothing ran"


def test_a_damaged_cell_is_named_moved_aside_and_run_again(typed_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write_bench(tmp_path, typed_data, models={"BPR": {}}, seeds=[1], max_epochs=2)
    assert run_benchmark(path) == 0
    out = capsys.readouterr().out
    assert "    epoch 1: valid ndcg@10 " in out and "    epoch 2: valid ndcg@10 " in out, "a progress line per validation"
    (cell,) = (tmp_path / "out" / "cells").glob("*.json")
    vectors = cell.with_name(cell.name.removesuffix(".json") + ".per_user.npz")
    logged = (tmp_path / "out" / "logs" / cell.name.replace(".json", ".log")).read_text()
    assert "@@progress epoch 2" in logged, "the cell's log keeps its full output"

    cell.write_text(cell.read_text()[:100])  # truncated
    assert run_benchmark(path) == 0
    captured = capsys.readouterr()
    assert f"{cell}: not valid JSON" in captured.err and "moved aside" in captured.err
    assert "done before, skipped" not in captured.out and "JSONDecodeError" not in captured.out + captured.err
    assert list(cell.parent.glob(cell.name + ".corrupt-*")) and json.loads(cell.read_text())["label"] == "BPR"

    data = bytearray(vectors.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the per-user file
    vectors.write_bytes(bytes(data))
    assert run_benchmark(path) == 0
    captured = capsys.readouterr()
    assert f"{vectors}: its content does not match" in captured.err and "done before, skipped" not in captured.out
    assert load_per_user(str(vectors))["metrics"]["hit@10"].shape == (json.loads(cell.read_text())["test_cases_by_type"]["all"],)


def _session(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``."""
    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, pgrp, session, ...
            if int(fields[3]) == sid and fields[0] != "Z":
                alive.append(int(entry))
    return alive


@pytest.mark.parametrize(
    "code, snapshot, said",
    [
        (-signal.SIGTERM, True, "stopped by signal 15 after 0.0 s; a re-run resumes it from its last validated epoch"),
        (-signal.SIGKILL, False, "stopped by signal 9 after 0.0 s; a re-run starts it again"),
        (1, True, "FAILED after 0.0 s (exit 1)"),  # the run raised: FAILED, whatever files it left
    ],
)
def test_a_cell_that_did_not_finish_says_what_a_re_run_does(typed_data, tmp_path, monkeypatch, capsys, code, snapshot, said):
    from recbole_gfm.bench import runner

    bench = load_benchmark(write_bench(tmp_path, typed_data, models={"BPR": {}}, seeds=[1]))
    run = runner.new_run(bench)

    def run_child(job, log_path, show):
        os.makedirs(job.config_dict["checkpoint_dir"], exist_ok=True)
        if snapshot:  # what recbole_gfm.run.resume leaves after a validation
            open(os.path.join(job.config_dict["checkpoint_dir"], "BPR-resume-0123.pth"), "wb").close()
        return code

    monkeypatch.setattr(run.children, "run", run_child)
    monkeypatch.setattr(runner.time, "perf_counter", lambda: 0.0)
    assert runner._run_or_skip(run, "[1/1]", bench.cells[0]) in ("stopped", "failed")
    assert said in capsys.readouterr().out


def test_kill_9_of_a_benchmark_kills_its_cell_and_a_second_run_is_refused(typed_data, tmp_path, monkeypatch):
    from recbole_gfm.artifacts import exclusive

    monkeypatch.chdir(tmp_path)
    # a cell that trains for minutes and prints nothing (no validation until the end): it cannot die
    # of a broken pipe when the benchmark goes, only of the parent-death signal
    quiet = {"BPR": {"epochs": 10**6, "eval_step": 10**6}}
    path = write_bench(tmp_path, typed_data, models=quiet, seeds=[1], max_epochs=None)
    proc = subprocess.Popen([sys.executable, RUN, f"--benchmark={path}"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.time() + 120
        while len(_session(proc.pid)) < 2:  # the benchmark and its cell
            assert proc.poll() is None and time.time() < deadline, "the cell never started"
            time.sleep(0.2)
        with pytest.raises(BenchmarkError) as error:
            run_benchmark(path)
        assert f"{tmp_path / 'out'}: this board is being run by another process (pid {proc.pid})" in str(error.value)

        os.kill(proc.pid, signal.SIGKILL)  # the benchmark only: its cell must die with it
        proc.wait()
        deadline = time.time() + 10
        while _session(proc.pid) and time.time() < deadline:
            time.sleep(0.1)
        assert not _session(proc.pid), "a process of the killed benchmark survived"
        with exclusive(str(tmp_path / "out" / "board"), wait=False):  # the kernel released the dead run's lock
            pass
    finally:
        if _session(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_parallel_cells_overlap_share_the_cores_and_train_a_shared_foundation_once(typed_slice, tmp_path, monkeypatch, capsys):
    from conftest import typed_overrides

    monkeypatch.chdir(tmp_path)
    cache, encoded = tmp_path / "cache", os.path.join(typed_slice["cache_dir"], "text_embeddings")
    if os.path.isdir(encoded):  # an empty foundation cache; the titles encoded once per session
        shutil.copytree(encoded, cache / "text_embeddings")
    # the foundation trains for seconds, so the two cells that need it start while it trains
    settings = typed_overrides({**typed_slice, "cache_dir": str(cache)}, foundation={"epochs": 6, "eval_step": 1, "stopping_step": 100})
    spec = {
        "config": settings,
        "datasets": {typed_slice["dataset"]: {}},
        "models": {"GFM": {}, "GFM-notext": {"model": "GFM", "use_text": False}},  # one foundation, two adapters
        "seeds": [1],
        "columns": ["hit@10"],
        "output_dir": str(tmp_path / "out"),
        "jobs": 1,
    }
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(spec))
    assert run_benchmark(str(tmp_path / "bench.yaml"), jobs=2) == 0  # --jobs 2 over the file's 1
    out = capsys.readouterr().out
    assert "2 cells, 2 at a time" in out
    cells = tmp_path / "out" / "cells"
    records = [json.loads(p.read_text()) for p in sorted(cells.glob("*.json"))]
    assert len(records) == 2 and all(r["parallel_cells"] == 2 and r["torch_threads"] == cell_threads(2) for r in records)
    first, second = sorted(records, key=lambda r: r["started_at"])
    assert second["started_at"] < first["started_at"] + first["wall_time_s"], "the cells ran one after the other"
    assert records[0]["foundation_path"] == records[1]["foundation_path"]
    # each cell tests its own best checkpoint: RecBole names one <model>-<second>.pth, so two cells of
    # one model started in the same second shared a file (and one tested the other's model)
    saved = [r["saved_model_file"] for r in records]
    assert len(set(saved)) == 2 and all(os.path.isfile(f) for f in saved)
    assert {os.path.basename(os.path.dirname(f)) for f in saved} == {p.stem for p in cells.glob("*.json")}
    assert [d for d in os.listdir(cache / "foundation") if not d.startswith(".")] == [os.path.basename(records[0]["foundation_path"])]
    logs = [p.read_text() for p in (tmp_path / "out" / "logs").glob("*.log")]
    assert sum("foundation epoch" in log for log in logs) == 1, "one cell trained the foundation, the other waited and read it"
    assert "cells ran up to 2 at a time" in (tmp_path / "out" / "leaderboard.md").read_text()
