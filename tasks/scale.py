"""The ``scale`` family: seeded random-weight models at real shapes, for cost only.

Three shapes researchers ablate: gpt2-small (12 layers x 12 heads, d_model 768), Pythia-70m
(6 x 8, d_model 512, rotary, attention and MLP in parallel: the engine's fallback path) and a small
Llama-style model (grouped-query attention, 8 query heads over 2 key/value heads, gated MLP,
RMSNorm, rotary: also the fallback path). Inputs are random tokens of a few lengths.

Scored as researchers score such models (IOI on gpt2-small): the logit difference at the final
position between two answers, here the prompt's first token (correct) and its second (wrong)
(``task.scoring``; ``abench.scorers.LogitDiffScorer``), so the engine computes one position and two
unembedding columns per prompt (``interventions.readout``).

There is no circuit in random weights: every node is out of the circuit, the ground truth is
``none``, and these tasks are measured for time and memory only (``benchmarks/test_scale.py``,
``scripts/scale_cost.py``), never scored for separability nor pooled. ``width`` divides every
width (d_head, d_mlp, d_vocab) and keeps the architecture (layers, heads, key/value heads, block
kind): the CPU tests' reduced versions of the same shapes.
"""

from __future__ import annotations

import random

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interventions.nodes import all_nodes
from tasks.base import InputSpec, LogitDiffScoring, Task, describe_ground_truth

FAMILY = "scale"
GROUND_TRUTH = "none"
LENGTHS = (32, 128)  # input tokens per sequence, BOS excluded
SEED = 0

SHAPES: dict[str, dict] = {
    "gpt2_small": dict(n_layers=12, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=1024, act_fn="gelu_new",
                       normalization_type="LN", positional_embedding_type="standard", original_architecture="GPT2LMHeadModel"),
    "pythia_70m": dict(n_layers=6, n_heads=8, d_head=64, d_mlp=2048, d_vocab=50304, n_ctx=2048, act_fn="gelu",
                       normalization_type="LN", positional_embedding_type="rotary", rotary_dim=16, parallel_attn_mlp=True,
                       original_architecture="GPTNeoXForCausalLM"),
    "llama_gqa": dict(n_layers=4, n_heads=8, n_key_value_heads=2, d_head=64, d_mlp=1408, d_vocab=32000, n_ctx=2048,
                      act_fn="silu", normalization_type="RMS", final_rms=True, gated_mlp=True,
                      positional_embedding_type="rotary", rotary_dim=64, original_architecture="LlamaForCausalLM"),
}

describe_ground_truth(GROUND_TRUTH, "none: random weights at a real model's shape, measured for time and memory only "
                      "(never scored for separability, never pooled)")


def scale_config(shape: str, width: int = 1, device: str = "cpu") -> HookedTransformerConfig:
    """The shape's config; ``width > 1`` divides d_head, d_mlp and d_vocab by it (the rotary dimension
    with d_head), keeping layers, heads, key/value heads and the block kind."""
    if shape not in SHAPES:
        raise KeyError(f"unknown scale shape {shape!r}; valid: {', '.join(SHAPES)}")
    kw = dict(SHAPES[shape])
    if width > 1:
        for key in ("d_head", "d_mlp", "d_vocab", "rotary_dim"):
            if key in kw:
                kw[key] = max(2, kw[key] // width)
    kw["d_model"] = kw["n_heads"] * kw["d_head"]
    return HookedTransformerConfig(**kw, seed=SEED, init_weights=True, device=device, model_name=f"scale_{shape}")


def scale_model(shape: str, width: int = 1, device: str = "cpu") -> HookedTransformer:
    """Seeded random weights at the shape (the same weights on every call)."""
    torch.manual_seed(SEED)  # the config's seed seeds the init; this keeps the global state deterministic too
    model = HookedTransformer(scale_config(shape, width, device))
    model.eval()
    return model


def scale_task(shape: str, device: str = "cpu", width: int = 1, lengths=LENGTHS) -> Task:
    """A cost-only task on the shape: every head and MLP a node (none in a circuit), random tokens of ``lengths``."""
    model = scale_model(shape, width, device)
    vocab_size = model.cfg.d_vocab - 1  # the last id is BOS

    def sample(rng: random.Random, length: int) -> list[int]:
        return [rng.randrange(vocab_size) for _ in range(length)]

    def edit(rng: random.Random, seq: list[int]) -> list[int]:
        out = list(seq)
        i = rng.randrange(len(out))
        out[i] = (out[i] + 1 + rng.randrange(vocab_size - 1)) % vocab_size  # any other token
        return out

    inputs = InputSpec(vocab=range(vocab_size), max_len=max(lengths), min_len=min(lengths), sample=sample, edit=edit,
                       lengths=tuple(lengths))
    encoding = _Identity(vocab_size)
    name = f"scale_{shape}" if width == 1 else f"scale_{shape}_w{width}"
    return Task(name=name, family=FAMILY, model=model, output="categorical", nodes=all_nodes(model, lambda *a: False),
                inputs=inputs, encoding=encoding, ground_truth=GROUND_TRUTH, scoring=LogitDiffScoring(first_two_tokens),
                info={"cost_only": True, "shape": shape, "width": width})


def first_two_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """``tokens [n, L + 1]`` (BOS first) -> ``[n, 2]``: the (correct, wrong) answers, the prompt's first two tokens."""
    return tokens[:, 1:3]


class _Identity(dict):
    """Token id -> itself, ``BOS`` -> the last id, without a 50k-entry dict."""

    def __init__(self, vocab_size: int):
        super().__init__(BOS=vocab_size)
        self.vocab_size = vocab_size

    def __missing__(self, key):
        if isinstance(key, int) and 0 <= key < self.vocab_size:
            return key
        raise KeyError(key)


def is_cost_only(family: str) -> bool:
    """Whether a family's tasks are measured for cost only (no ground truth, no separability)."""
    return family == FAMILY


def random_tokens(task: Task, batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``([batch, length + 1], same)``: random tokens after BOS and, row for row, one token edited."""
    rng = random.Random(seed)
    seqs = [task.inputs.draw(rng, length) for _ in range(batch)]
    return task.encode(seqs), task.encode([task.inputs.counterfactual(rng, s) for s in seqs])
