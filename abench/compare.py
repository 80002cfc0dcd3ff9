"""Compare a leaderboard with a saved baseline: which rows and method summaries got worse.

A number may worsen by ``tolerance`` plus the numeric noise the baseline measured for it across CPU float
kernels (``abench.numeric_noise``; 0 for numbers that did not move). The gap and spurious effect of an
estimator row (``atp[...]``: effects in its metric's units, not shares of cells) are allowed ``tolerance``
times the row's largest baseline effect, so one tolerance means the same share of every row's scale.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from abench.document import Leaderboard, Row
from abench.report.metrics import GATED
from ablations.estimators import is_estimator

# metric -> +1 if higher is better, -1 if lower is better: the gated entries of ``METRICS``, by
# their row key and by their summary key. A baseline without a metric (older runs) skips it.
ROW_METRICS = {m.row: m.sign for m in GATED if m.row}
SUMMARY_METRICS = {m.key: m.sign for m in GATED}


def row_place(task: str, method: str) -> str:
    """The key of a row in ``numeric_noise["rows"]`` (and the ``where`` of its regressions)."""
    return f"{task}-{method}"


def summary_place(family: str, method: str) -> str:
    """The key of a method summary in ``numeric_noise["summaries"]`` (and the ``where`` of its regressions)."""
    return f"{family} method {method}"


def noise_of(baseline: Leaderboard, kind: str, place: str, metric: str) -> float:
    """The spread the baseline measured for ``metric`` at ``place`` (``kind``: "rows" or "summaries"); 0 if none."""
    return float(((baseline.extra.get("numeric_noise") or {}).get(kind) or {}).get(place, {}).get(metric, 0.0))


# row metrics in the units of the row's node effects (the others are AUROC, shares of nodes or of cells), and
# their means over tasks in a method's summary
EFFECT_UNIT_METRICS = ("gap", "mean_effect_out")
EFFECT_UNIT_SUMMARY = tuple(m.key for m in GATED if m.row in EFFECT_UNIT_METRICS)


def _worse(metrics: dict, now, base, tol: Callable[[str], float], where: str) -> list[dict]:
    out = []
    for m, sign in metrics.items():
        b, c = base.get(m), now.get(m)
        if b is None:
            continue
        if c is None:
            out.append({"where": where, "metric": m, "baseline": b, "current": None, "change": None, "allowed": None})
        elif sign * (c - b) < -tol(m):
            out.append({"where": where, "metric": m, "baseline": b, "current": c, "change": c - b, "allowed": tol(m)})
    return out


def _row_scale(row: Row) -> float:
    """1 for a row of exact effects (shares of cells); an estimator row's largest node effect (at least 1e-12)."""
    if not is_estimator(row.method):
        return 1.0
    return max([abs(float(n.effect)) for n in row.nodes] + [1e-12])


def _allowed(baseline: Leaderboard, tolerance: float, kind: str, where: str, scale: float,
             effect_unit: tuple[str, ...]) -> Callable[[str], float]:
    """The worsening allowed per metric at one place: ``tolerance`` (times ``scale`` for the metrics in
    ``effect_unit``) plus the numeric noise the baseline measured there."""
    return lambda m: tolerance * (scale if m in effect_unit else 1.0) + noise_of(baseline, kind, where, m)


def compare(current: Leaderboard, baseline: Leaderboard, tolerance: float = 0.02) -> list[dict]:
    """Regressions of ``current`` against ``baseline`` beyond ``tolerance``: one dict per (place, metric).

    Only rows and methods present in the baseline are checked; a row that is missing or failed
    now but was ok in the baseline is a regression.
    """
    regs: list[dict] = []
    now_rows = {r.key: r for r in current.rows}
    for r in baseline.rows:
        where = row_place(r.task, r.method)
        if not r.ok:
            continue
        c = now_rows.get(r.key)
        if c is None:
            regs.append({"where": where, "metric": "row", "baseline": "ok", "current": "missing", "change": None, "allowed": None})
        elif not c.ok:
            regs.append({"where": where, "metric": "status", "baseline": "ok", "current": c.error, "change": None, "allowed": None})
        else:
            allowed = _allowed(baseline, tolerance, "rows", where, _row_scale(r), EFFECT_UNIT_METRICS)
            regs += _worse(ROW_METRICS, c.measures, r.measures, allowed, where)
    # pooled numbers compare per family, and only over the same set of pooled tasks
    def pooled_tasks(doc: Leaderboard, fam: str) -> set[str]:
        return {r.task for r in doc.rows if r.family == fam and r.task not in doc.excluded_tasks}

    for fam, base_summary in baseline.summary_by_family.items():
        if pooled_tasks(current, fam) != pooled_tasks(baseline, fam):
            continue
        now_summary = {s.method: s for s in current.summary_by_family.get(fam, [])}
        for s in base_summary:
            c = now_summary.get(s.method)
            if c is not None:
                where = summary_place(fam, s.method)
                scale = max((_row_scale(r) for r in baseline.rows if r.family == fam and r.method == s.method and r.ok), default=1.0)
                regs += _worse(SUMMARY_METRICS, c, s, _allowed(baseline, tolerance, "summaries", where, scale, EFFECT_UNIT_SUMMARY), where)
    return regs


def format_regressions(regs: list[dict]) -> str:
    def f(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    return pd.DataFrame([{k: f(v) for k, v in r.items()} for r in regs]).to_string(index=False)
