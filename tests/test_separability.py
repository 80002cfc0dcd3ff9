import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from abench.separability import _auroc_rows, bootstrap_auroc, separability


def test_perfect_separation():
    s = separability([True, True, False, False], [0.9, 0.5, 0.1, 0.0])
    assert s["auroc"] == 1.0 and s["gap"] == pytest.approx(0.4) and s["fpr_at_full_recall"] == 0.0
    assert s["mean_effect_in"] == pytest.approx(0.7) and s["mean_effect_out"] == pytest.approx(0.05)


def test_overlap_matches_sklearn_and_fpr_counts_outs_above_min_in():
    labels = [True, False, True, False, False]
    scores = [0.3, 0.4, 0.8, 0.1, 0.3]
    s = separability(labels, scores)
    assert s["auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert s["gap"] == pytest.approx(0.3 - 0.4)
    assert s["fpr_at_full_recall"] == pytest.approx(2 / 3)  # 0.4 and 0.3 are >= min(in) = 0.3


@pytest.mark.parametrize("labels", [[True, True], [False, False, False]])
def test_single_class_has_no_auroc_and_says_why(labels):
    s = separability(labels, [0.1] * len(labels))
    assert s["auroc"] is None and "undefined" in s["auroc_reason"]


def test_bootstrap_interval_contains_point_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    labels = [True] * 10 + [False] * 20
    scores = list(rng.normal(1, 1, 10)) + list(rng.normal(0, 1, 20))
    lo, hi = bootstrap_auroc(labels, scores, n_boot=300, seed=1)
    assert lo <= roc_auc_score(labels, scores) <= hi and hi - lo > 0.01
    assert bootstrap_auroc(labels, scores, n_boot=300, seed=1) == (lo, hi)


def test_vectorised_auroc_equals_sklearn_with_ties():
    rng = np.random.default_rng(3)
    pos = rng.integers(0, 5, (20, 7)).astype(float)  # small integer scores: many ties
    neg = rng.integers(0, 5, (20, 11)).astype(float)
    ours = _auroc_rows(pos, neg)
    for b in range(20):
        ref = roc_auc_score(np.r_[np.ones(7), np.zeros(11)], np.r_[pos[b], neg[b]])
        assert ours[b] == pytest.approx(ref, abs=1e-12)
