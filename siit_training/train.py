"""The SIIT training loop (``tasks/siit/__init__.py`` says what is trained and why).

Per step, for one random input length (or, with ``all_lengths``, for every length, the batch
split evenly and gradients averaged; no PAD: each sub-batch holds one length), n base and n
source inputs from the task's precondition-respecting sampler, and one stacked LL forward of
4n rows:

* rows 0..n:   clean base  -> behaviour loss vs HL(base), and the liveness hinge;
* rows n..2n:  each row patches one random in-circuit LL node with its source activation ->
               IIT loss vs HL(base) with the corresponding HL node patched the same way;
* rows 2n..3n: each row resample-ablates one random out-of-circuit LL node -> strict loss vs HL(base);
* rows 3n..4n: every in-circuit node resample-ablated -> aux loss of the aux readout (prev/next
               token, prev == current), so aux information must flow through bystanders;
* rows 4n..5n, only for a model with a redundant HL node (``model.SIIT_VARIANTS``, e.g. a backup
               pair): each row keeps one member of a redundant set and zero-ablates the others;
               the kept member is left at base (target HL(base)) or patched from the source
               (target HL with the node patched) -> backup loss. So each member alone, its
               partners knocked out, implements the HL node. An IIT row that picks a redundant HL
               node patches every member from the source. Rows where one member is resampled
               and another left at base are not trained: their HL answer is undefined.

A bystander that stays below the liveness threshold for ``reinit_dead_after`` consecutive
evaluations has its weights redrawn from the init distribution (recorded in the card).

Cross-entropy for categorical outputs, MSE for numerical ones; BOS excluded. Adam, cosine lr
decay (over the step budget or the time budget, whichever runs out first), grad-norm clipping; held-out evaluation every ``eval_every`` steps, the best checkpoint
(by min(accuracy, IIA, SIIA)) is kept; stops early once all three reach ``target``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from interventions.hooks import node_activation, replacing_hooks
from interventions.interchange import source_lengths
from siit_training.warm_start import embed_tracr, frozen_masks, warm_start_config
from tasks.base import Task
from tasks.seeds import derive
from tasks.siit import model as siit
from tasks.siit.evaluate import bar_score, cell_correct, eval_pairs, evaluate, hl_ties

NUM_LOSS_SCALE = 100.0


def _loss(ll_out: torch.Tensor, hl_out: torch.Tensor, output: str, num_scale: float = NUM_LOSS_SCALE,
          skip_ties: bool = False, num_tail: float = 0.0, focal: float = 0.0) -> torch.Tensor:
    """Cross-entropy to the HL argmax (categorical; ``skip_ties``: HL tie cells carry no label and are
    left out; ``focal`` > 0: each cell's CE weighted by (1 - p_target)^focal, so the rare cells a model
    still gets wrong, not the many it already gets right, drive the gradient) or scaled MSE (numerical;
    plus ``num_tail`` x the tail term ``numerical_tail``); BOS excluded."""
    ll_out, hl_out = ll_out[:, 1:], hl_out[:, 1:]
    if output == "categorical":
        target = hl_out.argmax(-1)
        if skip_ties:
            target = target.masked_fill(hl_ties(hl_out), -100)  # cross_entropy's ignore_index
            if not (target != -100).any():
                return ll_out.sum() * 0.0
        if not focal:
            return F.cross_entropy(ll_out.reshape(-1, ll_out.shape[-1]), target.reshape(-1))
        ce = F.cross_entropy(ll_out.reshape(-1, ll_out.shape[-1]), target.reshape(-1), reduction="none")
        keep = target.reshape(-1) != -100
        return ((1 - torch.exp(-ce[keep])).pow(focal) * ce[keep]).mean()
    # scaled so a numerical error of 0.1 costs about what a confident CE mistake does (else the aux CE dominates)
    loss = num_scale * F.mse_loss(ll_out, hl_out)
    return loss + num_tail * numerical_tail(ll_out, hl_out) if num_tail else loss


def numerical_tail(ll_out: torch.Tensor, hl_out: torch.Tensor, tol: float = siit.NUM_TOL) -> torch.Tensor:
    """Mean of ``(relu(|LL - HL| - tol/2) / (tol/2))**2``: 0 on cells within half the pass tolerance,
    1 on a cell exactly at it. The bar counts cells past ``tol``, and the MSE is ruled by the many
    small errors, so this term is what pulls the rare large ones in."""
    half = tol / 2
    return (F.relu((ll_out - hl_out).abs() - half) / half).pow(2).mean()


@torch.no_grad()
def reinit_node(ll, node, gen: torch.Generator, opt: torch.optim.Optimizer, quiet_dims: int = 0) -> None:
    """Redraw one bystander's weights from the LL init (normal, std ``initializer_range``; biases 0) and reset their Adam state.

    A bystander whose attention saturates on a constant pattern gets almost no gradient from the
    liveness hinge (reverse's blocks.0 head 1 sat at liveness 0.02 for 1000+ steps, at hinge weight 1
    and 5); redrawing it, as SAE training resamples dead latents, lets strict training teach the rest
    of the model to ignore a live node instead.

    ``quiet_dims``: a warm start's tracr dimensions (``warm_start.embed_tracr``); the redrawn output
    weights start at zero there, as the bystander's first init did (a full redraw wrote into
    tracr's badly conditioned features and took count_less_freq's held-out accuracy to 0.18).
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
        if quiet_dims and k == len(params) - 1:  # the output weights: W_O[h] or W_out
            target[..., :quiet_dims] = 0.0
        state = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                (state[key] if idx is None else state[key][idx]).zero_()



