"""The interchange, the suite's central idea, defined once.

A base input of length ``L`` (``L + 1`` positions with BOS) takes a *source*: another input whose
length is drawn uniformly from the lengths ``>= L`` (``source_lengths``, ``draw_source_lengths``), and
the node's activation on the source's first ``L + 1`` positions (``source_prefix``) replaces the
node's activation on the base. A longer source varies what the base's length fixes (a same-length
source cannot move a node that computes length), and its prefix lines up position for position
with the base.

Every (base, source) pair of the suite is drawn here, with the caller's generator:
``draw_source_lengths`` gives each base its source's length; ``draw_sources`` then picks a source row
among a pool of inputs (the benchmark's ``resample`` and every method that reads sources, and the
iit scorer through ``TaskData.from_sources``), while SIIT evaluation (``tasks.siit.evaluate.eval_pairs``)
and SIIT training (``siit_training.objective``) draw a fresh input of each drawn length."""

from __future__ import annotations

from typing import Iterable, Sequence

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


def draw_source_lengths(base_len: int, lengths: Iterable[int], n: int, generator: torch.Generator) -> list[int]:
    """For ``n`` bases of ``base_len`` tokens, each source's length: uniform over ``source_lengths(base_len, lengths)``.

    The one draw of the interchange distribution: the benchmark's sources, SIIT evaluation and SIIT
    training all take their source lengths from it (the suite trains on the distribution it scores with).
    """
    allowed = source_lengths(base_len, lengths)
    if not allowed:
        raise ValueError(f"no source length >= the base's ({base_len}) among {sorted(set(lengths))}: "
                         f"a base needs a source at least as long as itself")
    return [allowed[i] for i in torch.randint(len(allowed), (n,), generator=generator).tolist()]


def draw_sources(lengths: Sequence[int], sizes: Sequence[int], generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For every row of a pool of length groups, a source among the pool's rows: ``[(src_group [n_g], src_row [n_g])]``.

    ``lengths[g]``, ``sizes[g]``: group ``g``'s input length and row count. A base of length L gets a
    source length from ``draw_source_lengths``, then a uniform group of that length and a uniform row of
    it, never the base row itself (drawn again).
    """
    if len(lengths) != len(sizes):
        raise ValueError(f"{len(lengths)} group lengths but {len(sizes)} group sizes")
    by_length: dict[int, list[int]] = {}
    for g, L in enumerate(lengths):
        by_length.setdefault(L, []).append(g)
    out = []
    for g, (L, n) in enumerate(zip(lengths, sizes)):
        src_group, src_row = torch.empty(n, dtype=torch.long), torch.empty(n, dtype=torch.long)
        for i in range(n):
            while True:
                cands = by_length[draw_source_lengths(L, by_length, 1, generator)[0]]
                h = cands[int(torch.randint(len(cands), (1,), generator=generator))]
                j = int(torch.randint(sizes[h], (1,), generator=generator))
                if (h, j) != (g, i):
                    break
            src_group[i], src_row[i] = h, j
        out.append((src_group, src_row))
    return out
