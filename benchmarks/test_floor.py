"""How close the engine is to the physical floor, on every default SIIT task.

Floor (``abench.floor``): one forward per (node, length group) started at the node's layer, i.e. the
sum over groups and nodes of the time of one unhooked forward of the group's rows from
``resid_pre[layer]`` to every output cell (the suite's scorer reads them all; best of 3 each). Printed, per task, beside the all-node ``resample`` effects of
the engine (pytest-benchmark entry, best of its rounds) and of the plain per-node hook loop the
tests hold it to:

- ``floor_ratio`` = engine seconds / floor seconds (the issue's target: <= 1.5; stacking several
  nodes' rows into one forward can take it below 1);
- ``loop_ratio`` = loop seconds / engine seconds.

Reported, not asserted (timing noise on shared CPUs is 10-25%); the engine's effects are asserted
equal to the loop's (1e-5), so the numbers timed are the same numbers.
"""

import time

import pytest

from abench.effects import node_effects
from abench.floor import floor_seconds
from ablations import make_method
from tasks.registry import DEFAULT_FAMILIES, families

ENGINE_ROUNDS = 3
SIIT = families().get("siit", []) if "siit" in DEFAULT_FAMILIES else []


def best_seconds(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@pytest.mark.skipif(not SIIT, reason="no SIIT task is shipped")
@pytest.mark.parametrize("task_name", SIIT)
def test_engine_against_the_floor(task_name, abench_session, benchmark):
    task, fit, ev = abench_session.task_and_data(task_name)
    method = make_method("resample").fit(fit)
    benchmark.group = "floor"
    fast = benchmark.pedantic(node_effects, args=(method, ev), rounds=ENGINE_ROUNDS, iterations=1)
    t_engine = min(benchmark.stats.stats.data) if benchmark.stats else best_seconds(lambda: node_effects(method, ev))
    t0 = time.perf_counter()
    slow = node_effects(method, ev, batched=False)
    t_loop = time.perf_counter() - t0
    for a, b in zip(fast, slow, strict=True):
        assert a.name == b.name and abs(a.effect - b.effect) <= 1e-5 and abs(a.continuous - b.continuous) <= 1e-5, (a, b)
    t_loop = min(t_loop, best_seconds(lambda: node_effects(method, ev, batched=False), repeats=1))  # best of 2
    t_floor = floor_seconds(ev)
    info = {"task": task_name, "nodes": len(ev.nodes), "groups": ev.n_groups, "node_forwards": len(ev.nodes) * ev.n_groups,
            "examples": sum(t.shape[0] for t in ev.tokens), "engine_seconds": round(t_engine, 4), "loop_seconds": round(t_loop, 4),
            "floor_seconds": round(t_floor, 4), "floor_ratio": round(t_engine / t_floor, 2), "loop_ratio": round(t_loop / t_engine, 2)}
    benchmark.extra_info.update(info)
    print(f"\nfloor {info}")
