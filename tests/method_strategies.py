"""Hypothesis strategies for the method property tests: random small models, inputs and TaskData.

A ``ModelSpec`` describes a tiny ``HookedTransformer`` (1-2 layers, 2 heads, d_head 4, d_mlp 16,
d_vocab 5, n_ctx 6) whose weights are drawn from a seeded generator, so an example is
reproducible from its spec alone. Some nodes can be made *dead* (weights that make the hooked
activation exactly 0: ``W_V``/``b_V`` of a head for ``hook_z``, ``W_in``/``b_in`` of an MLP for
``hook_post``) or *constant* (the same weights zeroed but a non-zero bias: a head's ``z`` is then
``b_V`` at every position, an MLP's ``post`` is ``act(b_in)``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from hypothesis import strategies as st

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from transformer_lens import HookedTransformer, HookedTransformerConfig

from ablations.task_data import TaskData
from tasks.base import Node, all_nodes

D_VOCAB = 5
N_CTX = 6
D_HEAD = 4
N_HEADS = 2
D_MLP = 16


@dataclass(frozen=True)
class ModelSpec:
    n_layers: int
    d_model: int
    attn_only: bool
    act_fn: str
    attention_dir: str
    normalization_type: str | None
    output: str
    gain: float
    seed: int
    #: (node index, "zero" | "const") pairs, applied by ``build_model``.
    special: tuple = ()


class Case:
    """A built example: the model, its nodes, the token groups and their ``TaskData``.

    ``special`` maps the names of the nodes made dead / constant to ``"zero"`` / ``"const"``.
    """

    def __init__(self, spec: ModelSpec, model: HookedTransformer, nodes: list[Node], tokens: list[torch.Tensor],
                 cf_tokens: list[torch.Tensor], data: TaskData, special: dict):
        self.spec, self.model, self.nodes, self.tokens, self.cf_tokens = spec, model, nodes, tokens, cf_tokens
        self.data, self.special = data, special

    def __repr__(self) -> str:  # hypothesis prints failing examples: the spec and tokens say it all
        return f"Case({self.spec}, tokens={[t.tolist() for t in self.tokens]}, seed={self.data.seed})"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))


def n_nodes(n_layers: int, attn_only: bool) -> int:
    return n_layers * (N_HEADS + (0 if attn_only else 1))


def set_node_weights(model: HookedTransformer, node: Node, mode: str, generator: torch.Generator) -> None:
    """Make ``node``'s hooked activation exactly 0 (``zero``) or a non-zero constant (``const``)."""
    with torch.no_grad():
        if node.kind == "attn":
            attn = model.blocks[node.layer].attn
            attn.W_V[node.head] = 0.0
            bias = torch.randn(attn.b_V.shape[-1], generator=generator) + 0.5 if mode == "const" else 0.0
            attn.b_V[node.head] = bias
        else:
            mlp = model.blocks[node.layer].mlp
            mlp.W_in.zero_()
            # relu(b) is constant whatever b is; keep b > 0 so the constant is not itself 0
            mlp.b_in.copy_(torch.rand(mlp.b_in.shape, generator=generator) + 0.1 if mode == "const" else torch.zeros_like(mlp.b_in))


