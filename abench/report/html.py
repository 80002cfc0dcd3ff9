"""Leaderboard document (``abench.document.Leaderboard``) -> one self-contained HTML page (``leaderboard.html``), and a browser check.

The page holds a single inline copy of plotly.js (no network needed) and:

- the leaderboard table (best value per column in bold) and the per-row table;
- ROC curves per method, on the pooled node effects (in-circuit nodes positive);
- a histogram and an empirical CDF of the out-of-circuit (spurious) effects per method;
- the scaled-resample sweep, causal effect against the scale ``s``, one line per (task, node),
  coloured by in/out of circuit (a note instead when the run has no ``scaled_resample[s=...]`` rows);
- the faithfulness curves: per task of the headline family, the share of predictions unchanged
  against the number k of out-of-circuit nodes ablated together, one line per method;
- per method, the in- vs out-of-circuit effects of every task (box plot with every node as a point);
- per family with attribution-patching rows, their table beside the exact methods and the scatter
  of estimated against exact effect (``abench/report/estimates.py``).

The page checks itself after loading: every figure must be drawn with at least one mark and no
JavaScript error may have happened. The verdict goes into ``document.title`` (``OK n_figures=7`` or
``ERROR ...``) and, as JSON, into ``<pre id="abench-check">``. ``abench/report/browser_check.py`` loads a page
in headless chromium, reads that verdict, takes a screenshot and checks that it is not blank.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Sequence

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from abench.report.estimates import ATTRIBUTION_NOTE, attribution_frame, attribution_scatter
from abench.report.figures import (faithfulness_curve_figure, method_colors, method_effect_figure, methods_of, ok_rows,
                                   out_effect_figure, roc_figure, sweep_figure, hidden_sweep)
from abench.report.metrics import SHOWN, best_values, ci_text, is_best, value
from ablations.estimators import is_estimator
from abench.report.transfer import TRANSFER_NOTE, transfer_figure, transfer_frame, transfer_line
from abench.report.tables import CIRCUIT_NOTE, JOINT_NOTE, check_line, checks_frame, joint_frame, rows_frame

if TYPE_CHECKING:
    from abench.document import Leaderboard, MethodSummary

PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def summary_table(summary: Sequence[MethodSummary], reference: str | None = None) -> str:
    """The leaderboard as an HTML table: every shown metric (``METRICS``) with its better direction,
    best value per column in bold among the rows it compares with, a 95% interval after each metric
    that has one. The table scrolls in its own box with the method column fixed."""
    # estimator rows (atp[...]) give effects in their metric's units: their gap and effect columns are not
    # comparable with the exact methods' shares of cells, so "best" is decided among the exact methods only
    exact = [s for s in summary if not is_estimator(s.method)]
    best = best_values(exact or summary, SHOWN)
    arrow = {True: " ↑", False: " ↓"}
    head = "".join(f"<th>{html.escape(m.label)}{arrow[m.higher_is_better]}</th>" + ("<th>95% CI</th>" if m.ci else "")
                   for m in SHOWN)
    out = [
        '<div class="scroll"><table class="lb"><thead><tr><th>#</th><th class="l">method</th>',
        head,
        "<th>tasks</th><th>failed</th></tr></thead><tbody>",
    ]
    for i, s in enumerate(summary, 1):
        cells = []
        comparable = not is_estimator(s.method) or not exact
        for m in SHOWN:
            v = value(s, m.key)  # no successful task: no value, not 0 s
            text = _fmt(v, m.digits)
            cells.append(f"<td><b>{text}</b></td>" if comparable and is_best(v, m, best) else f"<td>{text}</td>")
            if m.ci:
                cells.append(f"<td>{ci_text(s.get(m.ci_key) if s.n_tasks else None, m.digits) or '–'}</td>")
        failed = s.n_failed
        cls = ' class="failed"' if failed else ""
        ref = ' <span class="ref" title="defines this family\'s ground truth: 1 by construction">reference</span>' \
            if s.method == reference else ""
        out.append(
            f'<tr{cls}><td>{i}</td><td class="l"><code>{html.escape(s.method)}</code>{ref}</td>{"".join(cells)}'
            f"<td>{s.n_tasks}</td><td>{failed}</td></tr>"
        )
    out.append("</tbody></table></div>")
    return "".join(out)


def _fig_div(fig: go.Figure, div_id: str) -> str:
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px 32px;color:#222;background:#fff;max-width:1320px}
.scroll{max-width:100%;max-height:72vh;overflow:auto;border:1px solid #eee}
table.lb thead th{position:sticky;top:0;z-index:2}
table.lb .l{position:sticky;left:0;background:#fff;z-index:1;box-shadow:1px 0 0 #ddd}
table.lb th.l{background:#fafafa;z-index:3} .ref{font-size:11px;color:#fff;background:#777;border-radius:3px;padding:0 4px} p.answer{background:#f3f7ff;border-left:4px solid #2E91E5;padding:6px 10px;font-size:14px}
details table.rows{display:block;max-width:100%;overflow-x:auto}
h1{margin:0 0 4px 0;font-size:26px} h2{margin:28px 0 8px 0;font-size:20px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:13px;margin:2px 0} .note{color:#555;font-style:italic;font-size:14px}
table.lb{border-collapse:collapse;font-size:13px;margin-top:8px}
table.lb th,table.lb td{padding:4px 9px;text-align:right;border-bottom:1px solid #eee;white-space:nowrap}
table.lb th{border-bottom:2px solid #444;background:#fafafa} table.lb .l{text-align:left}
table.lb tr.failed td{color:#a33} table.lb tbody tr:hover{background:#f3f7ff}
table.rows{border-collapse:collapse;font-size:12px} table.rows th,table.rows td{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:8px 18px}
.fig{min-width:0} #abench-check-banner{font-size:12px;color:#777;float:right}
pre#abench-check{display:none}
"""

