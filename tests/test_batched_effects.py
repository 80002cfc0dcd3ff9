"""The batched all-node effect computation equals the plain per-node hook loop."""

import pytest
import torch

from abench.bench import task_data
from abench.effects import node_effects
from interventions.hooks import ablated_outputs_batched, ablated_outputs_loop
from ablations import make_method
from tasks import siit
from tasks.siit import FAILED_DIR
from tasks.registry import load_task
from tasks.tracr.programs import PROGRAMS


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_batched_equals_loop_on_every_tracr_task(name):
    task = load_task(name)
    fit, ev = task_data(task, n_fit=16, n_eval=24, seed=5)
    for method in ("resample", "noise"):
        m = make_method(method).fit(fit)
        fast = node_effects(m, ev, batched=True, max_rows=64)  # small chunks: several per layer
        slow = node_effects(m, ev, batched=False)
        for a, b in zip(fast, slow):
            assert a.name == b.name
            assert abs(a.effect - b.effect) <= 1e-5, (method, a, b)
            assert abs(a.continuous - b.continuous) <= 1e-5, (method, a, b)


def any_task(name: str):
    """The task, or for ``siit_*`` the model from its weights whether or not its card ships: these tests check the
    engine on the models' shapes, not their ground truth."""
    if not name.startswith("siit_"):
        return load_task(name)
    shipped = (siit.WEIGHTS_DIR / f"{name.removeprefix('siit_')}.safetensors").is_file()
    return siit.siit_task(name, weights_dir=None if shipped else FAILED_DIR)  # failed models keep weights a test needs


@pytest.mark.parametrize("name", ["shuffle_dyck", "siit_hist", "siit_back2_wide"])
@pytest.mark.parametrize("start", ["layer input", "node write"])
def test_batched_outputs_match_loop_outputs_elementwise(name, start):
    """Both stacked paths: each node's layer recomputed from ``resid_pre`` under a hook, or the
    forward started at the node's own write (``writes``: no attention recomputed in its layer)."""
    task = any_task(name)
    _, ev = task_data(task, n_fit=16, n_eval=40, seed=2)
    g = 2
    assert ev.writes[g], f"{name}: the clean run kept no writes"
    gen = torch.Generator().manual_seed(0)
    repl = {n.name: torch.randn(ev.acts[n.name][g].shape, generator=gen) for n in task.nodes}
    writes = ev.writes[g] if start == "node write" else None
    fast = ablated_outputs_batched(task.model, ev.resid_pre[g], task.nodes, repl, max_rows=50, writes=writes)
    slow = ablated_outputs_loop(task.model, ev.tokens[g], task.nodes, repl)
    for n in task.nodes:
        torch.testing.assert_close(fast[n.name], slow[n.name], atol=1e-5, rtol=1e-5)
    # a random replacement of an in-circuit node does change the output: the check can fail
    assert any(not torch.allclose(fast[n.name], ev.outputs[g]) for n in task.nodes if n.in_circuit)


SIIT_SAMPLE = ["siit_hist", "siit_sort_unique", "siit_prev_token_wide", "siit_back2_wide", "siit_hist_backup", "siit_count_a"]


@pytest.mark.parametrize("name", SIIT_SAMPLE)
def test_batched_equals_loop_on_siit_models(name):
    task = any_task(name)
    fit, ev = task_data(task, n_fit=16, n_eval=48, seed=5)
    for method in ("resample", "mean", "zero"):
        m = make_method(method).fit(fit)
        fast = node_effects(m, ev, batched=True, max_rows=64)
        slow = node_effects(m, ev, batched=False)
        for a, b in zip(fast, slow, strict=True):
            assert a.name == b.name
            assert abs(a.effect - b.effect) <= 1e-5, (method, a, b)
            assert abs(a.continuous - b.continuous) <= 1e-5, (method, a, b)


def test_zero_weight_nodes_have_zero_effect_and_circuit_nodes_do_not():
    task = load_task("reverse")
    fit, ev = task_data(task, n_fit=32, n_eval=64)
    effects = {e.name: e for e in node_effects(make_method("zero").fit(fit), ev)}
    for n in task.nodes:
        if n.in_circuit:
            assert effects[n.name].effect > 0, n.name
        else:
            assert effects[n.name].effect == 0 and effects[n.name].continuous == 0, n.name
