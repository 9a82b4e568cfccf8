"""A board's targets: what it must show, stated in its file and judged in its report.

    targets:        # optional
      - {row: GFM, metric: 'ndcg@10[items=cold]', over: [DropoutNet, ContentKNN, LLMKNN], at_least: 1.2}
      - {row: GFM, metric: 'hit@10[items=warm]', over: [GFM-noGNN], significant: False}   # no worse

On each dataset a target compares ``row`` with the best of the ``over`` rows on ``metric`` (one of
the board's columns, whose per-user values the cells keep), on the (seed, user) cases they share,
pooled over seeds as the board's other tests are (:mod:`recbole_gfm.bench.significance`). It is
**met** when the row's mean is at least ``at_least`` times the best other mean and a two-sided
paired t-test against that row gives p < ``alpha`` (default .05); with ``significant: False`` (a
"no worse than" target) the ratio alone decides, the p-value is shown. Testing against the best of
the named rows alone is the usual reading of "better than every baseline": one test, no correction;
the report names the row it was tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from recbole_gfm.bench.significance import align, paired_pvalues

KEYS = ("row", "metric", "over", "at_least", "alpha", "significant")


@dataclass(frozen=True)
class Target:
    row: str
    metric: str
    over: tuple[str, ...]
    at_least: float = 1.0
    alpha: float = 0.05
    significant: bool = True  # False: the ratio alone decides (a "no worse than" target)

    def describe(self) -> str:
        test = f", p < {self.alpha:g}" if self.significant else ""
        return f"{self.row} {self.metric} >= {self.at_least:g} x the best of {', '.join(self.over)}{test}"


@dataclass(frozen=True)
class Judgement:
    """A target on one dataset: the row's mean, the best other row and its mean, their ratio and test."""

    target: Target
    value: float
    best: str
    best_value: float
    p: float
    n_pairs: int
    n_seeds: int  # a row still running is judged on the seeds every named row has

    @property
    def ratio(self) -> float:
        return self.value / self.best_value if self.best_value > 0 else float("inf") if self.value > 0 else float("nan")

    @property
    def met(self) -> bool:
        if not self.target.significant:
            return self.ratio >= self.target.at_least
        return self.value > self.best_value and self.ratio >= self.target.at_least and self.p < self.target.alpha


def parse_targets(raw: Any, labels: Sequence[str], columns: Sequence[str] | None) -> list[Target]:
    """The targets of a benchmark file's ``targets`` entry; ValueError naming the entry and the fix."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"expected a list of targets ({{row: ..., metric: ..., over: [...], at_least: ...}}), got {raw!r}.")
    targets = []
    for n, entry in enumerate(raw):
        where = f"target {n + 1}"
        if not isinstance(entry, dict) or not {"row", "metric", "over"} <= set(entry):
            raise ValueError(f"{where}: expected a mapping with row, metric and over (and at_least, alpha), got {entry!r}.")
        unknown = set(entry) - set(KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {', '.join(KEYS)}.")
        over = entry["over"] if isinstance(entry["over"], list) else [entry["over"]]
        missing = [label for label in [entry["row"], *over] if label not in labels]
        if missing:
            raise ValueError(f"{where}: {', '.join(map(str, missing))} not a row of the board ({', '.join(labels)}).")
        if entry["row"] in over:
            raise ValueError(f"{where}: row {entry['row']} is also under over.")
        if columns is not None and entry["metric"] not in columns:
            raise ValueError(f"{where}: metric {entry['metric']!r} is not one of the board's columns ({', '.join(columns)}), "
                             "whose per-user values the cells keep: add it to columns.")  # fmt: skip
        at_least, alpha = entry.get("at_least", 1.0), entry.get("alpha", 0.05)
        if not isinstance(at_least, (int, float)) or isinstance(at_least, bool) or at_least <= 0:
            raise ValueError(f"{where}: at_least must be a positive number (a ratio, e.g. 1.2), got {at_least!r}.")
        if not isinstance(alpha, float) or not 0 < alpha < 1:
            raise ValueError(f"{where}: alpha must be a number in (0, 1), got {alpha!r}.")
        significant = entry.get("significant", True)
        if not isinstance(significant, bool):
            raise ValueError(f"{where}: significant must be True or False, got {significant!r}.")
        targets.append(Target(str(entry["row"]), str(entry["metric"]), tuple(map(str, over)), float(at_least), alpha, significant))
    return targets


def judge(target: Target, vectors: Mapping[str, Mapping[Any, dict]]) -> Judgement | str:
    """``target`` on one dataset's per-user vectors (per row label, per seed: ``{"users", "metrics"}``); the
    reason it cannot be judged (a row without values of the metric, no shared case) otherwise."""
    labels = [target.row, *target.over]
    absent = [label for label in labels if label not in vectors or not all(target.metric in v["metrics"] for v in vectors[label].values())]
    if absent:
        return f"not judged: no per-user {target.metric} for {', '.join(absent)}"
    table = {label: {seed: (v["users"], v["metrics"][target.metric]) for seed, v in vectors[label].items()} for label in labels}
    try:
        keys, matrix, _ = align(table, common_subset=True)
        means = matrix.mean(axis=1)
        best = 1 + int(np.argmax(means[1:]))
        p, _ = paired_pvalues(matrix[0], matrix[best])
    except ValueError as e:  # AlignmentError too: no shared case, or too few to test
        return f"not judged: {e}"
    return Judgement(target, float(means[0]), labels[best], float(means[best]), float(p), len(keys), len({seed for seed, _ in keys}))
