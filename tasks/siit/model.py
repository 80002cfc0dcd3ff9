"""SIIT models: the LL architecture and its correspondence with the tracr program, the aux
readouts, the patching hooks, and the weights + card files (save, validate, load, the shipped set)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interventions.hooks import node_activation, replacing_hooks
from interventions.interchange import source_prefix
from tasks.base import Node, Task, all_nodes, ll_members, redundant_sets, unit_name  # noqa: F401 (re-exported)
from tasks.tracr.compiled import tracr_task

# $ABENCH_SIIT_WEIGHTS points the registry (and the trainer) at another folder, e.g. in tests
WEIGHTS_DIR = Path(os.environ.get("ABENCH_SIIT_WEIGHTS") or Path(__file__).resolve().parent.parent / "weights" / "siit")
# Cards of models that missed the bar (weights only where a test loads them): kept for the models
# table and the tests, never package data (pyproject), never listed by ``shipped``
FAILED_DIR = Path(__file__).resolve().parent.parent / "weights" / "siit_failed"
CARD_VERSION = 1
# Test protocol of a card. 2: IIA and SIIA with sources of every length >= the base's, bar per node.
# 3: protocol 2 plus the joint bar (bystanders resampled together, in subsets and all at once; the
# circuit resampled together changes the output as the HL model's does).
# The registry ships only cards of this protocol that passed.
CARD_PROTOCOL = 3
# Pass bar for held-out accuracy, IIA and SIIA (fractions of non-BOS cells).
PASS_BAR = 0.99
# A numerical prediction counts as correct when within this of the tracr output.
NUM_TOL = 0.02
# An out-of-circuit node is live when the input-dependent variance of what it writes into the
# residual stream (``input_variance(node_write(...))``: variance across inputs at each position,
# so a purely positional output counts as constant) is at least this fraction of the median
# in-circuit node's. 0.05 of the variance is ~22% of the standard deviation: resampling such a
# node moves the residual stream by an input-dependent amount comparable to what circuit nodes
# write, so mean and resample ablation of it differ measurably. Fixed before any model was
# trained; a trained hinge (floor 0.25) keeps a 5x margin. For scale: reverse's in-circuit
# length head, constant within one input length, scores 0.000.
LIVE_THRESHOLD = 0.05

# Per-task overrides of the LL architecture. reverse gets 5 heads (24 LL nodes). Its shipped model
# is from one from-scratch run of the default recipe (one length per step, cross-length strict
# sources): trained with all-length steps, its layer-0 bystander heads died (liveness < 0.02) at
# d_model 24, 32 and 48, with hinge weight up to 5, re-initialisation and a layer-0 aux readout.
# The numerical
# tasks get a wider residual: at d_model 16, frac_prevs oscillated at 30-70% accuracy (tolerance
# 0.02) for 12 minutes, the live bystanders' writes and the aux readout crowding the exact
# numerical readout.
ARCH_OVERRIDES: dict[str, dict] = {
    "reverse": {"n_heads": 5},
    "frac_prevs": {"d_model": 32, "d_mlp": 128},
    "pair_balance": {"d_model": 32, "d_mlp": 128},
    "first_frac": {"d_model": 32, "d_mlp": 128},
}


# SIIT models built on a tracr program under another name. ``redundant``: HL node -> the LL nodes
# that each carry it (a backup pair, as gpt2-small's IOI backup heads): an interchange patches all
# of them together, and each member alone (its partner zero-ablated) implements the HL node too.
# Single-node ablation then under-reports each member by design, so these models form their own
# family (``siit_backup``), whose ground truth scores the set through its joint effect.
# ``arch``: the variant's LL architecture overrides (over the program's ARCH_OVERRIDES). The
# ``*_wide`` models are the larger ones (>= 40 LL nodes: 4 layers x 9 heads + 4 MLPs, a wider
# residual for the extra bystanders; count_a at 4 x 9 heads and d_model 16 had a bystander at
# liveness 0.000 after 1000 steps), trained with --w-live 5 (the hinge is a mean over bystanders,
# so 36 of them get ~1/5 of the per-node weight 8 get).
_WIDE = {"n_layers": 4, "n_heads": 9, "d_model": 32, "d_mlp": 128}
SIIT_VARIANTS: dict[str, dict] = {
    "hist_backup": {"program": "hist", "redundant": {"blocks.0.attn.hook_z[0]": ["blocks.0.attn.hook_z[0]", "blocks.0.attn.hook_z[1]"]}},
    "back2_backup": {"program": "back2", "redundant": {"blocks.0.attn.hook_z[0]": ["blocks.0.attn.hook_z[0]", "blocks.0.attn.hook_z[1]"]}},
    "first_token_backup": {"program": "first_token",
                           "redundant": {"blocks.0.attn.hook_z[0]": ["blocks.0.attn.hook_z[0]", "blocks.0.attn.hook_z[1]"]}},
    "prev_token_backup": {"program": "prev_token",
                          "redundant": {"blocks.0.attn.hook_z[0]": ["blocks.0.attn.hook_z[0]", "blocks.0.attn.hook_z[1]"]}},
    "first_token_wide": {"program": "first_token", "arch": _WIDE},
    "back2_wide": {"program": "back2", "arch": _WIDE},
    "same_as_first_wide": {"program": "same_as_first", "arch": _WIDE},
    "back3_wide": {"program": "back3", "arch": _WIDE},
    "prev_token_wide": {"program": "prev_token", "arch": _WIDE},
    # wide variants of programs with a default-size model (shipped or failed): 36 bystander heads to keep
    # silent jointly and live. The six that ship (hist_wide, prev_prev_wide, length_wide, count_a_wide,
    # same_as_first_wide, same_as_prev_wide) were trained with --live-median-grad; after_a_wide and
    # frac_prevs_wide have failed cards; the other runs were stopped before a card (docs/siit-models.md)
    "same_as_prev_wide": {"program": "same_as_prev", "arch": _WIDE},
    "hist_wide": {"program": "hist", "arch": _WIDE},
    "prev_prev_wide": {"program": "prev_prev", "arch": _WIDE},
    "sum_prev_wide": {"program": "sum_prev", "arch": _WIDE},
    "length_wide": {"program": "length", "arch": _WIDE},
    "count_a_wide": {"program": "count_a", "arch": _WIDE},
    "after_a_wide": {"program": "after_a", "arch": _WIDE},
    "frac_prevs_wide": {"program": "frac_prevs", "arch": _WIDE},
    "sort_unique_wide": {"program": "sort_unique", "arch": _WIDE},
    "mix3_wide": {"program": "mix3", "arch": _WIDE},
    "count_less_freq_wide": {"program": "count_less_freq", "arch": _WIDE},
    # compiled-circuit models (``compiled``): the in-circuit nodes are tracr's compiled weights, kept
    # frozen; only the bystanders (and spare residual dimensions) are SIIT-trained
    # (``siit_training/warm_start.py``). For programs whose randomly initialised models miss the bar
    # (their own cards say what they reached). A compiled circuit is tracr-like (sharp, exactly
    # the program), so these form their own family and table, never pooled with ``siit``.
    "count_less_freq_compiled": {"program": "count_less_freq", "compiled": True},
    "frac_prevs_compiled": {"program": "frac_prevs", "compiled": True},
}
BACKUP_FAMILY = "siit_backup"
COMPILED_FAMILY = "siit_compiled"
# Realism axes: models shaped like the ones researchers ablate, each axis its own family (never pooled
# with ``siit``), under the same bar. ``norm``: pre-LayerNorm (gpt2) or pre-RMSNorm (Llama); ``causal``:
# a causal mask, on programs whose every node at a position reads only that position and earlier ones
# (``tests/test_siit.py`` checks it on the tracr model); ``deep``: 6 layers, the circuit in the layers of
# ``layers`` (HL layer i -> LL layer layers[i]), bystander layers before, between and after it.
NORM_FAMILY, CAUSAL_FAMILY, DEEP_FAMILY = "siit_norm", "siit_causal", "siit_deep"
REALISM_FAMILIES = (NORM_FAMILY, CAUSAL_FAMILY, DEEP_FAMILY, BACKUP_FAMILY)
_LN, _RMS, _CAUSAL = {"normalization_type": "LN"}, {"normalization_type": "RMS"}, {"attention_dir": "causal"}
for _program in ("back2", "first_token", "prev_prev", "frac_prevs"):
    SIIT_VARIANTS[f"{_program}_ln"] = {"program": _program, "arch": _LN, "family": NORM_FAMILY}
    SIIT_VARIANTS[f"{_program}_rms"] = {"program": _program, "arch": _RMS, "family": NORM_FAMILY}
for _program in ("prev_token", "back2", "first_token", "prev_prev", "frac_prevs", "sum_prev"):
    SIIT_VARIANTS[f"{_program}_causal"] = {"program": _program, "arch": _CAUSAL, "family": CAUSAL_FAMILY}
for _program, _layers in (("back2", [2]), ("first_token", [3]), ("prev_prev", [1, 4]), ("length", [2]), ("frac_prevs", [1, 4])):
    SIIT_VARIANTS[f"{_program}_deep"] = {"program": _program, "arch": {"n_layers": 6}, "layers": _layers, "family": DEEP_FAMILY}


def program_of(name: str) -> str:
    """The tracr program a SIIT model ``name`` implements (itself, or its variant's ``program``)."""
    name = name.removeprefix("siit_")
    return SIIT_VARIANTS[name]["program"] if name in SIIT_VARIANTS else name


def _variant(name: str) -> dict:
    """The ``SIIT_VARIANTS`` entry of SIIT model ``name`` (with or without ``siit_``), ``{}`` for a plain program."""
    return SIIT_VARIANTS.get(name.removeprefix("siit_"), {})


def redundant_of(name: str) -> dict[str, list[str]]:
    """HL node -> list of LL nodes for the variant's redundant nodes ({} for a plain SIIT model)."""
    return {k: list(v) for k, v in _variant(name).get("redundant", {}).items()}


def is_compiled(name: str) -> bool:
    """Whether SIIT model ``name`` is a compiled-circuit variant (``SIIT_VARIANTS[...]["compiled"]``)."""
    return bool(_variant(name).get("compiled"))


def layers_of(name: str) -> list[int] | None:
    """HL layer i -> LL layer ``layers[i]`` of a deep variant; ``None``: the same layer."""
    layers = _variant(name).get("layers")
    return list(layers) if layers is not None else None


def family_of(name: str) -> str:
    """``siit_backup`` for a model with a redundant node, ``siit_compiled`` for a compiled-circuit
    variant, a realism axis's family for its variants, else ``siit``."""
    if redundant_of(name):
        return BACKUP_FAMILY
    return COMPILED_FAMILY if is_compiled(name) else _variant(name).get("family", "siit")


def ll_circuit(corr: dict) -> list[str]:
    """Every LL node name of a correspondence (lists flattened), in order."""
    return [m for v in corr.values() for m in ll_members(v)]


class SiitLoadError(ValueError):
    """A shipped SIIT weight file or card is missing, corrupt or does not match."""


# --------------------------------------------------------------------------- architecture


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


# --------------------------------------------------------------------------- aux targets


def aux_sizes(d_vocab: int) -> list[int]:
    """Class counts of the auxiliary targets: previous token, next token, prev == current."""
    return [d_vocab + 1, d_vocab + 1, 2]


def aux_targets(tokens: torch.Tensor, d_vocab: int, causal: bool = False) -> torch.Tensor:
    """``[b, pos, 3]`` aux labels: token at p-1 (BOS pos gets d_vocab), token at p+1 (last -> d_vocab), p-1 == p.
    ``causal``: token at p-2 (first two -> d_vocab) instead of p+1, which a causal model cannot see."""
    prev = torch.full_like(tokens, d_vocab)
    prev[:, 1:] = tokens[:, :-1]
    second = torch.full_like(tokens, d_vocab)
    if causal:
        second[:, 2:] = tokens[:, :-2]
    else:
        second[:, :-1] = tokens[:, 1:]
    same = (prev == tokens).long()
    return torch.stack([prev, second, same], dim=-1)


def is_causal(cfg: dict) -> bool:
    """Whether an LL config (``ll_config_for``'s keys) has a causal attention mask."""
    return cfg.get("attention_dir", "bidirectional") == "causal"


def aux0_sizes(d_vocab: int) -> list[int]:
    """Class counts of the layer-0 aux targets: tokens at p-1, p+1, p-2, p+2 (d_vocab = none)."""
    return [d_vocab + 1] * 4


def aux0_targets(tokens: torch.Tensor, d_vocab: int) -> torch.Tensor:
    """``[b, pos, 4]`` labels for the layer-0 aux readout (``aux.L0_W_U``): tokens at relative offsets -1, +1, -2, +2."""
    out = []
    for off in (-1, 1, -2, 2):
        t = torch.full_like(tokens, d_vocab)
        if off < 0:
            t[:, -off:] = tokens[:, :off]
        else:
            t[:, :-off] = tokens[:, off:]
        out.append(t)
    return torch.stack(out, dim=-1)


def aux_block_ce(logits: torch.Tensor, targets: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Cross-entropy over non-BOS cells, averaged over the concatenated class blocks ``sizes``."""
    total, off = 0.0, 0
    for k, size in enumerate(sizes):
        total = total + F.cross_entropy(logits[:, 1:, off:off + size].reshape(-1, size), targets[:, 1:, k].reshape(-1))
        off += size
    return total / len(sizes)


def aux_logit_accuracy(logits: torch.Tensor, targets: torch.Tensor, sizes: list[int]) -> tuple[int, int]:
    """(correct, total) over non-BOS cells of concatenated class blocks ``sizes``."""
    ok, tot, off = 0, 0, 0
    for k, size in enumerate(sizes):
        c = logits[:, 1:, off:off + size].argmax(-1) == targets[:, 1:, k]
        ok += c.sum().item(); tot += c.numel()
        off += size
    return ok, tot


# --------------------------------------------------------------------------- patching


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


# --------------------------------------------------------------------------- save / load


def is_weight(key: str) -> bool:
    """A state-dict key that holds a trained tensor (not a HookedTransformer buffer: attention masks, IGNORE)."""
    return not key.endswith(("IGNORE", ".mask"))


def paths(name: str, weights_dir: Path | None = None) -> tuple[Path, Path]:
    d = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    return d / f"{name}.safetensors", d / f"{name}.json"


def save(name: str, ll: HookedTransformer, aux: dict[str, torch.Tensor], card: dict, weights_dir: Path | None = None) -> None:
    from safetensors.torch import save_file

    wpath, cpath = paths(name, weights_dir)
    wpath.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in ll.state_dict().items() if is_weight(k)}
    sd.update({k: v.detach().cpu().contiguous() for k, v in aux.items()})
    card = dict(card)
    card["shapes"] = {k: list(v.shape) for k, v in sd.items()}
    save_file(sd, str(wpath), metadata={"task": name, "card_version": str(CARD_VERSION)})
    cpath.write_text(json.dumps(card, indent=1) + "\n")


# The card fields ``load`` reads, checked before any model is built: {field: (check, what it must be)}.
_POSITIVE_INT = (lambda v: type(v) is int and v >= 1, "a positive integer")
LL_CONFIG_SCHEMA = {k: _POSITIVE_INT for k in ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "d_vocab", "d_vocab_out", "n_ctx")}
# set by build_ll itself, so a card may not carry them
_BUILD_LL_FIXED = {"default_prepend_bos", "device", "seed"}
CARD_SCHEMA = {
    "card_version": (lambda v: type(v) is int, "an integer"),
    "ll_config": (lambda v: isinstance(v, dict), "an object"),
    "correspondence": (lambda v: isinstance(v, dict) and bool(v) and all(
        isinstance(k, str) and (isinstance(x, str) or (isinstance(x, list) and len(x) >= 2 and all(isinstance(m, str) for m in x)
                                                       and len(set(x)) == len(x))) for k, x in v.items()),
                       "a non-empty object of HL node name -> LL node name string (or a list of >= 2 distinct LL node "
                       "name strings for a redundant node)"),
    "shapes": (lambda v: isinstance(v, dict) and all(isinstance(s, list) and all(type(x) is int and x >= 0 for x in s) for s in v.values()),
               "an object of tensor name -> list of non-negative integers"),
}
OPTIONAL_CARD_SCHEMA = {"passed": (lambda v: type(v) is bool, "true or false"), "protocol": (lambda v: type(v) is int, "an integer")}


def validate_card(card, where: str) -> None:
    """Raise ``SiitLoadError`` naming the first card field of a wrong type or out of range."""
    if not isinstance(card, dict):
        raise SiitLoadError(f"{where} must be a JSON object, got {type(card).__name__}")
    for key, (ok, what) in CARD_SCHEMA.items():
        if key not in card:
            raise SiitLoadError(f"{where} lacks {key!r}")
        if not ok(card[key]):
            raise SiitLoadError(f"{where}: field {key} must be {what}, got {card[key]!r:.80}")
    for key, (ok, what) in OPTIONAL_CARD_SCHEMA.items():
        if key in card and not ok(card[key]):
            raise SiitLoadError(f"{where}: field {key} must be {what}, got {card[key]!r:.80}")
    cfg = card["ll_config"]
    allowed = {f.name for f in dataclasses.fields(HookedTransformerConfig)} - _BUILD_LL_FIXED
    for key, (ok, what) in LL_CONFIG_SCHEMA.items():
        if key not in cfg:
            raise SiitLoadError(f"{where}: ll_config lacks {key!r}")
        if not ok(cfg[key]):
            raise SiitLoadError(f"{where}: field ll_config.{key} must be {what}, got {cfg[key]!r:.80} ({type(cfg[key]).__name__})")
    for key, allowed_values in (("act_fn", LL_ACT_FNS), ("normalization_type", LL_NORMS), ("attention_dir", LL_ATTENTION)):
        if key in cfg and cfg[key] not in allowed_values:
            raise SiitLoadError(f"{where}: field ll_config.{key} must be one of {allowed_values}, got {cfg[key]!r:.80}")
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise SiitLoadError(f"{where}: ll_config has fields a HookedTransformerConfig cannot take (or that build_ll sets): {unknown}")


def load(name: str, device: str = "cpu", weights_dir: Path | None = None) -> tuple[HookedTransformer, dict[str, torch.Tensor], dict]:
    """(LL model, aux readout tensors, card). Raises ``SiitLoadError`` on any mismatch."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    wpath, cpath = paths(name, weights_dir)
    if not wpath.exists() or not cpath.exists():
        raise SiitLoadError(f"SIIT task {name!r}: missing {wpath if not wpath.exists() else cpath}; retrain with `python -m siit_training --task {name}`")
    try:
        card = json.loads(cpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SiitLoadError(f"SIIT task {name!r}: card {cpath} is not valid JSON ({err})") from None
    validate_card(card, f"SIIT task {name!r}: card {cpath}")
    if card["card_version"] != CARD_VERSION:
        raise SiitLoadError(f"SIIT task {name!r}: card version {card['card_version']} != {CARD_VERSION}")
    try:
        sd = load_file(str(wpath), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise SiitLoadError(f"SIIT task {name!r}: {wpath} is not a readable safetensors file ({err})") from None
    expected = card["shapes"]
    missing = sorted(set(expected) - set(sd))
    extra = sorted(set(sd) - set(expected))
    if missing or extra:
        raise SiitLoadError(f"SIIT task {name!r}: {wpath} keys differ from its card: missing {missing}, unexpected {extra}")
    bad = [f"{k}: file {list(sd[k].shape)} vs card {expected[k]}" for k in expected if list(sd[k].shape) != expected[k]]
    if bad:
        raise SiitLoadError(f"SIIT task {name!r}: tensor shapes differ from the card: {'; '.join(bad)}")
    try:
        ll = build_ll(card["ll_config"], device="cpu", seed=0)
    except (AssertionError, ValueError, TypeError) as err:
        raise SiitLoadError(f"SIIT task {name!r}: card {cpath}: ll_config builds no model ({type(err).__name__}: {err})") from None
    aux = {k: sd.pop(k) for k in [k for k in sd if k.startswith("aux.")]}
    want = {k for k in ll.state_dict() if is_weight(k)}
    if want != set(sd):
        raise SiitLoadError(
            f"SIIT task {name!r}: weights do not fit the LL config: missing {sorted(want - set(sd))}, unexpected {sorted(set(sd) - want)}"
        )
    try:
        ll.load_state_dict(sd, strict=False)
    except RuntimeError as err:
        raise SiitLoadError(f"SIIT task {name!r}: weights do not fit the LL config ({err})") from None
    for k, v in sd.items():
        if not torch.isfinite(v).all():
            raise SiitLoadError(f"SIIT task {name!r}: tensor {k} has non-finite values")
    ll.to(device, print_details=False)
    ll.eval()
    aux = {k: v.to(device) for k, v in aux.items()}
    return ll, aux, card


def shipped(weights_dir: Path | None = None) -> list[str]:
    """Tasks with a card in the weights folder that passed the bar with cross-length sources.

    A card that cannot be read (not JSON, not an object) is listed too: the task then fails to
    load with the reason, in the leaderboard, instead of silently leaving the suite."""
    d = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    out = []
    for c in sorted(d.glob("*.json")):
        try:
            card = json.loads(c.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            out.append(c.stem)
            continue
        if not isinstance(card, dict):
            out.append(c.stem)
            continue
        # earlier protocols read IIA on same-length sources and the bar on node means
        if card.get("passed") and card.get("protocol") == CARD_PROTOCOL:
            out.append(c.stem)
    return out


def siit_task(name: str, device: str = "cpu", weights_dir: Path | None = None) -> Task:
    """The SIIT task ``siit_<name>`` for tracr program ``program_of(name)``: trained LL model +
    resample ground truth. A variant with redundant nodes (``SIIT_VARIANTS``) is in family
    ``siit_backup`` and declares each redundant set in ``joint_sets``."""
    name = name.removeprefix("siit_")
    ll, aux, card = load(name, device, weights_dir)
    program = program_of(name)
    if card.get("program", program) != program:
        raise SiitLoadError(f"SIIT task {name!r}: card program {card.get('program')!r} is not {program!r}")
    hl = tracr_task(program, device)
    frozen = bool((card.get("hyperparameters") or {}).get("frozen"))
    if frozen != is_compiled(name):  # a compiled circuit never joins the siit family, nor a trained one siit_compiled
        raise SiitLoadError(f"SIIT task {name!r}: card says the circuit was {'frozen at tracr' if frozen else 'trained'}, "
                            f"but {name!r} is {'a compiled-circuit variant' if is_compiled(name) else 'a trained-circuit model'}")
    if card["correspondence"] != correspondence(hl, ll, redundant_of(name), layers_of(name)):
        raise SiitLoadError(f"SIIT task {name!r}: card correspondence does not match the tracr program's circuit"
                            + (f" with redundant nodes {redundant_of(name)}" if redundant_of(name) else ""))
    nodes = ll_nodes(ll, ll_circuit(card["correspondence"]))
    return Task(
        name=f"siit_{name}",
        family=family_of(name),
        model=ll,
        output=hl.output,
        nodes=nodes,
        inputs=hl.inputs,
        encoding=hl.encoding,
        ground_truth="resample",
        info={"label": hl.info.get("label"), "output_values": hl.info.get("output_values"), "aux": aux, "card": card},
        high_level=hl,
        correspondence=card["correspondence"],
        joint_sets=redundant_sets(card["correspondence"]),
    )
