"""Budget-matched search: clear errors, validation only, the best trial chosen, resumable after kill -9."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_benchmark import RUN, typed_data, write_bench  # noqa: F401  (typed_data is a fixture)

import recbole_gfm.quick_start as quick_start
import recbole_gfm.run.stages as stages
from recbole_gfm.artifacts import fingerprint, read_json, write_json
from recbole_gfm.bench.child import child_main
from recbole_gfm.bench.runner import new_run, run_benchmark, trial_job_of
from recbole_gfm.bench.spec import BenchmarkError, load_benchmark
from recbole_gfm.bench.search import (
    Pruning, SearchError, choose, load_trials, parse_search, propose, pruning_job, run_search, same_settings,
    study_fingerprint, trial_job, trial_path,
)  # fmt: skip

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
        (search(spaces={"BPR": {"learning_rat": {"choice": [0.1]}}}), "search.spaces.BPR.learning_rat", "did you mean 'learning_rate'"),
        (search(metric="ndcg@20"), "search.metric", "not computed on validation"),
        (search(pruner="hyperband"), "search.pruner", "unknown pruner 'hyperband'"),
        (search(pruner="median", prune_warmup=-1), "search.prune_warmup", "non-negative integer"),
        (search(prune_warmup=2), "search.prune_warmup", "search.pruner is not"),
        (search(pruner="median", metric="hit@10"), "search.metric", "the pruner reads each trial's validation curve"),
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


def test_a_stored_trial_whose_proposal_moved_in_its_last_bits_is_kept_not_run_again(tmp_path):
    """Across CPUs TPE's proposal can differ in a float's last bits (published-ml100k's BPR trial 5 was re-run for
    0.00939684983786018 against 0.009396849837860188): the stored trial is the same trial; a real change is not."""
    assert same_settings({"learning_rate": 0.00939684983786018, "embedding_size": 128},
                         {"learning_rate": 0.009396849837860188, "embedding_size": 128})  # fmt: skip
    assert not same_settings({"learning_rate": 0.0094, "embedding_size": 128}, {"learning_rate": 0.0095, "embedding_size": 128})
    assert not same_settings({"learning_rate": 0.0094, "embedding_size": 64}, {"learning_rate": 0.0094, "embedding_size": 128})
    assert not same_settings({"learning_rate": 0.0094}, {"learning_rate": 0.0094, "embedding_size": 128})
    spec = parse_search({"trials": 2, "seed": 7, "startup_trials": 2, "spaces": {"A": SPACE}}, "f.yaml", ["A"], [1])
    params = propose(spec, "A", "ndcg@10", [])
    moved = {**params, "learning_rate": params["learning_rate"] * (1 + 4e-16)}  # another CPU's last bit
    assert moved["learning_rate"] != params["learning_rate"]
    path = trial_path(str(tmp_path), "A", "d", 0, "s")
    os.makedirs(os.path.dirname(path))
    write_json(path, {**trial_job(spec, "A", "ndcg@10", "s", 0, moved), "state": "COMPLETE", "value": 0.5})
    ran = []

    def run_trial(number, params, path, trials):
        ran.append(number)
        write_json(path, {**trial_job(spec, "A", "ndcg@10", "s", number, params), "state": "COMPLETE", "value": 0.1})

    result = run_search(spec, "A", "d", "ndcg@10", "s", str(tmp_path), run_trial, say=lambda m: None, warn=lambda m: None)
    assert ran == [1] and result.trials[0]["value"] == 0.5, "trial 1 kept, trial 2 run"


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
    prepare = stages.data_preparation

    def untouchable_test_split(config, data):
        train, valid, test = prepare(config, data)
        return train, valid, _Untouchable()

    monkeypatch.setattr(stages, "data_preparation", untouchable_test_split)
    bench = load_benchmark(write_bench(tmp_path, typed_data, models={"BPR": {}}, max_epochs=3, search=search()))
    (row,) = bench.rows
    assert row.tuned and not row.ready and bench.cells == [], "a tuned row's cells wait for its search"
    with pytest.raises(SplitWasRead):  # the fixture would catch a run that evaluates the test split
        quick_start.run("BPR", "typed", row.config_files, {**row.settings, "seed": 1})

    ran = []

    def in_process(number, params, out, previous):  # what the benchmark's child process does, here in this process
        ran.append(number)
        assert [t["number"] for t in previous] == list(range(number)), "run_search hands over the trials before"
        child_main(trial_job_of(new_run(bench), row, number, params, out, previous=[]))

    result = run_search(bench.search, "BPR", "typed", row.search_metric, row.study, bench.output_dir, in_process)
    assert len(result.trials) == 3 and [t["number"] for t in result.trials] == [0, 1, 2]
    values = [t["value"] for t in result.trials]
    assert len(set(values)) > 1 and result.chosen["value"] == max(values) and result.chosen is result.trials[values.index(max(values))]
    for trial in result.trials:
        assert trial["state"] == "COMPLETE" and trial["value"] == trial["run"]["best_valid_result"][row.search_metric]
        assert "test_result" not in json.dumps(trial), "a trial has no test metrics"
        assert len(trial["intermediate"]) == trial["run"]["epochs_trained"], "every trial keeps its validation curve"
    assert result.summary()["chosen_trial"] == values.index(max(values)) + 1
    assert "epoch 1: valid ndcg@10" in capsys.readouterr().out

    # a damaged trial file is named, moved aside and run again; the trials around it are kept
    second = trial_path(bench.output_dir, "BPR", "typed", 1, row.study)
    with open(second, "r+") as f:
        f.truncate(50)
    warnings, ran[:] = [], []
    again = run_search(bench.search, "BPR", "typed", row.search_metric, row.study, bench.output_dir, in_process, warn=warnings.append)
    assert ran == [1] and len(warnings) == 1 and second in warnings[0] and glob.glob(second + ".corrupt-*")
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


def finished(spec, number: int, params: dict, curve: list[float]) -> dict:
    """A stored trial that finished with this validation curve (its value: the curve's best)."""
    return {
        **trial_job(spec, "A", "ndcg@10", "s", number, params), "state": "COMPLETE", "value": max(curve),
        "intermediate": {str(epoch): v for epoch, v in enumerate(curve)},
    }  # fmt: skip


def test_the_median_pruner_stops_a_trial_below_the_median_curve_after_its_warmup():
    spec = parse_search(
        {"trials": 8, "startup_trials": 3, "pruner": "median", "prune_warmup": 2, "spaces": {"A": SPACE}}, "f.yaml", ["A"], [1]
    )
    params = {"learning_rate": 0.01, "embedding_size": 4}
    # at epochs 0..4 the finished trials' median is .20, .30, .40, .50, .50 (the middle of three)
    before = [finished(spec, k, params, c) for k, c in enumerate([[.1, .2, .3, .4, .4], [.2, .3, .4, .5, .5], [.3, .4, .5, .6, .6]])]
    slow = Pruning(pruning_job(spec, "ndcg@10", before), params, before[0]["distributions"])
    # below the median from epoch 0 on, but validations 1 and 2 are the warmup: stopped at the third
    assert [slow(epoch, v) for epoch, v in enumerate([.05, .1, .15])] == [False, False, True]
    level = Pruning(pruning_job(spec, "ndcg@10", before), params, before[0]["distributions"])
    # its best so far (.45 from epoch 2) is what counts: above the median .40 at epoch 2, below .50 at epoch 3
    assert [level(epoch, v) for epoch, v in enumerate([.1, .2, .45, .44])] == [False, False, False, True]
    too_early = Pruning(pruning_job(spec, "ndcg@10", before[:2]), params, before[0]["distributions"])
    assert not any(too_early(epoch, 0.0) for epoch in range(5)), "nothing is pruned before startup_trials trials finished"

    no_pruner = parse_search({"trials": 8, "startup_trials": 3, "spaces": {"A": SPACE}}, "f.yaml", ["A"], [1])
    assert pruning_job(no_pruner, "ndcg@10", before) is None
    assert study_fingerprint(no_pruner, "A", "base", "ndcg@10") != study_fingerprint(spec, "A", "base", "ndcg@10")
    # a search without a pruner keeps the study (and so the stored trials) it had before pruning existed
    from optuna.distributions import distribution_to_json

    space = {key: distribution_to_json(d) for key, d in no_pruner.spaces["A"].items()}
    assert study_fingerprint(no_pruner, "A", "base", "ndcg@10") == fingerprint("search", "base", 1, space, "ndcg@10", 3, "tpe")


def test_a_pruned_trial_is_stored_with_its_curve_counted_in_the_budget_and_never_chosen(typed_data, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    section = search(trials=2, startup_trials=1, pruner="median", prune_warmup=0, metric="ndcg@10")
    bench = load_benchmark(write_bench(tmp_path, typed_data, models={"BPR": {}}, max_epochs=3, search=section))
    (row,) = bench.rows
    from recbole_gfm.artifacts import write_json

    # trial 1, stored as finished with a validation curve no real run reaches (1.0 at every epoch)
    params = propose(bench.search, "BPR", row.search_metric, [])
    unbeatable = {
        **trial_job(bench.search, "BPR", row.search_metric, row.study, 0, params), "state": "COMPLETE", "value": 1.0,
        "intermediate": {"0": 1.0, "1": 1.0, "2": 1.0}, "run": {"epochs_trained": 3, "best_epoch": 0, "train_time_s": 1.0},
    }  # fmt: skip
    write_json(trial_path(bench.output_dir, "BPR", "typed", 0, row.study), unbeatable)

    def in_process(number, params, out, previous):  # the benchmark's run_trial, in this process
        child_main(trial_job_of(new_run(bench), row, number, params, out, previous))

    result = run_search(bench.search, "BPR", "typed", row.search_metric, row.study, bench.output_dir, in_process)
    first, second = result.trials
    assert first == unbeatable, "trial 1 was kept"
    # trial 2: below the median (trial 1's curve) at its first validation, so stopped there
    assert second["state"] == "PRUNED" and second["value"] is None and list(second["intermediate"]) == ["0"]
    assert 0 < second["intermediate"]["0"] < 1.0 and second["run"]["epochs_trained"] == 1
    assert second["run"]["best_so_far"] == second["intermediate"]["0"] and second["run"]["train_time_s"] > 0
    assert result.chosen == first and choose(bench.search, "BPR", row.search_metric, result.trials) == first
    out = capsys.readouterr().out
    assert "pruned after epoch 1 (Optuna's median pruner)" in out and "trial 2/2: pruned after epoch 1" in out
    # resumed: both kept, the pruned trial is not run again
    ran = []
    again = run_search(bench.search, "BPR", "typed", row.search_metric, row.study, bench.output_dir, lambda *a: ran.append(a))
    assert ran == [] and again.trials == [first, second]
    # and TPE reads it: a third trial's proposal does not fail on a pruned trial
    assert set(propose(bench.search, "BPR", row.search_metric, again.trials)) == {"learning_rate", "embedding_size"}


def test_a_benchmark_with_a_pruner_prunes_in_its_trial_processes(typed_data, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    section = search(trials=2, startup_trials=1, pruner="median", prune_warmup=0, metric="ndcg@10")
    path = write_bench(tmp_path, typed_data, models={"BPR": {}}, seeds=[1], max_epochs=2, search=section)
    assert run_benchmark(path) == 0
    bench = load_benchmark(path)
    first, second = load_trials(bench.output_dir, "BPR", "typed", bench.rows[0].study, print)
    assert first["state"] == "COMPLETE" and len(first["intermediate"]) == 2
    # the median of one finished curve is that curve: trial 2 stops at its first validation below it
    below = second["intermediate"]["0"] < first["intermediate"]["0"]
    assert second["state"] == ("PRUNED" if below else "COMPLETE")
    assert len(second["intermediate"]) == (1 if below else 2)
    report = (tmp_path / "out" / "search.md").read_text()
    assert "median pruner" in report and ("Pruned: 1 (in brackets" in report) == below


def test_a_pruner_refuses_a_row_that_trains_on_several_processes(typed_data, tmp_path):  # noqa: F811
    section = search(pruner="median", metric="ndcg@10")
    path = write_bench(tmp_path, typed_data, models={"BPR": {"nproc": 2}}, search=section)
    with pytest.raises(BenchmarkError) as error:
        load_benchmark(path)
    assert path in str(error.value) and "'search.pruner'" in str(error.value) and "2 processes" in str(error.value)