def build_model(spec: ModelSpec) -> tuple[HookedTransformer, list[Node]]:
    cfg = HookedTransformerConfig(
        n_layers=spec.n_layers,
        d_model=spec.d_model,
        n_ctx=N_CTX,
        d_head=D_HEAD,
        n_heads=N_HEADS,
        d_mlp=None if spec.attn_only else D_MLP,
        d_vocab=D_VOCAB,
        d_vocab_out=D_VOCAB if spec.output == "categorical" else 1,
        act_fn=spec.act_fn,
        attention_dir=spec.attention_dir,
        normalization_type=spec.normalization_type,
        attn_only=spec.attn_only,
        device="cpu",
        seed=None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HookedTransformer(cfg)
    model.eval()
    g = torch.Generator().manual_seed(spec.seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("W_"):
                p.copy_(torch.randn(p.shape, generator=g) * spec.gain / p.shape[-2] ** 0.5)
            elif leaf == "w":  # layer-norm scale
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * spec.gain * torch.randn(p.shape, generator=g))
    nodes = all_nodes(model, lambda layer, kind, head: (layer + (head or 0)) % 2 == 0)
    for idx, mode in spec.special:
        set_node_weights(model, nodes[idx], mode, g)
    return model, nodes


@st.composite
def model_specs(draw, special: bool = True, output: str | None = None, attn_only: bool | None = None) -> ModelSpec:
    n_layers = draw(st.integers(1, 2))
    a_only = draw(st.booleans()) if attn_only is None else attn_only
    n = n_nodes(n_layers, a_only)
    specials = ()
    if special:
        idx = draw(st.lists(st.integers(0, n - 1), max_size=2, unique=True))
        specials = tuple((i, draw(st.sampled_from(["zero", "const"]))) for i in idx)
    return ModelSpec(
        n_layers=n_layers,
        d_model=draw(st.sampled_from([8, 12, 16])),
        attn_only=a_only,
        act_fn=draw(st.sampled_from(["relu", "gelu"])),
        attention_dir=draw(st.sampled_from(["causal", "bidirectional"])),
        normalization_type=draw(st.sampled_from([None, "LN"])),
        output=draw(st.sampled_from(["categorical", "numerical"])) if output is None else output,
        gain=draw(st.sampled_from([0.5, 1.0, 2.0])),
        seed=draw(st.integers(0, 2**31 - 1)),
        special=specials,
    )


@st.composite
def token_groups(draw, max_groups: int = 2, min_rows: int = 2, max_rows: int = 6) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Length groups ``[n, L]`` (n >= 2, 2 <= L <= N_CTX) and a one-token edit of every row."""
    n_groups = draw(st.integers(1, max_groups))
    tokens, cfs = [], []
    for _ in range(n_groups):
        n = draw(st.integers(min_rows, max_rows))
        length = draw(st.integers(2, N_CTX))
        rows = draw(st.lists(st.lists(st.integers(0, D_VOCAB - 1), min_size=length, max_size=length), min_size=n, max_size=n))
        toks = torch.tensor(rows, dtype=torch.long)
        cf = toks.clone()
        for r in range(n):
            p = draw(st.integers(0, length - 1))
            cf[r, p] = (cf[r, p] + draw(st.integers(1, D_VOCAB - 1))) % D_VOCAB
        tokens.append(toks)
        cfs.append(cf)
    return tokens, cfs


def build_case(spec: ModelSpec, groups: tuple[list[torch.Tensor], list[torch.Tensor]], seed: int = 0) -> Case:
    model, nodes = build_model(spec)
    tokens, cf = groups
    data = TaskData.build(model, spec.output, nodes, tokens, cf, seed=seed)
    special = {nodes[i].name: mode for i, mode in spec.special}
    return Case(spec, model, nodes, tokens, cf, data, special)


@st.composite
def cases(draw, special: bool = True, output: str | None = None, attn_only: bool | None = None, **group_kw) -> Case:
    spec = draw(model_specs(special=special, output=output, attn_only=attn_only))
    groups = draw(token_groups(**group_kw))
    return build_case(spec, groups, seed=draw(st.integers(0, 1000)))


def snapshot(data: TaskData) -> dict[str, torch.Tensor]:
    """A deep copy of every tensor a method can reach through ``TaskData`` (model weights included)."""
    out = {}
    for g in range(data.n_groups):
        out[f"tokens[{g}]"] = data.tokens[g].clone()
        out[f"cf_tokens[{g}]"] = data.cf_tokens[g].clone()
        out[f"outputs[{g}]"] = data.outputs[g].clone()
        out[f"perms[{g}]"] = data.perms[g].clone()
        out[f"sources[{g}].group"] = data.sources[g][0].clone()
        out[f"sources[{g}].row"] = data.sources[g][1].clone()
        for layer, r in data.resid_pre[g].items():
            out[f"resid_pre[{g}][{layer}]"] = r.clone()
        for name in data.acts:
            out[f"acts[{name}][{g}]"] = data.acts[name][g].clone()
            out[f"cf_acts[{name}][{g}]"] = data.cf_acts[name][g].clone()
    for name, p in data.model.state_dict().items():
        out[f"model.{name}"] = p.clone()
    return out
