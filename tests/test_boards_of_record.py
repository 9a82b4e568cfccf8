"""Boards of record: a board folder grows run by run from any clone, within a time budget, and takes new rows.

Every test runs real cells (tiny data, seconds each): a board whose cells are all committed runs
none again in a fresh clone; a cell cut by the time budget resumes from the snapshot committed in
the board folder to the bit-identical result of an unbroken run; a row whose code changed is
reported stale, not extended; ``--add-row`` runs only the new row and tests it against the
committed ones, and refuses another split.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import numpy as np
import pytest
import yaml
from test_benchmark import typed_data  # noqa: F401  (a fixture)

from recbole_gfm.artifacts import read_json, write_json
from recbole_gfm.bench import runner
from recbole_gfm.bench.cells import per_user_path
from recbole_gfm.bench.spec import BenchmarkError
from recbole_gfm.run.per_user import load_per_user




def make_board(folder, data_path: str, **changes) -> str:
    """A board of record's folder (``board.yaml``) on the typed test data; returns the folder."""
    spec = {
        "protocol": "temporal",
        "config": {
            "data_path": data_path,
            "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "item_type"]},
            "state": "ERROR",
            "show_progress": False,
            "embedding_size": 8,
            "valid_metric": "NDCG@10",
        },
        "datasets": {"typed": {}},
        "models": {"BPR": {"learning_rate": 0.01, "epochs": 3}, "Pop": {}},
        "seeds": [1, 2],
        "columns": ["hit@10", "ndcg@10"],
    }
    spec.update(changes)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "board.yaml"), "w") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    return str(folder)


def clone(board: str, to) -> str:
    """What a fresh clone has of a board: its tracked files (no lock, no results/ beside it)."""
    target = os.path.join(str(to), "benchmarks", os.path.basename(board))
    shutil.copytree(board, target, ignore=shutil.ignore_patterns(".board.lock"))
    return target


def cells_of(board: str) -> dict[str, dict]:
    return {os.path.basename(p): read_json(p) for p in sorted(glob.glob(os.path.join(board, "cells", "*.json")))}


