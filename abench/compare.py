"""Compare a leaderboard with a saved baseline: which rows and method summaries got worse."""

from __future__ import annotations

import pandas as pd

from abench.document import Leaderboard
from abench.report.metrics import GATED

# metric -> +1 if higher is better, -1 if lower is better: the gated entries of ``METRICS``, by
# their row key and by their summary key. A baseline without a metric (older runs) skips it.
ROW_METRICS = {m.row: m.sign for m in GATED if m.row}
SUMMARY_METRICS = {m.key: m.sign for m in GATED}


def _worse(metrics: dict, now: dict, base: dict, tol: float, where: str) -> list[dict]:
    out = []
    for m, sign in metrics.items():
        b, c = base.get(m), now.get(m)
        if b is None:
            continue
        if c is None:
            out.append({"where": where, "metric": m, "baseline": b, "current": None, "change": None})
        elif sign * (c - b) < -tol:
            out.append({"where": where, "metric": m, "baseline": b, "current": c, "change": c - b})
    return out


def compare(current: Leaderboard, baseline: Leaderboard, tolerance: float = 0.02) -> list[dict]:
    """Regressions of ``current`` against ``baseline`` beyond ``tolerance``: one dict per (place, metric).

    Only rows and methods present in the baseline are checked; a row that is missing or failed
    now but was ok in the baseline is a regression.
    """
    regs: list[dict] = []
    now_rows = {r.key: r for r in current.rows}
    for r in baseline.rows:
        where = f"{r.task}-{r.method}"
        if not r.ok:
            continue
        c = now_rows.get(r.key)
        if c is None:
            regs.append({"where": where, "metric": "row", "baseline": "ok", "current": "missing", "change": None})
        elif not c.ok:
            regs.append({"where": where, "metric": "status", "baseline": "ok", "current": c.error, "change": None})
        else:
            regs += _worse(ROW_METRICS, c.measures, r.measures, tolerance, where)
    # pooled numbers compare per family, and only over the same set of pooled tasks
    def pooled_tasks(doc: Leaderboard, fam: str) -> set[str]:
        return {r.task for r in doc.rows if r.family == fam and r.task not in doc.excluded_tasks}

    for fam, base_summary in baseline.summary_by_family.items():
        if pooled_tasks(current, fam) != pooled_tasks(baseline, fam):
            continue
        now_summary = {s["method"]: s for s in current.summary_by_family.get(fam, [])}
        for s in base_summary:
            c = now_summary.get(s["method"])
            if c is not None:
                regs += _worse(SUMMARY_METRICS, c, s, tolerance, f"{fam} method {s['method']}")
    return regs


def format_regressions(regs: list[dict]) -> str:
    def f(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    return pd.DataFrame([{k: f(v) for k, v in r.items()} for r in regs]).to_string(index=False)
