"""Leaderboard document (``abench.document.Leaderboard``) -> plotly figures of the HTML report (``abench/report/html.py``).

ROC curves per method on the pooled node effects; histogram and CDF of the out-of-circuit
effects; the scaled-resample sweep per (task, node); the faithfulness curves per task; per method
the in- vs out-of-circuit effects of every task.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots
from sklearn.metrics import roc_auc_score, roc_curve

from ablations import DEFAULT_METHODS
from interventions.methodspec import parse_spec

if TYPE_CHECKING:
    from abench.document import Leaderboard, Row

IN_COLOR = "#1b9e77"
OUT_COLOR = "#d95f02"


def sweep_scale(method: str) -> float | None:
    """``s`` of a ``scaled_resample[s=...]`` method, else None."""
    spec = parse_spec(method)
    if spec is None or spec.name != "scaled_resample" or set(spec.params) != {"s"} or spec.flags:
        return None
    s = spec.params["s"]
    return float(s) if isinstance(s, (int, float)) and not isinstance(s, bool) else None


def ok_rows(doc: Leaderboard, method: str | None = None, pooled: bool = False) -> list[Row]:
    """Successful rows with nodes (of ``method``); ``pooled``: only the tasks the headline summary pools."""
    tasks = set(doc.pooled_tasks) if pooled else None
    return [
        r for r in doc.rows
        if r.ok and r.nodes and (method is None or r.method == method) and (tasks is None or r.task in tasks)
    ]


def methods_of(doc: Leaderboard) -> list[str]:
    """Methods in leaderboard order (then any that only appear in rows)."""
    names = [s.method for s in doc.summary]
    return list(dict.fromkeys(names + [r.method for r in doc.rows]))


# Kelly's colours of maximum contrast (without white), black first: each method its own colour (Plotly's and D3's
# palettes share shades, so resample and noise were both blue); past them a colour comes back with another dash
PALETTE = ("#222222", "#0067A5", "#F38400", "#008856", "#BE0032", "#875692", "#A1CAF1", "#C2B280", "#848482", "#E68FAC",
           "#F3C300", "#604E97", "#F99379", "#8DB600", "#B3446C", "#882D17", "#DCD300", "#654522", "#E25822", "#2B3D26",
           "#F6A600")
DASHES = ("solid", "dash", "dot", "dashdot")
PATTERNS = {"solid": "", "dash": "/", "dot": ".", "dashdot": "x"}  # a histogram's bars carry the method's dash as a pattern


def hidden_sweep(method: str) -> bool:
    """A scaled-resample sweep method beyond the default set: drawn only when clicked in the legend."""
    return sweep_scale(method) is not None and method not in DEFAULT_METHODS


def method_colors(methods: list[str]) -> dict[str, str]:
    """A fixed colour per method, each a different one (``PALETTE``) for ordinary methods, viridis by ``s`` for the sweep."""
    base = [m for m in methods if not hidden_sweep(m)]
    sweep = sorted((m for m in methods if hidden_sweep(m)), key=sweep_scale)
    colors = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(base)}
    if sweep:
        fracs = [0.5] if len(sweep) == 1 else [0.9 * i / (len(sweep) - 1) for i in range(len(sweep))]
        colors.update(zip(sweep, sample_colorscale("Viridis", fracs)))
    return colors


def method_dashes(methods: list[str]) -> dict[str, str]:
    """A line dash per method: neighbours in the legend differ in dash too, and a colour reused past ``PALETTE``
    comes with another dash, so every (colour, dash) pair is one method's."""
    base = [m for m in methods if not hidden_sweep(m)]
    out = {m: DASHES[(i % len(PALETTE) + i // len(PALETTE)) % len(DASHES)] for i, m in enumerate(base)}  # unique up to 4 rounds
    out.update({m: "dot" for m in methods if hidden_sweep(m)})
    return out





def roc_figure(doc: Leaderboard, colors: dict[str, str]) -> tuple[go.Figure | None, list[str]]:
    """ROC per method on its pooled node effects; methods with one class only are listed as skipped."""
    fig = go.Figure()
    skipped = []
    has_base = any(not hidden_sweep(m) for m in methods_of(doc))
    dashes = method_dashes(methods_of(doc))
    for m in methods_of(doc):
        ok = ok_rows(doc, m, pooled=True)
        labels = [bool(n.in_circuit) for r in ok for n in r.nodes]
        scores = [float(n.effect) for r in ok for n in r.nodes]
        if len(set(labels)) < 2:
            skipped.append(m)
            continue
        fpr, tpr, _ = roc_curve(labels, scores)
        auc = roc_auc_score(labels, scores)
        sweep = hidden_sweep(m)
        fig.add_trace(
            go.Scatter(
                x=fpr.tolist(),
                y=tpr.tolist(),
                mode="lines",
                name=f"{m} ({auc:.3f})",
                line=dict(color=colors[m], width=1.5 if sweep else 2.5, dash=dashes[m], shape="linear"),
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
        title=f"ROC of node effect as a circuit detector (family {html.escape(str(doc.headline_family))}, pooled over its tasks; legend: AUROC)",
        xaxis=dict(title="false positive rate (out-of-circuit nodes flagged)", range=[-0.01, 1.01], constrain="domain"),
        yaxis=dict(title="true positive rate (in-circuit nodes found)", range=[-0.01, 1.01], scaleanchor="x"),
        height=560,
        legend=dict(font=dict(size=11)),
        margin=dict(t=60, b=50, l=60, r=20),
    )
    return fig, skipped


def out_effect_figure(doc: Leaderboard, colors: dict[str, str]) -> go.Figure | None:
    """Histogram and empirical CDF of the out-of-circuit effects, per method."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("histogram (share of a method's out-of-circuit nodes)", "empirical CDF"), horizontal_spacing=0.08
    )
    has_base = any(not hidden_sweep(m) for m in methods_of(doc))
    dashes = method_dashes(methods_of(doc))
    for m in methods_of(doc):
        vals = sorted(float(n.effect) for r in ok_rows(doc, m, pooled=True) for n in r.nodes if not n.in_circuit)
        if not vals:
            continue
        visible = "legendonly" if hidden_sweep(m) and has_base else True
        fig.add_trace(
            go.Histogram(
                x=vals,
                name=m,
                legendgroup=m,
                marker_color=colors[m],
                marker_pattern_shape=PATTERNS[dashes[m]],
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
                line=dict(color=colors[m], shape="hv", width=2, dash=dashes[m]),
                visible=visible,
                hovertemplate=f"{html.escape(m)}<br>effect ≤ %{{x:.3f}}: %{{y:.1%}}<extra></extra>",
            ),
            row=1,
            col=2,
        )
    if not fig.data:
        return None
    fig.update_layout(
        title=f"Spurious effects: out-of-circuit nodes of family {html.escape(str(doc.headline_family))} (lower is better)", barmode="overlay", height=460, margin=dict(t=80, b=50, l=60, r=20)
    )
    fig.update_xaxes(title_text="effect (fraction of predictions changed)", range=[-0.03, 1.03])
    fig.update_yaxes(title_text="share of nodes", row=1, col=1)
    fig.update_yaxes(title_text="share of nodes with effect ≤ x", range=[0, 1.02], row=1, col=2)
    return fig


def sweep_figure(doc: Leaderboard) -> go.Figure | None:
    """Effect against scale, one line per (task, node), per task a panel; None without sweep rows."""
    series: dict[tuple[str, str], dict] = {}
    for r in doc.rows:
        s = sweep_scale(r.method)
        if s is None or not r.ok or not r.nodes:
            continue
        for n in r.nodes:
            d = series.setdefault((r.task, n.name), {"in": bool(n.in_circuit), "pts": {}})
            d["pts"][s] = float(n.effect)
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


def faithfulness_curve_figure(doc: Leaderboard, colors: dict[str, str]) -> go.Figure | None:
    """Per task of the headline family, the fraction of predictions unchanged against the number k
    of out-of-circuit nodes ablated together (mean over the seeded orders), one line per method;
    None when no row has a curve."""
    series: dict[str, dict[str, tuple[list, list]]] = {}
    for r in ok_rows(doc, pooled=True):
        curve = r.get("faithfulness_curve") or {}
        if curve.get("k") and curve.get("mean_unchanged"):
            series.setdefault(r.task, {})[r.method] = (curve["k"], curve["mean_unchanged"])
    if not series:
        return None
    tasks = list(series)
    ncols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig = make_subplots(
        rows=nrows, cols=ncols, subplot_titles=tasks, shared_yaxes=True, horizontal_spacing=0.04, vertical_spacing=0.18 / max(nrows, 1)
    )
    has_base = any(not hidden_sweep(m) for m in methods_of(doc))
    dashes = method_dashes(methods_of(doc))
    shown = set()
    for i, task in enumerate(tasks):
        for m in methods_of(doc):
            if m not in series[task]:
                continue
            ks, ys = series[task][m]
            sweep = hidden_sweep(m)
            fig.add_trace(
                go.Scatter(
                    x=ks,
                    y=ys,
                    mode="lines+markers",
                    name=m,
                    legendgroup=m,
                    showlegend=m not in shown,
                    line=dict(color=colors[m], width=1.5 if sweep else 2, dash=dashes[m]),
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
        title=f"Faithfulness curves (family {html.escape(str(doc.headline_family))}): share of predictions unchanged "
        "when k random out-of-circuit nodes are ablated together (mean over seeded orders; higher is more faithful)",
        height=380 * nrows + 80,
        margin=dict(t=100, b=50, l=60, r=20),
    )
    return fig


def method_effect_figure(doc: Leaderboard, method: str) -> go.Figure | None:
    """In- vs out-of-circuit effects of one method, per task (boxes with every node as a point)."""
    ok = ok_rows(doc, method)
    if not ok:
        return None
    fig = go.Figure()
    top = 0.0
    for in_circuit in (True, False):
        xs, ys, names = [], [], []
        for r in ok:
            for n in r.nodes:
                if bool(n.in_circuit) == in_circuit:
                    xs.append(r.task)
                    ys.append(float(n.effect))
                    names.append(n.name)
        if not ys:
            continue
        top = max(top, *ys)
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
    failed = [r.task for r in doc.rows if r.method == method and not r.ok]
    title = method + (f" (failed: {', '.join(failed)})" if failed else "")
    fig.update_layout(
        title=dict(text=html.escape(title), font=dict(size=14)),
        boxmode="group",
        height=340,
        # a fraction of cells fits [0, 1]; an attribution estimate (metric units) may not
        yaxis=dict(title="effect", range=[-0.03, 1.03] if top <= 1 else None),
        legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
        margin=dict(t=60, b=40, l=55, r=10),
    )
    return fig
