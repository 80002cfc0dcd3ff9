"""Property tests of every ablation method's invariants on random small models and inputs.

Each example builds a tiny random ``HookedTransformer`` (see ``method_strategies``), random
length groups of tokens with a one-token counterfactual edit per row, and a ``TaskData``.
Some examples carry *dead* nodes (their hooked activation is exactly 0) or *constant* nodes.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abench.bench import method_fields, run_row
from abench.effects import MethodError, node_effects
from interventions.measures import NUMERICAL_THRESHOLD
from ablations import DEFAULT_METHODS, AblationMethod, NodeBatch, TaskData, make_method
from ablations.base import REGISTRY
from ablations.basic import Mean, PositionMean, Resample, ResampleSameLength, Zero
from tasks.base import InputSpec, Task

try:  # pytest's rootdir-relative import when tests/ is a package, its sys.path insertion otherwise
    from tests.method_strategies import ModelSpec, build_case, cases, model_specs, n_nodes, snapshot, token_groups
except ImportError:  # pragma: no cover
    from method_strategies import ModelSpec, build_case, cases, model_specs, n_nodes, snapshot, token_groups

_HC = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
FAST = settings(max_examples=20, deadline=None, suppress_health_check=_HC)
MEDIUM = settings(max_examples=10, deadline=None, suppress_health_check=_HC)
SLOW = settings(max_examples=5, deadline=None, suppress_health_check=_HC)

# optimal ablation is the slow one: few Adam steps, every fit row used (so its loss is over the same
# cells as node_effects on the same data)
OPTIMAL_FAST = "max_steps=6,patience=3,max_examples=10000"
# an unchanged model can still differ from the clean run by float32 rounding (the batched path runs
# other batch sizes): its mean KL / squared error is then ~1e-8 at most, not exactly 0
ROUNDING_KL = 1e-7


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fast_name(name: str) -> str:
    """``name`` from DEFAULT_METHODS with optimal ablation's step budget cut for tests."""
    if name in ("optimal", "optimal_position"):
        return f"{name}[{OPTIMAL_FAST}]"
    return name


def batches(data: TaskData):
    for g in range(data.n_groups):
        for node in data.nodes:
            yield data.node_batch(node, g)


def scale_of(x: torch.Tensor) -> float:
    return max(1.0, x.abs().max().item())


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, msg: str = "") -> None:
    tol = atol * scale_of(expected)
    err = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert actual.shape == expected.shape, f"{msg}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert err <= tol, f"{msg}: max abs error {err:.3g} > {tol:.3g}"


def with_special(mode: str):
    """A case whose model has a node (drawn) made ``mode`` (``zero`` or ``const``), and its name."""

    @st.composite
    def strat(draw):
        spec = draw(model_specs(special=False))
        idx = draw(st.integers(0, n_nodes(spec.n_layers, spec.attn_only) - 1))
        spec = replace(spec, special=((idx, mode),))
        case = build_case(spec, draw(token_groups()), seed=draw(st.integers(0, 1000)))
        return case, case.nodes[idx]

    return strat()


# --------------------------------------------------------------------------- resample


@FAST
@given(case=cases())
def test_resample_with_itself_as_source_changes_nothing(case):
    data = case.data
    methods = [make_method(n).fit(data) for n in (
        "resample", "scaled_resample[s=1]", "pca_resample[k=1,high]", "pca_resample[k=1,complement]", "pca_resample[k=3,high]",
    )]
    for batch in batches(data):
        own = replace(batch, source=batch.clean.clone())
        for m in methods:
            assert_close(m.ablate(own), batch.clean, 1e-6, f"{m.name} on {batch.node.name} with source = clean")
    # the same through the whole pipeline: every row its own source makes every node's resample effect 0
    data.sources = [(torch.full((t.shape[0],), g), torch.arange(t.shape[0])) for g, t in enumerate(data.tokens)]
    data.perms = [torch.arange(t.shape[0]) for t in data.tokens]
    for m in (Resample(), ResampleSameLength()):
        for e in node_effects(m, data):
            assert e.effect == 0 and e.continuous <= ROUNDING_KL, f"{m.name} with identity sources changed {e.name}: {e}"


