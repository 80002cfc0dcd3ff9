"""What one SIIT training step minimises: a run's fixed parts (models, nodes, aux readouts, random
streams) and the loss of one batch (``tasks/siit/__init__.py`` says what is trained and why).

Per step, for one random input length (or, with ``all_lengths_per_step``, for every length, the
batch split evenly and gradients averaged; no PAD: each sub-batch holds one length), n base and n
source inputs from the task's precondition-respecting sampler, and one stacked LL forward of
4n rows:

* rows 0..n:   clean base  -> behaviour loss vs HL(base), and the liveness hinge;
* rows n..2n:  each row patches one random in-circuit LL node with its source activation ->
               IIT loss vs HL(base) with the corresponding HL node patched the same way;
* rows 2n..3n: each row resample-ablates one random out-of-circuit LL node -> strict loss vs HL(base);
* rows 3n..4n: every in-circuit node resample-ablated -> aux loss of the aux readout (prev/next
               token, prev == current), so aux information must flow through bystanders;
* rows 4n..5n, only for a model with a redundant HL node (``variants.SIIT_VARIANTS``, e.g. a backup
               pair): each row keeps one member of a redundant set and zero-ablates the others;
               the kept member is left at base (target HL(base)) or patched from the source
               (target HL with the node patched) -> backup loss. So each member alone, its
               partners knocked out, implements the HL node. An IIT row that picks a redundant HL
               node patches every member from the source. Rows where one member is resampled
               and another left at base are not trained: their HL answer is undefined.

Cross-entropy for categorical outputs, MSE for numerical ones; BOS excluded (``losses.py``).
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from interventions.hooks import node_activation, replacing_hooks
from interventions.interchange import draw_source_lengths
from siit_training.config import AUX_WEIGHT, BACKUP_LOSS_WEIGHT, LIVE_FLOOR, SiitConfig
from siit_training.losses import liveness_hinge, output_loss
from siit_training.warm_start import embed_tracr, frozen_masks, warm_start_config
from tasks.base import Task
from tasks import siit
from tasks.siit.evaluate import cell_correct


class Objective:
    """One training run's fixed parts (models, nodes, hooks, aux readouts, random streams) and the
    loss of one batch (``length_losses``).

    Built in the order the draws happen (torch seed, input stream, LL init, aux init), so a run
    is reproducible from ``config.seed``.
    """

    def __init__(self, hl_task: Task, config: SiitConfig, device: str, init: tuple[dict, dict] | None, ll_config: dict | None,
                 redundant: dict[str, list[str]] | None = None, layers: list[int] | None = None):
        if config.freeze_circuit and not config.init_tracr:  # before anything is built or drawn
            raise ValueError("--freeze-circuit needs --init-tracr (it keeps tracr's weights as compiled)")
        self.task, self.config, self.device = hl_task, config, device
        torch.manual_seed(config.seed)
        self.rng = random.Random(config.seed)
        self.hl = hl_task.model.to(device)
        # continuing: the earlier run's config
        self.cfg = dict(ll_config) if ll_config is not None else siit.ll_config_for(hl_task.name, self.hl)
        if config.init_tracr:  # idempotent: a resumed or continued run's config already fits
            self.cfg = warm_start_config(self.cfg, self.hl)
        self.ll = siit.build_ll(self.cfg, device=device, seed=config.seed)
        self.corr = siit.correspondence(hl_task, self.ll, redundant, layers)
        if config.init_tracr and init is None:  # a resumed run's weights are loaded over these
            embed_tracr(self.ll, hl_task, self.corr)
        self.grad_masks = ({k: v.to(device) for k, v in frozen_masks(self.ll, self.hl, siit.ll_circuit(self.corr)).items()}
                           if config.freeze_circuit else {})
        self.nodes = siit.ll_nodes(self.ll, siit.ll_circuit(self.corr))
        hl_by = {n.name: n for n in hl_task.nodes}
        ll_by = {n.name: n for n in self.nodes}
        self.circ_hl = [hl_by[h] for h in self.corr]
        # per HL node, the LL nodes that implement it (one, or a redundant set patched together)
        self.circ_groups = [[ll_by[m] for m in siit.ll_members(v)] for v in self.corr.values()]
        self.circ_ll = [node for group in self.circ_groups for node in group]
        # (index into circ_hl, members) of each redundant set: the backup rows
        self.redundant = [(i, group) for i, group in enumerate(self.circ_groups) if len(group) > 1]
        self.bys = [n for n in self.nodes if not n.in_circuit]
        self.hl_hooks = sorted({n.hook_name for n in self.circ_hl})
        # in-circuit head pairs whose attention pattern is supervised (w_attn > 0): tracr's
        # SelectorWidth attends to BOS plus the selected keys, so its output encodes the count
        # alone; left to itself the LL finds e.g. count / length, which a longer source's patch misreads
        self.attn_pairs = [(h, l) for h, group in zip(self.circ_hl, self.circ_groups) for l in group if h.kind == "attn"] if config.w_attn else []
        self.ll_hooks = sorted({n.hook_name for n in self.nodes})
        self.last = f"blocks.{self.cfg['n_layers'] - 1}.hook_resid_post"
        self.sizes = siit.aux_sizes(self.cfg["d_vocab"])
        self.gen = torch.Generator().manual_seed(config.seed)
        d_model = self.cfg["d_model"]
        self.aux = {
            "aux.W_U": (torch.randn(d_model, sum(self.sizes), generator=self.gen) / math.sqrt(d_model)).to(device).requires_grad_(),
            "aux.b_U": torch.zeros(sum(self.sizes), device=device, requires_grad=True),
        }
        if init is not None:  # continue training from (LL state dict, aux tensors)
            self.ll.load_state_dict(init[0], strict=False)
            with torch.no_grad():
                for k in self.aux:
                    if k in init[1]:  # a readout the earlier run lacked keeps its fresh init
                        self.aux[k].copy_(init[1][k].to(device))
        self.lengths = list(range(hl_task.inputs.min_len, hl_task.inputs.max_len + 1))

    def _subset_p(self, n: int) -> torch.Tensor:
        """``[n]`` per-row inclusion probabilities, uniform in (0, 1]: rows range from one bystander to nearly all."""
        return 1.0 - torch.rand(n, generator=self.gen).to(self.device)

    def length_losses(self, L: int, n: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss and running metrics on ``n`` (base, source) pairs of length ``L``: one stacked LL forward of 4n rows
        (5n with a redundant HL node: the backup rows)."""
        task, config, rng, gen, device, ll = self.task, self.config, self.rng, self.gen, self.device, self.ll
        circ_ll, bys = self.circ_ll, self.bys
        base = task.encode([task.inputs.draw(rng, L) for _ in range(n)])
        # each row's source length from the suite's one interchange draw (uniform over the lengths >= L, the
        # benchmark's resample distribution). Patches take the source's first L + 1 positions; sources are
        # run grouped by length, their prefixes stacked row by row.
        src_lengths = sorted(draw_source_lengths(L, self.lengths, n, gen))
        srcs = [task.encode([task.inputs.draw(rng, Ls) for _ in range(src_lengths.count(Ls))])
                for Ls in sorted(set(src_lengths))]
        rows = torch.arange(n, device=device)
        circuit_pick = torch.randint(len(self.circ_hl), (n,), generator=gen).to(device)
        bystander_pick = torch.randint(len(bys), (n,), generator=gen).to(device)
        n_blocks = 5 if self.redundant else 4
        if self.redundant:  # backup rows: which set, which member is kept, kept member patched or at base
            redundant_pick = torch.randint(len(self.redundant), (n,), generator=gen).to(device)
            kept_member = torch.randint(max(len(g) for _, g in self.redundant), (n,), generator=gen).to(device)
            patch_kept = (torch.rand(n, generator=gen) < 0.5).to(device)
        # strict rows (2n..3n): which bystanders each row resamples; IIT rows (n..2n): which bystanders ride along
        strict_mask = F.one_hot(bystander_pick, len(bys)).bool()
        if config.joint_strict:
            strict_mask |= torch.rand(n, len(bys), generator=gen).to(device) < self._subset_p(n)[:, None]
            strict_mask[torch.rand(n, generator=gen).to(device) < 0.25] = True
        iit_mask = (torch.rand(n, len(bys), generator=gen).to(device) < self._subset_p(n)[:, None]) if config.iit_bystanders else None
        hl_blocks = 3 if self.redundant else 2
        with torch.no_grad():
            hl_src = siit.prefix_cache(self.hl, srcs, self.hl_hooks, L + 1)
            hl_assign = [(h, n + rows[circuit_pick == i], rows[circuit_pick == i]) for i, h in enumerate(self.circ_hl)]
            if config.w_circuit:  # one more block: every HL circuit node resampled, as the LL's rows 3n..4n
                hl_assign += [(h, hl_blocks * n + rows, rows) for h in self.circ_hl]
            backup_assign, backup_zero = [], []
            for r, (i, group) in enumerate(self.redundant):
                hl_rows = rows[(redundant_pick == r) & patch_kept]
                hl_assign.append((self.circ_hl[i], 2 * n + hl_rows, hl_rows))
                for k, node in enumerate(group):
                    kept = (redundant_pick == r) & (kept_member % len(group) == k)
                    backup_assign.append((node, 4 * n + rows[kept & patch_kept], rows[kept & patch_kept]))
                    backup_zero += [(node, 4 * n + rows[(redundant_pick == r) & ~kept], None)]
            hl_pat: dict[str, torch.Tensor] = {}
            pat_rows = 2 * n if config.attn_iit_rows else n  # clean base rows, and with attn_iit_rows the IIT rows

            def pattern_hooks(into: dict, layers) -> list:  # each layer's attention pattern, its first pat_rows rows
                return [(f"blocks.{layer}.attn.hook_pattern", lambda act, hook: into.__setitem__(hook.name, act[:pat_rows]))
                        for layer in sorted(layers)]

            pat_hooks = pattern_hooks(hl_pat, {h.layer for h, _ in self.attn_pairs})
            hl_out = self.hl.run_with_hooks(torch.cat([base] * (hl_blocks + (1 if config.w_circuit else 0))),
                                            fwd_hooks=siit.patch_hooks(hl_assign, hl_src) + pat_hooks)
            hl_base, hl_iit, hl_backup = hl_out[:n], hl_out[n:2 * n], hl_out[2 * n:hl_blocks * n]
            hl_circuit = hl_out[hl_blocks * n:]
            ll_src = siit.prefix_cache(ll, srcs, self.ll_hooks, L + 1)
        assign = [(node, n + rows[circuit_pick == i], rows[circuit_pick == i]) for i, group in enumerate(self.circ_groups) for node in group]
        assign_x = [(node, 2 * n + rows[strict_mask[:, i]], rows[strict_mask[:, i]]) for i, node in enumerate(bys)]
        if iit_mask is not None:
            assign_x += [(node, n + rows[iit_mask[:, i]], rows[iit_mask[:, i]]) for i, node in enumerate(bys)]
        assign_x += [(node, 3 * n + rows, rows) for node in circ_ll]
        store: dict[str, torch.Tensor] = {}
        hooks = siit.patch_hooks(assign + assign_x + backup_assign, ll_src)
        if backup_zero:  # zero-ablated partners of the backup rows
            hooks += replacing_hooks([(node, zrows, ll_src[node.hook_name].new_zeros(
                (len(zrows), L + 1) + tuple(node_activation(ll_src[node.hook_name], node).shape[2:])))
                for node, zrows, _ in backup_zero if len(zrows)])

        def keep(act, hook):
            store[hook.name] = act[:n]

        def keep_as(key):
            return lambda act, hook: store.__setitem__(key, act)

        hooks += [(h, keep) for h in self.ll_hooks]
        hooks += pattern_hooks(store, {l.layer for _, l in self.attn_pairs})
        hooks.append((self.last, keep_as("last")))
        out = ll.run_with_hooks(torch.cat([base] * n_blocks), fwd_hooks=hooks)
        output, scale = task.output, config.num_loss_scale
        kw = {"num_tail": config.num_tail, "focal": config.focal, "class_balance": config.class_balance}
        l_beh = output_loss(out[:n], hl_base, output, scale, **kw)
        l_iit = output_loss(out[n:2 * n], hl_iit, output, scale, skip_ties=config.skip_hl_ties, **kw)
        l_strict = output_loss(out[2 * n:3 * n], hl_base, output, scale, **kw)
        # aux readout on the all-circuit-ablated rows: the last resid of rows 3n..4n
        aux, d_vocab = self.aux, self.cfg["d_vocab"]
        logits = store["last"][3 * n:4 * n] @ aux["aux.W_U"] + aux["aux.b_U"]
        l_aux = siit.aux_block_ce(logits, siit.aux_targets(base, d_vocab, siit.is_causal(self.cfg)), self.sizes)
        write_variance = {node.name: siit.input_variance(siit.node_write(node, store[node.hook_name], ll)) for node in self.nodes}
        l_live = liveness_hinge(torch.stack([write_variance[node.name] for node in bys]), torch.stack([write_variance[node.name] for node in circ_ll]),
                                LIVE_FLOOR, config.live_median_grad)
        loss = l_beh + config.w_iit * l_iit + config.w_strict * l_strict + AUX_WEIGHT * l_aux + config.w_live * l_live
        if config.w_circuit:
            loss = loss + config.w_circuit * output_loss(out[3 * n:4 * n], hl_circuit, output, scale, **kw)
        if self.redundant:
            l_backup = output_loss(out[4 * n:], hl_backup, output, scale, **kw)
            loss = loss + BACKUP_LOSS_WEIGHT * l_backup
        if self.attn_pairs:
            l_attn = torch.stack([
                -(hl_pat[f"blocks.{h.layer}.attn.hook_pattern"][:, h.head, 1:]
                  * store[f"blocks.{l.layer}.attn.hook_pattern"][:, l.head, 1:].clamp_min(1e-9).log()).sum(-1).mean()
                for h, l in self.attn_pairs]).mean()
            loss = loss + config.w_attn * l_attn
        with torch.no_grad():
            metrics = {
                "loss": loss.item(), "aux": l_aux.item(), "live": l_live.item(),
                "acc": cell_correct(out[:n], hl_base, output).float().mean().item(),
                "iia": cell_correct(out[n:2 * n], hl_iit, output).float().mean().item(),
                "siia": cell_correct(out[2 * n:3 * n], hl_base, output).float().mean().item(),
            }
            if self.redundant:
                metrics["backup"] = cell_correct(out[4 * n:], hl_backup, output).float().mean().item()
        return loss, metrics
