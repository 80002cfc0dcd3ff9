"""Cost curves at real model shapes: ``python scripts/scale_cost.py`` (CPU, one thread, ~3 minutes)
writes reports/scale/cost.{md,json,html}; ``--device cuda --grid gpu`` is the GPU grid
(``scripts/gpu_run.py`` runs it); ``--grid tiny`` is the seconds-long grid the tests run.

Per method (zero, mean, resample): time per node and peak memory of all-node effects against the
model's node count (the smallest suite task, then the Llama-style, Pythia-70m and gpt2-small
shapes), the sequence length and the batch, under each task's own scorer; pyvene (when installed)
on the gpt2-small shape; then, side by side on the same nodes and inputs under resample, the engine,
its floor (abench/floor.py) and the TransformerLens hook loop; and one attribution pass over every
node, with the node count where it becomes cheaper than the exact engine (the crossover).
Random weights: cost only, no ground truth, never pooled or scored for separability.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from abench.scale_cost import (crossover_rows, figure_html, floor_rows, markdown, measure, measure_attribution,  # noqa: E402
                               measure_floor, peer_runners, scale_data, spread_nodes, task_scorer, to_rows)
from abench.scorers import SuiteScorer  # noqa: E402
from abench.bench import task_data  # noqa: E402
from tasks.registry import families, load_task  # noqa: E402
from tasks.scale import scale_task  # noqa: E402
from interventions.options import at_least  # noqa: E402

METHODS = ("zero", "mean", "resample")
# (shape, batch, length) points; the first of each shape is its point on the node axis. ``floor``: the points
# where the engine, the floor and the hook loop run side by side (resample, the task's scorer; the first also
# under the suite's scorer, every cell read); ``crossover``: where attribution over every node is timed.
GRIDS = {
    "cpu": {"max_nodes": 12, "suite_n": 64, "points": [
        ("llama_gqa", 2, 32), ("pythia_70m", 2, 32), ("gpt2_small", 2, 32), ("gpt2_small", 4, 32), ("gpt2_small", 2, 128)],
        "peers": ("gpt2_small", 2, 32),
        "floor": [("gpt2_small", 2, 32), ("gpt2_small", 4, 128), ("pythia_70m", 2, 32), ("llama_gqa", 2, 32)],
        "crossover": [("gpt2_small", 2, 32), ("gpt2_small", 4, 128), ("pythia_70m", 2, 32), ("llama_gqa", 2, 32)]},
    "gpu": {"max_nodes": 10_000, "suite_n": 256, "points": [
        ("llama_gqa", 8, 128), ("pythia_70m", 8, 128), ("gpt2_small", 8, 128), ("gpt2_small", 8, 32), ("gpt2_small", 2, 128),
        ("gpt2_small", 32, 128), ("gpt2_small", 8, 512)],
        "peers": ("gpt2_small", 8, 128), "floor": [("gpt2_small", 8, 128)], "crossover": [("gpt2_small", 8, 128)]},
    "tiny": {"max_nodes": 3, "suite_n": 8, "points": [("llama_gqa", 2, 4), ("llama_gqa", 2, 8), ("llama_gqa", 3, 4)],
             "peers": ("llama_gqa", 2, 4), "floor": [("gpt2_small", 2, 4), ("llama_gqa", 2, 4)],
             "crossover": [("gpt2_small", 2, 4)], "width": 8},
}


def smallest_suite_task(device: str):
    """The default selection's task with the fewest nodes (tracr, else SIIT)."""
    names = families().get("tracr", []) or families().get("siit", [])
    tasks = [load_task(n, device) for n in names]
    return min(tasks, key=lambda t: (len(t.nodes), t.name))


