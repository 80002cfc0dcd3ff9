"""Joint ablation of node sets: how faithful and how complete a task's circuit is under one method.

Single-node effects (``abench.effects``) ablate one node at a time. Circuit-discovery work uses an
ablation method the other way: ablate many nodes together. For a fitted method on a task's eval data:

- **faithfulness**: fraction of non-BOS cells whose prediction is *unchanged* when every
  out-of-circuit node is ablated together (the circuit alone still does the task);
  ``faithfulness_divergence``: mean KL(clean || ablated) (categorical) or squared error
  (numerical) per cell in that run (lower is more faithful);
- **completeness**: fraction of cells whose prediction *changes* when every in-circuit node is
  ablated together; ``completeness_divergence`` its continuous version (higher is more complete);
- **normalised faithfulness**: ``(metric(circuit only) - metric(all ablated)) / (metric(clean) -
  metric(all ablated))`` with the task's own metric: accuracy against the clean model's
  prediction (categorical; metric(clean) = 1) or minus the MSE against the clean output
  (numerical; metric(clean) = 0). None, with a reason, when ablating every node changes nothing
  (zero denominator);
- **faithfulness curve**: out-of-circuit nodes ablated in growing random subsets (``CURVE_ORDERS``
  seeded orders, at most ``CURVE_MAX_POINTS`` subset sizes k spread over 1 .. n_out, n_out
  always included): fraction unchanged against k, and the area under it over k / n_out in
  [0, 1] (with the point k = 0, nothing ablated, unchanged 1), a node-level analogue of MIB's CPR.

A node's replacement value is exactly the one of its single-node effect: ``method.ablate`` on its
``NodeBatch`` of clean-run activations (``abench.effects.replacements``, so the same checks
apply). In a joint run every node of the set is written with that value, whatever its upstream
nodes became (node-level patching from separate clean runs, as in causal scrubbing / MIB).
Sets are stacked along the batch axis (``ablated_outputs_sets_batched``); the per-set hook loop
is the reference.
"""

from __future__ import annotations

import numpy as np
import torch

from abench.effects import replacements
from interventions.hooks import DEFAULT_MAX_ROWS, ablated_outputs_sets_batched, ablated_outputs_sets_loop
from interventions.measures import cell_changed, cell_divergence
from ablations.base import AblationMethod, make_method
from ablations.task_data import TaskData

CURVE_ORDERS = 3  # seeded random orders of the out-of-circuit nodes
CURVE_MAX_POINTS = 8  # subset sizes k per order (n_out always among them)
CURVE_SEED_TAG = 14  # mixed into the orders' seed so they do not share a stream with the data draws
NORMALISED_ZERO_DENOMINATOR = 1e-9


def curve_ks(n_out: int, max_points: int = CURVE_MAX_POINTS) -> list[int]:
    """Subset sizes of the curve: every k in 1 .. n_out, or ``max_points`` of them spread evenly
    (1 and n_out included)."""
    if n_out <= 0:
        return []
    if n_out <= max_points:
        return list(range(1, n_out + 1))
    return sorted({int(round(x)) for x in np.linspace(1, n_out, max_points)})


def curve_orders(n_out: int, seed: int, n_orders: int = CURVE_ORDERS) -> list[list[int]]:
    """``n_orders`` seeded permutations of ``range(n_out)`` (the same for every method of a task)."""
    return [np.random.default_rng([CURVE_SEED_TAG, int(seed), o]).permutation(n_out).tolist() for o in range(n_orders)]


def _area(ks: list[int], unchanged: list[float], n_out: int) -> float:
    """Trapezoid area of (0, 1), (k / n_out, unchanged) over [0, 1]."""
    xs = [0.0] + [k / n_out for k in ks]
    ys = [1.0] + list(unchanged)
    return float(sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1)))


