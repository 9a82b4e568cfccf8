"""Budget-matched search: clear errors, validation only, the best trial chosen, resumable after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_benchmark import RUN, typed_data, write_bench  # noqa: F401  (typed_data is a fixture)

import recbole_gfm.quick_start as quick_start
from recbole_gfm.artifacts import read_json
from recbole_gfm.benchmark import BenchmarkError, _job, child_main, load_benchmark, run_benchmark
from recbole_gfm.search import SearchError, parse_search, propose, run_search, trial_job, trial_path

SPACE = {"learning_rate": {"loguniform": [1.0e-3, 1.0e-1]}, "embedding_size": {"choice": [4, 8]}}


def search(trials: int = 3, **changes) -> dict:
    return {"trials": trials, "spaces": {"BPR": dict(SPACE)}, **changes}


@pytest.mark.parametrize(
    "section, key, message",
    [
        (search(spaces={"BPR": {"learning_rate": {"logunif": [1, 2]}}}), "search.spaces.BPR.learning_rate", "unknown space kind 'logunif'"),
        (search(spaces={"BPR": {"learning_rate": {"loguniform": [0, 1]}}}), "search.spaces.BPR.learning_rate", "low > 0"),
        (search(spaces={"BPR": {"n_layers": {"int": [3, 1]}}}), "search.spaces.BPR.n_layers", "low < high"),
        (search(spaces={"BPR": {"embedding_size": {"choice": []}}}), "search.spaces.BPR.embedding_size", "non-empty list"),
        (search(spaces={"LightGCN": dict(SPACE)}), "search.spaces.LightGCN", "no model 'LightGCN'"),
        (search(trials=0), "search.trials", "positive integer"),
        (search(budget=3), "search.budget", "unknown key"),
        (search(spaces={"BPR": {"n_layers": {"choice": [1, 2]}}}), "search.spaces.BPR.n_layers", "not a setting of BPR"),
        (search(spaces={"BPR": {"learning_rat": {"choice": [0.1]}}}), "search.spaces.BPR.learning_rat", "did you mean learning_rate"),
        (search(metric="ndcg@20"), "search.metric", "not computed on validation"),
    ],
)
def test_bad_search_sections_name_the_file_and_the_key(section, key, message, typed_data, tmp_path):  # noqa: F811
    path = write_bench(tmp_path, typed_data, search=section)
    with pytest.raises((BenchmarkError, SearchError)) as error:
        load_benchmark(path)
    assert path in str(error.value) and f"'{key}'" in str(error.value) and message in str(error.value)


def test_proposals_depend_only_on_the_seed_and_the_trials_before():
    spec = parse_search({"trials": 6, "seed": 7, "startup_trials": 2, "spaces": {"A": SPACE}}, "f.yaml", ["A"], [1])
    trials = []
    for number in range(6):
        params = propose(spec, "A", "ndcg@10", trials)
        value = -abs(params["learning_rate"] - 0.01) + params["embedding_size"]
        trials.append({**trial_job(spec, "A", "ndcg@10", "s", number, params), "state": "COMPLETE", "value": value})
    assert [propose(spec, "A", "ndcg@10", trials[:k]) for k in range(6)] == [t["params"] for t in trials]
    other_seed = parse_search({"trials": 6, "seed": 8, "spaces": {"A": SPACE}}, "f.yaml", ["A"], [1])
    assert propose(other_seed, "A", "ndcg@10", []) != trials[0]["params"]


class SplitWasRead(AssertionError):  # noqa: N818
    pass


class _Untouchable:
    """In place of the test split's loader: iterating it, sizing it or reading any attribute fails the test."""

    def __iter__(self):
        raise SplitWasRead("the test split was iterated")

    def __len__(self):
        raise SplitWasRead("the test split was sized")

    def __getattr__(self, name):
        raise SplitWasRead(f"the test split's {name} was read")


