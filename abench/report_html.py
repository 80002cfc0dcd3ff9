"""Leaderboard document -> one self-contained HTML page (``leaderboard.html``), and a browser check.

The page holds a single inline copy of plotly.js (no network needed) and:

- the leaderboard table (best value per column in bold) and the per-row table;
- ROC curves per method, on the pooled node effects (in-circuit nodes positive);
- a histogram and an empirical CDF of the out-of-circuit (spurious) effects per method;
- the scaled-resample sweep, causal effect against the scale ``s``, one line per (task, node),
  coloured by in/out of circuit (a note instead when the run has no ``scaled_resample[s=...]`` rows);
- the faithfulness curves: per task of the headline family, the share of predictions unchanged
  against the number k of out-of-circuit nodes ablated together, one line per method;
- per method, the in- vs out-of-circuit effects of every task (box plot with every node as a point).

The page checks itself after loading: every figure must be drawn with at least one mark and no
JavaScript error may have happened. The verdict goes into ``document.title`` (``OK n_figures=7`` or
``ERROR ...``) and, as JSON, into ``<pre id="abench-check">``. :func:`browser_check` loads a page in
headless chromium, reads that verdict, takes a screenshot and checks that it is not blank.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative, sample_colorscale
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

# abench.leaderboard (which pulls in torch) is imported where it is used, so that the browser check
# (scripts/check_html.py) starts fast.

SWEEP_RE = re.compile(r"^scaled_resample\[s=([^\]]+)\]$")
IN_COLOR = "#1b9e77"
OUT_COLOR = "#d95f02"
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def sweep_scale(method: str) -> float | None:
    """``s`` of a ``scaled_resample[s=...]`` method name, else None."""
    m = SWEEP_RE.match(method)
    if not m:
        return None
    try:
        return float(m.group(1))
    except ValueError:
        return None


def _ok_rows(doc: dict, method: str | None = None, pooled: bool = False) -> list[dict]:
    """Successful rows (of ``method``); ``pooled``: only the tasks the headline summary pools."""
    tasks = set(doc.get("pooled_tasks") or []) if pooled else None
    return [
        r for r in doc["rows"]
        if r.get("status") == "ok" and r.get("nodes") and (method is None or r["method"] == method)
        and (tasks is None or r["task"] in tasks)
    ]


def _methods(doc: dict) -> list[str]:
    """Methods in leaderboard order (then any that only appear in rows)."""
    names = [s["method"] for s in doc["summary"]]
    return list(dict.fromkeys(names + [r["method"] for r in doc["rows"]]))


def method_colors(methods: list[str]) -> dict[str, str]:
    """A fixed colour per method: a qualitative palette for ordinary methods, viridis by ``s`` for the sweep."""
    palette = qualitative.Plotly + qualitative.D3 + qualitative.Dark24
    base = [m for m in methods if sweep_scale(m) is None]
    sweep = sorted((m for m in methods if sweep_scale(m) is not None), key=sweep_scale)
    colors = {m: palette[i % len(palette)] for i, m in enumerate(base)}
    if sweep:
        fracs = [0.5] if len(sweep) == 1 else [0.9 * i / (len(sweep) - 1) for i in range(len(sweep))]
        colors.update(zip(sweep, sample_colorscale("Viridis", fracs)))
    return colors


# --------------------------------------------------------------------------- figures


def roc_figure(doc: dict, colors: dict[str, str]) -> tuple[go.Figure | None, list[str]]:
    """ROC per method on its pooled node effects; methods with one class only are listed as skipped."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = go.Figure()
    skipped = []
    has_base = any(sweep_scale(m) is None for m in _methods(doc))
    for m in _methods(doc):
        ok = _ok_rows(doc, m, pooled=True)
        labels = [bool(n["in_circuit"]) for r in ok for n in r["nodes"]]
        scores = [float(n["effect"]) for r in ok for n in r["nodes"]]
        if len(set(labels)) < 2:
            skipped.append(m)
            continue
        fpr, tpr, _ = roc_curve(labels, scores)
        auc = roc_auc_score(labels, scores)
        sweep = sweep_scale(m) is not None
        fig.add_trace(
            go.Scatter(
                x=fpr.tolist(),
                y=tpr.tolist(),
                mode="lines",
                name=f"{m} ({auc:.3f})",
                line=dict(color=colors[m], width=1.5 if sweep else 2.5, dash="dot" if sweep else "solid", shape="linear"),
                visible="legendonly" if sweep and has_base else True,
                hovertemplate=f"{html.escape(m)}<br>FPR %{{x:.3f}}<br>TPR %{{y:.3f}}<extra></extra>",
            )
        )
    if not fig.data:
        return None, skipped
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(color="#999", dash="dash", width=1), hoverinfo="skip")
    )
    fig.update_layout(
        title=f"ROC of node effect as a circuit detector (family {html.escape(str(doc.get('headline_family')))}, pooled over its tasks; legend: AUROC)",
        xaxis=dict(title="false positive rate (out-of-circuit nodes flagged)", range=[-0.01, 1.01], constrain="domain"),
        yaxis=dict(title="true positive rate (in-circuit nodes found)", range=[-0.01, 1.01], scaleanchor="x"),
        height=560,
        legend=dict(font=dict(size=11)),
        margin=dict(t=60, b=50, l=60, r=20),
    )
    return fig, skipped


