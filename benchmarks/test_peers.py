"""Speed against the peers, side by side: the same all-node single-node effects with the tools a
user would otherwise write a loop over (``pip install -e ".[test,peers]"``).

On one task, its eval data (``--n-eval``) and its resample sources (``TaskData.sources``), every
peer computes every node's effect under ``resample`` ablation (the SIIT ground truth) with the
suite's effect definition (``SuiteScorer``: fraction of non-BOS cells whose argmax changes, and
KL(clean || ablated)):

- ``engine``: the suite's ``node_effects`` (stacked forwards from the cached residual stream,
  replacements checked, nodes whose replacement equals the clean activation skipped);
- ``tl_hooks``: one ``run_with_hooks`` forward per node writing the value in place, the idiom
  of TransformerLens' ``patching`` utilities;
- ``pyvene``: one ``IntervenableModel`` per node (a lambda intervention on the node's hook point,
  through a thin wrapper that gives the HookedTransformer the ``config`` attribute pyvene reads),
  one forward per node;
- ``auto_circuit``: auto-circuit's factorized patchable model (a copy of the task model with
  ``use_attn_result``, ``use_split_qkv_input``, ``use_hook_mlp_in``), node ablation as patching
  every outgoing edge of the node's source (a head's ``z @ W_O[h]``, an MLP's
  ``post @ W_out + b_out``) under ``patch_mode``, one forward per node.

Peers build each node's replacement with the method's own ``ablate`` (no checks); the engine
pays for its own checks. Every peer's effects must equal the engine's to 1e-5. Each (task, peer)
is a pytest-benchmark entry (group ``peers <task>``); the ratio table (peer seconds / engine
seconds) is printed at the end of the module (run without ``-n`` to see it).

Tasks: the tracr task with the most nodes (``shuffle_dyck``, 40) and the largest shipped SIIT
model (most nodes, then parameters; ties by name).
"""

from __future__ import annotations

import copy
import sys
import time
import types

import pytest
import torch

from abench.effects import node_effects
from abench.scorers import SuiteScorer
from ablations import make_method

METHOD = "resample"
TRACR_TASK = "shuffle_dyck"  # 40 nodes: the largest tracr task (8 layers x 4 heads + 8 MLPs)
PEERS = ("engine", "tl_hooks", "pyvene", "auto_circuit")
TOLERANCE = 1e-5
ROUNDS = 3

_TIMES: dict[str, dict[str, float]] = {}  # task -> peer -> best seconds (this process)


def largest_siit_task() -> str | None:
    from tasks.registry import LOADERS, load_task

    names = sorted(n for n, (fam, _) in LOADERS.items() if fam == "siit")
    if not names:
        return None
    sizes = {n: (len(t.nodes), sum(p.numel() for p in t.model.parameters())) for n in names for t in [load_task(n, "cpu")]}
    return max(names, key=lambda n: (sizes[n], [-ord(c) for c in n]))


TASKS = [t for t in (TRACR_TASK, largest_siit_task()) if t]


# --------------------------------------------------------------------------- the peers


def _node_values(method, ev, group: int) -> dict[str, torch.Tensor]:
    """Every node's replacement on one length group, straight from the method (no checks)."""
    return {n.name: method.ablate(ev.node_batch(n, group)) for n in ev.nodes}


def _effects(ev, outputs_of) -> list[tuple[str, float, float]]:
    """``(node, effect, continuous)`` from ``outputs_of(group) -> {node: ablated outputs}``, summed
    over the groups with the suite's scorer, exactly as ``node_effects`` aggregates them."""
    scorer, sums = SuiteScorer(), {n.name: [0.0, 0, 0.0, 0] for n in ev.nodes}
    for g in range(ev.n_groups):
        outs = outputs_of(g)
        for n in ev.nodes:
            for i, v in enumerate(scorer.score(ev, g, n, ev.outputs[g], outs[n.name])):
                sums[n.name][i] += v
    return [(n.name, sums[n.name][0] / sums[n.name][1], sums[n.name][2] / sums[n.name][3]) for n in ev.nodes]


def run_engine(method, ev, ctx):
    return [(e.name, e.effect, e.continuous) for e in node_effects(method, ev)]


def run_tl_hooks(method, ev, ctx):
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
        return _effects(ev, outputs_of)


def pyvene_or_skip():
    try:
        import pyvene  # noqa: F401
        import transformers  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure is the skip reason
        pytest.skip(f"pyvene not usable here ({type(err).__name__}: {err}); pip install -e '.[peers]'")
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
    pv = pyvene_or_skip()
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
        return _effects(ev, outputs_of)


