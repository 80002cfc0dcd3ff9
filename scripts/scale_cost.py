"""Cost curves at real model shapes: ``python scripts/scale_cost.py`` (CPU, one thread, ~3 minutes)
writes reports/scale/cost.{md,json,html}; ``--device cuda --grid gpu`` is the GPU grid
(``scripts/gpu_run.py`` runs it); ``--grid tiny`` is the seconds-long grid the tests run.

Per method (zero, mean, resample): time per node and peak memory of all-node effects against the
model's node count (the smallest suite task, then the Llama-style, Pythia-70m and gpt2-small
shapes), the sequence length and the batch; then the peers on the gpt2-small shape, the same nodes
and inputs under resample: the engine, the TransformerLens hook loop and pyvene (when installed).
Random weights: cost only, no ground truth, never pooled or scored for separability.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from abench.scale_cost import figure_html, markdown, measure, peer_runners, scale_data, spread_nodes, to_rows  # noqa: E402
from abench.bench import task_data  # noqa: E402
from tasks.registry import families, load_task  # noqa: E402
from tasks.scale import scale_task  # noqa: E402
from interventions.options import at_least  # noqa: E402

METHODS = ("zero", "mean", "resample")
# (shape, batch, length) points; the first of each shape is its point on the node axis
GRIDS = {
    "cpu": {"max_nodes": 12, "suite_n": 64, "points": [
        ("llama_gqa", 2, 32), ("pythia_70m", 2, 32), ("gpt2_small", 2, 32), ("gpt2_small", 4, 32), ("gpt2_small", 2, 128)],
        "peers": ("gpt2_small", 2, 32)},
    "gpu": {"max_nodes": 10_000, "suite_n": 256, "points": [
        ("llama_gqa", 8, 128), ("pythia_70m", 8, 128), ("gpt2_small", 8, 128), ("gpt2_small", 8, 32), ("gpt2_small", 2, 128),
        ("gpt2_small", 32, 128), ("gpt2_small", 8, 512)],
        "peers": ("gpt2_small", 8, 128)},
    "tiny": {"max_nodes": 3, "suite_n": 8, "points": [("llama_gqa", 2, 4), ("llama_gqa", 2, 8), ("llama_gqa", 3, 4)],
             "peers": ("llama_gqa", 2, 4), "width": 8},
}


def smallest_suite_task(device: str):
    """The default selection's task with the fewest nodes (tracr, else SIIT)."""
    names = families().get("tracr", []) or families().get("siit", [])
    tasks = [load_task(n, device) for n in names]
    return min(tasks, key=lambda t: (len(t.nodes), t.name))


def run(device: str, grid_name: str, out: Path) -> list[str]:
    grid = GRIDS[grid_name]
    width = grid.get("width", 1)
    points, notes = [], [
        "Random weights at real shapes (tasks/scale.py): cost only, no ground truth, never pooled nor scored for separability.",
        f"Device {device}; torch threads {torch.get_num_threads()}; grid `{grid_name}`; methods {', '.join(METHODS)}.",
        f"Scale points run at most {grid['max_nodes']} nodes spread over the layers (s / node = seconds / nodes run); "
        "the suite task runs all its nodes over its length groups.",
        "Peak extra: peak memory beyond the model and clean data (CUDA: max_memory_allocated; CPU: peak resident set growth).",
    ]
    suite = smallest_suite_task(device)
    _, ev = task_data(suite, n_fit=grid["suite_n"], n_eval=grid["suite_n"])
    for method in METHODS:
        points.append(measure(suite, ev, method))
    tasks = {}
    for shape, batch, length in grid["points"]:
        task = tasks.setdefault(shape, scale_task(shape, device, width=width))
        ev = scale_data(task, spread_nodes(task, grid["max_nodes"]), batch, length)
        for method in METHODS:
            points.append(measure(task, ev, method))
        print(points[-1], flush=True)
    shape, batch, length = grid["peers"]
    task = tasks[shape]
    ev = scale_data(task, spread_nodes(task, grid["max_nodes"]), batch, length)
    points.append(measure(task, ev, "resample"))
    for name, runner in peer_runners().items():
        if isinstance(runner, str):
            notes.append(f"Peer {name}: {runner}, not measured.")
        else:
            points.append(measure(task, ev, "resample", runner, runner=name))
    out.mkdir(parents=True, exist_ok=True)
    rows = to_rows(points)
    (out / "cost.json").write_text(json.dumps({"device": device, "grid": grid_name, "notes": notes, "points": rows}, indent=1) + "\n")
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
