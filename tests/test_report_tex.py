"""The LaTeX results table: booktabs structure, one row per method, arrows, best value in bold."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from abench.document import Leaderboard
from abench.report.tex import COLUMNS, escape, standalone, to_latex

DOC = json.loads((Path(__file__).parent / "data" / "report_doc.json").read_text())
LB = Leaderboard.from_json(DOC)


def board(summaries: list[dict], **doc) -> Leaderboard:
    """A document of one family ``f`` (the headline) with these method summaries and no rows."""
    return Leaderboard.from_json({"rows": [], "headline_family": "f", "summary_by_family": {"f": summaries}, **doc})


def body_rows(tex: str) -> list[list[str]]:
    """The cells of every row between \\midrule and \\bottomrule."""
    lines = tex.splitlines()
    mid, bottom = lines.index(r"\midrule"), lines.index(r"\bottomrule")
    rows = []
    for line in lines[mid + 1 : bottom]:
        assert line.endswith(r" \\"), line
        rows.append(line[: -len(r" \\")].split(" & "))
    return rows


def number(cell: str) -> float | None:
    m = re.search(r"-?\d+\.\d+", cell)
    return float(m.group()) if m else None


def summary(method: str, **values) -> dict:
    s = {
        "method": method,
        "n_tasks": 2,
        "n_failed": 0,
        "pooled_auroc": 0.5,
        "pooled_auroc_ci95": [0.4, 0.6],
        "mean_gap": 0.0,
        "mean_fpr_at_full_recall": 0.5,
        "mean_effect_out": 0.1,
        "seconds": 1.0,
    }
    s.update(values)
    return s


def test_booktabs_structure_and_one_row_per_method():
    tex = to_latex(LB)
    order = [tex.index(k) for k in (r"\begin{table}", r"\begin{tabular}", r"\toprule", r"\midrule", r"\bottomrule", r"\end{tabular}", r"\end{table}")]
    assert order == sorted(order)
    for k in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert tex.count(k) == 1
    rows = body_rows(tex)
    assert len(rows) == len(DOC["summary"])
    assert all(len(r) == 1 + len(COLUMNS) for r in rows)
    # in leaderboard order, method names escaped
    for row, s in zip(rows, DOC["summary"]):
        assert escape(s["method"]) in row[0]
    assert r"\texttt{scaled\_resample[s=0.5]}" in tex
    assert "scaled_resample" not in tex.replace(r"scaled\_resample", "")


def test_header_arrows():
    header = to_latex(LB).splitlines()
    header = header[header.index(r"\toprule") + 1].split(" & ")
    arrows = dict(zip([c[0] for c in COLUMNS], header[1:]))
    assert r"\uparrow" in arrows["pooled_auroc"] and r"\uparrow" in arrows["mean_gap"]
    for key in ("mean_fpr_at_full_recall", "mean_effect_out", "seconds"):
        assert r"\downarrow" in arrows[key], key
    assert "AUROC" in arrows["pooled_auroc"] and "Spurious" in arrows["mean_effect_out"] and "Time" in arrows["seconds"]
    for key in ("mean_faithfulness", "mean_completeness", "mean_normalised_faithfulness"):
        assert r"\uparrow" in arrows[key], key


def test_best_value_bold_in_every_column_of_the_fixture():
    rows = body_rows(to_latex(LB))
    for j, (key, _, direction, digits) in enumerate(COLUMNS, start=1):
        vals = [None if not s["n_tasks"] or s[key] is None else round(s[key], digits) for s in DOC["summary"]]
        present = [v for v in vals if v is not None]
        best = max(present) if direction == "up" else min(present)
        for row, v in zip(rows, vals):
            bold = r"\textbf{" in row[j]
            assert bold == (v == best), (key, row[j], v, best)


def test_best_value_bold_synthetic():
    doc = board(
        [
            summary("a", pooled_auroc=0.9, mean_gap=0.2, mean_fpr_at_full_recall=0.3, mean_effect_out=0.05, seconds=3.0,
                    mean_faithfulness=0.99, mean_completeness=0.2, mean_normalised_faithfulness=0.9),
            summary("b", pooled_auroc=0.7, mean_gap=0.4, mean_fpr_at_full_recall=0.1, mean_effect_out=0.20, seconds=1.0,
                    mean_faithfulness=0.5, mean_completeness=0.8, mean_normalised_faithfulness=None),
            summary("c", pooled_auroc=0.9, mean_gap=None, mean_fpr_at_full_recall=None, mean_effect_out=0.01, seconds=2.0,
                    mean_faithfulness=0.99, mean_completeness=0.1, mean_normalised_faithfulness=0.95),
            # no successful task: no values, in particular not the "best" time of 0 s
            summary("dead", n_tasks=0, n_failed=2, pooled_auroc=None, pooled_auroc_ci95=None, mean_gap=None,
                    mean_fpr_at_full_recall=None, mean_effect_out=None, seconds=0.0),
        ],
    )
    rows = {r[0]: r[1:] for r in body_rows(to_latex(doc))}
    bold = {name: [r"\textbf{" in c for c in cells] for name, cells in rows.items()}
    # columns: AUROC up, gap up, FPR down, spurious down, faithfulness up, completeness up, normalised faithfulness up, time down
    assert bold[r"\texttt{a}"] == [True, False, False, False, True, False, False, False]
    assert bold[r"\texttt{b}"] == [False, True, True, False, False, True, False, True]
    assert bold[r"\texttt{c}"] == [True, False, False, True, True, False, True, False]  # AUROC and faithfulness ties: both bold
    assert bold[r"\texttt{dead}$^{\dagger}$"] == [False] * len(COLUMNS)
    assert all(c == "--" for c in rows[r"\texttt{dead}$^{\dagger}$"])
    assert rows[r"\texttt{c}"][1] == "--"
    assert r"{\scriptsize [0.400, 0.600]}" in rows[r"\texttt{a}"][0]
    assert "failed on at least one task" in to_latex(doc)


def test_escape():
    assert escape("scaled_resample[s=0.5]") == r"scaled\_resample[s=0.5]"
    assert escape("a&b%c$d#e{f}g~h^i\\j") == r"a\&b\%c\$d\#e\{f\}g\textasciitilde{}h\textasciicircum{}i\textbackslash{}j"
    assert escape("[odd]") == "{}[odd]"  # not read as the optional argument of \\
    doc = board([summary("x_&%#[k=1]"), summary("[y]")])
    names = [r[0] for r in body_rows(to_latex(doc))]
    assert names == [r"\texttt{x\_\&\%\#[k=1]}", r"\texttt{{}[y]}"]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (optional check)")
def test_compiles_with_pdflatex(tmp_path):
    head = DOC["headline_family"]
    doc = Leaderboard.from_json(dict(DOC, summary_by_family={
        **DOC["summary_by_family"], head: DOC["summary_by_family"][head] + [summary("odd_&%#$~^{}[x]\\name"), summary("[lead]")]}))
    (tmp_path / "t.tex").write_text(standalone(doc))
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "t.pdf").stat().st_size > 0


def test_one_table_per_family_headline_first_never_pooled():
    doc = Leaderboard.from_json({"headline_family": "siit", "summary": [summary("a")], "rows": [],
                                 "summary_by_family": {"tracr": [summary("b")], "siit": [summary("a")]},
                                 "ground_truth": {"siit": {"intervention": "resample"}, "tracr": {"intervention": "weights"}}})
    tex = to_latex(doc)
    assert tex.count(r"\begin{table}") == 2
    first, second = tex.split(r"\end{table}")[:2]
    assert "Family siit (the benchmark" in first and r"\texttt{a}" in first and r"\texttt{b}" not in first
    assert "Family tracr (a sanity family, not pooled" in second and r"\texttt{b}" in second
