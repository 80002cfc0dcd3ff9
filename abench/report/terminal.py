"""The run's end in the terminal: the leaderboard per family, "which method to use", the ground-truth checks, the
attribution tables, what failed, and the gate's regressions, as lines (``abench.pytest_plugin`` writes them)."""

from __future__ import annotations

from abench.document import Leaderboard
from abench.report import tables
from abench.report.estimates import attribution_frame


def leaderboard_lines(doc: Leaderboard, speed: dict) -> list[str]:
    """Every family's table with its answer, the ground-truth checks, the attribution tables, failed tasks and rows,
    the speed ratios and the optimal fits' times."""
    lines: list[str] = []
    for fam, summ in doc.summary_by_family.items():
        gt = doc.ground_truth[fam]
        lines.append(f"family {fam} (ground truth: {gt['intervention']}), pooled over its tasks, best first:")
        if not summ:
            lines.append("  (no task of this family to pool: see the ground-truth checks below)")
            continue
        lines.append(tables.summary_frame(summ).to_string(index=False))
        rec = doc.recommendation.get(fam)
        if rec:
            lines.append(f"which method to use on {fam}: {rec['method']}: {rec['why']}")
    if doc.ground_truth_checks:
        lines.append("ground-truth checks (reference method separates the circuit; in-circuit LL effect = HL effect):")
        lines += ["  " + tables.check_line(check) for check in doc.ground_truth_checks.values()]
    for fam, summ in doc.attribution.items():
        lines.append(f"attribution patching, family {fam} (each estimate beside the exact change it estimates):")
        lines.append(attribution_frame(summ).to_string(index=False))
    lines += [f"FAILED TASK {t} ({f['stage']}; in no row or summary): {f['reason']}" for t, f in (doc.extra.get("failed_tasks") or {}).items()]
    lines += [f"FAILED ROW {r.task}-{r.method}: {r.error}" for r in doc.rows if not r.ok]
    lines += [f"speed {k}: {v}" for k, v in speed.items()]
    lines += [f"fit time {r.method} on {r.task}: {r.get('fit_seconds'):.2f} s, {r.get('fit_seconds_per_node'):.3f} s per node"
              for r in doc.rows if r.ok and r.method.startswith("optimal")]
    return lines
