"""Memory held at gpt2-small's shape under two ``--max-batch-mb`` budgets. Opt-in: runs when this file is
named (``pytest benchmarks/test_scale.py``) or ``--tasks`` names ``scale_gpt2_small`` or the ``scale`` family.

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
from abench.scale_cost import scale_data
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
