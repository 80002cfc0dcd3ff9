"""Speed: the batched all-node effect computation against the per-node hook loop, and batched
joint (node-set) ablation against the per-set loop.

Measured in one run on the largest tracr task (shuffle_dyck, 40 nodes), with resample ablation
on the session's eval set (``--n-eval``). The ratio is reported (terminal, leaderboard.json
``speed``, pytest-benchmark extra_info), not asserted: timing noise on shared CPUs is 10-25%.
"""

import time

from abench.effects import node_effects
from ablations import make_method

SPEED_TASK = "shuffle_dyck"


def batched_vs_loop(benchmark, fn, method, ev) -> tuple[object, object, float, float]:
    """``fn(method, ev, batched=...)`` timed both ways in one run: (batched result, loop result,
    best batched seconds, best loop seconds). The batched path is timed by pytest-benchmark."""
    batched = benchmark.pedantic(fn, args=(method, ev), kwargs={"batched": True}, rounds=3, iterations=1)
    t_batched = min(benchmark.stats.stats.data) if benchmark.stats else None
    loop_times = []
    for _ in range(2):
        t0 = time.perf_counter()
        loop = fn(method, ev, batched=False)
        loop_times.append(time.perf_counter() - t0)
    if t_batched is None:  # --benchmark-disable: time it ourselves
        t0 = time.perf_counter()
        fn(method, ev, batched=True)
        t_batched = time.perf_counter() - t0
    return batched, loop, t_batched, min(loop_times)


def report(abench_session, benchmark, key: str, result: dict) -> None:
    benchmark.extra_info.update(result)
    abench_session.speed[key] = result
    print(f"\n{key} on {SPEED_TASK}: {result}")


def test_batched_vs_loop_all_node_effects(abench_session, benchmark):
    task, fit, ev = abench_session.task_and_data(SPEED_TASK)
    method = make_method("resample").fit(fit)
    benchmark.group = "all-node effects"
    batched, loop, t_batched, t_loop = batched_vs_loop(benchmark, node_effects, method, ev)
    assert [(a.name, round(a.effect, 6)) for a in batched] == [(b.name, round(b.effect, 6)) for b in loop]
    report(abench_session, benchmark, "batched_vs_loop", {
        "task": SPEED_TASK,
        "nodes": len(task.nodes),
        "examples": sum(t.shape[0] for t in ev.tokens),
        "batched_seconds": round(t_batched, 4),
        "loop_seconds": round(t_loop, 4),
        "ratio": round(t_loop / t_batched, 2),
    })


def test_batched_vs_loop_joint_ablation(abench_session, benchmark):
    """Joint ablation (faithfulness, completeness and the subset curves of ``abench.circuit``):
    node sets stacked along the batch axis against one hooked forward per set."""
    from abench.circuit import circuit_effects

    task, fit, ev = abench_session.task_and_data(SPEED_TASK)
    method = make_method("resample").fit(fit)
    benchmark.group = "joint ablation"
    batched, loop, t_batched, t_loop = batched_vs_loop(benchmark, circuit_effects, method, ev)
    for key in ("faithfulness", "completeness", "faithfulness_divergence", "completeness_divergence"):
        assert abs(batched[key] - loop[key]) <= 1e-5, (key, batched[key], loop[key])
    report(abench_session, benchmark, "joint_batched_vs_loop", {
        "task": SPEED_TASK,
        "nodes": len(task.nodes),
        "node_sets": batched["n_node_sets"],
        "examples": sum(t.shape[0] for t in ev.tokens),
        "batched_seconds": round(t_batched, 4),
        "loop_seconds": round(t_loop, 4),
        "ratio": round(t_loop / t_batched, 2),
    })
