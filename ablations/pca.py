"""PCA-subspace ablations: act on the top-k high-variance subspace of a node, or its complement.

Source: InterpBench's notebook on case 3. PCA is fitted per position with scikit-learn on the
task's fit data. Four variants, (self-patch | resample) x (high | complement), where ``S`` is
the chosen subspace and ``P_S`` the orthogonal projection onto it:

- ``pca_self[k=K,high]``:  ``mu + P_S (a - mu)``: keep only the subspace, the rest at its mean.
- ``pca_resample[k=K,high]``: ``a + P_S (a(x') - a)``: resample only the subspace.

``complement`` uses ``S`` = the orthogonal complement of the top-k directions. So
``(pca_self[high](a) - mu) + (pca_self[complement](a) - mu) = a - mu``.
"""

from __future__ import annotations

import warnings

import torch
from sklearn.decomposition import PCA

from ablations.base import AblationMethod, NodeBatch, param, register
from ablations.task_data import TaskData

PARTS = ("high", "complement")


class _PCABase(AblationMethod):
    flag_param = "part"

    def __init__(self, k: int = 1, part: str = "high"):
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        self.k, self.part = param(k, "k", int, low=1), part

    @property
    def name(self) -> str:
        return f"{self.base_name}[k={self.k},{self.part}]"

    def fit(self, data: TaskData) -> "_PCABase":
        self.mu_, self.proj_ = {}, {}
        for n in data.nodes:
            mus, projs = [], []
            if self.k > data.acts[n.name][0].shape[-1]:  # else the projection would silently be the identity (or 0)
                raise ValueError(f"{self.name}: k={self.k} exceeds the dimension {data.acts[n.name][0].shape[-1]} of node {n.name}; "
                                 f"k must be at most the smallest node dimension of the task")
            for x in data.per_position(n.name):  # [n_p, d]
                d = x.shape[1]
                k = min(self.k, d, x.shape[0])
                with warnings.catch_warnings():  # a constant node has zero variance: ratios are 0/0
                    warnings.simplefilter("ignore", RuntimeWarning)
                    pca = PCA(n_components=k, svd_solver="full").fit(x.detach().cpu().double().numpy())
                v = torch.as_tensor(pca.components_, dtype=torch.float32)  # [k, d]
                high = v.T @ v
                projs.append(high if self.part == "high" else torch.eye(d) - high)
                mus.append(torch.as_tensor(pca.mean_, dtype=torch.float32))
            self.mu_[n.name], self.proj_[n.name] = torch.stack(mus), torch.stack(projs)  # [pos, d], [pos, d, d]
        return self

    def _project(self, x: torch.Tensor, batch: NodeBatch) -> torch.Tensor:
        proj = self.proj_[batch.node.name][: x.shape[1]].to(x)
        return torch.einsum("bpd,ped->bpe", x, proj)


@register("pca_self")
class PCASelfPatch(_PCABase):
    """Keep only the chosen PCA subspace of the node's own activation; the rest goes to its mean.

    Source: InterpBench notebook on case 3 (PCA-subspace self-patch).
    """

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        mu = self.mu_[batch.node.name][: batch.clean.shape[1]].to(batch.clean)
        return mu + self._project(batch.clean - mu, batch)


@register("pca_resample")
class PCAResample(_PCABase):
    """Resample only the chosen PCA subspace: ``a + P_S (a(x') - a)``, ``x'`` the resample
    source of ``resample`` (any length >= the base's).

    Source: InterpBench notebook on case 3 (PCA-subspace resample).
    """

    iit_source = "resample"

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        return batch.clean + self._project(batch.source - batch.clean, batch)
