"""Continue a shipped SIIT model under joint strict training: its card's recipe, plus the joint options.

    python scripts/retrain_joint.py back2 --weights-dir /tmp/stage [--lr 3e-4 --max-steps 3000 --time-limit 900]

Reads the model's card in ``--weights-dir`` (``config``: every ``SiitConfig`` field of its last run),
keeps each option, sets the joint ones (``--joint-strict --w-circuit 1 --step-schedule``,
32 subsets per evaluation, no re-initialisation of quiet bystanders, ``w_strict`` at least 1, early stop at 0.996), prints the ``python -m siit_training``
command this amounts to, and runs it (``--continue-training``: the card records the earlier run).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from siit_training.__main__ import main as siit_main
from interventions.options import at_least
from siit_training.config import SiitConfig, unknown_options
from tasks import siit

# options this script decides; every other field is the card's
# IIT rows leave the bystanders at base by default: on after_a (continued from the same weights, 3000 steps) IIT rows
# with bystander subsets ended at min-node IIA 0.896, without them (and --w-iit 2) at 0.970, joint faithfulness
# 0.875 vs 0.893; on back2 the two were indistinguishable. The models shipped first were trained with them on
# (their cards' config says so).
JOINT = {"joint_strict": True, "iit_bystanders": False, "w_circuit": 1.0, "step_schedule": True, "reinit_dead_after": 0,
         "eval_subsets": 32}
# early stop once the selection score reaches this (the card's 32 subsets and fresh data read a little lower)
JOINT_TARGET = 0.996


def config_of_old_card(card: dict) -> dict:
    """``SiitConfig`` fields of a card written before cards stored ``config`` (from ``hyperparameters``)."""
    h = card["hyperparameters"]
    w = h["loss_weights"]
    return {"seed": card["seed"], "batch": h["batch"], "w_iit": w["iit"], "w_strict": w["strict"], "w_aux": w["aux"],
            "w_live": w["live"], "live_floor": h.get("live_floor", 0.25),
            "all_lengths_per_step": h.get("lengths_per_step", "").startswith("all")}


def command(name: str, card_config: dict, overrides: dict, weights_dir: str) -> list[str]:
    """The ``python -m siit_training`` arguments: the card's config, then ``overrides``. Keys that are not
    ``SiitConfig`` fields (options removed since the card was written) are left out."""
    cfg = {f.name: card_config.get(f.name, f.default) for f in fields(SiitConfig)}
    cfg.update(overrides)
    argv = ["--task", name, "--continue-training", "--weights-dir", weights_dir, "--threads", "1", "--no-progress"]
    for f in fields(SiitConfig):
        v, flag = cfg[f.name], "--" + f.name.replace("_", "-")
        if f.type == "bool":
            argv += [flag] if v else []
        elif v is not None and v != f.default:
            argv += [flag, str(v)]
    return argv


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("--weights-dir", required=True)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--max-steps", type=at_least(1), default=3000)
    ap.add_argument("--time-limit", type=float, default=900.0)
    ap.add_argument("--seed", type=at_least(0), default=None, help="default: the card's")
    ap.add_argument("--iit-bystanders", action="store_true", help="IIT rows also resample a random bystander subset")
    ap.add_argument("--no-iit-bystanders", action="store_true", help="IIT rows leave the bystanders at base (the default)")
    ap.add_argument("--w-strict", type=float, default=None, help="default: max(card's, 1)")
    ap.add_argument("--w-live", type=float, default=None, help="default: the card's")
    ap.add_argument("--eval-every", type=at_least(1), default=None, help="default: the card's")
    ap.add_argument("--w-iit", type=float, default=None, help="default: the card's")
    ap.add_argument("--target", type=float, default=None, help=f"early-stop score (default: max(card's, {JOINT_TARGET}))")
    args = ap.parse_args(argv)
    card = json.loads(siit.paths(args.name, Path(args.weights_dir))[1].read_text())
    cfg = card.get("config") or config_of_old_card(card)
    lost = unknown_options(cfg)
    if lost:  # the card's recipe used an option this trainer no longer has: say so, and go on with today's
        print(f"note: {args.name}'s card records options the trainer no longer has, at values it cannot reproduce: {lost}",
              file=sys.stderr)
    overrides = {**JOINT, "lr": args.lr, "max_steps": args.max_steps, "time_limit": args.time_limit,
                 "w_strict": args.w_strict if args.w_strict is not None else max(cfg.get("w_strict", 0.4), 1.0),
                 "target": args.target if args.target is not None else max(cfg.get("target", 0.993), JOINT_TARGET)}
    if args.iit_bystanders and args.no_iit_bystanders:
        ap.error("--iit-bystanders and --no-iit-bystanders contradict each other")
    overrides["iit_bystanders"] = bool(args.iit_bystanders)
    if args.seed is not None:
        overrides["seed"] = args.seed
    for key in ("w_live", "eval_every", "w_iit"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    run = command(args.name, cfg, overrides, args.weights_dir)
    print("python -m siit_training " + shlex.join(run), flush=True)
    siit_main(run)


if __name__ == "__main__":
    sys.exit(main())
