"""The auxiliary readouts that keep a SIIT model's bystanders live: their targets (tokens around each
position) and their losses and accuracies (the readout tensors ship with the weights, ``aux.*``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
