"""The stacked-batch memory budget (``--max-batch-mb``) changes how many forwards run, never the
numbers; xdist workers on ``--device cuda`` take one GPU each."""

import pytest

from interventions import memory
from abench.bench import task_data
from abench.circuit import circuit_effects
from abench.effects import node_effects
from abench.session import worker_device
from ablations import make_method
from tasks.registry import load_task
from tests.test_benchmark_cli import run_bench
from tests.test_circuit import assert_effects_close


def forwards(model):
    """A counter of model forwards (every forward, started at any layer, ends in the unembedding)."""
    count = [0]
    handle = model.unembed.register_forward_hook(lambda *args: count.__setitem__(0, count[0] + 1))
    return count, handle


@pytest.mark.parametrize("name", ["siit_length", "reverse"])
def test_a_tiny_budget_gives_the_numbers_of_a_large_one(name):
    task = load_task(name)
    fit, ev = task_data(task, n_fit=16, n_eval=48, seed=3)
    m = make_method("resample").fit(fit)
    count, handle = forwards(task.model)
    try:
        results = {}
        for mb in (1e4, 1e-3):  # large: one forward per layer and group; tiny: one node set per forward
            count[0] = 0
            with memory.max_batch_mb(mb):
                results[mb] = (node_effects(m, ev), circuit_effects(m, ev), count[0])
    finally:
        handle.remove()
    (big, big_c, n_big), (tiny, tiny_c, n_tiny) = results[1e4], results[1e-3]
    assert n_tiny > n_big, (n_tiny, n_big)  # the budget did split the stacked forwards
    for a, b in zip(big, tiny, strict=True):
        assert a.name == b.name
        assert abs(a.effect - b.effect) <= 1e-5 and abs(a.continuous - b.continuous) <= 1e-5, (a, b)
    assert_effects_close(big_c, tiny_c)


def test_rows_stay_within_the_budget_for_a_large_model():
    class Cfg:  # gpt2-small's shapes at 1024 positions
        d_model, d_mlp, n_heads, d_head, d_vocab_out, device = 768, 3072, 12, 64, 50257, "cpu"

    class Model:
        cfg = Cfg

    per_row = memory.bytes_per_row(Model, 1024)
    with memory.max_batch_mb(2048):
        rows = memory.rows_within_budget(Model, 1024, 512)
    assert rows * per_row <= 2048 * 2**20 < (rows + 1) * per_row
    with memory.max_batch_mb(1):
        assert memory.rows_within_budget(Model, 1024, 512) == 1  # at least one node set runs


def test_xdist_workers_spread_over_visible_gpus():
    assert [worker_device("cuda", f"gw{i}", 2) for i in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert worker_device("cuda", "gw3", 1) == "cuda"
    assert worker_device("cpu", "gw1", 2) == "cpu"
    assert worker_device("cuda", "", 2) == "cuda"  # not a worker


def test_a_non_positive_budget_is_a_usage_error(tmp_path):
    res = run_bench("--max-batch-mb", "0", "--report-dir", str(tmp_path))
    assert res.returncode == 4 and "--max-batch-mb must be > 0" in res.stderr, res.stdout + res.stderr
