"""The SIIT training loop: ``TrainingRun`` (one optimizer step, a held-out evaluation, checkpoint
selection, early stop, re-initialisation of dead bystanders, the resumable checkpoint) and
``train``, which runs one to the end (what a step minimises: ``objective.py``).

Adam, cosine lr decay (over the step budget or the time budget, whichever runs out first),
grad-norm clipping; held-out evaluation every ``eval_every`` steps, the best checkpoint (by the
bar's score) is kept; stops early once the score reaches ``target`` with every bystander live.
A bystander that stays below the liveness threshold for ``reinit_dead_after`` consecutive
evaluations has its weights redrawn from the init distribution (recorded in the card).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm
from transformer_lens import HookedTransformer

from siit_training.checkpoint import read_checkpoint, restore, save_checkpoint
from siit_training.config import GRAD_CLIP, LIVE_FLOOR, SiitConfig
from siit_training.objective import Objective
from siit_training.reinit import reinit_node
from tasks.base import Task
from tasks.seeds import derive
from tasks import siit
from tasks.siit.evaluate import bar_score, eval_pairs
from tasks.siit.evaluate import evaluate as evaluate_model


def set_lr(opt: torch.optim.Optimizer, config: SiitConfig, step: int, elapsed: float, warmup_steps: int) -> None:
    """Cosine decay to 5% over the run; with a time limit, over whichever budget runs out first.

    Continuing from trained weights: a linear warm-up, since a fresh Adam's first steps move every
    weight by ~lr at once (frac_prevs fell from accuracy 1.0 to 0.42 in 100 steps without it)."""
    done = step / config.max_steps
    if config.time_limit and not config.step_schedule:
        done = max(done, elapsed / config.time_limit)
    warm = min(1.0, step / warmup_steps) if warmup_steps else 1.0
    for g in opt.param_groups:
        g["lr"] = warm * config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(done, 1.0))))


class TrainingRun:
    """One SIIT run, step by step: ``run()`` is ``step`` until the budget ends, with ``evaluate``,
    ``select``, ``should_stop``, ``reinit_dead`` and ``checkpoint`` at every evaluation.

    The arguments are ``train``'s. Everything random is drawn in the same order whichever methods
    run, so a fixed seed gives the same weights, and a resumed run those of an uninterrupted one.
    """

    def __init__(self, hl_task: Task, config: SiitConfig, *, device: str = "cpu", progress: bool = True,
                 init: tuple[dict, dict] | None = None, ll_config: dict | None = None, checkpoint: Path | None = None,
                 resume: bool = False, pause_after_steps: int | None = None, pause_after_s: float | None = None,
                 extra: dict | None = None, redundant: dict[str, list[str]] | None = None,
                 layers: list[int] | None = None):
        if resume and checkpoint is None:
            raise ValueError("resume=True needs checkpoint=<path>")
        meta = tensors = None
        if resume:
            meta, tensors = read_checkpoint(checkpoint, config)
            if init is not None or (ll_config is not None and ll_config != meta["ll_config"]):
                raise ValueError("a resumed run takes its weights and architecture from the checkpoint; do not pass init / ll_config")
            ll_config = meta["ll_config"]
        self.task, self.config, self.progress = hl_task, config, progress
        self.checkpoint_path, self.pause_after_steps, self.pause_after_s = checkpoint, pause_after_steps, pause_after_s
        self.objective = Objective(hl_task, config, device, init, ll_config, redundant, layers)
        self.continued = meta["continued"] if meta else init is not None
        self.hyperparameters = config.hyperparameters(hl_task.output, continued=self.continued, redundant=redundant)
        # a fresh Adam's first steps move every weight by ~lr at once: trained or tracr weights need a warm-up
        self.warmup_steps = 200 if self.continued or config.init_tracr else 0
        self.params = list(self.objective.ll.parameters()) + list(self.objective.aux.values())
        self.opt = torch.optim.Adam(self.params, lr=config.lr)
        self.eval_data = eval_pairs(hl_task, config.eval_n, seed=derive(config.seed, "siit-selection"), cross_length=True)
        self.best: dict = {"score": -1.0}
        self.history: list[dict] = []
        self.reinits: list[dict] = []
        self.ema: dict[str, float] = {}
        self.dead_evals = {node.name: 0 for node in self.objective.bys}
        self.first_step, elapsed0, sessions = 1, 0.0, []
        self.extra = extra
        if meta is not None:
            state = restore(self.objective, self.opt, meta, tensors)
            self.best, self.history, self.reinits = state["best"], state["history"], state["reinits"]
            self.ema, self.dead_evals, self.extra = state["ema"], state["dead_evals"], state["extra"]
            self.first_step, elapsed0, sessions = state["step"] + 1, state["elapsed"], state["sessions"]
            tqdm.write(f"[{hl_task.name}] resumed from {checkpoint} at step {state['step']} ({elapsed0:.0f}s trained)")
        self.sessions = sessions + [{"first_step": self.first_step}]
        self.t0 = time.time() - elapsed0  # elapsed training time counts every session
        self.t_session = time.time()
        self.paused = False
        self.last_step = self.first_step - 1
        # all_lengths_per_step: one optimizer step averages the gradients of every input length (batch //
        # n_lengths pairs each) instead of one random length with the whole batch. One-length steps made
        # numerical frac_prevs oscillate (held-out accuracy 0.90-1.00 between evals at lr 3e-4); all-length
        # steps, in from-scratch runs of reverse and 6-head sort, drove every layer-0 bystander head
        # to liveness < 0.01 (one-length steps kept them at 0.2-0.3). Default: one length per step.
        lengths = self.objective.lengths
        self.per_length = max(1, config.batch // len(lengths)) if config.all_lengths_per_step else config.batch

    def elapsed(self) -> float:
        """Seconds of training so far, over every session."""
        return time.time() - self.t0

    def step(self, step: int) -> dict[str, float]:
        """One optimizer step (number ``step``); returns the running means of the batch metrics."""
        run, config, ll = self.objective, self.config, self.objective.ll
        ll.train()
        self.opt.zero_grad(set_to_none=True)
        step_lengths = run.lengths if config.all_lengths_per_step else [run.rng.choice(run.lengths)]
        sums: dict[str, float] = {}
        for L in step_lengths:
            loss, metrics = run.length_losses(L, self.per_length)
            (loss / len(step_lengths)).backward()
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v / len(step_lengths)
        for k, p in ll.named_parameters():  # --freeze-circuit: tracr's part gets no gradient, so Adam leaves it as it is
            if k in run.grad_masks and p.grad is not None:
                p.grad.mul_(run.grad_masks[k])
        torch.nn.utils.clip_grad_norm_(self.params, GRAD_CLIP)
        set_lr(self.opt, config, step, self.elapsed(), self.warmup_steps)
        self.opt.step()
        for k, v in sums.items():
            self.ema[k] = v if k not in self.ema else 0.95 * self.ema[k] + 0.05 * v
        self.last_step = step
        return self.ema

    def evaluate(self, step: int) -> dict:
        """Held-out metrics of the current weights (``tasks.siit.evaluate``), added to the history and logged."""
        run, config, name = self.objective, self.config, self.task.name
        run.ll.eval()
        m = evaluate_model(self.task, run.ll, run.nodes, run.corr, {k: v.detach() for k, v in run.aux.items()}, self.eval_data,
                           n_subsets=config.eval_subsets, subset_seed=derive(config.seed, "siit-selection-subsets"))
        self.history.append({"step": step, "wall_s": round(self.elapsed(), 1), "accuracy": m["accuracy"], "iia": m["iia"],
                             "siia": m["siia"], "aux_accuracy": m["aux_accuracy"], "live_min": m["liveness_min_out_of_circuit"]})
        tqdm.write(f"[{name}] step {step} {self.elapsed():.0f}s acc {m['accuracy']:.4f} iia {m['iia']:.4f} (min {m['iia_min']:.3f}) "
                   f"siia {m['siia']:.4f} (min {m['siia_min']:.3f}) faith {m['faithfulness_all']:.4f} (subsets min {m['faithfulness_subset_min']:.3f}) "
                   f"compl {m['completeness_ll']:.3f}/{m['completeness_hl']:.3f} aux {m['aux_accuracy']:.3f} live_min {m['liveness_min_out_of_circuit']:.3f}"
                   + (f" backup_iia_min {m['backup_iia_min']:.3f} backup_acc_min {m['backup_accuracy_min']:.3f} "
                      f"resample_alone {min(m['resample_alone_per_node'].values()):.3f}" if "backup_iia_min" in m else ""))
        return m

    def select(self, step: int, m: dict) -> None:
        """Keep the current weights as the best checkpoint when their selection key beats the best so far:
        the bar's score, plus 1 with every bystander live."""
        config, run = self.config, self.objective
        score = bar_score(m)
        score_key = score + (1.0 if m["liveness_min_out_of_circuit"] >= siit.LIVE_THRESHOLD else 0.0)
        if config.init_tracr and score >= siit.PASS_BAR and m["liveness_min_out_of_circuit"] >= LIVE_FLOOR:
            # a warm start is at the bar from step 0: among checkpoints at the bar with every bystander as live
            # as the hinge asks, prefer the one whose bystanders best do their own job (the aux readout)
            score_key += 1.0 + m["aux_accuracy"]
        if score_key > self.best["score"]:
            self.best = {"score": score_key, "step": step, "state": copy.deepcopy(run.ll.state_dict()),
                         "aux": {k: v.detach().clone() for k, v in run.aux.items()}}

    def should_stop(self, m: dict) -> bool:
        """Early stop at ``target`` with every bystander live, or the time limit reached."""
        config = self.config
        # a warm start begins at the bar (tracr's accuracy and IIA, bystanders silent on tracr's dimensions):
        # it stops early only once every bystander is as live as the hinge asks, not merely past the threshold
        stop_live = LIVE_FLOOR if config.init_tracr else siit.LIVE_THRESHOLD
        if bar_score(m) >= config.target and m["liveness_min_out_of_circuit"] >= stop_live:
            return True
        if config.time_limit is not None and self.elapsed() > config.time_limit:
            tqdm.write(f"[{self.task.name}] time limit {config.time_limit:.0f}s reached")
            return True
        return False

    def reinit_dead(self, step: int, m: dict) -> None:
        """Redraw each bystander below the liveness threshold for ``reinit_dead_after`` evaluations in a row.
        Runs after ``select``: the kept state is the evaluated one."""
        config, run = self.config, self.objective
        if not config.reinit_dead_after:
            return
        for node in run.bys:
            live = m["liveness"][node.name]
            self.dead_evals[node.name] = self.dead_evals[node.name] + 1 if live < siit.LIVE_THRESHOLD else 0
            if self.dead_evals[node.name] >= config.reinit_dead_after:
                reinit_node(run.ll, node, run.gen, self.opt, quiet_dims=run.hl.cfg.d_model if config.init_tracr else 0)
                self.reinits.append({"step": step, "node": node.name, "liveness": live})
                tqdm.write(f"[{self.task.name}] re-initialised dead bystander {node.name} (liveness {live:.3f})")
                self.dead_evals[node.name] = 0

    def checkpoint(self, step: int) -> bool:
        """Write the resumable state (when the run has a checkpoint path and steps left); returns whether
        this session pauses here (``pause_after_steps`` / ``pause_after_s`` reached)."""
        path = self.checkpoint_path
        if path is None or step >= self.config.max_steps:
            return False
        self.sessions[-1]["last_step"] = step
        save_checkpoint(path, self.objective, self.opt, {
            "continued": self.continued, "step": step, "elapsed": self.elapsed(), "best": self.best, "history": self.history,
            "reinits": self.reinits, "dead_evals": self.dead_evals, "ema": self.ema, "sessions": self.sessions,
            "extra": self.extra or {}})
        if ((self.pause_after_steps is not None and step - self.first_step + 1 >= self.pause_after_steps)
                or (self.pause_after_s is not None and time.time() - self.t_session >= self.pause_after_s)):
            tqdm.write(f"[{self.task.name}] paused at step {step}; checkpoint {path} (go on with --resume)")
            self.paused = True
            return True
        return False

    def run(self) -> tuple[HookedTransformer, dict[str, torch.Tensor], dict]:
        """Steps until the budget, an early stop or a pause; returns ``(ll, aux, info)`` with the best checkpoint."""
        config = self.config
        bar = tqdm(range(self.first_step, config.max_steps + 1), initial=self.first_step - 1, total=config.max_steps,
                   disable=not self.progress, desc=f"siit {self.task.name}", mininterval=2.0)
        for step in bar:
            ema = self.step(step)
            bar.set_postfix({k: f"{v:.3f}" for k, v in ema.items()}, refresh=False)
            if step % config.eval_every == 0 or step == config.max_steps:
                m = self.evaluate(step)
                self.select(step, m)
                if self.should_stop(m):
                    break
                self.reinit_dead(step, m)
                if self.checkpoint(step):
                    break
        bar.close()
        return self.result()

    def result(self) -> tuple[HookedTransformer, dict[str, torch.Tensor], dict]:
        """The best checkpoint loaded into the LL model, its aux readouts, and what the card records of the run."""
        run = self.objective
        self.sessions[-1]["last_step"] = self.last_step
        run.ll.load_state_dict(self.best["state"])
        run.ll.eval()
        info = {"steps": self.last_step, "best_step": self.best["step"], "wall_s": self.elapsed(), "history": self.history,
                "ll_config": run.cfg, "correspondence": run.corr, "hyperparameters": self.hyperparameters,
                "reinitialised": self.reinits, "paused": self.paused, "sessions": self.sessions, "extra": self.extra or {}}
        return run.ll, self.best["aux"], info


