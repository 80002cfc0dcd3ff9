"""The ablatable components of a HookedTransformer (heads and MLPs) and their hook names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Literal

from transformer_lens import HookedTransformer


def resid_pre_name(layer: int) -> str:
    """The hook of the residual stream entering ``layer``."""
    return f"blocks.{layer}.hook_resid_pre"


@dataclass(frozen=True)
class Node:
    """One ablatable component: an attention head (its ``hook_z`` slice) or an MLP (``hook_post``).

    ``name`` is a TransformerLens hook name plus a head index, so it can be pasted into a
    notebook: ``blocks.1.attn.hook_z[2]``, ``blocks.0.mlp.hook_post``. A head is intervened on
    through ``hook_z``: its output ``z @ W_O`` is a linear function of it, and patching ``z`` is
    cheaper than patching ``hook_result``.
    """

    layer: int
    kind: Literal["attn", "mlp"]
    head: int | None = None
    in_circuit: bool = False

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.attn.hook_z" if self.kind == "attn" else f"blocks.{self.layer}.mlp.hook_post"

    @property
    def name(self) -> str:
        return f"{self.hook_name}[{self.head}]" if self.kind == "attn" else self.hook_name

    @classmethod
    def from_name(cls, name: str, in_circuit: bool = False) -> "Node | None":
        """The node a name denotes: ``blocks.L.attn.hook_z[h]`` (``hook_result[h]``, iit's and
        InterpBench's name for the same head, is read too) or ``blocks.L.mlp.hook_post``; None for
        anything else."""
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
