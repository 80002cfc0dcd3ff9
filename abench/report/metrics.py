"""The one table of leaderboard metrics, read by every report format and by the regression gate.

A ``Metric`` is a key of a method's summary (``abench.document.MethodSummary``, read by ``get``; in
``leaderboard.json`` ``summary_by_family``). With ``row`` set it is the mean over tasks of that per-row
key (``abench.leaderboard.summarize`` computes it into ``MethodSummary.means``, with a 95% bootstrap
interval over tasks under ``<key>_ci95`` when ``ci``); the
markdown, HTML and terminal tables show it (``shown``), the LaTeX table too (``tex``), and
``abench/compare.py`` gates the summary key and the row key (``gate``). Adding a metric column is
one line here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class Metric:
    key: str  # summary key
    label: str
    higher_is_better: bool
    digits: int
    description: str
    row: str | None = None  # per-row key averaged over tasks into ``key`` (None: computed otherwise)
    ci: bool = False  # a 95% bootstrap interval over tasks, ``<key>_ci95``
    gate: bool = False  # ``--compare`` fails when it worsens (the summary key, and the row key)
    shown: bool = True  # a column of the markdown / HTML / terminal tables
    tex: bool = False  # a column of the LaTeX results table

    @property
    def ci_key(self) -> str | None:
        return f"{self.key}_ci95" if self.ci else None

    @property
    def sign(self) -> int:
        return 1 if self.higher_is_better else -1


METRICS: tuple[Metric, ...] = (
    Metric("pooled_auroc", "pooled AUROC", True, 3, "AUROC over all tasks' nodes together (in-circuit nodes positive)",
      ci=True, gate=True, tex=True),
    Metric("mean_auroc", "AUROC", True, 3, "per-task AUROC, mean over tasks", row="auroc", gate=True),
    Metric("mean_gap", "gap", True, 3, "lowest in-circuit minus highest out-of-circuit effect", row="gap", gate=True, tex=True),
    Metric("mean_fpr_at_full_recall", "FPR@recall 1", False, 3,
      "share of out-of-circuit nodes flagged at the threshold that keeps every in-circuit node", row="fpr_at_full_recall",
      gate=True, tex=True),
    Metric("mean_effect_in", "effect in", True, 3, "mean effect of the in-circuit nodes", row="mean_effect_in"),
    Metric("mean_effect_out", "spurious effect", False, 3, "mean effect of the out-of-circuit nodes", row="mean_effect_out",
      gate=True, tex=True),
    Metric("mean_faithfulness", "faithfulness", True, 3,
      "share of predictions unchanged when every out-of-circuit node is ablated together", row="faithfulness", ci=True,
      gate=True, tex=True),
    Metric("mean_faithfulness_divergence", "faithfulness divergence", False, 3, "that run's KL / squared error",
      row="faithfulness_divergence", ci=True, shown=False),
    Metric("mean_completeness", "completeness", True, 3,
      "share of predictions changed when every in-circuit node is ablated together", row="completeness", ci=True,
      gate=True, tex=True),
    Metric("mean_completeness_divergence", "completeness divergence", True, 3, "that run's KL / squared error",
      row="completeness_divergence", ci=True, shown=False),
    Metric("mean_normalised_faithfulness", "norm. faithfulness", True, 3,
      "(metric(circuit only) - metric(all ablated)) / (metric(clean) - metric(all ablated))",
      row="normalised_faithfulness", ci=True, tex=True),
    Metric("seconds", "time (s)", False, 2, "total fit and effect seconds", tex=True),
)

SHOWN = tuple(m for m in METRICS if m.shown)
TEX = tuple(m for m in METRICS if m.tex)
GATED = tuple(m for m in METRICS if m.gate)
ROW_SHOWN = tuple(m for m in SHOWN if m.row)  # the per-row columns of the rows tables


class Summary(Protocol):
    """What a metric reads of a method summary (``abench.document.MethodSummary``, which imports this table)."""

    n_tasks: int

    def get(self, key: str, default=None): ...


def value(summary: Summary, key: str) -> float | None:
    """A summary's value of ``key``; none at all for a method without a successful task (its time
    of 0 s would otherwise look best) and none for NaN."""
    if not summary.n_tasks:
        return None
    v = summary.get(key)
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def best_values(summary: Sequence[Summary], metrics=METRICS) -> dict[str, float | None]:
    """Per metric key, the best value over the methods at the printed precision (None without a value)."""
    out = {}
    for m in metrics:
        rounded = [round(v, m.digits) for v in (value(s, m.key) for s in summary) if v is not None]
        out[m.key] = (max(rounded) if m.higher_is_better else min(rounded)) if rounded else None
    return out


def is_best(v: float | None, metric: Metric, best: dict) -> bool:
    return v is not None and best.get(metric.key) is not None and round(v, metric.digits) == best[metric.key]


def ci_text(ci, digits: int = 3) -> str | None:
    """``[lo, hi]`` at ``digits`` (the estimate's own precision: rounding is monotone, so an estimate inside
    its interval is never printed outside it), None without an interval."""
    return None if not ci else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
