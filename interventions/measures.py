"""Per-cell comparisons of two outputs of the same inputs (the causal-effect definitions).

A cell is one (example, position); callers drop BOS (position 0). The benchmark compares the
clean and the ablated output (``abench/scorers.py``, ``abench/circuit.py``); SIIT evaluation
compares the low-level output with the high-level one (``tasks/siit/evaluate.py``, a cell is
correct when it has not changed, with the card's tolerance).
"""

from __future__ import annotations

import torch

NUMERICAL_THRESHOLD = 0.05  # iit / InterpBench: a numerical prediction "changes" past this


def cell_changed(clean: torch.Tensor, ablated: torch.Tensor, output: str, threshold: float = NUMERICAL_THRESHOLD) -> torch.Tensor:
    """``[b, pos]`` bool: did the prediction change? Categorical: the argmax differs; numerical:
    ``|diff|`` is not within ``threshold`` (a NaN counts as changed)."""
    if output == "categorical":
        return clean.argmax(-1) != ablated.argmax(-1)
    return ~((clean[..., 0] - ablated[..., 0]).abs() <= threshold)


def cell_divergence(clean: torch.Tensor, ablated: torch.Tensor, output: str, clean_logp: torch.Tensor | None = None) -> torch.Tensor:
    """``[b, pos]``: KL(clean || ablated) of the softmaxed outputs, or the squared error.

    ``clean_logp``: ``clean.log_softmax(-1)`` computed once by a caller that compares the same
    clean output with many ablated ones (the same numbers, bit for bit)."""
    if output == "categorical":
        logp = clean.log_softmax(-1) if clean_logp is None else clean_logp
        logq = ablated.log_softmax(-1)
        return (logp.exp() * (logp - logq)).sum(-1)
    return (clean[..., 0] - ablated[..., 0]) ** 2