@FAST
@given(case=cases())
def test_resample_takes_another_inputs_activation_of_a_length_at_least_the_bases(case):
    data = case.data
    lengths = [t.shape[1] for t in data.tokens]
    for g, (src_group, src_row) in enumerate(data.sources):
        for i, (h, j) in enumerate(zip(src_group.tolist(), src_row.tolist())):
            assert (h, j) != (g, i), f"group {g} row {i} is its own source"
            assert lengths[h] >= lengths[g] and 0 <= j < data.tokens[h].shape[0]
    m = Resample()
    for batch in batches(data):
        src_group, src_row = data.sources[batch.group]
        pos = batch.clean.shape[1]
        expected = torch.stack([data.acts[batch.node.name][h][j, :pos] for h, j in zip(src_group.tolist(), src_row.tolist())])
        assert torch.equal(m.ablate(batch), expected), batch.node.name


@FAST
@given(case=cases())
def test_resample_same_length_takes_another_rows_activation(case):
    data = case.data
    for g, perm in enumerate(data.perms):
        assert not bool((perm == torch.arange(len(perm))).any()), f"group {g}: perm {perm.tolist()} has a fixed point"
        assert sorted(perm.tolist()) == list(range(len(perm)))
    m = ResampleSameLength()
    for batch in batches(data):
        expected = data.acts[batch.node.name][batch.group][data.perms[batch.group]]
        assert torch.equal(m.ablate(batch), expected), batch.node.name


def test_resample_source_lengths_are_uniform_over_the_allowed_lengths():
    """For a base of the shortest length, every allowed source length is drawn about equally often."""
    from interventions.interchange import draw_sources

    lengths, sizes = [3, 4, 5, 6], [50, 10, 200, 40]  # group sizes differ: the draw is over lengths, not rows
    src_group, _ = draw_sources(lengths, sizes, torch.Generator().manual_seed(0))[0]
    counts = torch.bincount(src_group, minlength=4).tolist()
    assert sum(counts) == 50 and all(5 <= c <= 22 for c in counts), counts
    again = draw_sources(lengths, sizes, torch.Generator().manual_seed(0))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(again, draw_sources(lengths, sizes, torch.Generator().manual_seed(0))))


@FAST
@given(case=cases(), s=st.floats(-3, 10, allow_nan=False, allow_infinity=False))
def test_scaled_resample_endpoints_and_linearity(case, s):
    data = case.data
    one, zero_s, any_s = (make_method(f"scaled_resample[s={x!r}]").fit(data) for x in (1.0, 0.0, s))
    res, zero = Resample(), Zero()
    for batch in batches(data):
        r = res.ablate(batch)
        assert torch.equal(one.ablate(batch), r), f"scaled_resample[s=1] != resample on {batch.node.name}"
        assert torch.equal(zero_s.ablate(batch), zero.ablate(batch)), f"scaled_resample[s=0] != zero on {batch.node.name}"
        assert_close(any_s.ablate(batch), s * r, 1e-6, f"scaled_resample[s={s}]")


# --------------------------------------------------------------------------- constants


CONSTANT_METHODS = ["zero", "mean", "position_mean", "cf_mean"]


@MEDIUM
@given(cd=with_special("zero"))
def test_constant_methods_leave_a_dead_node_unchanged(cd):
    case, dead = cd
    data = case.data
    for g in range(data.n_groups):
        assert torch.equal(data.acts[dead.name][g], torch.zeros_like(data.acts[dead.name][g])), "node is not dead"
    for name in CONSTANT_METHODS + [f"optimal[{OPTIMAL_FAST}]", f"optimal_position[{OPTIMAL_FAST}]"]:
        m = make_method(name).fit(data)
        for g in range(data.n_groups):
            out = m.ablate(data.node_batch(dead, g))
            assert_close(out, torch.zeros_like(out), 1e-7, f"{m.name} on dead {dead.name}")
        eff = {e.name: e for e in node_effects(m, data)}[dead.name]
        assert eff.effect == 0 and eff.continuous <= ROUNDING_KL, f"{m.name} changed the output through dead {dead.name}: {eff}"


