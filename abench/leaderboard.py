"""Rows -> the leaderboard document: per-method summary per family (pooled AUROC with a bootstrap
interval, the means over tasks of every ``METRICS`` entry with a row key), ground-truth checks,
environment; rendered by ``abench.report``. ``Row``, ``MethodSummary``, ``AttributionSummary`` and
``Leaderboard`` are defined in ``abench.document``."""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path
from typing import Iterable

import numpy as np
from sklearn.metrics import roc_auc_score

from abench import report
from abench.document import AttributionSummary, GroundTruthCheck, Leaderboard, MethodSummary, Row
from abench.recommend import SWEEP_ONLY, recommend
from abench.transfer import transfer
from abench.ground_truth import REFERENCE_METHOD
from abench.conventions import CONVENTIONS, DEFAULT_CONVENTION
from abench.report.metrics import METRICS
from abench.separability import bootstrap_auroc, no_auroc_reason
from tasks.base import FAMILY_GROUND_TRUTH, GROUND_TRUTH


def _version(dist: str, module) -> str:
    """The installed distribution's version (transformer_lens has no ``__version__``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return getattr(module, "__version__", "unknown")


def environment(device: str, extra: dict | None = None) -> dict:
    import torch
    import transformer_lens

    env = {
        "torch": torch.__version__,
        "transformer_lens": _version("transformer-lens", transformer_lens),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or platform.machine(),
        "cuda": torch.version.cuda if device.startswith("cuda") else None,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    env.update(extra or {})
    return env


def _mean(values: Iterable) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def bootstrap_mean(values: Iterable, n_boot: int = 1000, seed: int = 0) -> list[float] | None:
    """95% percentile interval of the mean, resampling the values (one per task) with replacement
    (seeded); None without a value. ``None`` values are left out."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if not v.size:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n_boot, v.size))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return [float(lo), float(hi)]


def row_means(ok: list[Row], n_boot: int = 1000, seed: int = 0) -> dict:
    """Every ``METRICS`` entry with a row key: its mean over ``ok`` rows (one per task) and, where
    the metric has one, its 95% bootstrap interval over tasks (``<key>_ci95``)."""
    out = {}
    for metric in METRICS:
        if metric.row:
            values = [r.get(metric.row) for r in ok]
            out[metric.key] = _mean(values)
            if metric.ci:
                out[metric.ci_key] = bootstrap_mean(values, n_boot, seed)
    return out


def summarize(rows: list[Row], n_boot: int = 1000, seed: int = 0) -> list[MethodSummary]:
    """Per method, a ``MethodSummary`` over its ok rows: pooled AUROC (all tasks' nodes together) with a 95% bootstrap
    interval, means of the per-task metrics, the circuit-level means over tasks (faithfulness,
    completeness, ...) with 95% bootstrap intervals over tasks, total time. Sorted best first
    (pooled AUROC, then lower spurious out-of-circuit effect)."""
    out = []
    methods = list(dict.fromkeys(r.method for r in rows))
    for m in methods:
        mine = [r for r in rows if r.method == m]
        ok = [r for r in mine if r.ok]
        labels = [n.in_circuit for r in ok for n in r.nodes]
        scores = [n.effect for r in ok for n in r.nodes]
        reason = no_auroc_reason(labels) if labels else "no successful task"
        if reason is None:
            pooled = float(roc_auc_score(labels, scores))
            ci = bootstrap_auroc(labels, scores, n_boot=n_boot, seed=seed)
        else:
            pooled, ci = None, None
        out.append(
            MethodSummary(
                method=m,
                n_tasks=len(ok),
                n_failed=len(mine) - len(ok),
                pooled_auroc=pooled,
                pooled_auroc_ci95=tuple(ci) if ci else None,
                pooled_auroc_reason=reason,
                means=row_means(ok, n_boot, seed),
                fit_seconds=float(sum(r.get("fit_seconds") for r in ok)),
                effect_seconds=float(sum(r.get("effect_seconds") for r in ok)),
                circuit_seconds=float(sum(r.get("circuit_seconds", 0.0) for r in ok)),
                seconds=float(sum(r.get("seconds") for r in ok)),
            )
        )

    def key(s: MethodSummary):
        a = s.pooled_auroc
        e = s.get("mean_effect_out")
        return (a is None, -(a or 0.0), math.inf if e is None else e, s.method)

    return sorted(out, key=key)


def _pooled_auroc(labels: list[bool], scores: list[float]) -> float | None:
    return None if not labels or no_auroc_reason(labels) else float(roc_auc_score(labels, scores))


