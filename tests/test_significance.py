"""Paired significance over (seed, user) cases: scipy's numbers, Holm's correction, the markers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from recbole_gfm.bench.significance import AlignmentError, caption, compare, holm, markers

USERS = [f"u{i}" for i in range(40)]


def board(means: dict[str, float], seeds=(1, 2), noise: float = 0.2, seed: int = 0) -> dict:
    """Per row, per seed, (users, values): each row is its mean plus user-level noise."""
    rng = np.random.default_rng(seed)
    user_effect = {s: rng.normal(0, 0.3, len(USERS)) for s in seeds}
    return {
        label: {s: (USERS, m + user_effect[s] + rng.normal(0, noise, len(USERS))) for s in seeds}
        for label, m in means.items()
    }


def pooled(rows: dict, label: str) -> np.ndarray:
    return np.concatenate([np.asarray(rows[label][s][1]) for s in sorted(rows[label])])


def test_holm_matches_a_textbook_example():
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1


def test_pvalues_are_scipys_on_cases_paired_by_seed_and_user():
    rows = board({"A": 1.0, "B": 0.9, "C": 0.5})
    # C lists its users in another order: pairing is by token, not by position
    shuffled = {s: (USERS[::-1], np.asarray(v)[::-1]) for s, (_, v) in rows["C"].items()}
    result = compare({**rows, "C": shuffled}, reference="C")
    a, b, c = pooled(rows, "A"), pooled(rows, "B"), pooled(rows, "C")
    assert result.n_pairs == 80 and result.n_seeds == 2

    top = result.of("A", "best_other")  # the top row against the runner-up
    assert top.compared_to == "B" and top.mean_diff == pytest.approx(np.mean(a - b))
    assert top.t_p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    assert top.w_p == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-12)
    low = result.of("C", "best_other")  # every other row against the top row
    assert low.compared_to == "A" and low.t_p == pytest.approx(stats.ttest_rel(c, a).pvalue, rel=1e-12)
    family = [result.of(r, "best_other") for r in "ABC"]
    assert np.allclose([x.t_p_holm for x in family], holm([x.t_p for x in family]))
    assert np.allclose([x.w_p_holm for x in family], holm([x.w_p for x in family]))

    ref = [result.of(r, "reference") for r in "AB"]
    assert result.of("C", "reference") is None and [x.compared_to for x in ref] == ["C", "C"]
    expected = [stats.ttest_rel(a, c).pvalue, stats.ttest_rel(b, c).pvalue]
    assert np.allclose([x.t_p for x in ref], expected, rtol=1e-12)
    assert np.allclose([x.t_p_holm for x in ref], holm(expected))


def test_markers_name_the_row_that_wins_and_the_rows_that_beat_the_reference():
    rows = board({"GFM": 1.0, "BPR": 0.6, "GFM-noGNN": 0.55, "Pop": 0.2})
    result = compare(rows, reference="GFM-noGNN")
    assert markers(result) == {"GFM": "†▲", "BPR": "", "GFM-noGNN": "", "Pop": "▼"}
    assert markers(result, test="wilcoxon") == {"GFM": "†▲", "BPR": "", "GFM-noGNN": "", "Pop": "▼"}
    text = caption(result)
    assert "paired t-test over 80 (seed, user) pairs (2 seeds pooled), Holm-corrected" in text
    assert "reference row GFM-noGNN" in text and "Wilcoxon signed-rank p-values in the CSV" in text


def test_identical_rows_give_p_one_and_no_marker():
    rows = board({"A": 0.5})
    result = compare({"A": rows["A"], "A again": rows["A"]}, reference="A")
    for comparison in result.comparisons:
        assert (comparison.t_p, comparison.w_p, comparison.t_p_holm, comparison.w_p_holm) == (1.0, 1.0, 1.0, 1.0)
        assert comparison.mean_diff == 0
    assert markers(result) == {"A": "", "A again": ""}


def test_rows_scored_on_different_users_fail_or_are_compared_on_the_shared_ones():
    rows = board({"A": 1.0, "B": 0.5})
    fewer = {s: (users[:30], values[:30]) for s, (users, values) in rows["B"].items()}
    with pytest.raises(AlignmentError, match="one test set per board"):
        compare({"A": rows["A"], "B": fewer})
    result = compare({"A": rows["A"], "B": fewer}, common_subset=True)
    assert result.n_pairs == 60 and result.dropped == {"A": 20}
    a = np.concatenate([rows["A"][s][1][:30] for s in (1, 2)])
    b = np.concatenate([fewer[s][1] for s in (1, 2)])
    assert result.of("A", "best_other").t_p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    assert "left out: A 20" in caption(result)
    with pytest.raises(AlignmentError, match="different"):  # a seed missing from one row
        compare({"A": rows["A"], "B": {1: rows["B"][1]}})


def test_bad_input_is_named():
    rows = board({"A": 1.0, "B": 0.5})
    with pytest.raises(ValueError, match="Reference row 'C'"):
        compare(rows, reference="C")
    with pytest.raises(AlignmentError, match="user 'u0' has more than one value"):
        compare({"A": {1: (["u0", "u0"], [1.0, 2.0])}, "B": {1: (["u0"], [1.0])}})
    with pytest.raises(ValueError, match="at least 2 pairs"):
        compare({"A": {1: (["u0"], [1.0])}, "B": {1: (["u0"], [0.0])}})


def test_nan_marks_a_case_outside_the_metrics_group_and_is_left_out_of_the_pairs():
    users = ["u1", "u2", "u3", "u4"]
    rows = {
        "A": {1: (users, [0.5, float("nan"), 0.2, 0.9])},
        "B": {1: (users, [0.1, float("nan"), 0.2, 0.4])},
    }
    result = compare(rows)
    assert result.n_pairs == 3 and result.means == pytest.approx({"A": (0.5 + 0.2 + 0.9) / 3, "B": 0.7 / 3})
