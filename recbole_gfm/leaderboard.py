"""A benchmark folder's stored cells, read with integrity checks, and the leaderboard built from them.

**Cells.** A finished cell is two files in ``<output_dir>/cells``: ``<name>.json``, its run record
(:func:`recbole_gfm.artifacts.write_json`: written atomically with a sha256 content hash), and
``<name>.per_user.npz``, its per-user test metric values (:func:`recbole_gfm.per_user.save_per_user`),
whose sha256 the record holds (``per_user_sha256``). The npz is written first, so a record never
names a per-user file that is not there. :func:`read_cell` checks both; a cell that fails is named
in one warning and moved aside (``*.corrupt``) by :func:`load_or_quarantine`, and the benchmark runs
it again: a damaged file is never read as a result.

**The board** (:func:`write_leaderboard`) is built from every finished cell of the folder, so two
benchmark files writing into one folder do not hide each other's rows: the current file's rows
first (a row is its label on a dataset, with the fingerprint of its resolved settings), then the
rows of other files (shown, not in the significance tests). Cells of a current label with another
fingerprint (older settings, data or code: stale) are not mixed into the row but counted under the
table; of another file's label, the fingerprint with the newest cell makes the row.

**Significance** (:mod:`recbole_gfm.significance`): per dataset and metric column, each row of the
file against the best other row and against the file's ``reference`` row, paired by (seed, user)
over the per-user files, Holm-corrected; markers from the paired t-test in the table, every p-value
(t-test and Wilcoxon, raw and Holm) in ``significance.csv``, the test named under the table. Rows
scored on different users are compared on the cases they share, and the table says so.

Files: ``leaderboard.md`` (one table per dataset, significance markers, notes), ``leaderboard.csv``
(means and stds), ``significance.csv`` (every comparison's p-values), ``leaderboard.png``, and
``search.md`` when some row was tuned (:mod:`recbole_gfm.search`).
"""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from recbole_gfm.artifacts import CorruptArtifactError, atomic_write, file_fingerprint, read_json, write_json
from recbole_gfm.board import Benchmark, Row
from recbole_gfm.per_user import load_per_user, save_per_user
from recbole_gfm.search import load_trials, quarantine
from recbole_gfm.significance import AlignmentError, Significance, caption, compare, markers

ALPHA = 0.05
TEST = "t"  # markers from the paired t-test; Wilcoxon p-values beside them in significance.csv
USER_GROUPS = ("users=new", "users=returning")  # recbole_gfm.evaluation's new / returning-user keys

# ---------------------------------------------------------------------------------------------
# Cells on disk


def per_user_path(cell_file: str) -> str:
    """``cells/<name>.per_user.npz`` beside ``cells/<name>.json``."""
    return cell_file.removesuffix(".json") + ".per_user.npz"


def _sha256(path: str) -> str:
    return file_fingerprint(path, length=64)


def write_cell(path: str, record: dict[str, Any], per_user: dict | None) -> None:
    """Store a finished cell: its per-user vectors first, then the record naming their hash."""
    record = dict(record)
    if per_user is not None:
        save_per_user(per_user_path(path), per_user)
        record["per_user_sha256"] = _sha256(per_user_path(path))
    write_json(path, record)


def read_cell(path: str) -> dict[str, Any]:
    """A cell's record, its content hash and its per-user file's hash checked (:class:`CorruptArtifactError`)."""
    record = read_json(path)
    expected = record.get("per_user_sha256")
    if expected is not None:
        vectors = per_user_path(path)
        if not os.path.isfile(vectors):
            raise CorruptArtifactError(vectors, "missing: the cell's per-user file is gone")
        if _sha256(vectors) != expected:
            raise CorruptArtifactError(vectors, "its content does not match the sha256 its cell records: the file was changed or damaged")
    return record


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def load_or_quarantine(path: str, say: Callable[[str], None] = warn) -> dict[str, Any] | None:
    """:func:`read_cell`, or None after moving a damaged cell (record and per-user file) aside with one warning."""
    try:
        return read_cell(path)
    except CorruptArtifactError as e:
        moved = [quarantine(p) for p in (path, per_user_path(path)) if os.path.isfile(p)]
        say(f"{e}; moved aside ({', '.join(os.path.basename(m) for m in moved)}), the cell runs again.")
        return None


@dataclass
class Stored:
    """One finished cell of the folder."""

    path: str
    record: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return self.record["dataset"], self.record["label"]


