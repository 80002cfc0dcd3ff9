"""Train SIIT models: ``python -m siit_training --task frac_prevs --device cpu`` (or ``--task all``).

Writes ``tasks/weights/siit/<task>.safetensors`` and ``<task>.json`` (card: LL config,
correspondence, the run's ``SiitConfig`` under ``config``, seed, steps, wall time, device,
held-out accuracy / IIA / SIIA, per-node liveness) and prints the card. A model that misses the
bar is still written, with ``"passed": false``, and is not loaded by the registry; it is kept in
``tasks/weights/siit_failed/`` (``tasks.siit.FAILED_DIR``), which is not package data. ``--recard``
re-evaluates existing weights under the current protocol without training.

Runs are resumable: at every evaluation the full run state (weights, Adam moments, random
streams, best checkpoint, history) is written to ``<weights dir>/checkpoints/<task>.{safetensors,json}``;
``--pause-after SECONDS`` ends a session there, and ``--resume`` (same options) goes on, giving
the weights an uninterrupted run would. The checkpoint is deleted once the card is written.
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict, replace
from pathlib import Path

import torch

from siit_training.card import make_card
from siit_training.checkpoint import checkpoint_paths
from interventions.options import at_least
from siit_training.config import SiitConfig, add_config_arguments, config_from_args
from siit_training.loop import train
from tasks.base import Task
from tasks import siit
from tasks.tracr.compiled import tracr_task
from tasks.tracr.programs import PROGRAMS

# Cheapest first (small tracr models).
DEFAULT_ORDER = ["hist", "length", "count_a", "prev_token", "first_token", "back2", "back3", "same_as_prev", "same_as_first", "prev_is_first",
                 "sum_prev", "prev_prev",
                 "after_a", "mix3", "first_runs", "first_count", "frac_prevs", "first_frac", "reverse", "sort_unique",
                 "pair_balance", "count_less_freq", "sort", "sort_freq", "shuffle_dyck"]


def ll_config_arg(name: str, task: Task, previous: dict | None, arch: list[str]) -> dict | None:
    """The LL config to train: the earlier run's when continuing, else the default with ``--arch`` overrides."""
    if previous is not None:
        if arch:
            raise SystemExit("--arch cannot change the architecture of weights being continued (--continue-training)")
        return previous["ll_config"]
    cfg = siit.ll_config_for(name, task.model)  # the variant's architecture, when name is a SIIT_VARIANTS entry
    for item in arch:
        key, sep, value = item.partition("=")
        if not sep or key not in ("n_layers", "n_heads", "d_model", "d_head", "d_mlp") or not value.isdigit():
            raise SystemExit(f"--arch {item!r}: expected n_layers=, n_heads=, d_model=, d_head= or d_mlp= with a positive integer")
        cfg[key] = int(value)
    return cfg


def checkpoint_path(name: str, args: argparse.Namespace) -> Path:
    """Where a run of ``name`` keeps its resumable state: ``<weights dir>/checkpoints/<name>``."""
    return Path(args.weights_dir or siit.WEIGHTS_DIR) / "checkpoints" / name


def run_one(name: str, config: SiitConfig, args: argparse.Namespace) -> dict | None:
    """Train SIIT model ``name`` and write its weights and card (returned); ``None`` when the session paused."""
    if siit.is_compiled(name):  # its recipe: tracr's weights, frozen (variants.SIIT_VARIANTS)
        config = replace(config, init_tracr=True, freeze_circuit=True)
    elif config.freeze_circuit:
        raise SystemExit(f"{name}: --freeze-circuit makes a compiled-circuit model, which ships only as a variant marked "
                         f"'compiled' in tasks.siit.variants.SIIT_VARIANTS (its own family, {siit.COMPILED_FAMILY})")
    task = tracr_task(siit.program_of(name), args.device)
    init, previous, continued_from = None, None, None
    ckpt = checkpoint_path(name, args)
    if args.continue_training:
        prev_ll, prev_aux, previous = siit.load(name, args.device, args.weights_dir)
        init = ({k: v for k, v in prev_ll.state_dict().items()}, prev_aux)
        # seed and config too: with them each stage's command can be rebuilt from the card chain
        continued_from = {k: previous.get(k) for k in (
            "seed", "config", "steps", "best_step", "wall_time_s", "hyperparameters", "accuracy", "iia", "iia_min_node", "siia",
            "siia_min_node", "liveness_min_out_of_circuit", "protocol", "test_sources", "continued_from")}
    ll, aux, info = train(task, config, device=args.device, progress=not args.no_progress, init=init,
                          ll_config=None if args.resume else ll_config_arg(name, task, previous, args.arch),
                          checkpoint=ckpt, resume=args.resume, pause_after_steps=args.pause_after_steps,
                          pause_after_s=args.pause_after, extra={"continued_from": continued_from},
                          redundant=siit.redundant_of(name) or None, layers=siit.layers_of(name))
    if info["paused"]:
        print(f"{name}: paused at step {info['steps']} after {info['wall_s']:.0f}s of training; "
              f"go on with `python -m siit_training --task {name} --resume` and the same options")
        return None
    wall = info["wall_s"]
    record = {
        "seed": config.seed,
        "steps": info["steps"],
        "best_step": info["best_step"],
        "wall_time_s": round(wall, 1),
        "continued_from": info["extra"]["continued_from"],  # from the checkpoint when resumed
        "device": args.device if args.device != "cpu" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "hyperparameters": info["hyperparameters"],
        "config": asdict(config),
        "reinitialised_bystanders": info["reinitialised"],
        "sessions": info["sessions"],
        "history": info["history"],
    }
    card = make_card(task, ll, aux, info["ll_config"], info["correspondence"], record, name=name)
    siit.save(name, ll, aux, card, args.weights_dir)
    for f in checkpoint_paths(ckpt):  # the run is complete: its resumable state has done its job
        f.unlink(missing_ok=True)
    return card


