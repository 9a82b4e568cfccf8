"""A board's targets: parsed with errors that name the entry, judged against the best named row with a paired test."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats

from recbole_gfm.bench.targets import Target, judge, parse_targets

LABELS = ["GFM", "ContentKNN", "DropoutNet", "Pop"]
COLUMNS = ["hit@10", "ndcg@10[items=cold]"]


def vectors(values: dict[str, list[list[float]]], metric: str = "ndcg@10[items=cold]") -> dict:
    """Per row, per seed, the per-user record shape (users u0.., one metric)."""
    return {
        label: {seed: {"users": [f"u{i}" for i in range(len(v))], "metrics": {metric: np.array(v)}} for seed, v in enumerate(runs)}
        for label, runs in values.items()
    }


def means_of(data: dict, metric: str = "ndcg@10[items=cold]") -> dict:
    """What the report passes beside the vectors: per row, (its mean over seeds, its seeds)."""
    return {label: (float(np.nanmean([np.nanmean(v["metrics"][metric]) for v in runs.values()])), len(runs)) for label, runs in data.items()}


def test_targets_parse_with_defaults_and_refuse_what_cannot_be_judged():
    (target,) = parse_targets([{"row": "GFM", "metric": "hit@10", "over": ["ContentKNN", "Pop"], "at_least": 1.2}], LABELS, COLUMNS)
    assert target == Target("GFM", "hit@10", ("ContentKNN", "Pop"), 1.2, 0.05, True)
    (no_worse,) = parse_targets([{"row": "GFM", "metric": "hit@10", "over": ["Pop"], "significant": False}], LABELS, COLUMNS)
    assert not no_worse.significant and no_worse.describe() == "GFM hit@10 >= 1 x the best of Pop"
    assert parse_targets(None, LABELS, COLUMNS) == []
    bad = {
        "a row the board lacks": ([{"row": "GFM", "metric": "hit@10", "over": ["LightGCN"]}], "LightGCN not a row of the board"),
        "a metric whose per-user values are not kept": ([{"row": "GFM", "metric": "mrr@10", "over": ["Pop"]}], "add it to columns"),
        "the row against itself": ([{"row": "GFM", "metric": "hit@10", "over": ["GFM", "Pop"]}], "row GFM is also under over"),
        "a ratio that is not one": ([{"row": "GFM", "metric": "hit@10", "over": ["Pop"], "at_least": "1.2x"}], "at_least must be"),
        "a misspelt key": ([{"row": "GFM", "metric": "hit@10", "over": ["Pop"], "at_leat": 1.2}], "unknown keys ['at_leat']"),
        "not a list": ({"row": "GFM"}, "expected a list of targets"),
        "a test flag that is not one": ([{"row": "GFM", "metric": "hit@10", "over": ["Pop"], "significant": "no"}], "significant must be"),
    }
    for raw, message in bad.values():
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_targets(raw, LABELS, COLUMNS)


def test_a_target_is_judged_against_the_best_named_row_on_the_pooled_cases():
    rng = np.random.default_rng(0)
    gfm = rng.uniform(0.2, 0.4, size=(2, 50))
    knn = gfm * 0.7 + rng.normal(0, 0.02, size=gfm.shape)  # the best other row: about 1.43 x below
    drop = gfm * 0.2
    data = vectors({"GFM": gfm.tolist(), "ContentKNN": knn.tolist(), "DropoutNet": drop.tolist()})
    target = Target("GFM", "ndcg@10[items=cold]", ("DropoutNet", "ContentKNN"), 1.2)
    result = judge(target, data, means_of(data))
    assert result.best == "ContentKNN" and result.n_pairs == 100 and result.n_seeds == 2
    assert result.value == pytest.approx(gfm.mean()) and result.best_value == pytest.approx(knn.mean())
    assert result.p == pytest.approx(stats.ttest_rel(gfm.ravel(), knn.ravel()).pvalue)
    assert result.ratio == pytest.approx(gfm.mean() / knn.mean()) and result.met
    # the same row and test, a ratio it does not reach
    assert not judge(Target("GFM", "ndcg@10[items=cold]", ("DropoutNet", "ContentKNN"), 1.5), data, means_of(data)).met
    # better or worse by no more than the noise: not met; as a "no worse than" target, the ratio alone decides
    noisy = gfm + rng.normal(0, 0.05, size=gfm.shape)
    close = vectors({"GFM": gfm.tolist(), "ContentKNN": noisy.tolist()})
    loose = judge(Target("GFM", "ndcg@10[items=cold]", ("ContentKNN",), 1.0), close, means_of(close))
    assert loose.p > 0.05 and not loose.met
    no_worse = judge(Target("GFM", "ndcg@10[items=cold]", ("ContentKNN",), 1.0, significant=False), close, means_of(close))
    assert no_worse.p == loose.p and no_worse.met == (gfm.mean() >= noisy.mean())
    assert judge(Target("GFM", "ndcg@10[items=cold]", ("ContentKNN",), 0.9, significant=False), close, means_of(close)).met
    # a named row with one seed finished so far: judged on that seed's cases alone, and the count says so
    partly = vectors({"GFM": gfm.tolist(), "ContentKNN": knn[:1].tolist(), "DropoutNet": drop.tolist()})
    partial = judge(target, partly, means_of(partly))
    assert partial.n_seeds == 1 and partial.n_pairs == 50 and partial.value == pytest.approx(gfm[0].mean())
    # a user outside the metric's group (NaN) is left out of every row's cases
    gfm_nan = gfm.copy()
    gfm_nan[0, 0] = np.nan
    with_nan = vectors({"GFM": gfm_nan.tolist(), "ContentKNN": knn.tolist(), "DropoutNet": drop.tolist()})
    assert judge(target, with_nan, means_of(with_nan)).n_pairs == 99
    # a named row not run yet is left out, and named
    early = {label: runs for label, runs in data.items() if label != "ContentKNN"}
    without = judge(target, early, means_of(early))
    assert without.best == "DropoutNet" and without.not_run == ("ContentKNN",) and without.met
    assert judge(Target("GFM", "ndcg@10[items=cold]", ("Pop",)), data, means_of(data)) == "not judged: no finished cell of Pop"


def test_without_per_user_values_a_target_is_judged_on_the_means_and_a_significance_target_is_not_tested():
    data = vectors({"GFM": [[0.3, 0.2]], "Pop": [[0.1, 0.1]]}, metric="hit@10")
    means = {"GFM": (0.54, 3), "LightGCN": (0.56, 3), "GFM-noGNN": (0.52, 2)}  # a per-type key: no per-user values
    untested = judge(Target("GFM", "hit@10[type=kids]", ("LightGCN", "GFM-noGNN"), 1.3), data, means)
    assert untested.best == "LightGCN" and untested.p is None and untested.n_seeds == 2
    assert untested.ratio == pytest.approx(0.54 / 0.56) and untested.met is False, "the ratio misses: missed, test or not"
    reached = judge(Target("GFM", "hit@10[type=kids]", ("GFM-noGNN",), 1.02), data, means)
    assert reached.ratio == pytest.approx(0.54 / 0.52) and reached.met is None, "the ratio is reached, the test cannot be run"
    no_worse = judge(Target("GFM", "hit@10[type=kids]", ("GFM-noGNN",), significant=False), data, means)
    assert no_worse.met and no_worse.best_value == 0.52
    assert judge(Target("GFM", "hit@10[type=kids]", ("ContentKNN",)), data, means) == "not judged: no finished cell of ContentKNN"
    one_user = vectors({"GFM": [[0.3]], "Pop": [[0.1]]}, metric="hit@10")
    assert judge(Target("GFM", "hit@10", ("Pop",)), one_user, means_of(one_user, "hit@10")).startswith(
        "not judged: A paired test needs at least 2 pairs")


def test_a_time_target_compares_the_mean_seconds_with_the_fastest_named_row():
    (target,) = parse_targets([{"row": "GFM", "metric": "train_time_to_best_s", "over": ["Pop", "ContentKNN"], "at_most": 2}],
                              LABELS, COLUMNS)  # fmt: skip
    assert target.is_time and target.describe() == "GFM train_time_to_best_s <= 2 x the fastest of Pop, ContentKNN"
    means = {"GFM": (300.0, 3), "Pop": (200.0, 3), "ContentKNN": (140.0, 3)}
    result = judge(target, {}, means)
    assert result.best == "ContentKNN" and result.ratio == pytest.approx(300 / 140) and result.met is False
    assert judge(target, {}, {**means, "ContentKNN": (150.0, 3)}).met
    for wrong, message in (({"at_least": 2}, "give at_most"), ({}, "give at_most")):
        entry = {"row": "GFM", "metric": "train_time_s", "over": ["Pop"], **wrong}
        with pytest.raises(ValueError, match=message):
            parse_targets([entry], LABELS, COLUMNS)
    with pytest.raises(ValueError, match="at_most is for times"):
        parse_targets([{"row": "GFM", "metric": "hit@10", "over": ["Pop"], "at_most": 2}], LABELS, COLUMNS)