def stored_cells(output_dir: str) -> list[Stored]:
    """Every finished cell in ``<output_dir>/cells`` that passes its checks (damaged ones are moved aside)."""
    cells = []
    for path in sorted(glob.glob(os.path.join(output_dir, "cells", "*.json"))):
        record = load_or_quarantine(path)
        if record is not None and "label" in record:
            cells.append(Stored(path, record))
    return cells


# ---------------------------------------------------------------------------------------------
# Rows of the board


@dataclass
class BoardRow:
    """A row of the board: one label on one dataset, its cells of one fingerprint."""

    dataset: str
    label: str
    cells: list[Stored]
    row: Row | None = None  # the current file's row; None for rows of other files
    stale: int = 0  # cells of this label with another fingerprint

    @property
    def records(self) -> list[dict]:
        return [c.record for c in self.cells]

    @property
    def seeds(self) -> str:
        if self.row is None:
            return f"{len(self.cells)}*"
        expected = len(self.row.seeds)
        if self.row.tuned and self.row.tuning is None:
            return f"0/{expected} (search not finished)"
        return f"{len(self.cells)}/{expected}" + ("" if self.cells else " (failed or not run)")


def board_rows(bench: Benchmark, stored: list[Stored]) -> list[BoardRow]:
    """The current file's rows (in file order), then other files' rows; stale cells counted, not mixed in."""
    by_key: dict[tuple[str, str], dict[str, list[Stored]]] = defaultdict(lambda: defaultdict(list))
    for cell in stored:
        by_key[cell.key][cell.record["row_fingerprint"]].append(cell)
    rows = []
    for row in bench.rows:
        groups = by_key.pop((row.dataset, row.label), {})
        current = groups.pop(row.fingerprint, []) if row.ready else []
        rows.append(BoardRow(row.dataset, row.label, _by_seed(current), row, sum(map(len, groups.values()))))
    for (dataset, label), groups in sorted(by_key.items()):
        newest = max(groups, key=lambda fp: max(os.path.getmtime(c.path) for c in groups[fp]))
        stale = sum(len(cells) for fp, cells in groups.items() if fp != newest)
        rows.append(BoardRow(dataset, label, _by_seed(groups[newest]), None, stale))
    return rows


def _by_seed(cells: list[Stored]) -> list[Stored]:
    return sorted(cells, key=lambda c: c.record["seed"])


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))  # sample std


def summarise(records: list[dict]) -> dict[str, tuple[float, float]]:
    """Mean and sample std over seeds of every test metric and of the train / eval times."""
    keys = dict.fromkeys(k for r in records for k in r["test_result"])
    summary = {k: _mean_std([r["test_result"][k] for r in records if k in r["test_result"]]) for k in keys}
    for key in ("train_time_s", "eval_time_s", "train_time_to_best_s"):
        values = [r[key] for r in records if r.get(key) is not None]
        if values:
            summary[key] = _mean_std(values)
    return summary


def reached_cap(record: dict) -> bool:
    """Training ran its whole epoch budget without early stopping ending it (one-pass models never do)."""
    trained = record.get("epochs_trained")
    return not record.get("one_pass") and trained is not None and trained >= record["epochs"] and not record.get("stopped_early")


def epochs_text(records: list[dict]) -> str:
    """Epochs trained per seed, the best (tested) epoch counted from 1, and whether the cap was reached:
    ``7/9 (best 4/6)``, ``5 (best 5), capped at 5 (from 300)``, ``1 (one pass)``."""
    if not records:
        return "-"
    if all(r.get("one_pass") for r in records):
        return "1 (one pass)"
    trained = "/".join(str(r.get("epochs_trained", "?")) for r in records)
    best = [str(r["best_epoch"] + 1) for r in records if r.get("best_epoch") is not None]
    text = trained + (f" (best {'/'.join(best)})" if best else " (never validated)")
    if any(reached_cap(r) for r in records):
        cap = records[0]["epochs"]
        origin = records[0].get("epochs_capped_from")
        text += f", capped at {cap}" + (f" (from {origin})" if origin else "")
    return text


def _fmt(pair: tuple[float, float] | None, n: int) -> str:
    if pair is None:
        return "-"
    return f"{pair[0]:.4f}" if n < 2 else f"{pair[0]:.4f} ± {pair[1]:.4f}"


