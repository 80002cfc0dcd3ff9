"""How much work runs at once: the stacked-batch memory budget (which GPU a pytest-xdist worker takes is
the session's business: ``abench.session.worker_device``).

Budget (``--max-batch-mb``): a stacked forward (``interventions.hooks``) holds ``rows`` copies of
one length group's sequences. Its peak memory per row is estimated from the model's shapes
(``bytes_per_row``); each chunk takes at most ``budget // bytes_per_row`` rows (at least one node
set, and never more than the speed cap ``max_rows``). The default budget is a quarter of the free
memory of the device (``MemAvailable`` of ``/proc/meminfo`` on the CPU, ``torch.cuda.mem_get_info``
on a GPU), read once per process and device. Chunking changes how many rows share a forward, not
what any row computes: the numbers are the same under any budget (``tests/test_memory.py``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch

_MAX_BATCH_MB: float | None = None  # None: default_budget_mb(device)
_DEFAULTS: dict[str, float] = {}
DEFAULT_FRACTION = 0.25  # of the free memory
BYTES_PER_FLOAT = 4
SAFETY = 2  # transient copies: the replacing hook's clone of its activation, the next layer's input


def set_max_batch_mb(mb: float | None) -> None:
    """The process-wide budget in MiB (``None``: the default from free memory)."""
    global _MAX_BATCH_MB
    if mb is not None and not mb > 0:
        raise ValueError(f"--max-batch-mb must be > 0, got {mb}")
    _MAX_BATCH_MB = mb


@contextmanager
def max_batch_mb(mb: float | None):
    """The budget for a block of code (tests), restored afterwards."""
    before = _MAX_BATCH_MB
    set_max_batch_mb(mb)
    try:
        yield
    finally:
        set_max_batch_mb(before)


def default_budget_mb(device) -> float:
    key = str(device)
    if key not in _DEFAULTS:
        if key.startswith("cuda") and torch.cuda.is_available():
            free = torch.cuda.mem_get_info(torch.device(key))[0]
        else:
            free = available_bytes()
        _DEFAULTS[key] = DEFAULT_FRACTION * free / 2**20
    return _DEFAULTS[key]


def available_bytes() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def bytes_per_row(model, pos: int) -> int:
    """Estimated peak bytes of one row (one sequence of ``pos`` positions) in a stacked forward:
    the residual stream and its per-layer transients (4 x d_model), the MLP hidden layer, q/k/v
    and z of every head, the attention scores and pattern (2 x n_heads x pos), the output."""
    c = model.cfg
    per_pos = 4 * c.d_model + (c.d_mlp or 0) + 4 * c.n_heads * c.d_head + 2 * c.n_heads * pos + c.d_vocab_out
    return SAFETY * BYTES_PER_FLOAT * pos * per_pos


def rows_within_budget(model, pos: int, max_rows: int) -> int:
    """Rows one stacked forward may take: ``max_rows`` (the speed cap) or fewer under the budget."""
    return max(1, min(max_rows, budget_bytes(model.cfg.device) // bytes_per_row(model, pos)))


def budget_bytes(device) -> int:
    """The current budget in bytes (``--max-batch-mb``, or the device's default)."""
    mb = _MAX_BATCH_MB if _MAX_BATCH_MB is not None else default_budget_mb(device)
    return int(mb * 2**20)


def held_bound_bytes(model, batch: int, pos: int) -> int:
    """The most all-node effects (``abench.effects.node_effects``) hold on one length group of
    ``batch`` sequences of ``pos`` positions, beyond the model and the clean data (``TaskData``):

    - one stacked forward: the budget, or one node's ``batch`` rows when the budget is smaller;
    - one layer's replacements (``batch x pos x (n_heads d_head + d_mlp)`` floats);
    - scoring one output: the clean log-probs kept per group and four ``[batch, pos, d_vocab_out]``
      transients of the KL divergence;
    - the unembedding's own copy, ``W_U.T`` contiguous (``d_model x d_vocab_out`` floats; 147 MiB at
      gpt2-small's shape): the engine makes it once per model and keeps it (``interventions.readout``),
      where TransformerLens' ``Unembed`` makes it on every forward (the fallback under hooks).
    """
    c = model.cfg
    forward = max(budget_bytes(c.device), batch * bytes_per_row(model, pos))
    layer_repl = BYTES_PER_FLOAT * batch * pos * (c.n_heads * c.d_head + (c.d_mlp or 0))
    scoring = 5 * BYTES_PER_FLOAT * batch * pos * c.d_vocab_out
    unembed_copy = BYTES_PER_FLOAT * c.d_model * c.d_vocab_out
    return forward + layer_repl + scoring + unembed_copy
