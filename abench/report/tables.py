"""Leaderboard records -> tables (pandas frames) shared by the markdown, HTML and terminal reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import pandas as pd

from abench.report.metrics import ROW_SHOWN, SHOWN, ci_text, value

if TYPE_CHECKING:
    from abench.document import GroundTruthCheck, MethodSummary, Row

CIRCUIT_NOTE = (
    "Circuit level (joint ablation, mean over tasks with a 95% bootstrap interval over tasks): faithful = fraction of "
    "predictions unchanged when every out-of-circuit node is ablated together; complete = fraction changed when every "
    "in-circuit node is ablated together; norm. faithful = (metric(circuit only) - metric(all ablated)) / "
    "(metric(clean) - metric(all ablated)), metric = accuracy against the clean prediction (categorical) or -MSE (numerical)."
)


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def summary_frame(summary: Sequence[MethodSummary]) -> pd.DataFrame:
    """One row per method: every shown metric (``METRICS``), its 95% interval where it has one."""
    records = []
    for s in summary:
        rec = {"method": s.method}
        for m in SHOWN:
            rec[m.label] = fmt(value(s, m.key), m.digits)
            if m.ci:
                rec[f"{m.label} 95% CI"] = ci_text(s.get(m.ci_key) if s.n_tasks else None, m.digits) or "-"
        rec["tasks"] = s.n_tasks
        rec["failed"] = s.n_failed
        records.append(rec)
    return pd.DataFrame(records)


def _row_cell(r: Row, key: str, digits: int) -> str:
    v = r.get(key)
    if v is None and r.get(f"{key}_reason"):
        return "n/a"
    return fmt(v, digits)


def rows_frame(rows: Sequence[Row]) -> pd.DataFrame:
    """One row per (task, method): its status, every shown metric's row value, timings and why a value is missing."""
    return pd.DataFrame(
        [
            {
                "task": r.task,
                "method": r.method,
                "status": r.status,
                "GT check": r.ground_truth_check or "-",
                **{m.label: _row_cell(r, m.row, m.digits) for m in ROW_SHOWN},
                "fit s": fmt(r.get("fit_seconds"), 2),
                "effect s": fmt(r.get("effect_seconds"), 2),
                "circuit s": fmt(r.get("circuit_seconds"), 2),
                "note": r.error or r.get("auroc_reason") or "",
            }
            for r in rows
        ]
    )


def checks_frame(check: GroundTruthCheck) -> pd.DataFrame:
    """One task's ground-truth check per node: reference (LL) effect and the HL node's effect; a
    redundant set (``joint_units``) adds a line with its joint effect, its members' lines say which set.
    (A check's ``nodes`` and ``units`` are mappings by design: ``GroundTruthCheck``.)"""
    return pd.DataFrame(
        [
            {
                "node": n["name"] + (f" (member of {n['member_of']}: single effect, not gated)" if "member_of" in n else ""),
                "in circuit": n["in_circuit"],
                "HL node": n.get("hl_node", "-"),
                "HL effect": fmt(n.get("hl_effect")),
                f"LL effect ({check.reference_method})": fmt(n["ll_effect"]),
                "|LL - HL|": fmt(n.get("abs_diff")),
            }
            for n in check.nodes
        ]
        + [
            {
                "node": f"{u['name']} (joint)",
                "in circuit": True,
                "HL node": u["hl_node"],
                "HL effect": fmt(u["hl_effect"]),
                f"LL effect ({check.reference_method})": fmt(u["ll_effect"]),
                "|LL - HL|": fmt(u["abs_diff"]),
            }
            for u in check.joint_units
        ]
    )


def check_line(check: GroundTruthCheck) -> str:
    verdict = "passed" if check.passed else "FAILED: " + "; ".join(check.reasons)
    return (f"{check.task}: {verdict} (reference {check.reference_method}: AUROC {fmt(check.auroc)}, "
            f"gap {fmt(check.gap)}, max |LL - HL| {fmt(check.max_abs_diff)}, tolerance {check.hl_tolerance}; "
            f"faithfulness {fmt(check.faithfulness)} (bar {check.faithfulness_bar}), "
            f"completeness LL {fmt(check.completeness_ll)} vs HL {fmt(check.completeness_hl)})")


JOINT_NOTE = ("Node sets a task declares (e.g. a name mover and its backup) ablated together, beside each member "
              "ablated alone under the same method: a set whose joint effect exceeds every member's carries redundancy "
              "that single-node ablation under-reports.")


def joint_frame(rows: Sequence[Row]) -> pd.DataFrame | None:
    """One line per (task, method, declared node set): joint effect and each member's single-node effect; None if no row has sets."""
    lines = [
        {
            "task": r.task,
            "method": r.method,
            "node set": j.name,
            "joint effect": fmt(j.effect),
            "single-node effects": ", ".join(f"{n} {fmt(e)}" for n, e in j.single_effects.items()),
        }
        for r in rows if r.ok
        for j in r.joint_effects
    ]
    return pd.DataFrame(lines) if lines else None
