"""Single-node interventions on TransformerLens hooks: the batched path and the reference loop.

Both take, for every node, the replacement value of its activation (``[batch, pos, d]``) and
return the model's outputs with that node replaced. The reference loop runs one full forward
per node. The batched path runs, for each layer, one forward per chunk of that layer's nodes:
the clean residual stream before the layer is repeated once per node along the batch axis and
the model starts at that layer (``start_at_layer``), so nothing upstream is recomputed. Tests
hold the two to 1e-5.

Joint ablation of node sets (``abench/circuit.py``) has the same two paths: one full forward per set
with all its hooks (``ablated_outputs_sets_loop``), or sets stacked along the batch axis, each
group of sets starting at its earliest layer (``ablated_outputs_sets_batched``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Mapping, Sequence

import torch
from transformer_lens import HookedTransformer

from interventions.memory import rows_within_budget
from interventions.nodes import Node, resid_pre_name

# Rows per stacked forward: passes of a few hundred rows were the fastest on the 2-core CPU the
# suite was tuned on (benchmarks/test_speed.py reports the batched/loop ratio).
DEFAULT_MAX_ROWS = 512


def node_activation(hook_value: torch.Tensor, node: Node) -> torch.Tensor:
    """The node's slice of its hook's value: ``[batch, pos, d_head]`` or ``[batch, pos, d_mlp]``."""
    return hook_value[:, :, node.head, :] if node.kind == "attn" else hook_value


def replacing_hooks(entries: Sequence[tuple[Node, object, torch.Tensor]]) -> list[tuple[str, Callable]]:
    """Forward hooks writing ``value`` into ``node``'s slice of the given batch ``rows``.

    ``entries``: ``(node, rows, value)`` with ``rows`` a slice or index tensor of the running
    batch and ``value`` shaped like the node's activation on those rows. One hook per hook name.
    """
    by_hook: dict[str, list] = defaultdict(list)
    for entry in entries:
        by_hook[entry[0].hook_name].append(entry)

    def make(group):
        def hook(act: torch.Tensor, hook) -> torch.Tensor:
            out = act.clone()  # not in place: autograd (optimal ablation, SIIT) may need the original
            for node, rows, value in group:
                if node.kind == "attn":
                    out[rows, :, node.head, :] = value
                else:
                    out[rows] = value
            return out

        return hook

    return [(name, make(group)) for name, group in by_hook.items()]


def clean_run(
    model: HookedTransformer, tokens: torch.Tensor, nodes: Sequence[Node]
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[int, torch.Tensor]]:
    """One clean forward: ``(outputs [b, pos, v], {node: activation [b, pos, d]}, {layer: resid_pre [b, pos, d_model]})``."""
    hooks = {n.hook_name for n in nodes} | {resid_pre_name(n.layer) for n in nodes}
    with torch.no_grad():
        out, cache = model.run_with_cache(tokens, names_filter=lambda name: name in hooks)
    acts = {n.name: node_activation(cache[n.hook_name], n).clone() for n in nodes}
    resid = {n.layer: cache[resid_pre_name(n.layer)] for n in nodes}
    return out, acts, resid


def ablated_outputs_loop(
    model: HookedTransformer, tokens: torch.Tensor, nodes: Sequence[Node], replacements: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Reference: one full forward per node. Returns ``{node: outputs [b, pos, v]}``."""
    outs = {}
    for node in nodes:
        hooks = replacing_hooks([(node, slice(None), replacements[node.name])])
        outs[node.name] = model.run_with_hooks(tokens, fwd_hooks=hooks)
    return outs