# float32 rounding in the batched path relative to the outputs' scale: a replacement within
# rounding of the clean activation moves an output by at most ~1e-3 of the outputs' largest magnitude
# (seen: squared error 0.018 on outputs ~291, 1e-6 on outputs ~638, both from a mean of a constant)
OUTPUT_RTOL = 1e-3


def output_scale(data: TaskData) -> float:
    return max(1.0, max(o.abs().max().item() for o in data.outputs))


@MEDIUM
@given(cd=with_special("const"))
def test_mean_of_a_constant_activation_is_that_constant(cd):
    case, node = cd
    data = case.data
    value = data.acts[node.name][0][0, 0]
    assert value.abs().max() > 0
    for g in range(data.n_groups):
        assert_close(data.acts[node.name][g], value.expand_as(data.acts[node.name][g]), 1e-6, "node is not constant")
    mean, pos_mean = Mean().fit(data), PositionMean().fit(data)
    assert_close(mean.means_[node.name], value, 1e-6, "mean")
    assert_close(pos_mean.means_[node.name], value.expand_as(pos_mean.means_[node.name]), 1e-6, "position_mean")
    for name in CONSTANT_METHODS[1:]:
        m = make_method(name).fit(data)
        for g in range(data.n_groups):
            batch = data.node_batch(node, g)
            assert_close(m.ablate(batch), batch.clean, 1e-6, f"{m.name} on constant {node.name}")
        eff = {e.name: e for e in node_effects(m, data)}[node.name]
        scale = output_scale(data)
        # KL of logits / squared error of values moved by rounding: both ~ (rtol * scale)^2
        assert eff.continuous <= max(1e-6, (OUTPUT_RTOL * scale) ** 2 / 2), f"{m.name} changed the output through constant {node.name}: {eff}"
        # a numerical prediction "changes" past 0.05 absolute: meaningless below the rounding floor of large outputs
        if data.output == "categorical" or OUTPUT_RTOL * scale < NUMERICAL_THRESHOLD:
            assert eff.effect == 0, f"{m.name} changed predictions through constant {node.name}: {eff}"


# --------------------------------------------------------------------------- PCA


@FAST
@given(case=cases(), k=st.integers(1, 4))  # up to d_head: a larger k is refused (below)
def test_pca_high_and_complement_add_up(case, k):
    data = case.data
    self_hi, self_lo = make_method(f"pca_self[k={k},high]").fit(data), make_method(f"pca_self[k={k},complement]").fit(data)
    res_hi, res_lo = make_method(f"pca_resample[k={k},high]").fit(data), make_method(f"pca_resample[k={k},complement]").fit(data)
    for batch in batches(data):
        a = batch.clean
        mu = self_hi.mu_[batch.node.name][: a.shape[1]]
        # mu is the per-position mean of the fit data (fit and eval are the same data here)
        per_pos = data.per_position(batch.node.name)
        assert_close(mu, torch.stack([x.mean(0) for x in per_pos])[: a.shape[1]], 1e-5, "pca mean")
        got = (self_hi.ablate(batch) - mu) + (self_lo.ablate(batch) - mu)
        assert_close(got, a - mu, 1e-5, f"pca_self high + complement on {batch.node.name}")
        got = res_hi.ablate(batch) + res_lo.ablate(batch) - a
        assert_close(got, batch.source, 1e-5, f"pca_resample high + complement on {batch.node.name}")
        # each part on its own is a projection: doing it twice is doing it once
        once = self_hi.ablate(batch)
        assert_close(self_hi.ablate(replace(batch, clean=once)), once, 1e-5, "pca_self[high] twice")


