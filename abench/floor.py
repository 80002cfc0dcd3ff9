"""The physical floor of all-node effects: one forward per (node, length group) from the node's layer,
computing only what the scorer reads (``interventions.readout.run_from`` with the scorer's readout),
with no replacement built and nothing scored. The engine is timed against it (``benchmarks/test_floor.py``
on the SIIT tasks, ``benchmarks/test_scale.py`` and ``scripts/scale_cost.py`` at real shapes); stacking
several nodes' rows in one forward, or starting at a node's own write, can take the engine below it.
"""

from __future__ import annotations

import time

import torch

from abench.effects import read_by
from ablations.task_data import TaskData
from interventions.readout import run_from

FLOOR_REPEATS = 3


def floor_seconds(data: TaskData, scorer=None, repeats: int = FLOOR_REPEATS) -> float:
    """Sum over length groups and nodes of the best of ``repeats`` timings of one forward of the group's rows
    from ``resid_pre[node's layer]`` to the cells ``scorer`` reads (every cell when it names none)."""
    total = 0.0
    with torch.no_grad():
        for g in range(data.n_groups):
            readout = read_by(scorer, data, g)
            for node in data.nodes:
                resid = data.resid_pre[g][node.layer]
                best = float("inf")
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    run_from(data.model, resid, node.layer, readout)
                    best = min(best, time.perf_counter() - t0)
                total += best
    return total
