"""Real model shapes (random weights, cost only). Opt-in: runs when this file is named (``pytest
benchmarks/test_scale.py``) or ``--tasks`` names a ``scale_*`` task or the ``scale`` family.

The engine against its floor, on gpt2-small (batch 2 x 32 and 4 x 128 tokens), Pythia-70m and the
grouped-query shape (2 x 32): resample on 12 nodes spread over the layers, under the task's own scorer
(the logit difference at the final position), timed side by side in one run with the floor (one forward
per node from its layer to the cells the scorer reads, ``abench.floor``) and the TransformerLens hook loop
(one full hooked forward per node). Asserted: the engine's effects equal the hook loop's (1e-5), so the
times are of the same numbers; the ratios are reported (pytest-benchmark extra_info, printed), not
asserted (timing noise on shared CPUs is 10-25%).

Memory held at gpt2-small's shape under two ``--max-batch-mb`` budgets.

All-node ``resample`` effects of the last two layers (26 nodes), batch 2, 32 tokens: once with a budget
that fits one node per stacked forward, once with one that fits a whole layer. Asserted: identical
effects (1e-5) and each run's peak memory beyond the model and its clean data within the bound of
``interventions.memory.held_bound_bytes`` (budget, or one node's rows if larger, + one layer's
replacements + scoring one output + TransformerLens' unembedding copy; + ``CPU_ALLOCATOR_SLACK`` on
the CPU). Peaks, bounds and forwards are reported in pytest-benchmark's extra_info and printed.
"""


import pytest

from abench.effects import node_effects
from abench.peak_memory import CPU_ALLOCATOR_SLACK, PeakMemory, cpu_peak_supported
from abench.peers import run_tl_hooks
from abench.scale_cost import measure, measure_floor, scale_data, spread_nodes, task_scorer
from ablations import make_method
from interventions import memory

SPEED_TASK = "scale_gpt2_small"  # the plugin's --tasks filter: runs when the selection is default or names it
BATCH, LENGTH = 2, 32


@pytest.fixture(scope="module")
def gpt2_data(abench_session, request):
    from tasks.registry import load_task

    task = load_task(SPEED_TASK, abench_session.device)
    n = task.model.cfg.n_layers
    ev = scale_data(task, [x for x in task.nodes if x.layer >= n - 2], BATCH, LENGTH, seed=0)
    return task, ev, make_method("resample").fit(ev)


@pytest.mark.skipif(not cpu_peak_supported(), reason="no resettable peak resident set here")
def test_memory_held_under_two_budgets(gpt2_data, benchmark):
    task, ev, method = gpt2_data
    device = str(task.model.cfg.device)
    one_node = BATCH * memory.bytes_per_row(task.model, LENGTH + 1) / 2**20
    budgets = {"one node per forward": one_node, "one layer per forward": 13 * one_node}
    node_effects(method, ev)  # warm-up: one-time allocations are not the run's
    results, info = {}, {}
    for label, mb in budgets.items():
        with memory.max_batch_mb(mb):
            with PeakMemory(device) as peak:
                results[label] = node_effects(method, ev)
            bound = memory.held_bound_bytes(task.model, BATCH, LENGTH + 1) + (0 if peak.cuda else CPU_ALLOCATOR_SLACK)
        info[label] = {"budget_mib": round(mb, 1), "peak_extra_mib": round(peak.extra_bytes / 2**20, 1),
                       "bound_mib": round(bound / 2**20, 1), "held_base_mib": round(peak.base_bytes / 2**20, 1)}
        assert peak.extra_bytes <= bound, (label, info[label])
    benchmark.group = "memory held"
    with memory.max_batch_mb(budgets["one layer per forward"]):
        benchmark.pedantic(node_effects, args=(method, ev), rounds=1, iterations=1)
    small, large = results.values()
    for a, b in zip(small, large, strict=True):
        assert a.name == b.name and abs(a.effect - b.effect) <= 1e-5 and abs(a.continuous - b.continuous) <= 1e-5, (a, b)
    benchmark.extra_info.update({"task": SPEED_TASK, "nodes": len(ev.nodes), "batch": BATCH, "length": LENGTH, "device": device,
                                 **{k.replace(" ", "_"): v for k, v in info.items()}})
    print(f"\nmemory held on {SPEED_TASK} ({len(ev.nodes)} nodes, batch {BATCH}, {LENGTH} tokens, {device}): {info}")


FLOOR_POINTS = {"scale_gpt2_small": [(2, 32), (4, 128)], "scale_pythia_70m": [(2, 32)], "scale_llama_gqa": [(2, 32)]}
FLOOR_NODES = 12


@pytest.mark.parametrize("task_name", list(FLOOR_POINTS))
def test_engine_against_the_floor_at_real_shapes(task_name, abench_session, benchmark):
    from tasks.registry import load_task

    task = load_task(task_name, abench_session.device)
    benchmark.group = "floor at real shapes"
    rows = []
    for batch, length in FLOOR_POINTS[task_name]:
        ev = scale_data(task, spread_nodes(task, FLOOR_NODES), batch, length, seed=0)
        scorer = task_scorer(task, ev)
        method = make_method("resample").fit(ev)
        engine = node_effects(method, ev, scorer=scorer)
        loop = run_tl_hooks(method, ev, {"scorer": scorer})
        for e, (name, effect, continuous) in zip(engine, loop, strict=True):
            assert e.name == name and abs(e.effect - effect) <= 1e-5 and abs(e.continuous - continuous) <= 1e-5, (e, effect)
        t_engine = measure(task, ev, "resample", scorer=scorer).seconds_per_node
        t_floor = measure_floor(task, ev, scorer).seconds_per_node
        t_loop = measure(task, ev, "resample", lambda m, ev, sc: run_tl_hooks(m, ev, {"scorer": sc}), "tl_hooks", scorer).seconds_per_node
        rows.append({"batch": batch, "length": length, "scorer": scorer.name, "nodes": len(ev.nodes),
                     "engine_s_per_node": round(t_engine, 4), "floor_s_per_node": round(t_floor, 4),
                     "tl_hooks_s_per_node": round(t_loop, 4), "engine_over_floor": round(t_engine / t_floor, 2),
                     "tl_hooks_over_engine": round(t_loop / t_engine, 2)})
    ev = scale_data(task, spread_nodes(task, FLOOR_NODES), *FLOOR_POINTS[task_name][0], seed=0)
    method, scorer = make_method("resample").fit(ev), task_scorer(task, ev)
    benchmark.pedantic(node_effects, args=(method, ev), kwargs={"scorer": scorer}, rounds=1, iterations=1)
    benchmark.extra_info.update({"task": task_name, "points": rows})
    print(f"\nfloor at {task_name}: {rows}")
