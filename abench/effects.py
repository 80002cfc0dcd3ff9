"""Causal effect of ablating each node alone, for one method on one task's eval data.

effect: fraction of (example, position) cells, BOS excluded, whose prediction changes
(categorical: argmax; numerical: |change| > 0.05). This is the unconditional convention: iit
instead counts only cells where the resample source would change the label.
continuous: mean KL(clean || ablated) (categorical) or squared error (numerical) per cell.
"""

from __future__ import annotations

from itertools import chain

import torch

from interventions.hooks import (DEFAULT_MAX_ROWS, ablated_outputs_loop, ablated_outputs_sets_batched, ablated_outputs_sets_loop,
                                  iter_ablated_outputs_batched)
from abench.document import NodeEffect
from abench.scorers import SuiteScorer
from ablations.base import AblationMethod
from ablations.task_data import TaskData
from interventions.readout import FULL, Readout

class MethodError(RuntimeError):
    """A method misbehaved (raised, returned a wrong shape, NaN/inf, or changed its inputs)."""


def replacements(method: AblationMethod, data: TaskData, group: int, nodes=None) -> dict[str, torch.Tensor]:
    """The replacement value of every node (or of ``nodes``) on one length group, checked: ``{node: [b, pos, d]}``."""
    out = {}
    for node in data.nodes if nodes is None else nodes:
        batch = data.node_batch(node, group)
        inputs = (batch.clean, batch.source, batch.counterfactual, batch.source_same_length)
        # An in-place edit bumps a tensor's version counter (views share their base's): no clone of
        # every input per node (a third of the SIIT time went to these copies and compares).
        # Edits that bypass autograd's counter (.data, numpy views) of shared tensors are still
        # caught, and undone, by the shared-data guard (abench.guard) after the method runs.
        before = [t._version for t in inputs]
        try:
            value = method.ablate(batch)
        except Exception as err:  # a plugin may raise anything: report it, run the rest
            raise MethodError(f"{method.name} raised {type(err).__name__}: {err} (node {node.name})") from err
        if not isinstance(value, torch.Tensor):
            raise MethodError(f"{method.name} returned {type(value).__name__}, not a tensor (node {node.name})")
        if value.shape != batch.clean.shape:
            raise MethodError(
                f"{method.name} returned shape {tuple(value.shape)}, expected {tuple(batch.clean.shape)} (node {node.name})"
            )
        if not bool(torch.isfinite(value).all()):
            raise MethodError(f"{method.name} returned NaN or inf (node {node.name})")
        if any(t._version != v for t, v in zip(inputs, before)):  # also a row swap, which sums would miss
            raise MethodError(f"{method.name} modified its input activations (node {node.name})")
        out[node.name] = value.detach()
    return out


def node_effects(
    method: AblationMethod, data: TaskData, batched: bool = True, max_rows: int = DEFAULT_MAX_ROWS, scorer=None
) -> list[NodeEffect]:
    """Effects of a fitted method on every node, aggregated over all length groups.

    ``scorer``: the effect convention (default ``SuiteScorer``, the module docstring's; others in
    ``abench.conventions``): per group and node it gives (effect num, den, continuous num, den),
    summed over the groups and divided."""
    scorer = scorer or SuiteScorer()
    sums = {n.name: [0.0, 0, 0.0, 0] for n in data.nodes}
    by_name = {n.name: n for n in data.nodes}
    with torch.no_grad():
        for g in range(data.n_groups):
            # the scorer's readout: the engine computes only the cells it reads (interventions.readout)
            readout = read_by(scorer, data, g)
            clean = readout.select(data.outputs[g])
            # One layer at a time, each output scored as soon as it exists: what is held beyond the
            # clean data is one layer's replacements and one stacked forward (the --max-batch-mb
            # budget), never every node's outputs [b, pos, vocab] at once.
            for layer_nodes in _by_layer(data.nodes):
                repl = replacements(method, data, g, layer_nodes)
                if batched:
                    # A replacement equal to the clean activation cannot change the (deterministic)
                    # output: skip its forward (e.g. resampling a node that is constant).
                    changed_nodes = [n for n in layer_nodes if not torch.equal(repl[n.name], data.acts[n.name][g])]
                    writes = data.writes[g] if data.writes else None
                    outs = iter_ablated_outputs_batched(data.model, data.resid_pre[g], changed_nodes, repl, max_rows, writes, readout)
                    unchanged = [(n.name, clean) for n in layer_nodes if n not in changed_nodes]
                else:
                    outs = [(name, readout.select(out)) for name, out in ablated_outputs_loop(data.model, data.tokens[g], layer_nodes, repl).items()]
                    unchanged = []
                for name, out in chain(outs, unchanged):
                    for i, v in enumerate(scorer.score(data, g, by_name[name], clean, out)):
                        sums[name][i] += v
                    del out  # a view of its stacked forward: dropped before the next forward runs
                del repl, outs
    effects = []
    for n in data.nodes:
        changed, cells, diverg, diverg_cells = sums[n.name]
        effects.append(NodeEffect(n.name, n.in_circuit, changed / cells, diverg / diverg_cells))
    return effects


def read_by(scorer, data: TaskData, group: int) -> Readout:
    """The cells ``scorer`` reads on one length group (``FULL`` for a scorer that names none): its
    ``score`` is given the outputs cut to them."""
    readout = getattr(scorer, "readout", None)
    return FULL if readout is None else readout(data, group)


def _by_layer(nodes) -> list[list]:
    """Nodes grouped by layer, in order of first appearance."""
    groups: dict[int, list] = {}
    for n in nodes:
        groups.setdefault(n.layer, []).append(n)
    return list(groups.values())


def joint_effects(
    method: AblationMethod, data: TaskData, sets: dict[str, list[str]], single: list[NodeEffect],
    max_rows: int = DEFAULT_MAX_ROWS, scorer=None, batched: bool = True,
) -> list[dict]:
    """Effect of ablating each named node set together (one stacked pass per length group), under
    the same scorer as the single-node effects ``single`` of the same fitted method.

    Returns ``[{"name", "nodes", "effect", "continuous", "single_effects": {node: effect}}]``: a set
    whose joint effect exceeds every member's single effect carries redundancy (a backup)."""
    scorer = scorer or SuiteScorer()
    by_name = {n.name: n for n in data.nodes}
    unknown = [n for names in sets.values() for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"joint set node {unknown[0]!r} is not a node of the task")
    node_sets = [[by_name[n] for n in names] for names in sets.values()]
    members = list({n.name: n for s in node_sets for n in s}.values())
    sums = [[0.0, 0, 0.0, 0] for _ in node_sets]
    with torch.no_grad():
        for g in range(data.n_groups):
            repl = replacements(method, data, g, members)  # only the sets' nodes
            readout = read_by(scorer, data, g)
            if batched:
                outs = ablated_outputs_sets_batched(data.model, data.resid_pre[g], node_sets, repl, max_rows, readout)
            else:  # the reference: one hooked forward per set
                outs = [readout.select(out) for out in ablated_outputs_sets_loop(data.model, data.tokens[g], node_sets, repl)]
            clean = readout.select(data.outputs[g])
            for k, (nodes, out) in enumerate(zip(node_sets, outs)):
                for i, v in enumerate(scorer.score(data, g, nodes, clean, out)):
                    sums[k][i] += v
    single_of = {e.name: e.effect for e in single}
    return [{"name": label, "nodes": list(names), "effect": s[0] / s[1], "continuous": s[2] / s[3],
             "single_effects": {n: single_of[n] for n in names}}
            for (label, names), s in zip(sets.items(), sums)]
