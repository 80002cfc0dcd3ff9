"""The LL architecture of a SIIT model: its config (from the tracr model and the variant), the
HookedTransformer it builds, and its correspondence with the tracr program's circuit."""

from __future__ import annotations

import math
from typing import Sequence

from transformer_lens import HookedTransformer, HookedTransformerConfig

from tasks.base import Node, Task, all_nodes, ll_members
from tasks.siit.variants import ARCH_OVERRIDES, _variant, program_of


def ll_circuit(corr: dict) -> list[str]:
    """Every LL node name of a correspondence (lists flattened), in order."""
    return [m for v in corr.values() for m in ll_members(v)]


def ll_config_for(task_name: str, hl: HookedTransformer) -> dict:
    """InterpBench-style LL config: >= 2 layers, >= 4 heads, d_model ~ half tracr's, d_head >= 8;
    then the program's ``ARCH_OVERRIDES`` and the variant's ``arch`` (``task_name``: a program or a
    ``SIIT_VARIANTS`` name)."""
    c = hl.cfg
    d_model = max(16, 4 * math.ceil(c.d_model / 2 / 4))
    cfg = {
        "n_layers": max(2, c.n_layers),
        "n_heads": max(4, c.n_heads),
        "d_model": d_model,
        "d_head": 8,
        "d_mlp": 4 * d_model,
        "d_vocab": c.d_vocab,
        "d_vocab_out": c.d_vocab_out,
        "n_ctx": c.n_ctx,
    }
    name = task_name.removeprefix("siit_")
    cfg.update(ARCH_OVERRIDES.get(program_of(name), {}))
    cfg.update(_variant(name).get("arch", {}))
    return cfg


# LL activations: gelu (InterpBench's), relu (tracr's: a model warm-started from the compiled weights)
LL_ACT_FNS = ("gelu", "relu")
# LL normalisation: none (the base family), pre-LayerNorm (as gpt2), pre-RMSNorm (as Llama). The norms'
# learned scales stay in the model (never folded), so an ablation's effect on the norm is scored.
LL_NORMS = (None, "LN", "RMS")
LL_ATTENTION = ("bidirectional", "causal")


def build_ll(cfg: dict, device: str = "cpu", seed: int = 0) -> HookedTransformer:
    """The LL model of ``cfg`` (``ll_config_for``'s keys; ``act_fn`` gelu unless the config says
    relu, as a model warm-started from tracr's weights does; ``normalization_type`` one of
    ``LL_NORMS``, ``attention_dir`` one of ``LL_ATTENTION``: none and bidirectional unless it says)."""
    cfg = dict(cfg)
    act_fn = cfg.pop("act_fn", "gelu")
    if act_fn not in LL_ACT_FNS:
        raise ValueError(f"ll_config act_fn must be one of {LL_ACT_FNS}, got {act_fn!r}")
    norm = cfg.pop("normalization_type", None)
    if norm not in LL_NORMS:
        raise ValueError(f"ll_config normalization_type must be one of {LL_NORMS}, got {norm!r}")
    attention = cfg.pop("attention_dir", "bidirectional")
    if attention not in LL_ATTENTION:
        raise ValueError(f"ll_config attention_dir must be one of {LL_ATTENTION}, got {attention!r}")
    tl_cfg = HookedTransformerConfig(
        **cfg, act_fn=act_fn, normalization_type=norm, attention_dir=attention,
        default_prepend_bos=False, device=device, seed=seed,
    )
    return HookedTransformer(tl_cfg, move_to_device=True)


def correspondence(hl_task: Task, ll: HookedTransformer, redundant: dict[str, list[str]] | None = None,
                   layers: Sequence[int] | None = None) -> dict[str, str | list[str]]:
    """HL node name -> LL node name: same layer (or HL layer i -> LL layer ``layers[i]``), same
    kind, head h -> head h; a node in ``redundant`` maps to its list of LL node names instead."""
    out: dict[str, str | list[str]] = {}
    redundant = redundant or {}
    hl_layers = hl_task.model.cfg.n_layers
    layer_map = list(range(hl_layers)) if layers is None else list(layers)
    if (len(layer_map) != hl_layers or any(b <= a for a, b in zip(layer_map, layer_map[1:]))
            or layer_map[0] < 0 or layer_map[-1] >= ll.cfg.n_layers):
        raise ValueError(f"layers {layer_map} must map the {hl_layers} HL layers of {hl_task.name} onto increasing "
                         f"LL layers below {ll.cfg.n_layers}")
    hl_circ = {n.name for n in hl_task.nodes if n.in_circuit}
    stray = sorted(set(redundant) - hl_circ)
    if stray:
        raise ValueError(f"redundant HL node {stray[0]!r} is not in the circuit of {hl_task.name}")
    ll_names = {Node(layer, "attn", h).name for layer in range(ll.cfg.n_layers) for h in range(ll.cfg.n_heads)}
    ll_names |= {Node(layer, "mlp").name for layer in range(ll.cfg.n_layers)}
    for n in hl_task.nodes:
        if n.in_circuit:
            if n.name in redundant:
                members = list(redundant[n.name])
                bad = [m for m in members if m not in ll_names]
                if len(members) < 2 or len(set(members)) != len(members) or bad:
                    raise ValueError(f"redundant {n.name}: needs >= 2 distinct LL nodes of the model, got {members}")
                out[n.name] = members
                continue
            if n.kind == "attn" and n.head >= ll.cfg.n_heads:
                raise ValueError(f"LL model has too few heads for {n.name}")
            out[n.name] = Node(layer_map[n.layer], n.kind, n.head).name
    flat = ll_circuit(out)
    if len(set(flat)) != len(flat):
        raise ValueError(f"correspondence maps two HL nodes onto one LL node: {flat}")
    return out


def ll_nodes(ll: HookedTransformer, circuit: Sequence[str]) -> list[Node]:
    names = set(circuit)

    def in_circ(layer, kind, head):
        return Node(layer, kind, head).name in names

    return all_nodes(ll, in_circ)


def is_causal(cfg: dict) -> bool:
    """Whether an LL config (``ll_config_for``'s keys) has a causal attention mask."""
    return cfg.get("attention_dir", "bidirectional") == "causal"
