"""How well one method's effect scores separate in-circuit from out-of-circuit nodes."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score


def no_auroc_reason(labels: Sequence[bool]) -> str | None:
    n_in = sum(labels)
    if n_in == 0:
        return "no in-circuit node: AUROC undefined"
    if n_in == len(labels):
        return "every node is in the circuit: AUROC undefined"
    return None


def separability(labels: Sequence[bool], scores: Sequence[float]) -> dict:
    """AUROC (in-circuit positive), gap, FPR at full recall and mean in/out effects.

    ``gap = min(in) - max(out)`` (> 0: a threshold separates them); FPR at the highest
    threshold that keeps every in-circuit node: fraction of out-of-circuit nodes scoring >= min(in).
    """
    labels = [bool(x) for x in labels]
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels)
    s_in, s_out = s[y], s[~y]
    reason = no_auroc_reason(labels)
    return {
        "auroc": None if reason else float(roc_auc_score(y, s)),
        "auroc_reason": reason,
        "gap": float(s_in.min() - s_out.max()) if s_in.size and s_out.size else None,
        "fpr_at_full_recall": float((s_out >= s_in.min()).mean()) if s_in.size and s_out.size else None,
        "mean_effect_in": float(s_in.mean()) if s_in.size else None,
        "mean_effect_out": float(s_out.mean()) if s_out.size else None,
        "n_in": int(y.sum()),
        "n_out": int((~y).sum()),
    }


def _auroc_rows(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC of each row: ``pos [B, P]``, ``neg [B, N]`` -> ``[B]`` (ties count 1/2)."""
    neg_sorted = np.sort(neg, axis=1)
    below = np.stack([np.searchsorted(n, p, side="left") for n, p in zip(neg_sorted, pos)])
    not_above = np.stack([np.searchsorted(n, p, side="right") for n, p in zip(neg_sorted, pos)])
    return (below + not_above).sum(1) / (2.0 * pos.shape[1] * neg.shape[1])


def bootstrap_auroc(labels: Sequence[bool], scores: Sequence[float], n_boot: int = 1000, seed: int = 0) -> tuple[float, float] | None:
    """95% percentile interval of the AUROC, resampling nodes within each class (seeded).

    The per-replicate AUROC is the rank statistic, vectorised (``roc_auc_score`` per replicate
    was the slowest part of writing a leaderboard); tests hold it equal to scikit-learn's.
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    if no_auroc_reason(list(y)):
        return None
    rng = np.random.default_rng(seed)
    pos, neg = s[y], s[~y]
    stats = _auroc_rows(rng.choice(pos, (n_boot, pos.size)), rng.choice(neg, (n_boot, neg.size)))
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(lo), float(hi)
