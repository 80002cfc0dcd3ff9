"""The peers' ways of computing every node's single-node effect, beside the suite's engine: the code a user
would otherwise write (``benchmarks/test_peers.py`` times them, ``abench/scale_cost.py`` uses them at real shapes).

- ``run_engine``: the suite's ``node_effects``;
- ``run_tl_hooks``: one ``run_with_hooks`` forward per node writing the value in place, the idiom of
  TransformerLens' ``patching`` utilities;
- ``run_pyvene``: one ``IntervenableModel`` per node (a lambda intervention on the node's hook point, through a
  thin wrapper giving the HookedTransformer the ``config`` attribute pyvene reads);
- ``run_auto_circuit``: auto-circuit's factorized patchable model, node ablation as patching every outgoing edge
  of the node's source under ``patch_mode``.

Each is ``run(method, ev, ctx) -> [(node, effect, continuous)]`` with the suite's effect definition
(``SuiteScorer``; the engine and the hook loop take ``ctx["scorer"]`` instead where it is given); peers build each node's replacement with the method's own ``ablate`` (no checks). A peer that
cannot run here (not installed) raises ``PeerUnavailable`` with the reason.
"""

from __future__ import annotations

import copy
import sys
import types

import torch

from abench.effects import node_effects, read_by
from abench.scorers import SuiteScorer


class PeerUnavailable(RuntimeError):
    """A peer that cannot run here; the message says why and what to install."""


def components_only(ev, peer: str) -> None:
    """The peers ablate heads and MLPs only: a feature node (a residual direction) is refused by name."""
    features = [n.name for n in ev.nodes if n.kind == "feature"]
    if features:
        raise ValueError(f"peer {peer} ablates heads and MLPs only, not residual features such as {features[0]}")


def _node_values(method, ev, group: int) -> dict[str, torch.Tensor]:
    """Every node's replacement on one length group, straight from the method (no checks)."""
    return {n.name: method.ablate(ev.node_batch(n, group)) for n in ev.nodes}


def _effects(ev, outputs_of, scorer=None) -> list[tuple[str, float, float]]:
    """``(node, effect, continuous)`` from ``outputs_of(group) -> {node: ablated outputs}``, summed
    over the groups with ``scorer`` (default the suite's) on the cells it reads, exactly as
    ``node_effects`` aggregates them."""
    scorer = scorer or SuiteScorer()
    sums = {n.name: [0.0, 0, 0.0, 0] for n in ev.nodes}
    for g in range(ev.n_groups):
        outs = outputs_of(g)
        readout = read_by(scorer, ev, g)
        clean = readout.select(ev.outputs[g])
        for n in ev.nodes:
            for i, v in enumerate(scorer.score(ev, g, n, clean, readout.select(outs[n.name]))):
                sums[n.name][i] += v
    return [(n.name, sums[n.name][0] / sums[n.name][1], sums[n.name][2] / sums[n.name][3]) for n in ev.nodes]


def run_engine(method, ev, ctx):
    return [(e.name, e.effect, e.continuous) for e in node_effects(method, ev, scorer=ctx.get("scorer"))]


def run_tl_hooks(method, ev, ctx):
    components_only(ev, "tl_hooks")
    model = ev.model

    def setter(node, value):
        def hook(act, hook):  # in place, as transformer_lens.patching's setters do
            if node.kind == "attn":
                act[:, :, node.head, :] = value
            else:
                act[...] = value
            return act

        return hook

    def outputs_of(g):
        values = _node_values(method, ev, g)
        return {n.name: model.run_with_hooks(ev.tokens[g], fwd_hooks=[(n.hook_name, setter(n, values[n.name]))])
                for n in ev.nodes}

    with torch.no_grad():
        return _effects(ev, outputs_of, ctx.get("scorer"))


def pyvene_module():
    """pyvene, or ``PeerUnavailable`` with the reason."""
    try:
        import pyvene  # noqa: F401
        import transformers  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure is the reason
        raise PeerUnavailable(f"pyvene not usable here ({type(err).__name__}: {err}); pip install -e '.[peers]'") from None
    return sys.modules["pyvene"]


class _PyveneView(torch.nn.Module):
    """The HookedTransformer as pyvene expects a model: a ``config`` attribute (read for its
    ``to_dict``) and keyword inputs. Computes exactly ``model(input)``."""

    def __init__(self, model):
        import transformers

        super().__init__()
        self.model = model
        self.config = transformers.PretrainedConfig()

    def forward(self, input):  # noqa: A002 - pyvene passes base={"input": tokens}
        return self.model(input)