def _option(default, help: str, flag: str | None = None):
    """A ``SiitConfig`` field with its command-line help (and its option name when not ``--<field-name>``)."""
    return field(default=default, metadata={"help": help, **({"flag": flag} if flag else {})})


@dataclass
class SiitConfig:
    """Every hyperparameter of a SIIT run, in one place: ``python -m siit_training`` generates its
    options from these fields (``--max-steps`` for ``max_steps``), ``train`` reads them and the
    card stores ``asdict(config)`` under ``config``."""

    seed: int = _option(0, "seed of the LL init, the training draws and the card's test data")
    max_steps: int = _option(3000, "optimizer steps at most")
    batch: int = _option(256, "(base, source) pairs per step")
    lr: float = _option(3e-3, "peak learning rate (cosine decay to 5%%)")
    eval_every: int = _option(100, "steps between held-out evaluations (checkpoint selection, early stop)")
    eval_n: int = _option(128, "held-out examples per length for checkpoint selection")
    test_n: int = _option(256, "held-out examples per length for the card")
    time_limit: float | None = _option(None, "seconds of training per task (then the best checkpoint is kept)")
    w_iit: float = _option(1.0, "weight of the IIT loss")
    w_strict: float = _option(0.4, "weight of the strict loss")
    w_aux: float = _option(0.5, "weight of the aux readout loss")
    w_live: float = _option(1.0, "weight of the bystander liveness hinge")
    live_floor: float = _option(0.25, "liveness hinge floor (variance ratio to the median in-circuit node)")
    clip: float = _option(1.0, "gradient-norm clip")
    target: float = _option(0.993, "early stop once min(accuracy, min-node IIA, min-node SIIA) reaches this")
    num_loss_scale: float = _option(NUM_LOSS_SCALE, "multiplier of the MSE loss on numerical outputs")
    same_length_sources: bool = _option(
        False, "draw sources of the base's length only (default: every length >= the base's, as the benchmark does)")
    all_lengths_per_step: bool = _option(
        False, "each step averages the gradients of every input length (default: one random length per step)")
    reinit_dead_after: int = _option(
        3, "redraw a bystander's weights after this many consecutive evals below the liveness threshold (0: never)")
    aux_layer0: bool = _option(
        False, "add a readout on blocks.0.hook_resid_post (tokens at p-1, p+1, p-2, p+2) that layer-0 bystanders must feed")
    w_attn: float = _option(
        0.0, "weight of the attention-pattern loss: each in-circuit LL head's pattern against its tracr head's (0: off)")
    init_tracr: bool = _option(
        False, "warm start: each in-circuit node starts as its tracr node in a widened residual (siit_training/warm_start.py)")
    skip_hl_ties: bool = _option(
        False, "leave IIT cells whose HL logits tie (no defined answer) out of the IIT loss; the card still counts them")
    freeze_circuit: bool = _option(
        False, "with --init-tracr: keep the circuit, tracr's embedding dimensions and the unembedding frozen")
    num_tail: float = _option(0.0, "numerical outputs: weight of the tail term on errors past half the pass tolerance (0: off)")
    focal: float = _option(0.0, "categorical outputs: focal exponent of the cross-entropy (0: plain cross-entropy)")
    attn_iit_rows: bool = _option(
        False, "with --w-attn: the attention-pattern loss also on the IIT rows, against tracr's under the same patch")
    w_backup: float = _option(1.0, "weight of the backup loss (redundant HL nodes: one member kept, its partners zero-ablated)")
    joint_strict: bool = _option(
        False, "strict rows resample a random bystander subset together (default: one bystander per row)")
    iit_bystanders: bool = _option(False, "IIT rows also resample a random bystander subset from the row's source")
    w_circuit: float = _option(0.0, "weight of the circuit loss: every circuit node resampled, against HL resampled the same way")
    step_schedule: bool = _option(False, "the cosine lr schedule follows steps only (--time-limit then only stops the run)")
    eval_subsets: int = _option(8, "random bystander subsets in each held-out evaluation (the card uses 32)")

    def hyperparameters(self, output: str, continued: bool, redundant: dict | None = None) -> dict:
        """The card's description of the recipe (``hyperparameters``)."""
        out = {
            "batch": self.batch, "lr": self.lr, "max_steps": self.max_steps, "time_limit_s": self.time_limit, "optimizer": "Adam",
            "lr_schedule": ("cosine to 5% over max_steps" if self.step_schedule
                            else "cosine to 5% over max_steps or time_limit_s, whichever runs out first")
                           + ("; linear warm-up over 200 steps (continued from trained weights)" if continued
                              else "; linear warm-up over 200 steps (warm start from tracr's weights)" if self.init_tracr else ""),
            "grad_clip": self.clip,
            "numerical_mse_scale": self.num_loss_scale if output == "numerical" else None,
            **({"numerical_tail": {"weight": self.num_tail, "what": "mean of (relu(abs(LL - HL) - tol/2) / (tol/2))^2, "
                                   "tol = the pass tolerance"}} if output == "numerical" and self.num_tail else {}),
            **({"focal_cross_entropy": {"exponent": self.focal, "what": "each cell's cross-entropy weighted by "
                                        "(1 - p_target)^exponent"}} if output == "categorical" and self.focal else {}),
            "loss_weights": {"behaviour": 1.0, "iit": self.w_iit, "strict": self.w_strict, "aux": self.w_aux, "live": self.w_live,
                             **({"circuit": self.w_circuit} if self.w_circuit else {})},
            "strict_rows": ("a random bystander subset per row, resampled together from the row's one source: the drawn "
                            "bystander plus each other with probability p ~ U(0, 1] (p drawn per row); every bystander in a "
                            "quarter of the rows" if self.joint_strict else "one random bystander per row"),
            "iit_rows_bystanders": ("each bystander also resampled from the row's source with probability p ~ U(0, 1] "
                                    "(p drawn per row)" if self.iit_bystanders else "left at base"),
            "live_floor": self.live_floor,
            "live_hinge": "mean over bystanders of relu(sqrt(live_floor) - sqrt(var / median in-circuit var))",
            "eval_every": self.eval_every, "eval_examples_per_length": self.eval_n, "early_stop_target": self.target,
            "early_stop_liveness": f"every bystander >= live_floor ({self.live_floor})" if self.init_tracr
            else "every bystander >= the liveness threshold",
            "lengths_per_step": "all (batch split evenly, gradients averaged)" if self.all_lengths_per_step else "one, drawn at random",
            "reinit_dead_bystander_after_evals": self.reinit_dead_after or None,
            "aux_layer0": "readout on blocks.0.hook_resid_post of tokens at p-1, p+1, p-2, p+2 (circuit-ablated rows)"
            if self.aux_layer0 else None,
            "sources": "IIT, strict and aux rows: each row's source length drawn uniformly from [base length, max_len] (the "
                       "benchmark's resample draw), first base-length+1 positions patched" if not self.same_length_sources
            else "same length as the base",
            "attention_pattern_loss": {"weight": self.w_attn, "what": "cross-entropy of each in-circuit LL head's attention "
                                       "pattern (non-BOS queries, " + ("clean base rows and IIT rows, tracr's under the same patch"
                                       if self.attn_iit_rows else "clean base rows") + ") against its tracr head's pattern"}
            if self.w_attn else None,
            "iit_hl_ties": "left out of the IIT loss (top-2 HL logit margin < 1e-3: no defined answer)" if self.skip_hl_ties
            else "trained to the HL argmax like every cell",
            "selection": "best held-out min(accuracy, min-node IIA, min-node SIIA, faithfulness with every bystander resampled, "
                         f"min over {self.eval_subsets} bystander subsets, completeness term), sources of every length >= the base's"
                         + ("; a warm start: among checkpoints at the pass bar with every bystander >= live_floor, "
                            "the best aux accuracy" if self.init_tracr else ""),
            "init": ("tracr warm start: residual dimensions 0..d_model(tracr) hold tracr's residual; embeddings, unembedding and "
                     "every in-circuit node copied from the compiled tracr model (zero-padded; W_Q scaled by sqrt(d_head / "
                     "d_head(tracr)) for the attention scale, a categorical W_U by warm_start.CATEGORICAL_LOGIT_SCALE); bystanders "
                     "randomly initialised with output weights zero on tracr's dimensions; relu"
                     if self.init_tracr else "random (TransformerLens init, seed)"),
            "frozen": ("in-circuit nodes, tracr's embedding dimensions and the unembedding kept as compiled (gradients "
                       "masked, warm_start.frozen_masks); bystanders and spare dimensions trained") if self.freeze_circuit else None,
        }
        if redundant:
            out["selection"] = ("best held-out min(accuracy, min-unit IIA (a redundant set patched together counts as one unit), "
                                "min backup IIA and backup accuracy per member, min-node SIIA), sources of every length >= the base's")
            out["redundant"] = {
                "nodes": redundant,
                "iit_rows": "an IIT row that picks a redundant HL node patches every member of its LL set from the source "
                            "(target: HL with the node patched)",
                "backup_rows": "one extra block of batch rows: per row one redundant set, one member kept and the others "
                               "zero-ablated (output set to 0); the kept member left at base (target HL(base)) or, with "
                               "probability 1/2, patched from the source (target HL with the node patched)",
                "untrained": "one member resampled with another left at base (the HL answer is undefined)",
                "loss_weight": self.w_backup,
            }
        return out


