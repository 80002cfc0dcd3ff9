"""Rows -> leaderboard: per-method summary (pooled AUROC with a bootstrap interval), JSON and Markdown."""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from abench.effects import EFFECT_CONVENTION
from abench.separability import bootstrap_auroc, no_auroc_reason
from tasks.base import GROUND_TRUTH


# columns of the summary and the direction in which they are better
SUMMARY_COLUMNS = {
    "pooled_auroc": "up",
    "mean_auroc": "up",
    "mean_gap": "up",
    "mean_fpr_at_full_recall": "down",
    "mean_effect_out": "down",
    "mean_effect_in": "up",
    "mean_faithfulness": "up",
    "mean_faithfulness_divergence": "down",
    "mean_completeness": "up",
    "mean_completeness_divergence": "up",
    "mean_normalised_faithfulness": "up",
    "seconds": "down",
}

# circuit-level (joint ablation) row columns, pooled per method as a mean over tasks with a
# bootstrap 95% interval over tasks (abench.circuit)
CIRCUIT_COLUMNS = ("faithfulness", "faithfulness_divergence", "completeness", "completeness_divergence", "normalised_faithfulness")


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


def summarize(rows: list[dict], n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Per method, over its ok rows: pooled AUROC (all tasks' nodes together) with a 95% bootstrap
    interval, means of the per-task metrics, the circuit-level means over tasks (faithfulness,
    completeness, ...) with 95% bootstrap intervals over tasks, total time. Sorted best first
    (pooled AUROC, then lower spurious out-of-circuit effect)."""
    out = []
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        ok = [r for r in mine if r["status"] == "ok"]
        labels = [n["in_circuit"] for r in ok for n in r["nodes"]]
        scores = [n["effect"] for r in ok for n in r["nodes"]]
        reason = no_auroc_reason(labels) if labels else "no successful task"
        if reason is None:
            pooled = float(roc_auc_score(labels, scores))
            ci = bootstrap_auroc(labels, scores, n_boot=n_boot, seed=seed)
        else:
            pooled, ci = None, None
        out.append(
            {
                "method": m,
                "n_tasks": len(ok),
                "n_failed": len(mine) - len(ok),
                "pooled_auroc": pooled,
                "pooled_auroc_ci95": list(ci) if ci else None,
                "pooled_auroc_reason": reason,
                "mean_auroc": _mean(r["auroc"] for r in ok),
                "mean_gap": _mean(r["gap"] for r in ok),
                "mean_fpr_at_full_recall": _mean(r["fpr_at_full_recall"] for r in ok),
                "mean_effect_in": _mean(r["mean_effect_in"] for r in ok),
                "mean_effect_out": _mean(r["mean_effect_out"] for r in ok),
                **{
                    k: v
                    for col in CIRCUIT_COLUMNS
                    for k, v in (
                        (f"mean_{col}", _mean(r.get(col) for r in ok)),
                        (f"mean_{col}_ci95", bootstrap_mean((r.get(col) for r in ok), n_boot, seed)),
                    )
                },
                "fit_seconds": float(sum(r["fit_seconds"] for r in ok)),
                "effect_seconds": float(sum(r["effect_seconds"] for r in ok)),
                "circuit_seconds": float(sum(r.get("circuit_seconds", 0.0) for r in ok)),
                "seconds": float(sum(r["seconds"] for r in ok)),
            }
        )

    def key(s):
        a = s["pooled_auroc"]
        e = s["mean_effect_out"]
        return (a is None, -(a or 0.0), math.inf if e is None else e, s["method"])

    return sorted(out, key=key)


# The benchmark proper: its summary is the headline of every report. Other families are sanity
# checks with their own tables; families are never pooled together (their ground truths differ).
HEADLINE_FAMILIES = ("siit",)


def headline_family(families: Iterable[str]) -> str | None:
    fams = list(dict.fromkeys(families))
    return next((f for f in HEADLINE_FAMILIES if f in fams), fams[0] if fams else None)


def build(rows: list[dict], env: dict, extra: dict | None = None, checks: dict[str, dict] | None = None) -> dict:
    """The leaderboard document written to ``leaderboard.json``.

    ``checks``: per task, its ground-truth check (``abench.ground_truth.check_task``). Rows of a
    task whose check failed stay in ``rows`` (marked) but are left out of every summary.
    ``summary`` is the headline family's summary; ``summary_by_family`` has one per family.
    """
    checks = checks or {}
    excluded = {t: c["reasons"] for t, c in checks.items() if not c["passed"]}
    for r in rows:
        c = checks.get(r["task"])
        r["ground_truth_check"] = None if c is None else ("passed" if c["passed"] else "failed")
    pooled = [r for r in rows if r["task"] not in excluded]
    families = sorted({(r["family"], r["ground_truth"]) for r in rows})
    fam_names = list(dict.fromkeys(r["family"] for r in rows))
    by_family = {fam: summarize([r for r in pooled if r["family"] == fam]) for fam in fam_names}
    head = headline_family(fam_names)
    doc = {
        "environment": env,
        "effect_convention": EFFECT_CONVENTION,
        "ground_truth": {fam: {"intervention": gt, "meaning": GROUND_TRUTH.get(gt, gt)} for fam, gt in families},
        "headline_family": head,
        "pooled_tasks": list(dict.fromkeys(r["task"] for r in pooled if r["family"] == head)),
        "summary": by_family.get(head, []),
        "summary_by_family": by_family,
        "ground_truth_checks": checks,
        "excluded_tasks": excluded,
        "rows": rows,
    }
    doc.update(extra or {})
    return doc


CIRCUIT_NOTE = (
    "Circuit level (joint ablation, mean over tasks with a 95% bootstrap interval over tasks): faithful = fraction of "
    "predictions unchanged when every out-of-circuit node is ablated together; complete = fraction changed when every "
    "in-circuit node is ablated together; norm. faithful = (metric(circuit only) - metric(all ablated)) / "
    "(metric(clean) - metric(all ablated)), metric = accuracy against the clean prediction (categorical) or -MSE (numerical)."
)


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _ci(ci) -> str:
    return "-" if not ci else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def summary_frame(summary: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "method": s["method"],
                "pooled AUROC": _fmt(s["pooled_auroc"]),
                "95% CI": "-" if not s["pooled_auroc_ci95"] else f"[{s['pooled_auroc_ci95'][0]:.2f}, {s['pooled_auroc_ci95'][1]:.2f}]",
                "mean AUROC": _fmt(s["mean_auroc"]),
                "mean gap": _fmt(s["mean_gap"]),
                "FPR@recall1": _fmt(s["mean_fpr_at_full_recall"]),
                "effect in": _fmt(s["mean_effect_in"]),
                "effect out": _fmt(s["mean_effect_out"]),
                "faithful": _fmt(s.get("mean_faithfulness")),
                "faithful CI": _ci(s.get("mean_faithfulness_ci95")),
                "complete": _fmt(s.get("mean_completeness")),
                "complete CI": _ci(s.get("mean_completeness_ci95")),
                "norm. faithful": _fmt(s.get("mean_normalised_faithfulness")),
                "tasks": s["n_tasks"],
                "failed": s["n_failed"],
                "seconds": _fmt(s["seconds"], 2),
            }
            for s in summary
        ]
    )


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "task": r["task"],
                "method": r["method"],
                "status": r["status"],
                "GT check": r.get("ground_truth_check") or "-",
                "AUROC": _fmt(r.get("auroc")) if r["status"] == "ok" and r.get("auroc") is not None else (r.get("auroc_reason") or r.get("error") or "-"),
                "gap": _fmt(r.get("gap")),
                "FPR@recall1": _fmt(r.get("fpr_at_full_recall")),
                "effect in": _fmt(r.get("mean_effect_in")),
                "effect out": _fmt(r.get("mean_effect_out")),
                "faithful": _fmt(r.get("faithfulness")),
                "complete": _fmt(r.get("completeness")),
                "norm. faithful": _fmt(r.get("normalised_faithfulness")) if r.get("normalised_faithfulness") is not None
                else ("n/a" if r.get("normalised_faithfulness_reason") else "-"),
                "fit s": _fmt(r.get("fit_seconds"), 2),
                "effect s": _fmt(r.get("effect_seconds"), 2),
                "circuit s": _fmt(r.get("circuit_seconds"), 2),
            }
            for r in rows
        ]
    )


def checks_frame(check: dict) -> pd.DataFrame:
    """One task's ground-truth check per node: reference (LL) effect and the HL node's effect."""
    return pd.DataFrame(
        [
            {
                "node": n["name"],
                "in circuit": n["in_circuit"],
                "HL node": n.get("hl_node", "-"),
                "HL effect": _fmt(n.get("hl_effect")),
                f"LL effect ({check['reference_method']})": _fmt(n["ll_effect"]),
                "|LL - HL|": _fmt(n.get("abs_diff")),
            }
            for n in check["nodes"]
        ]
    )


def check_line(check: dict) -> str:
    verdict = "passed" if check["passed"] else "FAILED: " + "; ".join(check["reasons"])
    return (f"{check['task']}: {verdict} (reference {check['reference_method']}: AUROC {_fmt(check['auroc'])}, "
            f"gap {_fmt(check['gap'])}, max |LL - HL| {_fmt(check['max_abs_diff'])}, tolerance {check['hl_tolerance']})")


def to_markdown(doc: dict) -> str:
    env = doc["environment"]
    lines = [
        "# Ablation-method leaderboard",
        "",
        f"torch {env['torch']} on {env['device']} ({env.get('device_name') or '?'}), created {env['created_at']}.",
        "",
        f"Effect: fraction of non-BOS cells whose prediction changes when one node is ablated ({doc['effect_convention']}).",
        "",
        CIRCUIT_NOTE,
        "",
        "Ground truth per task family:",
        "",
    ]
    lines += [f"- **{fam}**: {gt['intervention']} — {gt['meaning']}" for fam, gt in doc["ground_truth"].items()]
    head = doc.get("headline_family")
    for fam, summ in doc["summary_by_family"].items():
        title = "the benchmark" if fam == head else "sanity family, not pooled with the benchmark"
        lines += [f"## Family `{fam}` ({title}): methods pooled over its tasks, best first", "", summary_frame(summ).to_markdown(index=False), ""]
    if doc.get("excluded_tasks"):
        lines += ["Left out of every summary (ground-truth check failed): "
                  + ", ".join(f"`{t}`" for t in doc["excluded_tasks"]), ""]
    if doc.get("failed_tasks"):
        lines += ["## Failed tasks", "", "Selected but not set up (load, data or ground-truth check failed): in no row or summary.", ""]
        lines += [f"- `{t}` ({f['stage']}): {f['reason']}" for t, f in doc["failed_tasks"].items()] + [""]
    checks = doc.get("ground_truth_checks") or {}
    if checks:
        lines += ["## Ground-truth checks", "",
                  "Per task: the reference method must separate the circuit (AUROC 1, gap > 0) and every in-circuit node's "
                  "effect must match its high-level (tracr) node's effect on the same interchanges.", ""]
        for check in checks.values():
            lines += [f"### `{check['task']}`", "", check_line(check), "", checks_frame(check).to_markdown(index=False), ""]
    lines += ["## Rows (task x method)", "", rows_frame(doc["rows"]).to_markdown(index=False), ""]
    for key, value in doc.items():
        if key == "speed":
            lines += ["## Speed", "", "```", json.dumps(value, indent=1), "```", ""]
    return "\n".join(lines)


def write(doc: dict, folder: str | Path) -> list[Path]:
    """leaderboard.{json,md,tex,html} in ``folder``, all from ``doc``."""
    from abench import report_html, report_tex  # report_html imports this module

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"leaderboard.{ext}" for ext in ("json", "md", "tex", "html")]
    paths[0].write_text(json.dumps(doc, indent=1))
    paths[1].write_text(to_markdown(doc))
    paths[2].write_text(report_tex.to_latex(doc))
    paths[3].write_text(report_html.to_html(doc), encoding="utf-8")
    return paths


def strip_volatile(doc: dict) -> dict:
    """The document without timings and timestamps (what must be identical run to run)."""

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if not ("seconds" in k or k in ("created_at", "speed"))}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    return clean(doc)