def out_effect_figure(doc: dict, colors: dict[str, str]) -> go.Figure | None:
    """Histogram and empirical CDF of the out-of-circuit effects, per method."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("histogram (share of a method's out-of-circuit nodes)", "empirical CDF"), horizontal_spacing=0.08
    )
    has_base = any(sweep_scale(m) is None for m in _methods(doc))
    for m in _methods(doc):
        vals = sorted(float(n["effect"]) for r in _ok_rows(doc, m, pooled=True) for n in r["nodes"] if not n["in_circuit"])
        if not vals:
            continue
        visible = "legendonly" if sweep_scale(m) is not None and has_base else True
        fig.add_trace(
            go.Histogram(
                x=vals,
                name=m,
                legendgroup=m,
                marker_color=colors[m],
                opacity=0.55,
                histnorm="probability",
                xbins=dict(start=0.0, end=1.0 + 1e-9, size=0.025),
                visible=visible,
            ),
            row=1,
            col=1,
        )
        n = len(vals)
        fig.add_trace(
            go.Scatter(
                x=[min(0.0, vals[0])] + vals + [max(1.0, vals[-1])],
                y=[0.0] + [(i + 1) / n for i in range(n)] + [1.0],
                mode="lines",
                name=m,
                legendgroup=m,
                showlegend=False,
                line=dict(color=colors[m], shape="hv", width=2),
                visible=visible,
                hovertemplate=f"{html.escape(m)}<br>effect ≤ %{{x:.3f}}: %{{y:.1%}}<extra></extra>",
            ),
            row=1,
            col=2,
        )
    if not fig.data:
        return None
    fig.update_layout(
        title=f"Spurious effects: out-of-circuit nodes of family {html.escape(str(doc.get('headline_family')))} (lower is better)", barmode="overlay", height=460, margin=dict(t=80, b=50, l=60, r=20)
    )
    fig.update_xaxes(title_text="effect (fraction of predictions changed)", range=[-0.03, 1.03])
    fig.update_yaxes(title_text="share of nodes", row=1, col=1)
    fig.update_yaxes(title_text="share of nodes with effect ≤ x", range=[0, 1.02], row=1, col=2)
    return fig


def sweep_figure(doc: dict) -> go.Figure | None:
    """Effect against scale, one line per (task, node), per task a panel; None without sweep rows."""
    series: dict[tuple[str, str], dict] = {}
    for r in doc["rows"]:
        s = sweep_scale(r["method"])
        if s is None or r.get("status") != "ok" or not r.get("nodes"):
            continue
        for n in r["nodes"]:
            d = series.setdefault((r["task"], n["name"]), {"in": bool(n["in_circuit"]), "pts": {}})
            d["pts"][s] = float(n["effect"])
    scales = sorted({s for d in series.values() for s in d["pts"]})
    if len(scales) < 2:
        return None
    tasks = list(dict.fromkeys(t for t, _ in series))
    ncols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig = make_subplots(
        rows=nrows, cols=ncols, subplot_titles=tasks, shared_yaxes=True, horizontal_spacing=0.04, vertical_spacing=0.18 / max(nrows, 1)
    )
    labels = [f"{s:g}" for s in scales]
    shown = set()
    # out-of-circuit first so the in-circuit lines are drawn on top
    for in_circuit in (False, True):
        for (task, node), d in series.items():
            if d["in"] != in_circuit:
                continue
            i = tasks.index(task)
            xs = sorted(d["pts"])
            key = "in circuit" if in_circuit else "out of circuit"
            fig.add_trace(
                go.Scatter(
                    x=[f"{s:g}" for s in xs],
                    y=[d["pts"][s] for s in xs],
                    mode="lines+markers",
                    name=key,
                    legendgroup=key,
                    showlegend=key not in shown,
                    line=dict(color=IN_COLOR if in_circuit else OUT_COLOR, width=1.5),
                    marker=dict(size=4),
                    opacity=0.85 if in_circuit else 0.6,
                    hovertemplate=f"{html.escape(task)} / {html.escape(node)} ({key})<br>s=%{{x}}<br>effect %{{y:.3f}}<extra></extra>",
                ),
                row=i // ncols + 1,
                col=i % ncols + 1,
            )
            shown.add(key)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=labels, title_text="scale s")
    fig.update_yaxes(range=[-0.02, 1.02])
    fig.update_yaxes(title_text="effect", col=1)
    fig.update_layout(
        title="Scaled-resample sweep: node replaced by s·a(x'); s=0 is zero ablation, s=1 is resample (x: evenly spaced)",
        height=380 * nrows + 60,
        margin=dict(t=90, b=50, l=60, r=20),
    )
    return fig


def faithfulness_curve_figure(doc: dict, colors: dict[str, str]) -> go.Figure | None:
    """Per task of the headline family, the fraction of predictions unchanged against the number k
    of out-of-circuit nodes ablated together (mean over the seeded orders), one line per method;
    None when no row has a curve."""
    series: dict[str, dict[str, tuple[list, list]]] = {}
    for r in _ok_rows(doc, pooled=True):
        curve = r.get("faithfulness_curve") or {}
        if curve.get("k") and curve.get("mean_unchanged"):
            series.setdefault(r["task"], {})[r["method"]] = (curve["k"], curve["mean_unchanged"])
    if not series:
        return None
    tasks = list(series)
    ncols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig = make_subplots(
        rows=nrows, cols=ncols, subplot_titles=tasks, shared_yaxes=True, horizontal_spacing=0.04, vertical_spacing=0.18 / max(nrows, 1)
    )
    has_base = any(sweep_scale(m) is None for m in _methods(doc))
    shown = set()
    for i, task in enumerate(tasks):
        for m in _methods(doc):
            if m not in series[task]:
                continue
            ks, ys = series[task][m]
            sweep = sweep_scale(m) is not None
            fig.add_trace(
                go.Scatter(
                    x=ks,
                    y=ys,
                    mode="lines+markers",
                    name=m,
                    legendgroup=m,
                    showlegend=m not in shown,
                    line=dict(color=colors[m], width=1.5 if sweep else 2, dash="dot" if sweep else "solid"),
                    marker=dict(size=5),
                    visible="legendonly" if sweep and has_base else True,
                    hovertemplate=f"{html.escape(task)} / {html.escape(m)}<br>k=%{{x}} ablated<br>unchanged %{{y:.3f}}<extra></extra>",
                ),
                row=i // ncols + 1,
                col=i % ncols + 1,
            )
            shown.add(m)
    fig.update_xaxes(title_text="out-of-circuit nodes ablated together (k)", rangemode="tozero")
    fig.update_yaxes(range=[-0.02, 1.02])
    fig.update_yaxes(title_text="predictions unchanged", col=1)
    fig.update_layout(
        title=f"Faithfulness curves (family {html.escape(str(doc.get('headline_family')))}): share of predictions unchanged "
        "when k random out-of-circuit nodes are ablated together (mean over seeded orders; higher is more faithful)",
        height=380 * nrows + 80,
        margin=dict(t=100, b=50, l=60, r=20),
    )
    return fig


def method_effect_figure(doc: dict, method: str) -> go.Figure | None:
    """In- vs out-of-circuit effects of one method, per task (boxes with every node as a point)."""
    ok = _ok_rows(doc, method)
    if not ok:
        return None
    fig = go.Figure()
    for in_circuit in (True, False):
        xs, ys, names = [], [], []
        for r in ok:
            for n in r["nodes"]:
                if bool(n["in_circuit"]) == in_circuit:
                    xs.append(r["task"])
                    ys.append(float(n["effect"]))
                    names.append(n["name"])
        if not ys:
            continue
        color = IN_COLOR if in_circuit else OUT_COLOR
        fig.add_trace(
            go.Box(
                x=xs,
                y=ys,
                text=names,
                name="in circuit" if in_circuit else "out of circuit",
                marker=dict(color=color, size=5, opacity=0.8),
                line=dict(color=color, width=1.5),
                boxpoints="all",
                jitter=0.5,
                pointpos=0,
                hovertemplate="%{x} / %{text}<br>effect %{y:.3f}<extra></extra>",
            )
        )
    failed = [r["task"] for r in doc["rows"] if r["method"] == method and r.get("status") != "ok"]
    title = method + (f" (failed: {', '.join(failed)})" if failed else "")
    fig.update_layout(
        title=dict(text=html.escape(title), font=dict(size=14)),
        boxmode="group",
        height=340,
        yaxis=dict(title="effect", range=[-0.03, 1.03]),
        legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
        margin=dict(t=60, b=40, l=55, r=10),
    )
    return fig


# --------------------------------------------------------------------------- page


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def summary_table(summary: list[dict]) -> str:
    """The leaderboard as an HTML table, best value per directional column in bold."""
    from abench.leaderboard import SUMMARY_COLUMNS

    cols = [
        ("pooled_auroc", "pooled AUROC", 3),
        ("mean_auroc", "mean AUROC", 3),
        ("mean_gap", "mean gap", 3),
        ("mean_fpr_at_full_recall", "FPR@recall 1", 3),
        ("mean_effect_in", "effect in", 3),
        ("mean_effect_out", "effect out", 3),
        ("mean_faithfulness", "faithfulness", 3),
        ("mean_completeness", "completeness", 3),
        ("mean_normalised_faithfulness", "norm. faithfulness", 3),
        ("seconds", "seconds", 2),
    ]
    ci_cols = {"pooled_auroc": "pooled_auroc_ci95", "mean_faithfulness": "mean_faithfulness_ci95",
               "mean_completeness": "mean_completeness_ci95"}  # a "95% CI" column after each
    best = {}
    for key, _, digits in cols:
        vals = [round(s[key], digits) for s in summary if s.get(key) is not None and s.get("n_tasks")]
        if vals and key in SUMMARY_COLUMNS:
            best[key] = max(vals) if SUMMARY_COLUMNS[key] == "up" else min(vals)
    arrow = {"up": " ↑", "down": " ↓"}
    head = "".join(
        f"<th>{html.escape(name)}{arrow.get(SUMMARY_COLUMNS.get(key), '')}</th>" + ("<th>95% CI</th>" if key in ci_cols else "")
        for key, name, _ in cols
    )
    out = [
        '<table class="lb"><thead><tr><th>#</th><th class="l">method</th>',
        head,
        "<th>tasks</th><th>failed</th></tr></thead><tbody>",
    ]
    for i, s in enumerate(summary, 1):
        cells = []
        for key, _, digits in cols:
            v = s.get(key) if s.get("n_tasks") else None  # no successful task: no value, not 0 s
            text = _fmt(v, digits)
            if key in best and v is not None and round(v, digits) == best[key]:
                text = f"<b>{text}</b>"
            cells.append(f"<td>{text}</td>")
            if key in ci_cols:
                ci = s.get(ci_cols[key]) if s.get("n_tasks") else None
                cells.append(f"<td>{'–' if not ci else f'[{ci[0]:.2f}, {ci[1]:.2f}]'}</td>")
        failed = s.get("n_failed", 0)
        cls = ' class="failed"' if failed else ""
        out.append(
            f'<tr{cls}><td>{i}</td><td class="l"><code>{html.escape(s["method"])}</code></td>{"".join(cells)}'
            f"<td>{s.get('n_tasks', '')}</td><td>{failed}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _fig_div(fig: go.Figure, div_id: str) -> str:
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px 32px;color:#222;background:#fff}
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
  var MARKS = '.trace .point, .trace path.js-line, .trace path.box, .trace path.js-fill';
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


def to_html(doc: dict, title: str = "Ablation-method leaderboard") -> str:
    """The whole report as one self-contained HTML page (one inline plotly.js copy)."""
    from abench.leaderboard import CIRCUIT_NOTE

    methods = _methods(doc)
    colors = method_colors(methods)
    env = doc.get("environment", {})
    figures: list[str] = []  # div html, in page order

    def add(fig: go.Figure, div_id: str) -> str:
        figures.append(div_id)
        return f'<div class="fig">{_fig_div(fig, div_id)}</div>'

    parts: list[str] = []
    parts.append(
        f'<div id="abench-check-banner">self-check: pending</div><h1>{html.escape(title)}</h1>'
        f'<p class="meta">torch {html.escape(str(env.get("torch", "?")))} on {html.escape(str(env.get("device", "?")))} '
        f'({html.escape(str(env.get("device_name") or "?"))}), created {html.escape(str(env.get("created_at", "?")))}; '
        f'{len({r["task"] for r in doc["rows"]})} tasks, {len(methods)} methods, {len(doc["rows"])} rows '
        f'({sum(r.get("status") != "ok" for r in doc["rows"])} failed).</p>'
        f'<p class="meta">Effect: fraction of non-BOS cells whose prediction changes when one node is ablated '
        f'({html.escape(str(doc.get("effect_convention", "")))}).</p>'
        f'<p class="meta">{html.escape(CIRCUIT_NOTE)}</p>'
    )
    gts = "".join(
        f"<li><b>{html.escape(fam)}</b>: {html.escape(str(gt.get('intervention')))} — {html.escape(str(gt.get('meaning')))}</li>"
        for fam, gt in doc.get("ground_truth", {}).items()
    )
    if gts:
        parts.append(f'<ul class="meta">{gts}</ul>')

    head = doc.get("headline_family")
    for fam, summ in doc.get("summary_by_family", {}).items():
        n_tasks = len({r["task"] for r in _ok_rows(doc) if r["family"] == fam and r["task"] not in doc.get("excluded_tasks", {})})
        if fam == head:
            parts.append(f"<h2>Leaderboard: family <code>{html.escape(fam)}</code>, the benchmark (pooled over its {n_tasks} tasks, best first)</h2>")
        else:
            parts.append(f"<h2>Sanity family <code>{html.escape(fam)}</code> ({n_tasks} tasks; its own ground truth, never pooled with the benchmark)</h2>")
        parts.append(summary_table(summ))
    if doc.get("excluded_tasks"):
        items = "".join(f"<li><code>{html.escape(t)}</code>: {html.escape('; '.join(r))}</li>" for t, r in doc["excluded_tasks"].items())
        parts.append(f'<p class="note">Left out of every summary (ground-truth check failed):</p><ul class="meta">{items}</ul>')
    if doc.get("failed_tasks"):
        items = "".join(f"<li><code>{html.escape(t)}</code> ({html.escape(str(f.get('stage')))}): {html.escape(str(f.get('reason')))}</li>"
                        for t, f in doc["failed_tasks"].items())
        parts.append(f'<h2 id="failed-tasks">Failed tasks</h2><p class="note">Selected but not set up (load, data or '
                     f'ground-truth check failed): in no row or summary.</p><ul class="meta">{items}</ul>')
    checks = doc.get("ground_truth_checks") or {}
    if checks:
        from abench.leaderboard import check_line, checks_frame

        parts.append("<h2>Ground-truth checks</h2><p class=\"meta\">Per task: the reference method must separate the circuit "
                     "(AUROC 1, gap &gt; 0) and every in-circuit node's effect must match its high-level (tracr) node's effect "
                     "on the same interchanges.</p>")
        for check in checks.values():
            cls = "" if check["passed"] else ' class="failed"'
            table = checks_frame(check).to_html(index=False, classes="rows", border=0, escape=True)
            parts.append(f"<details{cls}><summary>{html.escape(check_line(check))}</summary>{table}</details>")
    failed = [r for r in doc["rows"] if r.get("status") != "ok"]
    if failed:
        items = "".join(f"<li><code>{html.escape(r['task'])}-{html.escape(r['method'])}</code>: {html.escape(str(r.get('error')))}</li>" for r in failed)
        parts.append(f'<p class="note">Failed rows:</p><ul class="meta">{items}</ul>')
    from abench.leaderboard import rows_frame

    rows_html = rows_frame(doc["rows"]).to_html(index=False, classes="rows", border=0, escape=True)
    parts.append(f"<details><summary>All rows (task × method)</summary>{rows_html}</details>")

    sweep_hidden = any(sweep_scale(m) is None for m in methods) and any(sweep_scale(m) is not None for m in methods)
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

    check = _SELF_CHECK.replace("__EXPECTED__", str(len(figures)))
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


# --------------------------------------------------------------------------- browser check

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    # the page must need no network: every host name fails to resolve
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


def find_chromium() -> str | None:
    """The chromium binary: ``$CHROMIUM`` if set, else the first of the usual names on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).exists() or shutil.which(env) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserCheckError(RuntimeError):
    """The page did not pass: JS errors, empty figures, no verdict, or a blank screenshot."""


