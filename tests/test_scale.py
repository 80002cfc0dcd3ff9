"""The scale family: the engine's effects equal the per-node hook loop's on every real shape (gpt2-small,
Pythia-70m's parallel rotary blocks, a Llama-style grouped-query model), for every method kind, and
each grouped-query head is a node of its own; the held-memory bound covers a gpt2-small-shape run.

The method sweep runs on reduced-width versions of the shapes (same layers, heads, key/value heads
and block kind; ``tasks.scale.scale_config``); the real shapes run with a tiny batch on a few nodes."""

import pytest
import torch

from abench.effects import node_effects
from abench.peak_memory import CPU_ALLOCATOR_SLACK, PeakMemory, cpu_peak_supported
from abench.scale_cost import task_scorer
from ablations import DEFAULT_METHODS, ESTIMATOR_METHODS, TaskData, make_method
from interventions import memory
from interventions.hooks import supports_write_start
from tasks.registry import DEFAULT_FAMILIES, families, load_task, resolve_task_names
from tasks.scale import SHAPES, random_tokens, scale_task

TOL = 1e-5
# every method kind of the leaderboard; optimal ablation's fit is cut to 3 steps (its ablate is what is compared)
METHODS = [f"{m}[max_steps=3]" if m.startswith("optimal") else m for m in DEFAULT_METHODS if m not in ESTIMATOR_METHODS]
REDUCED = 8  # width divisor of the method sweep


@pytest.fixture(scope="module")
def reduced():
    """Per shape: the reduced task and fit / eval data on the nodes of its first, a middle and its
    last layer (one length, four rows)."""
    out = {}
    for shape in SHAPES:
        task = scale_task(shape, width=REDUCED, lengths=(6,))
        n = task.model.cfg.n_layers
        nodes = [x for x in task.nodes if x.layer in (0, n // 2, n - 1)]
        fit, ev = (TaskData.build(task.model, "categorical", nodes, *task.sample_with_counterfactual(4, seed), seed=seed)
                   for seed in (1, 2))
        out[shape] = (task, fit, ev)
    return out


def assert_same_effects(fast, slow):
    for a, b in zip(fast, slow, strict=True):
        assert a.name == b.name
        assert abs(a.effect - b.effect) <= TOL and abs(a.continuous - b.continuous) <= TOL, (a, b)


@pytest.mark.parametrize("scorer", ["suite", "task"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_engine_equals_the_hook_loop_on_every_shape(reduced, shape, method, scorer):
    """Under the suite's scorer (every cell read) and the task's own (the logit difference: one position,
    two columns, so the engine computes only those)."""
    task, fit, ev = reduced[shape]
    m = make_method(method).fit(fit)
    make = (lambda: None) if scorer == "suite" else (lambda: task_scorer(task, ev))
    fast, slow = node_effects(m, ev, scorer=make()), node_effects(m, ev, batched=False, scorer=make())
    assert len(fast) == len(ev.nodes)
    assert_same_effects(fast, slow)
    assert any(e.continuous > 0 for e in fast)  # the ablations did change the outputs


def test_the_shapes_take_both_engine_paths():
    fast = {shape: supports_write_start(scale_task(shape, width=REDUCED).model) for shape in SHAPES}
    assert fast == {"gpt2_small": True, "pythia_70m": False, "llama_gqa": False}  # parallel, gated MLP: the fallback


def test_every_grouped_query_head_is_its_own_node(reduced):
    task, fit, ev = reduced["llama_gqa"]
    cfg = task.model.cfg
    assert cfg.n_key_value_heads < cfg.n_heads
    assert len([n for n in task.nodes if n.kind == "attn"]) == cfg.n_layers * cfg.n_heads  # query heads, not key/value heads
    effects = {e.name: e.continuous for e in node_effects(make_method("zero").fit(fit), ev)}
    group = cfg.n_heads // cfg.n_key_value_heads
    for layer in sorted({n.layer for n in ev.nodes}):
        # heads sharing one key/value head are still ablated one at a time: their effects differ
        shared = [effects[f"blocks.{layer}.attn.hook_z[{h}]"] for h in range(group)]
        assert len(set(shared)) == group, shared


@pytest.mark.parametrize("shape", list(SHAPES))
def test_real_shape_engine_equals_the_hook_loop(shape):
    """At the real widths, batch 2, 4 tokens: the first and last layers' first head and MLP, and a
    grouped-query head that is not the first of its key/value group."""
    task = load_task(f"scale_{shape}")
    last = task.model.cfg.n_layers - 1
    nodes = [n for n in task.nodes if n.layer in (0, last) and (n.kind == "mlp" or n.head in (0, 1))]
    toks, cf = random_tokens(task, 2, 4, seed=2)
    ev = TaskData.build(task.model, "categorical", nodes, [toks], [cf], seed=2)
    for method in ("zero", "resample"):
        m = make_method(method).fit(ev)
        assert_same_effects(node_effects(m, ev), node_effects(m, ev, batched=False))


def test_scale_is_opt_in_and_cost_only():
    assert "scale" in families() and "scale" not in DEFAULT_FAMILIES
    assert not any(name.startswith("scale_") for name in resolve_task_names(None))
    assert resolve_task_names("scale") == [f"scale_{s}" for s in SHAPES]
    task = scale_task("llama_gqa", width=REDUCED)
    assert task.ground_truth == "none" and not any(n.in_circuit for n in task.nodes) and task.info["cost_only"]
    assert task.scoring is not None and task.scoring.position == -1  # the logit difference, as IOI is scored


@pytest.mark.skipif(not cpu_peak_supported(), reason="no resettable peak resident set here")
def test_memory_held_within_the_bound_for_two_budgets():
    """gpt2-small's width, two layers: a budget that fits one node per forward and one that fits a
    layer's; same effects, and each run's peak beyond the model and clean data within its bound."""
    task = scale_task("gpt2_small", width=2)
    nodes = [n for n in task.nodes if n.layer >= task.model.cfg.n_layers - 2]
    toks, cf = random_tokens(task, 2, 16, seed=3)
    ev = TaskData.build(task.model, "categorical", nodes, [toks], [cf], seed=3)
    m = make_method("mean").fit(ev)
    per_node = 2 * memory.bytes_per_row(task.model, 17) / 2**20
    node_effects(m, ev)  # warm-up: one-time allocations are not the run's
    runs = {}
    for mb in (per_node, 20 * per_node):
        with memory.max_batch_mb(mb), PeakMemory("cpu") as peak:
            runs[mb] = node_effects(m, ev)
        with memory.max_batch_mb(mb):
            bound = memory.held_bound_bytes(task.model, 2, 17) + CPU_ALLOCATOR_SLACK
            assert peak.extra_bytes <= bound, (mb, peak.extra_bytes / 2**20, bound / 2**20)
    assert_same_effects(*runs.values())


@pytest.mark.skipif(not cpu_peak_supported(), reason="no resettable peak resident set here")
def test_peak_memory_sees_an_allocation():
    with PeakMemory("cpu") as peak:
        x = torch.ones(64 * 2**20 // 4)  # 64 MiB, written: resident
        del x
    assert peak.extra_bytes >= 60 * 2**20
