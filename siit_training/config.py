"""``SiitConfig``: every hyperparameter of a SIIT run, one command-line option per field."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields

from interventions.options import at_least
from siit_training.losses import NUM_LOSS_SCALE

# Fixed parts of the recipe.
AUX_WEIGHT = 0.5  # weight of the aux readout loss
LIVE_FLOOR = 0.25  # liveness hinge floor (variance ratio to the median in-circuit node)
GRAD_CLIP = 1.0  # gradient-norm clip
BACKUP_LOSS_WEIGHT = 1.0  # weight of the backup loss (redundant HL nodes: one member kept, its partners zero-ablated)
CARD_TEST_N = 256  # held-out examples per length for the card

# Options a recorded ``config`` (a card's, a checkpoint's) may hold that are no longer options, with
# the one value today's recipe has for each: a recording at that value describes today's recipe.
REMOVED_OPTIONS: dict[str, object] = {
    "test_n": CARD_TEST_N, "w_aux": AUX_WEIGHT, "live_floor": LIVE_FLOOR, "clip": GRAD_CLIP, "same_length_sources": False,
    "aux_layer0": False, "w_backup": BACKUP_LOSS_WEIGHT, "circuit_sgd_lr": 0.0,
}


def unknown_options(recorded: dict) -> dict:
    """The keys of a recorded ``config`` (a card's, a checkpoint's) that today's ``SiitConfig`` cannot
    reproduce: neither a field nor a removed option at its fixed value. ``{}``: the recording is
    today's recipe (its other keys are ``SiitConfig`` fields)."""
    names = {f.name for f in fields(SiitConfig)}
    return {k: v for k, v in recorded.items() if k not in names and not (k in REMOVED_OPTIONS and v == REMOVED_OPTIONS[k])}


def _option(default: object, help: str, flag: str | None = None):
    """A ``SiitConfig`` field with its command-line help (and its option name when not ``--<field-name>``)."""
    return field(default=default, metadata={"help": help, **({"flag": flag} if flag else {})})