def circuit_effects(
    method: AblationMethod,
    data: TaskData,
    batched: bool = True,
    max_rows: int = DEFAULT_MAX_ROWS,
    n_orders: int = CURVE_ORDERS,
    max_points: int = CURVE_MAX_POINTS,
    seed: int | None = None,
) -> dict:
    """Faithfulness, completeness (and continuous versions), normalised faithfulness and the
    faithfulness curve of a fitted ``method`` on ``data``, over all length groups.

    ``seed`` (default ``data.seed``, itself derived from the bench seed) fixes the curve's orders;
    ``n_orders=0`` skips the curve. Raises ``abench.effects.MethodError`` when the method misbehaves.
    """
    nodes = list(data.nodes)
    out_nodes = [n for n in nodes if not n.in_circuit]
    in_nodes = [n for n in nodes if n.in_circuit]
    ks = curve_ks(len(out_nodes), max_points) if n_orders > 0 else []
    orders = curve_orders(len(out_nodes), data.seed if seed is None else seed, n_orders) if ks else []

    # every distinct node set once: the endpoints, then each order's prefixes
    keys: dict[frozenset, int] = {}
    sets: list[list] = []

    def index(node_set: list) -> int:
        key = frozenset(n.name for n in node_set)
        if key not in keys:
            keys[key] = len(sets)
            sets.append(node_set)
        return keys[key]

    i_out, i_in, i_all = index(out_nodes), index(in_nodes), index(nodes)
    curve_idx = [[index([out_nodes[j] for j in order[:k]]) for k in ks] for order in orders]

    changed = [0.0] * len(sets)
    diverg = [0.0] * len(sets)
    cells = 0
    with torch.no_grad():
        for g in range(data.n_groups):
            clean = data.outputs[g]
            run = [i for i, s in enumerate(sets) if s]  # an empty set leaves the clean output
            if run:
                repl = replacements(method, data, g)
                if batched:
                    outs = ablated_outputs_sets_batched(data.model, data.resid_pre[g], [sets[i] for i in run], repl, max_rows)
                else:
                    outs = ablated_outputs_sets_loop(data.model, data.tokens[g], [sets[i] for i in run], repl)
                for i, out in zip(run, outs):
                    changed[i] += cell_changed(clean, out, data.output)[:, 1:].sum().item()
                    diverg[i] += cell_divergence(clean, out, data.output)[:, 1:].sum().item()
            cells += clean.shape[0] * (clean.shape[1] - 1)
    changed = [c / cells for c in changed]
    diverg = [d / cells for d in diverg]

    # the task's own metric against the clean model: accuracy (categorical) or -MSE (numerical)
    if data.output == "categorical":
        metric = lambda i: 1.0 - changed[i]  # noqa: E731
        metric_clean = 1.0
    else:
        metric = lambda i: -diverg[i]  # noqa: E731
        metric_clean = 0.0
    denominator = metric_clean - metric(i_all)
    if abs(denominator) <= NORMALISED_ZERO_DENOMINATOR:
        normalised, reason = None, "ablating every node together changes no prediction: metric(clean) = metric(all ablated)"
    else:
        normalised, reason = (metric(i_out) - metric(i_all)) / denominator, None

    unchanged = [[1.0 - changed[i] for i in row] for row in curve_idx]
    mean_unchanged = [float(np.mean(col)) for col in zip(*unchanged)] if unchanged else []
    curve = {
        "k": ks,
        "n_out": len(out_nodes),
        "orders": [[out_nodes[j].name for j in order] for order in orders],
        "unchanged": unchanged,
        "mean_unchanged": mean_unchanged,
        "area": _area(ks, mean_unchanged, len(out_nodes)) if ks else None,
        "reason": None if ks else ("no out-of-circuit node" if not out_nodes else "curve not computed"),
    }
    return {
        "faithfulness": 1.0 - changed[i_out],
        "faithfulness_divergence": diverg[i_out],
        "completeness": changed[i_in],
        "completeness_divergence": diverg[i_in],
        "normalised_faithfulness": normalised,
        "normalised_faithfulness_reason": reason,
        "all_ablated_changed": changed[i_all],
        "all_ablated_divergence": diverg[i_all],
        "n_out": len(out_nodes),
        "n_in": len(in_nodes),
        "n_node_sets": len(sets),
        "faithfulness_curve": curve,
    }


REFERENCE_METHOD = "resample"


def reference_circuit(data: TaskData, method: str = REFERENCE_METHOD, fit: TaskData | None = None) -> dict:
    """Faithfulness and completeness of the circuit under the reference intervention (``resample``
    for the SIIT family), endpoints only (no curve): what a ground-truth check can report per task.

    The SIIT ground truth predicts faithfulness ~1 (bystanders jointly irrelevant) and
    completeness > 0. ``fit``: data to fit the method on (resample learns nothing; default ``data``).
    Returns ``{"method", "faithfulness", "faithfulness_divergence", "completeness",
    "completeness_divergence", "normalised_faithfulness", "normalised_faithfulness_reason", ...}``.
    """
    m = make_method(method).fit(fit if fit is not None else data)
    out = circuit_effects(m, data, n_orders=0)
    out.pop("faithfulness_curve")
    return {"method": m.name, **out}
