"""A main tracr program P and a bystander program Q over the same inputs, merged into one HookedTransformer.

Both are compiled by tracr (``tasks.tracr.compiled``); their residual streams are direct sums of labelled
one-hot directions. The merged residual holds every label once: the input atoms both programs read
(``tokens:*``, ``indices:*``, ``one``) are shared, every other label belongs to one program and is
named ``"{program}/{label}"`` with tracr's variable ids replaced by their rank in the program
(``canonical_labels``: tracr's ids depend on what was compiled before, the names must not).
Each layer holds P's heads and MLP neurons beside Q's (the shallower program's missing layers are
empty: with no LayerNorm an empty layer is the identity); heads are padded to the larger key size with
``W_Q`` scaled by ``sqrt(d_head / key_size)`` (TransformerLens divides scores by ``sqrt(d_head)``). The
unembedding reads P's output only, so P's output is tracr's on every input, and nothing on P's path reads
Q's labels: Q's variables are live (they vary with the input) and causally irrelevant to the output.

``rotate``: the same model with its residual basis turned by a seeded random orthogonal matrix R (every
write through R, every read through R^T; exact), so the labelled directions are hidden from the basis.
"""

from __future__ import annotations

import math
import re

import torch

from tasks.tracr.compiled import load_or_compile
from tasks.tracr.programs import PROGRAMS

# (main, bystander) pairs over the same inputs; first_frac's output is numerical, the rest categorical. Not
# (length, hist): tracr's length reads the tokens through a query-key product that is the same for every token
# (Select(tokens, tokens, TRUE)), so its weights read the token atoms while a swap of the tokens never moves its
# output, and the ground-truth check (abench/ground_truth.py) fails it (resample AUROC 0.75 over its units).
PAIRS = [("back2", "prev_prev"), ("prev_prev", "first_token"), ("first_token", "back2"), ("after_a", "same_as_prev"),
         ("same_as_first", "prev_is_first"), ("first_frac", "same_as_first"), ("hist", "length"),
         ("count_a", "first_count"), ("mix3", "sum_prev"), ("sum_prev", "mix3")]
SHARED_PREFIXES = ("tokens:", "indices:")
SHARED_LABELS = ("one",)
WRITES = ("embed.W_E", "pos_embed.W_pos")  # [rows, d_model]: written into the residual
PER_LAYER_WRITES = ("attn.W_O", "attn.b_O", "mlp.W_out", "mlp.b_out")
PER_LAYER_READS = ("attn.W_Q", "attn.W_K", "attn.W_V", "mlp.W_in")


def is_shared(label: str) -> bool:
    """Whether a tracr residual label is an input atom both programs read (tokens, positions, ``one``)."""
    return label.startswith(SHARED_PREFIXES) or label in SHARED_LABELS


def _check_same_inputs(p: str, q: str, card_p: dict, card_q: dict) -> None:
    sp, sq = PROGRAMS[p].inputs, PROGRAMS[q].inputs
    if set(sp.vocab) != set(sq.vocab) or sp.max_len != sq.max_len or sp.min_len != sq.min_len:
        raise ValueError(f"programs {p!r} and {q!r} must share their inputs to be merged: vocabulary {sorted(map(str, sp.vocab))} "
                         f"vs {sorted(map(str, sq.vocab))}, lengths {sp.min_len}..{sp.max_len} vs {sq.min_len}..{sq.max_len}")
    if card_p["encoding"] != card_q["encoding"]:
        raise ValueError(f"programs {p!r} and {q!r} encode their tokens differently: {card_p['encoding']} vs {card_q['encoding']}")


_TRACR_ID = re.compile(r"^(.*)_(\d+)$")