_ARG_TYPES = {"int": int, "float": float, "float | None": float}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per ``SiitConfig`` field: ``--field-name`` (a flag for a bool), its default and help."""
    for f in fields(SiitConfig):
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        if f.type == "bool":
            assert f.default is False, f.name  # a store_true flag
            parser.add_argument(flag, dest=f.name, action="store_true", help=f.metadata["help"])
        else:
            parser.add_argument(flag, dest=f.name, type=_ARG_TYPES[f.type], default=f.default,
                                help=f.metadata["help"] + " (default %(default)s)")


def config_from_args(args: argparse.Namespace) -> SiitConfig:
    return SiitConfig(**{f.name: getattr(args, f.name) for f in fields(SiitConfig)})


class _Run:
    """One training run's fixed parts: models, nodes, hooks, aux readouts, random streams.

    Built in the order the draws happen (torch seed, input stream, LL init, aux init), so a run
    is reproducible from ``config.seed``.
    """

    def __init__(self, hl_task: Task, config: SiitConfig, device: str, init: tuple[dict, dict] | None, ll_config: dict | None,
                 redundant: dict[str, list[str]] | None = None):
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
        self.corr = siit.correspondence(hl_task, self.ll, redundant)
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
        self.sizes0 = siit.aux0_sizes(self.cfg["d_vocab"])
        self.gen = torch.Generator().manual_seed(config.seed)
        d_model = self.cfg["d_model"]
        self.aux = {
            "aux.W_U": (torch.randn(d_model, sum(self.sizes), generator=self.gen) / math.sqrt(d_model)).to(device).requires_grad_(),
            "aux.b_U": torch.zeros(sum(self.sizes), device=device, requires_grad=True),
        }
        if config.aux_layer0:  # a second readout on blocks.0.hook_resid_post: relative-position token copies, a job for layer-0 bystanders
            self.aux["aux.L0_W_U"] = (torch.randn(d_model, sum(self.sizes0), generator=self.gen) / math.sqrt(d_model)).to(device).requires_grad_()
            self.aux["aux.L0_b_U"] = torch.zeros(sum(self.sizes0), device=device, requires_grad=True)
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

    def length_losses(self, L: int, n: int):
        """Loss and running metrics on ``n`` (base, source) pairs of length ``L``: one stacked LL forward of 4n rows
        (5n with a redundant HL node: the backup rows)."""
        task, config, rng, gen, device, ll = self.task, self.config, self.rng, self.gen, self.device, self.ll
        circ_ll, bys = self.circ_ll, self.bys
        base = task.encode([task.inputs.draw(rng, L) for _ in range(n)])
        # each row's source has a length drawn uniformly from [L, max_len] (the benchmark's resample
        # draw); a longer source varies what the base's length fixes. Patches take its first L + 1
        # positions. Sources are run grouped by length; their prefixes are stacked row by row.
        allowed = source_lengths(L, self.lengths)  # contiguous: one randint draws uniformly among them
        src_lengths = sorted(rng.randint(allowed[0], allowed[-1]) if not config.same_length_sources else L for _ in range(n))
        srcs = [task.encode([task.inputs.draw(rng, Ls) for _ in range(src_lengths.count(Ls))])
                for Ls in sorted(set(src_lengths))]
        rows = torch.arange(n, device=device)
        pick_c = torch.randint(len(self.circ_hl), (n,), generator=gen).to(device)
        pick_b = torch.randint(len(bys), (n,), generator=gen).to(device)
        n_blocks = 5 if self.redundant else 4
        if self.redundant:  # backup rows: which set, which member is kept, kept member patched or at base
            pick_r = torch.randint(len(self.redundant), (n,), generator=gen).to(device)
            keep_m = torch.randint(max(len(g) for _, g in self.redundant), (n,), generator=gen).to(device)
            patch_k = (torch.rand(n, generator=gen) < 0.5).to(device)
        # strict rows (2n..3n): which bystanders each row resamples; IIT rows (n..2n): which bystanders ride along
        strict_mask = F.one_hot(pick_b, len(bys)).bool()
        if config.joint_strict:
            strict_mask |= torch.rand(n, len(bys), generator=gen).to(device) < self._subset_p(n)[:, None]
            strict_mask[torch.rand(n, generator=gen).to(device) < 0.25] = True
        iit_mask = (torch.rand(n, len(bys), generator=gen).to(device) < self._subset_p(n)[:, None]) if config.iit_bystanders else None
        hl_blocks = 3 if self.redundant else 2
        with torch.no_grad():
            hl_src = siit.prefix_cache(self.hl, srcs, self.hl_hooks, L + 1)
            hl_assign = [(h, n + rows[pick_c == i], rows[pick_c == i]) for i, h in enumerate(self.circ_hl)]
            if config.w_circuit:  # one more block: every HL circuit node resampled, as the LL's rows 3n..4n
                hl_assign += [(h, hl_blocks * n + rows, rows) for h in self.circ_hl]
            backup_assign, backup_zero = [], []
            for r, (i, group) in enumerate(self.redundant):
                hl_rows = rows[(pick_r == r) & patch_k]
                hl_assign.append((self.circ_hl[i], 2 * n + hl_rows, hl_rows))
                for k, node in enumerate(group):
                    kept = (pick_r == r) & (keep_m % len(group) == k)
                    backup_assign.append((node, 4 * n + rows[kept & patch_k], rows[kept & patch_k]))
                    backup_zero += [(node, 4 * n + rows[(pick_r == r) & ~kept], None)]
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
        assign = [(node, n + rows[pick_c == i], rows[pick_c == i]) for i, group in enumerate(self.circ_groups) for node in group]
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
        if config.aux_layer0:
            hooks.append(("blocks.0.hook_resid_post", keep_as("r0")))
        out = ll.run_with_hooks(torch.cat([base] * n_blocks), fwd_hooks=hooks)
        output, scale = task.output, config.num_loss_scale
        kw = {"num_tail": config.num_tail, "focal": config.focal}
        l_beh = _loss(out[:n], hl_base, output, scale, **kw)
        l_iit = _loss(out[n:2 * n], hl_iit, output, scale, skip_ties=config.skip_hl_ties, **kw)
        l_strict = _loss(out[2 * n:3 * n], hl_base, output, scale, **kw)
        # aux readout on the all-circuit-ablated rows: the last resid of rows 3n..4n
        aux, d_vocab = self.aux, self.cfg["d_vocab"]
        logits = store["last"][3 * n:4 * n] @ aux["aux.W_U"] + aux["aux.b_U"]
        l_aux = siit.aux_block_ce(logits, siit.aux_targets(base, d_vocab), self.sizes)
        if config.aux_layer0:
            logits0 = store["r0"][3 * n:4 * n] @ aux["aux.L0_W_U"] + aux["aux.L0_b_U"]
            l_aux = 0.5 * (l_aux + siit.aux_block_ce(logits0, siit.aux0_targets(base, d_vocab), self.sizes0))
        vars_ = {node.name: siit.input_variance(siit.node_write(node, store[node.hook_name], ll)) for node in self.nodes}
        med = torch.quantile(torch.stack([vars_[node.name] for node in circ_ll]), 0.5).detach().clamp_min(1e-6)  # same median as evaluate
        # hinge on the std ratio: a variance hinge has a vanishing gradient at a dead (zero-weight) node
        l_live = torch.stack([F.relu(config.live_floor ** 0.5 - (vars_[node.name] / med + 1e-8).sqrt()) for node in bys]).mean()
        loss = l_beh + config.w_iit * l_iit + config.w_strict * l_strict + config.w_aux * l_aux + config.w_live * l_live
        if config.w_circuit:
            loss = loss + config.w_circuit * _loss(out[3 * n:4 * n], hl_circuit, output, scale, **kw)
        if self.redundant:
            l_backup = _loss(out[4 * n:], hl_backup, output, scale, **kw)
            loss = loss + config.w_backup * l_backup
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


def _set_lr(opt: torch.optim.Optimizer, config: SiitConfig, step: int, elapsed: float, warmup_steps: int) -> None:
    """Cosine decay to 5% over the run; with a time limit, over whichever budget runs out first.

    Continuing from trained weights: a linear warm-up, since a fresh Adam's first steps move every
    weight by ~lr at once (frac_prevs fell from accuracy 1.0 to 0.42 in 100 steps without it)."""
    done = step / config.max_steps
    if config.time_limit and not config.step_schedule:
        done = max(done, elapsed / config.time_limit)
    warm = min(1.0, step / warmup_steps) if warmup_steps else 1.0
    for g in opt.param_groups:
        g["lr"] = warm * config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(done, 1.0))))


CHECKPOINT_VERSION = 1


def checkpoint_paths(path: Path) -> tuple[Path, Path]:
    """``<path>.safetensors`` (tensors) and ``<path>.json`` (everything else) of one run's checkpoint."""
    path = Path(path)
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def _save_checkpoint(path: Path, run: "_Run", opt: torch.optim.Optimizer, loop: dict) -> None:
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