# Installed before plotly.js so that every error on the page is recorded.
_ERROR_HOOK = """
window.__abenchErrors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  if (t && t !== window && (t.src || t.href)) { window.__abenchErrors.push('failed to load ' + (t.src || t.href)); return; }
  window.__abenchErrors.push('error: ' + (e.message || e.type) + (e.filename ? ' at ' + e.filename + ':' + e.lineno : ''));
}, true);
window.addEventListener('unhandledrejection', function (e) {
  window.__abenchErrors.push('unhandled rejection: ' + (e.reason && (e.reason.stack || e.reason.message) || e.reason));
});
(function () {
  var orig = console.error;
  console.error = function () {
    window.__abenchErrors.push('console.error: ' + Array.prototype.map.call(arguments, String).join(' '));
    return orig.apply(console, arguments);
  };
})();
"""

# After load: every figure drawn, with data and at least one mark; verdict into the title.
_SELF_CHECK = """
(function () {
  var EXPECTED = __EXPECTED__;
  var MARKS = '.trace .point, .trace path.js-line, .trace path.box, .trace path.js-fill, .hm image';
  function inspect() {
    var divs = Array.prototype.slice.call(document.querySelectorAll('.plotly-graph-div'));
    var problems = [], marks = {};
    if (typeof Plotly === 'undefined') problems.push('plotly.js did not load');
    if (divs.length !== EXPECTED) problems.push('expected ' + EXPECTED + ' figures, found ' + divs.length);
    divs.forEach(function (gd) {
      var id = gd.id || '?';
      if (!gd.querySelector('.plot-container .main-svg')) { problems.push(id + ': not rendered'); return; }
      var data = (gd.data || []).filter(function (t) {
        return ['x', 'y'].some(function (k) { return t[k] && t[k].length > 0; });
      });
      if (!data.length) { problems.push(id + ': no trace with data'); return; }
      var n = 0;
      gd.querySelectorAll(MARKS).forEach(function (el) {
        if (el.tagName.toLowerCase() !== 'path') { n += 1; return; }
        var d = el.getAttribute('d') || '';
        if (d && d !== 'M0,0Z') n += 1;
      });
      marks[id] = n;
      if (!n) problems.push(id + ': nothing drawn');
    });
    return {problems: problems, marks: marks, n: divs.length};
  }
  function verdict(res) {
    var errors = window.__abenchErrors.slice();
    var ok = !errors.length && !res.problems.length;
    var out = {status: ok ? 'ok' : 'error', n_figures: res.n, expected_figures: EXPECTED,
               errors: errors, problems: res.problems, marks: res.marks};
    document.getElementById('abench-check').textContent = JSON.stringify(out);
    var first = errors.concat(res.problems)[0] || '';
    document.title = ok ? 'OK n_figures=' + res.n
                        : 'ERROR n_errors=' + errors.length + ' n_problems=' + res.problems.length + ': ' + first;
    var banner = document.getElementById('abench-check-banner');
    if (banner) banner.textContent = 'self-check: ' + document.title;
  }
  var tries = 0;
  function poll() {
    var res = inspect();
    tries += 1;
    if ((res.problems.length && tries < 30) || tries < 2) { setTimeout(poll, 200); return; }
    verdict(res);
  }
  window.addEventListener('load', function () { setTimeout(poll, 100); });
})();
"""


