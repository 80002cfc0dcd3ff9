"""Ranking transfer: does the base family's ranking of methods hold on the realism axes?

For each realism family (``tasks.siit.REALISM_FAMILIES``: pre-norm, causal, deep, backup models) beside
the base family ``siit``'s models of the same programs (``matched_base``: the axis changes, the programs
do not; the realism models are built on a few small programs, and beside all of ``siit`` the comparison
would also change the programs): every method both scored, with its rank, pooled AUROC and mean
faithfulness (95% intervals, from the family summaries) on each; Kendall's tau between the two
rankings by pooled AUROC with a 95% bootstrap interval over tasks (tasks redrawn with replacement in
both families, pooled AUROCs recomputed, tau again); and the methods whose AUROC or faithfulness
intervals on the two families do not overlap (their standing changed beyond noise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

import numpy as np
from scipy.stats import kendalltau, rankdata

from abench.recommend import FLOAT_SLACK
from tasks.siit import program_of


if TYPE_CHECKING:
    from abench.document import MethodSummary, Row

BASE_FAMILY = "siit"
# axis name of each realism family, in report order
AXES = {"siit_norm": "norm", "siit_causal": "causal", "siit_deep": "deep", "siit_backup": "backup"}


def _task_nodes(rows: Iterable[Row], methods: Sequence[str], tasks: Sequence[str]) -> dict[str, tuple[np.ndarray, ...]]:
    """method -> (in-circuit labels, effects, index into ``tasks``) over the nodes of its ok rows."""
    index = {t: i for i, t in enumerate(tasks)}
    parts: dict[str, list] = {m: [] for m in methods}
    for r in rows:
        if r.ok and r.method in parts and r.nodes:
            parts[r.method] += [(bool(n.in_circuit), float(n.effect), index[r.task]) for n in r.nodes]
    return {m: (np.array([p[0] for p in v], bool), np.array([p[1] for p in v]), np.array([p[2] for p in v], int))
            for m, v in parts.items()}


def _boot_auroc(nodes: tuple[np.ndarray, ...], counts: np.ndarray) -> np.ndarray:
    """Pooled AUROC of each bootstrap draw of tasks, ``[n_boot]`` (NaN where a draw has no positive or no
    negative node): each node weighted by how often its task was drawn (``counts``: ``[n_boot, n_tasks]``),
    ties counted half, as ``roc_auc_score`` on the drawn tasks' nodes."""
    labels, scores, task = nodes
    if not labels.size:
        return np.full(counts.shape[0], np.nan)
    weight = counts[:, task].astype(float)  # [n_boot, n_nodes]
    _, group = np.unique(scores, return_inverse=True)
    onehot = np.zeros((scores.size, group.max() + 1))
    onehot[np.arange(scores.size), group] = 1.0
    neg = (weight * ~labels) @ onehot  # negative weight per score value, [n_boot, n_values]
    below = np.cumsum(neg, axis=1) - neg + 0.5 * neg  # negatives scored lower, ties half
    num = (weight[:, labels] * below[:, group[labels]]).sum(1)
    den = weight[:, labels].sum(1) * weight[:, ~labels].sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _tau(a: Sequence[float | None], b: Sequence[float | None]) -> float | None:
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if len(pairs) < 3:
        return None
    tau = kendalltau([x for x, _ in pairs], [y for _, y in pairs]).statistic  # tau-b: ties on either side allowed
    return None if np.isnan(tau) else float(tau)


def _apart(ci_a, ci_b) -> bool:
    """Two 95% intervals that do not overlap (beyond summed-float slack: [1, 1] and [0.9999999999999999, 1] overlap)."""
    return bool(ci_a and ci_b and (ci_a[1] + FLOAT_SLACK < ci_b[0] or ci_b[1] + FLOAT_SLACK < ci_a[0]))


def _ranks(summary: Sequence[MethodSummary], methods: Sequence[str]) -> dict[str, float]:
    """Rank by pooled AUROC (1 = best; ties share their mean rank) among ``methods``."""
    by = {s.method: s.pooled_auroc for s in summary}
    vals = [by.get(m) if by.get(m) is not None else -1.0 for m in methods]
    return dict(zip(methods, (float(x) for x in rankdata([-v for v in vals]))))


def matched_base(rows: Sequence[Row], family: str, base: str = BASE_FAMILY) -> list[Row]:
    """The ``base`` family's rows of the programs ``family``'s models implement (``siit_back2`` for
    ``siit_back2_ln``): the comparison then changes the axis, not the programs. All of ``base`` when
    none of its models shares a program."""
    programs = {program_of(r.task) for r in rows if r.family == family}
    same = [r for r in rows if r.family == base and program_of(r.task) in programs]
    return same or [r for r in rows if r.family == base]


def _listed(ci) -> list[float] | None:
    """An interval as the record's JSON holds it."""
    return None if ci is None else list(ci)