def canonical_labels(labels: list[str]) -> list[str]:
    """One program's residual labels with tracr's variable ids replaced by their rank in the program
    (``back2_17:a`` -> ``back2_v0:a``). tracr numbers variables from a counter global to the process, so the
    same program compiled after others gets other ids; the rank (creation order within the program) does not
    change. Shared input atoms (``tokens:*``, ``indices:*``, ``one``) and unnumbered labels are kept."""
    def var(label: str) -> str:
        return label.split(":", 1)[0]

    ids = sorted({(int(m.group(2)), var(lab)) for lab in labels if not is_shared(lab) and (m := _TRACR_ID.match(var(lab)))})
    rank = {v: f"{_TRACR_ID.match(v).group(1)}_v{k}" for k, (_, v) in enumerate(ids)}
    return [lab if var(lab) not in rank else rank[var(lab)] + lab[len(var(lab)):] for lab in labels]


def merged_labels(p: str, q: str, card_p: dict, card_q: dict) -> tuple[list[str], dict[str, str], list[int], list[int]]:
    """The merged residual's labels, each label's owner (``"P"``, ``"Q"`` or ``"shared"``), and the merged
    index of each of P's and of Q's residual dimensions."""
    labels: list[str] = []
    owner: dict[str, str] = {}
    index: dict[str, int] = {}

    def place(program: str, role: str, label: str) -> int:
        name = label if is_shared(label) else f"{program}/{label}"
        if name not in index:
            index[name] = len(labels)
            labels.append(name)
            owner[name] = "shared" if is_shared(label) else role
        return index[name]

    idx_p = [place(p, "P", lab) for lab in canonical_labels(card_p["residual_labels"])]
    idx_q = [place(q, "Q", lab) for lab in canonical_labels(card_q["residual_labels"])]
    return labels, owner, idx_p, idx_q


