"""The parts of a TransformerLens block the engine computes by hand, and when that is exact.

The write path (``interventions.hooks``) starts a node's forward at its own write: the attention
output from ``hook_z`` (``attn_out``) and the MLP onto ``resid_mid``, which is exact for a standard
pre-norm block with no hook on the model (``supports_write_start``). A readout of some positions
(``interventions.readout``) computes the last block only there (``last_block_at``), exact for such a
block with plain attention and learned absolute positions (``can_cut_last_block``).
"""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from transformer_lens import HookedTransformer
from transformer_lens.components import Attention
from transformer_lens.components.mlps.mlp import MLP
from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES


def hooked(module: torch.nn.Module) -> bool:
    """Whether any module inside ``module`` (itself included; TransformerLens' hook points are modules) has a
    forward, forward-pre or backward hook attached: a hand-computed part would skip it."""
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in module.modules())


def supports_write_start(model: HookedTransformer) -> bool:
    """Whether the write-start path computes exactly what a hooked forward computes: a standard
    pre-norm block (attention output ``F.linear(z, W_O, b_O)``, then ``resid_mid``, then a plain
    MLP ending in ``W_out``), and no hook left on the model (the path skips the layer's hook points)."""
    cfg = model.cfg
    if (cfg.use_attn_result or cfg.use_split_qkv_input or cfg.use_attn_in or cfg.parallel_attn_mlp or cfg.use_hook_mlp_in
            or cfg.use_normalization_before_and_after or getattr(cfg, "load_in_4bit", False)
            or cfg.original_architecture in POST_NORM_ARCHITECTURES):
        return False
    if not cfg.attn_only and any(type(b.mlp) is not MLP for b in model.blocks):
        return False
    return not any(hp._forward_hooks or hp._backward_hooks for hp in model.hook_dict.values())


def attn_out(attn, z: torch.Tensor) -> torch.Tensor:
    """The attention output from ``hook_z`` ``[b, pos, n_heads, d_head]``, as TransformerLens computes it."""
    w = einops.rearrange(attn.W_O, "head_index d_head d_model -> d_model (head_index d_head)").contiguous()
    return F.linear(z.reshape(z.shape[0], z.shape[1], -1), w, attn.b_O)


def can_cut_last_block(model: HookedTransformer) -> bool:
    """Whether ``last_block_at`` computes the last block exactly: a write-start block (above) with plain
    attention (learned absolute positions; no rotary, ALiBi, sinks, clipping, soft cap, local
    attention or a per-layer direction override)."""
    cfg, attn = model.cfg, model.blocks[-1].attn
    return (supports_write_start(model) and type(attn) is Attention and cfg.positional_embedding_type == "standard"
            and not getattr(cfg, "use_attention_sinks", False) and getattr(cfg, "clip_qkv", None) is None
            and not getattr(cfg, "use_logn_attn", False) and getattr(cfg, "attn_scores_soft_cap", -1) <= 0
            and not getattr(cfg, "use_local_attn", False) and getattr(attn, "_attention_dir_override", None) is None
            and not hooked(model.blocks[-1]))


def last_block_at(block, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The block's output ``[b, p, d_model]`` at positions ``pos [p]`` only, from its input ``x [b, n_pos, d_model]``
    (queries, attention output and MLP at ``pos``; keys and values at every position)."""
    attn = block.attn
    normed = block.ln1(x)
    q, k, v = attn.calculate_qkv_matrices(normed[:, pos], normed, normed)
    scores = attn.calculate_attention_scores(q, k)  # [b, head, p, n_pos]
    if attn.cfg.attention_dir == "causal":
        allowed = torch.arange(x.shape[1], device=x.device)[None, :] <= pos[:, None]  # [p, n_pos]
        scores = torch.where(allowed, scores, attn.IGNORE.to(scores.device))
    pattern = F.softmax(scores, dim=-1)
    pattern = torch.where(torch.isnan(pattern), torch.zeros_like(pattern), pattern).to(v.dtype)
    resid_mid = x[:, pos] + attn_out(attn, attn.calculate_z_scores(v, pattern))
    if attn.cfg.attn_only:
        return resid_mid
    return resid_mid + block.apply_mlp(block.ln2(resid_mid))
