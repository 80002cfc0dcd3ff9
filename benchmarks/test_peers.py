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

The peers' code is ``abench/peers.py``. Peers build each node's replacement with the method's own
``ablate`` (no checks); the engine pays for its own checks. Every peer's effects must equal the engine's to 1e-5. Each (task, peer)
is a pytest-benchmark entry (group ``peers <task>``); the ratio table (peer seconds / engine
seconds) is printed at the end of the module (run without ``-n`` to see it).

Tasks: the tracr task with the most nodes (``shuffle_dyck``, 40) and the largest shipped SIIT
model (most nodes, then parameters; ties by name).
"""

from __future__ import annotations

import copy
import time

import pytest

from abench.peers import PeerUnavailable, RUNNERS, auto_circuit_model, pyvene_module, run_engine
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
    try:
        if peer == "pyvene":
            pyvene_module()
        if peer == "auto_circuit" and "auto_circuit" not in ctx:
            ctx["auto_circuit"] = auto_circuit_model(ctx["task"].model)  # one-time wrapping, untimed
    except PeerUnavailable as err:
        pytest.skip(str(err))
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
