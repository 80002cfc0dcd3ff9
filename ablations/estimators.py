"""Attribution patching: linear estimates of a replacement method's single-node effects.

``atp[<method>]`` and ``atp_ig[<method>,steps=k]`` wrap a registered method that produces a
replacement (``zero``, ``mean``, ``resample``, ... and plugins). They are not new ablations: their
replacement is the wrapped method's (``ablate`` delegates, so joint ablation and the method checks
see that method), and their leaderboard row holds the *estimated* effect of replacing each node,
beside the exact effect of the same replacement on the same metric (``abench.attribution``).

- ``atp``: the gradient of the metric at the clean run dotted with (replacement - clean), one
  forward and one backward for every node (Nanda 2023; Kramar et al. 2024).
- ``atp_ig``: the gradient averaged at ``k`` midpoints of the path from the clean run to the
  replacement, every node moved together (EAP-IG, Hanna et al. 2024); ``k`` forwards and backwards.

AtP* (Kramar et al. 2024) corrections for the suite's nodes (a head's output ``hook_z`` and an
MLP's output ``hook_post``):

- **QK fix: does not apply.** It corrects the linearisation of a head's attention softmax when the
  node *is* that head's query or key (a change of the scores saturates the pattern). Here a node
  is what a head or MLP writes: the node's own softmax is upstream of it and never moves; the
  softmaxes downstream are linearised like every other downstream nonlinearity (AtP* does the same
  for non-QK nodes).
- **GradDrop: applies** to any node (it targets cancellation between downstream paths, whatever
  the node). It is not implemented as a row yet: it changes the ranking score (a sum of absolute
  per-layer estimates), not the estimated effect, so it has no exact counterpart on one scale.
"""

from __future__ import annotations

import torch

from ablations.base import AblationMethod, NodeBatch, TaskData, make_method, param, register
from interventions.attribution import path_points
from interventions.methodspec import parse_spec


def _inner(method: str) -> AblationMethod:
    spec = parse_spec(str(method))
    if spec is None or spec.bracketed:
        # a bracketed inner spec would not survive this method's own bracket syntax (``atp[a[b]]``)
        raise ValueError(f"method must be a plain registered name such as zero, mean or resample, got {method!r}")
    if spec.name in ("atp", "atp_ig"):
        raise ValueError(f"method {method!r} is itself an estimate: estimate a replacement method")
    return make_method(spec.name)


class Estimator(AblationMethod):
    """Base of the attribution estimators: wraps the method whose effects it estimates (``inner``)."""

    flag_param = "method"  # ``atp[zero]``: the bare word is the wrapped method

    def __init__(self, method: str = "zero"):
        self.inner = _inner(method)

    @property
    def alphas(self) -> list[float]:
        """Points on the clean -> replacement path where the gradient is taken."""
        raise NotImplementedError

    def fit(self, data: TaskData) -> "Estimator":
        self.inner.fit(data)
        return self

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        return self.inner.ablate(batch)


@register("atp")
class AtP(Estimator):
    """Attribution patching: the gradient at the clean run dotted with (replacement - clean)."""

    @property
    def name(self) -> str:
        return f"{self.base_name}[{self.inner.name}]"

    @property
    def alphas(self) -> list[float]:
        return [0.0]


@register("atp_ig")
class AtPIntegratedGradients(Estimator):
    """Integrated gradients: the gradient averaged at ``steps`` midpoints of the path clean -> replacement."""

    def __init__(self, method: str = "zero", steps: int = 5):
        super().__init__(method)
        self.steps = param(steps, "steps", int, low=1)

    @property
    def name(self) -> str:
        return f"{self.base_name}[{self.inner.name},steps={self.steps}]"

    @property
    def alphas(self) -> list[float]:
        return path_points(self.steps)
