"""How close each in-circuit LL head's attention pattern is to its tracr (HL) head's, per input length.

``python scripts/attention_agreement.py <task> [weights dir] [n per length]`` prints, for every
in-circuit attention node of SIIT model ``<task>`` on clean inputs of each length (seeded), the
mean and max over queries (BOS query excluded) of the total variation distance between the LL
and HL patterns, and the mean attention both put on BOS. A head with the same output on clean
inputs can still route differently from tracr's (a TV distance far from 0); it then has no reason
to keep that output when a patch from a longer source brings inputs it was never trained on
clean, which is where count_less_freq's and frac_prevs' IIA misses sit. ``--w-attn`` in
``python -m siit_training`` trains toward tracr's pattern.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch

from tasks.siit import ll_members


def pattern_agreement(task, n: int = 256, seed: int = 0) -> list[dict]:
    """One row per (in-circuit head, length): TV distance mean / max over queries and BOS mass (LL, HL)."""
    hl, ll = task.high_level.model, task.model
    rng = random.Random(seed)
    hl_nodes = {node.name: node for node in task.high_level.nodes}
    ll_nodes = {node.name: node for node in task.nodes}
    # (HL head, LL head) pairs from the correspondence; a redundant set pairs its HL head with each member
    pairs = [(hl_nodes[h], ll_nodes[m]) for h, v in task.correspondence.items() if hl_nodes[h].kind == "attn"
             for m in ll_members(v)]
    names = {f"blocks.{node.layer}.attn.hook_pattern" for pair in pairs for node in pair}
    out = []
    for L in range(task.inputs.min_len, task.inputs.max_len + 1):
        base = task.encode([task.inputs.draw(rng, L) for _ in range(n)])
        with torch.no_grad():
            _, hc = hl.run_with_cache(base, names_filter=lambda name: name in names)
            _, lc = ll.run_with_cache(base, names_filter=lambda name: name in names)
        for h, l in pairs:
            hp = hc[f"blocks.{h.layer}.attn.hook_pattern"][:, h.head, 1:]  # [batch, query, key], BOS query dropped
            lp = lc[f"blocks.{l.layer}.attn.hook_pattern"][:, l.head, 1:]
            tv = 0.5 * (hp - lp).abs().sum(-1)
            out.append({"node": l.name, "hl_node": h.name, "length": L, "tv_mean": tv.mean().item(), "tv_max": tv.max().item(),
                        "bos_ll": lp[..., 0].mean().item(), "bos_hl": hp[..., 0].mean().item()})
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    from tasks.siit import siit_task

    weights = Path(argv[1]) if len(argv) > 1 else None
    task = siit_task(argv[0], "cpu", weights)
    for r in pattern_agreement(task, int(argv[2]) if len(argv) > 2 else 256):
        print(f"{r['node']} (HL {r['hl_node']}) L={r['length']}: TV mean {r['tv_mean']:.4f} max {r['tv_max']:.4f}  "
              f"BOS mass LL {r['bos_ll']:.4f} HL {r['bos_hl']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