@dataclass
class SiitConfig:
    """Every hyperparameter of a SIIT run that a run may set, in one place (the fixed ones are the
    constants above): ``python -m siit_training`` generates its options from these fields
    (``--max-steps`` for ``max_steps``), ``train`` reads them and the card stores ``asdict(config)``
    under ``config``."""

    seed: int = _option(0, "seed of the LL init, the training draws and the card's test data")
    max_steps: int = _option(3000, "optimizer steps at most")
    batch: int = _option(256, "(base, source) pairs per step")
    lr: float = _option(3e-3, "peak learning rate (cosine decay to 5%%)")
    eval_every: int = _option(100, "steps between held-out evaluations (checkpoint selection, early stop)")
    eval_n: int = _option(128, "held-out examples per length for checkpoint selection")
    time_limit: float | None = _option(None, "seconds of training per task (then the best checkpoint is kept)")
    w_iit: float = _option(1.0, "weight of the IIT loss")
    w_strict: float = _option(0.4, "weight of the strict loss")
    w_live: float = _option(1.0, "weight of the bystander liveness hinge")
    target: float = _option(0.993, "early stop once min(accuracy, min-node IIA, min-node SIIA) reaches this")
    num_loss_scale: float = _option(NUM_LOSS_SCALE, "multiplier of the MSE loss on numerical outputs")
    all_lengths_per_step: bool = _option(
        False, "each step averages the gradients of every input length (default: one random length per step)")
    reinit_dead_after: int = _option(
        3, "redraw a bystander's weights after this many consecutive evals below the liveness threshold (0: never)")
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
    class_balance: float = _option(
        0.0, "categorical outputs: each cell's cross-entropy weighted by n^-B, n the batch's count of its target class "
        "(1: every class weighs equally; 0: off)")
    attn_iit_rows: bool = _option(
        False, "with --w-attn: the attention-pattern loss also on the IIT rows, against tracr's under the same patch")
    joint_strict: bool = _option(
        False, "strict rows resample a random bystander subset together (default: one bystander per row)")
    iit_bystanders: bool = _option(False, "IIT rows also resample a random bystander subset from the row's source")
    w_circuit: float = _option(0.0, "weight of the circuit loss: every circuit node resampled, against HL resampled the same way")
    step_schedule: bool = _option(False, "the cosine lr schedule follows steps only (--time-limit then only stops the run)")
    eval_subsets: int = _option(8, "random bystander subsets in each held-out evaluation (the card uses 32)")
    live_median_grad: bool = _option(
        False, "the liveness hinge's median in-circuit variance carries gradient too (default: a detached constant), "
        "so circuit nodes cannot outgrow the bystanders instead of the bystanders staying live")

    def hyperparameters(self, output: str, continued: bool, redundant: dict | None = None) -> dict:
        """The card's description of the recipe (``hyperparameters``)."""
        out = {
            "batch": self.batch, "lr": self.lr, "max_steps": self.max_steps, "time_limit_s": self.time_limit, "optimizer": "Adam",
            "lr_schedule": ("cosine to 5% over max_steps" if self.step_schedule
                            else "cosine to 5% over max_steps or time_limit_s, whichever runs out first")
                           + ("; linear warm-up over 200 steps (continued from trained weights)" if continued
                              else "; linear warm-up over 200 steps (warm start from tracr's weights)" if self.init_tracr else ""),
            "grad_clip": GRAD_CLIP,
            "numerical_mse_scale": self.num_loss_scale if output == "numerical" else None,
            **({"numerical_tail": {"weight": self.num_tail, "what": "mean of (relu(abs(LL - HL) - tol/2) / (tol/2))^2, "
                                   "tol = the pass tolerance"}} if output == "numerical" and self.num_tail else {}),
            **({"focal_cross_entropy": {"exponent": self.focal, "what": "each cell's cross-entropy weighted by "
                                        "(1 - p_target)^exponent"}} if output == "categorical" and self.focal else {}),
            **({"class_balanced_cross_entropy": {"power": self.class_balance, "what": "each cell's cross-entropy weighted by "
                                                 "n_c^-power, n_c the batch's labelled cells of its target class; "
                                                 "the weighted mean"}} if output == "categorical" and self.class_balance else {}),
            "loss_weights": {"behaviour": 1.0, "iit": self.w_iit, "strict": self.w_strict, "aux": AUX_WEIGHT, "live": self.w_live,
                             **({"circuit": self.w_circuit} if self.w_circuit else {})},
            "strict_rows": ("a random bystander subset per row, resampled together from the row's one source: the drawn "
                            "bystander plus each other with probability p ~ U(0, 1] (p drawn per row); every bystander in a "
                            "quarter of the rows" if self.joint_strict else "one random bystander per row"),
            "iit_rows_bystanders": ("each bystander also resampled from the row's source with probability p ~ U(0, 1] "
                                    "(p drawn per row)" if self.iit_bystanders else "left at base"),
            "live_floor": LIVE_FLOOR,
            "live_hinge": "mean over bystanders of relu(sqrt(live_floor) - sqrt(var / median in-circuit var))"
                          + ("; the median carries gradient" if self.live_median_grad else "; the median detached"),
            "eval_every": self.eval_every, "eval_examples_per_length": self.eval_n, "early_stop_target": self.target,
            "early_stop_liveness": f"every bystander >= live_floor ({LIVE_FLOOR})" if self.init_tracr
            else "every bystander >= the liveness threshold",
            "lengths_per_step": "all (batch split evenly, gradients averaged)" if self.all_lengths_per_step else "one, drawn at random",
            "reinit_dead_bystander_after_evals": self.reinit_dead_after or None,
            "sources": "IIT, strict and aux rows: each row's source length drawn uniformly from [base length, max_len] (the "
                       "benchmark's resample draw), first base-length+1 positions patched",
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
                "loss_weight": BACKUP_LOSS_WEIGHT,
            }
        return out


# the least value of each count field (seed and reinit_dead_after may be 0; the rest are counts of steps or examples)
COUNT_MINIMUM = {"seed": 0, "reinit_dead_after": 0, "max_steps": 1, "batch": 1, "eval_every": 1, "eval_n": 1, "eval_subsets": 1}
_ARG_TYPES = {"int": int, "float": float, "float | None": float}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per ``SiitConfig`` field: ``--field-name`` (a flag for a bool), its default and help."""
    for f in fields(SiitConfig):
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        if f.type == "bool":
            assert f.default is False, f.name  # a store_true flag
            parser.add_argument(flag, dest=f.name, action="store_true", help=f.metadata["help"])
        else:
            kind = at_least(COUNT_MINIMUM[f.name]) if f.type == "int" else _ARG_TYPES[f.type]
            parser.add_argument(flag, dest=f.name, type=kind, default=f.default,
                                help=f.metadata["help"] + " (default %(default)s)")


def config_from_args(args: argparse.Namespace) -> SiitConfig:
    """The ``SiitConfig`` of parsed options (``add_config_arguments``)."""
    return SiitConfig(**{f.name: getattr(args, f.name) for f in fields(SiitConfig)})