def test_pca_k_above_a_node_dimension_is_refused():
    """k larger than a node's dimension would make the projection the identity (or 0): a failed row."""
    data = _fixed_case(3).data
    d = min(a[0].shape[-1] for a in data.acts.values())
    for name in ("pca_self", "pca_resample"):
        with pytest.raises(ValueError, match=rf"k={d + 1} exceeds the dimension {d} of node"):
            make_method(f"{name}[k={d + 1}]").fit(data)
        make_method(f"{name}[k={d}]").fit(data)


# --------------------------------------------------------------------------- optimal


F32_KL_ERROR = 1e-6


@SLOW
@given(case=cases(max_groups=2, max_rows=4), per_position=st.booleans())
def test_optimal_ablation_loss_at_most_mean_ablation_loss(case, per_position):
    data = case.data
    name, baseline = ("optimal_position", PositionMean()) if per_position else ("optimal", Mean())
    m = make_method(f"{name}[max_steps=10,patience=5,max_examples=10000]").fit(data)
    # the mean-ablation loss recomputed independently: full forwards with a hook (the reference
    # loop), not the batched start-at-layer path that optimal ablation trains with
    mean_eff = {e.name: e.continuous for e in node_effects(baseline.fit(data), data, batched=False)}
    opt_eff = {e.name: e.continuous for e in node_effects(m, data)}
    for node in data.nodes:
        n = node.name
        tol = 1e-6 + 1e-4 * mean_eff[n]
        assert m.loss_[n] <= m.start_loss_[n], f"{n}: loss {m.loss_[n]} > start {m.start_loss_[n]}"
        # it starts at the (position) mean: its start loss is the mean-ablation loss, recomputed here. The fit runs in
        # float64, the reference loop in float32, whose KL of logits ~10 carries about 1e-6 of absolute rounding error
        assert math.isclose(m.start_loss_[n], mean_eff[n], rel_tol=1e-4, abs_tol=F32_KL_ERROR), (n, m.start_loss_[n], mean_eff[n])
        # the constant it keeps has the loss it reports, and is no worse than the mean
        assert math.isclose(opt_eff[n], m.loss_[n], rel_tol=1e-4, abs_tol=F32_KL_ERROR), (n, opt_eff[n], m.loss_[n])
        assert opt_eff[n] <= mean_eff[n] + tol, f"{n}: optimal {opt_eff[n]} > mean {mean_eff[n]}"


# --------------------------------------------------------------------------- directional


@st.composite
def direction_sets(draw, d: int):
    """``[k, d]`` directions, possibly not unit, not orthogonal, linearly dependent or zero."""
    k = draw(st.integers(1, 3))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    rows = []
    for i in range(k):
        kind = draw(st.sampled_from(["random", "random", "copy", "zero"])) if i else "random"
        if kind == "random":
            rows.append(torch.randn(d, generator=g) * draw(st.sampled_from([0.1, 1.0, 10.0])))
        elif kind == "copy":
            rows.append(rows[0] * draw(st.sampled_from([-2.0, 0.5, 3.0])))
        else:
            rows.append(torch.zeros(d))
    return torch.stack(rows)


def span_projection(r: torch.Tensor) -> torch.Tensor:
    """Orthogonal projection ``[d, d]`` onto the row span of ``r`` (float64; singular values below
    1e-5 of the largest are float32 rounding of dependent rows, not directions)."""
    r = r.double()
    return (torch.linalg.pinv(r, rtol=1e-5) @ r).float()


@FAST
@given(case=cases(), data_st=st.data())
def test_directional_removes_exactly_the_directions(case, data_st):
    data = case.data
    given_dirs = {n.name: data_st.draw(direction_sets(data.acts[n.name][0].shape[-1]), label=n.name) for n in data.nodes[::2]}
    m = make_method("directional")
    m.directions = given_dirs
    m.fit(data)
    for batch in batches(data):
        a = batch.clean
        r = given_dirs.get(batch.node.name)
        if r is None:  # default: the direction of the node's mean activation
            r = data.cells(batch.node.name).mean(0, keepdim=True)
        out = m.ablate(batch)
        for i, ri in enumerate(r):
            if ri.norm() > 0:
                comp = out @ (ri / ri.norm())
                assert comp.abs().max() <= 1e-5 * scale_of(a), f"{batch.node.name}: component {comp.abs().max():.3g} along direction {i}"
        # nothing outside the span is touched
        assert_close(out, a - a @ span_projection(r), 1e-5, f"directional on {batch.node.name} vs a - P_span(r) a")
        assert_close(m.ablate(replace(batch, clean=out)), out, 1e-5, f"directional twice on {batch.node.name}")


