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
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Mapping, Sequence

import torch
from transformer_lens import HookedTransformer

from interventions.hooks import DEFAULT_MAX_ROWS, node_activation
from interventions.memory import rows_within_budget
from interventions.nodes import Node

# metric(outputs [R, pos, v], example [R]) -> [R, pos]: the per-cell metric of rows whose base
# example (row of the length group) is ``example`` (needed for per-example answers)
CellMetric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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


