"""How much memory a task's fit and eval data will hold, checked before any input is drawn.

``TaskData`` keeps, per input, the residual stream before every layer, every node's clean and
counterfactual activation and every node's residual write (``ablations.task_data.TaskData.build``),
all float32. ``check_data_budget`` refuses sizes whose estimate exceeds the memory the machine
has available, naming the options to lower, instead of growing until the machine runs out.
"""

from __future__ import annotations

from interventions.memory import available_bytes
from tasks.base import Task

BYTES_PER_FLOAT = 4
TRANSIENT_FACTOR = 2  # run_with_cache holds a batch's full cache while TaskData copies out of it
BUDGET_SHARE = 0.8  # of the memory available now


def bytes_per_input(task: Task) -> int:
    """Estimated bytes ``TaskData`` holds per input of ``task`` (activations at the model's ``n_ctx``)."""
    c = task.model.cfg
    per_pos = (c.n_layers + 1) * c.d_model + c.d_vocab_out  # resid_pre of every layer, the output
    for node in task.nodes:
        act = c.d_head if node.kind == "attn" else node.width if node.kind == "feature" else (c.d_mlp or c.d_model)
        per_pos += 2 * act + c.d_model  # clean and counterfactual activation, the node's write
    return int(TRANSIENT_FACTOR * BYTES_PER_FLOAT * c.n_ctx * per_pos)


def check_data_budget(task: Task, n_fit: int, n_eval: int, available: int | None = None) -> int:
    """The estimated bytes of ``n_fit + n_eval`` inputs of ``task``; raises ``MemoryError`` naming
    ``--n-fit`` / ``--n-eval`` when the estimate exceeds ``BUDGET_SHARE`` of ``available`` (default:
    what the machine has available now)."""
    need = (n_fit + n_eval) * bytes_per_input(task)
    have = available_bytes() if available is None else available
    if have is not None and need > BUDGET_SHARE * have:
        raise MemoryError(f"--n-fit {n_fit} + --n-eval {n_eval} inputs of {task.name} need about {need / 2**30:.1f} GiB of "
                          f"activations, more than {BUDGET_SHARE:.0%} of the {have / 2**30:.1f} GiB available: lower "
                          f"--n-eval / --n-fit (at most about {int(BUDGET_SHARE * have / bytes_per_input(task)):,} inputs in all)")
    return need