def run(device: str, grid_name: str, out: Path) -> list[str]:
    grid = GRIDS[grid_name]
    width = grid.get("width", 1)
    load_at_start = os.getloadavg()[0]
    points, notes = [], [
        "Random weights at real shapes (tasks/scale.py): cost only, no ground truth, never pooled nor scored for separability.",
        f"Device {device}; torch threads {torch.get_num_threads()}; grid `{grid_name}`; methods {', '.join(METHODS)}.",
        f"Scale points run at most {grid['max_nodes']} nodes spread over the layers (s / node = seconds / nodes run); "
        "the suite task runs all its nodes over its length groups.",
        "Scorer: the task's own. The scale tasks are scored by the logit difference at the final position (logit_diff: "
        "the engine computes one position and the answers' unembedding columns); suite: every cell read (argmax and KL).",
        "Peak extra: peak memory beyond the model and clean data (CUDA: max_memory_allocated; CPU: peak resident set growth).",
    ]
    suite = smallest_suite_task(device)
    _, ev = task_data(suite, n_fit=grid["suite_n"], n_eval=grid["suite_n"])
    for method in METHODS:
        points.append(measure(suite, ev, method, scorer=task_scorer(suite, ev)))
    tasks = {}

    def task_of(shape):
        return tasks.setdefault(shape, scale_task(shape, device, width=width))

    for shape, batch, length in grid["points"]:
        task = task_of(shape)
        ev = scale_data(task, spread_nodes(task, grid["max_nodes"]), batch, length)
        for method in METHODS:
            points.append(measure(task, ev, method, scorer=task_scorer(task, ev)))
        print(points[-1], flush=True)
    shape, batch, length = grid["peers"]
    task = task_of(shape)
    ev = scale_data(task, spread_nodes(task, grid["max_nodes"]), batch, length)
    scorer = task_scorer(task, ev)
    for name, runner in peer_runners().items():
        if isinstance(runner, str):
            notes.append(f"Peer {name}: {runner}, not measured.")
        elif name != "tl_hooks":  # the hook loop runs beside the engine and the floor below
            points.append(measure(task, ev, "resample", runner, runner=name, scorer=scorer))
    hook_loop = peer_runners()["tl_hooks"]
    for i, (shape, batch, length) in enumerate(grid["floor"]):
        task = task_of(shape)
        ev = scale_data(task, spread_nodes(task, grid["max_nodes"]), batch, length)
        for scorer in [task_scorer(task, ev)] + ([SuiteScorer()] if i == 0 else []):
            points.append(measure(task, ev, "resample", scorer=scorer))
            points.append(measure_floor(task, ev, scorer))
            points.append(measure(task, ev, "resample", hook_loop, runner="tl_hooks", scorer=scorer))
            print(points[-3:], flush=True)
    for shape, batch, length in grid["crossover"]:
        task = task_of(shape)
        ev = scale_data(task, list(task.nodes), batch, length)  # every node: one attribution pass estimates them all
        points.append(measure_attribution(task, ev, "resample", task_scorer(task, ev)))
        print(points[-1], flush=True)
    notes.append("Load average (1 min) of the machine at the start and end of this run: "
                 f"{load_at_start:.2f}, {os.getloadavg()[0]:.2f} (other jobs on the cores slow every runner alike: "
                 "read the ratios, not the seconds).")
    out.mkdir(parents=True, exist_ok=True)
    rows = to_rows(points)
    (out / "cost.json").write_text(json.dumps({"device": device, "grid": grid_name, "notes": notes, "points": rows,
                                               "floor": floor_rows(points), "crossover": crossover_rows(points)}, indent=1) + "\n")
    (out / "cost.md").write_text(markdown(points, notes))
    (out / "cost.html").write_text(figure_html(points, f"All-node effects: seconds per node ({device}, log-log)"))
    return [markdown(points, notes)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--grid", default=None, choices=sorted(GRIDS), help="default: cpu on the CPU, gpu on CUDA")
    ap.add_argument("--out", default=None, help="default reports/scale (CPU) or reports/gpu/scale (CUDA)")
    ap.add_argument("--threads", type=at_least(1), default=1)
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    grid = args.grid or ("gpu" if args.device == "cuda" else "cpu")
    out = Path(args.out or ("reports/gpu/scale" if args.device == "cuda" else "reports/scale"))
    for text in run(args.device, grid, out):
        print(text)


if __name__ == "__main__":
    main()