def _types_of(keys, metric: str) -> list[str]:
    """Type groups present for ``metric``: ``type=Kids``, ``type=Kids,warm``, ``type=Kids,cold`` ..."""
    prefix = f"{metric}[type="
    groups = [k[len(prefix) - len("type=") : -1] for k in keys if k.startswith(prefix)]
    return sorted(groups, key=lambda g: (g.split(",")[0], ["", "warm", "cold"].index((g.split(",") + [""])[1])))


# ---------------------------------------------------------------------------------------------
# Significance


@dataclass
class DatasetSignificance:
    """The comparisons of one dataset's board, per metric column, and what was left out and why."""

    results: dict[str, Significance] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def per_user_rows(rows: list[BoardRow]) -> tuple[dict[str, dict[int, dict]], list[str]]:
    """Per row label, per seed, the stored per-user vectors; and the labels that have none."""
    vectors, missing = {}, []
    for row in rows:
        runs = {c.record["seed"]: load_per_user(per_user_path(c.path)) for c in row.cells if c.record.get("per_user_sha256")}
        if runs:
            vectors[row.label] = runs
        elif row.cells:
            missing.append(row.label)
    return vectors, missing


def significance(rows: list[BoardRow], columns: list[str], reference: str | None) -> DatasetSignificance:
    """Each column's :func:`recbole_gfm.significance.compare` over the rows' users pooled over seeds
    (on the cases every row shares, which the caption then states)."""
    out = DatasetSignificance()
    vectors, missing = per_user_rows(rows)
    if missing:
        out.notes.append(f"No per-user values (not compared): {', '.join(missing)}.")
    if reference is not None and reference not in vectors:
        out.notes.append(f"The reference row {reference} has no per-user values here: no comparison with it.")
        reference = None
    for metric in columns:
        table = {
            label: {seed: (v["users"], v["metrics"][metric]) for seed, v in runs.items()}
            for label, runs in vectors.items()
            if all(metric in v["metrics"] for v in runs.values())
        }
        if len(table) < 2:
            continue
        try:
            out.results[metric] = compare(table, reference if reference in table else None, common_subset=True)
        except (AlignmentError, ValueError) as e:
            out.notes.append(f"{metric}: not compared ({e}).")
    return out


# ---------------------------------------------------------------------------------------------
# Writing the board


