"""Cost of all-node effects at real model shapes: time per node and peak memory against the number of
nodes, the sequence length and the batch, per method, and the peers (the TransformerLens hook loop,
pyvene) on the gpt2-small shape doing the same work.

A point measures ``node_effects`` of one fitted method on one length group of random tokens, over a
subset of the model's nodes spread over its layers (every node when ``max_nodes`` allows): time per
node is that run's time over its node count. Cost only: the scale tasks have no ground truth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from abench.bench import Timer
from abench.conventions import effect_setup
from abench.effects import node_effects
from abench.floor import floor_seconds
from abench.peak_memory import PeakMemory
from ablations import TaskData, make_method
from tasks.base import Task
from tasks.scale import random_tokens


@dataclass
class Point:
    task: str
    method: str
    model_nodes: int
    nodes: int
    batch: int
    length: int
    seconds: float
    seconds_per_node: float
    peak_extra_mib: float
    device: str
    runner: str = "engine"
    scorer: str = "suite"


def spread_nodes(task: Task, max_nodes: int) -> list:
    """At most ``max_nodes`` of the task's nodes, evenly spaced in forward order (first and last kept)."""
    nodes = task.nodes
    if len(nodes) <= max_nodes:
        return list(nodes)
    step = (len(nodes) - 1) / (max_nodes - 1)
    return [nodes[round(i * step)] for i in range(max_nodes)]


def scale_data(task: Task, nodes, batch: int, length: int, seed: int = 0) -> TaskData:
    """One length group of ``batch`` random sequences (``length`` tokens after BOS) and their one-token edits."""
    toks, cf = random_tokens(task, batch, length, seed)
    return TaskData.build(task.model, "categorical", nodes, [toks], [cf], seed=seed)


def task_scorer(task: Task, ev: TaskData):
    """The scorer the task is scored with (the scale tasks: the logit difference; ``abench.conventions``)."""
    return effect_setup(task, make_method("zero"), ev).scorer


def _point(task: Task, ev: TaskData, method: str, seconds: float, peak_mib: float, runner: str, scorer) -> Point:
    batch, length = sum(t.shape[0] for t in ev.tokens), max(t.shape[1] - 1 for t in ev.tokens)  # over length groups
    return Point(task.name, method, len(task.nodes), len(ev.nodes), batch, length, seconds, seconds / len(ev.nodes), peak_mib,
                 str(task.model.cfg.device), runner, getattr(scorer, "name", "suite"))


def measure(task: Task, ev: TaskData, method: str, run=None, runner: str = "engine", scorer=None) -> Point:
    """Time and peak memory of one all-node effect computation (``run(method, ev, scorer)``; default the
    engine) under ``scorer`` (default the suite's)."""
    m = make_method(method).fit(ev)
    run = run or (lambda m, ev, scorer: node_effects(m, ev, scorer=scorer))
    device = str(task.model.cfg.device)
    with torch.no_grad(), PeakMemory(device) as peak, Timer(device) as t:
        run(m, ev, scorer)
    return _point(task, ev, method, t.seconds, peak.extra_bytes / 2**20, runner, scorer)


def measure_floor(task: Task, ev: TaskData, scorer=None) -> Point:
    """The floor (``abench.floor``) of the same nodes and inputs: one forward per node from its layer to the
    cells ``scorer`` reads, best of 3 each; no replacement, no scoring (method ``-``)."""
    return _point(task, ev, "-", floor_seconds(ev, scorer), 0.0, "floor", scorer)


def measure_attribution(task: Task, ev: TaskData, method: str, scorer) -> Point:
    """Attribution patching (AtP: one forward and one backward for every node at once) of every node of
    ``ev`` under ``method``'s replacements, on the scorer's metric (``abench.estimator_rows``)."""
    from abench.estimator_rows import estimated_changes, task_metrics
    from interventions.linear_estimates import attribution_estimates

    m = make_method(method).fit(ev)
    metrics, _ = task_metrics(ev, scorer)
    device = str(task.model.cfg.device)
    with PeakMemory(device) as peak, Timer(device) as t:
        estimated_changes(m, ev, metrics, attribution_estimates)
    return _point(task, ev, method, t.seconds, peak.extra_bytes / 2**20, "attribution", scorer)


