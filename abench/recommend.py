"""Which method to use, read off a family's summary: the answer the leaderboard gives a reader who asks.

Decided by the numbers and their intervals only, never by measured seconds (timing noise would
change the answer between identical runs):

1. **Candidates**: every exact method with a pooled AUROC, except estimator rows (``atp[...]``,
   ``atp_ig[...]``, ``atp_gd[...]``: they stand for an exact method, ranked instead) and the
   family's **reference** method, the one that defines its ground truth (``siit``: ``resample``,
   which SIIT trained every bystander to be irrelevant under, so it scores 1 by construction and
   recommending it would be circular). The reference is named beside the answer. The scaled-resample
   sweep beyond the default set (``--scale-sweep``: a study of one method's scale, whose ``s=1`` is
   ``resample`` itself) is not a candidate either.
2. **Separation** (the node axis): the best pooled AUROC sets the bar at its interval's lower
   bound; a method is tied on separation when its own estimate reaches that bar.
3. **Faithfulness** (the circuit axis): among those tied on separation, the best mean
   faithfulness sets the bar the same way; a method is tied when its estimate reaches it.
   A wide interval of its own (``zero`` at 0.511 [0.11, 1.00]) does not make a method tied.
4. Among the tied, the higher faithfulness, then pooled AUROC, then the lower spurious effect,
   then the name: a fixed order, so the same numbers give the same answer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from ablations import DEFAULT_METHODS, SCALE_SWEEP_METHODS
from ablations.estimators import is_estimator

if TYPE_CHECKING:
    from abench.document import MethodSummary

# summed floats land a hair off an exact value (roc_auc_score gives 0.9999999999999999 for a perfect separation);
# far below any real step of an AUROC or a share of cells (1 / (positives x negatives), 1 / cells: >= 1e-7 here)
FLOAT_SLACK = 1e-9
SWEEP_ONLY = frozenset(SCALE_SWEEP_METHODS) - frozenset(DEFAULT_METHODS)  # the --scale-sweep methods beyond the default set


def _num(v) -> float:
    return -math.inf if v is None else float(v)


def _bar(best: MethodSummary, key: str) -> float:
    """The bar ``best`` sets on ``key``: the lower bound of its 95% interval (its value without one)."""
    ci = best.get(f"{key}_ci95")
    return float(ci[0]) if ci else _num(best.get(key))


def _order_key(s: MethodSummary) -> tuple:
    """Faithfulness, then pooled AUROC (higher first), then spurious effect (lower first), then the name."""
    spurious = s.get("mean_effect_out")
    return (-_num(s.get("mean_faithfulness")), -_num(s.pooled_auroc), math.inf if spurious is None else spurious, s.method)


def _tied(rows: list[MethodSummary], key: str) -> list[MethodSummary]:
    """The rows whose ``key`` estimate reaches the best row's interval, in ``_order_key`` order."""
    if not rows:
        return []
    best = max(rows, key=lambda s: (_num(s.get(key)), s.method))
    bar = _bar(best, key) - FLOAT_SLACK
    return sorted((s for s in rows if _num(s.get(key)) >= bar), key=_order_key)


RANKING_RULE = "methods tied with the best pooled AUROC within its interval first, by faithfulness; then the rest by pooled AUROC"


def ranking(summary: Sequence[MethodSummary], reference: str | None = None) -> list[str]:
    """Every exact method with a pooled AUROC, in the order the recommendation reads them: those tied
    on separation with the best first (by faithfulness, then AUROC, spurious effect, name), then the
    rest by pooled AUROC (then faithfulness, spurious effect, name). ``reference`` is ranked like any
    method (so a user's method can be placed against it) but never recommended."""
    rows = [s for s in summary if s.pooled_auroc is not None and not is_estimator(s.method)]
    tier = {s.method for s in _tied(rows, "pooled_auroc")}
    first = sorted((s for s in rows if s.method in tier), key=_order_key)
    rest = sorted((s for s in rows if s.method not in tier),
                  key=lambda s: (-_num(s.pooled_auroc),) + _order_key(s))
    return [s.method for s in first + rest]


def recommend(summary: Sequence[MethodSummary], reference: str | None = None) -> dict | None:
    """``{"method", "why", "reference", "tied_on_auroc", "tied_on_faithfulness"}`` for one family's
    summary, or None when no candidate has a pooled AUROC. ``reference``: the method that defines
    the family's ground truth (left out of the candidates, named in ``why``)."""
    rows = [s for s in summary if s.pooled_auroc is not None and not is_estimator(s.method) and s.method != reference
            and s.method not in SWEEP_ONLY]
    if not rows:
        return None
    tier = _tied(rows, "pooled_auroc")
    faithful = [s for s in tier if s.get("mean_faithfulness") is not None]
    tier2 = _tied(faithful, "mean_faithfulness") if faithful else tier
    pick = min(tier2, key=_order_key)

    def ci(s: MethodSummary, key: str) -> str:
        c = s.get(f"{key}_ci95")
        return f" [{c[0]:.3f}, {c[1]:.3f}]" if c else ""

    others = [s.method for s in tier2 if s is not pick]
    why = (f"pooled AUROC {pick.pooled_auroc:.3f}{ci(pick, 'pooled_auroc')}"
           + (f", faithfulness {pick.get('mean_faithfulness'):.3f}{ci(pick, 'mean_faithfulness')}" if faithful else "")
           + (f"; tied within the best's intervals with {', '.join(others)} (then ordered by faithfulness, AUROC, spurious effect)"
              if others else "; no other method reaches the best's intervals on both")
           + (f". Not a candidate: {reference}, the reference that defines this family's ground truth (it scores 1 by construction)"
              if reference and any(s.method == reference for s in summary) else ""))
    return {"method": pick.method, "why": why, "reference": reference,
            "tied_on_auroc": [s.method for s in tier], "tied_on_faithfulness": [s.method for s in tier2]}
