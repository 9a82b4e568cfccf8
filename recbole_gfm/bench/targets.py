"""A board's targets: what it must show, stated in its file and judged in its report.

    targets:        # optional
      - {row: GFM, metric: 'ndcg@10[items=cold]', over: [DropoutNet, ContentKNN, LLMKNN], at_least: 1.2}
      - {row: GFM, metric: 'hit@10[items=warm]', over: [GFM-noGNN], significant: False}   # no worse
      - {row: GFM, metric: train_time_to_best_s, over: [LightGCN], at_most: 2}             # a time

On each dataset a target compares ``row`` with the best of the ``over`` rows on ``metric``, one of
the board's columns. Where the cells keep its per-user values, on the (seed, user) cases the rows
share, pooled over seeds as the board's other tests are (:mod:`recbole_gfm.bench.significance`):
it is **met** when the row's mean is at least ``at_least`` times the best other mean and a
two-sided paired t-test against that row gives p < ``alpha`` (default .05). With ``significant:
False`` (a "no worse than" target) the ratio alone decides, the p-value is shown. Testing against
the best of the named rows alone is the usual reading of "better than every baseline": one test,
no correction; the report names the row it was tested against.

Where the cells keep no per-user values of the metric (per-type keys), the ratio comes from the
table's means over seeds: a "no worse than" target is judged on it, a significance target is
missed when the ratio misses and reported as not tested otherwise. A time (``train_time_s``,
``train_time_to_best_s``, ``eval_time_s``: lower is better) takes ``at_most`` instead, against the
fastest named row, from the means over seeds. Named rows without a finished cell are left out and
named in the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from recbole_gfm.bench.significance import align, paired_pvalues

KEYS = ("row", "metric", "over", "at_least", "at_most", "alpha", "significant")
TIMES = ("train_time_s", "train_time_to_best_s", "eval_time_s")  # a record's seconds: lower is better, no per-user values


@dataclass(frozen=True)
class Target:
    row: str
    metric: str
    over: tuple[str, ...]
    at_least: float = 1.0
    alpha: float = 0.05
    significant: bool = True  # False: the ratio alone decides (a "no worse than" target)
    at_most: float | None = None  # a time: the row's at most this many times the fastest named row's

    @property
    def is_time(self) -> bool:
        return self.metric in TIMES

    def describe(self) -> str:
        if self.is_time:
            return f"{self.row} {self.metric} <= {self.at_most:g} x the fastest of {', '.join(self.over)}"
        test = f", p < {self.alpha:g}" if self.significant else ""
        return f"{self.row} {self.metric} >= {self.at_least:g} x the best of {', '.join(self.over)}{test}"


@dataclass(frozen=True)
class Judgement:
    """A target on one dataset: the row's mean, the best other row and its mean, their ratio and test
    (``p`` None: not tested, the means over seeds compared)."""

    target: Target
    value: float
    best: str
    best_value: float
    p: float | None
    n_pairs: int
    n_seeds: int  # a row still running is judged on the seeds every named row has
    not_run: tuple[str, ...] = ()  # named rows without a finished cell, left out

    @property
    def ratio(self) -> float:
        return self.value / self.best_value if self.best_value > 0 else math.inf if self.value > 0 else math.nan

    @property
    def met(self) -> bool | None:
        """Met or missed; None for a significance target whose ratio is reached but could not be tested."""
        if self.target.is_time:
            return self.ratio <= self.target.at_most
        if not self.target.significant:
            return self.ratio >= self.target.at_least
        reached = self.value > self.best_value and self.ratio >= self.target.at_least
        if self.p is None:  # untested: missed when the ratio misses, else open
            return None if reached else False
        return reached and self.p < self.target.alpha


def parse_targets(raw: Any, labels: Sequence[str], columns: Sequence[str] | None) -> list[Target]:
    """The targets of a benchmark file's ``targets`` entry; ValueError naming the entry and the fix."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"expected a list of targets ({{row: ..., metric: ..., over: [...], at_least: ...}}), got {raw!r}.")
    return [_target(entry, f"target {n + 1}", labels, columns) for n, entry in enumerate(raw)]