def peer_runners() -> dict:
    """The peers of ``abench/peers.py`` that can run here: ``{name: run(method, ev) or reason}``."""
    import copy

    from abench import peers

    out: dict = {"tl_hooks": lambda m, ev, scorer: peers.run_tl_hooks(m, ev, {"scorer": scorer})}
    try:
        peers.pyvene_module()
    except peers.PeerUnavailable as err:
        out["pyvene"] = str(err)
    else:
        out["pyvene"] = lambda m, ev, scorer: peers.run_pyvene(m, ev, {"model_copy": copy.deepcopy(ev.model), "scorer": scorer})
    return out


def to_rows(points: list[Point]) -> list[dict]:
    return [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(p).items()} for p in points]


def floor_rows(points: list[Point]) -> list[dict]:
    """Per (task, batch, length, scorer) measured by the engine (resample), the floor and the hook loop:
    seconds per node of each, engine / floor and loop / engine."""
    by: dict = {}
    for p in points:
        if p.runner in ("engine", "floor", "tl_hooks") and p.method in ("resample", "-"):
            by.setdefault((p.task, p.batch, p.length, p.scorer, p.nodes), {})[p.runner] = p
    rows = []
    for (task, batch, length, scorer, nodes), r in by.items():
        if len(r) == 3:
            e, f, tl = (r[k].seconds_per_node for k in ("engine", "floor", "tl_hooks"))
            rows.append({"task": task, "batch": batch, "length": length, "scorer": scorer, "nodes": nodes, "engine_s_per_node": e,
                         "floor_s_per_node": f, "tl_hooks_s_per_node": tl, "engine_over_floor": e / f, "tl_hooks_over_engine": tl / e})
    return rows


def crossover_rows(points: list[Point]) -> list[dict]:
    """Per attribution point: the engine's seconds per node under the same method, inputs and scorer, and the
    node count at which the exact engine costs what one attribution pass over every node costs."""
    rows = []
    for a in (p for p in points if p.runner == "attribution"):
        engine = [p for p in points if p.runner == "engine" and (p.task, p.method, p.batch, p.length, p.scorer)
                  == (a.task, a.method, a.batch, a.length, a.scorer)]
        if engine:
            e = engine[-1].seconds_per_node
            rows.append({"task": a.task, "method": a.method, "batch": a.batch, "length": a.length, "scorer": a.scorer,
                         "model_nodes": a.model_nodes, "attribution_nodes": a.nodes, "attribution_seconds": a.seconds,
                         "engine_s_per_node": e, "crossover_nodes": a.seconds / e})
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Markdown table lines: the header, its rule, one line per row of already formatted cells."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def markdown(points: list[Point], notes: list[str]) -> str:
    lines = ["# Cost at real model shapes", "", *notes, ""]
    lines += _table(["task", "runner", "method", "scorer", "model nodes", "nodes run", "batch", "length", "seconds", "s / node",
                     "peak extra MiB", "device"],
                    [[p.task, p.runner, p.method, p.scorer, str(p.model_nodes), str(p.nodes), str(p.batch), str(p.length),
                      f"{p.seconds:.3f}", f"{p.seconds_per_node:.4f}", f"{p.peak_extra_mib:.1f}", p.device] for p in points])
    floor = floor_rows(points)
    if floor:
        lines += ["", "## The engine against the floor and the hook loop", "",
                  "resample on the same nodes and inputs, in one run: the engine; the floor (one forward per node from its "
                  "layer to the cells the scorer reads, best of 3, no replacement, no scoring: abench/floor.py); the "
                  "TransformerLens hook loop (one full hooked forward per node, then the same scorer).", ""]
        lines += _table(["task", "batch", "length", "scorer", "nodes", "engine s / node", "floor s / node", "hook loop s / node",
                         "engine / floor", "hook loop / engine"],
                        [[r["task"], str(r["batch"]), str(r["length"]), r["scorer"], str(r["nodes"]),
                          f"{r['engine_s_per_node']:.4f}", f"{r['floor_s_per_node']:.4f}", f"{r['tl_hooks_s_per_node']:.4f}",
                          f"{r['engine_over_floor']:.2f}", f"{r['tl_hooks_over_engine']:.2f}"] for r in floor])
    cross = crossover_rows(points)
    if cross:
        lines += ["", "## When attribution patching is cheaper than the exact engine", "",
                  "Attribution patching (AtP) of every node of the model at once against the exact engine's seconds per node "
                  "(same method, inputs and scorer): the engine costs n x (s / node) for n nodes, the attribution pass about "
                  "the same for any n, so below the crossover the exact effects are the cheaper ones.", ""]
        lines += _table(["task", "method", "batch", "length", "scorer", "model nodes", "attribution s (all nodes)",
                         "engine s / node", "crossover (nodes)"],
                        [[r["task"], r["method"], str(r["batch"]), str(r["length"]), r["scorer"], str(r["model_nodes"]),
                          f"{r['attribution_seconds']:.3f}", f"{r['engine_s_per_node']:.4f}", f"{r['crossover_nodes']:.1f}"]
                         for r in cross])
    return "\n".join(lines) + "\n"


