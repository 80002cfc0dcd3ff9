"""The suite's effect convention as a scorer (the per-cell measures it sums are in ``interventions/measures.py``; the other conventions' scorers are in ``abench/conventions.py``)."""

from __future__ import annotations

import torch

from interventions.measures import cell_changed, cell_divergence


class SuiteScorer:
    """The suite's effect convention, as a scorer for ``abench.effects.node_effects``.

    ``score`` returns ``(changed cells, cells, summed divergence, cells)`` over the non-BOS cells
    of one length group; the effect is the ratio of the sums over all groups. Other conventions
    (iit's, logit difference) are in ``abench.conventions``.
    """

    name = "suite"

    def __init__(self) -> None:
        self._clean_logp: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # group -> (clean, its log-probs)

    def score(self, data, group: int, node, clean: torch.Tensor, ablated: torch.Tensor) -> tuple[float, int, float, int]:
        cells = clean.shape[0] * (clean.shape[1] - 1)
        if ablated is clean:  # a skipped node (its replacement was its clean activation): nothing changed
            return 0, cells, 0.0, cells
        logp = None
        if data.output == "categorical":  # the clean log-probs once per group, not once per node
            cached = self._clean_logp.get(group)
            if cached is None or cached[0] is not clean:
                cached = self._clean_logp[group] = (clean, clean.log_softmax(-1))
            logp = cached[1]
        return (cell_changed(clean, ablated, data.output)[:, 1:].sum().item(), cells,
                cell_divergence(clean, ablated, data.output, logp)[:, 1:].sum().item(), cells)
