"""Warm start of a SIIT model from its compiled tracr weights (``python -m siit_training --init-tracr``).

The LL model's residual stream holds tracr's in its first ``d_model(tracr)`` dimensions; each
in-circuit LL node starts as its tracr node (weights copied, zero-padded to the LL's head and MLP
sizes), the token / position embeddings and the unembedding start as tracr's on those
dimensions. Every bystander keeps the LL's random init, except that its output weights start at
zero on tracr's dimensions: at step 0 it writes, input-dependently, into the spare dimensions
only, so the LL computes exactly what tracr does (with TransformerLens' init on every dimension,
the bystanders' writes took held-out accuracy to 0.03-0.43 before any step). From there
training moves every weight: bystanders may come to write anywhere and circuit nodes to read
anywhere, and the strict loss and the liveness hinge act as for a random init. Nothing about the
bar changes: the card is measured exactly as for a randomly initialised model.

Why: for programs with a SelectorWidth (count_less_freq, reverse) or a numerical mean
(frac_prevs), randomly initialised runs stalled at min-node IIA 0.94-0.98 on cross-length
interchanges over four sessions of retries (their cards say so); tracr's own mechanism (attend
to BOS plus the selected keys, so the head's output encodes the count alone) is one the LL
did not find from scratch.
"""

from __future__ import annotations

import math

import torch
from transformer_lens import HookedTransformer

from tasks.base import Task

# Spare residual dimensions beyond tracr's: room for the bystanders' writes and the aux readout.
MIN_SPARE_DIMS = 6
# tracr's categorical logits are one-hot readouts (margin 1): cross-entropy there is ~0.4 per cell,
# and its gradient scales every weight up at once (held-out accuracy fell to 0.27 within 100 steps
# at lr 3e-4). The unembedding is scaled so the warm start sits near the loss's minimum; the
# argmax, and so every categorical label, is unchanged. Numerical outputs are copied as they are.
CATEGORICAL_LOGIT_SCALE = 10.0


def warm_start_config(cfg: dict, hl: HookedTransformer) -> dict:
    """``cfg`` widened so tracr's weights fit: d_model >= tracr's + ``MIN_SPARE_DIMS`` (rounded up
    to a multiple of 4), d_head and d_mlp >= tracr's, n_layers >= tracr's, and tracr's relu."""
    c = hl.cfg
    out = dict(cfg)
    out["n_layers"] = max(cfg["n_layers"], c.n_layers)
    out["d_model"] = max(cfg["d_model"], 4 * math.ceil((c.d_model + MIN_SPARE_DIMS) / 4))
    out["d_head"] = max(cfg["d_head"], c.d_head)
    out["d_mlp"] = max(cfg["d_mlp"], c.d_mlp)
    out["act_fn"] = "relu"
    return out


def check_fits(ll: HookedTransformer, hl: HookedTransformer) -> None:
    """Raise ``ValueError`` naming the first LL size or setting that cannot hold the tracr weights."""
    a, b = ll.cfg, hl.cfg
    for key in ("n_layers", "d_model", "d_head", "d_mlp"):
        if getattr(a, key) < getattr(b, key):
            raise ValueError(f"--init-tracr: LL {key} {getattr(a, key)} < tracr's {getattr(b, key)}")
    for key in ("d_vocab", "d_vocab_out", "n_ctx", "act_fn", "normalization_type", "attention_dir"):
        if getattr(a, key) != getattr(b, key):
            raise ValueError(f"--init-tracr: LL {key} {getattr(a, key)!r} differs from tracr's {getattr(b, key)!r}")


