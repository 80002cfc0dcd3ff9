"""Linear estimates of single-node replacement effects (attribution patching) on TransformerLens hooks.

A node with clean activation ``a`` is replaced by ``r``; ``delta = r - a``. For a per-cell metric
``m`` (one value per (example, position)), the change of ``m`` when that node alone is replaced is
estimated as

- **AtP**: ``grad_a m(clean) . delta`` (one forward and one backward for every node at once);
- **integrated gradients** (EAP-IG style): ``mean_j grad m(path(alpha_j)) . delta`` at the
  midpoints ``alpha_j = (j + 1/2) / k``, on the one path along which *every* node is shifted by
  ``alpha * delta`` together (as EAP-IG interpolates all inputs at once): ``k`` forwards and
  backwards for every node, not ``k`` per node.

Where ``m`` is linear in the nodes' activations (e.g. an attention-only model without norms, read
out as a number) both are exact; ``tests/test_attribution.py`` holds them to the exact engine there.

Per-cell gradients: the metric at position ``p`` depends on every position ``<= p``, so one backward
of the summed metric would add the positions' gradients together. The batch is repeated once per
scored position and each copy backpropagates only its own position's metric: one forward and one
backward of ``P x b`` rows give every cell's gradient (rows never interact). The gradient with
respect to a node's activation is taken as the gradient of an additive shift at its hook
(``act + shift``; ``d(act + shift) / d shift = 1``), one leaf per hook for all of its heads.
``attribution_reference`` does the same per node and per position with plain autograd.

**GradDrop** (AtP*, Kramar et al. 2024): ``graddrop_estimates`` reruns AtP once per layer ``l`` of
the model with the gradient *dropped through layer l*: that block's attention and MLP read a
stop-gradient copy of the residual stream (``gradient_dropped``; forward values unchanged), so no
gradient flows back through block ``l`` while the skip connection still carries it. A node's score
at a cell is ``sum_l |AtP_{-l}(node)| / (L - 1)`` (``L``: the model's layers; see the function for
what a layer at or below the node's own contributes). ``graddrop_reference`` computes the same per
node, layer and position through TransformerLens's ``hook_attn_in`` / ``hook_mlp_in`` instead.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator, Mapping, Sequence

import torch
from transformer_lens import HookedTransformer

from interventions.hooks import DEFAULT_MAX_ROWS, node_activation
from interventions.memory import rows_within_budget
from interventions.nodes import Node

# metric(outputs [R, pos, v], example [R]) -> [R, pos]: the per-cell metric of rows whose base
# example (row of the length group) is ``example`` (needed for per-example answers)
CellMetric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (model, resid_pre, nodes, deltas, metric, positions) -> {node: [b, P]}: one estimator's per-cell
# values, ``attribution_estimates`` at fixed path points or ``graddrop_estimates``
CellEstimate = Callable[[HookedTransformer, Mapping[int, torch.Tensor], Sequence[Node], Mapping[str, torch.Tensor],
                         CellMetric, Sequence[int]], dict[str, torch.Tensor]]


def path_points(steps: int) -> list[float]:
    """Midpoints ``(j + 1/2) / steps`` of ``[0, 1]``: the integrated-gradients points (midpoint rule)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return [(j + 0.5) / steps for j in range(steps)]