def train(hl_task: Task, config: SiitConfig, *, device: str = "cpu", progress: bool = True,
          init: tuple[dict, dict] | None = None, ll_config: dict | None = None, checkpoint: Path | None = None,
          resume: bool = False, pause_after_steps: int | None = None, pause_after_s: float | None = None,
          extra: dict | None = None, redundant: dict[str, list[str]] | None = None, layers: list[int] | None = None
          ) -> tuple[HookedTransformer, dict[str, torch.Tensor], dict]:
    """Train an LL model for ``hl_task`` under ``config``; returns ``(ll, aux, info)`` with the best checkpoint.

    ``init``: (LL state dict, aux tensors) to continue from; ``ll_config``: the LL architecture
    (default ``tasks.siit.ll_config_for``). ``checkpoint``: a path stem where the full run state is
    written at every evaluation; ``resume``: go on from it (same config, same draws: a resumed run
    gives the weights of an uninterrupted one). ``pause_after_steps`` / ``pause_after_s``: stop
    this session at the first evaluation past either, after writing the checkpoint, and return
    ``info["paused"] = True`` (the budgets of ``config`` count training time over all sessions).
    ``redundant``: HL node -> list of LL nodes that each carry it (``variants.SIIT_VARIANTS``; backup rows).
    ``layers``: HL layer i -> LL layer ``layers[i]`` (a deep variant; default the same layer).
    ``extra``: JSON-able facts about the run kept in the checkpoint and returned as ``info["extra"]``
    (on resume, the checkpoint's)."""
    return TrainingRun(hl_task, config, device=device, progress=progress, init=init, ll_config=ll_config, checkpoint=checkpoint,
                       resume=resume, pause_after_steps=pause_after_steps, pause_after_s=pause_after_s, extra=extra,
                       redundant=redundant, layers=layers).run()