def read_checkpoint(path: Path, config: "SiitConfig") -> tuple[dict, dict[str, torch.Tensor]]:
    """(JSON part, tensors) of a checkpoint written by ``train(checkpoint=path)``; refuses one whose
    task configuration differs from ``config`` (a resumed run is the same run, or it is not resumed)."""
    from safetensors.torch import load_file

    tpath, jpath = checkpoint_paths(path)
    if not tpath.exists() or not jpath.exists():
        raise FileNotFoundError(f"no checkpoint to resume at {tpath} / {jpath}")
    meta = json.loads(jpath.read_text())
    if meta.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {jpath}: version {meta.get('checkpoint_version')!r}, this code reads {CHECKPOINT_VERSION}")
    now = asdict(config)
    differ = {k: (v, now.get(k)) for k, v in meta["config"].items() if now.get(k) != v}
    if differ:
        raise ValueError(f"checkpoint {jpath} was written with other settings; resume with the same ones "
                         f"(checkpoint vs now: {differ})")
    return meta, load_file(str(tpath), device="cpu")


def train(hl_task: Task, config: SiitConfig, *, device: str = "cpu", progress: bool = True,
          init: tuple[dict, dict] | None = None, ll_config: dict | None = None, checkpoint: Path | None = None,
          resume: bool = False, pause_after_steps: int | None = None, pause_after_s: float | None = None,
          extra: dict | None = None, redundant: dict[str, list[str]] | None = None):
    """Train an LL model for ``hl_task`` under ``config``; returns ``(ll, aux, info)`` with the best checkpoint.

    ``init``: (LL state dict, aux tensors) to continue from; ``ll_config``: the LL architecture
    (default ``model.ll_config_for``). ``checkpoint``: a path stem where the full run state is
    written at every evaluation; ``resume``: go on from it (same config, same draws: a resumed run
    gives the weights of an uninterrupted one). ``pause_after_steps`` / ``pause_after_s``: stop
    this session at the first evaluation past either, after writing the checkpoint, and return
    ``info["paused"] = True`` (the budgets of ``config`` count training time over all sessions).
    ``redundant``: HL node -> list of LL nodes that each carry it (``model.SIIT_VARIANTS``; backup rows).
    ``extra``: JSON-able facts about the run kept in the checkpoint and returned as ``info["extra"]``
    (on resume, the checkpoint's)."""
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<path>")
    meta = tensors = None
    if resume:
        meta, tensors = read_checkpoint(checkpoint, config)
        if init is not None or (ll_config is not None and ll_config != meta["ll_config"]):
            raise ValueError("a resumed run takes its weights and architecture from the checkpoint; do not pass init / ll_config")
        ll_config = meta["ll_config"]
    run = _Run(hl_task, config, device, init, ll_config, redundant)
    ll, aux, bys, name = run.ll, run.aux, run.bys, hl_task.name
    continued = meta["continued"] if meta else init is not None
    hyper = config.hyperparameters(hl_task.output, continued=continued, redundant=redundant)
    # a fresh Adam's first steps move every weight by ~lr at once: trained or tracr weights need a warm-up
    warmup_steps = 200 if continued or config.init_tracr else 0
    params = list(ll.parameters()) + list(aux.values())
    opt = torch.optim.Adam(params, lr=config.lr)
    eval_data = eval_pairs(hl_task, config.eval_n, seed=derive(config.seed, "siit-selection"),
                           cross_length=not config.same_length_sources)
    best = {"score": -1.0}
    history = []
    reinits: list[dict] = []
    ema = {}
    dead_evals = {node.name: 0 for node in bys}
    first_step, elapsed0, sessions = 1, 0.0, []
    if meta is not None:  # restore everything _save_checkpoint wrote
        with torch.no_grad():
            ll.load_state_dict({k[3:]: v.to(device) for k, v in tensors.items() if k.startswith("ll.")}, strict=False)
            for k in aux:
                aux[k].copy_(tensors[f"aux.{k}"].to(device))
        opt_sd = opt.state_dict()
        opt_sd["state"] = {}
        for key, v in tensors.items():
            if key.startswith("opt."):
                _, i, field_ = key.split(".", 2)
                opt_sd["state"].setdefault(int(i), {})[field_] = v.to(device) if field_ != "step" else v
        opt.load_state_dict(opt_sd)
        run.gen.set_state(tensors["gen_state"])
        run.rng.setstate((meta["rng_state"][0], tuple(meta["rng_state"][1]), meta["rng_state"][2]))
        best = {"score": meta["best"]["score"], "step": meta["best"]["step"],
                "state": {k[8:]: v.to(device) for k, v in tensors.items() if k.startswith("best.ll.")},
                "aux": {k[9:]: v.to(device) for k, v in tensors.items() if k.startswith("best.aux.")}}
        history, reinits, ema, dead_evals = meta["history"], meta["reinits"], meta["ema"], meta["dead_evals"]
        first_step, elapsed0, sessions = meta["step"] + 1, meta["elapsed_s"], meta["sessions"]
        extra = meta["extra"]
        tqdm.write(f"[{name}] resumed from {checkpoint} at step {meta['step']} ({elapsed0:.0f}s trained)")
    sessions = sessions + [{"first_step": first_step}]
    t0 = time.time() - elapsed0  # elapsed training time counts every session
    t_session = time.time()
    paused = False
    step = first_step - 1
    bar = tqdm(range(first_step, config.max_steps + 1), initial=first_step - 1, total=config.max_steps, disable=not progress,
               desc=f"siit {name}", mininterval=2.0)
    # all_lengths_per_step: one optimizer step averages the gradients of every input length (batch //
    # n_lengths pairs each) instead of one random length with the whole batch. One-length steps made
    # numerical frac_prevs oscillate (held-out accuracy 0.90-1.00 between evals at lr 3e-4); all-length
    # steps, in from-scratch runs of reverse and 6-head sort, drove every layer-0 bystander head
    # to liveness < 0.01 (one-length steps kept them at 0.2-0.3). Default: one length per step.
    per_length = max(1, config.batch // len(run.lengths)) if config.all_lengths_per_step else config.batch
    for step in bar:
        ll.train()
        opt.zero_grad(set_to_none=True)
        step_lengths = run.lengths if config.all_lengths_per_step else [run.rng.choice(run.lengths)]
        sums: dict[str, float] = {}
        for L in step_lengths:
            loss, metrics = run.length_losses(L, per_length)
            (loss / len(step_lengths)).backward()
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v / len(step_lengths)
        for k, p in ll.named_parameters():  # --freeze-circuit: tracr's part gets no gradient, so Adam leaves it as it is
            if k in run.grad_masks and p.grad is not None:
                p.grad.mul_(run.grad_masks[k])
        torch.nn.utils.clip_grad_norm_(params, config.clip)
        _set_lr(opt, config, step, time.time() - t0, warmup_steps)
        opt.step()
        for k, v in sums.items():
            ema[k] = v if k not in ema else 0.95 * ema[k] + 0.05 * v
        bar.set_postfix({k: f"{v:.3f}" for k, v in ema.items()}, refresh=False)
        if step % config.eval_every == 0 or step == config.max_steps:
            ll.eval()
            m = evaluate(hl_task, ll, run.nodes, run.corr, {k: v.detach() for k, v in aux.items()}, eval_data,
                         n_subsets=config.eval_subsets, subset_seed=derive(config.seed, "siit-selection-subsets"))
            score = bar_score(m)
            history.append({"step": step, "wall_s": round(time.time() - t0, 1), "accuracy": m["accuracy"], "iia": m["iia"],
                            "siia": m["siia"], "aux_accuracy": m["aux_accuracy"], "live_min": m["liveness_min_out_of_circuit"]})
            tqdm.write(f"[{name}] step {step} {time.time() - t0:.0f}s acc {m['accuracy']:.4f} iia {m['iia']:.4f} (min {m['iia_min']:.3f}) "
                       f"siia {m['siia']:.4f} (min {m['siia_min']:.3f}) faith {m['faithfulness_all']:.4f} (subsets min {m['faithfulness_subset_min']:.3f}) "
                       f"compl {m['completeness_ll']:.3f}/{m['completeness_hl']:.3f} aux {m['aux_accuracy']:.3f} live_min {m['liveness_min_out_of_circuit']:.3f}"
                       + (f" backup_iia_min {m['backup_iia_min']:.3f} backup_acc_min {m['backup_accuracy_min']:.3f} "
                          f"resample_alone {min(m['resample_alone_per_node'].values()):.3f}" if "backup_iia_min" in m else ""))
            live_ok = m["liveness_min_out_of_circuit"] >= siit.LIVE_THRESHOLD
            score_key = score + (1.0 if live_ok else 0.0)
            if config.init_tracr and score >= siit.PASS_BAR and m["liveness_min_out_of_circuit"] >= config.live_floor:
                # a warm start is at the bar from step 0: among checkpoints at the bar with every bystander as live
                # as the hinge asks, prefer the one whose bystanders best do their own job (the aux readout)
                score_key += 1.0 + m["aux_accuracy"]
            if score_key > best["score"]:
                best = {"score": score_key, "step": step, "state": copy.deepcopy(ll.state_dict()),
                        "aux": {k: v.detach().clone() for k, v in aux.items()}}
            # a warm start begins at the bar (tracr's accuracy and IIA, bystanders silent on tracr's dimensions):
            # it stops early only once every bystander is as live as the hinge asks, not merely past the threshold
            stop_live = config.live_floor if config.init_tracr else siit.LIVE_THRESHOLD
            if score >= config.target and m["liveness_min_out_of_circuit"] >= stop_live:
                break
            if config.time_limit is not None and time.time() - t0 > config.time_limit:
                tqdm.write(f"[{name}] time limit {config.time_limit:.0f}s reached")
                break
            # after checkpoint selection: the kept state is the evaluated one
            if config.reinit_dead_after:
                for node in bys:
                    dead_evals[node.name] = dead_evals[node.name] + 1 if m["liveness"][node.name] < siit.LIVE_THRESHOLD else 0
                    if dead_evals[node.name] >= config.reinit_dead_after:
                        reinit_node(ll, node, run.gen, opt, quiet_dims=run.hl.cfg.d_model if config.init_tracr else 0)
                        reinits.append({"step": step, "node": node.name, "liveness": m["liveness"][node.name]})
                        tqdm.write(f"[{name}] re-initialised dead bystander {node.name} (liveness {m['liveness'][node.name]:.3f})")
                        dead_evals[node.name] = 0
            if checkpoint is not None and step < config.max_steps:
                sessions[-1]["last_step"] = step
                _save_checkpoint(checkpoint, run, opt, {
                    "continued": continued, "step": step, "elapsed": time.time() - t0, "best": best, "history": history,
                    "reinits": reinits, "dead_evals": dead_evals, "ema": ema, "sessions": sessions, "extra": extra or {}})
                if ((pause_after_steps is not None and step - first_step + 1 >= pause_after_steps)
                        or (pause_after_s is not None and time.time() - t_session >= pause_after_s)):
                    tqdm.write(f"[{name}] paused at step {step}; checkpoint {checkpoint} (go on with --resume)")
                    paused = True
                    break
    bar.close()
    sessions[-1]["last_step"] = step
    ll.load_state_dict(best["state"])
    ll.eval()
    info = {"steps": step, "best_step": best["step"], "wall_s": time.time() - t0, "history": history, "ll_config": run.cfg,
            "correspondence": run.corr, "hyperparameters": hyper, "reinitialised": reinits, "paused": paused,
            "sessions": sessions, "extra": extra or {}}
    return ll, best["aux"], info