def _target(entry: Any, where: str, labels: Sequence[str], columns: Sequence[str] | None) -> Target:
    if not isinstance(entry, dict) or not {"row", "metric", "over"} <= set(entry):
        raise ValueError(f"{where}: expected a mapping with row, metric and over (and at_least or at_most), got {entry!r}.")
    unknown = set(entry) - set(KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {', '.join(KEYS)}.")
    over = entry["over"] if isinstance(entry["over"], list) else [entry["over"]]
    missing = [label for label in [entry["row"], *over] if label not in labels]
    if missing:
        raise ValueError(f"{where}: {', '.join(map(str, missing))} not a row of the board ({', '.join(labels)}).")
    if entry["row"] in over:
        raise ValueError(f"{where}: row {entry['row']} is also under over.")
    metric = entry["metric"]
    if metric in TIMES:
        if "at_most" not in entry or "at_least" in entry:
            raise ValueError(f"{where}: {metric} is a time (lower is better): give at_most (e.g. 2), not at_least.")
    elif "at_most" in entry:
        raise ValueError(f"{where}: at_most is for times ({', '.join(TIMES)}); {metric} takes at_least.")
    elif columns is not None and metric not in columns:
        raise ValueError(f"{where}: metric {metric!r} is not one of the board's columns ({', '.join(columns)}) "
                         f"or times ({', '.join(TIMES)}): add it to columns.")  # fmt: skip
    for key, default in (("at_least", 1.0), ("at_most", 1.0)):
        value = entry.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{where}: {key} must be a positive number (a ratio, e.g. 1.2), got {value!r}.")
    alpha = entry.get("alpha", 0.05)
    if not isinstance(alpha, float) or not 0 < alpha < 1:
        raise ValueError(f"{where}: alpha must be a number in (0, 1), got {alpha!r}.")
    significant = entry.get("significant", True)
    if not isinstance(significant, bool):
        raise ValueError(f"{where}: significant must be True or False, got {significant!r}.")
    at_most = float(entry["at_most"]) if "at_most" in entry else None
    return Target(str(entry["row"]), str(metric), tuple(map(str, over)), float(entry.get("at_least", 1.0)), alpha, significant, at_most)


def judge(target: Target, vectors: Mapping[str, Mapping[Any, dict]], means: Mapping[str, tuple[float, int]]) -> Judgement | str:
    """``target`` on one dataset: from the rows' per-user vectors (per row label, per seed: ``{"users",
    "metrics"}``) where they hold the metric, else from ``means`` (per row label with a finished cell:
    (mean of the metric over its seeds, seeds)); named rows not run yet are left out (and named in the
    judgement); the reason it cannot be judged otherwise."""
    if target.row not in means:
        return f"not judged: no finished cell of {target.row}"
    over = [label for label in target.over if label in means]  # the named rows not run yet are left out, and named
    if not over:
        return f"not judged: no finished cell of {', '.join(target.over)}"
    missing = tuple(label for label in target.over if label not in means)
    labels = [target.row, *over]
    per_user = not target.is_time and all(
        label in vectors and all(target.metric in v["metrics"] for v in vectors[label].values()) for label in labels
    )
    if not per_user:
        pick = min if target.is_time else max
        best = pick(over, key=lambda label: means[label][0])
        return Judgement(target, means[target.row][0], best, means[best][0], None, 0, min(means[label][1] for label in labels), missing)
    table = {label: {seed: (v["users"], v["metrics"][target.metric]) for seed, v in vectors[label].items()} for label in labels}
    try:
        keys, matrix, _ = align(table, common_subset=True)
        row_means = matrix.mean(axis=1)
        best = 1 + int(np.argmax(row_means[1:]))
        p, _ = paired_pvalues(matrix[0], matrix[best])
    except ValueError as e:  # AlignmentError too: no shared case, or too few to test
        return f"not judged: {e}"
    return Judgement(target, float(row_means[0]), labels[best], float(row_means[best]), float(p), len(keys),
                     len({seed for seed, _ in keys}), missing)  # fmt: skip