def _chromium(args: list[str], url: str, timeout: float) -> str:
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium not found (apt-get install -y chromium, or set $CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="abench-chromium-") as profile:
        cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise BrowserCheckError(f"chromium exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


def _verdict_from_dom(dom: str) -> dict:
    m = re.search(r'<pre id="abench-check">(.*?)</pre>', dom, re.S)
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    if not m:
        raise BrowserCheckError("no self-check element in the rendered page")
    try:
        verdict = json.loads(html.unescape(m.group(1)))
    except json.JSONDecodeError as err:
        raise BrowserCheckError(f"unreadable self-check verdict {m.group(1)[:200]!r}: {err}") from None
    verdict["title"] = html.unescape(title.group(1)) if title else None
    return verdict


_PNG_PAGE = """<!DOCTYPE html><html><head><title>pending</title></head><body>
<img id="im" src="data:image/png;base64,__DATA__">
<script>
window.addEventListener('load', function () {
  var im = document.getElementById('im');
  var c = document.createElement('canvas'); c.width = im.naturalWidth; c.height = im.naturalHeight;
  var ctx = c.getContext('2d'); ctx.drawImage(im, 0, 0);
  var d = ctx.getImageData(0, 0, c.width, c.height).data;
  var counts = new Map(), n = c.width * c.height;
  for (var i = 0; i < d.length; i += 4) {
    var k = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
    counts.set(k, (counts.get(k) || 0) + 1);
  }
  var top = 0; counts.forEach(function (v) { if (v > top) top = v; });
  document.title = JSON.stringify({width: c.width, height: c.height, distinct_colors: counts.size,
                                   non_background_fraction: n ? 1 - top / n : 0});
});
</script></body></html>"""


def png_stats(png: str | Path, timeout: float = 60) -> dict:
    """Size, number of distinct colours and the share of pixels not of the most common colour, of a
    PNG, measured by chromium's own decoder (no imaging library needed)."""
    data = base64.b64encode(Path(png).read_bytes()).decode()
    with tempfile.TemporaryDirectory(prefix="abench-png-") as tmp:
        page = Path(tmp) / "png.html"
        page.write_text(_PNG_PAGE.replace("__DATA__", data))
        dom = _chromium(["--virtual-time-budget=5000", "--dump-dom"], page.as_uri(), timeout)
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    try:
        return json.loads(html.unescape(title.group(1)))
    except (AttributeError, json.JSONDecodeError):
        raise BrowserCheckError(f"could not measure {png}: {title.group(1) if title else 'no title'}") from None


def browser_check(
    page: str | Path,
    screenshot: str | Path | None = None,
    window_size: tuple[int, int] = (1400, 4000),
    virtual_time_ms: int = 10000,
    timeout: float = 180,
) -> dict:
    """Render ``page`` in headless chromium, read its self-check verdict, take a screenshot.

    Returns the verdict (status, n_figures, errors, problems, marks per figure, title) plus
    ``screenshot`` stats; raises :class:`BrowserCheckError` when the page has a JS error, an empty
    figure, no verdict, or the screenshot is missing or blank, and FileNotFoundError without chromium.
    """
    url = Path(page).resolve().as_uri()
    dom = _chromium([f"--virtual-time-budget={virtual_time_ms}", "--dump-dom"], url, timeout)
    verdict = _verdict_from_dom(dom)
    if verdict.get("status") == "pending":
        raise BrowserCheckError(f"the page's self-check did not finish within {virtual_time_ms} ms of virtual time (title {verdict['title']!r})")
    if verdict.get("status") != "ok":
        raise BrowserCheckError(
            f"page self-check {verdict.get('status')}: title {verdict.get('title')!r}; "
            f"errors {verdict.get('errors')}; problems {verdict.get('problems')}"
        )
    if screenshot is not None:
        shot = Path(screenshot).resolve()
        shot.parent.mkdir(parents=True, exist_ok=True)
        shot.unlink(missing_ok=True)
        w, h = window_size
        _chromium([f"--virtual-time-budget={virtual_time_ms}", f"--screenshot={shot}", f"--window-size={w},{h}"], url, timeout)
        if not shot.is_file() or shot.stat().st_size == 0:
            raise BrowserCheckError(f"chromium wrote no screenshot to {shot}")
        stats = png_stats(shot)
        verdict["screenshot"] = {"path": str(shot), **stats}
        if stats["distinct_colors"] < 16 or stats["non_background_fraction"] < 0.01:
            raise BrowserCheckError(f"screenshot {shot} looks blank: {stats}")
    return verdict
