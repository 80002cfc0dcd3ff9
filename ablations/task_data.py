"""The data every method sees: a task's clean (and counterfactual) activations on length groups
(``TaskData``, built once per task and split), the resample sources each row takes, and what a method's
``ablate`` is handed for one node on one group (``NodeBatch``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch
from transformer_lens import HookedTransformer

from interventions.hooks import clean_run
from interventions.interchange import draw_sources, source_prefix
from interventions.nodes import Node
from tasks.seeds import derive


@dataclass
class NodeBatch:
    """What a method sees when it ablates one node on one batch (one sequence length).

    Attributes:
        node: the node being ablated.
        clean: its activation on the base inputs, ``[batch, pos, d]``.
        source: its activation on the resample sources, ``[batch, pos, d]``: for a base of
            length L, another input of a length drawn uniformly from the data's lengths >= L
            (never the base itself), its first L + 1 positions. This is the interchange
            distribution the SIIT models are trained and checked on (``TaskData.sources``).
        counterfactual: its activation on a minimal edit of each base input, ``[batch, pos, d]``.
        generator: a seeded generator for methods that draw random numbers.
        group: index of the length group (same for all nodes of one batch).
        source_same_length: its activation on a source of the base's own length (a derangement
            of the batch), ``[batch, pos, d]``: blind to anything constant within one length.
    """

    node: Node
    clean: torch.Tensor
    source: torch.Tensor
    counterfactual: torch.Tensor
    generator: torch.Generator
    group: int = 0
    source_same_length: torch.Tensor | None = None


def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of ``range(n)`` without fixed points (``n >= 2``)."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 rows, got {n}: sample more inputs per length")
    while True:
        perm = torch.randperm(n, generator=generator)
        if not bool((perm == torch.arange(n)).any()):
            return perm


@dataclass
class TaskData:
    """Clean (and counterfactual) activations of every node on a data set of length groups.

    Built once per (task, split) and shared by every method: methods fit on the ``fit`` split,
    effects are measured on the ``eval`` split. Lists are indexed by length group.

    Attributes:
        model, output, nodes: the task's model, output kind and nodes.
        tokens: ``[n_g, pos_g]`` token tensors; ``cf_tokens``: their minimal edits.
        outputs: clean model outputs ``[n_g, pos_g, d_vocab_out]``.
        acts / cf_acts: ``{node name: [tensor [n_g, pos_g, d]]}`` on ``tokens`` / ``cf_tokens``.
        resid_pre: per group, ``{layer: clean residual stream [n_g, pos_g, d_model]}``.
        perms: per group, the same-length resample derangement ``[n_g]``.
        sources: per group, ``(src_group [n_g], src_row [n_g])``: the resample source of each
            row (``draw_sources``); a TaskData of another model built with the same ``sources``
            (e.g. the high-level tracr model) makes exactly the same interchanges.
        writes: per group, ``{layer: {"z", "resid_mid"}}`` of the clean run, from which single-node
            ablations start at the node's own write (``interventions.hooks.clean_run``); empty
            dicts when the model does not support that path.
    """

    model: HookedTransformer
    output: Literal["categorical", "numerical"]
    nodes: list[Node]
    tokens: list[torch.Tensor]
    cf_tokens: list[torch.Tensor]
    outputs: list[torch.Tensor]
    acts: dict[str, list[torch.Tensor]]
    cf_acts: dict[str, list[torch.Tensor]]
    resid_pre: list[dict[int, torch.Tensor]]
    perms: list[torch.Tensor]
    sources: list[tuple[torch.Tensor, torch.Tensor]]
    seed: int = 0
    writes: list[dict[int, dict[str, torch.Tensor]]] = field(default_factory=list)
    node_index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.node_index = {n.name: i for i, n in enumerate(self.nodes)}
        self._source_plans: dict[int, tuple] = {}

    @classmethod
    def build(
        cls,
        model: HookedTransformer,
        output: Literal["categorical", "numerical"],
        nodes: Sequence[Node],
        tokens: Sequence[torch.Tensor],
        cf_tokens: Sequence[torch.Tensor] | None = None,
        seed: int = 0,
        sources: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> "TaskData":
        """Run the clean model on every group (and on the counterfactuals) and keep what methods need.

        ``sources``: the resample sources to use (default: drawn from ``seed``, see ``draw_sources``)."""
        if output not in ("categorical", "numerical"):
            raise ValueError(f"output must be 'categorical' or 'numerical', got {output!r}")
        nodes = list(nodes)
        cf_tokens = list(cf_tokens) if cf_tokens is not None else list(tokens)
        gen = torch.Generator().manual_seed(seed)
        outputs, resid_pre, perms, writes = [], [], [], []
        acts: dict[str, list[torch.Tensor]] = {n.name: [] for n in nodes}
        cf_acts: dict[str, list[torch.Tensor]] = {n.name: [] for n in nodes}
        for toks, cf in zip(tokens, cf_tokens, strict=True):
            if toks.shape != cf.shape:
                raise ValueError(f"counterfactual tokens {tuple(cf.shape)} must match base tokens {tuple(toks.shape)}")
            out, a, resid, w = clean_run(model, toks, nodes)
            _, cfa, _, _ = clean_run(model, cf, nodes, keep_writes=False)  # single-node ablations start from the base run only
            outputs.append(out)
            resid_pre.append(resid)
            writes.append(w)
            perms.append(derangement(toks.shape[0], gen).to(toks.device))
            for n in nodes:
                acts[n.name].append(a[n.name])
                cf_acts[n.name].append(cfa[n.name])
        if sources is None:
            sources = draw_sources([t.shape[1] for t in tokens], [t.shape[0] for t in tokens], gen)
        elif [len(s[0]) for s in sources] != [t.shape[0] for t in tokens]:
            raise ValueError("sources must give one (group, row) per row of every token group")
        sources = [(grp.to(t.device), row.to(t.device)) for (grp, row), t in zip(sources, tokens, strict=True)]
        return cls(model, output, nodes, list(tokens), cf_tokens, outputs, acts, cf_acts, resid_pre, perms, sources, seed, writes)

    @property
    def n_groups(self) -> int:
        return len(self.tokens)

    def source_acts(self, name: str, group: int) -> torch.Tensor:
        """The node's activation on each row's resample source, first ``pos_g`` positions: ``[n_g, pos_g, d]``."""
        return self.from_sources(self.acts[name], group)

    def from_sources(self, per_group: Sequence[torch.Tensor], group: int) -> torch.Tensor:
        """Any per-group values of the data's rows (``[n_h, pos_h, ...]`` per group h: activations, a
        high-level model's outputs) taken from each row of ``group``'s resample source and cut to
        the base's positions: ``[n_g, pos_g, ...]``. Every user of the interchange reads it here."""
        base = per_group[group]
        out = torch.empty_like(base)
        for h, dst, src in self._source_plan(group):
            out[dst] = source_prefix(per_group[h][src], base.shape[1])
        return out

    def _source_plan(self, group: int) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """``[(source group h, destination rows, source rows in h)]`` of one group, built once from
        ``sources`` and used by every gather; rebuilt when ``sources`` was replaced or edited."""
        src_group, src_row = self.sources[group]
        key = (id(src_group), id(src_row), src_group._version, src_row._version)
        cached = self._source_plans.get(group)
        if cached is None or cached[0] != key:
            plan = [(h, rows, src_row[rows]) for h in src_group.unique().tolist() for rows in [(src_group == h).nonzero().squeeze(1)]]
            cached = self._source_plans[group] = (key, plan, src_group, src_row)  # the tensors kept: their ids stay theirs
        return cached[1]

    def node_batch(self, node: Node, group: int) -> NodeBatch:
        clean = self.acts[node.name][group]
        gen = torch.Generator().manual_seed(derive(self.seed, "ablation-noise", self.node_index[node.name], group))
        return NodeBatch(node, clean, self.source_acts(node.name, group), self.cf_acts[node.name][group], gen, group,
                         source_same_length=clean[self.perms[group]])

    def cells(self, name: str, counterfactual: bool = False) -> torch.Tensor:
        """Every (example, position) activation of a node, ``[cells, d]`` (BOS included)."""
        src = self.cf_acts if counterfactual else self.acts
        return torch.cat([a.reshape(-1, a.shape[-1]) for a in src[name]])

    def per_position(self, name: str, counterfactual: bool = False) -> list[torch.Tensor]:
        """Activations at each position over every group long enough to have it: ``[pos] -> [n_p, d]``."""
        src = (self.cf_acts if counterfactual else self.acts)[name]
        n_pos = max(a.shape[1] for a in src)
        return [torch.cat([a[:, p] for a in src if a.shape[1] > p]) for p in range(n_pos)]