def auto_circuit_or_skip():
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
    except Exception as err:  # noqa: BLE001 - any import failure is the skip reason
        pytest.skip(f"auto-circuit not usable here ({type(err).__name__}: {err}); pip install -e '.[peers]'")
    return graph_utils


def auto_circuit_model(model):
    """A patchable (factorized) copy of ``model``; the task's own model is left alone."""
    graph_utils = auto_circuit_or_skip()
    m = copy.deepcopy(model)
    m.set_use_attn_result(True)
    m.set_use_split_qkv_input(True)
    m.set_use_hook_mlp_in(True)
    pm = graph_utils.patchable_model(m, factorized=True, slice_output=None, separate_qkv=True, device=torch.device(model.cfg.device))
    srcs = sorted(pm.srcs, key=lambda s: s.src_idx)
    edges_from = {s.src_idx: [e for e in pm.edges if e.src.src_idx == s.src_idx] for s in srcs}
    return pm, srcs, edges_from


def run_auto_circuit(method, ev, ctx):
    graph_utils = auto_circuit_or_skip()
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
        return _effects(ev, outputs_of)


RUNNERS = {"engine": run_engine, "tl_hooks": run_tl_hooks, "pyvene": run_pyvene, "auto_circuit": run_auto_circuit}


# --------------------------------------------------------------------------- the benchmark


@pytest.fixture(scope="module")
def peer_context(abench_session, request):
    """Per task: its data, the fitted method, the engine's effects (the reference) and the
    peers' one-time set-up (model copies), built once; prints the ratio table at the end."""
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            task, fit, ev = abench_session.task_and_data(name)
            method = make_method(METHOD).fit(fit)
            ctx = {"task": task, "ev": ev, "method": method, "model_copy": copy.deepcopy(task.model)}
            ctx["reference"] = run_engine(method, ev, ctx)
            cache[name] = ctx
        return cache[name]

    yield get
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is not None and capture is not None and _TIMES:
        with capture.global_and_fixture_disabled():  # the table reaches the terminal, not a captured teardown
            for line in ratio_table(_TIMES):
                tr.write_line(line)


def ratio_table(times: dict[str, dict[str, float]]) -> list[str]:
    lines = ["", f"peers: all-node {METHOD} effects, best of {ROUNDS} (seconds; ratio = peer / engine)",
             f"| task | {' | '.join(PEERS)} |", "|---|" + "---|" * len(PEERS)]
    for task, by_peer in times.items():
        eng = by_peer.get("engine")
        cells = [("-" if p not in by_peer else f"{by_peer[p]:.3f} s" + (f" ({by_peer[p] / eng:.1f}x)" if eng else ""))
                 for p in PEERS]
        lines.append(f"| {task} | {' | '.join(cells)} |")
    return lines


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("task_name", TASKS)
def test_peer_all_node_effects(task_name, peer, peer_context, benchmark):
    ctx = peer_context(task_name)
    if task_name == TRACR_TASK:
        assert len(ctx["task"].nodes) >= 40, f"{task_name} has {len(ctx['task'].nodes)} nodes"
    if peer == "pyvene":
        pyvene_or_skip()
    if peer == "auto_circuit" and "auto_circuit" not in ctx:
        ctx["auto_circuit"] = auto_circuit_model(ctx["task"].model)  # one-time wrapping, untimed
    run = RUNNERS[peer]
    benchmark.group = f"peers {task_name}"
    result = benchmark.pedantic(run, args=(ctx["method"], ctx["ev"], ctx), rounds=ROUNDS, iterations=1)
    if benchmark.stats:
        seconds = min(benchmark.stats.stats.data)
    else:  # --benchmark-disable: time one more call ourselves
        t0 = time.perf_counter()
        run(ctx["method"], ctx["ev"], ctx)
        seconds = time.perf_counter() - t0
    ref = ctx["reference"]
    assert [r[0] for r in result] == [r[0] for r in ref]
    d_effect = max(abs(a[1] - b[1]) for a, b in zip(result, ref))
    d_cont = max(abs(a[2] - b[2]) for a, b in zip(result, ref))
    _TIMES.setdefault(task_name, {})[peer] = seconds
    info = {"task": task_name, "peer": peer, "nodes": len(ref), "examples": sum(t.shape[0] for t in ctx["ev"].tokens),
            "seconds": round(seconds, 4), "max_abs_diff_effect": d_effect, "max_abs_diff_continuous": d_cont}
    if "engine" in _TIMES[task_name]:
        info["ratio_to_engine"] = round(seconds / _TIMES[task_name]["engine"], 2)
    benchmark.extra_info.update(info)
    print(f"\npeer {info}")
    assert d_effect <= TOLERANCE and d_cont <= TOLERANCE, info
