"""Which method to use: separation first, then faithfulness, then cost (abench/recommend.py)."""

from abench.recommend import recommend


def entry(method, auroc, auroc_ci, faith, faith_ci, seconds):
    return {"method": method, "pooled_auroc": auroc, "pooled_auroc_ci95": auroc_ci, "mean_faithfulness": faith,
            "mean_faithfulness_ci95": faith_ci, "seconds": seconds}


def test_faithfulness_breaks_an_auroc_tie_and_cost_breaks_a_faithfulness_tie():
    summary = [
        entry("slow_faithful", 1.0, [1.0, 1.0], 0.99, [0.98, 1.0], 90.0),
        entry("cheap_faithful", 1.0, [1.0, 1.0], 0.985, [0.97, 0.995], 2.0),
        entry("cheap_unfaithful", 1.0, [1.0, 1.0], 0.40, [0.30, 0.50], 0.5),
        entry("worse_separation", 0.90, [0.85, 0.95], 1.0, [1.0, 1.0], 0.1),
        {"method": "atp[zero]", "pooled_auroc": 1.0, "pooled_auroc_ci95": [1.0, 1.0], "seconds": 0.01},
    ]
    rec = recommend(summary)
    assert rec["method"] == "cheap_faithful"
    assert rec["tied_on_auroc"] == ["slow_faithful", "cheap_faithful", "cheap_unfaithful"]
    assert rec["tied_on_faithfulness"] == ["slow_faithful", "cheap_faithful"]


def test_separation_comes_first():
    summary = [entry("separates", 1.0, [0.99, 1.0], 0.5, [0.4, 0.6], 9.0),
               entry("faithful", 0.8, [0.7, 0.9], 1.0, [1.0, 1.0], 0.1)]
    assert recommend(summary)["method"] == "separates"


def test_no_auroc_no_recommendation():
    assert recommend([{"method": "zero", "pooled_auroc": None}]) is None
