"""Paired significance tests for the rows of a leaderboard column (numpy + scipy.stats only).

A row (model label) brings, for each seed, its per-user values of one metric (the vectors
:mod:`recbole_gfm.run.evaluation` records). Rows are paired case by case, a case being a
``(seed, user token)`` pair, and the cases of all seeds are pooled: 3 seeds of 943 test users
give 2,829 pairs. Pooling treats a user's cases under different seeds as separate pairs; with one
seed it is the usual per-user paired test (Elliot's). A board whose rows were scored on different
cases fails (:class:`AlignmentError`) unless the caller asks to compare on the common subset, which
the result then states.

Two comparison families per column, each a two-sided paired t-test (``scipy.stats.ttest_rel``)
and a Wilcoxon signed-rank test (``scipy.stats.wilcoxon``; zero differences dropped, all-zero
differences give p = 1) on the differences ``row - other``:

- **best other**: every row against the other row with the highest mean (the top row against the
  runner-up, every other row against the top row);
- **reference** (optional): every other row against a named reference row, e.g. ``GFM-noGNN``.

Within a family the p-values of each test are Holm-corrected across the rows (:func:`holm`).
:func:`markers` and :func:`caption` turn the result into leaderboard symbols and the sentence
that names the test under the table. All RecBole top-k metrics are larger-is-better, as assumed
here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats

# seed -> (user tokens, values of one metric), as in a run record's "per_user"
RowRuns = Mapping[Hashable, tuple[Sequence[str], Sequence[float]]]

BETTER_THAN_BEST_OTHER = "†"
BETTER_THAN_REFERENCE = "▲"
WORSE_THAN_REFERENCE = "▼"


class AlignmentError(ValueError):
    """Rows of a board were scored on different (seed, user) cases."""


@dataclass(frozen=True)
class Comparison:
    """One row against another: differences are ``row - compared_to`` over ``n_pairs`` cases."""

    row: str
    compared_to: str
    family: str  # "best_other" or "reference"
    mean_diff: float
    t_p: float
    t_p_holm: float
    w_p: float
    w_p_holm: float
    n_pairs: int


@dataclass(frozen=True)
class Significance:
    """The comparisons of one metric column, the row means, and how the rows were paired."""

    comparisons: list[Comparison]
    means: dict[str, float]
    n_pairs: int
    n_seeds: int
    reference: str | None = None
    dropped: dict[str, int] = field(default_factory=dict)  # cases left out per row (common subset only)

    def of(self, row: str, family: str) -> Comparison | None:
        """The comparison of ``row`` in ``family`` ("best_other" / "reference"), if there is one."""
        return next((c for c in self.comparisons if c.row == row and c.family == family), None)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (statsmodels has it; five lines do not justify the dependency).

    With p sorted ascending, ``p_(i)' = max_{j <= i} min(1, (m - j + 1) p_(j))``, returned in the
    input order. Example: [0.01, 0.04, 0.03, 0.005] -> [0.03, 0.06, 0.06, 0.02].
    """
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted


