"""Attribution patching in the report: the estimate-beside-exact table and the estimate-vs-exact scatter.

Both read the leaderboard document only: ``doc.attribution`` (``AttributionSummary`` records,
``abench.leaderboard.attribution_summary``) and the estimator rows' nodes (``effect``: estimated,
``exact``: exact mean |change| of the metric).
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from abench.report.figures import IN_COLOR, OUT_COLOR

if TYPE_CHECKING:
    from abench.document import AttributionSummary, Leaderboard

ATTRIBUTION_NOTE = (
    "Attribution patching: atp[m] estimates each node's effect under method m as the gradient of a metric at the clean run "
    "dotted with (replacement - clean), atp_ig[m,steps=k] averages the gradient at k points on the path to the replacement, "
    "atp_gd[m] (AtP*'s GradDrop) averages |AtP| over the model's layers with the gradient through one layer dropped each "
    "time (sum over L layers / (L - 1)), a magnitude per cell compared with the exact |change|. "
    "Metric per cell: log-probability of the clean prediction (categorical), output value (numerical), logit difference "
    "(next-token tasks); effect = mean |change| per cell, estimated and exact. On the line: |estimate - exact| <= 10% of exact "
    "+ 0.01. False negatives: in-circuit nodes ranked below a bystander by the estimate but not by the exact change. "
    "Speed: exact seconds / estimate seconds."
)
LOG_FLOOR = 1e-4  # effects below it (exact zeros included) are drawn at it on the log axes


def _f(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def attribution_frame(summary: Sequence[AttributionSummary]) -> pd.DataFrame:
    """One line per estimator of a family: its pooled AUROC beside its exact method's, agreement, speed."""
    return pd.DataFrame([
        {
            "estimator": s.method,
            "pooled AUROC": _f(s.pooled_auroc),
            "95% CI": "-" if not s.pooled_auroc_ci95 else f"[{s.pooled_auroc_ci95[0]:.2f}, {s.pooled_auroc_ci95[1]:.2f}]",
            "exact method": s.exact_method,
            "exact AUROC": _f(s.exact_pooled_auroc),
            "exact AUROC (same metric)": _f(s.exact_metric_pooled_auroc),
            "Spearman": _f(s.mean_spearman),
            "on the line": _f(s.on_line_share),
            "false neg.": f"{s.false_negatives} / {s.n_in}",
            "estimate s": _f(s.estimate_seconds, 2),
            "exact s": _f(s.exact_seconds, 2),
            "speed-up": _f(s.exact_over_estimate, 1),
            "tasks": s.n_tasks,
        }
        for s in summary
    ])


def attribution_scatter(doc: Leaderboard, family: str) -> go.Figure | None:
    """Per estimator of ``family`` a panel: estimated against exact effect of every node of every
    pooled task (log axes, floor ``LOG_FLOOR``), in/out of circuit coloured, the diagonal, and the
    on-the-line share printed. None without estimator rows."""
    summary = doc.attribution.get(family) or []
    excluded = doc.excluded_tasks
    panels = []
    for s in summary:
        rows = [r for r in doc.rows if r.ok and r.method == s.method and r.family == family and r.task not in excluded]
        if rows:
            panels.append((s, rows))
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[s.method for s, _ in panels],
                        horizontal_spacing=0.06, vertical_spacing=0.22 / max(nrows, 1))
    shown = set()
    values = [max(LOG_FLOOR, float(v)) for _, rows in panels for r in rows for n in r.nodes for v in (n.effect, n.exact)]
    lo, hi = math.log10(min(values)) - 0.2, math.log10(max(values)) + 0.2
    for i, (s, rows) in enumerate(panels):
        row, col = i // ncols + 1, i % ncols + 1
        for in_circuit in (False, True):
            pts = [(r.task, n) for r in rows for n in r.nodes if bool(n.in_circuit) == in_circuit]
            if not pts:
                continue
            key = "in circuit" if in_circuit else "out of circuit"
            fig.add_trace(go.Scatter(
                x=[max(LOG_FLOOR, float(n.exact)) for _, n in pts],
                y=[max(LOG_FLOOR, float(n.effect)) for _, n in pts],
                text=[f"{html.escape(t)} / {html.escape(n.name)}" for t, n in pts],
                mode="markers", name=key, legendgroup=key, showlegend=key not in shown,
                marker=dict(color=IN_COLOR if in_circuit else OUT_COLOR, size=6, opacity=0.75),
                hovertemplate="%{text}<br>exact %{x:.4g}<br>estimate %{y:.4g}<extra></extra>",
            ), row=row, col=col)
            shown.add(key)
        fig.add_trace(go.Scatter(x=[10 ** lo, 10 ** hi], y=[10 ** lo, 10 ** hi], mode="lines", showlegend=False,
                                 line=dict(color="#999", dash="dash", width=1), hoverinfo="skip"), row=row, col=col)
        share = s.on_line_share
        axis = "" if i == 0 else str(i + 1)
        fig.add_annotation(x=0.03, y=0.97, xref=f"x{axis} domain", yref=f"y{axis} domain", showarrow=False, align="left",
                           xanchor="left", yanchor="top", font=dict(size=12),
                           text=f"on the line: {share:.0%}<br>Spearman {_f(s.mean_spearman, 2)}" if share is not None else "")
    fig.update_xaxes(type="log", range=[lo, hi], title_text="exact effect (mean |Δ metric|)")
    fig.update_yaxes(type="log", range=[lo, hi])  # every panel on the same log axes (one axis kind per figure)
    fig.update_yaxes(title_text="estimate", col=1)
    fig.update_layout(
        title=f"Attribution estimate vs exact effect, family {html.escape(family)} (one point per task and node; "
              f"values below {LOG_FLOOR:g} drawn at it)",
        height=380 * nrows + 90, margin=dict(t=100, b=50, l=60, r=20),
    )
    return fig