def ablated_outputs_batched(
    model: HookedTransformer,
    resid_pre: Mapping[int, torch.Tensor],
    nodes: Sequence[Node],
    replacements: Mapping[str, torch.Tensor] | Callable[[Node], torch.Tensor],
    max_rows: int = DEFAULT_MAX_ROWS,
) -> dict[str, torch.Tensor]:
    """All single-node ablations in stacked passes. Returns ``{node: outputs [b, pos, v]}``.

    ``replacements`` maps a node name to its value ``[b, pos, d]`` (or is a function of the
    node, so values can be built lazily, e.g. with gradients for optimal ablation).
    ``resid_pre[layer]`` is the clean residual stream ``[b, pos, d_model]`` before each layer.
    """
    outs = ablated_outputs_sets_batched(model, resid_pre, [[node] for node in nodes], replacements, max_rows)
    return {node.name: out for node, out in zip(nodes, outs)}


# --------------------------------------------------------------------------- joint ablation of node sets


def ablated_outputs_sets_loop(
    model: HookedTransformer,
    tokens: torch.Tensor,
    node_sets: Sequence[Sequence[Node]],
    replacements: Mapping[str, torch.Tensor],
) -> list[torch.Tensor]:
    """Reference: one full forward per node set, every node of the set replaced at once.

    Returns one ``outputs [b, pos, v]`` per set (an empty set gives the clean outputs)."""
    outs = []
    for nodes in node_sets:
        hooks = replacing_hooks([(node, slice(None), replacements[node.name]) for node in nodes])
        outs.append(model.run_with_hooks(tokens, fwd_hooks=hooks))
    return outs


def ablated_outputs_sets_batched(
    model: HookedTransformer,
    resid_pre: Mapping[int, torch.Tensor],
    node_sets: Sequence[Sequence[Node]],
    replacements: Mapping[str, torch.Tensor] | Callable[[Node], torch.Tensor],
    max_rows: int = DEFAULT_MAX_ROWS,
) -> list[torch.Tensor]:
    """Joint ablations of many node sets in stacked passes: one ``outputs [b, pos, v]`` per set.

    Sets are grouped by their earliest layer; each group starts at that layer from the clean
    residual stream ``resid_pre[layer]`` (nothing upstream of a set's first node changes),
    repeated once per set along the batch axis, in chunks of at most ``max_rows`` rows (at least
    one set). Within a chunk each node gets one write covering the rows of every set holding it.
    An empty set gives the clean outputs (run from the earliest cached layer).
    """
    get = replacements if callable(replacements) else (lambda n: replacements[n.name])
    sets = [list({n.name: n for n in s}.values()) for s in node_sets]  # a node twice in a set: once
    by_start: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(sets):
        by_start[min(n.layer for n in s) if s else min(resid_pre)].append(i)
    outs: list[torch.Tensor | None] = [None] * len(sets)
    for layer, idx in sorted(by_start.items()):
        resid = resid_pre[layer]
        b = resid.shape[0]
        # rows per forward: the speed cap max_rows, or fewer under --max-batch-mb (interventions.memory)
        per_chunk = max(1, rows_within_budget(model, resid.shape[1], max_rows) // b)
        for start in range(0, len(idx), per_chunk):
            chunk = idx[start : start + per_chunk]
            holders: dict[str, list[int]] = defaultdict(list)  # node -> positions in the chunk of the sets holding it
            node_of: dict[str, Node] = {}
            for j, i in enumerate(chunk):
                for n in sets[i]:
                    holders[n.name].append(j)
                    node_of[n.name] = n
            entries = []
            for name, js in holders.items():
                value = get(node_of[name])
                if len(js) == 1:
                    entries.append((node_of[name], slice(js[0] * b, (js[0] + 1) * b), value))
                else:
                    rows = torch.cat([torch.arange(j * b, (j + 1) * b, device=resid.device) for j in js])
                    entries.append((node_of[name], rows, value.repeat(len(js), *([1] * (value.dim() - 1)))))
            stacked = resid.repeat(len(chunk), 1, 1)
            with model.hooks(fwd_hooks=replacing_hooks(entries)):
                out = model(stacked, start_at_layer=layer)
            for j, i in enumerate(chunk):
                outs[i] = out[j * b : (j + 1) * b]
    return outs  # type: ignore[return-value]