def test_a_search_scores_on_validation_only_and_picks_the_best_trial(typed_data, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    prepare = quick_start.data_preparation

    def untouchable_test_split(config, data):
        train, valid, test = prepare(config, data)
        return train, valid, _Untouchable()

    monkeypatch.setattr(quick_start, "data_preparation", untouchable_test_split)
    bench = load_benchmark(write_bench(tmp_path, typed_data, models={"BPR": {}}, max_epochs=3, search=search()))
    (row,) = bench.rows
    assert row.tuned and not row.ready and bench.cells == [], "a tuned row's cells wait for its search"
    with pytest.raises(SplitWasRead):  # the fixture would catch a run that evaluates the test split
        quick_start.run("BPR", "typed", row.config_files, {**row.settings, "seed": 1})

    ran = []

    def in_process(number, params, out):  # what the benchmark's child process does, here in this process
        from recbole_gfm.benchmark import tuned_row

        ran.append(number)
        job = _job(bench, tuned_row(bench, row, params), bench.search.seed, out, evaluate_test=False, threads=None)
        child_main({**job, "trial": trial_job(bench.search, row.label, row.search_metric, row.study, number, params)})

    result = run_search(bench.search, "BPR", "typed", row.search_metric, row.study, bench.output_dir, in_process)
    assert len(result.trials) == 3 and [t["number"] for t in result.trials] == [0, 1, 2]
    values = [t["value"] for t in result.trials]
    assert len(set(values)) > 1 and result.chosen["value"] == max(values) and result.chosen is result.trials[values.index(max(values))]
    for trial in result.trials:
        assert trial["state"] == "COMPLETE" and trial["value"] == trial["run"]["best_valid_result"][row.search_metric]
        assert "test_result" not in json.dumps(trial), "a trial has no test metrics"
    assert result.summary()["chosen_trial"] == values.index(max(values)) + 1
    assert "epoch 1: valid mrr@10" in capsys.readouterr().out

    # a damaged trial file is named, moved aside and run again; the trials around it are kept
    second = trial_path(bench.output_dir, "BPR", "typed", 1, row.study)
    with open(second, "r+") as f:
        f.truncate(50)
    warnings, ran[:] = [], []
    again = run_search(bench.search, "BPR", "typed", row.search_metric, row.study, bench.output_dir, in_process, warn=warnings.append)
    assert ran == [1] and len(warnings) == 1 and second in warnings[0] and os.path.isfile(second + ".corrupt")
    assert [(t["params"], t["value"]) for t in again.trials] == [(t["params"], t["value"]) for t in result.trials]


def test_resuming_a_search_killed_by_kill_9_keeps_finished_trials_and_repeats_none(typed_data, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    path = write_bench(tmp_path, typed_data, models={"Pop": {}, "BPR": {}}, seeds=[1], max_epochs=2, search=search())
    trials = tmp_path / "out" / "search"
    proc = subprocess.Popen([sys.executable, RUN, f"--benchmark={path}"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 180
    while not (trials.is_dir() and any(trials.glob("*.json"))):
        assert proc.poll() is None and time.time() < deadline, "the benchmark ended before its first trial was stored"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the grid and the trial it is running
    proc.wait()
    (first,) = trials.glob("*.json")
    assert "__trial1__" in first.name
    kept, mtime = first.read_text(), first.stat().st_mtime_ns

    assert run_benchmark(path) == 0
    out = capsys.readouterr().out
    assert "search BPR on typed, trial 1/3: done before, kept" in out
    assert "trial 1/3 (" not in out and out.count("trial 2/3 (") == 1 and out.count("trial 3/3 (") == 1
    assert first.read_text() == kept and first.stat().st_mtime_ns == mtime, "the finished trial was not run again"
    stored = sorted(trials.glob("*.json"))
    assert [read_json(str(p))["number"] for p in stored] == [0, 1, 2]

    bench = load_benchmark(path)
    records = [read_json(str(p)) for p in stored]
    for k, record in enumerate(records):  # what an uninterrupted search would have run
        assert record["params"] == propose(bench.search, "BPR", record["metric"], records[:k])
    best = max(records, key=lambda r: r["value"])
    (cell,) = (tmp_path / "out" / "cells").glob("BPR__*.json")
    stored_cell = json.loads(cell.read_text())
    assert stored_cell["tuning"]["params"] == best["params"] and stored_cell["tuning"]["trials"] == 3
    assert stored_cell["config"]["learning_rate"] == best["params"]["learning_rate"]
    assert stored_cell["test_result"], "the chosen settings are tested"
    report = (tmp_path / "out" / "search.md").read_text()
    assert f"Chosen: trial {best['number'] + 1} " in report and "Not tuned (settings as given): Pop." in report
    assert f"| {best['value']:.4f} |" in report
    assert f"Training time of the 3 trials: {sum(r['run']['train_time_s'] for r in records):.0f} s" in report
    assert f"| {best['run']['train_time_s']:.1f} | complete |" in report
    assert "| BPR | 1/1 |" in (tmp_path / "out" / "leaderboard.md").read_text() and "3 trials" in (tmp_path / "out" / "leaderboard.md").read_text()