# --------------------------------------------------------------------------- noise


@FAST
@given(case=cases(special=False), seed=st.integers(0, 2**31 - 1))
def test_noise_is_seeded_centred_and_three_sigma(case, seed):
    data = case.data
    m = make_method("noise").fit(data)
    node = data.nodes[seed % len(data.nodes)]
    sigma = data.cells(node.name).std().item()
    assert sigma > 0
    d = data.acts[node.name][0].shape[-1]
    clean = torch.randn(3000, 4, d, generator=torch.Generator().manual_seed(seed))

    def batch(s):
        return NodeBatch(node, clean, clean.flip(0), clean, torch.Generator().manual_seed(s))

    out = m.ablate(batch(seed))
    assert torch.equal(out, m.ablate(batch(seed))), "same generator seed, different noise"
    assert not torch.equal(out, m.ablate(batch(seed + 1))), "different seeds, same noise"
    diff = out - clean
    assert abs(diff.mean().item()) <= 0.05 * 3 * sigma, f"noise mean {diff.mean().item():.3g}, sigma {sigma:.3g}"
    assert math.isclose(diff.std().item(), 3 * sigma, rel_tol=0.05), f"noise std {diff.std().item():.3g} != 3 * {sigma:.3g}"
    # and through TaskData: the node batch's generator is seeded, so two runs agree
    b = data.node_batch(node, 0)
    assert torch.equal(m.ablate(b), m.ablate(data.node_batch(node, 0)))


# --------------------------------------------------------------------------- every method


@MEDIUM
@given(case=cases())
def test_no_method_mutates_the_clean_cache_or_its_inputs(case):
    data = case.data
    before = snapshot(data)
    grads = [p.requires_grad for p in data.model.parameters()]
    for name in DEFAULT_METHODS:
        m = make_method(fast_name(name)).fit(data)
        node_effects(m, data)
        for batch in batches(data):
            src, cf = batch.source.clone(), batch.counterfactual.clone()
            m.ablate(batch)
            assert torch.equal(batch.source, src) and torch.equal(batch.counterfactual, cf), f"{name} changed its batch"
        after = snapshot(data)
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        assert not changed, f"{name} changed {changed}"
        assert [p.requires_grad for p in data.model.parameters()] == grads, f"{name} left requires_grad changed"


@MEDIUM
@given(case=cases())
def test_every_default_method_returns_a_finite_tensor_of_the_clean_shape(case):
    data = case.data
    for name in DEFAULT_METHODS:
        m = make_method(fast_name(name)).fit(data)
        for batch in batches(data):
            out = m.ablate(batch)
            assert isinstance(out, torch.Tensor), f"{name} returned {type(out)}"
            assert out.shape == batch.clean.shape, f"{name}: shape {tuple(out.shape)} != {tuple(batch.clean.shape)}"
            assert out.dtype == batch.clean.dtype, f"{name}: dtype {out.dtype}"
            assert bool(torch.isfinite(out).all()), f"{name} returned non-finite values on {batch.node.name}"
        for e in node_effects(m, data):
            # float32 KL of identical distributions can come out a hair below 0
            assert 0 <= e.effect <= 1 and math.isfinite(e.continuous) and e.continuous >= -1e-6, (name, e)


# --------------------------------------------------------------------------- misbehaving methods