def merge(p: str, q: str) -> tuple[dict[str, torch.Tensor], dict]:
    """The merged model of main program ``p`` and bystander program ``q`` (names in ``PROGRAMS``): its
    HookedTransformer state dict and a card (``cfg`` for ``tasks.tracr.compiled.build_model``, the merged
    ``residual_labels`` with their ``owner``, P's encodings and output)."""
    if p == q:
        raise ValueError(f"a program cannot be its own bystander: got {p!r} twice")
    for name in (p, q):
        if name not in PROGRAMS:
            raise KeyError(f"unknown tracr program {name!r}; valid: {', '.join(sorted(PROGRAMS))}")
    (sd_p, card_p), (sd_q, card_q) = load_or_compile(PROGRAMS[p]), load_or_compile(PROGRAMS[q])
    _check_same_inputs(p, q, card_p, card_q)
    labels, owner, idx_p, idx_q = merged_labels(p, q, card_p, card_q)
    cp, cq = card_p["cfg"], card_q["cfg"]
    d_model, n_layers = len(labels), max(cp["n_layers"], cq["n_layers"])
    n_heads, d_head, d_mlp = cp["n_heads"] + cq["n_heads"], max(cp["d_head"], cq["d_head"]), cp["d_mlp"] + cq["d_mlp"]
    d_vocab = cp["d_vocab"]
    sd: dict[str, torch.Tensor] = {w: torch.zeros(sd_p[w].shape[0], d_model) for w in WRITES}
    for w in WRITES:  # shared input atoms: both programs must embed them alike
        for src, idx, name in ((sd_p, idx_p, p), (sd_q, idx_q, q)):
            cols = torch.tensor(idx)
            mine = [i for i, c in enumerate(idx) if owner[labels[c]] != "shared" or name == p]
            theirs = [i for i, c in enumerate(idx) if owner[labels[c]] == "shared" and name != p]
            sd[w][:, cols[mine]] = src[w][:, mine]
            if theirs and not torch.allclose(sd[w][:, cols[theirs]], src[w][:, theirs]):
                raise ValueError(f"{w}: programs {p!r} and {q!r} embed a shared input atom differently")
    for layer in range(n_layers):
        pre = f"blocks.{layer}."
        W = {"attn.W_Q": torch.zeros(n_heads, d_model, d_head), "attn.W_K": torch.zeros(n_heads, d_model, d_head),
             "attn.W_V": torch.zeros(n_heads, d_model, d_head), "attn.W_O": torch.zeros(n_heads, d_head, d_model),
             "attn.b_Q": torch.zeros(n_heads, d_head), "attn.b_K": torch.zeros(n_heads, d_head),
             "attn.b_V": torch.zeros(n_heads, d_head), "attn.b_O": torch.zeros(d_model),
             "mlp.W_in": torch.zeros(d_model, d_mlp), "mlp.b_in": torch.zeros(d_mlp),
             "mlp.W_out": torch.zeros(d_mlp, d_model), "mlp.b_out": torch.zeros(d_model)}
        for src, c, idx, head0, neuron0 in ((sd_p, cp, idx_p, 0, 0), (sd_q, cq, idx_q, cp["n_heads"], cp["d_mlp"])):
            if layer >= c["n_layers"]:
                continue  # the shallower program: an empty layer
            cols, k = torch.tensor(idx), c["d_head"]
            heads = slice(head0, head0 + c["n_heads"])
            scale = math.sqrt(d_head / k)
            for m, s in (("Q", scale), ("K", 1.0), ("V", 1.0)):
                W[f"attn.W_{m}"][heads][:, cols, :k] = src[pre + f"attn.W_{m}"] * s
                W[f"attn.b_{m}"][heads, :k] = src[pre + f"attn.b_{m}"] * s
            W["attn.W_O"][heads][:, :k, cols] = src[pre + "attn.W_O"]
            W["attn.b_O"][cols] += src[pre + "attn.b_O"]
            neurons = slice(neuron0, neuron0 + c["d_mlp"])
            W["mlp.W_in"][cols, neurons] = src[pre + "mlp.W_in"]
            W["mlp.b_in"][neurons] = src[pre + "mlp.b_in"]
            W["mlp.W_out"][neurons][:, cols] = src[pre + "mlp.W_out"]
            W["mlp.b_out"][cols] += src[pre + "mlp.b_out"]
        sd.update({pre + k: v for k, v in W.items()})
    sd["unembed.W_U"] = torch.zeros(d_model, cp["d_vocab_out"])
    sd["unembed.W_U"][torch.tensor(idx_p)] = sd_p["unembed.W_U"]  # P's output only
    sd["unembed.b_U"] = sd_p["unembed.b_U"].clone()
    card = {"programs": {"main": p, "bystander": q}, "label": card_p["label"], "output": card_p["output"],
            "output_values": card_p["output_values"], "encoding": card_p["encoding"], "residual_labels": labels,
            "owner": owner, "main_heads": cp["n_heads"], "main_neurons": cp["d_mlp"], "cfg": {"n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "d_head": d_head,
                                    "d_mlp": d_mlp, "d_vocab": d_vocab, "d_vocab_out": cp["d_vocab_out"], "n_ctx": cp["n_ctx"]}}
    return sd, card


def orthogonal(d: int, seed: int) -> torch.Tensor:
    """A seeded random orthogonal ``[d, d]`` matrix (QR of a Gaussian, signs fixed so it is unique)."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None, :]


def rotate(sd: dict[str, torch.Tensor], R: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same model with its residual basis turned by orthogonal ``R [d_model, d_model]``: a residual
    vector x becomes x R, so every write is multiplied by R on the right and every read by R^T on the
    left (exact; computed in float64, returned in each weight's dtype). Atom i's direction in the rotated
    model is ``R[i]``."""
    R = R.double()
    out = {}
    for name, w in sd.items():
        w64 = w.double()
        if name in WRITES or name.endswith(PER_LAYER_WRITES):
            out[name] = w64 @ R
        elif name.endswith(PER_LAYER_READS[:3]):  # [heads, d_model, d_head]
            out[name] = torch.einsum("ji,hjk->hik", R, w64)
        elif name.endswith(PER_LAYER_READS[3]) or name == "unembed.W_U":  # [d_model, ...]
            out[name] = R.T @ w64
        else:
            out[name] = w64
        out[name] = out[name].to(w.dtype)
    return out
