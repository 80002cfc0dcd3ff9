"""Sub-seeds derived by name: ``derive(seed, "bench-eval")`` instead of arithmetic at each call site.

Every derivation keeps the formula the suite used before it had names, so shipped cards, the
committed leaderboard and ``reports/baseline.json`` stay reproducible: renaming a stream here
must not change its formula (a new formula changes every number drawn from it). The formulas are
therefore the historical ones (``2 * seed``, ``seed + 7919``, ...), written once, here.
"""

from __future__ import annotations

# name -> formula of (seed, *parts); parts are stream-specific indices (node, length group)
DERIVATIONS = {
    "bench-eval": lambda seed: 2 * seed,  # abench.bench.task_data: the eval split
    "bench-fit": lambda seed: 2 * seed + 1,  # ... the fit split (disjoint from every eval seed)
    "counterfactual": lambda seed: seed + 7919,  # tasks.base.Task.sample_with_counterfactual: the edits
    "ablation-noise": lambda seed, node, group: seed * 1_000_003 + node * 1009 + group,  # NodeBatch.generator
    "siit-selection": lambda seed: 10_000 + seed,  # siit_training/loop.py: held-out pairs for checkpoint selection
    "siit-card-test": lambda seed: 20_000 + seed,  # siit_training/card.py: the card's test pairs
    "siit-selection-subsets": lambda seed: 30_000 + seed,  # siit_training/loop.py: bystander subsets for selection
    "siit-card-subsets": lambda seed: 40_000 + seed,  # siit_training/card.py: the card's bystander subsets
    "features-compressed-test": lambda seed: 50_000 + seed,  # tasks/features/compress.py: held-out inputs of the accuracy bar
}


def derive(seed: int, name: str, *parts: int) -> int:
    """The sub-seed of stream ``name`` (``DERIVATIONS``) for ``seed`` (and the stream's ``parts``)."""
    if name not in DERIVATIONS:
        raise KeyError(f"unknown seed stream {name!r}; known: {', '.join(DERIVATIONS)}")
    return DERIVATIONS[name](int(seed), *parts)
