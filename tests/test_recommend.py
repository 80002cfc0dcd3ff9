"""Which method to use: separation first, then faithfulness, ties by the best's intervals, never by timing
(abench/recommend.py)."""

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from abench.document import MethodSummary
from abench.recommend import ranking, recommend


def entry(method, auroc, auroc_ci, faith, faith_ci, seconds, spurious=0.0):
    return MethodSummary(method=method, pooled_auroc=auroc, pooled_auroc_ci95=auroc_ci, seconds=seconds,
                         means={"mean_faithfulness": faith, "mean_faithfulness_ci95": faith_ci, "mean_effect_out": spurious})


def test_faithfulness_breaks_an_auroc_tie_and_the_numbers_break_a_faithfulness_tie():
    summary = [
        entry("slow_faithful", 1.0, [1.0, 1.0], 0.99, [0.98, 1.0], 90.0),
        entry("cheap_faithful", 1.0, [1.0, 1.0], 0.985, [0.97, 0.995], 2.0),
        entry("cheap_unfaithful", 1.0, [1.0, 1.0], 0.40, [0.30, 0.50], 0.5),
        entry("worse_separation", 0.90, [0.85, 0.95], 1.0, [1.0, 1.0], 0.1),
        MethodSummary(method="atp[zero]", pooled_auroc=1.0, pooled_auroc_ci95=(1.0, 1.0), seconds=0.01),
    ]
    rec = recommend(summary)
    assert rec["method"] == "slow_faithful"  # the higher faithfulness, whatever the seconds
    assert rec["tied_on_auroc"] == ["slow_faithful", "cheap_faithful", "cheap_unfaithful"]
    assert rec["tied_on_faithfulness"] == ["slow_faithful", "cheap_faithful"]


def test_a_wide_interval_does_not_tie_a_low_estimate_with_the_best():
    """The issue's case: zero at 0.511 [0.11, 1.00] was counted as tied with methods at 1.000."""
    summary = [entry("zero", 1.0, [1.0, 1.0], 0.511, [0.11, 1.0], 0.1),
               entry("cf_mean", 1.0, [1.0, 1.0], 1.0, [1.0, 1.0], 5.0)]
    rec = recommend(summary)
    assert rec["method"] == "cf_mean" and rec["tied_on_faithfulness"] == ["cf_mean"]


def test_the_reference_is_named_and_never_recommended():
    summary = [entry("resample", 1.0, [1.0, 1.0], 1.0, [1.0, 1.0], 1.0),
               entry("mean", 0.999, [0.998, 1.0], 0.92, [0.84, 0.98], 1.0)]
    rec = recommend(summary, reference="resample")
    assert rec["method"] == "mean" and rec["reference"] == "resample"
    assert "resample, the reference that defines this family's ground truth (it scores 1 by construction)" in rec["why"]
    assert ranking(summary, "resample") == ["resample", "mean"]


def test_separation_comes_first():
    summary = [entry("separates", 1.0, [0.99, 1.0], 0.5, [0.4, 0.6], 9.0),
               entry("faithful", 0.8, [0.7, 0.9], 1.0, [1.0, 1.0], 0.1)]
    assert recommend(summary)["method"] == "separates"
    assert ranking(summary) == ["separates", "faithful"]


def test_a_method_loop_ranks_by_the_numbers():
    """The issue's case: negate (0.987 / 0.595) was ranked above half_mean (0.997 / 0.831)."""
    summary = [entry("negate", 0.987, [0.97, 1.0], 0.595, [0.4, 0.8], 0.1),
               entry("half_mean", 0.997, [0.99, 1.0], 0.831, [0.7, 0.95], 9.0)]
    assert ranking(summary) == ["half_mean", "negate"]


def test_no_auroc_no_recommendation():
    assert recommend([MethodSummary(method="zero", pooled_auroc=None)]) is None


scores = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def summaries(draw):
    n = draw(st.integers(1, 8))
    out = []
    for i in range(n):
        a, f = draw(scores), draw(scores)
        a_lo, f_lo = draw(st.floats(0.0, a)), draw(st.floats(0.0, f))
        out.append(entry(f"m{i}", a, [a_lo, a], f, [f_lo, f], draw(st.floats(0, 100)), draw(scores)))
    return out


@settings(max_examples=200, deadline=None)
@given(summaries(), st.randoms(use_true_random=False), st.lists(st.floats(0, 100), min_size=8, max_size=8))
def test_the_answer_depends_on_the_numbers_only(summary, rnd, new_seconds):
    """Same numbers in any order and with any seconds: the same recommendation and ranking."""
    rec = recommend(summary)
    shuffled = [replace(s, seconds=t) for s, t in zip(summary, new_seconds)]
    rnd.shuffle(shuffled)
    assert recommend(shuffled) == rec and ranking(shuffled) == ranking(summary)
    assert rec["method"] in rec["tied_on_faithfulness"] and set(rec["tied_on_faithfulness"]) <= set(rec["tied_on_auroc"])


def test_the_scale_sweep_beyond_the_default_set_is_no_candidate():
    """scaled_resample[s=1] is resample itself: under the sweep it would stand in for the reference."""
    summary = [entry("scaled_resample[s=1]", 1.0, [1.0, 1.0], 1.0, [1.0, 1.0], 1.0),
               entry("scaled_resample[s=0.5]", 1.0, [1.0, 1.0], 0.9, [0.8, 0.95], 1.0),
               entry("resample", 1.0, [1.0, 1.0], 1.0, [1.0, 1.0], 1.0)]
    assert recommend(summary, reference="resample")["method"] == "scaled_resample[s=0.5]"


def test_a_perfect_separation_summed_to_0_9999999999999999_ties_with_1():
    """roc_auc_score's float sum of a perfect separation must not lose the tie (it did for pca_resample[k=1,high])."""
    summary = [entry("optimal_position", 1.0, [1.0, 1.0], 0.961, [0.910, 0.998], 1.0),
               entry("pca_resample[k=1,high]", 0.9999999999999999, [1.0, 1.0], 0.989, [0.978, 0.997], 1.0),
               entry("cf_mean", 0.99994, [0.99964, 1.0], 0.971, [0.928, 1.0], 1.0)]
    rec = recommend(summary)
    assert rec["tied_on_auroc"] == ["pca_resample[k=1,high]", "optimal_position"] and rec["method"] == "pca_resample[k=1,high]"