def attribution_summary(rows: list[Row], n_boot: int = 1000, seed: int = 0) -> list[AttributionSummary]:
    """Per attribution estimator (rows with an ``exact_method``), an ``AttributionSummary`` over its ok rows: the estimate's
    pooled AUROC (95% bootstrap interval) beside its exact method's own rows' pooled AUROC and the
    pooled AUROC of the exact change of the estimator's metric; Spearman (mean over tasks),
    on-the-line share and false negatives pooled over nodes; estimate and exact seconds and their
    ratio (``abench.estimator_rows`` defines each)."""
    out = []
    ok = [r for r in rows if r.ok]
    for m in dict.fromkeys(r.method for r in ok if r.get("exact_method")):
        mine = [r for r in ok if r.method == m]
        exact_name = mine[0].get("exact_method")
        exact_rows = [r for r in ok if r.method == exact_name and r.task in {x.task for x in mine}]
        labels = [bool(n.in_circuit) for r in mine for n in r.nodes]
        est = [float(n.effect) for r in mine for n in r.nodes]
        ci = bootstrap_auroc(labels, est, n_boot=n_boot, seed=seed) if _pooled_auroc(labels, est) is not None else None
        t_est = float(sum(r.get("estimate_seconds") for r in mine))
        t_exact = float(sum(r.get("exact_seconds") for r in mine))
        n_nodes = sum(len(r.nodes) for r in mine)
        out.append(AttributionSummary(
            method=m,
            exact_method=exact_name,
            n_tasks=len(mine),
            pooled_auroc=_pooled_auroc(labels, est),
            pooled_auroc_ci95=tuple(ci) if ci else None,
            exact_pooled_auroc=_pooled_auroc([bool(n.in_circuit) for r in exact_rows for n in r.nodes],
                                             [float(n.effect) for r in exact_rows for n in r.nodes]),
            exact_metric_pooled_auroc=_pooled_auroc(labels, [float(n.exact) for r in mine for n in r.nodes]),
            mean_spearman=_mean(r.get("spearman") for r in mine),
            on_line_share=float(sum(r.get("on_line_share") * len(r.nodes) for r in mine) / n_nodes) if n_nodes else None,
            false_negatives=int(sum(r.get("false_negatives") for r in mine)),
            n_in=int(sum(labels)),
            estimate_seconds=t_est,
            exact_seconds=t_exact,
            exact_over_estimate=t_exact / t_est if t_est > 0 else None,
        ))
    return out


# The benchmark proper: its summary is the headline of every report. Other families are sanity
# checks with their own tables; families are never pooled together (their ground truths differ).
HEADLINE_FAMILIES = ("siit",)


def headline_family(families: Iterable[str]) -> str | None:
    fams = list(dict.fromkeys(families))
    return next((f for f in HEADLINE_FAMILIES if f in fams), fams[0] if fams else None)


def build(rows: list[Row], env: dict, extra: dict | None = None, checks: dict[str, GroundTruthCheck] | None = None,
          effect_convention: str = CONVENTIONS[DEFAULT_CONVENTION]) -> Leaderboard:
    """The leaderboard document written to ``leaderboard.json``.

    ``checks``: per task, its ground-truth check (``abench.ground_truth.check_task``). Rows of a
    task whose check failed stay in ``rows`` (marked) but are left out of every summary.
    ``summary`` is the headline family's summary; ``summary_by_family`` has one per family.
    The rows handed in are not changed: the document holds copies marked with their task's check.
    """
    checks = checks or {}
    excluded = {t: list(c.reasons) for t, c in checks.items() if not c.passed}
    rows = [r.checked(None if (c := checks.get(r.task)) is None else ("passed" if c.passed else "failed")) for r in rows]
    pooled = [r for r in rows if r.task not in excluded]
    families = sorted({(r.family, r.ground_truth) for r in rows})
    fam_names = list(dict.fromkeys(r.family for r in rows))
    by_family = {fam: summarize([r for r in pooled if r.family == fam]) for fam in fam_names}
    head = headline_family(fam_names)
    # the method that defines a family's ground truth (siit: resample) is its reference, never its recommendation
    reference_of = {fam: gt for fam, gt in families if gt == REFERENCE_METHOD}
    # attribution patching rows: estimate beside exact, per family
    attribution = {fam: a for fam in fam_names if (a := attribution_summary([r for r in pooled if r.family == fam]))}
    return Leaderboard(
        environment=env,
        effect_convention=effect_convention,
        ground_truth={fam: {"intervention": gt, "meaning": FAMILY_GROUND_TRUTH.get(fam) or GROUND_TRUTH.get(gt, gt)}
                      for fam, gt in families},
        headline_family=head,
        pooled_tasks=list(dict.fromkeys(r.task for r in pooled if r.family == head)),
        summary_by_family=by_family,
        ground_truth_checks=checks,
        excluded_tasks=excluded,
        rows=rows,
        attribution=attribution,
        recommendation={fam: rec for fam, summ in by_family.items() if (rec := recommend(summ, reference_of.get(fam)))},
        # the realism families against siit: the reference and the sweep-only rows are no candidates there either
        transfer=transfer(pooled, by_family, summarize, exclude={REFERENCE_METHOD} | SWEEP_ONLY),
        extra=extra or {},
    )


def write(doc: Leaderboard, folder: str | Path) -> list[Path]:
    """leaderboard.{json,md,tex,html} in ``folder``, all from ``doc`` (``abench.report.write``)."""
    return report.write(doc, folder)


# keys that hold measured time (besides every key naming seconds): a timestamp, speed ratios
VOLATILE_KEYS = ("created_at", "speed", "exact_over_estimate")


def strip_volatile(doc: dict) -> dict:
    """The document without timings, timing ratios and timestamps (what must be identical run to run).
    The recommendation stays: it is decided by the numbers only (``abench.recommend``)."""

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if not ("seconds" in k or k in VOLATILE_KEYS)}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    return clean(doc)
