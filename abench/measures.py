"""Per-cell comparisons of clean and ablated outputs (the causal-effect definitions).

A cell is one (example, position); BOS (position 0) is excluded by the callers.
"""

from __future__ import annotations

import torch

NUMERICAL_THRESHOLD = 0.05  # iit / InterpBench: a numerical prediction "changes" past this


def cell_changed(clean: torch.Tensor, ablated: torch.Tensor, output: str) -> torch.Tensor:
    """``[b, pos]`` bool: did the prediction change? (argmax for categorical, |diff| > 0.05 numerical)."""
    if output == "categorical":
        return clean.argmax(-1) != ablated.argmax(-1)
    return (clean[..., 0] - ablated[..., 0]).abs() > NUMERICAL_THRESHOLD


def cell_divergence(clean: torch.Tensor, ablated: torch.Tensor, output: str) -> torch.Tensor:
    """``[b, pos]``: KL(clean || ablated) of the softmaxed outputs, or the squared error."""
    if output == "categorical":
        logp = clean.log_softmax(-1)
        logq = ablated.log_softmax(-1)
        return (logp.exp() * (logp - logq)).sum(-1)
    return (clean[..., 0] - ablated[..., 0]) ** 2


class SuiteScorer:
    """The suite's effect convention, as a scorer for ``abench.effects.node_effects``.

    ``score`` returns ``(changed cells, cells, summed divergence, cells)`` over the non-BOS cells
    of one length group; the effect is the ratio of the sums over all groups. Other conventions
    (iit's, logit difference) are in ``abench.conventions``.
    """

    name = "suite"

    def score(self, data, group: int, node, clean: torch.Tensor, ablated: torch.Tensor) -> tuple[float, int, float, int]:
        cells = clean.shape[0] * (clean.shape[1] - 1)
        return (cell_changed(clean, ablated, data.output)[:, 1:].sum().item(), cells,
                cell_divergence(clean, ablated, data.output)[:, 1:].sum().item(), cells)