def recard(name: str, args: argparse.Namespace) -> dict:
    """Re-evaluate shipped weights with the current test protocol and rewrite the card (training record kept)."""
    task = tracr_task(siit.program_of(name), args.device)
    ll, aux, old = siit.load(name, args.device, args.weights_dir)
    keep = ("seed", "steps", "best_step", "wall_time_s", "continued_from", "device", "hyperparameters", "config",
            "reinitialised_bystanders", "sessions", "history")
    record = {k: old.get(k) for k in keep if k in old or k not in ("config", "sessions")}  # older cards lack these two
    record["recarded"] = {"earlier_card": {k: old.get(k) for k in ("test_sources", "protocol", "accuracy", "iia", "iia_min_node", "siia", "siia_min_node", "liveness_min_out_of_circuit", "passed")},
                          "note": "weights unchanged; metrics recomputed with the current tasks.siit.evaluate and test data"}
    card = make_card(task, ll, aux, old["ll_config"], old["correspondence"], record, name=name)
    siit.save(name, ll, aux, card, args.weights_dir)
    return card


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m siit_training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="all", help="tracr program name (or a variant of variants.SIIT_VARIANTS, e.g. hist_backup), "
                    "comma list, or 'all' (every program, then every variant)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_config_arguments(ap)  # every hyperparameter: the fields of SiitConfig
    ap.add_argument("--weights-dir", default=None, help="write here instead of tasks/weights/siit")
    ap.add_argument("--continue-training", action="store_true",
                    help="start from the shipped weights of the task (the card records the earlier run under continued_from)")
    ap.add_argument("--recard", action="store_true",
                    help="no training: re-evaluate the weights in --weights-dir with the current protocol and rewrite their cards")
    ap.add_argument("--arch", action="append", default=[], metavar="KEY=N",
                    help="override the LL architecture of a from-scratch run (n_layers, n_heads, d_model, d_head, d_mlp; extra layers hold bystanders only); repeatable")
    ap.add_argument("--resume", action="store_true",
                    help="go on with the run whose checkpoint is in <weights dir>/checkpoints/<task> (written at every "
                         "evaluation), with the same options")
    ap.add_argument("--pause-after", type=float, default=None, metavar="SECONDS",
                    help="stop this session at the first evaluation after SECONDS, keeping the checkpoint (no card is written)")
    ap.add_argument("--pause-after-steps", type=at_least(1), default=None, metavar="N",
                    help="stop this session at the first evaluation after N steps, keeping the checkpoint")
    ap.add_argument("--threads", type=at_least(1), default=1)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    config = config_from_args(args)
    torch.set_num_threads(args.threads)
    names = DEFAULT_ORDER + list(siit.SIIT_VARIANTS) if args.task == "all" else [t.strip() for t in args.task.split(",")]
    for n in names:
        if n not in PROGRAMS and n not in siit.SIIT_VARIANTS:
            ap.error(f"unknown task {n!r}; valid: {', '.join(list(PROGRAMS) + list(siit.SIIT_VARIANTS))}")
    if args.resume and (args.continue_training or args.arch or args.recard):
        ap.error("--resume takes weights and architecture from the checkpoint: drop --continue-training / --arch / --recard")
    for n in names:
        card = recard(n, args) if args.recard else run_one(n, config, args)
        if card is None:
            continue
        short = {k: v for k, v in card.items() if k not in ("history", "shapes")}
        print(json.dumps(short, indent=1))


if __name__ == "__main__":
    main()
