"""Where one node's time goes at a real shape: ``python scripts/profile_node.py`` (CPU, one thread, seconds).

Profiles the engine's all-node ``resample`` effects on one node of the gpt2-small shape (random weights,
batch 2 x 32 tokens, the task's scorer: the logit difference at the final position) with torch.profiler,
and prints the operators by their own CPU time, and the engine's time against the floor (one forward from
the node's layer to the cells the scorer reads, ``abench.floor``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from abench.effects import node_effects  # noqa: E402
from abench.floor import floor_seconds  # noqa: E402
from abench.scale_cost import scale_data, task_scorer  # noqa: E402
from ablations import make_method  # noqa: E402
from tasks.scale import scale_task  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="gpt2_small")
    ap.add_argument("--node", default="blocks.5.attn.hook_z[3]", help="a node of the shape (default: a middle-layer head)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--rows", type=int, default=15, help="operators printed")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    task = scale_task(args.shape)
    nodes = [n for n in task.nodes if n.name == args.node]
    if not nodes:
        ap.error(f"{args.node!r} is not a node of {args.shape}; e.g. {task.nodes[0].name}")
    ev = scale_data(task, nodes, args.batch, args.length)
    method, scorer = make_method("resample").fit(ev), task_scorer(task, ev)
    node_effects(method, ev, scorer=scorer)  # warm-up: the cached unembedding columns, allocator
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        node_effects(method, ev, scorer=scorer)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e6
    print(f"engine, profiled: {total:.4f} s of operator time; floor (unprofiled): {floor_seconds(ev, scorer):.4f} s")


if __name__ == "__main__":
    main()