@torch.no_grad()
def embed_tracr(ll: HookedTransformer, hl_task: Task, corr: dict[str, str]) -> list[str]:
    """Copy the tracr model's weights into ``ll`` (in place) as the module docstring says; returns
    the LL nodes set. ``corr``: HL node name -> LL node name (``model.correspondence``, one LL node
    per HL node)."""
    hl = hl_task.model
    check_fits(ll, hl)
    dm, dh, dmlp = hl.cfg.d_model, hl.cfg.d_head, hl.cfg.d_mlp
    # TransformerLens divides attention scores by sqrt(d_head): keep tracr's scores at a wider d_head
    q_scale = math.sqrt(ll.cfg.d_head / dh)
    hsd, lsd = hl.state_dict(), ll.state_dict()
    lsd["embed.W_E"][:, :dm] = hsd["embed.W_E"]
    lsd["pos_embed.W_pos"][:, :dm] = hsd["pos_embed.W_pos"]
    lsd["unembed.W_U"].zero_()
    scale = CATEGORICAL_LOGIT_SCALE if hl_task.output == "categorical" else 1.0
    lsd["unembed.W_U"][:dm] = hsd["unembed.W_U"] * scale
    lsd["unembed.b_U"].copy_(hsd["unembed.b_U"] * scale)
    hl_nodes = {n.name: n for n in hl_task.nodes}
    done = []
    for h_name, l_name in corr.items():
        if not isinstance(l_name, str):
            raise ValueError(f"--init-tracr: {h_name} maps to a redundant set {l_name}; warm start takes one LL node per HL node")
        h = hl_nodes[h_name]
        p = f"blocks.{h.layer}."
        if h.kind == "attn":
            k = int(l_name.rsplit("[", 1)[1].rstrip("]"))
            for w in ("W_Q", "W_K", "W_V"):
                lsd[p + "attn." + w][k].zero_()
                lsd[p + "attn." + w][k, :dm, :dh] = hsd[p + "attn." + w][h.head] * (q_scale if w == "W_Q" else 1.0)
                b = "b" + w[1:]
                lsd[p + "attn." + b][k].zero_()
                lsd[p + "attn." + b][k, :dh] = hsd[p + "attn." + b][h.head] * (q_scale if w == "W_Q" else 1.0)
            lsd[p + "attn.W_O"][k].zero_()
            lsd[p + "attn.W_O"][k, :dh, :dm] = hsd[p + "attn.W_O"][h.head]
            # b_O is the layer's, shared with its bystander heads: tracr's (zero on its spare dims)
            lsd[p + "attn.b_O"].zero_()
            lsd[p + "attn.b_O"][:dm] = hsd[p + "attn.b_O"]
        else:
            # the LL MLP's extra hidden units start with zero output weights: part of this node, silent at first
            lsd[p + "mlp.W_in"][:dm, :dmlp] = hsd[p + "mlp.W_in"]
            lsd[p + "mlp.W_in"][dm:, :dmlp] = 0.0
            lsd[p + "mlp.b_in"][:dmlp] = hsd[p + "mlp.b_in"]
            lsd[p + "mlp.W_out"].zero_()
            lsd[p + "mlp.W_out"][:dmlp, :dm] = hsd[p + "mlp.W_out"]
            lsd[p + "mlp.b_out"].zero_()
            lsd[p + "mlp.b_out"][:dm] = hsd[p + "mlp.b_out"]
        done.append(l_name)
    circuit = set(done)
    for layer in range(ll.cfg.n_layers):
        p = f"blocks.{layer}."
        for k in range(ll.cfg.n_heads):
            if f"{p}attn.hook_z[{k}]" not in circuit:
                lsd[p + "attn.W_O"][k, :, :dm] = 0.0
        if f"{p}mlp.hook_post" not in circuit:
            lsd[p + "mlp.W_out"][:, :dm] = 0.0
            lsd[p + "mlp.b_out"][:dm] = 0.0
    ll.load_state_dict(lsd)
    return done


def frozen_masks(ll: HookedTransformer, hl: HookedTransformer, circuit: list[str]) -> dict[str, torch.Tensor]:
    """Parameter name -> 0/1 gradient mask (0: frozen) that keeps tracr's part of ``ll`` as compiled:
    every in-circuit node's weights (a head's slices of W_Q/K/V, b_Q/K/V and W_O; a whole MLP),
    the layers' b_O, the embeddings on tracr's dimensions and the unembedding. Bystanders, the
    embeddings' spare dimensions and nothing else train.

    Why freeze: tracr's weights are badly conditioned for gradient training (a SelectorWidth
    decodes 1/(w+1) with slopes of 100): a random +-1e-4 on every weight of count_less_freq's
    compiled model took its accuracy to 0.06-0.22, and Adam's first steps at lr 1.5e-6 already
    cost 24% of held-out accuracy."""
    dm = hl.cfg.d_model
    masks = {k: torch.ones_like(p) for k, p in ll.named_parameters()}
    masks["embed.W_E"][:, :dm] = 0
    masks["pos_embed.W_pos"][:, :dm] = 0
    masks["unembed.W_U"].zero_()
    masks["unembed.b_U"].zero_()
    for name in circuit:
        layer = int(name.split(".")[1])
        p = f"blocks.{layer}."
        if "attn" in name:
            k = int(name.rsplit("[", 1)[1].rstrip("]"))
            for w in ("W_Q", "W_K", "W_V", "b_Q", "b_K", "b_V", "W_O"):
                masks[p + "attn." + w][k] = 0
            masks[p + "attn.b_O"].zero_()
        else:
            for w in ("W_in", "b_in", "W_out", "b_out"):
                masks[p + "mlp." + w].zero_()
    return masks
