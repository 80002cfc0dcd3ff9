"""The interchange is drawn in one place: every (base, source) pair's source length comes from
``interventions.interchange.draw_source_lengths``, whoever draws it (the benchmark's pooled sources,
SIIT evaluation, SIIT training)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from interventions.interchange import draw_source_lengths, draw_sources, source_lengths, source_prefix
from tasks import siit
from tasks.registry import load_task

ROOT = Path(__file__).resolve().parents[1]


def test_source_lengths_are_the_base_length_and_longer():
    assert source_lengths(3, [5, 2, 3, 4, 3]) == [3, 4, 5]
    assert source_lengths(6, range(2, 6)) == []


def test_source_prefix_lines_up_with_the_base_and_refuses_a_shorter_source():
    acts = torch.arange(2 * 6 * 3).reshape(2, 6, 3)
    assert torch.equal(source_prefix(acts, 4), acts[:, :4])
    with pytest.raises(ValueError, match="shorter than its base"):
        source_prefix(acts, 7)


def test_source_lengths_uniform_over_the_longer_lengths():
    drawn = draw_source_lengths(3, range(1, 7), 6000, torch.Generator().manual_seed(0))
    counts = Counter(drawn)
    assert sorted(counts) == [3, 4, 5, 6]
    assert all(abs(c / 6000 - 0.25) < 0.03 for c in counts.values()), counts
    again = draw_source_lengths(3, range(1, 7), 6000, torch.Generator().manual_seed(0))
    assert again == drawn


def test_no_source_length_refused_by_name():
    with pytest.raises(ValueError, match="no source length >= the base's"):
        draw_source_lengths(5, [1, 2, 3], 4, torch.Generator())
    with pytest.raises(ValueError, match="2 group lengths but 1 group sizes"):
        draw_sources([1, 2], [4], torch.Generator())


def test_pooled_sources_follow_the_one_draw():
    """A pooled source's length is the one draw's (replayed on the same stream), its row never the base's."""
    lengths, sizes = [2, 3, 3, 5], [8, 6, 7, 9]
    got = draw_sources(lengths, sizes, torch.Generator().manual_seed(4))
    replay = torch.Generator().manual_seed(4)
    by_length = {L: [g for g, x in enumerate(lengths) if x == L] for L in set(lengths)}
    for g, (src_group, src_row) in enumerate(got):
        for i, (h, j) in enumerate(zip(src_group.tolist(), src_row.tolist())):
            while True:  # the draw's own steps: a length, a group of it, a row of it; again if it is the base
                cands = by_length[draw_source_lengths(lengths[g], by_length, 1, replay)[0]]
                h2 = cands[int(torch.randint(len(cands), (1,), generator=replay))]
                j2 = int(torch.randint(sizes[h2], (1,), generator=replay))
                if (h2, j2) != (g, i):
                    break
            assert (h, j) == (h2, j2) and lengths[h] >= lengths[g] and (h, j) != (g, i)


def test_siit_evaluation_pairs_follow_the_one_draw():
    """``eval_pairs`` groups by (base length, source length), the counts those of the one draw on its seed."""
    hl = load_task("back2")
    n, seed = 40, 7
    pairs = siit.eval_pairs(hl, n, seed=seed, cross_length=True)
    lo, hi = hl.inputs.min_len, hl.inputs.max_len
    gen = torch.Generator().manual_seed(seed)
    expected = [(L, Ls, c) for L in range(lo, hi + 1)
                for Ls, c in sorted(Counter(draw_source_lengths(L, range(lo, hi + 1), n, gen)).items())]
    got = [(b.shape[1] - 1, s.shape[1] - 1, b.shape[0]) for b, s in pairs]  # -1: BOS
    assert got == expected
    assert all(b.shape[0] == s.shape[0] for b, s in pairs)
    same = siit.eval_pairs(hl, n, seed=seed)  # same-length sources only: one group of n per length
    assert [(b.shape[1], s.shape[1], b.shape[0]) for b, s in same] == [(L + 1, L + 1, n) for L in range(lo, hi + 1)]


def test_the_draw_is_defined_once():
    """No module outside interchange.py works out which source lengths a base may take, or draws one itself."""
    pattern = re.compile(r"\bsource_lengths\(|randint\(\s*allowed")
    hits = [f"{p.relative_to(ROOT)}" for d in ("ablations", "abench", "interventions", "tasks", "siit_training", "benchmarks", "scripts")
            for p in sorted((ROOT / d).rglob("*.py")) if p.name != "interchange.py" and pattern.search(p.read_text())]
    assert hits == [], f"source lengths worked out outside interventions/interchange.py: {hits}"
