"""The SIIT training loop (see ``tasks/siit.py`` for what is trained and why).

Per step, for one input length drawn at random (no PAD: every batch holds one length), B base
and B source inputs from the task's precondition-respecting sampler, and one stacked LL forward
of 4B rows:

* rows 0..B:   clean base  -> behaviour loss vs HL(base), and the liveness hinge;
* rows B..2B:  each row patches one random in-circuit LL node with its source activation ->
               IIT loss vs HL(base) with the corresponding HL node patched the same way;
* rows 2B..3B: each row resample-ablates one random out-of-circuit LL node -> strict loss vs HL(base);
* rows 3B..4B: every in-circuit node resample-ablated -> aux loss of the aux readout (prev/next
               token, prev == current), so aux information must flow through bystanders.

Cross-entropy for categorical outputs, MSE for numerical ones; BOS excluded. Adam, cosine lr
decay (over the step budget or the time budget, whichever runs out first), grad-norm clipping; held-out evaluation every ``eval_every`` steps, the best checkpoint
(by min(accuracy, IIA, SIIA)) is kept; stops early once all three reach ``target``.
"""

from __future__ import annotations

import copy
import math
import random
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from tasks import siit
from tasks.base import Task


NUM_LOSS_SCALE = 100.0


def _loss(ll_out: torch.Tensor, hl_out: torch.Tensor, output: str) -> torch.Tensor:
    ll_out, hl_out = ll_out[:, 1:], hl_out[:, 1:]
    if output == "categorical":
        return F.cross_entropy(ll_out.reshape(-1, ll_out.shape[-1]), hl_out.argmax(-1).reshape(-1))
    # scaled so a numerical error of 0.1 costs about what a confident CE mistake does (else the aux CE dominates)
    return NUM_LOSS_SCALE * F.mse_loss(ll_out, hl_out)


