"""The ablatable units of a HookedTransformer (heads, MLPs, residual-stream features) and their hook names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
from transformer_lens import HookedTransformer


def resid_pre_name(layer: int) -> str:
    """The hook of the residual stream entering ``layer``."""
    return f"blocks.{layer}.hook_resid_pre"


@dataclass(frozen=True)
class Node:
    """One ablatable unit: an attention head (its ``hook_z`` slice), an MLP (``hook_post``), or a feature:
    a direction (or subspace) of the residual stream at one site.

    ``name`` is a TransformerLens hook name plus an index, so it can be pasted into a notebook:
    ``blocks.1.attn.hook_z[2]``, ``blocks.0.mlp.hook_post``, ``blocks.1.hook_resid_pre[back2/back2_1:a]``.
    A head is intervened on through ``hook_z``: its output ``z @ W_O`` is a linear function of it, and
    patching ``z`` is cheaper than patching ``hook_result``.

    A feature (``kind="feature"``) sits at ``blocks.{layer}.hook_{site}`` (``site``: ``resid_pre``, or
    ``resid_post`` for the final residual) and is named by ``feature``; ``direction`` ``[d_model, k]`` has
    orthonormal columns. Its activation is the residual's coordinates along them (``x @ direction``,
    ``[b, pos, k]``), and replacing it by ``r`` moves only those coordinates (``x + (r - x @ D) @ D^T``),
    leaving the orthogonal complement as it was: every method acts on the coordinates unchanged.
    """

    layer: int
    kind: Literal["attn", "mlp", "feature"]
    head: int | None = None
    in_circuit: bool = False
    feature: str | None = None
    site: Literal["resid_pre", "resid_post"] = "resid_pre"
    direction: torch.Tensor | None = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind == "feature":
            d = self.direction
            if not self.feature or d is None or d.dim() != 2:
                raise ValueError(f"a feature node needs a name and a direction [d_model, k]; got {self.feature!r}, "
                                 f"{None if d is None else tuple(d.shape)}")
            if self.site not in ("resid_pre", "resid_post"):
                raise ValueError(f"feature {self.feature!r}: site must be resid_pre or resid_post, got {self.site!r}")
            gram = d.T.double() @ d.double()
            if not torch.allclose(gram, torch.eye(d.shape[1], dtype=gram.dtype), atol=1e-5):
                raise ValueError(f"feature {self.feature!r}: the direction's columns must be orthonormal")

    @property
    def hook_name(self) -> str:
        if self.kind == "feature":
            return f"blocks.{self.layer}.hook_{self.site}"
        return f"blocks.{self.layer}.attn.hook_z" if self.kind == "attn" else f"blocks.{self.layer}.mlp.hook_post"

    @property
    def name(self) -> str:
        if self.kind == "feature":
            return f"{self.hook_name}[{self.feature}]"
        return f"{self.hook_name}[{self.head}]" if self.kind == "attn" else self.hook_name

    @property
    def width(self) -> int | None:
        """A feature's dimension ``k`` (None for a head or an MLP: the model's config says)."""
        return None if self.direction is None else int(self.direction.shape[1])

    @classmethod
    def from_name(cls, name: str, in_circuit: bool = False) -> "Node | None":
        """The node a name denotes: ``blocks.L.attn.hook_z[h]`` (``hook_result[h]``, iit's and
        InterpBench's name for the same head, is read too) or ``blocks.L.mlp.hook_post``; None for
        anything else (a feature's direction is not in its name: its task holds it)."""
        m = _HEAD_NAME.match(name.strip())
        if m:
            return cls(int(m.group(1)), "attn", int(m.group(2)), in_circuit)
        m = _MLP_NAME.match(name.strip())
        return cls(int(m.group(1)), "mlp", None, in_circuit) if m else None


_HEAD_NAME = re.compile(r"^blocks\.(\d+)\.attn\.hook_(?:z|result)\[(\d+)\]$")
_MLP_NAME = re.compile(r"^blocks\.(\d+)\.mlp\.hook_post$")


def all_nodes(model: HookedTransformer, in_circuit: Callable[[int, str, int | None], bool]) -> list[Node]:
    """Every head and MLP of ``model``, in forward order, labelled by ``in_circuit(layer, kind, head)``."""
    nodes: list[Node] = []
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            nodes.append(Node(layer, "attn", head, in_circuit(layer, "attn", head)))
        if not model.cfg.attn_only:
            nodes.append(Node(layer, "mlp", None, in_circuit(layer, "mlp", None)))
    return nodes
