"""The interchange, the suite's central idea, defined once.

A base input of length ``L`` (``L + 1`` positions with BOS) takes a *source*: another input whose
length is drawn from the lengths ``>= L`` (``source_lengths``), and the node's activation on the
source's first ``L + 1`` positions (``source_prefix``) replaces the node's activation on the base.
A longer source varies what the base's length fixes (a same-length source cannot move a node that
computes length), and its prefix lines up position for position with the base.

Every user of a source draws its own (base, source) pairs with its own random stream: the
benchmark's ``resample`` (``ablations.task_data.draw_sources``: sources among the eval data's rows),
SIIT evaluation (``tasks.siit.evaluate.eval_pairs``: fresh sources, one group per length pair)
and SIIT training (``siit_training.objective``: fresh sources per step); all of them take their source
lengths and prefixes from here.
"""

from __future__ import annotations

from typing import Iterable

import torch


def source_lengths(base_len: int, lengths: Iterable[int]) -> list[int]:
    """The lengths a base of ``base_len`` tokens may take a source from: every one of ``lengths`` >= it, ascending."""
    return sorted({int(x) for x in lengths if x >= base_len})


def source_prefix(acts: torch.Tensor, base_positions: int) -> torch.Tensor:
    """``acts [b, pos_src, ...]`` cut to the base's positions (``L + 1`` with BOS): ``[b, base_positions, ...]``."""
    if acts.shape[1] < base_positions:
        raise ValueError(f"a source of {acts.shape[1]} positions is shorter than its base ({base_positions}): "
                         f"sources must be at least as long as their base")
    return acts[:, :base_positions]
