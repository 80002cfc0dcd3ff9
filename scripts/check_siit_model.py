"""Check trained SIIT weights before shipping them: the card's bar and the ground-truth check.

``python scripts/check_siit_model.py <task> <weights dir> [seed ...]`` prints the card's
numbers (accuracy, min-node IIA / SIIA, liveness, passed) and, on fresh leaderboard-style data
for each seed (default 4242 and the leaderboard's own), the ground-truth check: reference AUROC,
gap, max |LL - HL|, faithfulness and completeness (LL vs HL) and any reasons it fails. Exit status 0 only when the card passed and every
check passed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    from abench.bench import DEFAULT_SEED, task_data
    from abench.ground_truth import check_task
    from tasks.siit import siit_task

    name, weights = argv[0], Path(argv[1])
    seeds = [int(s) for s in argv[2:]] or [4242, DEFAULT_SEED]
    card = json.loads((weights / f"{name}.json").read_text())
    keys = ("accuracy", "iia_min_node", "siia_min_node", "liveness_min_out_of_circuit", "passed", "steps", "wall_time_s")
    print(name, {k: card.get(k) for k in keys})
    print("  joint:", {k: v for k, v in (card.get("joint") or {}).items() if k not in ("what", "subsets")})
    if "redundant" in card:  # a backup pair: the pair's IIA, each member's backup IIA / accuracy, resample alone (no bar)
        print("  redundant:", {k: v for k, v in card["redundant"].items() if k != "what"})
    ok = bool(card.get("passed"))
    task = siit_task(name, "cpu", weights)
    for seed in seeds:
        _, ev = task_data(task, seed=seed)
        gt = check_task(task, ev)
        print(f"  ground truth (seed {seed}): passed {gt.passed} AUROC {gt.auroc} gap {gt.gap:.3f} "
              f"max |LL-HL| {gt.max_abs_diff:.4f} faithfulness {gt.faithfulness:.4f} completeness LL {gt.completeness_ll:.4f} "
              f"HL {gt.completeness_hl:.4f}", *gt.reasons, sep="\n    " if gt.reasons else " ")
        for u in gt.joint_units:
            print(f"    joint unit {u['name']}: joint resample effect {u['ll_effect']:.4f} vs HL {u['hl_node']} "
                  f"{u['hl_effect']:.4f}; members alone (reported, not gated): "
                  + ", ".join(f"{m} {e:.4f}" for m, e in u["single_effects"].items()))
        ok = ok and gt.passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
