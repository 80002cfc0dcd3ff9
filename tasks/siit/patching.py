"""Interchange interventions on SIIT models: source activations written into nodes, and what a node writes
into the residual stream (its liveness)."""

from __future__ import annotations

from typing import Sequence

import torch
from transformer_lens import HookedTransformer

from interventions.hooks import node_activation, replacing_hooks
from interventions.interchange import source_prefix
from tasks.base import Node


def patch_hooks(assignments, src_acts: dict[str, torch.Tensor], n_pos: int | None = None):
    """Forward hooks writing source activations into nodes for chosen rows.

    ``assignments``: list of ``(node, rows, src_rows)``; rows index the running batch,
    src_rows the source batch whose activations are ``src_acts[hook_name]``. ``n_pos``: keep the
    source's first ``n_pos`` positions (a longer source patched into a shorter base: its
    activations there carry the source's length, which same-length sources cannot vary).
    """
    return replacing_hooks(
        [(node, rows, node_activation(src_acts[node.hook_name], node)[src_rows] if n_pos is None
          else source_prefix(node_activation(src_acts[node.hook_name], node)[src_rows], n_pos))
         for node, rows, src_rows in assignments if len(rows)]
    )


@torch.no_grad()
def prefix_cache(model: HookedTransformer, sources: Sequence[torch.Tensor], hooks: Sequence[str], n_pos: int) -> dict[str, torch.Tensor]:
    """Activations of ``hooks`` on source groups of (possibly) different lengths, each cut to its
    first ``n_pos`` positions and stacked along the batch: ``{hook: [sum of group sizes, n_pos, ...]}``."""
    names = set(hooks)
    caches = [model.run_with_cache(src, names_filter=lambda h: h in names)[1] for src in sources]
    return {h: torch.cat([source_prefix(c[h], n_pos) for c in caches]) for h in names}


def node_write(node: Node, act: torch.Tensor, model: HookedTransformer) -> torch.Tensor:
    """What the node adds to the residual stream, ``[b, pos, d_model]`` (bias excluded)."""
    blk = model.blocks[node.layer]
    if node.kind == "attn":
        return act[:, :, node.head] @ blk.attn.W_O[node.head]
    return act @ blk.mlp.W_out


def input_variance(write: torch.Tensor) -> torch.Tensor:
    """Variance across inputs (batch axis), summed over d_model, averaged over non-BOS positions."""
    return write[:, 1:].var(dim=0, unbiased=False).sum(-1).mean()