def axis_transfer(rows: Sequence[Row], summaries: Mapping[str, Sequence[MethodSummary]], family: str,
                  summarize: Callable[[list], list[MethodSummary]],
                  base: str = BASE_FAMILY, exclude: Iterable[str] = (), n_boot: int = 1000, seed: int = 0) -> dict | None:
    """The transfer record of realism ``family`` against the ``base`` models of the same programs
    (``matched_base``; their summary by ``summarize``), ``None`` when either family has no summary.

    ``exclude``: methods left out of the ranking (the families' reference, sweep-only rows)."""
    if family not in summaries or base not in summaries:
        return None
    skip = set(exclude)
    base_rows = matched_base(rows, family, base)
    base_by = {s.method: s for s in summarize(base_rows)}
    axis_by = {s.method: s for s in summaries[family]}
    methods = [m for m in base_by if m in axis_by and m not in skip]
    axis_rows = [r for r in rows if r.family == family]
    base_tasks = sorted({r.task for r in base_rows})
    axis_tasks = sorted({r.task for r in axis_rows})
    base_nodes, axis_nodes = _task_nodes(base_rows, methods, base_tasks), _task_nodes(axis_rows, methods, axis_tasks)
    tau = _tau([base_by[m].pooled_auroc for m in methods], [axis_by[m].pooled_auroc for m in methods])
    boots: list[float] = []
    if tau is not None:
        rng = np.random.default_rng(seed)
        # one draw of tasks per family and bootstrap round, shared by every method (tau compares them within a round)
        draws = [np.stack([np.bincount(rng.integers(0, len(tasks), len(tasks)), minlength=len(tasks)) for _ in range(n_boot)])
                 for tasks in (base_tasks, axis_tasks)]
        base_boot = np.stack([_boot_auroc(base_nodes[m], draws[0]) for m in methods], axis=1)  # [n_boot, n_methods]
        axis_boot = np.stack([_boot_auroc(axis_nodes[m], draws[1]) for m in methods], axis=1)
        for b, a in zip(base_boot, axis_boot):
            t = _tau([None if np.isnan(x) else x for x in b], [None if np.isnan(x) else x for x in a])
            if t is not None:
                boots.append(t)
    base_rank, axis_rank = _ranks(list(base_by.values()), methods), _ranks(summaries[family], methods)
    table = []
    for m in methods:
        b, a = base_by[m], axis_by[m]
        auroc_apart = _apart(b.pooled_auroc_ci95, a.pooled_auroc_ci95)
        faith_apart = _apart(b.get("mean_faithfulness_ci95"), a.get("mean_faithfulness_ci95"))
        table.append({
            "method": m, "base_rank": base_rank[m], "axis_rank": axis_rank[m],
            "base_pooled_auroc": b.pooled_auroc, "base_pooled_auroc_ci95": _listed(b.pooled_auroc_ci95),
            "axis_pooled_auroc": a.pooled_auroc, "axis_pooled_auroc_ci95": _listed(a.pooled_auroc_ci95),
            "base_faithfulness": b.get("mean_faithfulness"), "base_faithfulness_ci95": _listed(b.get("mean_faithfulness_ci95")),
            "axis_faithfulness": a.get("mean_faithfulness"), "axis_faithfulness_ci95": _listed(a.get("mean_faithfulness_ci95")),
            "moved": auroc_apart or faith_apart, "auroc_moved": auroc_apart, "faithfulness_moved": faith_apart,
        })
    tau_ci = [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))] if boots else None
    return {
        "family": family, "axis": AXES.get(family, family), "base": base, "base_tasks": base_tasks, "axis_tasks": axis_tasks,
        "n_tasks_base": len(base_tasks), "n_tasks_axis": len(axis_tasks), "n_methods": len(methods),
        "kendall_tau": tau,
        "kendall_tau_ci95": tau_ci, "n_boot": len(boots), "excluded_methods": sorted(skip & (set(base_by) | set(axis_by))),
        # the ranking held: tau's interval above 0 and no method moved beyond its intervals
        "held": bool(tau_ci and tau_ci[0] > 0 and not any(t["moved"] for t in table)),
        "methods": sorted(table, key=lambda t: (t["base_rank"], t["method"])),
    }


def transfer(rows: Sequence[Row], summaries: Mapping[str, Sequence[MethodSummary]], summarize: Callable[[list], list[MethodSummary]],
             exclude: Iterable[str] = (),
             n_boot: int = 1000, seed: int = 0) -> dict[str, dict]:
    """Per realism family present in ``summaries`` (``AXES`` order), its ``axis_transfer`` record."""
    exclude = list(exclude)
    return {fam: rec for fam in AXES
            if (rec := axis_transfer(rows, summaries, fam, summarize, exclude=exclude, n_boot=n_boot, seed=seed))}

