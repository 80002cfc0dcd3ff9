"""Constant and resampling ablations (each class states its definition; the README's method table cites the sources)."""

from __future__ import annotations

import torch

from ablations.base import AblationMethod, NodeBatch, param, register
from ablations.task_data import TaskData


def _fill(value: torch.Tensor, batch: NodeBatch) -> torch.Tensor:
    """A per-node constant ``[d]`` or per-position constant ``[pos, d]`` broadcast to ``batch.clean``."""
    if value.dim() == 2:
        value = value[: batch.clean.shape[1]]
    return value.to(batch.clean).expand_as(batch.clean).clone()


@register("zero")
class Zero(AblationMethod):
    """Replace the activation by 0. Source: ACDC (Conmy et al. 2023), most tools."""

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        return torch.zeros_like(batch.clean)


@register("mean")
class Mean(AblationMethod):
    """Replace by the mean activation over the task distribution, averaged over positions too.

    Source: IOI paper (Wang et al. 2022); MIB "mean".
    """

    def fit(self, data: TaskData) -> "Mean":
        self.means_ = {n.name: data.cells(n.name).mean(0) for n in data.nodes}
        return self

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        return _fill(self.means_[batch.node.name], batch)


@register("position_mean")
class PositionMean(AblationMethod):
    """Replace by the mean activation at the same position over the task distribution.

    Source: auto-circuit TOKENWISE_MEAN_CLEAN; MIB "mean-positional"; iit ``get_mean_cache``.
    """

    counterfactual = False

    def fit(self, data: TaskData) -> "PositionMean":
        self.means_ = {
            n.name: torch.stack([a.mean(0) for a in data.per_position(n.name, self.counterfactual)]) for n in data.nodes
        }
        return self

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        return _fill(self.means_[batch.node.name], batch)


@register("cf_mean")
class CounterfactualMean(PositionMean):
    """Replace by the per-position mean over the counterfactual distribution D' (each task's
    minimal one-token edits of its inputs).

    Source: auto-circuit TOKENWISE_MEAN_CORRUPT; Li & Janson 2024 "cf".
    """

    counterfactual = True


@register("resample")
class Resample(AblationMethod):
    """Replace by the activation on another input ``x'`` (never the input itself).

    ``x'`` has a length drawn uniformly from the allowed lengths >= the base's (its first L + 1
    positions are patched): the interchange distribution SIIT models are trained and checked
    on, and the reference method of the SIIT family. Source: causal scrubbing (Chan et al.
    2022); iit default; InterpBench.
    """

    iit_source = "resample"

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        return batch.source.clone()


@register("resample_same_length")
class ResampleSameLength(AblationMethod):
    """Replace by the activation on another input of the base's own length (a derangement of the batch).

    Blind spot, kept on purpose as a finding: a node that computes something constant within
    one length (the input length itself) gets the same value back and scores 0, however much
    the model uses it.
    """

    iit_source = "same_length"

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        return batch.source_same_length.clone()


@register("cf_patch")
class CounterfactualPatch(AblationMethod):
    """Replace by the activation on a minimal edit of the same input (aligned positions).

    Source: Zhang & Nanda 2023; Heimersheim & Nanda 2024 (activation patching).
    """

    iit_source = "counterfactual"

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        return batch.counterfactual.clone()


SCALE_SWEEP = (0, 0.1, 0.2, 0.5, 0.7, 0.8, 1, 1.2, 1.4, 2, 5, 10)


@register("scaled_resample")
class ScaledResample(AblationMethod):
    """Replace by ``s * a(x')``, ``x'`` the resample source (of any length >= the base's, as
    ``resample``). ``s=1`` is resample, ``s=0`` zero.

    Source: InterpBench notebook on case 3 (scale sweep 0 ... 10).
    """

    iit_source = "resample"

    def __init__(self, s: float = 0.5):
        self.s = param(s, "s")

    @property
    def name(self) -> str:
        return f"{self.base_name}[s={self.s:g}]"

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        return self.s * batch.source


@register("noise")
class GaussianNoise(AblationMethod):
    """Add ``eps ~ N(0, (scale * sigma)^2)``, sigma the node's empirical activation std (scale 3).

    Source: causal tracing (Meng et al. 2022). Seeded per (node, batch).
    """

    def __init__(self, scale: float = 3.0):
        self.scale = param(scale, "scale", low=0)

    @property
    def name(self) -> str:
        return self.base_name if self.scale == 3.0 else f"{self.base_name}[scale={self.scale:g}]"

    def fit(self, data: TaskData) -> "GaussianNoise":
        self.sigma_ = {n.name: data.cells(n.name).std().item() for n in data.nodes}
        return self

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        eps = torch.randn(batch.clean.shape, generator=batch.generator).to(batch.clean)
        return batch.clean + self.scale * self.sigma_[batch.node.name] * eps


@register("directional")
class Directional(AblationMethod):
    """Project out unit directions: ``a - sum_r (a . r) r`` over an orthonormal set ``r``.

    Source: Arditi et al. 2024 (refusal direction); SAE latent ablation. ``directions`` maps a
    node name to ``[k, d]`` directions (e.g. SAE decoder rows or probes); nodes not given use
    the direction of their mean activation (the difference of means against zero).
    """

    def __init__(self, directions: dict[str, torch.Tensor] | None = None):
        self.directions = directions or {}

    def fit(self, data: TaskData) -> "Directional":
        self.bases_ = {}
        for n in data.nodes:
            given = self.directions.get(n.name)
            r = torch.as_tensor(given, dtype=torch.float32) if given is not None else data.cells(n.name).mean(0, keepdim=True)
            if r.dim() == 1:
                r = r[None]
            if r.shape[-1] != data.acts[n.name][0].shape[-1]:
                raise ValueError(f"direction for {n.name} has size {r.shape[-1]}, the node has {data.acts[n.name][0].shape[-1]}")
            if r.norm() == 0:
                self.bases_[n.name] = r[:0]  # a node that is always 0 has no direction to remove
                continue
            # orthonormal basis of the span, [rank, d]. Rank-revealing: QR of dependent or zero rows
            # would return k orthonormal vectors and so remove directions that were not given.
            _, s, vh = torch.linalg.svd(r.double(), full_matrices=False)
            self.bases_[n.name] = vh[s > s[0] * max(r.shape) * torch.finfo(torch.float32).eps].float()
        return self

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        basis = self.bases_[batch.node.name].to(batch.clean)  # [k, d]
        return batch.clean - (batch.clean @ basis.T) @ basis
