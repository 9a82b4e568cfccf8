"""The board's reports, written from its stored cells: Markdown, CSV, PNG and the search report.

Files (in the board's output folder): ``leaderboard.md`` (one table per dataset, significance
markers, each row's commit, stale rows and why, notes), ``leaderboard.csv`` (means and stds),
``significance.csv`` (every comparison's p-values: t-test and Wilcoxon, raw and Holm),
``leaderboard.png``, and ``search.md`` when some row was tuned (:mod:`recbole_gfm.bench.search`).
The markers come from the paired t-test; the test is named under each table.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
from typing import Any

from recbole_gfm.artifacts import atomic_write
from recbole_gfm.bench.board import Benchmark
from recbole_gfm.bench.cells import stored_cells
from recbole_gfm.bench.record import Left
from recbole_gfm.bench.rows import (
    BoardRow, DatasetSignificance, board_rows, epochs_text, fmt, per_user_rows, reached_cap, row_trials, significance, summarise,
    types_of,
)  # fmt: skip
from recbole_gfm.bench.significance import caption, markers
from recbole_gfm.bench.targets import Target, judge

ALPHA = 0.05
TEST = "t"  # markers from the paired t-test; Wilcoxon p-values beside them in significance.csv
USER_GROUPS = ("users=new", "users=returning")  # recbole_gfm.run.evaluation's new / returning-user keys


def write_leaderboard(bench: Benchmark, left: Left | None = None, command: str | None = None) -> dict[str, str]:
    """Write the board of ``bench.output_dir`` from every finished cell there; return the files' paths.

    ``left``: what the run did not finish (stated at the top); ``command``: the command that
    continues the board (a board of record states it).
    """
    rows = board_rows(bench, stored_cells(bench.output_dir))
    first = next((r.records[0] for r in rows if r.cells), None)
    columns = bench.columns or ([k for k in first["test_result"] if "[" not in k] if first else [])
    type_columns = bench.type_columns or columns[:1]
    summaries = {(r.dataset, r.label): summarise(r.records) for r in rows if r.cells}
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    # tests among this file's rows: another file's row (other seeds, say) must not shrink their common cases
    tests = {d: significance([r for r in rows if r.dataset == d and r.row is not None], columns, bench.reference) for d in datasets}

    md = io.StringIO()
    md.write(_header(bench, rows, left, command))
    for dataset in datasets:
        md.write(_table(dataset, rows, summaries, columns, tests[dataset], command))
        md.write(_targets(bench.targets, [r for r in rows if r.dataset == dataset and r.row is not None], summaries))
    md.write(_group_tables(rows, summaries, type_columns))
    md.write(_footer(bench, rows))

    os.makedirs(bench.output_dir, exist_ok=True)
    paths = {k: os.path.join(bench.output_dir, f"leaderboard.{k}") for k in ("md", "csv", "png")}
    with atomic_write(paths["md"], "w") as f:
        f.write(md.getvalue())
    _write_csv(paths["csv"], rows, summaries)
    paths["significance"] = os.path.join(bench.output_dir, "significance.csv")
    _write_significance(paths["significance"], tests)
    _plot(paths["png"], summaries, columns[0] if columns else None, type_columns[0] if type_columns else None)
    if any(row.tuned for row in bench.rows) and bench.search is not None:
        paths["search"] = os.path.join(bench.output_dir, "search.md")
        write_search_report(paths["search"], bench)
    return paths


def _header(bench: Benchmark, rows: list[BoardRow], left: Left | None, command: str | None) -> str:
    where = os.path.relpath(os.path.join(bench.output_dir, "cells"))  # the same text from any clone
    where = where if not where.startswith("..") else os.path.join(bench.output_dir, "cells")
    text = (
        f"# Leaderboard: {bench.name}\n\nTest metrics, mean ± sample std over seeds ({bench.path}), from every "
        f"finished cell in {where}. Epochs: epochs trained per seed (best: the validated epoch, counted from 1, "
        "whose checkpoint is tested). Test cases: users ranked. To best s: training time until the best epoch's "
        "validation, a foundation's whole training included. Commit: the commit each row's cells ran at "
        "(+dirty: with uncommitted changes).\n"
    )
    if command:
        text += f"\nCommand (runs what is left, skips every finished cell and trial): `{command}`\n"
    if left is not None:
        text += f"\nStatus: {left.text(bench.jobs)}\n"
    parallel = max((rec.get("parallel_cells", 1) for r in rows for rec in r.records), default=1)
    if parallel > 1:
        text += (
            f"\nTimes: cells ran up to {parallel} at a time, sharing the cores (each with its share as torch "
            "threads); read them as ratios between rows of this board, not as one cell's time alone.\n"
        )
    tuned = [row for row in bench.rows if row.tuned]
    if tuned and bench.search is not None:
        text += (
            f"\nTuned on the validation split ({bench.search.describe()}; search.md): "
            f"{', '.join(dict.fromkeys(r.label for r in tuned))}. Every other row runs its settings as given.\n"
        )
    return text


def _table(dataset: str, rows: list[BoardRow], summaries: dict, columns: list[str], result: DatasetSignificance,
           command: str | None) -> str:  # fmt: skip
    header = ["model", "seeds", "epochs", "test cases", *columns, "train s", "to best s", "eval s", "tuned", "commit", "config"]
    text = f"\n## {dataset}\n\n| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    symbols = {metric: markers(r, ALPHA, TEST) for metric, r in result.results.items()}
    for row in (r for r in rows if r.dataset == dataset):
        summary, n = summaries.get((dataset, row.label), {}), len(row.cells)
        values = [(fmt(summary.get(c), n) + " " + symbols.get(c, {}).get(row.label, "")).strip() for c in columns]
        times = [f"{summary[t][0]:.1f}" if t in summary else "-" for t in ("train_time_s", "train_time_to_best_s", "eval_time_s")]
        cases = str(row.records[0].get("test_cases_by_type", {}).get("all", "-")) if row.cells else "-"
        tuning = row.records[0].get("tuning") if row.cells else None
        trials = f"{tuning['trials']} trials" if tuning else "-"
        fp = row.row.fingerprint if row.row is not None and row.row.ready else (row.records[0]["row_fingerprint"] if row.cells else "-")
        commit = row.code.commit if row.code else "-"
        text += "| " + " | ".join([row.label, row.seeds, epochs_text(row.records), cases, *values, *times, trials, commit, fp]) + " |\n"
    notes = _notes(dataset, rows, result, columns, command)
    return text + (f"\n{notes}" if notes else "")


def _targets(targets: list[Target], rows: list[BoardRow], summaries: dict) -> str:
    """What the board must show (its file's ``targets``), met or missed on this dataset, with the test."""
    if not targets:
        return ""
    vectors, _ = per_user_rows(rows)
    text = "\nTargets (bench/targets.py: the row's mean against the best of the named rows, two-sided paired t-test):\n\n"
    for target in targets:
        means = {
            r.label: (summaries[(r.dataset, r.label)][target.metric][0], len(r.cells)) for r in rows
            if r.cells and target.metric in summaries[(r.dataset, r.label)]
        }  # fmt: skip
        result = judge(target, vectors, means)
        if isinstance(result, str):
            text += f"- {target.describe()}: {result}.\n"
            continue
        verdict = {True: "**met**", False: "**missed**", None: "**not tested**"}[result.met]
        if target.is_time:
            basis, digits = f"the means over seeds ({result.n_seeds} seeds)", ".1f"
        elif result.p is None:
            basis, digits = f"the means over seeds ({result.n_seeds} seeds; the cells keep no per-user values of it to test)", ".4f"
        else:
            basis = f"p = {result.p:.2g} ({result.n_pairs:,} (seed, user) pairs, {result.n_seeds} seeds)"
            digits = ".4f"
        stale = [r.label for r in rows if r.label in (target.row, *target.over) and r.stale]
        text += (
            f"- {target.describe()}: {verdict}: {result.value:{digits}} against {result.best} {result.best_value:{digits}}, "
            f"{result.ratio:.2f} x, {basis}" + (f"; from stale rows: {', '.join(stale)}" if stale else "")
            + (f"; not run yet, left out: {', '.join(result.not_run)}" if result.not_run else "") + ".\n"
        )
    return text


def _group_tables(rows: list[BoardRow], summaries: dict, type_columns: list[str]) -> str:
    """Per item type (warm / cold users of the type) and new / returning users, for each type column."""
    text = ""
    all_keys = dict.fromkeys(k for s in summaries.values() for k in s)
    for metric in type_columns:
        for title, groups in (
            ("per item type (warm / cold: with / without train interactions of the type)", types_of(all_keys, metric)),
            ("for new and returning users (new: no train interaction)", [g for g in USER_GROUPS if f"{metric}[{g}]" in all_keys]),
        ):
            if groups:
                text += f"\n## {metric} {title}\n\n| dataset | model | " + " | ".join(g.removeprefix("type=") for g in groups) + " |\n"
                text += "|" + "---|" * (len(groups) + 2) + "\n"
                for row in (r for r in rows if r.cells):
                    values = [fmt(summaries[(row.dataset, row.label)].get(f"{metric}[{g}]"), len(row.cells)) for g in groups]
                    text += f"| {row.dataset} | {row.label} | " + " | ".join(values) + " |\n"
    return text


def _footer(bench: Benchmark, rows: list[BoardRow]) -> str:
    """Versions, machines and, for a published board, what a cell weighs."""
    records = [rec for r in rows for rec in r.records]
    if not records:
        return ""
    versions = ", ".join(f"{k} {v}" for k, v in records[0]["versions"].items())
    text = f"\nconfig: fingerprint of the resolved config and the dataset files. Versions: {versions}.\n"
    machines = sorted({json.dumps(rec["machine"], sort_keys=True) for rec in records if rec.get("machine")})
    if machines:
        shown = "; ".join(f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB" for m in map(json.loads, machines))
        text += f"Machines: {shown}.\n"
    if bench.record:
        files = glob.glob(os.path.join(bench.output_dir, "cells", "*"))
        size = sum(os.path.getsize(f) for f in files) / max(len(records), 1) / 1024
        text += f"A cell weighs {size:.0f} KiB on average (its record and its per-user values of the board's columns).\n"
    return text


def _notes(dataset: str, rows: list[BoardRow], result: DatasetSignificance, columns: list[str], command: str | None) -> str:
    """The sentences under a dataset's table: the test, capped rows, other files' rows, stale rows and cells."""
    mine = [r for r in rows if r.dataset == dataset]
    notes = []
    if result.results:
        first = next(iter(result.results.values()))
        compared = ", ".join(result.results)
        text = caption(first, ALPHA, TEST)
        if any(m not in result.results for m in columns):
            text += f" Markers for {compared} (the others have no per-user values)."
        notes.append(text)
    notes.extend(result.notes)
    capped = [r.label for r in mine if any(reached_cap(rec) for rec in r.records)]
    if capped:
        notes.append(
            f"capped: {', '.join(capped)} trained to the epoch limit without early stopping ending the run: "
            "not a converged result; raise the limit (max_epochs / epochs)."
        )
    if any(r.row is None for r in mine):
        notes.append("\\* rows of other benchmark files that write into this folder (seeds: cells found); not in the tests.")
    stale = [r for r in mine if r.stale]
    if stale:
        reasons = "; ".join(f"{r.label} ({', '.join(r.code.stale[:4])}{' ...' if len(r.code.stale) > 4 else ''})" for r in stale)
        rerun = f"`{command or 'run_recbole_gfm.py --benchmark ...'} --rerun-stale --rows {','.join(r.label for r in stale)}`"
        notes.append(
            f"stale: the code or settings these rows ran with have changed since, so this checkout would not make the "
            f"same results: {reasons}. They stay in the table and the tests as they ran; re-run them with {rerun}."
        )
    others = [f"{r.label} {r.other_settings}" for r in mine if r.other_settings]
    if others:
        notes.append(f"Not in the rows: cells of these labels made with other settings or data: {', '.join(others)}.")
    return "\n".join(f"{n}\n" for n in notes)


def _write_csv(path: str, rows: list[BoardRow], summaries: dict) -> None:
    keys = list(dict.fromkeys(k for s in summaries.values() for k in s))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["dataset", "model", "seeds", "epochs_trained", "best_epoch_from_1", "capped", "epochs_limit", "epochs_capped_from",
                     "tuned_trials", "other_settings_cells", "stale", "commit", "config_fingerprint", *[f"{k}_{s}" for k in keys for s in ("mean", "std")],
                     "versions"])  # fmt: skip
    for row in rows:
        recs, summary = row.records, summaries.get((row.dataset, row.label), {})
        values = [f"{v:.6g}" for k in keys for v in summary.get(k, (math.nan, math.nan))]
        tuning = recs[0].get("tuning") if recs else None
        writer.writerow([
            row.dataset, row.label, len(recs),
            "/".join(str(r.get("epochs_trained", "")) for r in recs),
            "/".join(str(r["best_epoch"] + 1) for r in recs if r.get("best_epoch") is not None),
            any(reached_cap(r) for r in recs),
            recs[0]["epochs"] if recs else "", (recs[0].get("epochs_capped_from") or "") if recs else "",
            tuning["trials"] if tuning else "", row.other_settings, "; ".join(row.code.stale) if row.stale else "",
            row.code.commit if row.code else "",
            recs[0]["row_fingerprint"] if recs else "",
            *values,
            json.dumps(recs[0]["versions"], sort_keys=True) if recs else "",
        ])  # fmt: skip
    with atomic_write(path, "w") as f:
        f.write(buffer.getvalue())


def _write_significance(path: str, tests: dict[str, DatasetSignificance]) -> None:
    """Every comparison: raw and Holm-corrected p-values of the paired t-test and the Wilcoxon test."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["dataset", "metric", "family", "model", "compared_to", "mean_diff", "t_p", "t_p_holm", "wilcoxon_p",
                     "wilcoxon_p_holm", "n_pairs", "n_seeds", "common_subset_left_out"])  # fmt: skip
    for dataset, result in tests.items():
        for metric, sig in result.results.items():
            left_out = "; ".join(f"{row} {n}" for row, n in sig.dropped.items())
            for c in sig.comparisons:
                writer.writerow([dataset, metric, c.family, c.row, c.compared_to, f"{c.mean_diff:.6g}", f"{c.t_p:.6g}",
                                 f"{c.t_p_holm:.6g}", f"{c.w_p:.6g}", f"{c.w_p_holm:.6g}", c.n_pairs, sig.n_seeds, left_out])  # fmt: skip
    with atomic_write(path, "w") as f:
        f.write(buffer.getvalue())


def write_search_report(path: str, bench: Benchmark) -> None:
    """``search.md``: per tuned row, the chosen settings, the number of trials and every trial's validation score."""
    spec = bench.search
    md = io.StringIO()
    md.write(
        f"# Search: {bench.name}\n\n{spec.describe()} ({bench.path}). Each trial is one run with the search seed, "
        "scored on the validation split only (its best epoch's value); the test split is evaluated only by "
        "the chosen settings' seed cells.\n"
    )
    untuned = [r.label for r in bench.rows if not r.tuned]
    if untuned:
        md.write(f"\nNot tuned (settings as given): {', '.join(dict.fromkeys(untuned))}.\n")
    for row in (r for r in bench.rows if r.tuned):
        trials = row_trials(bench, row)[: spec.trials]
        md.write(f"\n## {row.label} on {row.dataset}\n\n")
        if row.tuning is not None:
            chosen = ", ".join(f"{k} {_value(v)}" for k, v in row.tuning["params"].items())
            md.write(
                f"Chosen: trial {row.tuning['chosen_trial']} ({chosen}), validation {row.tuning['metric']} "
                f"{row.tuning['valid_score']:.4f}; {len(trials)} of {spec.trials} trials.\n\n"
            )
        else:
            md.write(f"No trial chosen yet: {len(trials)} of {spec.trials} trials finished.\n\n")
        seconds = [(t.get("run") or {}).get("train_time_s") or 0.0 for t in trials]
        if trials:  # what tuning this row cost: the budget is in trials, the time differs by model
            md.write(f"Training time of the {len(trials)} trials: {sum(seconds):.0f} s (every core; one at a time).")
            pruned = sum(bool((t.get("run") or {}).get("pruned")) for t in trials)
            md.write(f" Pruned: {pruned} (in brackets: the best validation before the pruner stopped the trial; its time includes its data preparation).\n\n" if pruned else "\n\n")
        keys = list(spec.spaces[row.label])
        md.write("| trial | " + " | ".join(keys) + f" | valid {row.search_metric} | best so far | epochs | train s | state |\n")
        md.write("|" + "---|" * (len(keys) + 6) + "\n")
        best = None
        for t, train_s in zip(trials, seconds):
            if t["value"] is not None:
                better = best is None or (t["value"] > best if row.maximize else t["value"] < best)
                best = t["value"] if better else best
            run = t.get("run") or {}
            epochs = epochs_text([{**run, "epochs": row.epochs, "one_pass": row.one_pass}]) if run else "-"
            value = f"{t['value']:.4f}" if t["value"] is not None else f"({run['best_so_far']:.4f})" if run.get("pruned") else "-"
            state = t["state"].lower() + (f" ({t['error']}; log {t['log']})" if t.get("error") else "")
            md.write(
                f"| {t['number'] + 1} | " + " | ".join(_value(t["params"][k]) for k in keys)
                + f" | {value} | {'-' if best is None else f'{best:.4f}'} | {epochs} | {train_s:.1f} | {state} |\n"
            )
    with atomic_write(path, "w") as f:
        f.write(md.getvalue())


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _plot(path: str, summaries: dict, metric: str | None, type_metric: str | None) -> None:
    """Bars of ``metric`` overall and ``type_metric`` per type, one panel per dataset, std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(d for d, _ in summaries)) or ["(no results)"]
    fig, axes = plt.subplots(len(datasets), 1, figsize=(10, 4 * len(datasets)), squeeze=False)
    for ax, dataset in zip(axes[:, 0], datasets):
        models = [(m, s) for (d, m), s in summaries.items() if d == dataset]
        groups = [g for g in types_of(dict.fromkeys(k for _, s in models for k in s), type_metric or "") if "," not in g]
        keys = ([metric] if metric else []) + [f"{type_metric}[{g}]" for g in groups]
        width = 0.8 / max(len(models), 1)
        for i, (model, summary) in enumerate(models):
            means = [summary.get(k, (0.0, 0.0))[0] for k in keys]
            stds = [summary.get(k, (0.0, 0.0))[1] for k in keys]
            ax.bar([j + i * width for j in range(len(keys))], means, width, yerr=stds, label=model, capsize=2)
        ax.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(keys))])
        ax.set_xticklabels([f"{metric} overall" if k == metric else k.split("[")[1][:-1].removeprefix("type=") for k in keys], rotation=20)
        ax.set_title(f"{dataset}: test {metric} overall and {type_metric} per item type")
        if models:
            ax.legend()
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