class _Figures:
    """The page's figure divs in order: ``add`` wraps one and records its id for the self-check's count."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def add(self, fig: go.Figure, div_id: str) -> str:
        self.ids.append(div_id)
        return f'<div class="fig">{_fig_div(fig, div_id)}</div>'


def _header(doc: Leaderboard, title: str, methods: list[str]) -> list[str]:
    """Title, environment, what an effect is, the circuit metrics and every family's ground truth."""
    env = doc.environment
    parts: list[str] = []
    parts.append(
        f'<div id="abench-check-banner">self-check: pending</div><h1>{html.escape(title)}</h1>'
        f'<p class="meta">torch {html.escape(str(env.get("torch", "?")))} on {html.escape(str(env.get("device", "?")))} '
        f'({html.escape(str(env.get("device_name") or "?"))}), created {html.escape(str(env.get("created_at", "?")))}; '
        f'{len({r.task for r in doc.rows})} tasks, {len(methods)} methods, {len(doc.rows)} rows '
        f'({sum(not r.ok for r in doc.rows)} failed).</p>'
        f'<p class="meta">Effect: fraction of non-BOS cells whose prediction changes when one node is ablated '
        f'({html.escape(str(doc.effect_convention))}).</p>'
        f'<p class="meta">{html.escape(CIRCUIT_NOTE)}</p>'
    )
    gts = "".join(
        f"<li><b>{html.escape(fam)}</b>: {html.escape(str(gt.get('intervention')))} — {html.escape(str(gt.get('meaning')))}</li>"
        for fam, gt in doc.ground_truth.items()
    )
    if gts:
        parts.append(f'<ul class="meta">{gts}</ul>')

    return parts


def _family_tables(doc: Leaderboard) -> list[str]:
    """Per family: its heading, the answer to "which method to use", its leaderboard table."""
    parts: list[str] = []
    head = doc.headline_family
    for fam, summ in doc.summary_by_family.items():
        n_tasks = len({r.task for r in ok_rows(doc) if r.family == fam and r.task not in doc.excluded_tasks})
        if fam == head:
            parts.append(f"<h2>Leaderboard: family <code>{html.escape(fam)}</code>, the benchmark (pooled over its {n_tasks} tasks, best first)</h2>")
        else:
            parts.append(f"<h2>Sanity family <code>{html.escape(fam)}</code> ({n_tasks} tasks; its own ground truth, never pooled with the benchmark)</h2>")
        rec = doc.recommendation.get(fam)
        if rec:  # the answer first: a reader of the first screen gets it without scrolling the table
            parts.append(f'<p class="answer"><b>Which method to use</b> on <code>{html.escape(fam)}</code>: '
                         f'<code>{html.escape(rec["method"])}</code>: {html.escape(rec["why"])}.</p>')
        parts.append(summary_table(summ, (rec or {}).get("reference")))
    return parts