def run_pyvene(method, ev, ctx):
    components_only(ev, "pyvene")
    pv = pyvene_module()
    view = _PyveneView(ctx["model_copy"])
    current: dict[str, torch.Tensor] = {}

    def writer(node):
        def write(base, source=None, *args, **kwargs):
            out = base.clone()
            if node.kind == "attn":
                out[:, :, node.head, :] = current[node.name]
            else:
                out[...] = current[node.name]
            return out

        return write

    models = {}
    for n in ev.nodes:  # one intervenable model per node, built once per call, reused across groups
        cfg = pv.IntervenableConfig(representations=[pv.RepresentationConfig(component=f"model.{n.hook_name}.output",
                                                                              unit="pos", intervention=writer(n))])
        models[n.name] = pv.IntervenableModel(cfg, view)

    def outputs_of(g):
        current.clear()
        current.update(_node_values(method, ev, g))
        return {n.name: models[n.name](base={"input": ev.tokens[g]}, unit_locations=None)[1] for n in ev.nodes}

    with torch.no_grad():
        return _effects(ev, outputs_of, ctx.get("scorer"))


def auto_circuit_graph_utils():
    """auto-circuit 1.0.1 imports ``HookedTransformerKeyValueCache`` from
    ``transformer_lens.past_key_value_caching``, which TransformerLens 3.9 renamed to
    ``TransformerLensKeyValueCache`` (same class); it is only used in type annotations there.
    The alias is added (nothing else of TransformerLens changes) and auto-circuit imported."""
    import transformer_lens as tl

    if not hasattr(tl, "HookedTransformerKeyValueCache") and hasattr(tl, "TransformerLensKeyValueCache"):
        tl.HookedTransformerKeyValueCache = tl.TransformerLensKeyValueCache
        shim = types.ModuleType("transformer_lens.past_key_value_caching")
        shim.HookedTransformerKeyValueCache = tl.TransformerLensKeyValueCache
        sys.modules.setdefault("transformer_lens.past_key_value_caching", shim)
    try:
        from auto_circuit.utils import graph_utils
    except Exception as err:  # noqa: BLE001 - any import failure is the reason
        raise PeerUnavailable(f"auto-circuit not usable here ({type(err).__name__}: {err}); pip install -e '.[peers]'") from None
    return graph_utils


def auto_circuit_model(model):
    """A patchable (factorized) copy of ``model``; the task's own model is left alone."""
    graph_utils = auto_circuit_graph_utils()
    m = copy.deepcopy(model)
    m.set_use_attn_result(True)
    m.set_use_split_qkv_input(True)
    m.set_use_hook_mlp_in(True)
    pm = graph_utils.patchable_model(m, factorized=True, slice_output=None, separate_qkv=True, device=torch.device(model.cfg.device))
    srcs = sorted(pm.srcs, key=lambda s: s.src_idx)
    edges_from = {s.src_idx: [e for e in pm.edges if e.src.src_idx == s.src_idx] for s in srcs}
    return pm, srcs, edges_from


def run_auto_circuit(method, ev, ctx):
    components_only(ev, "auto_circuit")
    graph_utils = auto_circuit_graph_utils()
    pm, srcs, edges_from = ctx["auto_circuit"]
    model = ev.model
    src_of = {}
    for s in srcs:
        if s.name.startswith("A"):
            layer, head = map(int, s.name[1:].split("."))
            src_of[f"blocks.{layer}.attn.hook_z[{head}]"] = s.src_idx
        elif s.name.startswith("MLP"):
            src_of[f"blocks.{int(s.name.split()[1])}.mlp.hook_post"] = s.src_idx

    def src_outs(cache) -> torch.Tensor:  # every source node's output, auto-circuit's order
        outs = []
        for s in srcs:
            if s.name == "Resid Start":
                outs.append(cache["blocks.0.hook_resid_pre"])
            elif s.name.startswith("A"):
                layer, head = map(int, s.name[1:].split("."))
                outs.append(cache[f"blocks.{layer}.attn.hook_z"][:, :, head] @ model.blocks[layer].attn.W_O[head])
            else:
                outs.append(cache[f"blocks.{int(s.name.split()[1])}.hook_mlp_out"])
        return torch.stack(outs)

    def node_out(node, value):  # the node's contribution to the residual stream with its activation = value
        if node.kind == "attn":
            return value @ model.blocks[node.layer].attn.W_O[node.head]
        return value @ model.blocks[node.layer].mlp.W_out + model.blocks[node.layer].mlp.b_out

    def outputs_of(g):
        values = _node_values(method, ev, g)
        _, cache = model.run_with_cache(ev.tokens[g])
        clean = src_outs(cache)
        outs = {}
        for n in ev.nodes:
            patch = clean.clone()
            patch[src_of[n.name]] = node_out(n, values[n.name])
            with graph_utils.patch_mode(pm, patch, edges=edges_from[src_of[n.name]]):
                outs[n.name] = pm(ev.tokens[g])
        return outs

    with torch.no_grad():
        return _effects(ev, outputs_of, ctx.get("scorer"))


RUNNERS = {"engine": run_engine, "tl_hooks": run_tl_hooks, "pyvene": run_pyvene, "auto_circuit": run_auto_circuit}
