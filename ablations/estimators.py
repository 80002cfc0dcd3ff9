"""Attribution patching: linear estimates of a replacement method's single-node effects.

``atp[<method>]``, ``atp_ig[<method>,steps=k]`` and ``atp_gd[<method>]`` wrap a registered method that produces a
replacement (``zero``, ``mean``, ``resample``, ... and plugins). They are not new ablations: their
replacement is the wrapped method's (``ablate`` delegates, so joint ablation and the method checks
see that method), and their leaderboard row holds the *estimated* effect of replacing each node,
beside the exact effect of the same replacement on the same metric (``abench.estimator_rows``).

- ``atp``: the gradient of the metric at the clean run dotted with (replacement - clean), one
  forward and one backward for every node (Nanda 2023; Kramar et al. 2024).
- ``atp_ig``: the gradient averaged at ``k`` midpoints of the path from the clean run to the
  replacement, every node moved together (EAP-IG, Hanna et al. 2024); ``k`` forwards and backwards.
- ``atp_gd``: AtP*'s GradDrop (Kramar et al. 2024), ``sum_l |AtP_{-l}| / (L - 1)`` per cell over
  the model's ``L`` layers, ``AtP_{-l}`` the AtP estimate with no gradient flowing back through
  block ``l``'s attention and MLP (``interventions.linear_estimates.graddrop_estimates`` says what a
  layer at or below the node's own contributes); one forward and backward per layer. It is a
  magnitude (no sign), scored against the exact ``|change|`` per cell: ``|AtP|`` where each of the
  node's paths crosses exactly one later block, ``L / (L - 1) * |AtP|`` where the node acts only
  directly, and not near 0 where the node's downstream paths cancel in the plain gradient.

AtP* (Kramar et al. 2024) corrections for the suite's nodes (a head's output ``hook_z`` and an
MLP's output ``hook_post``):

- **QK fix: does not apply.** It corrects the linearisation of a head's attention softmax when the
  node *is* that head's query or key (a change of the scores saturates the pattern). Here a node
  is what a head or MLP writes: the node's own softmax is upstream of it and never moves; the
  softmaxes downstream are linearised like every other downstream nonlinearity (AtP* does the same
  for non-QK nodes).
- **GradDrop: applies** to any node (it targets cancellation between downstream paths, whatever
  the node): ``atp_gd``. Its score is a ranking score rather than an estimate of the change, but it
  is on the scale of ``|AtP|`` per cell (above), so the row sets it beside the mean exact
  ``|change|`` per cell like the other estimators.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from transformer_lens import HookedTransformer

from ablations.base import REGISTRY, AblationMethod, NodeBatch, make_method, param, register
from ablations.task_data import TaskData
from interventions.linear_estimates import CellMetric, attribution_estimates, graddrop_estimates, path_points
from interventions.methodspec import parse_spec
from interventions.nodes import Node


def is_estimator(method: str) -> bool:
    """Whether ``method`` (a spec such as ``atp[zero]``) names a registered attribution estimator."""
    spec = parse_spec(str(method))
    factory = REGISTRY.get(spec.name) if spec is not None else None
    return isinstance(factory, type) and issubclass(factory, Estimator)


def _inner(method: str) -> AblationMethod:
    spec = parse_spec(str(method))
    if spec is None or spec.bracketed:
        # a bracketed inner spec would not survive this method's own bracket syntax (``atp[a[b]]``)
        raise ValueError(f"method must be a plain registered name such as zero, mean or resample, got {method!r}")
    if is_estimator(spec.name):
        raise ValueError(f"method {method!r} is itself an estimate: estimate a replacement method")
    return make_method(spec.name)


class Estimator(AblationMethod):
    """Base of the attribution estimators: wraps the method whose effects it estimates (``inner``)."""

    flag_param = "method"  # ``atp[zero]``: the bare word is the wrapped method
    signed = True  # per-cell values estimate the signed change of the metric (False: a magnitude)

    def __init__(self, method: str = "zero"):
        self.inner = _inner(method)

    @property
    def method(self) -> str:
        """The name of the wrapped method (the ``method`` parameter, as ``get_params`` reports it)."""
        return self.inner.name

    @property
    def name(self) -> str:
        return f"{self.base_name}[{self.inner.name}]"

    @property
    def alphas(self) -> list[float]:
        """Points on the clean -> replacement path where the gradient is taken."""
        raise NotImplementedError

    def estimate(self, model: HookedTransformer, resid_pre: Mapping[int, torch.Tensor], nodes: Sequence[Node],
                 deltas: Mapping[str, torch.Tensor], metric: CellMetric, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        """Per node the value at every scored cell, ``{node: [b, P]}`` (``interventions.linear_estimates.CellEstimate``)."""
        return attribution_estimates(model, resid_pre, nodes, deltas, metric, positions, self.alphas)

    def fit(self, data: TaskData) -> "Estimator":
        self.inner.fit(data)
        return self

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        return self.inner.ablate(batch)


@register("atp")
class AtP(Estimator):
    """Attribution patching: the gradient at the clean run dotted with (replacement - clean)."""

    @property
    def alphas(self) -> list[float]:
        return [0.0]


@register("atp_gd")
class AtPGradDrop(Estimator):
    """AtP*'s GradDrop: ``sum_l |AtP_{-l}| / (L - 1)`` per cell (``interventions.linear_estimates.graddrop_estimates``)."""

    signed = False

    @property
    def alphas(self) -> list[float]:
        return [0.0]  # each AtP_{-l} takes its gradient at the clean run

    def estimate(self, model: HookedTransformer, resid_pre: Mapping[int, torch.Tensor], nodes: Sequence[Node],
                 deltas: Mapping[str, torch.Tensor], metric: CellMetric, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        return graddrop_estimates(model, resid_pre, nodes, deltas, metric, positions)


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