def _problems(doc: Leaderboard) -> list[str]:
    """Excluded and failed tasks, the ground-truth checks, failed rows, declared node sets and every row."""
    parts: list[str] = []
    if doc.excluded_tasks:
        items = "".join(f"<li><code>{html.escape(t)}</code>: {html.escape('; '.join(r))}</li>" for t, r in doc.excluded_tasks.items())
        parts.append(f'<p class="note">Left out of every summary (ground-truth check failed):</p><ul class="meta">{items}</ul>')
    if doc.extra.get("failed_tasks"):
        items = "".join(f"<li><code>{html.escape(t)}</code> ({html.escape(str(f.get('stage')))}): {html.escape(str(f.get('reason')))}</li>"
                        for t, f in doc.extra["failed_tasks"].items())
        parts.append(f'<h2 id="failed-tasks">Failed tasks</h2><p class="note">Selected but not set up (load, data or '
                     f'ground-truth check failed): in no row or summary.</p><ul class="meta">{items}</ul>')
    checks = doc.ground_truth_checks
    if checks:
        parts.append("<h2>Ground-truth checks</h2><p class=\"meta\">Per task: the reference method must separate the circuit "
                     "(AUROC 1, gap &gt; 0) and every in-circuit node's effect must match its high-level (tracr) node's effect "
                     "on the same interchanges.</p>")
        for check in checks.values():
            cls = "" if check.passed else ' class="failed"'
            table = checks_frame(check).to_html(index=False, classes="rows", border=0, escape=True)
            parts.append(f"<details{cls}><summary>{html.escape(check_line(check))}</summary>{table}</details>")
    failed = [r for r in doc.rows if not r.ok]
    if failed:
        items = "".join(f"<li><code>{html.escape(r.task)}-{html.escape(r.method)}</code>: {html.escape(str(r.error))}</li>" for r in failed)
        parts.append(f'<p class="note">Failed rows:</p><ul class="meta">{items}</ul>')
    joint = joint_frame(doc.rows)
    if joint is not None:
        parts.append(f'<h2>Joint ablation of declared node sets</h2><p class="meta">{html.escape(JOINT_NOTE)}</p>'
                     + joint.to_html(index=False, classes="rows", border=0, escape=True))
    rows_html = rows_frame(doc.rows).to_html(index=False, classes="rows", border=0, escape=True)
    parts.append(f"<details><summary>All rows (task × method)</summary>{rows_html}</details>")

    return parts


