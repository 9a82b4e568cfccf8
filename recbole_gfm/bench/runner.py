"""Running a benchmark: its searches, then its cells, resumable, within a time budget; then its reports.

Every cell is one :func:`recbole_gfm.quick_start.run` in its own process
(:mod:`recbole_gfm.bench.child`). A finished cell is stored atomically (:mod:`recbole_gfm.bench.cells`)
under the fingerprint of its row's resolved settings and data, with the code it ran with
(:mod:`recbole_gfm.bench.record`), so a re-run (from any clone) skips every finished cell and trial,
a killed run loses nothing finished, and a damaged cell is named, moved aside and run again. A row
whose code has changed since its cells ran is stale: reported, and re-run only when asked
(``rerun_stale``), or by itself on a plain benchmark file (unpublished results).

Every row of a board is scored on the same cases: the first cell of a dataset and seed fixes the
board's evaluation split (:func:`recbole_gfm.data.protocol.split_fingerprint`), and a row whose split differs is
refused before it trains. ``add_row`` adds rows to a board of record (``--add-row``): the new rows'
file is copied into the board's ``rows/``, only they run (their search first where the board is
tuned, with its budget), on the board's data and split, and the report tests them against the
committed rows without running those.

Only one run of a board at a time (a lock in its folder). Each running cell prints a line per
validation (epoch, best so far, elapsed time) whatever the log level; its full output is kept in
``<scratch_dir>/logs/<cell>.log``.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Callable

from recbole.utils import set_color

from recbole_gfm.artifacts import LockedError, exclusive, git_state, write_json
from recbole_gfm.bench.board import Benchmark, Cell, Row
from recbole_gfm.bench.cells import load_or_move_aside, read_cell, remove_cell, stored_cells, warn
from recbole_gfm.bench.child import CONFIG_ERROR_EXIT, Job
from recbole_gfm.bench.process import Children, cell_threads, last_line
from recbole_gfm.bench.record import Budget, Left, changes_since, duration_text, mean_seconds, recorded_settings
from recbole_gfm.bench.report import write_leaderboard
from recbole_gfm.bench.rows import BoardRow, board_rows, row_trials
from recbole_gfm.bench.search import (
    SearchResult, TrialNotStored, pruning_job, run_search, trial_job, trial_path, trial_record,
)  # fmt: skip
from recbole_gfm.bench.spec import ROWS_DIR, BenchmarkError, board_file, load_benchmark, read_rows_file, tuned_row
from recbole_gfm.run.resume import snapshots


class _OutOfTime(Exception):
    """The time budget does not leave room for the next trial of a search (or the run may start none)."""


@dataclass
class _Run:
    """One run of a board: what it runs and with what."""

    bench: Benchmark
    children: Children
    budget: Budget
    commit: dict[str, Any]
    expected_split: dict[tuple[str, int], str]  # (dataset, seed): the board's evaluation split (a random split depends on the seed)
    estimates: dict[str, list[float]]  # row label: wall seconds of its finished cells
    refused: set[str]  # rows whose split the board refused
    rerun: set[str]  # stale rows run again: their stale cells are replaced


def new_run(bench: Benchmark, budget: Budget | None = None, rows=(), expected_split: dict | None = None) -> _Run:
    """A run of ``bench`` (its children, budget, commit); ``rows``: its board rows, whose cells give the time estimates."""
    estimates = {row.label: [r["wall_time_s"] for r in row.records if r.get("wall_time_s")] for row in rows}
    return _Run(bench, Children(), budget or Budget(None), git_state(), dict(expected_split or {}), estimates, set(), set())


def _say(line: str) -> None:
    print(line, flush=True)


def _shown(run: _Run, prefix: str) -> Callable[[str], None]:
    """Show a child's line; past the time budget, stop the running children at once (a validation just ended)."""

    def show(line: str) -> None:
        _say(f"{prefix}{line}")
        if run.budget.expired():
            run.children.stop()

    return show


