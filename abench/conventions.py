"""Effect conventions: how the ablated outputs of one node become its effect.

A *scorer* turns, per length group and node, the clean and ablated outputs into four sums
``(effect numerator, effect denominator, continuous numerator, continuous denominator)``;
``abench.effects.node_effects`` adds them over the groups and divides. Three scorers:

- ``suite`` (default; ``abench.scorers.SuiteScorer``; every scorer is in ``abench/scorers.py``): the fraction of (example, position)
  cells, BOS excluded, whose prediction changes against the clean low-level (LL) output (argmax
  for categorical outputs, |change| > 0.05 for numerical ones), pooled over all cells of all
  groups; continuous: mean KL(clean || ablated) or squared error per cell.
- ``iit`` (``--effect-convention iit``; ``IITScorer``): the number ``iit``'s evaluation reports
  (``iit.utils.eval_ablations``). It needs high-level (HL) labels: SIIT tasks have their tracr
  model, a tracr task is its own HL model (compiled exactly), a user task may give ``high_level``.

  * Methods that patch from a source (``resample``, ``scaled_resample``, ``pca_resample``: the
    row's resample source; ``resample_same_length``: the same-length derangement; ``cf_patch``:
    the counterfactual: each method class says so in ``iit_source``, as a plugin may) follow ``check_causal_effect``: only the
    cells whose HL label differs between the base and its source count, and a cell scores when
    the ablated LL prediction differs from the base's HL label (not from the clean LL output).
  * Every other method (zero, mean, ...) follows ``check_causal_effect_on_ablation``
    (``ablate_nodes``, relative change): only the cells where the clean LL prediction equals
    the HL label count, and a cell scores when the ablated prediction no longer does.

  Categorical outputs compare argmaxes with BOS excluded (iit's tracr label index ``[:, 1:]``);
  numerical outputs use ``torch.isclose(atol=0.05)`` with BOS included, and the source's label
  "differs" when it is not exactly equal. The ratio is taken per batch (here: per length group,
  iit: per loader batch) with iit's ``+ 1e-12`` (``+ 1e-6`` for the relative-change form) in the
  denominator, then averaged over batches with equal weight. The continuous effect stays the
  suite's. Tasks without HL labels keep the suite's convention and say why in the row
  (``effect_convention_note``).

  Differences from ``suite``: the denominator (label-changing or correctly predicted cells, not
  all cells), the reference (HL label, not clean LL output), BOS for numerical outputs, and the
  per-batch average. For an exactly faithful model (LL = HL on every cell and interchange) a
  resample effect is the fraction of label-changing cells whose HL output moves under the node's
  interchange.
- ``logit_diff`` (next-token tasks, ``task.scoring``; ``LogitDiffScorer``): the logit
  difference LD = logit[correct] - logit[wrong] at the final position; effect = sum |LD_ablated -
  LD_clean| / sum |LD_clean| over the prompts (the fraction of the clean logit difference moved),
  continuous = mean (LD_ablated - LD_clean)^2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from abench.scorers import IITScorer, LogitDiffScorer, SuiteScorer
from ablations.base import AblationMethod, NodeBatch
from ablations.task_data import TaskData
from tasks.base import Task

CONVENTIONS = {
    "suite": "suite: fraction of non-BOS cells whose prediction changes against the clean output, pooled over all cells "
    "(unconditional: iit conditions on cells whose label the source would change)",
    "iit": "iit convention (--effect-convention iit), which replaces that: iit's check_causal_effect for source methods "
    "(only cells whose high-level label differs between base and source; ablated output vs the base's high-level label) "
    "and check_causal_effect_on_ablation for the others (only cells the clean model gets right); per-batch ratios "
    "averaged; numerical: isclose atol 0.05, BOS included; tasks without high-level labels keep the suite's convention",
}
DEFAULT_CONVENTION = "suite"

class AtPositions(AblationMethod):
    """Ablate only at ``position`` (e.g. -1, the final token); the clean activation elsewhere."""

    def __init__(self, inner: AblationMethod, position: int = -1):
        self.inner, self.position = inner, position

    @property
    def name(self) -> str:
        return self.inner.name

    def fit(self, data: TaskData) -> "AtPositions":
        self.inner.fit(data)
        return self

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        value = self.inner.ablate(batch)
        if not isinstance(value, torch.Tensor) or value.shape != batch.clean.shape:
            return value  # the engine reports the bad value
        out = batch.clean.clone()
        out[:, self.position] = value[:, self.position]
        return out


@dataclass
class EffectSetup:
    """What ``bench.run_row`` measures a method with on one task: the (possibly position-restricted)
    method, the scorer, and the row fields that record the convention."""

    method: AblationMethod
    scorer: object
    row_info: dict = field(default_factory=dict)


def high_level_model(task: Task):
    """The model whose outputs are the task's HL labels, and why (or None and the reason)."""
    if task.high_level is not None:
        return task.high_level.model, "its high-level model"
    if task.family == "tracr":
        return task.model, "a tracr model is its own high-level model (compiled exactly)"
    return None, f"task {task.name!r} has no high-level model (iit's convention compares with high-level labels)"


def effect_setup(task: Task, method: AblationMethod, data: TaskData, convention: str = DEFAULT_CONVENTION) -> EffectSetup:
    """The scorer and method for ``task`` under ``convention`` (``suite`` or ``iit``)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown effect convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
    if task.ablate_at == "final":
        method = AtPositions(method, -1)
    scoring = task.scoring
    info = {"effect_convention": convention, "effect_convention_note": None}
    if scoring is not None:
        info["effect_convention"] = "logit_diff"
        if convention == "iit":
            info["effect_convention_note"] = "iit's convention needs high-level labels; this next-token task is scored by its logit difference"
        return EffectSetup(method, LogitDiffScorer(scoring.answers, scoring.position), info)
    if convention == "iit":
        hl, why = high_level_model(task)
        if hl is None:
            info.update(effect_convention="suite", effect_convention_note=f"{why}: the suite's convention is used")
            return EffectSetup(method, SuiteScorer(), info)
        inner = method.inner if isinstance(method, AtPositions) else method
        source = getattr(inner, "iit_source", None)  # where the method's replacement comes from (AblationMethod.iit_source)
        form = "check_causal_effect" if source else "check_causal_effect_on_ablation"
        info["effect_convention_note"] = f"iit {form}" + (f" ({source} source)" if source else "") + f"; labels: {why}"
        return EffectSetup(method, IITScorer(hl, task.output, data, source), info)
    return EffectSetup(method, SuiteScorer(), info)
