"""The ranking-transfer record (``abench.transfer``) as a table, a sentence and a methods x axes figure."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from abench.report.metrics import ci_text
from abench.report.tables import fmt

TRANSFER_NOTE = ("Each realism family (models shaped like real ones: pre-norm, causal, deep, backup heads) beside the base "
                 "family siit's models of the same programs: every method's rank by pooled AUROC (1 = best, ties share their mean rank), pooled AUROC and "
                 "mean faithfulness with 95% intervals on both, and Kendall's tau between the two rankings with a 95% "
                 "bootstrap interval over tasks. 'moved': the AUROC or faithfulness intervals on the two families do not "
                 "overlap. The reference method (resample) is left out, as in 'which method to use'.")


def _ci(value, ci) -> str:
    return fmt(value) if not ci else f"{fmt(value)} {ci_text(ci)}"


def transfer_line(rec: dict) -> str:
    """One sentence: the axis, its tasks, tau with its interval, the methods that moved."""
    tau = "n/a (fewer than 3 methods with a pooled AUROC)" if rec["kendall_tau"] is None else _ci(rec["kendall_tau"], rec["kendall_tau_ci95"])
    moved = [m["method"] for m in rec["methods"] if m["moved"]]
    return (f"**{rec['axis']}** (`{rec['family']}`, {rec['n_tasks_axis']} tasks, against {rec['n_tasks_base']} of `{rec['base']}`): "
            f"Kendall's tau {tau}; " + (f"moved beyond their intervals: {', '.join(f'`{m}`' for m in moved)}." if moved
                                         else "no method moved beyond its intervals."))


def transfer_frame(rec: dict) -> pd.DataFrame:
    return pd.DataFrame([{
        "method": m["method"],
        f"rank {rec['base']}": fmt(m["base_rank"], 1), f"rank {rec['axis']}": fmt(m["axis_rank"], 1),
        f"pooled AUROC {rec['base']}": _ci(m["base_pooled_auroc"], m["base_pooled_auroc_ci95"]),
        f"pooled AUROC {rec['axis']}": _ci(m["axis_pooled_auroc"], m["axis_pooled_auroc_ci95"]),
        f"faithfulness {rec['base']}": _ci(m["base_faithfulness"], m["base_faithfulness_ci95"]),
        f"faithfulness {rec['axis']}": _ci(m["axis_faithfulness"], m["axis_faithfulness_ci95"]),
        "moved": "yes" if m["moved"] else "",
    } for m in rec["methods"]])


def headline_sentence(transfer: dict) -> str | None:
    """The README's one sentence on whether the ranking held on the realism axes (None without any)."""
    if not transfer:
        return None
    parts = []
    for rec in transfer.values():
        tau = "tau n/a" if rec["kendall_tau"] is None else f"tau {_ci(rec['kendall_tau'], rec['kendall_tau_ci95'])}"
        moved = sum(m["moved"] for m in rec["methods"])
        parts.append(f"{rec['axis']} ({rec['n_tasks_axis']} models): {tau}, {moved} method{'s' * (moved != 1)} moved")
    verdict = "held" if all(r.get("held") for r in transfer.values()) else "did not hold everywhere"
    return f"On the realism axes the ranking {verdict} ({'; '.join(parts)})."


def transfer_figure(transfer: dict) -> go.Figure | None:
    """Methods x axes heat map: each realism axis's pooled AUROC minus that of the siit models of the same
    programs (its own matched base), the cell text both numbers; methods in the first axis's base order."""
    if not transfer:
        return None
    recs = list(transfer.values())
    methods = [m["method"] for m in recs[0]["methods"]]
    cells = {(m["method"], r["axis"]): m for r in recs for m in r["methods"]}
    z, text = [], []
    for method in methods:
        z_row, t_row = [], []
        for r in recs:
            m = cells.get((method, r["axis"]))
            base, axis = (m["base_pooled_auroc"], m["axis_pooled_auroc"]) if m else (None, None)
            delta = None if base is None or axis is None else axis - base
            z_row.append(delta)
            t_row.append("" if delta is None else f"{axis:.3f} ({delta:+.3f}){' *' if m['moved'] else ''}")
        z.append(z_row)
        text.append(t_row)
    fig = go.Figure(go.Heatmap(z=z, x=[f"{r['axis']} ({r['n_tasks_axis']} vs {r['n_tasks_base']})" for r in recs], y=methods,
                               text=text, texttemplate="%{text}", colorscale="RdBu", zmid=0, zmin=-0.5, zmax=0.5,
                               colorbar={"title": "AUROC change"}))
    fig.update_layout(title="Ranking transfer: pooled AUROC on each realism axis (change against the siit models of the same "
                            "programs; * moved beyond its intervals)",
                      yaxis={"autorange": "reversed", "title": "method"}, xaxis={"title": "axis (its tasks vs matched siit tasks)"},
                      height=max(360, 22 * len(methods) + 140), margin={"l": 220})
    return fig