def crossover_figure(points: list[Point]):
    """Seconds against the number of nodes ablated: the exact engine (a line through the origin at its seconds
    per node) and one attribution pass over every node (flat), one panel per crossover row; the crossover marked."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = crossover_rows(points)
    if not rows:
        return None
    fig = make_subplots(rows=1, cols=len(rows), subplot_titles=[f"{r['task']} ({r['batch']} x {r['length']}, {r['scorer']})" for r in rows])
    for col, r in enumerate(rows, start=1):
        n = [1, r["model_nodes"]]
        fig.add_trace(go.Scatter(x=n, y=[r["engine_s_per_node"] * k for k in n], mode="lines", name="exact engine",
                                 legendgroup="engine", showlegend=col == 1, line={"color": "#1f77b4"}), row=1, col=col)
        fig.add_trace(go.Scatter(x=n, y=[r["attribution_seconds"]] * 2, mode="lines", name="attribution (every node)",
                                 legendgroup="attr", showlegend=col == 1, line={"color": "#d62728", "dash": "dash"}), row=1, col=col)
        fig.add_trace(go.Scatter(x=[r["crossover_nodes"]], y=[r["attribution_seconds"]], mode="markers+text", name="crossover",
                                 text=[f"{r['crossover_nodes']:.0f} nodes"], textposition="top left", legendgroup="x",
                                 showlegend=col == 1, marker={"color": "black", "size": 9}), row=1, col=col)
        fig.update_xaxes(type="log", title_text="nodes ablated", row=1, col=col)
        fig.update_yaxes(type="log", title_text="seconds", row=1, col=col)
    fig.update_layout(title="Exact engine or attribution patching: seconds against the number of nodes", height=420,
                      width=max(500, 420 * len(rows)))
    return fig


def figure_html(points: list[Point], title: str) -> str:
    """Log-log curves of seconds per node (engine) against model nodes, length and batch, one trace per method."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    axes = [("model_nodes", "nodes in the model"), ("length", "sequence length"), ("batch", "batch")]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[a[1] for a in axes])
    engine = [p for p in points if p.runner == "engine"]
    for col, (key, label) in enumerate(axes, start=1):
        others = [k for k, _ in axes if k != key]
        for method in sorted({p.method for p in engine}):
            # a curve: the points that differ only along this axis (the most populated such slice)
            slices: dict = {}
            for p in engine:
                if p.method == method:
                    slices.setdefault(tuple(getattr(p, k) for k in others), []).append(p)
            pts = max(slices.values(), key=len)
            pts = sorted(pts, key=lambda p: getattr(p, key))
            if len({getattr(p, key) for p in pts}) < 2:
                continue
            fig.add_trace(go.Scatter(x=[getattr(p, key) for p in pts], y=[p.seconds_per_node for p in pts], mode="lines+markers",
                                     name=f"{method} ({label})", legendgroup=method,
                                     text=[p.task for p in pts]), row=1, col=col)
        fig.update_xaxes(type="log", title_text=label, row=1, col=col)
        fig.update_yaxes(type="log", title_text="seconds per node", row=1, col=col)
    fig.update_layout(title=title, height=450, width=1300)
    cross = crossover_figure(points)
    if cross is None:
        return fig.to_html(include_plotlyjs="cdn", full_html=True)
    return ("<html><head><meta charset='utf-8'></head><body>" + fig.to_html(include_plotlyjs="cdn", full_html=False)
            + cross.to_html(include_plotlyjs=False, full_html=False) + "</body></html>")
