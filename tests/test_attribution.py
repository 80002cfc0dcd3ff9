"""Attribution patching (``interventions.attribution``, ``abench.attribution``): the identity check on
a model whose metric is linear in every node, batched gradients against the per-node reference, the
agreement measures, and estimator rows end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from abench import bench
from abench.attribution import agreement, estimated_changes, exact_changes, false_negatives, on_line, task_metrics
from abench.measures import SuiteScorer
from ablations import make_method
from ablations.base import TaskData
from interventions.attribution import attribution_estimates, attribution_reference, path_points
from interventions.nodes import all_nodes
from tasks.user_tasks import TaskSpec, build_task, plant_circuit

IDENTITY_ATOL = 1e-5
REPLACEMENTS = ("zero", "mean", "resample")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_data(attn_only: bool, norm: str | None, output: str, seed: int = 0, lengths=(4, 6), n: int = 12) -> TaskData:
    cfg = HookedTransformerConfig(n_layers=1 if attn_only else 2, n_heads=3, d_model=12, d_head=4, d_mlp=None if attn_only else 16,
                                  d_vocab=7, d_vocab_out=1 if output == "numerical" else 5, n_ctx=8, act_fn="gelu",
                                  normalization_type=norm, attn_only=attn_only, seed=seed)
    model = HookedTransformer(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    tokens = [torch.randint(1, cfg.d_vocab, (n, L), generator=gen) for L in lengths]
    for t in tokens:
        t[:, 0] = 0  # BOS
    nodes = all_nodes(model, lambda layer, kind, head: head == 0)
    return TaskData.build(model, output, nodes, tokens, seed=seed)


def changes(data: TaskData, name: str, alphas):
    metrics, _ = task_metrics(data, SuiteScorer())
    m = make_method(name).fit(data)
    est, repl = estimated_changes(m, data, metrics, alphas)
    return est, exact_changes(data, metrics, repl)


@pytest.mark.parametrize("method", REPLACEMENTS)
@pytest.mark.parametrize("alphas", [[0.0], path_points(3)], ids=["atp", "atp_ig"])
def test_identity_on_a_model_linear_in_every_node(method, alphas):
    """One attention-only layer, no norm, read out as a number: the output is linear in every head's
    z (and in all of them together), so estimate = exact change at every cell, for every node."""
    data = tiny_data(attn_only=True, norm=None, output="numerical")
    est, exact = changes(data, method, alphas)
    scale = max(1.0, max(v.abs().max().item() for v in exact.values()))
    assert max(v.abs().max().item() for v in exact.values()) > 10 * IDENTITY_ATOL  # the ablations do change the output
    for node in data.nodes:
        err = (est[node.name] - exact[node.name]).abs().max().item()
        assert err <= IDENTITY_ATOL * scale, f"{method} {node.name}: |estimate - exact| = {err:.3g}"


def test_a_nonlinear_model_breaks_the_identity():
    """The identity above depends on linearity: with norms, MLPs and a log-probability it fails."""
    data = tiny_data(attn_only=False, norm="LN", output="categorical")
    est, exact = changes(data, "zero", [0.0])
    assert max((est[k] - exact[k]).abs().max().item() for k in est) > 1e3 * IDENTITY_ATOL


@pytest.mark.parametrize("alphas", [[0.0], path_points(2)], ids=["atp", "atp_ig"])
@pytest.mark.parametrize("max_rows", [None, 1], ids=["one-pass", "one-position-per-pass"])
def test_batched_gradients_equal_the_per_node_reference(alphas, max_rows):
    data = tiny_data(attn_only=False, norm="LN", output="categorical", seed=3)
    metrics, _ = task_metrics(data, SuiteScorer())
    for g, gm in enumerate(metrics):
        deltas = {n.name: data.node_batch(n, g).source - data.acts[n.name][g] for n in data.nodes}
        kw = {} if max_rows is None else {"max_rows": max_rows}
        batched = attribution_estimates(data.model, data.resid_pre[g], data.nodes, deltas, gm.fn, gm.positions, alphas, **kw)
        ref = attribution_reference(data.model, data.tokens[g], data.nodes, deltas, gm.fn, gm.positions, alphas)
        for n in data.nodes:
            scale = max(1.0, ref[n.name].abs().max().item())
            assert torch.allclose(batched[n.name], ref[n.name], atol=1e-5 * scale, rtol=0), n.name


def test_agreement_measures_by_construction():
    rng = np.random.default_rng(0)
    exact = np.sort(rng.uniform(0.1, 1.0, 6))
    labels = [False, False, False, True, True, True]  # the three largest exact effects are in the circuit
    same = agreement(labels, exact, exact)
    assert same["spearman"] == pytest.approx(1.0) and same["on_line_share"] == 1.0 and same["false_negatives"] == 0
    swapped = exact.copy()
    swapped[[2, 3]] = swapped[[3, 2]]  # the estimate puts the weakest in-circuit node below the strongest bystander
    assert false_negatives(labels, swapped, exact) == [3]
    exact_swapped_too = swapped.copy()  # ... where the exact effect ranks them the same way: no false negative
    assert false_negatives(labels, swapped, exact_swapped_too) == []
    far = exact * 2
    assert not on_line(far, exact).any() and on_line(exact * (1 + 0.5 * 0.1), exact).all()


def planted_task():
    cfg = HookedTransformerConfig(n_layers=2, n_heads=2, d_model=8, d_head=4, d_mlp=8, d_vocab=5, d_vocab_out=3, n_ctx=6,
                                  act_fn="relu", normalization_type=None, seed=1)
    circuit = ["blocks.0.attn.hook_z[1]", "blocks.1.mlp.hook_post"]
    model = plant_circuit(HookedTransformer(cfg), circuit)
    return build_task(TaskSpec(name="planted_atp", family="mine", model=model, circuit=circuit, vocab=[1, 2, 3, 4],
                               lengths=(2, 5), output="categorical"))


def test_estimator_rows_end_to_end():
    task = planted_task()
    fit, ev = bench.task_data(task, 16, 32, 0)
    exact_row = bench.run_row(task, "zero", fit, ev)
    for name in ("atp[zero]", "atp_ig[zero,steps=2]"):
        row = bench.run_row(task, name, fit, ev)
        assert row["status"] == "ok", row.get("error")
        assert row["method"] == name and row["method_base"] in ("atp", "atp_ig") and row["exact_method"] == "zero"
        nodes = row["nodes"]
        assert [n["name"] for n in nodes] == [n["name"] for n in exact_row["nodes"]]
        # planted: no path from a bystander to the output, so its gradient and its exact change are 0
        assert all(n["effect"] == 0 and n["exact"] == 0 for n in nodes if not n["in_circuit"]), nodes
        assert all(n["exact"] > 0 for n in nodes if n["in_circuit"])
        assert row["exact_seconds"] > 0 and row["estimate_seconds"] > 0
        assert row["exact_over_estimate"] == pytest.approx(row["exact_seconds"] / row["estimate_seconds"])
        assert 0 <= row["on_line_share"] <= 1 and row["false_negatives"] == len(row["false_negative_nodes"])


def test_estimator_names_round_trip_and_refuse_estimates_of_estimates():
    for name in ("atp[mean]", "atp_ig[resample,steps=4]"):
        assert make_method(make_method(name).name).name == name
    with pytest.raises(ValueError):
        make_method("atp[atp]")
    with pytest.raises(KeyError):
        make_method("atp[no_such_method]")


def test_leaderboard_section_and_report_show_estimate_beside_exact():
    from abench import leaderboard
    from abench.report.html import to_html
    from abench.report.markdown import to_markdown

    task = planted_task()
    fit, ev = bench.task_data(task, 16, 32, 0)
    rows = [bench.run_row(task, m, fit, ev) for m in ("zero", "atp[zero]", "atp_ig[zero,steps=2]")]
    doc = leaderboard.build(rows, leaderboard.environment("cpu"))
    summary = doc["attribution"]["mine"]
    assert [s["method"] for s in summary] == ["atp[zero]", "atp_ig[zero,steps=2]"]
    exact_summary = next(s for s in doc["summary_by_family"]["mine"] if s["method"] == "zero")
    for s, r in zip(summary, rows[1:]):
        assert s["exact_pooled_auroc"] == exact_summary["pooled_auroc"] and s["pooled_auroc"] == r["auroc"]
        assert s["on_line_share"] == r["on_line_share"] and s["exact_over_estimate"] == pytest.approx(r["exact_over_estimate"])
    page = to_html(doc)
    assert 'id="fig-attribution-0"' in page and "on the line:" in page
    assert "Attribution patching: estimate vs exact, family `mine`" in to_markdown(doc)
    assert "attribution" not in leaderboard.build(rows[:1], leaderboard.environment("cpu"))
