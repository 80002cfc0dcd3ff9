"""Rows of the attribution estimators (``atp[...]``, ``atp_ig[...]``, ``atp_gd[...]``), scored beside the exact effect they estimate.

**Metric** (differentiable and non-stationary at the clean run; KL to the clean output is 0 with
gradient 0 there): per cell, the log-probability of the clean prediction (categorical outputs),
the output value (numerical outputs), or the logit difference at the final position (next-token
tasks scored by it). Cells are the non-BOS positions, or the final one for those tasks.

**Effect of a node** (one scale for estimate and truth): the mean over cells of ``|change of the
metric|`` when that node alone is replaced by the wrapped method's value: the linear estimate
(``interventions.linear_estimates``) or the exact change (the batched engine of
``interventions.hooks``, one forward per node). The row's separability (AUROC, gap, FPR at full
recall) is the estimate's, on the task's ground truth like every row; ``exact_metric_auroc`` is the
exact effect's on the same metric.

**GradDrop** (``atp_gd``) gives a magnitude per cell, ``sum_l |AtP_{-l}| / (L - 1)``, not a signed
change: its effect of a node is the mean over cells of that magnitude, beside the same exact mean
``|change|``, and ``on_line_share_cells`` compares it with the exact ``|change|`` per cell.

**Agreement** with the exact effect, per node:

- ``spearman``: rank correlation of estimated and exact effects (scipy);
- ``on_line_share``: share of nodes with ``|estimate - exact| <= ON_LINE_RTOL * |exact| +
  ON_LINE_ATOL`` (within 10% of the truth, or 0.01 nats / output units for near-zero effects: the
  scatter's diagonal band); ``on_line_share_cells`` the same over the signed per-cell changes;
- ``false_negatives``: in-circuit nodes that the estimate ranks below some bystander which the
  exact effect ranks below them (a pair the estimate inverts at the circuit's expense).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.stats import spearmanr

from abench.conventions import LogitDiffScorer, effect_setup
from abench.document import NodeEffect
from abench.effects import replacements
from abench.separability import bootstrap_auroc, separability
from ablations.base import AblationMethod
from ablations.task_data import TaskData
from ablations.estimators import Estimator
from interventions.linear_estimates import CellEstimate, CellMetric
from interventions.hooks import ablated_outputs_batched
from tasks.base import Task

ON_LINE_RTOL = 0.1
ON_LINE_ATOL = 0.01
# A node effect below float32's resolution of the row's largest effect (at least of 1: the metric is O(1)) is
# rounding, not signal: a linear estimate through a saturated softmax reads 3e-12 on one CPU's kernels and 0 on
# another's, which flipped a task's AUROC between 1 and 0.9. Such effects are 0, so ties stay ties on every CPU.
FLOAT_RESOLUTION = float(torch.finfo(torch.float32).eps)


def above_resolution(effects: np.ndarray) -> np.ndarray:
    """``effects`` (one row's node effects) with every value below ``FLOAT_RESOLUTION * max(1, max |effect|)`` set to 0."""
    floor = FLOAT_RESOLUTION * max(1.0, float(np.abs(effects).max(initial=0.0)))
    return np.where(np.abs(effects) < floor, 0.0, effects)


@dataclass
class GroupMetric:
    """The metric of one length group: ``fn(outputs [R, pos, v], example [R]) -> [R, pos]`` and the scored positions."""

    fn: CellMetric
    positions: list[int]


def task_metrics(data: TaskData, scorer) -> tuple[list[GroupMetric], str]:
    """Per length group the cell metric and its positions (see the module docstring), and its description."""
    out = []
    if isinstance(scorer, LogitDiffScorer):
        for g in range(data.n_groups):
            ans = scorer.answers(data, g)  # [b, 2]
            n_pos = data.tokens[g].shape[1]

            def fn(logits, example, ans=ans):
                a = ans[example]  # [R, 2]
                pick = lambda i: logits.gather(-1, a[:, None, i : i + 1].expand(-1, logits.shape[1], 1))[..., 0]  # noqa: E731
                return pick(0) - pick(1)

            out.append(GroupMetric(fn, [scorer.position % n_pos]))
        return out, "logit difference (correct - wrong) at the final position"
    for g in range(data.n_groups):
        positions = list(range(1, data.tokens[g].shape[1]))
        if data.output == "categorical":
            answer = data.outputs[g].argmax(-1)  # [b, pos]: the clean prediction

            def fn(logits, example, answer=answer):
                return logits.log_softmax(-1).gather(-1, answer[example][..., None])[..., 0]
        else:
            def fn(logits, example):
                return logits[..., 0]
        out.append(GroupMetric(fn, positions))
    what = "log-probability of the clean prediction" if data.output == "categorical" else "output value"
    return out, f"{what} per non-BOS cell"


def estimated_changes(method: AblationMethod, data: TaskData, metrics: list[GroupMetric],
                      estimate: CellEstimate) -> tuple[dict[str, torch.Tensor], dict]:
    """Per node the estimate (``estimate``, e.g. ``Estimator.estimate``) at every cell of the change of the
    metric when ``method`` replaces it, all groups concatenated: ``{node: [cells]}``; and the replacements
    per group (``{group: {node: [b, pos, d]}}``), for the exact counterpart."""
    cells: dict[str, list[torch.Tensor]] = {n.name: [] for n in data.nodes}
    repl_of = {}
    for g, gm in enumerate(metrics):
        repl = repl_of[g] = replacements(method, data, g)
        deltas = {n.name: repl[n.name] - data.acts[n.name][g] for n in data.nodes}
        est = estimate(data.model, data.resid_pre[g], data.nodes, deltas, gm.fn, gm.positions)
        for n in data.nodes:
            cells[n.name].append(est[n.name].reshape(-1))
    return {k: torch.cat(v).cpu() for k, v in cells.items()}, repl_of


def exact_changes(data: TaskData, metrics: list[GroupMetric], repl_of: dict) -> dict[str, torch.Tensor]:
    """Per node the exact change of the metric at every cell when it alone is replaced: ``{node: [cells]}``."""
    cells: dict[str, list[torch.Tensor]] = {n.name: [] for n in data.nodes}
    with torch.no_grad():
        for g, gm in enumerate(metrics):
            b = data.tokens[g].shape[0]
            example = torch.arange(b, device=data.tokens[g].device)
            clean = gm.fn(data.outputs[g], example)[:, gm.positions]
            writes = data.writes[g] if data.writes else None
            outs = ablated_outputs_batched(data.model, data.resid_pre[g], data.nodes, repl_of[g], writes=writes)
            for n in data.nodes:
                cells[n.name].append((gm.fn(outs[n.name], example)[:, gm.positions] - clean).reshape(-1))
    return {k: torch.cat(v).cpu() for k, v in cells.items()}


def on_line(estimate: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Boolean per point: within the documented band around the diagonal."""
    return np.abs(estimate - exact) <= ON_LINE_RTOL * np.abs(exact) + ON_LINE_ATOL


def false_negatives(labels, estimate, exact) -> list[int]:
    """Indices of in-circuit nodes that the estimate ranks below a bystander which the exact effect ranks below them."""
    y = np.asarray(labels, dtype=bool)
    est, ex = np.asarray(estimate, float), np.asarray(exact, float)
    out_est, out_ex = est[~y], ex[~y]
    return [int(i) for i in np.flatnonzero(y) if bool(((out_est > est[i]) & (out_ex < ex[i])).any())]


def agreement(labels, estimate, exact) -> dict:
    """Spearman, on-the-line share and false negatives of per-node estimated against exact effects."""
    est, ex = np.asarray(estimate, float), np.asarray(exact, float)
    rho = spearmanr(est, ex).statistic if est.size > 1 and np.ptp(est) > 0 and np.ptp(ex) > 0 else None
    fn = false_negatives(labels, est, ex)
    return {"spearman": None if rho is None else float(rho), "on_line_share": float(on_line(est, ex).mean()),
            "false_negatives": len(fn), "false_negative_idx": fn}


# The exact counterpart is shared by the estimators of one method on one eval set (atp, atp_ig, atp_gd):
# keyed by the data's identity, reused only while the replacements are bit-identical.
_EXACT: dict[tuple[int, str], tuple[weakref.ref, dict, dict, float]] = {}


def _cached_exact(data: TaskData, name: str, metrics, repl_of: dict, timer: Callable) -> tuple[dict, float]:
    key = (id(data), name)
    hit = _EXACT.get(key)
    if hit is not None and hit[0]() is data and hit[1].keys() == repl_of.keys() and all(
            torch.equal(hit[1][g][k], v) for g in repl_of for k, v in repl_of[g].items()):
        return hit[2], hit[3]
    with timer() as t:
        exact = exact_changes(data, metrics, repl_of)
    _EXACT.clear()  # one task at a time: keep only the latest
    _EXACT[key] = (weakref.ref(data), repl_of, exact, t.seconds)
    return exact, t.seconds


def estimator_row(task: Task, method: Estimator, fit: TaskData, ev: TaskData, convention: str, timer: Callable) -> dict:
    """The row fields of one estimator on one task (``bench.run_row`` adds task, method and status).

    ``timer()``: a context manager with ``.seconds`` (``bench.Timer`` of the task's device). Times:
    ``fit_seconds`` (the wrapped method's fit), ``estimate_seconds`` (replacements, forward and
    backward), ``exact_seconds`` (replacements and one forward per node, the exact counterpart),
    ``exact_over_estimate`` their ratio (how many times faster the estimate is)."""
    with timer() as t_fit:
        method.fit(fit)
    setup = effect_setup(task, method.inner, ev, convention)  # final-position ablation where the task asks for it
    metrics, metric_text = task_metrics(ev, setup.scorer)
    with timer() as t_est:
        est_cells, repl_of = estimated_changes(setup.method, ev, metrics, method.estimate)
    t_est_rep = t_est.seconds
    repl_of = {g: {k: v.clone() for k, v in r.items()} for g, r in repl_of.items()}  # the cache compares later rows' with these
    exact_cells, t_exact = _cached_exact(ev, method.inner.name, metrics, repl_of, timer)
    names = [n.name for n in ev.nodes]
    labels = [n.in_circuit for n in ev.nodes]
    est = above_resolution(np.array([est_cells[n].abs().mean().item() for n in names]))
    ex = above_resolution(np.array([exact_cells[n].abs().mean().item() for n in names]))
    sep = separability(labels, est)
    ci = bootstrap_auroc(labels, est)
    agree = agreement(labels, est, ex)
    fn_idx = agree.pop("false_negative_idx")
    all_est = torch.cat([est_cells[n] for n in names]).numpy()
    all_ex = torch.cat([exact_cells[n] for n in names]).numpy()
    if not method.signed:  # a magnitude per cell (GradDrop): beside the exact |change|
        all_ex = np.abs(all_ex)
    row = {
        **sep,
        "auroc_ci95": list(ci) if ci else None,
        "exact_method": method.inner.name,
        "exact_metric_auroc": separability(labels, ex)["auroc"],
        **agree,
        "false_negative_nodes": [names[i] for i in fn_idx],
        "on_line_share_cells": float(on_line(all_est, all_ex).mean()),
        "on_line_tolerance": {"rtol": ON_LINE_RTOL, "atol": ON_LINE_ATOL},
        "attribution_metric": metric_text,
        "effect_convention": "attribution",
        "effect_convention_note": f"mean |change| per cell of the {metric_text}: "
                                  + ("estimated" if method.signed else "GradDrop magnitude per cell, averaged")
                                  + "; exact in node 'exact'",
        "fit_seconds": t_fit.seconds,
        "effect_seconds": t_est_rep,
        "seconds": t_fit.seconds + t_est_rep,
        "fit_seconds_per_node": t_fit.seconds / len(names),
        "estimate_seconds": t_est_rep,
        "exact_seconds": t_exact,
        "exact_over_estimate": t_exact / t_est_rep if t_est_rep > 0 else None,
        "nodes": [
            NodeEffect(n, bool(lab), float(e), float(est_cells[n].mean()), exact=float(x), exact_signed=float(exact_cells[n].mean()))
            for n, lab, e, x in zip(names, labels, est, ex)
        ],
    }
    return row
