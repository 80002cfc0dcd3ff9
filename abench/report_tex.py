"""Leaderboard document -> a booktabs LaTeX results table (``leaderboard.tex``).

One row per method of ``doc["summary"]`` (already sorted best first). Every column header carries
an arrow for its better direction and the best value of each column is set in bold (ties, compared
at the printed precision, are all bold). The table needs ``\\usepackage{booktabs}`` in the preamble
and nothing else.
"""

from __future__ import annotations

import math

# (summary key, header, better direction, digits)
COLUMNS = [
    ("pooled_auroc", "Pooled AUROC", "up", 3),
    ("mean_gap", "Gap", "up", 3),
    ("mean_fpr_at_full_recall", "FPR@recall\\,1", "down", 3),
    ("mean_effect_out", "Spurious effect", "down", 3),
    ("mean_faithfulness", "Faithfulness", "up", 3),
    ("mean_completeness", "Completeness", "up", 3),
    ("mean_normalised_faithfulness", "Norm.\\ faithfulness", "up", 3),
    ("seconds", "Time (s)", "down", 2),
]

ARROW = {"up": r"$\uparrow$", "down": r"$\downarrow$"}

_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}


def escape(text: str) -> str:
    """Escape LaTeX specials. Brackets stay as they are, but a leading ``[`` is guarded with ``{}``
    so that it is not read as the optional argument of the preceding ``\\\\``."""
    out = "".join(_SPECIALS.get(ch, ch) for ch in str(text))
    return "{}" + out if out.startswith("[") else out


def _value(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _best(values: list[float | None], direction: str, digits: int) -> float | None:
    """The best value at the printed precision (None when the column has no value)."""
    rounded = [round(v, digits) for v in values if v is not None]
    if not rounded:
        return None
    return max(rounded) if direction == "up" else min(rounded)


def column_value(s: dict, key: str) -> float | None:
    """A summary's value for a column; none at all for a method without a successful task (its
    time of 0 s would otherwise look best)."""
    return None if not s.get("n_tasks") else _value(s.get(key))


def best_values(summary: list[dict]) -> dict[str, float | None]:
    """Per column key, the best value at the printed precision."""
    return {key: _best([column_value(s, key) for s in summary], d, digits) for key, _, d, digits in COLUMNS}


def _cell(v: float | None, digits: int, best: float | None) -> str:
    if v is None:
        return "--"
    text = f"{v:.{digits}f}"
    return rf"\textbf{{{text}}}" if best is not None and round(v, digits) == best else text


def to_latex(doc: dict, caption: str | None = None, label: str = "tab:ablation-leaderboard") -> str:
    """One booktabs ``table`` per task family, the headline (benchmark) family first; families are
    never pooled together. ``caption`` and ``label`` are those of the headline table."""
    by_family = doc.get("summary_by_family") or {doc.get("headline_family"): doc["summary"]}
    head = doc.get("headline_family") or next(iter(by_family))
    tables = [family_table(doc, head, by_family.get(head, doc["summary"]), caption, label)]
    for fam, summ in by_family.items():
        if fam != head:
            tables.append(family_table(doc, fam, summ, None, f"{label}-{fam}"))
    return "\n".join(tables)


def family_table(doc: dict, family: str | None, summary: list[dict], caption: str | None, label: str) -> str:
    """A ``table`` with a booktabs ``tabular`` for one family: one row per method, best value per column in bold."""
    best = best_values(summary)
    header = ["Method"] + [f"{name} {ARROW[d]}" for _, name, d, _ in COLUMNS]
    body = []
    any_failed = False
    for s in summary:
        name = r"\texttt{" + escape(s["method"]) + "}"
        if s.get("n_failed"):
            any_failed = True
            name += r"$^{\dagger}$"
        cells = [name]
        for key, _, _, digits in COLUMNS:
            v = column_value(s, key)
            text = _cell(v, digits, best[key])
            if key == "pooled_auroc" and v is not None and s.get("pooled_auroc_ci95"):
                lo, hi = s["pooled_auroc_ci95"]
                text += rf" {{\scriptsize [{lo:.2f}, {hi:.2f}]}}"
            cells.append(text)
        body.append(" & ".join(cells) + r" \\")

    if caption is None:
        excluded = doc.get("excluded_tasks") or {}
        n_tasks = len({r["task"] for r in doc.get("rows", []) if r.get("family", family) == family and r["task"] not in excluded})
        gt = (doc.get("ground_truth") or {}).get(family, {}).get("intervention")
        role = "the benchmark" if family == doc.get("headline_family") else "a sanity family, not pooled with the benchmark"
        caption = (
            f"Family {escape(str(family))} ({role}; ground truth: {escape(str(gt))}): ablation methods on {n_tasks} "
            f"task{'s' if n_tasks != 1 else ''} with known circuits, best first. "
            r"Pooled AUROC: over all tasks' nodes (in-circuit nodes positive) with its 95\% bootstrap interval. "
            r"Gap: lowest in-circuit minus highest out-of-circuit effect; FPR@recall\,1: share of out-of-circuit "
            r"nodes flagged when every in-circuit node is; spurious effect: mean effect of out-of-circuit nodes "
            r"(all three averaged over tasks). Faithfulness: share of predictions unchanged when every "
            r"out-of-circuit node is ablated together; completeness: share changed when every in-circuit node is; "
            r"normalised faithfulness: (metric(circuit only) $-$ metric(all ablated)) / (metric(clean) $-$ "
            r"metric(all ablated)), metric = accuracy against the clean prediction or $-$MSE (means over tasks). "
            r"Time: total fit and effect seconds. "
            r"$\uparrow$/$\downarrow$: higher/lower is better; best in bold."
        )
        if any_failed:
            caption += r" $^{\dagger}$: failed on at least one task (summarised over the rest)."
        tables = doc.get("summary_by_family") or {}
        failed = [t for t, f in (doc.get("failed_tasks") or {}).items()
                  if f.get("family") == family or (family == doc.get("headline_family") and f.get("family") not in tables)]
        if failed:
            caption += (" Not set up (load, data or ground-truth check failed), in no number: "
                        + ", ".join(r"\texttt{" + escape(t) + "}" for t in failed) + ".")
    lines = [
        r"% requires \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\caption{" + caption + "}",
        r"\label{" + label + "}",
        r"\begin{tabular}{l" + "r" * len(COLUMNS) + "}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
        "",
    ]
    return "\n".join(lines)


def standalone(doc: dict) -> str:
    """A minimal compilable document around :func:`to_latex` (for checks and previews)."""
    return "\n".join(
        [
            r"\documentclass{article}",
            r"\usepackage[margin=1.5cm,landscape]{geometry}",
            r"\usepackage{booktabs}",
            r"\begin{document}",
            to_latex(doc),
            r"\end{document}",
            "",
        ]
    )
