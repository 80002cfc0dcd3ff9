"""Which SIIT models exist and what they are: per-program LL overrides, the variants built on a program
under another name (wide, backup, compiled, the realism axes) and the family each model belongs to."""

from __future__ import annotations

# Per-program overrides of the LL architecture: reverse gets 5 heads; the numerical programs a wider
# residual (why, from the runs that needed them: docs/siit-models.md).
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
# ``arch``: the variant's LL architecture overrides (over the program's ARCH_OVERRIDES); the ``*_wide``
# models are the larger ones (>= 40 LL nodes: 4 layers x 9 heads + 4 MLPs, a wider residual).
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
    # compiled-circuit models (``compiled``): the in-circuit nodes are tracr's compiled weights, kept frozen;
    # only the bystanders are SIIT-trained (``siit_training/warm_start.py``). Their own family, never pooled with ``siit``.
    "count_less_freq_compiled": {"program": "count_less_freq", "compiled": True},
    "frac_prevs_compiled": {"program": "frac_prevs", "compiled": True},
}
BACKUP_FAMILY = "siit_backup"
COMPILED_FAMILY = "siit_compiled"
# Realism axes: models shaped like the ones researchers ablate, each axis its own family (never pooled
# with ``siit``), under the same bar. ``norm``: pre-LayerNorm (gpt2) or pre-RMSNorm (Llama); ``causal``:
# a causal mask, on programs whose every node at a position reads only that position and earlier ones
# (``tests/test_siit.py`` checks it on the tracr model); ``deep``: 6 layers, the circuit in the layers of
# ``layers`` (HL layer i -> LL layer layers[i]), bystander layers before, between and after it; 2 heads per
# layer (with 4, 28-29 bystanders around a 1-2 node circuit did not train within 1200 s: docs/siit-models.md).
NORM_FAMILY, CAUSAL_FAMILY, DEEP_FAMILY = "siit_norm", "siit_causal", "siit_deep"
REALISM_FAMILIES = (NORM_FAMILY, CAUSAL_FAMILY, DEEP_FAMILY, BACKUP_FAMILY)
_LN, _RMS, _CAUSAL = {"normalization_type": "LN"}, {"normalization_type": "RMS"}, {"attention_dir": "causal"}
for _program in ("back2", "first_token", "prev_prev", "frac_prevs"):
    SIIT_VARIANTS[f"{_program}_ln"] = {"program": _program, "arch": _LN, "family": NORM_FAMILY}
    SIIT_VARIANTS[f"{_program}_rms"] = {"program": _program, "arch": _RMS, "family": NORM_FAMILY}
for _program in ("prev_token", "back2", "first_token", "prev_prev", "frac_prevs", "sum_prev"):
    SIIT_VARIANTS[f"{_program}_causal"] = {"program": _program, "arch": _CAUSAL, "family": CAUSAL_FAMILY}
for _program, _layers in (("back2", [2]), ("first_token", [3]), ("prev_prev", [1, 4]), ("length", [2]), ("frac_prevs", [1, 4])):
    SIIT_VARIANTS[f"{_program}_deep"] = {"program": _program, "arch": {"n_layers": 6, "n_heads": 2}, "layers": _layers, "family": DEEP_FAMILY}


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
