"""Leaderboard document (``abench.document.Leaderboard``) -> a booktabs LaTeX results table (``leaderboard.tex``).

One table per family, one row per method of its summary (already sorted best first), one column per metric of
``abench/report/metrics.py`` marked ``tex``. Every column header carries
an arrow for its better direction and the best value of each column is set in bold (ties, compared
at the printed precision, are all bold). The table needs ``\\usepackage{booktabs}`` in the preamble
and nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from abench.report.metrics import TEX, best_values as _best_values, ci_text, value

if TYPE_CHECKING:
    from abench.document import Leaderboard, MethodSummary

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


def header_label(label: str) -> str:
    """A ``METRICS`` label as a LaTeX column header: escaped, first letter capitalised."""
    return escape(label[:1].upper() + label[1:])


def _direction(m) -> str:
    return "up" if m.higher_is_better else "down"


# (summary key, header, better direction, digits): the LaTeX columns of ``METRICS``
COLUMNS = [(m.key, header_label(m.label), _direction(m), m.digits) for m in TEX]


def column_value(s: MethodSummary, key: str) -> float | None:
    """A summary's value for a column (``metrics.value``: none without a successful task)."""
    return value(s, key)


def best_values(summary: Sequence[MethodSummary]) -> dict[str, float | None]:
    """Per column key, the best value at the printed precision."""
    return _best_values(summary, TEX)


def _cell(v: float | None, digits: int, best: float | None) -> str:
    if v is None:
        return "--"
    text = f"{v:.{digits}f}"
    return rf"\textbf{{{text}}}" if best is not None and round(v, digits) == best else text


def to_latex(doc: Leaderboard, caption: str | None = None, label: str = "tab:ablation-leaderboard") -> str:
    """One booktabs ``table`` per task family, the headline (benchmark) family first; families are
    never pooled together. ``caption`` and ``label`` are those of the headline table."""
    by_family = doc.summary_by_family or {doc.headline_family: doc.summary}
    head = doc.headline_family or next(iter(by_family))
    tables = [family_table(doc, head, by_family.get(head, doc.summary), caption, label)]
    for fam, summ in by_family.items():
        if fam != head:
            tables.append(family_table(doc, fam, summ, None, f"{label}-{fam}"))
    return "\n".join(tables)


def family_table(doc: Leaderboard, family: str | None, summary: Sequence[MethodSummary], caption: str | None, label: str) -> str:
    """A ``table`` with a booktabs ``tabular`` for one family: one row per method, best value per column in bold."""
    best = best_values(summary)
    header = ["Method"] + [f"{name} {ARROW[d]}" for _, name, d, _ in COLUMNS]
    body = []
    any_failed = False
    for s in summary:
        name = r"\texttt{" + escape(s.method) + "}"
        if s.n_failed:
            any_failed = True
            name += r"$^{\dagger}$"
        cells = [name]
        for m in TEX:
            v = column_value(s, m.key)
            text = _cell(v, m.digits, best[m.key])
            ci = ci_text(s.get(m.ci_key), m.digits) if m.ci and v is not None else None
            if ci:
                text += rf" {{\scriptsize {ci}}}"
            cells.append(text)
        body.append(" & ".join(cells) + r" \\")

    if caption is None:
        excluded = doc.excluded_tasks
        n_tasks = len({r.task for r in doc.rows if r.family == family and r.task not in excluded})
        gt = doc.ground_truth.get(family, {}).get("intervention")
        role = "the benchmark" if family == doc.headline_family else "a sanity family, not pooled with the benchmark"
        caption = (
            f"Family {escape(str(family))} ({role}; ground truth: {escape(str(gt))}): ablation methods on {n_tasks} "
            f"task{'s' if n_tasks != 1 else ''} with known circuits, best first. "
            + " ".join(f"{header_label(m.label)}: {escape(m.description)}." for m in TEX)
            + " Per-task metrics are means over tasks; pooled AUROC has its 95\\% bootstrap interval. "
            r"$\uparrow$/$\downarrow$: higher/lower is better; best in bold."
        )
        if any_failed:
            caption += r" $^{\dagger}$: failed on at least one task (summarised over the rest)."
        tables = doc.summary_by_family
        failed = [t for t, f in (doc.extra.get("failed_tasks") or {}).items()
                  if f.get("family") == family or (family == doc.headline_family and f.get("family") not in tables)]
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


def standalone(doc: Leaderboard) -> str:
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
