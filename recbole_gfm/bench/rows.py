"""The rows of a board: one label on one dataset, its stored cells, its code, and its significance tests.

Built from every finished cell of the board's folder, so two benchmark files writing into one
folder do not hide each other's rows: the current file's rows first (a row is its label on a
dataset, with the fingerprint of its resolved settings and data), then the rows of other files
(shown, not in the significance tests). Cells of a current label with another fingerprint (older
settings or data) are counted, not mixed into the row; of another file's label, the fingerprint
with the newest cell makes the row. Each row also carries the code its results ran with
(:mod:`recbole_gfm.bench.record`): its commits and, if stale, why.

**Significance** (:mod:`recbole_gfm.bench.significance`): per dataset and metric column, each row
of the file against the best other row and against the file's ``reference`` row, paired by (seed,
user) over the per-user files, Holm-corrected. Rows scored on different users are compared on the
cases they share, and the table says so.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field

from recbole_gfm.bench.board import Benchmark, Row
from recbole_gfm.bench.cells import Stored
from recbole_gfm.bench.record import RowCode, row_code
from recbole_gfm.bench.search import load_trials
from recbole_gfm.bench.significance import AlignmentError, Significance, compare


@dataclass
class BoardRow:
    """A row of the board: one label on one dataset, its cells of one fingerprint, the code they ran with."""

    dataset: str
    label: str
    cells: list[Stored]
    row: Row | None = None  # the current file's row; None for rows of other files
    other_settings: int = 0  # cells of this label made with other settings or data (another row fingerprint)
    code: RowCode | None = None  # the code of its cells (and trials); None: nothing stored yet

    @property
    def records(self) -> list[dict]:
        return [c.record for c in self.cells]

    @property
    def stale(self) -> bool:
        return bool(self.code and self.code.stale)

    @property
    def seeds(self) -> str:
        if self.row is None:
            return f"{len(self.cells)}*"
        expected = len(self.row.seeds)
        if self.row.tuned and self.row.tuning is None:
            return f"0/{expected} (search not finished)"
        return f"{len(self.cells)}/{expected}" + ("" if self.cells else " (not run)") + (" stale" if self.stale else "")


def row_trials(bench: Benchmark, row: Row) -> list[dict]:
    """The stored search trials of a tuned row (none for an untuned one)."""
    return load_trials(bench.output_dir, row.label, row.dataset, row.study, lambda m: None) if row.tuned else []


def board_rows(bench: Benchmark, stored: list[Stored]) -> list[BoardRow]:
    """The current file's rows (in file order), then other files' rows; cells of other settings counted, not mixed in."""
    by_key: dict[tuple[str, str], dict[str, list[Stored]]] = defaultdict(lambda: defaultdict(list))
    for cell in stored:
        by_key[cell.key][cell.record["row_fingerprint"]].append(cell)
    rows = []
    for row in bench.rows:
        groups = by_key.pop((row.dataset, row.label), {})
        current = _by_seed(groups.pop(row.fingerprint, []) if row.ready else [])
        code = row_code([c.record for c in current] + row_trials(bench, row), row.resolved)
        rows.append(BoardRow(row.dataset, row.label, current, row, sum(map(len, groups.values())), code))
    for (dataset, label), groups in sorted(by_key.items()):
        newest = max(groups, key=lambda fp: max(os.path.getmtime(c.path) for c in groups[fp]))
        others = sum(len(cells) for fp, cells in groups.items() if fp != newest)
        cells = _by_seed(groups[newest])
        rows.append(BoardRow(dataset, label, cells, None, others, row_code(c.record for c in cells)))
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


def fmt(pair: tuple[float, float] | None, n: int) -> str:
    if pair is None:
        return "-"
    return f"{pair[0]:.4f}" if n < 2 else f"{pair[0]:.4f} ± {pair[1]:.4f}"


def types_of(keys, metric: str) -> list[str]:
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
        runs = {c.record["seed"]: c.per_user() for c in row.cells if c.record.get("per_user_sha256")}
        if runs:
            vectors[row.label] = runs
        elif row.cells:
            missing.append(row.label)
    return vectors, missing


def significance(rows: list[BoardRow], columns: list[str], reference: str | None) -> DatasetSignificance:
    """Each column's :func:`recbole_gfm.bench.significance.compare` over the rows' users pooled over seeds
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