def _figure_sections(doc: Leaderboard, methods: list[str], colors: dict[str, str], figures: _Figures) -> list[str]:
    """ROC, out-of-circuit effects, the sweep, the faithfulness curves and each method's in/out effects."""
    parts: list[str] = []
    add = figures.add
    sweep_hidden = any(not hidden_sweep(m) for m in methods) and any(hidden_sweep(m) for m in methods)
    hidden_note = (
        '<p class="note">The scaled_resample sweep methods are hidden in this figure; click their legend entries to show them.</p>'
        if sweep_hidden
        else ""
    )

    parts.append("<h2>ROC curves</h2>")
    fig, skipped = roc_figure(doc, colors)
    if fig is not None:
        parts.append(hidden_note + add(fig, "fig-roc"))
    if skipped:
        parts.append(f'<p class="note">No ROC (needs in- and out-of-circuit nodes from a successful task): {html.escape(", ".join(skipped))}.</p>')

    parts.append("<h2>Out-of-circuit effects</h2>")
    fig = out_effect_figure(doc, colors)
    parts.append(hidden_note + add(fig, "fig-out-effects") if fig is not None else '<p class="note">No out-of-circuit node in any successful row.</p>')

    parts.append("<h2>Scaled-resample sweep</h2>")
    fig = sweep_figure(doc)
    if fig is not None:
        parts.append(add(fig, "fig-sweep"))
    else:
        parts.append(
            '<p class="note">No scaled-resample sweep in this run (run with <code>--scale-sweep</code> to add '
            "<code>scaled_resample[s=0]</code> … <code>scaled_resample[s=10]</code>).</p>"
        )

    parts.append("<h2>Circuit level: faithfulness curves</h2>")
    fig = faithfulness_curve_figure(doc, colors)
    if fig is not None:
        parts.append(hidden_note + add(fig, "fig-faithfulness-curves"))
    else:
        parts.append('<p class="note">No faithfulness curve in this run (no successful row of the headline family has '
                     "an out-of-circuit node).</p>")

    parts.append("<h2>In- vs out-of-circuit effects per method</h2>")
    grid, empty = [], []
    for i, m in enumerate(methods):
        fig = method_effect_figure(doc, m)
        if fig is None:
            empty.append(m)
        else:
            grid.append(add(fig, f"fig-effects-{i}"))
    if grid:
        parts.append(f'<div class="grid">{"".join(grid)}</div>')
    if empty:
        parts.append(f'<p class="note">No successful task, nothing to show: {html.escape(", ".join(empty))}.</p>')

    return parts


def _attribution_sections(doc: Leaderboard, figures: _Figures) -> list[str]:
    """Per family with attribution rows: their table beside the exact methods and the scatter of estimate against exact."""
    parts: list[str] = []
    for i, (fam, summ) in enumerate(doc.attribution.items()):
        parts.append(f"<h2>Attribution patching: estimate vs exact, family <code>{html.escape(fam)}</code></h2>"
                     f'<p class="meta">{html.escape(ATTRIBUTION_NOTE)}</p>'
                     + attribution_frame(summ).to_html(index=False, classes="rows", border=0, escape=True))
        fig = attribution_scatter(doc, fam)
        if fig is not None:
            parts.append(figures.add(fig, f"fig-attribution-{i}"))

    return parts


def _transfer_sections(doc: Leaderboard, figures: _Figures) -> list[str]:
    """The realism axes against the base family: each axis's sentence and table, then one methods x axes figure."""
    transfer = doc.transfer
    if not transfer:
        return []
    parts = [f'<h2>Ranking transfer: the realism axes against <code>siit</code></h2><p class="meta">{html.escape(TRANSFER_NOTE)}</p>']
    for rec in transfer.values():
        parts.append(f'<p class="answer">{html.escape(transfer_line(rec).replace("**", "").replace("`", ""))}</p>'
                     + transfer_frame(rec).to_html(index=False, classes="rows", border=0, escape=True))
    fig = transfer_figure(transfer)
    if fig is not None:
        parts.append(figures.add(fig, "fig-transfer"))
    return parts


def to_html(doc: Leaderboard, title: str = "Ablation-method leaderboard") -> str:
    """The whole report as one self-contained HTML page (one inline plotly.js copy)."""
    methods = methods_of(doc)
    figures = _Figures()
    parts = (_header(doc, title, methods) + _family_tables(doc) + _transfer_sections(doc, figures) + _problems(doc)
             + _figure_sections(doc, methods, method_colors(methods), figures) + _attribution_sections(doc, figures))
    check = _SELF_CHECK.replace("__EXPECTED__", str(len(figures.ids)))
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)} (self-check pending)</title>",
            f"<style>{_CSS}</style>",
            f"<script>{_ERROR_HOOK}</script>",
            f'<script type="text/javascript">{get_plotlyjs()}</script>',
            "</head><body>",
            *parts,
            '<pre id="abench-check">{"status": "pending"}</pre>',
            f"<script>{check}</script>",
            "</body></html>",
            "",
        ]
    )


