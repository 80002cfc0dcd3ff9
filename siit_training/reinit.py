"""Redrawing a dead bystander's weights (``SiitConfig.reinit_dead_after``)."""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer

from tasks.base import Node


@torch.no_grad()
def reinit_node(ll: HookedTransformer, node: Node, gen: torch.Generator, opt: torch.optim.Optimizer, quiet_dims: int = 0) -> None:
    """Redraw one bystander's weights from the LL init (normal, std ``initializer_range``; biases 0) and reset their Adam state.

    A bystander whose attention saturates on a constant pattern gets almost no gradient from the
    liveness hinge (reverse's blocks.0 head 1 sat at liveness 0.02 for 1000+ steps, at hinge weight 1
    and 5); redrawing it, as SAE training resamples dead latents, lets strict training teach the rest
    of the model to ignore a live node instead.

    ``quiet_dims``: a warm start's tracr dimensions (``warm_start.embed_tracr``); the redrawn output
    weights start at zero there, as the bystander's first init did (a full redraw wrote into
    tracr's badly conditioned features and took count_less_freq's held-out accuracy to 0.18).
    """
    std = ll.cfg.initializer_range
    blk = ll.blocks[node.layer]
    if node.kind == "attn":
        h = node.head
        params = [(blk.attn.W_Q, h), (blk.attn.W_K, h), (blk.attn.W_V, h), (blk.attn.W_O, h)]
        biases = [(blk.attn.b_Q, h), (blk.attn.b_K, h), (blk.attn.b_V, h)]
    else:
        params = [(blk.mlp.W_in, None), (blk.mlp.W_out, None)]
        biases = [(blk.mlp.b_in, None)]
    for k, (p, idx) in enumerate(params + biases):
        target = p if idx is None else p[idx]
        if k < len(params):
            target.copy_(torch.randn(target.shape, generator=gen).to(p.device) * std)
        else:
            target.zero_()
        if quiet_dims and k == len(params) - 1:  # the output weights: W_O[h] or W_out
            target[..., :quiet_dims] = 0.0
        state = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                (state[key] if idx is None else state[key][idx]).zero_()
