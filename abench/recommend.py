"""Which method to use, read off a family's summary: the answer the leaderboard gives a reader who asks.

Three steps, each a tie-break of the one before:

1. **Separation** (the node axis): the methods whose pooled AUROC interval reaches the best
   method's lower bound (their intervals overlap the best one's from above); estimator rows
   (``atp[...]``, ``atp_ig[...]``, ``atp_gd[...]``) are left out: they stand for an exact method,
   which is ranked instead.
2. **Faithfulness** (the circuit axis): among those, the methods whose mean faithfulness
   interval overlaps the best one's.
3. **Cost**: the cheapest of what is left (summed seconds over the family's tasks).
"""

from __future__ import annotations

from ablations.estimators import is_estimator


def _lo(ci, value):
    return ci[0] if ci else value


def _hi(ci, value):
    return ci[1] if ci else value


def recommend(summary: list[dict]) -> dict | None:
    """``{"method", "why", "tied_on_auroc", "tied_on_faithfulness"}`` for one family's summary, or
    None when no method has a pooled AUROC."""
    rows = [s for s in summary if s.get("pooled_auroc") is not None and not is_estimator(s["method"])]
    if not rows:
        return None
    best = max(rows, key=lambda s: _lo(s.get("pooled_auroc_ci95"), s["pooled_auroc"]))
    floor = _lo(best.get("pooled_auroc_ci95"), best["pooled_auroc"])
    tier = [s for s in rows if _hi(s.get("pooled_auroc_ci95"), s["pooled_auroc"]) >= floor]
    faithful = [s for s in tier if s.get("mean_faithfulness") is not None]
    if faithful:
        top = max(faithful, key=lambda s: _lo(s.get("mean_faithfulness_ci95"), s["mean_faithfulness"]))
        f_floor = _lo(top.get("mean_faithfulness_ci95"), top["mean_faithfulness"])
        tier2 = [s for s in faithful if _hi(s.get("mean_faithfulness_ci95"), s["mean_faithfulness"]) >= f_floor]
    else:
        tier2 = tier
    pick = min(tier2, key=lambda s: (s.get("seconds") or 0.0, s["method"]))
    why = (f"pooled AUROC {pick['pooled_auroc']:.3f} (tied with {len(tier) - 1} other method(s) on separation)"
           + (f", mean faithfulness {pick['mean_faithfulness']:.3f} (tied with {len(tier2) - 1})" if faithful else "")
           + f", the cheapest of those: {pick.get('seconds') or 0.0:.1f} s over the family's tasks")
    return {"method": pick["method"], "why": why, "tied_on_auroc": [s["method"] for s in tier],
            "tied_on_faithfulness": [s["method"] for s in tier2]}
