"""The output losses of SIIT training: cross-entropy to the HL argmax (categorical) or scaled MSE
(numerical), with their optional refinements (HL ties left out, a focal weight, a tail term)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tasks.siit.evaluate import hl_ties
from tasks.siit.model import NUM_TOL

NUM_LOSS_SCALE = 100.0


def output_loss(ll_out: torch.Tensor, hl_out: torch.Tensor, output: str, num_scale: float = NUM_LOSS_SCALE,
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


def numerical_tail(ll_out: torch.Tensor, hl_out: torch.Tensor, tol: float = NUM_TOL) -> torch.Tensor:
    """Mean of ``(relu(|LL - HL| - tol/2) / (tol/2))**2``: 0 on cells within half the pass tolerance,
    1 on a cell exactly at it. The bar counts cells past ``tol``, and the MSE is ruled by the many
    small errors, so this term is what pulls the rare large ones in."""
    half = tol / 2
    return (F.relu((ll_out - hl_out).abs() - half) / half).pow(2).mean()
