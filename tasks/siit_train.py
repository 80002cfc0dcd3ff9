"""The SIIT training loop (see ``tasks/siit.py`` for what is trained and why).

Per step, for one random input length (or, with ``all_lengths``, for every length, the batch
split evenly and gradients averaged; no PAD: each sub-batch holds one length), n base and n
source inputs from the task's precondition-respecting sampler, and one stacked LL forward of
4n rows:

* rows 0..n:   clean base  -> behaviour loss vs HL(base), and the liveness hinge;
* rows n..2n:  each row patches one random in-circuit LL node with its source activation ->
               IIT loss vs HL(base) with the corresponding HL node patched the same way;
* rows 2n..3n: each row resample-ablates one random out-of-circuit LL node -> strict loss vs HL(base);
* rows 3n..4n: every in-circuit node resample-ablated -> aux loss of the aux readout (prev/next
               token, prev == current), so aux information must flow through bystanders.

A bystander that stays below the liveness threshold for ``reinit_dead_after`` consecutive
evaluations has its weights redrawn from the init distribution (recorded in the card).

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


def _loss(ll_out: torch.Tensor, hl_out: torch.Tensor, output: str, num_scale: float = NUM_LOSS_SCALE) -> torch.Tensor:
    ll_out, hl_out = ll_out[:, 1:], hl_out[:, 1:]
    if output == "categorical":
        return F.cross_entropy(ll_out.reshape(-1, ll_out.shape[-1]), hl_out.argmax(-1).reshape(-1))
    # scaled so a numerical error of 0.1 costs about what a confident CE mistake does (else the aux CE dominates)
    return num_scale * F.mse_loss(ll_out, hl_out)


@torch.no_grad()
def reinit_node(ll, node, gen: torch.Generator, opt: torch.optim.Optimizer) -> None:
    """Redraw one bystander's weights from the LL init (normal, std ``initializer_range``; biases 0) and reset their Adam state.

    A bystander whose attention saturates on a constant pattern gets almost no gradient from the
    liveness hinge (reverse's blocks.0 head 1 sat at liveness 0.02 for 1000+ steps, at hinge weight 1
    and 5); redrawing it, as SAE training resamples dead latents, lets strict training teach the rest
    of the model to ignore a live node instead.
    """
    std = ll.cfg.initializer_range
    blk = ll.blocks[node.layer]
    if node.kind == "attn":
        h = node.head
        params = [(blk.attn.W_Q, h), (blk.attn.W_K, h), (blk.attn.W_V, h), (blk.attn.W_O, h)]
        biases = [(blk.attn.b_Q, h), (blk.attn.b_K, h), (blk.attn.b_V, h)]
    else:
        params = [(blk.mlp.W_in, None), (blk.mlp.W_out, None)]
        biases = [(blk.mlp.b_in, None)]
    for k, (p, idx) in enumerate(params + biases):
        target = p if idx is None else p[idx]
        if k < len(params):
            target.copy_(torch.randn(target.shape, generator=gen).to(p.device) * std)
        else:
            target.zero_()
        state = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                (state[key] if idx is None else state[key][idx]).zero_()


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
    target: float = 0.993,
    time_limit_s: float | None = None,
    progress: bool = True,
    init: tuple[dict, dict] | None = None,
    num_loss_scale: float = NUM_LOSS_SCALE,
    all_lengths: bool = False,
    reinit_dead_after: int = 3,
    ll_config: dict | None = None,
    cross_length: bool = True,
    aux_layer0: bool = False,
):
    """Train an LL model for ``hl_task``; returns ``(ll, aux, info)`` with the best checkpoint."""
    hyper = {"batch": batch, "lr": lr, "max_steps": max_steps, "time_limit_s": time_limit_s, "optimizer": "Adam",
             "lr_schedule": "cosine to 5% over max_steps or time_limit_s, whichever runs out first"
                            + ("; linear warm-up over 200 steps (continued from trained weights)" if init is not None else ""), "grad_clip": clip,
             "numerical_mse_scale": num_loss_scale if hl_task.output == "numerical" else None,
             "loss_weights": {"behaviour": 1.0, "iit": w_iit, "strict": w_strict, "aux": w_aux, "live": w_live},
             "live_floor": live_floor, "live_hinge": "mean over bystanders of relu(sqrt(live_floor) - sqrt(var / median in-circuit var))",
             "eval_every": eval_every, "eval_examples_per_length": eval_n, "early_stop_target": target,
             "lengths_per_step": "all (batch split evenly, gradients averaged)" if all_lengths else "one, drawn at random",
             "reinit_dead_bystander_after_evals": reinit_dead_after or None,
             "aux_layer0": "readout on blocks.0.hook_resid_post of tokens at p-1, p+1, p-2, p+2 (circuit-ablated rows)" if aux_layer0 else None,
             "sources": "IIT, strict and aux rows: each row's source length drawn uniformly from [base length, max_len] (the "
                        "benchmark's resample draw), first base-length+1 positions patched" if cross_length else "same length as the base",
             "selection": "best held-out min(accuracy, min-node IIA, min-node SIIA), sources of every length >= the base's"}
    torch.manual_seed(seed)
    rng = random.Random(seed)
    hl = hl_task.model.to(device)
    name = hl_task.name
    cfg = dict(ll_config) if ll_config is not None else siit.ll_config_for(name, hl)  # continuing: the earlier run's config
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
    if aux_layer0:  # a second readout on blocks.0.hook_resid_post: relative-position token copies, a job for layer-0 bystanders
        sizes0 = siit.aux0_sizes(cfg["d_vocab"])
        aux["aux.L0_W_U"] = (torch.randn(cfg["d_model"], sum(sizes0), generator=gen) / math.sqrt(cfg["d_model"])).to(device).requires_grad_()
        aux["aux.L0_b_U"] = torch.zeros(sum(sizes0), device=device, requires_grad=True)
    if init is not None:  # continue training from (LL state dict, aux tensors)
        ll.load_state_dict(init[0], strict=False)
        with torch.no_grad():
            for k in aux:
                if k in init[1]:  # a readout the earlier run lacked keeps its fresh init
                    aux[k].copy_(init[1][k].to(device))
    warmup_steps = 200 if init is not None else 0
    params = list(ll.parameters()) + list(aux.values())
    opt = torch.optim.Adam(params, lr=lr)

    def set_lr(step: int) -> None:
        # cosine decay to 5% over the run; with a time limit, over whichever budget runs out first
        done = step / max_steps
        if time_limit_s:
            done = max(done, (time.time() - t0) / time_limit_s)
        # continuing from trained weights: a linear warm-up, since a fresh Adam's first steps move
        # every weight by ~lr at once (frac_prevs fell from accuracy 1.0 to 0.42 in 100 steps without it)
        warm = min(1.0, step / warmup_steps) if warmup_steps else 1.0
        for g in opt.param_groups:
            g["lr"] = warm * lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(done, 1.0))))

    lengths = list(range(hl_task.inputs.min_len, hl_task.inputs.max_len + 1))
    eval_data = siit.eval_pairs(hl_task, eval_n, seed=10_000 + seed, cross_length=cross_length)
    B = batch
    best = {"score": -1.0}
    history = []
    reinits: list[dict] = []
    t0 = time.time()
    ema = {}
    bar = tqdm(range(1, max_steps + 1), disable=not progress, desc=f"siit {name}", mininterval=2.0)
    def length_losses(L: int, n: int):
        """Loss and running metrics on ``n`` (base, source) pairs of length ``L``: one stacked LL forward of 4n rows."""
        base = hl_task.encode([hl_task.inputs.draw(rng, L) for _ in range(n)])
        # each row's source has a length drawn uniformly from [L, max_len] (the benchmark's resample
        # draw); a longer source varies what the base's length fixes. Patches take its first L + 1
        # positions. Sources are run grouped by length; their prefixes are stacked row by row.
        src_lengths = sorted(rng.randint(L, lengths[-1]) if cross_length else L for _ in range(n))
        srcs = [hl_task.encode([hl_task.inputs.draw(rng, Ls) for _ in range(src_lengths.count(Ls))])
                for Ls in sorted(set(src_lengths))]
        rows = torch.arange(n, device=device)
        pick_c = torch.randint(len(circ_ll), (n,), generator=gen).to(device)
        pick_b = torch.randint(len(bys), (n,), generator=gen).to(device)
        with torch.no_grad():
            hl_src = siit.prefix_cache(hl, srcs, hl_hooks, L + 1)
            hl_assign = [(h, n + rows[pick_c == i], rows[pick_c == i]) for i, h in enumerate(circ_hl)]
            hl_out = hl.run_with_hooks(torch.cat([base, base]), fwd_hooks=siit.patch_hooks(hl_assign, hl_src))
            hl_base, hl_iit = hl_out[:n], hl_out[n:]
            ll_src = siit.prefix_cache(ll, srcs, ll_hooks, L + 1)
        assign = [(node, n + rows[pick_c == i], rows[pick_c == i]) for i, node in enumerate(circ_ll)]
        assign_x = [(node, 2 * n + rows[pick_b == i], rows[pick_b == i]) for i, node in enumerate(bys)]
        assign_x += [(node, 3 * n + rows, rows) for node in circ_ll]
        store: dict[str, torch.Tensor] = {}
        hooks = siit.patch_hooks(assign + assign_x, ll_src)

        def keep(act, hook):
            store[hook.name] = act[:n]

        def keep_last(act, hook):
            store["last"] = act

        def keep_r0(act, hook):
            store["r0"] = act

        hooks += [(h, keep) for h in ll_hooks]
        hooks.append((last, keep_last))
        if aux_layer0:
            hooks.append(("blocks.0.hook_resid_post", keep_r0))
        out = ll.run_with_hooks(torch.cat([base, base, base, base]), fwd_hooks=hooks)
        l_beh = _loss(out[:n], hl_base, hl_task.output, num_loss_scale)
        l_iit = _loss(out[n:2 * n], hl_iit, hl_task.output, num_loss_scale)
        l_strict = _loss(out[2 * n:3 * n], hl_base, hl_task.output, num_loss_scale)
        # aux readout on the all-circuit-ablated rows: the last resid of rows 3n..4n
        logits = store["last"][3 * n:] @ aux["aux.W_U"] + aux["aux.b_U"]
        l_aux = siit.aux_block_ce(logits, siit.aux_targets(base, cfg["d_vocab"]), sizes)
        if aux_layer0:
            logits0 = store["r0"][3 * n:] @ aux["aux.L0_W_U"] + aux["aux.L0_b_U"]
            l_aux = 0.5 * (l_aux + siit.aux_block_ce(logits0, siit.aux0_targets(base, cfg["d_vocab"]), sizes0))
        vars_ = {node.name: siit.input_variance(siit.node_write(node, store[node.hook_name], ll)) for node in nodes}
        med = torch.quantile(torch.stack([vars_[node.name] for node in circ_ll]), 0.5).detach().clamp_min(1e-6)  # same median as siit.evaluate
        # hinge on the std ratio: a variance hinge has a vanishing gradient at a dead (zero-weight) node
        l_live = torch.stack([F.relu(live_floor ** 0.5 - (vars_[node.name] / med + 1e-8).sqrt()) for node in bys]).mean()
        loss = l_beh + w_iit * l_iit + w_strict * l_strict + w_aux * l_aux + w_live * l_live
        with torch.no_grad():
            metrics = {
                "loss": loss.item(), "aux": l_aux.item(), "live": l_live.item(),
                "acc": siit.cell_correct(out[:n], hl_base, hl_task.output).float().mean().item(),
                "iia": siit.cell_correct(out[n:2 * n], hl_iit, hl_task.output).float().mean().item(),
                "siia": siit.cell_correct(out[2 * n:3 * n], hl_base, hl_task.output).float().mean().item(),
            }
        return loss, metrics

    # all_lengths: one optimizer step averages the gradients of every input length (B // n_lengths
    # pairs each) instead of one random length with B pairs. One-length steps made numerical
    # frac_prevs oscillate (held-out accuracy 0.90-1.00 between evals at lr 3e-4); all-length
    # steps, in from-scratch runs of reverse and 6-head sort, drove every layer-0 bystander head
    # to liveness < 0.01 (one-length steps kept them at 0.2-0.3). Default: one length per step.
    per_length = max(1, B // len(lengths)) if all_lengths else B
    dead_evals = {node.name: 0 for node in bys}
    for step in bar:
        ll.train()
        opt.zero_grad(set_to_none=True)
        step_lengths = lengths if all_lengths else [rng.choice(lengths)]
        sums: dict[str, float] = {}
        for L in step_lengths:
            loss, metrics = length_losses(L, per_length)
            (loss / len(step_lengths)).backward()
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v / len(step_lengths)
        torch.nn.utils.clip_grad_norm_(params, clip)
        set_lr(step)
        opt.step()
        for k, v in sums.items():
            ema[k] = v if k not in ema else 0.95 * ema[k] + 0.05 * v
        bar.set_postfix({k: f"{v:.3f}" for k, v in ema.items()}, refresh=False)
        if step % eval_every == 0 or step == max_steps:
            ll.eval()
            m = siit.evaluate(hl_task, ll, nodes, corr, {k: v.detach() for k, v in aux.items()}, eval_data)
            score = siit.bar_score(m)
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
            # after checkpoint selection: the kept state is the evaluated one
            if reinit_dead_after:
                for node in bys:
                    dead_evals[node.name] = dead_evals[node.name] + 1 if m["liveness"][node.name] < siit.LIVE_THRESHOLD else 0
                    if dead_evals[node.name] >= reinit_dead_after:
                        reinit_node(ll, node, gen, opt)
                        reinits.append({"step": step, "node": node.name, "liveness": m["liveness"][node.name]})
                        tqdm.write(f"[{name}] re-initialised dead bystander {node.name} (liveness {m['liveness'][node.name]:.3f})")
                        dead_evals[node.name] = 0
    bar.close()
    ll.load_state_dict(best["state"])
    ll.eval()
    info = {"steps": step, "best_step": best["step"], "wall_s": time.time() - t0, "history": history, "ll_config": cfg,
            "correspondence": corr, "hyperparameters": hyper, "reinitialised": reinits}
    return ll, best["aux"], info

