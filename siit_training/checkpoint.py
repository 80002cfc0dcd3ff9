"""A SIIT run's resumable state: ``<path>.safetensors`` (tensors) and ``<path>.json`` (the rest), no
pickles. Written at every evaluation; a resumed run restores it and gives the weights of an
uninterrupted one."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from siit_training.config import SiitConfig, unknown_options
from siit_training.objective import Objective
from tasks import siit

CHECKPOINT_VERSION = 1


def checkpoint_paths(path: Path) -> tuple[Path, Path]:
    """``<path>.safetensors`` (tensors) and ``<path>.json`` (everything else) of one run's checkpoint."""
    path = Path(path)
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def save_checkpoint(path: Path, run: Objective, opt: torch.optim.Optimizer, loop: dict) -> None:
    """Everything a run needs to go on bit for bit: LL and aux weights, Adam moments, both random
    streams, the best checkpoint so far and the loop's bookkeeping. Safetensors for tensors, JSON
    for the rest (no pickles); written to temporary names, then renamed, so a kill mid-write
    leaves the previous checkpoint intact."""
    from safetensors.torch import save_file

    tpath, jpath = checkpoint_paths(path)
    tpath.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"ll.{k}": v for k, v in run.ll.state_dict().items() if siit.is_weight(k)}
    tensors.update({f"aux.{k}": v for k, v in run.aux.items()})
    tensors.update({f"best.ll.{k}": v for k, v in loop["best"]["state"].items() if siit.is_weight(k)})
    tensors.update({f"best.aux.{k}": v for k, v in loop["best"]["aux"].items()})
    for i, st in opt.state_dict()["state"].items():
        tensors.update({f"opt.{i}.{k}": v if torch.is_tensor(v) else torch.tensor(v) for k, v in st.items()})
    tensors["gen_state"] = run.gen.get_state()
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    version, internal, gauss_next = run.rng.getstate()
    meta = {
        "checkpoint_version": CHECKPOINT_VERSION, "task": run.task.name, "config": asdict(run.config),
        "ll_config": run.cfg, "continued": loop["continued"], "step": loop["step"], "elapsed_s": loop["elapsed"],
        "best": {"score": loop["best"]["score"], "step": loop["best"]["step"]}, "history": loop["history"],
        "reinits": loop["reinits"], "dead_evals": loop["dead_evals"], "ema": loop["ema"],
        "rng_state": [version, list(internal), gauss_next],
        "sessions": loop["sessions"], "extra": loop["extra"],
    }
    save_file(tensors, str(tpath.with_name(tpath.name + ".tmp")))
    jpath.with_name(jpath.name + ".tmp").write_text(json.dumps(meta) + "\n")
    tpath.with_name(tpath.name + ".tmp").replace(tpath)
    jpath.with_name(jpath.name + ".tmp").replace(jpath)


def read_checkpoint(path: Path, config: SiitConfig) -> tuple[dict, dict[str, torch.Tensor]]:
    """(JSON part, tensors) of a checkpoint written by ``train(checkpoint=path)``; refuses one whose
    task configuration differs from ``config`` (a resumed run is the same run, or it is not resumed)."""
    from safetensors.torch import load_file

    tpath, jpath = checkpoint_paths(path)
    if not tpath.exists() or not jpath.exists():
        raise FileNotFoundError(f"no checkpoint to resume at {tpath} / {jpath}")
    meta = json.loads(jpath.read_text())
    if meta.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {jpath}: version {meta.get('checkpoint_version')!r}, this code reads {CHECKPOINT_VERSION}")
    now, unknown = asdict(config), unknown_options(meta["config"])
    # a removed option recorded at the value today's recipe fixes is the same setting (unknown_options)
    differ = {k: (v, now.get(k)) for k, v in meta["config"].items() if k in unknown or (k in now and now[k] != v)}
    if differ:
        raise ValueError(f"checkpoint {jpath} was written with other settings; resume with the same ones "
                         f"(checkpoint vs now: {differ})")
    return meta, load_file(str(tpath), device="cpu")


def restore(run: Objective, opt: torch.optim.Optimizer, meta: dict, tensors: dict[str, torch.Tensor]) -> dict:
    """Load what ``save_checkpoint`` wrote into ``run`` (weights, random streams) and ``opt`` (Adam
    moments); returns the loop's bookkeeping: best checkpoint, history, re-initialisations,
    dead-eval counts, running means, sessions, step, elapsed seconds and ``extra``."""
    device = run.device
    with torch.no_grad():
        run.ll.load_state_dict({k[3:]: v.to(device) for k, v in tensors.items() if k.startswith("ll.")}, strict=False)
        for k in run.aux:
            run.aux[k].copy_(tensors[f"aux.{k}"].to(device))
    opt_sd = opt.state_dict()
    opt_sd["state"] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, i, field_ = key.split(".", 2)
            opt_sd["state"].setdefault(int(i), {})[field_] = v.to(device) if field_ != "step" else v
    opt.load_state_dict(opt_sd)
    run.gen.set_state(tensors["gen_state"])
    run.rng.setstate((meta["rng_state"][0], tuple(meta["rng_state"][1]), meta["rng_state"][2]))
    # the model's buffers (attention masks) are not in the file: the best state takes them from the model, so it loads
    # strictly even when no later step beats it
    saved_best = {k[8:]: v.to(device) for k, v in tensors.items() if k.startswith("best.ll.")}
    buffers = dict(run.ll.named_buffers())
    missing = [k for k in run.ll.state_dict() if k not in saved_best and k not in buffers]
    if missing:
        raise ValueError(f"checkpoint: its best state lacks the weights {missing[:4]}{'...' if len(missing) > 4 else ''}")
    best = {"score": meta["best"]["score"], "step": meta["best"]["step"],
            "state": {k: saved_best.get(k, v.detach().clone()) for k, v in run.ll.state_dict().items()},
            "aux": {k[9:]: v.to(device) for k, v in tensors.items() if k.startswith("best.aux.")}}
    return {"best": best, "history": meta["history"], "reinits": meta["reinits"], "ema": meta["ema"],
            "dead_evals": meta["dead_evals"], "step": meta["step"], "elapsed": meta["elapsed_s"],
            "sessions": meta["sessions"], "extra": meta["extra"]}
