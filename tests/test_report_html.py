"""The HTML report: self-contained, one plotly.js copy, every figure drawn in a real browser.

The document is ``tests/data/report_doc.json``, a small real run (tracr ``frac_prevs`` and
``reverse``, zero/mean/resample, three scaled-resample rows and one failing method; regenerate it
with ``python tests/data/make_report_doc.py``). The browser tests need chromium: without it they
skip locally and FAIL when ``$CI`` is set (CI must never skip them silently).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

from abench import leaderboard
from abench.document import Leaderboard, MethodSummary
from abench.report.browser_check import BrowserCheckError, browser_check, find_chromium
from abench.report.figures import sweep_scale
from abench.report.html import to_html

ROOT = Path(__file__).resolve().parents[1]
DOC = json.loads((ROOT / "tests" / "data" / "report_doc.json").read_text())
LB = Leaderboard.from_json(DOC)  # what the reports render


def figure_ids(page: str) -> list[str]:
    return re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', page)


def only(keep_row, keep_method) -> Leaderboard:
    """The fixture less some rows and methods (rows and every family's summary filtered, nothing recomputed)."""
    return Leaderboard.from_json(dict(DOC, rows=[r for r in DOC["rows"] if keep_row(r)],
                                      summary_by_family={f: [s for s in summ if keep_method(s)]
                                                         for f, summ in DOC["summary_by_family"].items()}))


def doc_without_sweep() -> Leaderboard:
    """The fixture less its scaled-resample methods."""
    return only(lambda r: sweep_scale(r["method"]) is None, lambda s: sweep_scale(s["method"]) is None)


@pytest.fixture(scope="module")
def chromium():
    path = find_chromium()
    if path is None:
        msg = "chromium not installed (apt-get install -y chromium, or set $CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; the browser check must not be skipped on CI")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "leaderboard.html"
    path.write_text(to_html(LB), encoding="utf-8")
    return path


def test_fixture_is_a_real_run_with_sweep_and_a_failure():
    methods = {r["method"] for r in DOC["rows"]}
    assert {"zero", "mean", "resample"} <= methods
    assert sum(sweep_scale(m) is not None for m in methods) >= 2
    assert any(r["status"] == "failed" for r in DOC["rows"])
    assert {r["task"] for r in DOC["rows"]} == {"frac_prevs", "reverse"}


def test_self_contained_one_plotlyjs_copy():
    html = to_html(LB)
    assert html.count(get_plotlyjs()[:200]) == 1
    assert html.count("plotly.js v") == 1
    assert not re.search(r"<script[^>]*\ssrc\s*=", html, re.I)  # every script inline
    assert not re.search(r"""<link[^>]+href\s*=\s*["']?https?:""", html, re.I)
    assert "mathjax" not in html.lower()[:5000]
    ids = figure_ids(html)
    assert len(ids) == len(set(ids))
    methods_ok = {r["method"] for r in DOC["rows"] if r["status"] == "ok"}
    assert ids[:4] == ["fig-roc", "fig-out-effects", "fig-sweep", "fig-faithfulness-curves"]
    assert len([i for i in ids if i.startswith("fig-effects-")]) == len(methods_ok)
    # the table: one row per method, the failing method listed with its error
    assert html.count('<tr><td>') + html.count('<tr class="failed"><td>') == len(DOC["summary"])
    assert "always fails (test fixture)" in html
    assert "scaled_resample[s=0.5]" in html


def test_no_sweep_gives_a_note_not_an_empty_figure():
    html = to_html(doc_without_sweep())
    assert "fig-sweep" not in figure_ids(html)
    assert "No scaled-resample sweep in this run" in html


def test_all_rows_failed_gives_notes_and_no_figures():
    html = to_html(only(lambda r: r["status"] != "ok", lambda s: not s["n_tasks"]))
    assert figure_ids(html) == []
    assert "No successful task, nothing to show: broken_fixture" in html


