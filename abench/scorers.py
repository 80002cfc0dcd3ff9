"""Scorers: per length group and node, the clean and ablated outputs -> the four sums an effect is made of
(``abench.effects.node_effects``). The suite's (``SuiteScorer``), iit's (``IITScorer``) and the logit
difference (``LogitDiffScorer``); ``abench/conventions.py`` says which convention uses which, and the
per-cell measures they sum are in ``interventions/measures.py``."""

from __future__ import annotations

import torch

from ablations.task_data import TaskData
from interventions.measures import NUMERICAL_THRESHOLD, cell_changed, cell_divergence
from interventions.nodes import Node
from interventions.readout import Readout


class SuiteScorer:
    """The suite's effect convention, as a scorer for ``abench.effects.node_effects``.

    ``score`` returns ``(changed cells, cells, summed divergence, cells)`` over the non-BOS cells
    of one length group; the effect is the ratio of the sums over all groups.
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


IIT_EPS = 1e-12  # iit's check_causal_effect denominator guard
IIT_EPS_RELATIVE = 1e-6  # iit's ablate_nodes (relative_change) denominator guard


class LogitDiffScorer:
    """Logit difference between two answer tokens at one position (see the module docstring). It reads
    that position and the group's answer ids only (``readout``): the engine computes nothing else."""

    name = "logit_diff"

    def __init__(self, answers, position: int = -1):
        self.answers_fn, self.position = answers, position
        self._answers: dict[int, torch.Tensor] = {}
        self._readouts: dict[int, Readout] = {}

    def answers(self, data: TaskData, group: int) -> torch.Tensor:
        """``[b, 2]`` (correct, wrong) output ids of the group's prompts."""
        if group not in self._answers:
            self._answers[group] = torch.as_tensor(self.answers_fn(data.tokens[group])).long().to(data.tokens[group].device)
        return self._answers[group]

    def readout(self, data: TaskData, group: int) -> Readout:
        """The scored position and the group's answer ids (one unembedding slice per group, kept)."""
        if group not in self._readouts:
            self._readouts[group] = Readout(positions=(self.position,), vocab=torch.unique(self.answers(data, group)).cpu())
        return self._readouts[group]

    def logit_diff(self, out: torch.Tensor, ans: torch.Tensor) -> torch.Tensor:
        """``out [b, 1, k]`` (the readout's cells) and ``ans [b, 2]`` local ids -> ``[b]``."""
        last = out[:, 0]
        return last.gather(-1, ans[:, :1])[:, 0] - last.gather(-1, ans[:, 1:])[:, 0]

    def score(self, data: TaskData, group: int, node: Node, clean: torch.Tensor, ablated: torch.Tensor):
        """``clean`` and ``ablated``: the cells of ``readout(data, group)``, ``[b, 1, k]``."""
        ans = self.readout(data, group).local_ids(self.answers(data, group))
        ld_c, ld_a = self.logit_diff(clean, ans), self.logit_diff(ablated, ans)
        delta = ld_a - ld_c
        return delta.abs().sum().item(), ld_c.abs().sum().item(), (delta ** 2).sum().item(), ld_c.numel()


class IITScorer:
    """iit's check_causal_effect / check_causal_effect_on_ablation (see the module docstring)."""

    name = "iit"

    def __init__(self, hl_model, output: str, data: TaskData, source: str | None):
        self.output, self.source = output, source
        with torch.no_grad():
            self.hl_base = [hl_model(t) for t in data.tokens]
            if source == "counterfactual":
                self.hl_src = [hl_model(t) for t in data.cf_tokens]
            elif source == "same_length":
                self.hl_src = [h[p] for h, p in zip(self.hl_base, data.perms)]
            elif source == "resample":  # the HL outputs of the rows' own resample sources
                self.hl_src = [data.from_sources(self.hl_base, g) for g in range(data.n_groups)]
            else:
                self.hl_src = None
        self.suite = SuiteScorer()

    def cell_ratio(self, clean: torch.Tensor, ablated: torch.Tensor, hl_base: torch.Tensor, hl_src: torch.Tensor | None) -> float:
        """One batch's iit number (a Python float)."""
        if self.output == "categorical":
            label = hl_base.argmax(-1)[:, 1:]
            ll_out = ablated.argmax(-1)[:, 1:]
            ll_wrong = ll_out != label
            if hl_src is not None:
                counted = hl_src.argmax(-1)[:, 1:] != label
            else:
                counted = clean.argmax(-1)[:, 1:] == label
        else:
            label = hl_base[..., 0].float()
            ll_wrong = ~torch.isclose(ablated[..., 0].float(), label, atol=NUMERICAL_THRESHOLD)
            if hl_src is not None:
                counted = hl_src[..., 0].float() != label
            else:
                counted = torch.isclose(clean[..., 0].float(), label, atol=NUMERICAL_THRESHOLD)
        hits = (counted & ll_wrong).float().sum()
        if hl_src is not None:  # check_causal_effect: Python floats
            return hits.item() / (counted.float().sum().item() + IIT_EPS)
        return (hits / (counted.float().sum() + IIT_EPS_RELATIVE)).item()  # ablate_nodes: a float32 tensor ratio

    def score(self, data: TaskData, group: int, node: Node, clean: torch.Tensor, ablated: torch.Tensor):
        ratio = self.cell_ratio(clean, ablated, self.hl_base[group], None if self.hl_src is None else self.hl_src[group])
        _, _, cont, cells = self.suite.score(data, group, node, clean, ablated)
        return ratio, 1, cont, cells