def paired_pvalues(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided p-values of the paired t-test and the Wilcoxon signed-rank test of ``a - b``.

    Both are 1 when every difference is 0 (scipy would give NaN or warn: there is nothing to test).
    """
    if len(a) < 2:
        raise ValueError(f"A paired test needs at least 2 pairs, got {len(a)}: evaluate more users or seeds.")
    if np.all(a == b):
        return 1.0, 1.0
    return float(stats.ttest_rel(a, b).pvalue), float(stats.wilcoxon(a, b).pvalue)


def align(rows: Mapping[str, RowRuns], common_subset: bool = False) -> tuple[list[tuple], np.ndarray, dict[str, int]]:
    """Pair the rows' values by (seed, user token).

    Returns the sorted cases, a (rows, cases) matrix in the order of ``rows``, and the number of
    cases left out per row (only with ``common_subset``; else differing cases raise
    :class:`AlignmentError`).
    """
    if len(rows) < 2:
        raise ValueError(f"Significance needs at least two rows, got {list(rows)}.")
    by_row: dict[str, dict[tuple, float]] = {}
    for label, runs in rows.items():
        cases: dict[tuple, float] = {}
        for seed, (users, values) in runs.items():
            if len(users) != len(values):
                raise ValueError(f"Row '{label}', seed {seed}: {len(users)} users but {len(values)} values.")
            for user, value in zip(users, values):
                if value != value:  # NaN: the case is outside the metric's group (e.g. a new user for [users=returning])
                    continue
                if (seed, str(user)) in cases:
                    raise AlignmentError(
                        f"Row '{label}', seed {seed}: user '{user}' has more than one value; "
                        f"per-user vectors need one value per user (one evaluation case per user)."
                    )
                cases[(seed, str(user))] = float(value)
        by_row[label] = cases
    shared = set.intersection(*(set(c) for c in by_row.values()))
    dropped = {label: len(cases) - len(shared) for label, cases in by_row.items()}
    if any(dropped.values()) and not common_subset:
        sizes = ", ".join(f"'{label}' {len(cases)}" for label, cases in by_row.items())
        raise AlignmentError(
            f"The rows were scored on different (seed, user) cases ({sizes}; {len(shared)} shared). "
            f"Score every row on the same users and seeds (one test set per board), or compare on "
            f"the common subset (common_subset=True), which the result then states."
        )
    if not shared:
        raise AlignmentError("The rows share no (seed, user) case: nothing to compare.")
    keys = sorted(shared, key=lambda case: (str(case[0]), case[1]))
    matrix = np.array([[cases[k] for k in keys] for cases in by_row.values()])
    return keys, matrix, {label: n for label, n in dropped.items() if n}


def compare(rows: Mapping[str, RowRuns], reference: str | None = None, common_subset: bool = False) -> Significance:
    """Each row against the best other row (and against ``reference``), paired and Holm-corrected.

    Args:
        rows: per row label, per seed, the (user tokens, metric values) of one metric.
        reference: a row label every other row is also compared with (a second Holm family).
        common_subset: compare on the cases every row has instead of raising when they differ.
    """
    if reference is not None and reference not in rows:
        raise ValueError(f"Reference row '{reference}' is not on the board; rows: {', '.join(rows)}.")
    keys, matrix, dropped = align(rows, common_subset)
    labels = list(rows)
    means = matrix.mean(axis=1)
    order = np.argsort(-means, kind="stable")
    families = {"best_other": [(i, int(order[1] if i == order[0] else order[0])) for i in range(len(labels))]}
    if reference is not None:
        ref = labels.index(reference)
        families["reference"] = [(i, ref) for i in range(len(labels)) if i != ref]
    comparisons = []
    for family, pairs in families.items():
        tests = np.array([paired_pvalues(matrix[i], matrix[j]) for i, j in pairs])
        t_holm, w_holm = holm(tests[:, 0]), holm(tests[:, 1])
        for n, (i, j) in enumerate(pairs):
            comparisons.append(
                Comparison(
                    row=labels[i],
                    compared_to=labels[j],
                    family=family,
                    mean_diff=float(np.mean(matrix[i] - matrix[j])),
                    t_p=float(tests[n, 0]),
                    t_p_holm=float(t_holm[n]),
                    w_p=float(tests[n, 1]),
                    w_p_holm=float(w_holm[n]),
                    n_pairs=len(keys),
                )
            )
    return Significance(
        comparisons=comparisons,
        means={label: float(m) for label, m in zip(labels, means)},
        n_pairs=len(keys),
        n_seeds=len({seed for seed, _ in keys}),
        reference=reference,
        dropped=dropped,
    )


TESTS = {"t": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}


def _check_test(test: str) -> None:
    if test not in TESTS:
        raise ValueError(f"test must be one of {', '.join(TESTS)}, got '{test}'.")


def _significant(comparison: Comparison | None, alpha: float, test: str) -> bool:
    if comparison is None:
        return False
    return (comparison.t_p_holm if test == "t" else comparison.w_p_holm) < alpha


def markers(result: Significance, alpha: float = 0.05, test: str = "t") -> dict[str, str]:
    """Symbols to put after each row's value in a Markdown leaderboard column.

    ``†``: significantly better than the best other row; ``▲`` / ``▼``: significantly better /
    worse than the reference row. Significant means Holm-corrected two-sided p < ``alpha`` for
    ``test`` ("t": paired t-test, "wilcoxon": signed-rank). Rows with no significant difference get "".
    """
    _check_test(test)
    symbols = {}
    for row in result.means:
        best, ref = result.of(row, "best_other"), result.of(row, "reference")
        mark = BETTER_THAN_BEST_OTHER if _significant(best, alpha, test) and best.mean_diff > 0 else ""
        if _significant(ref, alpha, test):
            mark += BETTER_THAN_REFERENCE if ref.mean_diff > 0 else WORSE_THAN_REFERENCE
        symbols[row] = mark
    return symbols


def caption(result: Significance, alpha: float = 0.05, test: str = "t") -> str:
    """The sentence under the table that says what the markers of :func:`markers` mean."""
    _check_test(test)
    other = "Wilcoxon signed-rank" if test == "t" else "paired t-test"
    text = f"{BETTER_THAN_BEST_OTHER} significantly better than the best other row"
    if result.reference is not None:
        text += (
            f"; {BETTER_THAN_REFERENCE} / {WORSE_THAN_REFERENCE} significantly better / worse than "
            f"the reference row {result.reference}"
        )
    seeds = f"{result.n_seeds} seed{'s' if result.n_seeds != 1 else ''} pooled"
    text += (
        f". Two-sided {TESTS[test]} over {result.n_pairs:,} (seed, user) pairs ({seeds}), Holm-corrected "
        f"across the rows of each column, p < {alpha:g}; {other} p-values in the CSV."
    )
    if result.dropped:
        left_out = ", ".join(f"{row} {n}" for row, n in result.dropped.items())
        text += f" Compared on the cases all rows share; left out: {left_out}."
    return text
