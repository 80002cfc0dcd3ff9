"""Compile tracr programs, convert them to exact HookedTransformers, and cache the weights.

Conversion facts (checked against tracr's own ``model.apply`` by ``tests/test_tracr_exact.py``): bidirectional attention, no
normalisation, relu MLPs, default attention scaling, tracr's zero-padded heads/neurons kept.
The unembedding is built from the residual labels: one-hot onto ``"{label}:{value}"`` for a
categorical output, onto ``"{label}"`` for a numerical one.

Compiled weights are cached as safetensors plus a JSON card under ``$ABENCH_CACHE`` (default
``<repo>/.cache``), so a second run does not recompile (compiling is 3-8 s a program).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

from tasks.base import Task, all_nodes
from tasks.tracr.programs import PROGRAMS, ProgramSpec

CACHE_VERSION = 1


def cache_dir() -> Path:
    return Path(os.environ.get("ABENCH_CACHE", Path(__file__).resolve().parents[2] / ".cache")) / "tracr"


def compile_program(spec: ProgramSpec):
    """Compile ``spec`` with tracr: returns ``(assembled_model, program)``."""
    from tracr.compiler import compiling

    program = spec.build()
    model = compiling.compile_rasp_to_model(
        program, vocab=set(spec.inputs.vocab), max_seq_len=spec.inputs.max_len, compiler_bos="BOS"
    )
    return model, program


def _to_torch(x) -> torch.Tensor:
    return torch.tensor(np.asarray(x), dtype=torch.float32)


def convert(assembled, program, spec: ProgramSpec) -> tuple[dict[str, torch.Tensor], dict]:
    """tracr weights -> (HookedTransformer state dict, card with config and encodings)."""
    p = assembled.params
    mc = assembled.model_config
    labels = list(assembled.residual_labels)
    d_model = len(labels)
    n_heads, d_head = mc.num_heads, mc.key_size
    if spec.output == "categorical":
        out_values = sorted(assembled.output_encoder.encoding_map, key=assembled.output_encoder.encoding_map.get)
        out_labels = [f"{program.label}:{v}" for v in out_values]
    else:
        out_values = None
        out_labels = [program.label]
    W_U = torch.zeros(d_model, len(out_labels))
    for j, lab in enumerate(out_labels):
        W_U[labels.index(lab), j] = 1.0

    sd: dict[str, torch.Tensor] = {
        "embed.W_E": _to_torch(p["token_embed"]["embeddings"]),
        "pos_embed.W_pos": _to_torch(p["pos_embed"]["embeddings"]),
        "unembed.W_U": W_U,
        "unembed.b_U": torch.zeros(len(out_labels)),
    }
    for L in range(mc.num_layers):
        pre = f"transformer/layer_{L}"
        for tl, tr in (("Q", "query"), ("K", "key"), ("V", "value")):
            w = _to_torch(p[f"{pre}/attn/{tr}"]["w"])  # [d, h*k]
            sd[f"blocks.{L}.attn.W_{tl}"] = w.reshape(d_model, n_heads, d_head).permute(1, 0, 2).contiguous()
            sd[f"blocks.{L}.attn.b_{tl}"] = _to_torch(p[f"{pre}/attn/{tr}"]["b"]).reshape(n_heads, d_head)
        sd[f"blocks.{L}.attn.W_O"] = _to_torch(p[f"{pre}/attn/linear"]["w"]).reshape(n_heads, d_head, d_model)
        sd[f"blocks.{L}.attn.b_O"] = _to_torch(p[f"{pre}/attn/linear"]["b"])
        sd[f"blocks.{L}.mlp.W_in"] = _to_torch(p[f"{pre}/mlp/linear_1"]["w"])
        sd[f"blocks.{L}.mlp.b_in"] = _to_torch(p[f"{pre}/mlp/linear_1"]["b"])
        sd[f"blocks.{L}.mlp.W_out"] = _to_torch(p[f"{pre}/mlp/linear_2"]["w"])
        sd[f"blocks.{L}.mlp.b_out"] = _to_torch(p[f"{pre}/mlp/linear_2"]["b"])
    card = {
        "cache_version": CACHE_VERSION,
        "program": spec.name,
        "label": program.label,
        "output": spec.output,
        "output_values": out_values,
        "encoding": {json.dumps(k): v for k, v in assembled.input_encoder.encoding_map.items()},
        "residual_labels": labels,
        "cfg": {
            "n_layers": mc.num_layers,
            "d_model": d_model,
            "n_heads": n_heads,
            "d_head": d_head,
            "d_mlp": mc.mlp_hidden_size,
            "d_vocab": len(assembled.input_encoder.encoding_map),
            "d_vocab_out": len(out_labels),
            "n_ctx": spec.inputs.max_len + 1,
        },
    }
    return sd, card


def build_model(card: dict, sd: dict[str, torch.Tensor], device: str = "cpu") -> HookedTransformer:
    c = card["cfg"]
    cfg = HookedTransformerConfig(
        n_layers=c["n_layers"], d_model=c["d_model"], n_heads=c["n_heads"], d_head=c["d_head"], d_mlp=c["d_mlp"],
        d_vocab=c["d_vocab"], d_vocab_out=c["d_vocab_out"], n_ctx=c["n_ctx"], act_fn="relu",
        normalization_type=None, attention_dir="bidirectional", default_prepend_bos=False, device=device, seed=0,
    )
    model = HookedTransformer(cfg, move_to_device=False)
    missing = model.load_state_dict(sd, strict=False)
    unexpected_params = [k for k in missing.missing_keys if not k.endswith(("IGNORE", ".mask"))]
    if unexpected_params or missing.unexpected_keys:
        raise ValueError(f"tracr weights do not fit the model: missing {unexpected_params}, unexpected {missing.unexpected_keys}")
    model.to(device, print_details=False)
    model.eval()
    return model


def _cache_paths(spec: ProgramSpec) -> tuple[Path, Path]:
    key = hashlib.sha1(
        json.dumps([CACHE_VERSION, spec.name, [repr(v) for v in spec.inputs.vocab], spec.inputs.max_len]).encode()
    ).hexdigest()[:10]
    base = cache_dir() / f"{spec.name}-{key}"
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def load_or_compile(spec: ProgramSpec, cache: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """Converted weights and card of ``spec``: from the cache, else compiled and cached. ``cache=False``:
    compiled every time (a user's program: the cache is keyed by name, vocabulary and length, not by code)."""
    if not cache:
        return convert(*compile_program(spec), spec)
    wpath, cpath = _cache_paths(spec)
    if wpath.exists() and cpath.exists():
        return load_file(str(wpath)), json.loads(cpath.read_text())
    sd, card = convert(*compile_program(spec), spec)
    wpath.parent.mkdir(parents=True, exist_ok=True)
    # Each writer its own temporary name, then an atomic rename: parallel workers (pytest-xdist,
    # two trainings) never read half a file, and never rename each other's temporary away.
    tag = f".{os.getpid()}.tmp"
    wtmp, ctmp = wpath.with_name(wpath.name + tag), cpath.with_name(cpath.name + tag)
    save_file(sd, str(wtmp))
    ctmp.write_text(json.dumps(card, indent=1))
    os.replace(ctmp, cpath)
    os.replace(wtmp, wpath)
    return sd, card


def weights_in_circuit(sd: dict[str, torch.Tensor]):
    """A node is in the circuit when its output weights are non-zero (tracr pads with zeros)."""

    def in_circuit(layer: int, kind: str, head: int | None) -> bool:
        if kind == "attn":
            return bool(sd[f"blocks.{layer}.attn.W_O"][head].abs().sum() > 0 and sd[f"blocks.{layer}.attn.W_V"][head].abs().sum() > 0)
        return bool(sd[f"blocks.{layer}.mlp.W_out"].abs().sum() > 0 and sd[f"blocks.{layer}.mlp.W_in"].abs().sum() > 0)

    return in_circuit


def decode_encoding(card: dict) -> dict:
    return {json.loads(k): v for k, v in card["encoding"].items()}


def tracr_task(name: str, device: str = "cpu") -> Task:
    """The tracr task ``name`` (see ``PROGRAMS``) as a HookedTransformer with circuit labels."""
    return task_of_program(PROGRAMS[name], device=device)


def task_of_program(spec: ProgramSpec, family: str = "tracr", device: str = "cpu", cache: bool = True) -> Task:
    """A compiled program as a task: its circuit the nodes tracr gave non-zero weights (``weights_in_circuit``)."""
    sd, card = load_or_compile(spec, cache=cache)
    model = build_model(card, sd, device)
    return Task(
        name=spec.name,
        family=family,
        model=model,
        output=spec.output,
        nodes=all_nodes(model, weights_in_circuit(sd)),
        inputs=spec.inputs,
        encoding=decode_encoding(card),
        ground_truth="weights",
        info={"label": card["label"], "output_values": card["output_values"]},
    )