def attribution_estimates(
    model: HookedTransformer,
    resid_pre: Mapping[int, torch.Tensor],
    nodes: Sequence[Node],
    deltas: Mapping[str, torch.Tensor],
    metric: CellMetric,
    positions: Sequence[int],
    alphas: Sequence[float] = (0.0,),
    max_rows: int = DEFAULT_MAX_ROWS,
) -> dict[str, torch.Tensor]:
    """Estimated change of ``metric`` at every cell when each node alone is replaced.

    ``resid_pre[layer]``: clean residual stream ``[b, pos, d_model]`` (the pass starts at the first
    node's layer); ``deltas[node]``: replacement minus clean activation ``[b, pos, d]``;
    ``positions``: the scored positions (``P`` of them); ``alphas``: the path points, ``(0,)`` for
    AtP. Returns ``{node: [b, P]}``, the gradient at each point dotted with ``delta``, averaged over
    the points.
    """
    nodes = list(nodes)
    start = min(n.layer for n in nodes)
    resid = resid_pre[start].detach()
    b, n_pos = resid.shape[:2]
    by_hook: dict[str, list[Node]] = defaultdict(list)
    for n in nodes:
        by_hook[n.hook_name].append(n)
    out = {n.name: torch.zeros(b, len(positions), device=resid.device) for n in nodes}
    per_chunk = max(1, rows_within_budget(model, n_pos, max_rows) // b)  # positions per pass
    example = torch.arange(b, device=resid.device)
    with torch.enable_grad():
        for alpha in alphas:
            for s in range(0, len(positions), per_chunk):
                block = list(positions[s : s + per_chunk])
                c = len(block)
                leaves: dict[str, torch.Tensor] = {}

                def make(name: str):
                    def hook(act: torch.Tensor, hook) -> torch.Tensor:
                        shift = torch.zeros_like(act)
                        if alpha:
                            for n in by_hook[name]:
                                value = alpha * deltas[n.name].to(act).repeat(c, 1, 1)  # [c * b, pos, d]
                                if n.kind == "attn":
                                    shift[:, :, n.head, :] = value
                                elif n.kind == "feature":  # the coordinates' shift, written along the direction
                                    shift = shift + value @ n.direction.to(act).T
                                else:
                                    shift[...] = value
                        shift.requires_grad_(True)
                        leaves[name] = shift
                        return act + shift

                    return hook

                with model.hooks(fwd_hooks=[(name, make(name)) for name in by_hook]):
                    logits = model(resid.repeat(c, 1, 1), start_at_layer=start)
                m = metric(logits, example.repeat(c))  # [c * b, pos]
                target = torch.stack([m[k * b : (k + 1) * b, p] for k, p in enumerate(block)])  # [c, b]
                names = list(leaves)
                grads = torch.autograd.grad(target.sum(), [leaves[h] for h in names])
                grad_of = dict(zip(names, grads))
                for n in nodes:
                    g = node_activation(grad_of[n.hook_name], n).reshape(c, b, n_pos, -1)
                    est = (g * deltas[n.name].to(g)[None]).sum((-1, -2))  # [c, b]
                    out[n.name][:, s : s + c] += est.T.detach() / len(alphas)
    return out


def attribution_reference(
    model: HookedTransformer,
    tokens: torch.Tensor,
    nodes: Sequence[Node],
    deltas: Mapping[str, torch.Tensor],
    metric: CellMetric,
    positions: Sequence[int],
    alphas: Sequence[float] = (0.0,),
) -> dict[str, torch.Tensor]:
    """The plain reference of ``attribution_estimates``: per node, point and position one full
    forward from ``tokens`` in which every node is written as ``clean + alpha * delta`` chained
    (each hook adds its shift to what it receives) and one ``torch.autograd.grad`` of that cell's
    metric with respect to this node's written value. Returns ``{node: [b, P]}``."""
    b = tokens.shape[0]
    example = torch.arange(b, device=tokens.device)
    out = {}
    for node in nodes:
        est = torch.zeros(b, len(positions), device=tokens.device)
        for alpha in alphas:
            for k, p in enumerate(positions):
                written: dict[str, torch.Tensor] = {}

                def shift_hook(act, hook, alpha=alpha):
                    act = act.clone()
                    for n in nodes:
                        if n.hook_name != hook.name:
                            continue
                        value = node_activation(act, n) + alpha * deltas[n.name]
                        if n is node:
                            value = value.detach().requires_grad_(True)
                            written[n.name] = value
                        if n.kind == "attn":
                            act[:, :, n.head, :] = value
                        elif n.kind == "feature":
                            d = n.direction.to(act)
                            act = act + (value - act @ d) @ d.T
                        else:
                            act = value
                    return act

                with torch.enable_grad():
                    hooks = [(name, shift_hook) for name in dict.fromkeys(n.hook_name for n in nodes)]
                    logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
                    (g,) = torch.autograd.grad(metric(logits, example)[:, p].sum(), [written[node.name]])
                est[:, k] += (g * deltas[node.name]).sum((-1, -2)).detach() / len(alphas)
        out[node.name] = est
    return out




def _detached(x):
    return x.detach() if isinstance(x, torch.Tensor) else x


@contextmanager
def gradient_dropped(model: HookedTransformer, layer: int) -> Iterator[None]:
    """Within the context, block ``layer``'s attention and MLP read a stop-gradient copy of their
    input (a forward pre-hook on each module): every forward value is unchanged, and no gradient
    flows back through that block into the residual stream; the skip connection past it still
    carries the gradient."""

    def detach_inputs(module, args, kwargs):
        return tuple(_detached(a) for a in args), {k: _detached(v) for k, v in kwargs.items()}

    block = model.blocks[layer]
    parts = [block.attn] + ([block.mlp] if not model.cfg.attn_only else [])
    handles = [p.register_forward_pre_hook(detach_inputs, with_kwargs=True) for p in parts]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def graddrop_estimates(
    model: HookedTransformer,
    resid_pre: Mapping[int, torch.Tensor],
    nodes: Sequence[Node],
    deltas: Mapping[str, torch.Tensor],
    metric: CellMetric,
    positions: Sequence[int],
    max_rows: int = DEFAULT_MAX_ROWS,
) -> dict[str, torch.Tensor]:
    """AtP*'s GradDrop score of each node at every cell: ``sum_l |AtP_{-l}| / (L - 1)`` over the
    model's ``L`` layers, ``AtP_{-l}`` the AtP estimate (``attribution_estimates`` at the clean run)
    with the gradient dropped through layer ``l`` (``gradient_dropped``). Returns ``{node: [b, P]}``,
    non-negative; arguments as ``attribution_estimates``.

    What a layer contributes to a node of layer ``m``: ``l < m``: the plain AtP (the block is upstream
    of the node, so none of its downstream paths is touched); ``l = m``: its paths through that
    block's MLP are cut when the node is a head of a sequential block (the MLP reads the head's write),
    nothing for an MLP node (the node's own write is the node, not a downstream path: it is never
    dropped); ``l > m``: every path through block ``l`` is cut. So a node whose every path crosses
    exactly one later block scores ``|AtP|`` (``L - 1`` terms ``|AtP|``, one 0), one that acts on the
    metric only directly (through the residual stream, e.g. in the last layer) ``L / (L - 1) * |AtP|``,
    and one whose paths cancel in the plain gradient keeps the size of the paths left when one block
    is dropped. One forward and backward per layer at or above the first node's (layers below it are
    not run: one plain pass stands for all of them). A one-layer model has no block downstream of
    any node, so no path to drop and none to cancel: its score is ``|AtP|`` (the formula's ``L - 1``
    would be 0)."""
    n_layers = model.cfg.n_layers
    if n_layers == 1:
        plain = attribution_estimates(model, resid_pre, nodes, deltas, metric, positions, (0.0,), max_rows)
        return {k: v.abs() for k, v in plain.items()}
    start = min(n.layer for n in nodes)
    total: dict[str, torch.Tensor] = {}
    for layer in ([None] if start > 0 else []) + list(range(start, n_layers)):
        with gradient_dropped(model, layer) if layer is not None else nullcontext():
            est = attribution_estimates(model, resid_pre, nodes, deltas, metric, positions, (0.0,), max_rows)
        weight = start if layer is None else 1  # the plain pass counts once per layer below ``start``
        for k, v in est.items():
            total[k] = total.get(k, 0) + weight * v.abs()
    return {k: v / (n_layers - 1) for k, v in total.items()}


def graddrop_reference(
    model: HookedTransformer,
    tokens: torch.Tensor,
    nodes: Sequence[Node],
    deltas: Mapping[str, torch.Tensor],
    metric: CellMetric,
    positions: Sequence[int],
) -> dict[str, torch.Tensor]:
    """The plain reference of ``graddrop_estimates``: for every layer (none skipped)
    ``attribution_reference`` (per node and position, full forwards from ``tokens``) with the layer's
    attention and MLP inputs detached at TransformerLens's ``hook_attn_in`` / ``hook_mlp_in`` (switched
    on for the call, a route independent of ``gradient_dropped``); ``sum |.| / (L - 1)``; ``|AtP|`` on a
    one-layer model."""
    n_layers = model.cfg.n_layers
    if n_layers == 1:
        return {k: v.abs() for k, v in attribution_reference(model, tokens, nodes, deltas, metric, positions).items()}
    saved = (model.cfg.use_attn_in, model.cfg.use_hook_mlp_in)
    model.set_use_attn_in(True)
    if not model.cfg.attn_only:
        model.set_use_hook_mlp_in(True)
    total: dict[str, torch.Tensor] = {}
    try:
        for layer in range(n_layers):
            names = [f"blocks.{layer}.hook_attn_in"] + ([] if model.cfg.attn_only else [f"blocks.{layer}.hook_mlp_in"])
            with model.hooks(fwd_hooks=[(name, lambda act, hook: act.detach()) for name in names]):
                est = attribution_reference(model, tokens, nodes, deltas, metric, positions)
            for k, v in est.items():
                total[k] = total.get(k, 0) + v.abs()
    finally:
        model.cfg.use_attn_in, model.cfg.use_hook_mlp_in = saved
    return {k: v / (n_layers - 1) for k, v in total.items()}
