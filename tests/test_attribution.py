"""Attribution patching (``interventions.linear_estimates``, ``abench.estimator_rows``): the identity check on
a model whose metric is linear in every node, batched gradients against the per-node reference, the
agreement measures, GradDrop (batched against its reference, on wired models with one downstream
path per node and with two paths that cancel), and estimator rows end to end."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from abench import bench
from abench.estimator_rows import agreement, estimated_changes, exact_changes, false_negatives, on_line, task_metrics
from abench.scorers import SuiteScorer
from ablations import make_method
from ablations.task_data import TaskData
from interventions.linear_estimates import (attribution_estimates, attribution_reference, graddrop_estimates, graddrop_reference,
                                       gradient_dropped, path_points)
from interventions.nodes import Node, all_nodes
from tasks.user_tasks import TaskSpec, build_task, plant_circuit

IDENTITY_ATOL = 1e-5
REPLACEMENTS = ("zero", "mean", "resample")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_data(attn_only: bool, norm: str | None, output: str, seed: int = 0, lengths=(4, 6), n: int = 12,
              n_layers: int | None = None) -> TaskData:
    n_layers = n_layers or (1 if attn_only else 2)
    cfg = HookedTransformerConfig(n_layers=n_layers, n_heads=3, d_model=12, d_head=4, d_mlp=None if attn_only else 16,
                                  d_vocab=7, d_vocab_out=1 if output == "numerical" else 5, n_ctx=8, act_fn="gelu",
                                  normalization_type=norm, attn_only=attn_only, seed=seed)
    model = HookedTransformer(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    tokens = [torch.randint(1, cfg.d_vocab, (n, L), generator=gen) for L in lengths]
    for t in tokens:
        t[:, 0] = 0  # BOS
    nodes = all_nodes(model, lambda layer, kind, head: head == 0)
    return TaskData.build(model, output, nodes, tokens, seed=seed)


def changes(data: TaskData, name: str, alphas=(0.0,), estimate=None):
    """Per node the estimate at every cell (AtP at ``alphas``, or ``estimate``) and the exact change, method ``name``."""
    metrics, _ = task_metrics(data, SuiteScorer())
    m = make_method(name).fit(data)
    est, repl = estimated_changes(m, data, metrics, estimate or partial(attribution_estimates, alphas=alphas))
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
    est, exact = changes(data, "zero")
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


@pytest.mark.parametrize("max_rows", [None, 1], ids=["one-pass", "one-position-per-pass"])
@pytest.mark.parametrize("first_layer", [0, 2], ids=["nodes-from-layer-0", "nodes-from-layer-2"])
def test_batched_graddrop_equals_the_per_node_reference(max_rows, first_layer):
    """One pass per dropped layer for every node (module pre-hooks; the layers below the first node
    stood for by one plain pass) against per-node, per-layer, per-position autograd through
    TransformerLens's hook_attn_in / hook_mlp_in, on three layers with norms and MLPs."""
    data = tiny_data(attn_only=False, norm="LN", output="categorical", seed=3, n_layers=3)
    nodes = [n for n in data.nodes if n.layer >= first_layer]
    metrics, _ = task_metrics(data, SuiteScorer())
    plain_differs = False
    for g, gm in enumerate(metrics):
        deltas = {n.name: data.node_batch(n, g).source - data.acts[n.name][g] for n in nodes}
        kw = {} if max_rows is None else {"max_rows": max_rows}
        batched = graddrop_estimates(data.model, data.resid_pre[g], nodes, deltas, gm.fn, gm.positions, **kw)
        ref = graddrop_reference(data.model, data.tokens[g], nodes, deltas, gm.fn, gm.positions)
        plain = attribution_estimates(data.model, data.resid_pre[g], nodes, deltas, gm.fn, gm.positions)
        for n in nodes:
            scale = max(1.0, ref[n.name].abs().max().item())
            assert torch.allclose(batched[n.name], ref[n.name], atol=1e-5 * scale, rtol=0), n.name
            plain_differs |= not torch.allclose(batched[n.name], plain[n.name].abs(), atol=1e3 * IDENTITY_ATOL * scale, rtol=0)
    assert plain_differs  # dropping layers changed some node's score: the comparison is not AtP against itself
    assert not data.model.cfg.use_attn_in and not data.model.cfg.use_hook_mlp_in  # the reference restored the model


