"""The per-node in-place check reads version counters; an edit that bypasses them (``.data``) of
shared activations is caught by the shared-data guard, and undone for the other methods."""

import torch

from abench.bench import run_row, task_data
from ablations.base import AblationMethod
from tasks.registry import load_task


class EditsThroughData(AblationMethod):
    name = "edits_through_data"

    def ablate(self, batch):
        batch.clean.data.mul_(0.0)  # .data has its own version counter: the per-node check cannot see it
        return torch.zeros_like(batch.clean)


def test_an_edit_through_data_fails_its_row_and_is_undone():
    task = load_task("reverse")
    fit, ev = task_data(task, n_fit=16, n_eval=16, seed=1)
    before = {k: [a.clone() for a in v] for k, v in ev.acts.items()}
    row = run_row(task, EditsThroughData(), fit, ev)
    assert row.status == "failed" and "modified shared task data during ablate" in row.error, row.error
    assert all(torch.equal(a, b) for k in before for a, b in zip(ev.acts[k], before[k]))
    assert run_row(task, "zero", fit, ev).ok
