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
from abench.effects import node_effects
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


def measure(task: Task, ev: TaskData, method: str, run=None, runner: str = "engine") -> Point:
    """Time and peak memory of one all-node effect computation (``run(method, ev)``; default the engine)."""
    m = make_method(method).fit(ev)
    run = run or (lambda m, ev: node_effects(m, ev))
    device = str(task.model.cfg.device)
    with torch.no_grad(), PeakMemory(device) as peak, Timer(device) as t:
        run(m, ev)
    batch, length = sum(t.shape[0] for t in ev.tokens), max(t.shape[1] - 1 for t in ev.tokens)  # over length groups
    return Point(task.name, method, len(task.nodes), len(ev.nodes), batch, length, t.seconds,
                 t.seconds / len(ev.nodes), peak.extra_bytes / 2**20, device, runner)


def peer_runners() -> dict:
    """The peers of ``abench/peers.py`` that can run here: ``{name: run(method, ev) or reason}``."""
    import copy

    from abench import peers

    out: dict = {"tl_hooks": lambda m, ev: peers.run_tl_hooks(m, ev, {})}
    try:
        peers.pyvene_module()
    except peers.PeerUnavailable as err:
        out["pyvene"] = str(err)
    else:
        out["pyvene"] = lambda m, ev: peers.run_pyvene(m, ev, {"model_copy": copy.deepcopy(ev.model)})
    return out


def to_rows(points: list[Point]) -> list[dict]:
    return [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(p).items()} for p in points]


def markdown(points: list[Point], notes: list[str]) -> str:
    lines = ["# Cost at real model shapes", "", *notes, "",
             "| task | runner | method | model nodes | nodes run | batch | length | seconds | s / node | peak extra MiB | device |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p.task} | {p.runner} | {p.method} | {p.model_nodes} | {p.nodes} | {p.batch} | {p.length} | "
                     f"{p.seconds:.3f} | {p.seconds_per_node:.4f} | {p.peak_extra_mib:.1f} | {p.device} |")
    return "\n".join(lines) + "\n"


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
    return fig.to_html(include_plotlyjs="cdn", full_html=True)