def train(
    hl_task: Task,
    *,
    seed: int = 0,
    device: str = "cpu",
    max_steps: int = 3000,
    batch: int = 256,
    lr: float = 3e-3,
    w_iit: float = 1.0,
    w_strict: float = 0.4,
    w_aux: float = 0.5,
    w_live: float = 1.0,
    live_floor: float = 0.25,
    clip: float = 1.0,
    eval_every: int = 100,
    eval_n: int = 128,
    target: float = 0.995,
    time_limit_s: float | None = None,
    progress: bool = True,
    init: tuple[dict, dict] | None = None,
):
    """Train an LL model for ``hl_task``; returns ``(ll, aux, info)`` with the best checkpoint."""
    hyper = {"batch": batch, "lr": lr, "max_steps": max_steps, "time_limit_s": time_limit_s, "optimizer": "Adam",
             "lr_schedule": "cosine to 5% over max_steps or time_limit_s, whichever runs out first", "grad_clip": clip,
             "numerical_mse_scale": NUM_LOSS_SCALE if hl_task.output == "numerical" else None,
             "loss_weights": {"behaviour": 1.0, "iit": w_iit, "strict": w_strict, "aux": w_aux, "live": w_live},
             "live_floor": live_floor, "live_hinge": "mean over bystanders of relu(sqrt(live_floor) - sqrt(var / median in-circuit var))",
             "eval_every": eval_every, "eval_examples_per_length": eval_n, "early_stop_target": target}
    torch.manual_seed(seed)
    rng = random.Random(seed)
    hl = hl_task.model.to(device)
    name = hl_task.name
    cfg = siit.ll_config_for(name, hl)
    ll = siit.build_ll(cfg, device=device, seed=seed)
    corr = siit.correspondence(hl_task, ll)
    nodes = siit.ll_nodes(ll, corr.values())
    hl_by = {n.name: n for n in hl_task.nodes}
    ll_by = {n.name: n for n in nodes}
    circ_hl = [hl_by[h] for h in corr]
    circ_ll = [ll_by[l] for l in corr.values()]
    bys = [n for n in nodes if not n.in_circuit]
    hl_hooks = sorted({n.hook_name for n in circ_hl})
    ll_hooks = sorted({n.hook_name for n in nodes})
    last = f"blocks.{cfg['n_layers'] - 1}.hook_resid_post"
    sizes = siit.aux_sizes(cfg["d_vocab"])
    gen = torch.Generator().manual_seed(seed)
    aux = {
        "aux.W_U": (torch.randn(cfg["d_model"], sum(sizes), generator=gen) / math.sqrt(cfg["d_model"])).to(device).requires_grad_(),
        "aux.b_U": torch.zeros(sum(sizes), device=device, requires_grad=True),
    }
    if init is not None:  # continue training from (LL state dict, aux tensors)
        ll.load_state_dict(init[0], strict=False)
        with torch.no_grad():
            for k in aux:
                aux[k].copy_(init[1][k].to(device))
    params = list(ll.parameters()) + list(aux.values())
    opt = torch.optim.Adam(params, lr=lr)

    def set_lr(step: int) -> None:
        # cosine decay to 5% over the run; with a time limit, over whichever budget runs out first
        done = step / max_steps
        if time_limit_s:
            done = max(done, (time.time() - t0) / time_limit_s)
        for g in opt.param_groups:
            g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(done, 1.0))))

    lengths = list(range(hl_task.inputs.min_len, hl_task.inputs.max_len + 1))
    eval_data = siit.eval_pairs(hl_task, eval_n, seed=10_000 + seed)
    B = batch
    best = {"score": -1.0}
    history = []
    t0 = time.time()
    ema = {}
    bar = tqdm(range(1, max_steps + 1), disable=not progress, desc=f"siit {name}", mininterval=2.0)
    for step in bar:
        ll.train()
        L = rng.choice(lengths)
        base = hl_task.encode([hl_task.inputs.draw(rng, L) for _ in range(B)])
        src = hl_task.encode([hl_task.inputs.draw(rng, L) for _ in range(B)])
        rows = torch.arange(B, device=device)
        pick_c = torch.randint(len(circ_ll), (B,), generator=gen).to(device)
        pick_b = torch.randint(len(bys), (B,), generator=gen).to(device)
        with torch.no_grad():
            _, hl_src = hl.run_with_cache(src, names_filter=lambda n: n in hl_hooks)
            hl_assign = [(h, B + rows[pick_c == i], rows[pick_c == i]) for i, h in enumerate(circ_hl)]
            hl_out = hl.run_with_hooks(torch.cat([base, base]), fwd_hooks=siit.patch_hooks(hl_assign, hl_src.cache_dict))
            hl_base, hl_iit = hl_out[:B], hl_out[B:]
            _, ll_src = ll.run_with_cache(src, names_filter=lambda n: n in ll_hooks)
        assign = [(n, B + rows[pick_c == i], rows[pick_c == i]) for i, n in enumerate(circ_ll)]
        assign += [(n, 2 * B + rows[pick_b == i], rows[pick_b == i]) for i, n in enumerate(bys)]
        assign += [(n, 3 * B + rows, rows) for n in circ_ll]
        store: dict[str, torch.Tensor] = {}
        hooks = siit.patch_hooks(assign, ll_src.cache_dict)

        def keep(act, hook):
            store[hook.name] = act[:B]

        def keep_last(act, hook):
            store["last"] = act

        hooks += [(h, keep) for h in ll_hooks]
        hooks.append((last, keep_last))
        out = ll.run_with_hooks(torch.cat([base, base, base, base]), fwd_hooks=hooks)
        l_beh = _loss(out[:B], hl_base, hl_task.output)
        l_iit = _loss(out[B:2 * B], hl_iit, hl_task.output)
        l_strict = _loss(out[2 * B:3 * B], hl_base, hl_task.output)
        # aux readout on the all-circuit-ablated rows: the last resid of rows 3B..4B
        resid = store["last"][3 * B:]
        logits = resid @ aux["aux.W_U"] + aux["aux.b_U"]
        tgt = siit.aux_targets(base, cfg["d_vocab"])
        l_aux, off = 0.0, 0
        for k, size in enumerate(sizes):
            l_aux = l_aux + F.cross_entropy(logits[:, 1:, off:off + size].reshape(-1, size), tgt[:, 1:, k].reshape(-1))
            off += size
        l_aux = l_aux / len(sizes)
        vars_ = {n.name: siit.input_variance(siit.node_write(n, store[n.hook_name], ll)) for n in nodes}
        med = torch.quantile(torch.stack([vars_[n.name] for n in circ_ll]), 0.5).detach().clamp_min(1e-6)  # same median as siit.evaluate
        # hinge on the std ratio: a variance hinge has a vanishing gradient at a dead (zero-weight) node
        l_live = torch.stack([F.relu(live_floor ** 0.5 - (vars_[n.name] / med + 1e-8).sqrt()) for n in bys]).mean()
        loss = l_beh + w_iit * l_iit + w_strict * l_strict + w_aux * l_aux + w_live * l_live
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        set_lr(step)
        opt.step()
        with torch.no_grad():
            acc = siit.cell_correct(out[:B], hl_base, hl_task.output).float().mean().item()
            iia = siit.cell_correct(out[B:2 * B], hl_iit, hl_task.output).float().mean().item()
            siia = siit.cell_correct(out[2 * B:3 * B], hl_base, hl_task.output).float().mean().item()
        for k, v in (("loss", loss.item()), ("acc", acc), ("iia", iia), ("siia", siia), ("aux", l_aux.item()), ("live", l_live.item())):
            ema[k] = v if k not in ema else 0.95 * ema[k] + 0.05 * v
        bar.set_postfix({k: f"{v:.3f}" for k, v in ema.items()}, refresh=False)
        if step % eval_every == 0 or step == max_steps:
            ll.eval()
            m = siit.evaluate(hl_task, ll, nodes, corr, {k: v.detach() for k, v in aux.items()}, eval_data)
            score = min(m["accuracy"], m["iia"], m["siia"])
            history.append({"step": step, "wall_s": round(time.time() - t0, 1), "accuracy": m["accuracy"], "iia": m["iia"],
                            "siia": m["siia"], "aux_accuracy": m["aux_accuracy"], "live_min": m["liveness_min_out_of_circuit"]})
            tqdm.write(f"[{name}] step {step} {time.time() - t0:.0f}s acc {m['accuracy']:.4f} iia {m['iia']:.4f} (min {m['iia_min']:.3f}) "
                       f"siia {m['siia']:.4f} (min {m['siia_min']:.3f}) aux {m['aux_accuracy']:.3f} live_min {m['liveness_min_out_of_circuit']:.3f}")
            live_ok = m["liveness_min_out_of_circuit"] >= siit.LIVE_THRESHOLD
            score_key = score + (1.0 if live_ok else 0.0)
            if score_key > best["score"]:
                best = {"score": score_key, "step": step, "state": copy.deepcopy(ll.state_dict()),
                        "aux": {k: v.detach().clone() for k, v in aux.items()}}
            if score >= target and live_ok:
                break
            if time_limit_s is not None and time.time() - t0 > time_limit_s:
                tqdm.write(f"[{name}] time limit {time_limit_s:.0f}s reached")
                break
    bar.close()
    ll.load_state_dict(best["state"])
    ll.eval()
    info = {"steps": step, "best_step": best["step"], "wall_s": time.time() - t0, "history": history, "ll_config": cfg,
            "correspondence": corr, "hyperparameters": hyper}
    return ll, best["aux"], info