class Bad(AblationMethod):
    base_name = "bad"

    def __init__(self, kind: str):
        self.kind = kind

    @property
    def name(self) -> str:
        return f"bad[{self.kind}]"

    def ablate(self, batch: NodeBatch) -> torch.Tensor:
        a = batch.clean
        if self.kind == "raise":
            raise ValueError("boom")
        if self.kind == "nan":
            out = a.clone()
            out[0, -1, 0] = float("nan")
            return out
        if self.kind == "inf":
            return torch.full_like(a, float("inf"))
        if self.kind == "shape":
            return a[:, :-1]
        if self.kind == "not_tensor":
            return a.tolist()
        if self.kind == "in_place":
            a.add_(1.0)
            return a.clone()
        if self.kind == "in_place_swap":  # an in-place edit that keeps every sum
            a[[0, 1]] = a[[1, 0]]
            return a.clone()
        raise AssertionError(self.kind)


BAD = {
    "raise": "raised ValueError: boom",
    "nan": "returned NaN or inf",
    "inf": "returned NaN or inf",
    "shape": "returned shape",
    "not_tensor": "not a tensor",
    "in_place": "modified its input activations",
    "in_place_swap": "modified its input activations",
}


def _fixed_case(seed: int = 3):
    spec = ModelSpec(2, 12, False, "relu", "bidirectional", None, "categorical", 1.0, seed)
    g = torch.Generator().manual_seed(seed)
    toks = [torch.randint(0, 5, (4, 3), generator=g), torch.randint(0, 5, (3, 5), generator=g)]
    return build_case(spec, (toks, [t.flip(1) for t in toks]), seed=seed)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_node_effects_turns_a_misbehaving_method_into_method_error(kind):
    case = _fixed_case()
    with pytest.raises(MethodError) as err:
        node_effects(Bad(kind), case.data)
    msg = str(err.value)
    assert msg.startswith(f"bad[{kind}] ") and BAD[kind] in msg, msg
    assert f"(node {case.nodes[0].name})" in msg, msg


@pytest.mark.parametrize("kind", sorted(BAD))
def test_run_row_reports_a_misbehaving_method_as_failed(kind):
    fit = _fixed_case(3)
    g = torch.Generator().manual_seed(4)
    ev_toks = [torch.randint(0, 5, (5, 3), generator=g), torch.randint(0, 5, (4, 5), generator=g)]
    ev = TaskData.build(fit.model, "categorical", fit.nodes, ev_toks, [t.flip(1) for t in ev_toks], seed=4)
    task = Task("random", "test", fit.model, "categorical", fit.nodes, InputSpec(range(5), 4), {}, "weights")
    row = run_row(task, Bad(kind), fit.data, ev)
    assert row.status == "failed" and row.method == f"bad[{kind}]", row
    assert BAD[kind] in row.error and fit.nodes[0].name in row.error, row.error
    ok = run_row(task, "mean", fit.data, ev)
    assert ok.ok and ok.error is None, ok


@pytest.mark.parametrize("name", DEFAULT_METHODS + ["noise[scale=2]", "optimal[lr=0.05]", "atp_ig[mean,steps=3]"])
def test_a_method_reports_its_own_parameters(name):
    """get_params (scikit-learn's shape): the registered factory called with them rebuilds the same method,
    and a row's params are exactly them (no second parse of the name)."""

    method = make_method(name)
    params = method.get_params()
    assert REGISTRY[method.base_name](**params).name == name
    fields = method_fields(method)
    assert fields["method"] == name and fields["method_base"] == method.base_name
    assert fields["params"] == {k: v for k, v in params.items() if not isinstance(v, dict)}


def test_a_plugin_that_hides_its_parameters_gets_those_its_name_spells():

    class Hidden(AblationMethod):
        base_name = "hidden"

        def __init__(self, s: float = 1.0):
            self._s = s

        @property
        def name(self) -> str:
            return f"hidden[s={self._s:g}]"

    with pytest.raises(AttributeError, match="parameter 's' of __init__ is not kept"):
        Hidden(2.0).get_params()
    assert method_fields(Hidden(2.0)) == {"method": "hidden[s=2]", "method_base": "hidden", "params": {"s": 2}}