def run_benchmark(
    path: str,
    cmd_overrides: dict[str, str] | None = None,
    jobs: int | None = None,
    time_budget: float | None = None,
    add_row: str | None = None,
    rerun_stale: bool = False,
    only: list[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run (or resume) a benchmark's searches and cells, then write its reports. Returns the number of failed cells.

    Args:
        path: a benchmark file, or a board of record's folder.
        time_budget: seconds after which no cell or trial starts and the running ones are stopped
            (each keeps the snapshot of its last validation, which the next run resumes).
        add_row: an added row's file (board of record only): only its rows run.
        rerun_stale: re-run the rows whose code changed since they ran (a board of record never does it by itself).
        only: run these row labels only (the report still shows every row).
        clock: the budget's clock (tests replace it).
    """
    bench = load_benchmark(path, cmd_overrides, jobs, add_rows=add_row)
    try:
        with exclusive(os.path.join(bench.output_dir, "board"), wait=False):
            return _run_locked(bench, path, time_budget, add_row, rerun_stale, only, clock)
    except LockedError as e:
        raise BenchmarkError(
            f"{bench.output_dir}: this board is being run by another process (pid {e.owner}). Wait for it to finish, "
            f"or stop it (kill {e.owner}) and run again: two runs of one board would run the same cells twice."
        ) from None


def _run_locked(bench: Benchmark, path: str, time_budget, add_row, rerun_stale: bool, only, clock) -> int:
    stored = stored_cells(bench.output_dir)
    rows = {(r.dataset, r.label): r for r in board_rows(bench, stored)}
    expected = _evaluation_splits(stored)
    selected = _selected(bench, only, add_row)
    if add_row:
        _check_added(bench, stored, selected)
        added = os.path.join(bench.output_dir, ROWS_DIR, os.path.basename(add_row))
        if os.path.exists(added):
            raise BenchmarkError(f"{add_row}: the board has an added row file {added} already: give yours another file name.")
        os.makedirs(os.path.dirname(added), exist_ok=True)
        shutil.copyfile(add_row, added)
        print(f"added {', '.join(selected)} to {bench.name} ({added}); the committed rows are not run", flush=True)
    run = new_run(bench, Budget(time_budget, clock), rows.values(), expected)
    runnable = [row for row in bench.rows if row.label in selected and _ready_to_run(run, row, rows[(row.dataset, row.label)], rerun_stale)]
    cells = sum(len(row.seeds) for row in runnable)
    tuned = sum(row.tuned for row in runnable)
    searches = f", {tuned} rows tuned with {bench.search.trials} trials each" if tuned else ""
    at_once = f", {bench.jobs} at a time ({cell_threads(bench.jobs)} torch threads each)" if bench.jobs > 1 else ""
    limit = f", time budget {duration_text(time_budget)}" if time_budget else ""
    print(set_color(f"benchmark {bench.name}: {cells} cells{searches}{at_once}{limit} -> {bench.output_dir}", "green"), flush=True)
    start = time.perf_counter()
    watch = run.budget.watch(run.children.stop)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # children stopped, not orphaned
    try:
        _read_searches(run, runnable)
        queue = [Cell(row, seed) for row in bench.rows if row.label in {r.label for r in runnable} for seed in row.seeds]
        counters = [f"[{k}/{len(queue)}]" for k in range(1, len(queue) + 1)]
        with ThreadPoolExecutor(bench.jobs, thread_name_prefix="cell") as pool:
            try:
                outcomes = list(pool.map(lambda c, n: _run_or_skip(run, n, c) if c.row.ready else "not ready", queue, counters))
            except BaseException:  # Ctrl-C or SIGTERM: no new cell, the running ones stopped
                pool.shutdown(wait=False, cancel_futures=True)
                run.children.stop()
                raise
    finally:
        watch.set()
        signal.signal(signal.SIGTERM, previous)
    if add_row and selected and all(label in run.refused for label in selected):
        os.unlink(added)  # refused (another split): the row is not part of the board
        print(set_color(f"{', '.join(selected)}: refused, not added to {bench.name}", "red"), flush=True)
        bench = run.bench = load_benchmark(path, bench.cmd_overrides, bench.jobs)
        _read_searches(run)
    failed = Counter(outcomes)["failed"]
    left = left_to_run(bench)  # every row still stale is named, re-run this time or not (--rows, a budget)
    command = _command(bench, path)
    paths = write_leaderboard(bench, left, command if bench.record else None)
    done = Counter(outcomes)["done"] + Counter(outcomes)["ran"]
    print(set_color(f"{done}/{len(queue)} cells done in {time.perf_counter() - start:.1f} s; {left.text(bench.jobs)}", "green"))
    if run.budget.expired():
        print(set_color(f"time budget reached: continue with {command}", "yellow"))
    if run.refused:
        failed += len(run.refused)
    with open(paths["md"]) as f:
        print(f.read())
    for kind, file in paths.items():
        print(f"{kind}: {file}")
    return failed


def _read_searches(run: _Run, runnable: list[Row] = ()) -> None:
    """Run the searches of the ``runnable`` tuned rows; read the complete ones of the others (their cells are shown)."""
    for i, row in enumerate(run.bench.rows):
        if row.tuned:
            run.bench.rows[i] = _search(run, row, may_run=row in runnable)


def _command(bench: Benchmark, path: str) -> str:
    """The command that goes on with this board: a board of record by its folder (given as the folder or its board.yaml)."""
    if bench.record:
        path = (os.path.dirname(board_file(path)[0]) or ".") + "/"
    return f"python run_recbole_gfm.py --benchmark {path}"


def _selected(bench: Benchmark, only: list[str] | None, add_row: str | None) -> list[str]:
    labels = list(dict.fromkeys(row.label for row in bench.rows))
    if add_row:
        return list(read_rows_file(add_row)["models"])
    if only:
        unknown = [label for label in only if label not in labels]
        if unknown:
            raise BenchmarkError(f"{bench.path}: --rows {', '.join(unknown)}: no such row (rows: {', '.join(labels)}).")
        return list(only)
    return labels


def _evaluation_splits(stored) -> dict[tuple[str, int], str]:
    """Per dataset and seed, the evaluation split of the board's finished cells (the most common, if they disagree)."""
    found: dict[tuple[str, int], Counter] = {}
    for cell in stored:
        if cell.record.get("evaluation_split"):
            found.setdefault((cell.record["dataset"], cell.record["seed"]), Counter())[cell.record["evaluation_split"]] += 1
    return {key: counts.most_common(1)[0][0] for key, counts in found.items()}


def _check_added(bench: Benchmark, stored, labels: list[str]) -> None:
    """An added row runs on the data the committed rows ran on: the dataset files' fingerprint must match."""
    for row in (r for r in bench.rows if r.label in labels):
        theirs = {c.record.get("data_fingerprint") for c in stored if c.record["dataset"] == row.dataset} - {None}
        if theirs and row.data_fingerprint not in theirs:
            raise BenchmarkError(
                f"{bench.path}: row '{row.label}': the dataset files of {row.dataset} here (fingerprint "
                f"{row.data_fingerprint}) are not the ones the board's rows ran on ({', '.join(sorted(theirs))}): "
                "prepare the dataset as the board's report says, so that your row is scored on the same split."
            )


def _ready_to_run(run: _Run, row: Row, board_row: BoardRow, rerun_stale: bool) -> bool:
    """Whether ``row`` is run: a current row is (its missing seeds); a stale one is replaced whole, or left as it is."""
    if not board_row.stale:
        return True
    reasons = ", ".join(board_row.code.stale[:5])
    if run.bench.record and not rerun_stale:
        print(set_color(f"{row.label} on {row.dataset}: stale ({reasons}); not run: --rerun-stale re-runs it whole", "yellow"), flush=True)
        return False
    print(set_color(f"{row.label} on {row.dataset}: its code changed since it ran ({reasons}): running it again", "yellow"), flush=True)
    run.rerun.add(row.label)
    for cell in board_row.cells:
        remove_cell(cell.path)
    for trial in row_trials(run.bench, row):
        os.unlink(trial_path(run.bench.output_dir, row.label, row.dataset, trial["number"], row.study))
    run.estimates[row.label] = []
    return True


def _search(run: _Run, row: Row, may_run: bool = True) -> Row:
    """Run (or resume) ``row``'s search; the row with the chosen settings, or unchanged (not ready) if none finished.

    ``may_run=False``: only read a complete search (a row this run does not run).
    """
    bench, spec = run.bench, run.bench.search
    head = f"search {row.label} on {row.dataset}"

    def run_trial(number: int, params: dict[str, Any], out: str, previous: list[dict]) -> None:
        if not may_run:
            raise _OutOfTime()
        estimate = mean_seconds([t.get("run") or {} for t in previous], "wall_time_s") or mean_seconds(
            [t.get("run") or {} for t in previous], "train_time_s")  # fmt: skip
        if not run.budget.fits(estimate):
            raise _OutOfTime()
        job = trial_job_of(run, row, number, params, out, previous)
        trial = job.trial
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())
        print(f"{head}, trial {number + 1}/{spec.trials} ({shown}) ...", flush=True)
        log_path = bench.log_path(os.path.basename(out).removesuffix(".json"))
        code = run.children.run(job, log_path, _shown(run, "    "))
        if not os.path.isfile(out):
            if code < 0:  # killed by a signal (the time budget, Ctrl-C): nothing to store, the trial runs again next time
                why = "with the board" if run.children.stopping.is_set() else f"by signal {-code}"
                raise TrialNotStored(f"{head}, trial {number + 1}: stopped {why}; it runs again next time (log: {log_path})")
            if code == CONFIG_ERROR_EXIT:
                run.refused.add(row.label)
                raise TrialNotStored(f"{head}: refused: {last_line(log_path)}")
            write_json(out, trial_record(**trial, record=None, log=log_path, error=f"the run failed (exit {code})"))

    try:
        result: SearchResult = run_search(
            spec, row.label, row.dataset, row.search_metric, row.study, bench.output_dir, run_trial,
            say=_say if may_run else lambda line: None, warn=warn,
        )  # fmt: skip
    except _OutOfTime:
        if not may_run:
            return row
        print(set_color(f"{head}: the next trial does not fit in the time left; the search goes on next time", "yellow"), flush=True)
        return row
    except TrialNotStored as e:
        print(set_color(f"{e}: the row's cells are not run", "red"), flush=True)
        return row
    if result.chosen is None:
        print(set_color(f"{head}: no trial finished; the row's cells are not run (see the trials' logs)", "red"), flush=True)
        return row
    return replace(tuned_row(bench, row, result.chosen["params"]), tuning=result.summary())


def trial_job_of(run: _Run, row: Row, number: int, params: dict[str, Any], out: str, previous: list[dict]) -> Job:
    """The :class:`Job` of trial ``number`` of ``row``'s search (``previous``: the trials before it, for its pruner)."""
    spec = run.bench.search
    checkpoints = run.bench.checkpoint_dir(os.path.basename(out).removesuffix(".json"))
    job = _job(run, tuned_row(run.bench, row, params), spec.seed, out, checkpoints, evaluate_test=False, threads=None)
    trial = trial_job(spec, row.label, row.search_metric, row.study, number, params)
    return replace(job, trial=trial, pruning=pruning_job(spec, row.search_metric, previous))


def _job(run: _Run, row: Row, seed: int, out: str, checkpoint_dir: str, evaluate_test: bool, threads: int | None) -> Job:
    bench = run.bench
    return Job(
        model=row.model,
        dataset=row.dataset,
        config_files=row.config_files,
        config_dict={
            **row.settings,
            "seed": seed,
            "results_dir": "",
            # one folder per cell: RecBole names a checkpoint <model>-<time to the second>.pth, so two
            # cells of one model started in the same second (jobs > 1) would save to one file
            "checkpoint_dir": checkpoint_dir,
            "text_show_progress": True,  # a long encoding shows its bar (printed every BAR_EVERY_S)
        },
        cmd_overrides=bench.cmd_overrides,
        out=out,
        valid_metric=row.valid_metric,
        valid_bigger=row.valid_bigger,
        evaluate_test=evaluate_test,
        threads=threads,
        meta={"commit": run.commit},
        expected_split=run.expected_split.get((row.dataset, seed)) if evaluate_test else None,  # a trial never reads the test split
    )


def _replace_stale(run: _Run, cell: Cell) -> bool:
    """A plain benchmark file (unpublished results) re-runs a stale cell's row by itself, saying so."""
    print(set_color(f"{cell.label} on {cell.dataset}: its code changed since it ran: running it again", "yellow"), flush=True)
    run.rerun.add(cell.label)
    return True


def _cell_estimate(run: _Run, cell: Cell) -> float | None:
    """Seconds the finished cells of ``cell``'s row took on average (None: none has finished)."""
    done = run.estimates.get(cell.label) or []
    return sum(done) / len(done) if done else None


def _run_or_skip(run: _Run, counter: str, cell: Cell) -> str:
    """Run one cell unless it is stored already (and intact); its outcome: done, ran, failed, stopped or skipped."""
    bench = run.bench
    head = f"{counter} {cell.label} on {cell.dataset}, seed {cell.seed}"
    out = bench.cell_path(cell)
    stored = load_or_move_aside(out) if os.path.isfile(out) else None
    if stored is not None:
        changed = changes_since(stored.get("code"), stored.get("versions"), recorded_settings(stored), cell.row.resolved)
        if not changed:
            print(f"{head}: " + set_color("done before, skipped", "blue"), flush=True)
            return "done"
        if cell.label not in run.rerun and (bench.record or not _replace_stale(run, cell)):
            print(f"{head}: " + set_color(f"stale ({', '.join(changed[:3])}), not run: --rerun-stale re-runs its row", "yellow"), flush=True)
            return "skipped"
        remove_cell(out)
    if cell.label in run.refused:
        return "skipped"
    checkpoints = bench.checkpoint_dir(cell.name)
    estimate = _cell_estimate(run, cell)
    if not run.budget.fits(estimate):
        why = f"needs ~{duration_text(estimate)}" if estimate else "the budget is spent"
        print(f"{head}: " + set_color(f"not started ({why}, {duration_text(max(run.budget.left(), 0))} left)", "yellow"), flush=True)
        return "skipped"
    resuming = " (resuming its snapshot)" if snapshots(checkpoints) else ""
    print(f"{head} ...{resuming}", flush=True)
    job = _job(run, cell.row, cell.seed, out, checkpoints, evaluate_test=True, threads=cell_threads(bench.jobs))
    job.meta.update({
        "label": cell.label,
        "fingerprint": cell.fingerprint,
        "row_fingerprint": cell.row.fingerprint,
        "data_fingerprint": cell.row.data_fingerprint,
        "epochs": cell.row.epochs,
        "epochs_capped_from": cell.row.capped_from,
        "one_pass": cell.row.one_pass,
        "tuning": cell.row.tuning,
        "parallel_cells": bench.jobs,
    })  # fmt: skip
    job = replace(job, per_user_keys=bench.columns if bench.record else None,
                  final_checkpoint_dir=bench.finished_checkpoint_dir(cell.name) if bench.record else None)  # fmt: skip
    start = time.perf_counter()
    log_path = bench.log_path(cell.name)
    who = f"{cell.label}, seed {cell.seed}: " if bench.jobs > 1 else ""  # whose line, when cells interleave
    code = run.children.run(job, log_path, _shown(run, f"    {who}"))
    seconds = time.perf_counter() - start
    if code != 0 or not os.path.isfile(out):
        if code < 0:  # stopped by a signal (the time budget, Ctrl-C, kill): recbole_gfm.run.resume kept its last validation
            again = "resumes it from its last validated epoch" if snapshots(checkpoints) else "starts it again"
            why = "with the board" if run.children.stopping.is_set() else f"by signal {-code}"
            print(f"{head}: " + set_color(f"stopped {why} after {seconds:.1f} s; a re-run {again}", "yellow"), flush=True)
            return "stopped"
        if code == CONFIG_ERROR_EXIT:
            run.refused.add(cell.label)
            print(f"{head}: " + set_color(f"refused: {last_line(log_path)}", "red"), flush=True)
            return "failed"
        print(f"{head}: " + set_color(f"FAILED after {seconds:.1f} s (exit {code}); log: {log_path}", "red"), flush=True)
        return "failed"
    record = read_cell(out)
    run.estimates.setdefault(cell.label, []).append(record["wall_time_s"])
    run.expected_split.setdefault((cell.dataset, cell.seed), record["evaluation_split"])
    name = (bench.columns or list(record["test_result"]) or ["no metric"])[0]
    print(
        f"{head}: {seconds:.1f} s (train {record['train_time_s']:.1f} s, eval {record['eval_time_s']:.1f} s), "
        f"test {name} {record['test_result'].get(name, math.nan):.4f}",
        flush=True,
    )
    return "ran"


def left_to_run(bench: Benchmark) -> Left:
    """What the board has not finished, and how long it should take, from its stored cells and trials;
    a board of record's stale rows are named, not counted as finished."""
    left = Left()
    rows = board_rows(bench, stored_cells(bench.output_dir))
    for board_row in rows:
        row = board_row.row
        if row is None:
            continue
        if board_row.stale and bench.record:
            left.stale.append(row.label)
            continue
        cell_s = mean_seconds(board_row.records)
        missing = len(row.seeds) - len(board_row.cells)
        runs = [t.get("run") or {} for t in row_trials(bench, row)] if row.tuned else []
        trial_s = mean_seconds(runs, "wall_time_s") or mean_seconds(runs, "train_time_s")
        if row.tuned and row.tuning is None:
            remaining = bench.search.trials - len(runs)
            if remaining:
                left.trials[row.label] = remaining
            if trial_s:
                left.trial_seconds += remaining * trial_s
            if remaining and not trial_s:
                left.unknown.append(f"{row.label}'s search")
        if missing > 0:
            left.cells[row.label] = missing
            if cell_s or trial_s:  # a trial trains the row's model on the same split to its early stop: a cell's cost
                left.cell_seconds += missing * (cell_s or trial_s)
                if not cell_s:
                    left.from_trials.append(row.label)
            else:
                left.unknown.append(f"{row.label}'s cells")
    return left