def write_leaderboard(bench: Benchmark) -> dict[str, str]:
    """Write the board of ``bench.output_dir`` from every finished cell there; return the files' paths."""
    rows = board_rows(bench, stored_cells(bench.output_dir))
    first = next((r.records[0] for r in rows if r.cells), None)
    columns = bench.columns or ([k for k in first["test_result"] if "[" not in k] if first else [])
    type_columns = bench.type_columns or columns[:1]
    summaries = {(r.dataset, r.label): summarise(r.records) for r in rows if r.cells}
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    # tests among this file's rows: another file's row (other seeds, say) must not shrink their common cases
    tests = {d: significance([r for r in rows if r.dataset == d and r.row is not None], columns, bench.reference) for d in datasets}

    md = io.StringIO()
    md.write(
        f"# Leaderboard: {bench.name}\n\nTest metrics, mean ± sample std over seeds ({bench.path}), from every "
        f"finished cell in {os.path.join(bench.output_dir, 'cells')}. Epochs: epochs trained per seed (best: the "
        "validated epoch, counted from 1, whose checkpoint is tested). Test cases: users ranked. To best s: "
        "training time until the best epoch's validation, a foundation's whole training included.\n"
    )
    parallel = max((rec.get("parallel_cells", 1) for r in rows for rec in r.records), default=1)
    if parallel > 1:
        md.write(
            f"\nTimes: cells ran up to {parallel} at a time, sharing the cores (each with its share as torch "
            "threads); read them as ratios between rows of this board, not as one cell's time alone.\n"
        )
    tuned = [row for row in bench.rows if row.tuned]
    if tuned and bench.search is not None:
        md.write(
            f"\nTuned on the validation split ({bench.search.describe()}; search.md): "
            f"{', '.join(dict.fromkeys(r.label for r in tuned))}. Every other row runs its settings as given.\n"
        )
    header = ["model", "seeds", "epochs", "test cases", *columns, "train s", "to best s", "eval s", "tuned", "config"]
    for dataset in datasets:
        md.write(f"\n## {dataset}\n\n| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
        result = tests[dataset]
        symbols = {metric: markers(r, ALPHA, TEST) for metric, r in result.results.items()}
        for row in (r for r in rows if r.dataset == dataset):
            summary, n = summaries.get((dataset, row.label), {}), len(row.cells)
            values = [(_fmt(summary.get(c), n) + " " + symbols.get(c, {}).get(row.label, "")).strip() for c in columns]
            times = [f"{summary[t][0]:.1f}" if t in summary else "-" for t in ("train_time_s", "train_time_to_best_s", "eval_time_s")]
            cases = str(row.records[0].get("test_cases_by_type", {}).get("all", "-")) if row.cells else "-"
            tuning = row.records[0].get("tuning") if row.cells else None
            trials = f"{tuning['trials']} trials" if tuning else "-"
            fp = row.row.fingerprint if row.row is not None and row.row.ready else (row.records[0]["row_fingerprint"] if row.cells else "-")
            md.write("| " + " | ".join([row.label, row.seeds, epochs_text(row.records), cases, *values, *times, trials, fp]) + " |\n")
        notes = _notes(dataset, rows, result, columns)
        md.write(f"\n{notes}" if notes else "")
    all_keys = dict.fromkeys(k for s in summaries.values() for k in s)
    for metric in type_columns:
        for title, groups in (
            ("per item type (warm / cold: with / without train interactions of the type)", _types_of(all_keys, metric)),
            ("for new and returning users (new: no train interaction)", [g for g in USER_GROUPS if f"{metric}[{g}]" in all_keys]),
        ):
            if groups:
                md.write(f"\n## {metric} {title}\n\n")
                md.write("| dataset | model | " + " | ".join(g.removeprefix("type=") for g in groups) + " |\n")
                md.write("|" + "---|" * (len(groups) + 2) + "\n")
                for row in (r for r in rows if r.cells):
                    summary = summaries[(row.dataset, row.label)]
                    values = [_fmt(summary.get(f"{metric}[{g}]"), len(row.cells)) for g in groups]
                    md.write(f"| {row.dataset} | {row.label} | " + " | ".join(values) + " |\n")
    if first:
        versions = ", ".join(f"{k} {v}" for k, v in first["versions"].items())
        md.write(f"\nconfig: fingerprint of the resolved config, dataset files and code. Versions: {versions}.\n")

    os.makedirs(bench.output_dir, exist_ok=True)
    paths = {k: os.path.join(bench.output_dir, f"leaderboard.{k}") for k in ("md", "csv", "png")}
    with atomic_write(paths["md"], "w") as f:
        f.write(md.getvalue())
    _write_csv(paths["csv"], rows, summaries)
    paths["significance"] = os.path.join(bench.output_dir, "significance.csv")
    _write_significance(paths["significance"], tests)
    _plot(paths["png"], summaries, columns[0] if columns else None, type_columns[0] if type_columns else None)
    if tuned and bench.search is not None:
        paths["search"] = os.path.join(bench.output_dir, "search.md")
        write_search_report(paths["search"], bench)
    return paths


def _notes(dataset: str, rows: list[BoardRow], result: DatasetSignificance, columns: list[str]) -> str:
    """The sentences under a dataset's table: the test, capped rows, other files' rows, stale cells."""
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
    stale = [f"{r.label} {r.stale}" for r in mine if r.stale]
    if stale:
        notes.append(
            f"Not in the rows: {sum(r.stale for r in mine)} stale cells of these labels, made with other settings, "
            f"data or code (older fingerprints): {', '.join(stale)}."
        )
    return "\n".join(f"{n}\n" for n in notes)


def _write_csv(path: str, rows: list[BoardRow], summaries: dict) -> None:
    keys = list(dict.fromkeys(k for s in summaries.values() for k in s))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["dataset", "model", "seeds", "epochs_trained", "best_epoch_from_1", "capped", "epochs_limit", "epochs_capped_from",
                     "tuned_trials", "stale_cells", "config_fingerprint", *[f"{k}_{s}" for k in keys for s in ("mean", "std")],
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
            tuning["trials"] if tuning else "", row.stale,
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
        trials = load_trials(bench.output_dir, row.label, row.dataset, row.study, warn)[: spec.trials]
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
        groups = [g for g in _types_of(dict.fromkeys(k for _, s in models for k in s), type_metric or "") if "," not in g]
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
