"""Your own RASP program as a task, in one call.

    from tracr.rasp import rasp
    from tasks.rasp import rasp_task

    def program():  # built lazily: tracr and jax load only when the task is made
        return rasp.numerical(rasp.Map(lambda x: 1 if x == "a" else 0, rasp.tokens))

    TASKS = [rasp_task("is_a", program, vocab=["a", "b", "c"], max_len=5, output="numerical")]

Put that in a file and run ``pytest benchmarks --task-module my_task.py``. The program is compiled
with tracr and converted to a ``HookedTransformer``; its circuit is every head and MLP tracr gave
non-zero weights (the labels are the weights, ground truth ``weights``, as for the shipped
``tracr`` family). Inputs are drawn uniformly from ``vocab`` unless ``sample(rng, length)`` is
given (``dyck_sampler`` and ``distinct_sampler`` are the shipped programs' samplers, for
programs with a precondition); counterfactuals change one token unless ``edit(rng, seq)`` is given.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

from tasks.base import InputSpec, Task, InputSeq
from tasks.tracr.compiled import task_of_program
from tasks.tracr.programs import ProgramSpec, distinct_sampler, dyck_sampler  # noqa: F401  (public samplers)

OUTPUTS = ("categorical", "numerical")


def rasp_task(name: str, program: Callable[[], object] | object, vocab: Sequence, max_len: int,
              output: str = "categorical", *, min_len: int = 2, family: str = "rasp",
              sample: Callable[[random.Random, int], InputSeq] | None = None,
              edit: Callable[[random.Random, InputSeq], InputSeq] | None = None, device: str = "cpu") -> Task:
    """A task from a RASP program: ``program`` is a ``rasp.SOp`` or a function of no arguments
    returning one; inputs of ``min_len .. max_len`` tokens of ``vocab``. Compiled on every call
    (never from the cache, which keys by name, not code). Raises ``ValueError`` naming the bad argument."""
    if output not in OUTPUTS:
        raise ValueError(f"rasp_task {name!r}: output must be one of {OUTPUTS}, got {output!r}")
    if not vocab or len(set(vocab)) != len(vocab):
        raise ValueError(f"rasp_task {name!r}: vocab must be a non-empty sequence of distinct values, got {vocab!r}")
    if not (isinstance(max_len, int) and isinstance(min_len, int) and 1 <= min_len <= max_len):
        raise ValueError(f"rasp_task {name!r}: need integers 1 <= min_len <= max_len, got min_len={min_len!r}, max_len={max_len!r}")
    build = program if callable(program) and not hasattr(program, "label") else (lambda: program)
    inputs = InputSpec(list(vocab), max_len, min_len=min_len, sample=sample, edit=edit)
    found = inputs.problem()  # a sampler that leaves the vocabulary is named now, not at run time
    if found:
        raise ValueError(f"rasp_task {name!r}: field {found[0]!r}: {found[1]}")
    spec = ProgramSpec(name, build, inputs, output)
    return task_of_program(spec, family=family, device=device, cache=False)