def test_gradient_dropped_keeps_forward_values_and_is_removed_after():
    data = tiny_data(attn_only=False, norm="LN", output="categorical", n_layers=3)
    tokens = data.tokens[0]
    clean = data.model(tokens)
    for layer in range(data.model.cfg.n_layers):
        with gradient_dropped(data.model, layer):
            assert torch.equal(data.model(tokens), clean)
    embed = data.model.embed.W_E
    grad = lambda: torch.autograd.grad(data.model(tokens).sum(), [embed])[0]  # noqa: E731
    with torch.enable_grad():
        before = grad()
        with gradient_dropped(data.model, 0):
            assert not torch.allclose(grad(), before)  # the block's gradient no longer reaches the embedding
        assert torch.equal(grad(), before)


CHANNEL = 3  # residual dimensions per channel of a wired model


def wired_model(n_layers: int, wiring: dict[str, tuple[int, int]], n_channels: int, seed: int = 0) -> HookedTransformer:
    """A model without norms whose residual stream is ``n_channels`` blocks of ``CHANNEL`` dimensions:
    the embedding writes channel 0, the unembedding reads the last, ``wiring["attn1"] = (read, write)``
    (or ``"mlp1"``) lets that component read one channel and write one (random weights there, zero
    elsewhere), and every component not wired writes nothing. Its paths are the wiring's."""
    cfg = HookedTransformerConfig(n_layers=n_layers, n_heads=2, d_model=CHANNEL * n_channels, d_head=4, d_mlp=8, d_vocab=7,
                                  d_vocab_out=1, n_ctx=8, act_fn="gelu", normalization_type=None, seed=seed)
    model = HookedTransformer(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    ch = lambda c: slice(CHANNEL * c, CHANNEL * (c + 1))  # noqa: E731
    rand = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.W_E[:, ch(0)] = rand(cfg.d_vocab, CHANNEL)
        model.unembed.W_U[ch(n_channels - 1)] = rand(CHANNEL, 1)
        for name, (read, write) in wiring.items():
            block = model.blocks[int(name[-1])]
            if name.startswith("attn"):
                for w in (block.attn.W_Q, block.attn.W_K, block.attn.W_V):
                    w[:, ch(read)] = rand(cfg.n_heads, CHANNEL, cfg.d_head)
                block.attn.W_O[:, :, ch(write)] = rand(cfg.n_heads, cfg.d_head, CHANNEL)
            else:
                block.mlp.W_in[ch(read)] = rand(CHANNEL, cfg.d_mlp)
                block.mlp.b_in[:] = rand(cfg.d_mlp)
                block.mlp.W_out[:, ch(write)] = rand(cfg.d_mlp, CHANNEL)
    return model


def wired_data(model: HookedTransformer, nodes: list[Node], seed: int = 0) -> TaskData:
    gen = torch.Generator().manual_seed(seed)
    tokens = [torch.randint(1, model.cfg.d_vocab, (12, length), generator=gen) for length in (4, 6)]
    for t in tokens:
        t[:, 0] = 0  # BOS
    return TaskData.build(model, "numerical", nodes, tokens, seed=seed)


@pytest.mark.parametrize("method", REPLACEMENTS)
def test_graddrop_is_abs_atp_where_each_node_has_one_downstream_path(method):
    """Three layers wired so that the heads of layer 0 act only through the MLP of layer 1 and the MLP
    of layer 0 only through the MLP of layer 2: one of the three dropped layers cuts each one's path,
    so GradDrop = 2 |AtP| / 2 = |AtP| at every cell. The MLPs of layers 1 and 2 act only directly: no
    dropped layer touches them, GradDrop = 3 |AtP| / 2 (the documented L / (L - 1))."""
    wiring = {"attn0": (0, 1), "mlp0": (0, 2), "mlp1": (1, 3), "mlp2": (2, 3)}
    model = wired_model(3, wiring, n_channels=4)
    one_path = [Node(0, "attn", 0), Node(0, "attn", 1), Node(0, "mlp")]
    direct = [Node(1, "mlp"), Node(2, "mlp")]
    data = wired_data(model, one_path + direct)
    atp, _ = changes(data, method)
    gd, _ = changes(data, method, estimate=graddrop_estimates)
    n_layers = model.cfg.n_layers
    for nodes, factor in ((one_path, 1.0), (direct, n_layers / (n_layers - 1))):
        for n in nodes:
            scale = max(1.0, atp[n.name].abs().max().item())
            assert atp[n.name].abs().max().item() > 10 * IDENTITY_ATOL, n.name  # the node does act on the output
            err = (gd[n.name] - factor * atp[n.name].abs()).abs().max().item()
            assert err <= IDENTITY_ATOL * scale, f"{n.name}: |GradDrop - {factor:g} |AtP|| = {err:.3g}"


THRESHOLD = 0.5  # the MLP of layer 1 passes what exceeds it


def cancelling_model() -> HookedTransformer:
    """Two layers, one-dimensional channels: the MLP of layer 0 writes its input ``v >= 1`` to channel
    1, which the output reads with weight +1 (direct path) and the MLP of layer 1 reads and writes back
    as ``relu(v - THRESHOLD)`` with weight -1 (indirect path): output ``v - relu(v - THRESHOLD)``. At
    the clean run the two paths' gradients cancel exactly; zeroing the MLP of layer 0 changes the
    output by ``-THRESHOLD`` (the relu leaves its linear piece)."""
    cfg = HookedTransformerConfig(n_layers=2, n_heads=1, d_model=3, d_head=1, d_mlp=1, d_vocab=5, d_vocab_out=1, n_ctx=8,
                                  act_fn="relu", normalization_type=None)
    model = HookedTransformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.W_E[:, 0] = torch.arange(1, cfg.d_vocab + 1, dtype=torch.float)  # every token's v >= 1 > THRESHOLD
        model.blocks[0].mlp.W_in[0, 0] = model.blocks[0].mlp.W_out[0, 1] = 1.0
        model.blocks[1].mlp.W_in[1, 0] = model.blocks[1].mlp.W_out[0, 2] = 1.0
        model.blocks[1].mlp.b_in[0] = -THRESHOLD
        model.unembed.W_U[1, 0], model.unembed.W_U[2, 0] = 1.0, -1.0
    return model


def test_graddrop_recovers_a_node_whose_paths_cancel_in_the_plain_gradient():
    """AtP of the MLP of layer 0 is 0 at every cell though zeroing it changes the output; GradDrop
    dropping layer 1 keeps the direct path alone, so it equals |AtP| of the same model with the
    indirect path removed (the MLP of layer 1 writing nothing)."""
    node = Node(0, "mlp")
    model = cancelling_model()
    data = wired_data(model, [node])
    atp, exact = changes(data, "zero")
    gd, _ = changes(data, "zero", estimate=graddrop_estimates)
    assert atp[node.name].abs().max().item() <= IDENTITY_ATOL  # the plain gradient cancels: AtP misses the node
    assert exact[node.name].abs().min().item() > 10 * IDENTITY_ATOL  # ... which does change the output
    direct_only = cancelling_model()
    with torch.no_grad():
        direct_only.blocks[1].mlp.W_out.zero_()
    atp_direct, _ = changes(wired_data(direct_only, [node]), "zero")
    assert atp_direct[node.name].abs().min().item() > 10 * IDENTITY_ATOL
    assert torch.allclose(gd[node.name], atp_direct[node.name].abs(), atol=IDENTITY_ATOL, rtol=0)


def test_graddrop_on_one_layer_is_abs_atp():
    """One layer: no block downstream of any node, nothing to drop or cancel (the one-layer tracr
    programs of the leaderboard): GradDrop is |AtP|, batched and reference alike, and not all zero."""
    data = tiny_data(attn_only=False, norm="LN", output="categorical", seed=5, n_layers=1)
    metrics, _ = task_metrics(data, SuiteScorer())
    for g, gm in enumerate(metrics):
        deltas = {n.name: data.node_batch(n, g).source - data.acts[n.name][g] for n in data.nodes}
        plain = attribution_estimates(data.model, data.resid_pre[g], data.nodes, deltas, gm.fn, gm.positions)
        batched = graddrop_estimates(data.model, data.resid_pre[g], data.nodes, deltas, gm.fn, gm.positions)
        ref = graddrop_reference(data.model, data.tokens[g], data.nodes, deltas, gm.fn, gm.positions)
        for n in data.nodes:
            assert torch.equal(batched[n.name], plain[n.name].abs()), n.name
            assert torch.allclose(ref[n.name], plain[n.name].abs(), atol=1e-5, rtol=0), n.name
        assert any(plain[n.name].abs().max() > 0 for n in data.nodes)


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
    exact_row = bench.run_row(task, "zero", fit, ev).to_json()
    for name in ("atp[zero]", "atp_ig[zero,steps=2]", "atp_gd[zero]"):
        row = bench.run_row(task, name, fit, ev).to_json()  # as the leaderboard writes it
        assert row["status"] == "ok", row.get("error")
        assert row["method"] == name and row["method_base"] == name.split("[")[0] and row["exact_method"] == "zero"
        nodes = row["nodes"]
        assert [n["name"] for n in nodes] == [n["name"] for n in exact_row["nodes"]]
        # planted: no path from a bystander to the output, so its gradient and its exact change are 0
        assert all(n["effect"] == 0 and n["exact"] == 0 for n in nodes if not n["in_circuit"]), nodes
        assert all(n["exact"] > 0 for n in nodes if n["in_circuit"])
        assert row["exact_seconds"] > 0 and row["estimate_seconds"] > 0
        assert row["exact_over_estimate"] == pytest.approx(row["exact_seconds"] / row["estimate_seconds"])
        assert 0 <= row["on_line_share"] <= 1 and row["false_negatives"] == len(row["false_negative_nodes"])


def test_estimator_names_round_trip_and_refuse_estimates_of_estimates():
    for name in ("atp[mean]", "atp_ig[resample,steps=4]", "atp_gd[zero]"):
        assert make_method(make_method(name).name).name == name
    for nested in ("atp[atp]", "atp[atp_gd]", "atp_gd[atp_ig]"):
        with pytest.raises(ValueError):
            make_method(nested)
    with pytest.raises(KeyError):
        make_method("atp[no_such_method]")


def test_leaderboard_section_and_report_show_estimate_beside_exact():
    from abench import leaderboard
    from abench.report.html import to_html
    from abench.report.markdown import to_markdown

    task = planted_task()
    fit, ev = bench.task_data(task, 16, 32, 0)
    rows = [bench.run_row(task, m, fit, ev) for m in ("zero", "atp[zero]", "atp_ig[zero,steps=2]")]
    built = leaderboard.build(rows, leaderboard.environment("cpu"))
    doc = built.to_json()
    summary = doc["attribution"]["mine"]
    assert [s["method"] for s in summary] == ["atp[zero]", "atp_ig[zero,steps=2]"]
    exact_summary = next(s for s in doc["summary_by_family"]["mine"] if s["method"] == "zero")
    for s, r in zip(summary, rows[1:]):
        assert s["exact_pooled_auroc"] == exact_summary["pooled_auroc"] and s["pooled_auroc"] == r.get("auroc")
        assert s["on_line_share"] == r.get("on_line_share") and s["exact_over_estimate"] == pytest.approx(r.get("exact_over_estimate"))
    page = to_html(built)
    assert 'id="fig-attribution-0"' in page and "on the line:" in page
    assert "Attribution patching: estimate vs exact, family `mine`" in to_markdown(built)
    assert "attribution" not in leaderboard.build(rows[:1], leaderboard.environment("cpu")).to_json()


def test_effects_below_float32_resolution_are_zero_so_ties_do_not_follow_the_kernels():
    """reverse's atp[zero]: an in-circuit estimate of 3e-12 on one CPU and 0 on another moved its AUROC 1 <-> 0.9."""
    import numpy as np

    from abench.estimator_rows import above_resolution

    row = np.array([3.17e-12, 6.88e-06, 0.0, 0.424])
    assert above_resolution(row).tolist() == [0.0, 6.88e-06, 0.0, 0.424]
    assert above_resolution(np.array([0.0, 0.0])).tolist() == [0.0, 0.0]
    assert above_resolution(np.array([1e-3, 50.0])).tolist() == [1e-3, 50.0]  # 1e-3 is far above 50's resolution (6e-6)