def test_write_produces_all_four_reports(tmp_path):
    paths = leaderboard.write(LB, tmp_path)
    assert [p.name for p in paths] == ["leaderboard.json", "leaderboard.md", "leaderboard.tex", "leaderboard.html"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert json.loads(paths[0].read_text())["summary"] == DOC["summary"]
    assert r"\toprule" in paths[2].read_text()
    assert 'id="abench-check"' in paths[3].read_text(encoding="utf-8")


def test_page_renders_in_chromium(chromium, page, tmp_path):
    png = tmp_path / "leaderboard.png"
    verdict = browser_check(page, png)
    expected = figure_ids(page.read_text(encoding="utf-8"))
    assert verdict["status"] == "ok" and verdict["title"] == f"OK n_figures={len(expected)}"
    assert verdict["errors"] == [] and verdict["problems"] == []
    assert verdict["n_figures"] == len(expected) >= 5
    assert sorted(verdict["marks"]) == sorted(expected)
    assert all(n > 0 for n in verdict["marks"].values()), verdict["marks"]
    shot = verdict["screenshot"]
    assert png.is_file() and png.stat().st_size > 10_000
    assert (shot["width"], shot["height"]) == (1400, 4000)
    assert shot["distinct_colors"] >= 16 and shot["non_background_fraction"] > 0.01, shot


def test_page_without_sweep_renders_in_chromium(chromium, tmp_path):
    path = tmp_path / "nosweep.html"
    path.write_text(to_html(doc_without_sweep()), encoding="utf-8")
    verdict = browser_check(path)
    assert verdict["status"] == "ok", verdict
    assert verdict["n_figures"] == len(figure_ids(path.read_text(encoding="utf-8")))


def test_check_catches_js_errors_and_empty_figures(chromium, page, tmp_path):
    """The check is not vacuous: a thrown error and a figure without data both fail it (via the CLI)."""
    broken = page.read_text(encoding="utf-8").replace(
        '<pre id="abench-check">',
        '<div id="fig-empty" class="plotly-graph-div" style="height:200px"></div>'
        "<script>Plotly.newPlot('fig-empty', [], {});</script>"
        "<script>throw new Error('boom from the test');</script>"
        '<pre id="abench-check">',
        1,
    )
    bad = tmp_path / "broken.html"
    bad.write_text(broken, encoding="utf-8")
    with pytest.raises(BrowserCheckError) as err:
        browser_check(bad)
    msg = str(err.value)
    assert "boom from the test" in msg
    assert "fig-empty: no trace with data" in msg
    assert "figures, found" in msg
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_html.py"), str(bad), str(tmp_path / "bad.png")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1 and "FAIL" in proc.stderr and "boom from the test" in proc.stderr


def test_every_method_has_its_own_colour_and_dash_pair_and_only_hidden_sweeps_get_the_note():
    from abench.report.figures import PALETTE, method_colors, method_dashes

    many = [f"m{i}" for i in range(2 * len(PALETTE) + 3)]
    colors, dashes = method_colors(many), method_dashes(many)
    assert len({(colors[m], dashes[m]) for m in many}) == len(many)
    assert len({colors[m] for m in many[: len(PALETTE)]}) == len(PALETTE)  # no colour repeats before the palette is used up
    default = ("zero", "mean", "resample", "scaled_resample[s=0.5]")
    default_only = only(lambda r: r["method"] in default, lambda s: s["method"] in default)
    assert "sweep methods are hidden" not in to_html(default_only)  # s=0.5 is a default method, drawn like any other


def test_best_is_bold_only_among_comparable_rows_and_intervals_have_the_estimates_precision():
    from abench.report.html import summary_table

    summary = [MethodSummary(method="mean", n_tasks=1, pooled_auroc=0.9994, pooled_auroc_ci95=(0.9984, 1.0), means={"mean_gap": 0.6}),
               MethodSummary(method="atp_ig[zero,steps=5]", n_tasks=1, pooled_auroc=0.9, pooled_auroc_ci95=(0.8, 1.0),
                             means={"mean_gap": 28.07})]
    table = summary_table(summary, reference="mean")
    atp_row = table.split("atp_ig[zero,steps=5]")[1].split("</tr>")[0]
    assert "<b>" not in atp_row  # its gap of 28.07 is in its metric's units, not a share of cells
    assert "<td><b>0.600</b></td>" in table and "<td><b>0.999</b></td><td>[0.998, 1.000]</td>" in table
    assert ">reference</span>" in table.split("atp_ig")[0]


def test_the_page_gives_each_familys_answer_and_the_attribution_axes_are_all_log():
    page = to_html(LB)
    for fam, rec in DOC.get("recommendation", {}).items():
        assert f"<b>Which method to use</b> on <code>{fam}</code>: <code>{rec['method']}</code>" in page
    from abench.report.estimates import attribution_scatter

    for fam in DOC.get("attribution") or {}:
        fig = attribution_scatter(LB, fam)
        axes = [a for a in fig.layout if a.startswith(("xaxis", "yaxis"))]
        assert axes and all(fig.layout[a].type == "log" for a in axes), axes


def test_ranking_transfer_section_and_figure_render_in_chromium(chromium, tmp_path):
    """A leaderboard with a realism family gets its transfer table and the methods x axes figure, drawn."""
    from dataclasses import replace

    doc = LB
    first, *rest = sorted({r.task for r in doc.rows})  # the fixture's two tasks: one as the base family, one as an axis
    rows = [replace(r, family="siit" if r.task == first else "siit_norm") for r in doc.rows]
    built = leaderboard.build(rows, dict(doc.environment), checks=dict(doc.ground_truth_checks))
    assert "siit_norm" in built.transfer
    page = to_html(built)
    assert "Ranking transfer" in page and "fig-transfer" in figure_ids(page)
    path = tmp_path / "transfer.html"
    path.write_text(page, encoding="utf-8")
    verdict = browser_check(path)
    assert verdict["status"] == "ok" and verdict["marks"]["fig-transfer"] > 0, verdict