def test_a_board_resumed_in_a_fresh_clone_runs_none_of_its_committed_cells(typed_data, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    target = {"row": "BPR", "metric": "ndcg@10", "over": ["Pop"], "at_least": 100.0}
    board = make_board(tmp_path / "benchmarks" / "tiny", typed_data, targets=[target])
    assert runner.run_benchmark(board) == 0
    first = cells_of(board)
    assert len(first) == 4 and not glob.glob(os.path.join(board, "snapshots", "*")), "finished cells leave no snapshot"
    record = next(iter(first.values()))
    assert record["code"]["modules"]["recbole_gfm.quick_start"] and record["evaluation_split"] and record["machine"]["cores"]
    assert "recbole_gfm.bench.runner" not in record["code"]["modules"], "the benchmark's own code is not a result's code"
    assert set(load_per_user(per_user_path(glob.glob(os.path.join(board, "cells", "*.json"))[0]))["metrics"]) == {"hit@10", "ndcg@10"}

    fresh = tmp_path / "fresh"
    copy = clone(board, fresh)
    monkeypatch.chdir(fresh)
    capsys.readouterr()

    def no_child(*args, **kwargs):
        raise AssertionError("a committed cell ran again")

    monkeypatch.setattr(runner.Children, "run", no_child)
    assert runner.run_benchmark(copy) == 0
    out = capsys.readouterr().out
    assert out.count("done before, skipped") == 4 and "nothing left: every row is complete" in out
    assert cells_of(copy) == first
    report = open(os.path.join(copy, "leaderboard.md")).read()
    assert "| BPR | 2/2 |" in report and "stale" not in report.split("## ")[0]
    assert f"python run_recbole_gfm.py --benchmark {copy}/" in report
    # the board's target, judged from the committed per-user values: BPR is nowhere near 100 x Pop
    assert "- BPR ndcg@10 >= 100 x the best of Pop, p < 0.05: **missed**: " in report and "x, p = " in report


def test_a_cell_cut_by_the_time_budget_resumes_from_its_committed_snapshot_to_the_unbroken_result(typed_data, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    # 8 epochs, no early stop: the budget cuts it after its 3rd validation
    row = {"BPR": {"learning_rate": 0.01, "epochs": 8, "stopping_step": 100}}
    unbroken = make_board(tmp_path / "benchmarks" / "unbroken", typed_data, models=row, seeds=[1])
    assert runner.run_benchmark(unbroken) == 0
    (want,) = cells_of(unbroken).values()

    cut = make_board(tmp_path / "benchmarks" / "cut", typed_data, models=row, seeds=[1])
    now = [0.0]
    shown = runner._say

    def say(line: str) -> None:  # the clock passes the budget when the third validation is shown
        shown(line)
        if "epoch 3: valid" in line:
            now[0] = 10_000.0

    monkeypatch.setattr(runner, "_say", say)
    assert runner.run_benchmark(cut, time_budget=3600, clock=lambda: now[0]) == 0
    out = capsys.readouterr().out
    assert "stopped with the board after" in out and "a re-run resumes it from its last validated epoch" in out
    assert "time budget reached" in out
    assert "left: 1 cells (BPR 1)" in out
    assert not cells_of(cut)
    snapshot = glob.glob(os.path.join(cut, "snapshots", "*", "BPR-resume-*.pth"))
    assert len(snapshot) == 1, "the stopped cell's snapshot is in the board folder, to be committed"
    with open(snapshot[0], "rb") as f:
        digest = f.readline()
    assert len(digest.strip()) == 64, "the snapshot starts with its sha256"

    monkeypatch.setattr(runner, "_say", shown)
    fresh = clone(cut, tmp_path / "fresh")  # resumed from what was committed, in another folder
    monkeypatch.chdir(tmp_path / "fresh")
    assert runner.run_benchmark(fresh) == 0
    assert "(resuming its snapshot)" in capsys.readouterr().out
    (got,) = cells_of(fresh).values()
    assert got["resumed_at_epoch"] is not None and 3 <= got["resumed_at_epoch"] <= 8
    for key in ("test_result", "best_valid_result", "best_valid_score", "best_epoch", "epochs_trained", "curve", "evaluation_split"):
        assert got[key] == want[key], key
    a = load_per_user(per_user_path(glob.glob(os.path.join(fresh, "cells", "*.json"))[0]))
    b = load_per_user(per_user_path(glob.glob(os.path.join(unbroken, "cells", "*.json"))[0]))
    assert all(np.array_equal(a["metrics"][k], b["metrics"][k]) for k in b["metrics"]) and list(a["users"]) == list(b["users"])
    assert not glob.glob(os.path.join(fresh, "snapshots", "*", "*")), "a finished cell's snapshot is deleted"


def test_no_cell_starts_that_its_rows_finished_cells_say_cannot_finish(typed_data, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    board = make_board(tmp_path / "benchmarks" / "b", typed_data, models={"Pop": {}}, seeds=[1, 2, 3])
    clock = [0.0]
    real = runner.Children.run

    def slow_child(self, job, log_path, show):  # every cell takes 100 s of the board's clock
        code = real(self, job, log_path, show)
        clock[0] += 100
        return code

    def last_wall(path):  # the stored wall time says 100 s too
        record = read_json(path)
        write_json(path, {**record, "wall_time_s": 100.0})

    monkeypatch.setattr(runner.Children, "run", slow_child)
    original = runner.read_cell
    monkeypatch.setattr(runner, "read_cell", lambda path: (last_wall(path), original(path))[1])
    assert runner.run_benchmark(board, time_budget=150, clock=lambda: clock[0]) == 0
    out = capsys.readouterr().out
    # the first cell ran (nothing to estimate from), the second needs ~100 s with 50 s left: not started
    assert len(cells_of(board)) == 1 and "not started (needs ~100 s, 50 s left)" in out
    assert "left: 2 cells (Pop 2); about 200 s of cell time" in out


def test_a_row_whose_code_changed_is_stale_not_extended_and_re_run_only_when_asked(typed_data, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    board = make_board(tmp_path / "benchmarks" / "b", typed_data)
    assert runner.run_benchmark(board) == 0
    # BPR's cells ran with other code of one module (as after an edit of recbole_gfm/evaluation.py)
    bpr = [p for p in glob.glob(os.path.join(board, "cells", "BPR__*.json"))]
    for path in bpr:
        record = read_json(path)
        record["code"]["modules"]["recbole_gfm.run.evaluation"] = "0" * 16
        write_json(path, record)
    os.unlink(bpr[0])  # and one seed is missing: a stale row is not extended with today's code
    capsys.readouterr()
    assert runner.run_benchmark(board) == 0
    out = capsys.readouterr().out
    assert "BPR on typed: stale (recbole_gfm.run.evaluation changed); not run: --rerun-stale re-runs it whole" in out
    assert len(glob.glob(os.path.join(board, "cells", "BPR__*.json"))) == 1
    report = open(os.path.join(board, "leaderboard.md")).read()
    assert "| BPR | 1/2 stale |" in report and "stale: the code or settings these rows ran with have changed since" in report
    assert "BPR (recbole_gfm.run.evaluation changed)" in report and "--rerun-stale" in report
    assert "stale rows not re-run: BPR (--rerun-stale)" in out

    # Pop is stale too; re-running BPR alone still names it in the status
    pop = {path: read_json(path) for path in glob.glob(os.path.join(board, "cells", "Pop__*.json"))}
    for path, record in pop.items():
        write_json(path, {**record, "code": {**record["code"], "modules": {**record["code"]["modules"], "recbole_gfm.run.evaluation": "0" * 16}}})
    assert runner.run_benchmark(board, rerun_stale=True, only=["BPR"]) == 0
    assert "left: no runnable cell; stale rows not re-run: Pop (--rerun-stale)" in capsys.readouterr().out
    for path, record in pop.items():
        write_json(path, record)
    records = [read_json(p) for p in glob.glob(os.path.join(board, "cells", "BPR__*.json"))]
    assert len(records) == 2 and all(r["code"]["modules"]["recbole_gfm.run.evaluation"] != "0" * 16 for r in records)
    assert "| BPR | 2/2 |" in open(os.path.join(board, "leaderboard.md")).read()

    # Pop's cells ran when a default it does not set resolved otherwise (a package default changed since)
    for path in glob.glob(os.path.join(board, "cells", "Pop__*.json")):
        record = read_json(path)
        record["config"]["train_batch_size"] = 7
        write_json(path, record)
    capsys.readouterr()
    assert runner.run_benchmark(board) == 0
    assert "Pop on typed: stale (setting train_batch_size: 7 -> 2048)" in capsys.readouterr().out
    # a key the package added since (a new feature, off by default) leaves a row current
    for path in glob.glob(os.path.join(board, "cells", "BPR__*.json")):
        record = read_json(path)
        del record["config"]["cold_item_ratio"]
        write_json(path, record)
    assert runner.run_benchmark(board) == 0
    assert "| BPR | 2/2 |" in open(os.path.join(board, "leaderboard.md")).read()


def test_a_gfm_row_whose_foundation_default_changed_is_stale(typed_slice, tmp_path, monkeypatch, capsys):
    from conftest import typed_overrides

    monkeypatch.chdir(tmp_path)
    board = str(tmp_path / "benchmarks" / "g")
    os.makedirs(board)
    spec = {"config": typed_overrides(typed_slice), "datasets": {typed_slice["dataset"]: {}}, "models": {"GFM": {}},
            "seeds": [1], "columns": ["hit@10"]}  # fmt: skip
    with open(os.path.join(board, "board.yaml"), "w") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    assert runner.run_benchmark(board) == 0
    (path,) = glob.glob(os.path.join(board, "cells", "GFM__*.json"))
    record = read_json(path)
    # the cell keeps the settings its foundation was trained with: the HGNN's, with the board's overrides
    assert record["foundation_config"]["model"] == "HGNN" and record["foundation_config"]["epochs"] == 1
    assert record["foundation_config"]["fanouts"] == [10, 10]
    capsys.readouterr()
    assert runner.run_benchmark(board) == 0
    assert "done before, skipped" in capsys.readouterr().out, "the foundation's settings resolve as they were recorded"
    # the foundation ran when one of its defaults resolved otherwise (properties/model/HGNN.yaml changed since)
    record["foundation_config"]["fanouts"] = [7, 7]
    write_json(path, record)
    assert runner.run_benchmark(board) == 0
    out = capsys.readouterr().out
    assert "GFM on ml-100k-typed-slice: stale (setting foundation.fanouts: [7, 7] -> [10, 10]" in out
    assert "not run: --rerun-stale re-runs it whole" in out
    # a cell made before foundations' settings were recorded is not judged on them
    del record["foundation_config"]
    write_json(path, record)
    capsys.readouterr()
    assert runner.run_benchmark(board) == 0
    assert "done before, skipped" in capsys.readouterr().out


def test_add_row_tests_the_new_row_against_the_committed_ones_without_running_them(typed_data, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    board = make_board(tmp_path / "benchmarks" / "b", typed_data)
    assert runner.run_benchmark(board) == 0
    committed = cells_of(board)
    ran = []
    real = runner.Children.run

    def record_child(self, job, log_path, show):
        ran.append(job.meta.get("label"))
        return real(self, job, log_path, show)

    monkeypatch.setattr(runner.Children, "run", record_child)
    mine = tmp_path / "itemknn.yaml"
    mine.write_text(yaml.safe_dump({"models": {"ItemKNN": {"k": 5}}}))
    assert runner.run_benchmark(board, add_row=str(mine)) == 0
    assert ran == ["ItemKNN", "ItemKNN"], "only the new row ran"
    assert {k: v for k, v in cells_of(board).items() if not k.startswith("ItemKNN")} == committed
    assert os.path.isfile(os.path.join(board, "rows", "itemknn.yaml"))
    import pandas as pd

    tests = pd.read_csv(os.path.join(board, "significance.csv"))
    assert {"ItemKNN", "BPR", "Pop"} <= set(tests["model"]) | set(tests["compared_to"])
    assert (tests["model"] == "ItemKNN").any() and tests["t_p"].notna().all()
    assert "| ItemKNN | 2/2 |" in open(os.path.join(board, "leaderboard.md")).read()

    # another split (other cut ratios) is refused before it trains, and the row is not added
    ran.clear()
    other = tmp_path / "other-split.yaml"
    split = {"split": {"RS": [0.6, 0.2, 0.2]}, "order": "TO", "group_by": None, "mode": "full"}
    other.write_text(yaml.safe_dump({"models": {"BPR-other": {"model": "BPR", "eval_args": split, "epochs": 1}}}))
    assert runner.run_benchmark(board, add_row=str(other)) > 0
    out = capsys.readouterr().out
    assert "is scored on other validation / test cases" in out and "refused, not added" in out
    assert ran == ["BPR-other"], "refused at its first cell, before training"
    assert not glob.glob(os.path.join(board, "cells", "BPR-other__*")) and not os.path.exists(os.path.join(board, "rows", "other-split.yaml"))

    # other dataset files are refused before anything runs
    changed = tmp_path / "changed"
    shutil.copytree(os.path.join(typed_data, "typed"), changed / "typed")
    with open(changed / "typed" / "typed.inter", "a") as f:
        f.write("31\t1\t5\n")
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text(yaml.safe_dump({"models": {"BPR-2": {"model": "BPR", "data_path": str(changed)}}}))
    with pytest.raises(BenchmarkError, match="are not the ones the board's rows ran on"):
        runner.run_benchmark(board, add_row=str(elsewhere))


def test_an_added_row_file_is_checked_like_the_board(typed_data, tmp_path):  # noqa: F811
    board = make_board(tmp_path / "benchmarks" / "b", typed_data)
    for content, message in (
        ({"models": {"BPR": {}}}, "has a row 'BPR' already"),
        ({"seeds": [1], "models": {"X": {"model": "BPR"}}}, "not a key of an added row's file"),
        ({"models": {"X": {"model": "BPR"}}, "search": {"spaces": {"X": {"learning_rate": {"choice": [0.1]}}}}}, "is not tuned"),
    ):
        path = tmp_path / "row.yaml"
        path.write_text(yaml.safe_dump(content))
        with pytest.raises(BenchmarkError, match=message):
            runner.run_benchmark(board, add_row=str(path))
    path.write_text(json.dumps({"models": {"X": {"model": "BPR"}}}))
    plain = tmp_path / "plain.yaml"  # a benchmark file, not a board folder
    shutil.copyfile(os.path.join(board, "board.yaml"), plain)
    with pytest.raises(BenchmarkError, match="adds a row to a board of record"):
        runner.run_benchmark(str(plain), add_row=str(path))


def test_the_command_that_goes_on_names_a_board_of_record_by_its_folder_however_it_was_given(tmp_path):
    from types import SimpleNamespace

    folder = tmp_path / "my-board"
    folder.mkdir()
    (folder / "board.yaml").write_text("models: {Pop: {}}\n")
    record, plain = SimpleNamespace(record=True), SimpleNamespace(record=False)
    expected = f"python run_recbole_gfm.py --benchmark {folder}/"
    assert runner._command(record, str(folder)) == expected
    assert runner._command(record, f"{folder}/") == expected
    assert runner._command(record, str(folder / "board.yaml")) == expected  # was ".../board.yaml/"
    assert runner._command(plain, "properties/benchmark/quick.yaml") == "python run_recbole_gfm.py --benchmark properties/benchmark/quick.yaml"


def test_what_is_left_counts_trials_one_at_a_time_and_estimates_a_cell_from_its_rows_trials(monkeypatch):
    """A searching row: its trials run one at a time on every core; its cells, before any finished, cost what a trial did."""
    from types import SimpleNamespace

    searching = SimpleNamespace(label="SASRec", tuned=True, tuning=None, seeds=[1, 2, 3])
    plain = SimpleNamespace(label="Pop", tuned=False, tuning=None, seeds=[1, 2, 3])
    rows = [SimpleNamespace(row=searching, stale=False, records=[], cells=[]),
            SimpleNamespace(row=plain, stale=False, records=[{"wall_time_s": 60.0}], cells=["one"])]  # fmt: skip
    monkeypatch.setattr(runner, "stored_cells", lambda folder: [])
    monkeypatch.setattr(runner, "board_rows", lambda bench, cells: rows)
    monkeypatch.setattr(runner, "row_trials", lambda bench, row: [{"run": {"wall_time_s": 3600.0}}, {"run": {"wall_time_s": 1800.0}}])
    bench = SimpleNamespace(output_dir="unused", record=True, search=SimpleNamespace(trials=8))
    left = runner.left_to_run(bench)
    assert left.trials == {"SASRec": 6} and left.cells == {"SASRec": 3, "Pop": 2}
    assert left.trial_seconds == 6 * 2700.0 and left.cell_seconds == 3 * 2700.0 + 2 * 60.0
    assert left.from_trials == ["SASRec"] and left.unknown == []
    text = left.text(jobs=2)
    # 4.5 h of trials one at a time + 2.3 h of cells two at a time = 5.6 h of wall time (was: all of it halved)
    assert "about 4.5 h of search trials + 2.3 h of cell time (~5.6 h of wall time, cells 2 at a time)" in text
    assert "(SASRec: cells estimated from their trials)" in text
