"""The output losses of SIIT training: cross-entropy to the HL argmax (categorical) or scaled MSE
(numerical), with their optional refinements (HL ties left out, a focal weight, a tail term)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tasks.siit.evaluate import hl_ties
from tasks.siit import NUM_TOL

NUM_LOSS_SCALE = 100.0


def output_loss(ll_out: torch.Tensor, hl_out: torch.Tensor, output: str, num_scale: float = NUM_LOSS_SCALE,
                skip_ties: bool = False, num_tail: float = 0.0, focal: float = 0.0, class_balance: float = 0.0) -> torch.Tensor:
    """Cross-entropy to the HL argmax (categorical; ``skip_ties``: HL tie cells carry no label and are
    left out; ``focal`` > 0: each cell's CE weighted by (1 - p_target)^focal, so the rare cells a model
    still gets wrong, not the many it already gets right, drive the gradient; ``class_balance`` b > 0:
    each cell's CE weighted by n_c^-b, n_c the number of labelled cells in the batch with its target
    class c, and the loss is the weighted mean, so at b = 1 every class present weighs equally) or scaled
    MSE (numerical; plus ``num_tail`` x the tail term ``numerical_tail``); BOS excluded."""
    ll_out, hl_out = ll_out[:, 1:], hl_out[:, 1:]
    if output == "categorical":
        target = hl_out.argmax(-1)
        if skip_ties:
            target = target.masked_fill(hl_ties(hl_out), -100)  # cross_entropy's ignore_index
            if not (target != -100).any():
                return ll_out.sum() * 0.0
        if not focal and not class_balance:
            return F.cross_entropy(ll_out.reshape(-1, ll_out.shape[-1]), target.reshape(-1))
        ce = F.cross_entropy(ll_out.reshape(-1, ll_out.shape[-1]), target.reshape(-1), reduction="none")
        keep = target.reshape(-1) != -100
        ce = (1 - torch.exp(-ce[keep])).pow(focal) * ce[keep] if focal else ce[keep]
        if not class_balance:
            return ce.mean()
        labels = target.reshape(-1)[keep]
        weight = torch.bincount(labels, minlength=ll_out.shape[-1]).to(ce.dtype).pow(-class_balance)[labels]
        return (weight * ce).sum() / weight.sum()
    # scaled so a numerical error of 0.1 costs about what a confident CE mistake does (else the aux CE dominates)
    loss = num_scale * F.mse_loss(ll_out, hl_out)
    return loss + num_tail * numerical_tail(ll_out, hl_out) if num_tail else loss


def numerical_tail(ll_out: torch.Tensor, hl_out: torch.Tensor, tol: float = NUM_TOL) -> torch.Tensor:
    """Mean of ``(relu(|LL - HL| - tol/2) / (tol/2))**2``: 0 on cells within half the pass tolerance,
    1 on a cell exactly at it. The bar counts cells past ``tol``, and the MSE is ruled by the many
    small errors, so this term is what pulls the rare large ones in."""
    half = tol / 2
    return (F.relu((ll_out - hl_out).abs() - half) / half).pow(2).mean()


def liveness_hinge(bystander_vars: torch.Tensor, circuit_vars: torch.Tensor, floor: float, median_grad: bool = False) -> torch.Tensor:
    """Mean over bystanders of ``relu(sqrt(floor) - sqrt(var / median in-circuit var))`` (``[n_bystanders]``,
    ``[n_circuit]`` input variances of what each node writes; ``floor``: ``config.LIVE_FLOOR``). On the std
    ratio: a variance hinge has a vanishing gradient at a dead (zero-weight) node. The median (the
    card's, ``tasks.siit.evaluate``) is a detached constant unless ``median_grad``: detached, the hinge
    can only grow bystanders, and with no LayerNorm the circuit's writes may outgrow them instead
    (prev_prev_wide: median in-circuit variance 5e4, its layer-0 bystanders 2e1-4e2, liveness < 0.01)."""
    med = torch.quantile(circuit_vars, 0.5).clamp_min(1e-6)
    med = med if median_grad else med.detach()
    # one scalar per bystander, stacked: the op order every shipped run used (one vector relu-mean differs in the last bits)
    return torch.stack([F.relu(floor ** 0.5 - (v / med + 1e-8).sqrt()) for v in bystander_vars]).mean()
