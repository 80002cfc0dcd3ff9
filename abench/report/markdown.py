"""Leaderboard document (``abench.document.Leaderboard``) -> ``leaderboard.md``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from abench.report.estimates import ATTRIBUTION_NOTE, attribution_frame
from abench.report.transfer import TRANSFER_NOTE, transfer_frame, transfer_line
from abench.report.tables import CIRCUIT_NOTE, JOINT_NOTE, check_line, checks_frame, joint_frame, rows_frame, summary_frame

if TYPE_CHECKING:
    from abench.document import Leaderboard


def to_markdown(doc: Leaderboard) -> str:
    env = doc.environment
    lines = [
        "# Ablation-method leaderboard",
        "",
        f"torch {env['torch']} on {env['device']} ({env.get('device_name') or '?'}), created {env['created_at']}.",
        "",
        f"Effect: fraction of non-BOS cells whose prediction changes when one node is ablated ({doc.effect_convention}).",
        "",
        CIRCUIT_NOTE,
        "",
        "Ground truth per task family:",
        "",
    ]
    lines += [f"- **{fam}**: {gt['intervention']} — {gt['meaning']}" for fam, gt in doc.ground_truth.items()]
    head = doc.headline_family
    for fam, summ in doc.summary_by_family.items():
        title = "the benchmark" if fam == head else "sanity family, not pooled with the benchmark"
        lines += [f"## Family `{fam}` ({title}): methods pooled over its tasks, best first", "", summary_frame(summ).to_markdown(index=False), ""]
        rec = doc.recommendation.get(fam)
        if rec:
            lines += [f"**Which method to use** on `{fam}`: `{rec['method']}`: {rec['why']} (`abench/recommend.py`).", ""]
    if doc.transfer:
        lines += ["## Ranking transfer: the realism axes against `siit`", "", TRANSFER_NOTE, ""]
        for rec in doc.transfer.values():
            lines += [transfer_line(rec), "", transfer_frame(rec).to_markdown(index=False), ""]
    if doc.excluded_tasks:
        lines += ["Left out of every summary (ground-truth check failed): "
                  + ", ".join(f"`{t}`" for t in doc.excluded_tasks), ""]
    failed = doc.extra.get("failed_tasks")
    if failed:
        lines += ["## Failed tasks", "", "Selected but not set up (load, data or ground-truth check failed): in no row or summary.", ""]
        lines += [f"- `{t}` ({f['stage']}): {f['reason']}" for t, f in failed.items()] + [""]
    if doc.ground_truth_checks:
        lines += ["## Ground-truth checks", "",
                  "Per task: the reference method must separate the circuit (AUROC 1, gap > 0), every in-circuit node's "
                  "effect must match its high-level (tracr) node's effect on the same interchanges, and jointly: with every "
                  "out-of-circuit node ablated together the output stays (faithfulness >= 0.99), and with the circuit ablated "
                  "together it changes as the high-level model's does (completeness within 0.03).", ""]
        for check in doc.ground_truth_checks.values():
            lines += [f"### `{check.task}`", "", check_line(check), "", checks_frame(check).to_markdown(index=False), ""]
    for fam, summ in doc.attribution.items():
        lines += [f"## Attribution patching: estimate vs exact, family `{fam}`", "", ATTRIBUTION_NOTE, "",
                  attribution_frame(summ).to_markdown(index=False), ""]
    joint = joint_frame(doc.rows)
    if joint is not None:
        lines += ["## Joint ablation of declared node sets", "", JOINT_NOTE, "", joint.to_markdown(index=False), ""]
    lines += ["## Rows (task x method)", "", rows_frame(doc.rows).to_markdown(index=False), ""]
    if "speed" in doc.extra:
        lines += ["## Speed", "", "```", json.dumps(doc.extra["speed"], indent=1), "```", ""]
    return "\n".join(lines)
