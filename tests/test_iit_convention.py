"""``--effect-convention iit``: the numbers iit's ``check_causal_effect`` reports.

A hand-computed case pins the definition; a line-by-line transcription of iit's
``resample_ablate_node`` / ``ablate_nodes`` (batch = one length group) on a shipped SIIT model
must give the suite's numbers under that convention; tasks without high-level labels fall back
to the suite's convention and say so.
"""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from abench import bench
from abench.conventions import IITScorer, effect_setup
from abench.scorers import SuiteScorer
from ablations import make_method
from tasks.registry import load_task
from tasks.siit import shipped

ROOT = Path(__file__).resolve().parent.parent


def onehot(labels, n=3):
    """Logits whose argmax is ``labels`` ([b, pos] -> [b, pos, n])."""
    return torch.nn.functional.one_hot(torch.tensor(labels), n).float()


def hand_scorer(output, hl_base, hl_src):
    s = IITScorer.__new__(IITScorer)
    s.output, s.source, s.hl_base, s.hl_src, s.suite = output, "resample", hl_base, hl_src, SuiteScorer()
    return s


def test_hand_computed_categorical_value():
    # group 0: 2 rows x (BOS + 3 positions); BOS (column 0) never counts for categorical outputs
    hl_base = onehot([[0, 0, 1, 2], [0, 1, 1, 0]])
    hl_src = onehot([[0, 0, 2, 2], [0, 0, 1, 1]])  # label changes at (0, 2), (1, 1), (1, 3): 3 counted cells
    clean = hl_base.clone()  # the LL model is right on every cell
    ablated = onehot([[0, 2, 2, 2], [0, 1, 2, 0]])  # differs from the label at (0, 1), (0, 2), (1, 2); only (0, 2) is counted
    # group 1: 1 row x (BOS + 2 positions): the one counted cell changes
    hl_base1, hl_src1 = onehot([[0, 0, 1]]), onehot([[0, 1, 1]])
    clean1, ablated1 = hl_base1.clone(), onehot([[0, 1, 1]])
    data = SimpleNamespace(output="categorical")
    iit = hand_scorer("categorical", [hl_base, hl_base1], [hl_src, hl_src1])
    s0, s1 = iit.score(data, 0, None, clean, ablated), iit.score(data, 1, None, clean1, ablated1)
    assert s0[0] == pytest.approx(1 / 3, abs=1e-9) and s1[0] == pytest.approx(1.0, abs=1e-9)
    # node_effects sums numerators and denominators: iit averages the per-batch ratios
    assert (s0[0] + s1[0]) / (s0[1] + s1[1]) == pytest.approx(2 / 3, abs=1e-9)
    # the suite's convention on the same outputs: every non-BOS cell against the clean output, pooled
    suite = SuiteScorer()
    a, b = suite.score(data, 0, None, clean, ablated), suite.score(data, 1, None, clean1, ablated1)
    assert (a[0] + b[0]) / (a[1] + b[1]) == pytest.approx(4 / 8)


def test_hand_computed_numerical_value_includes_bos():
    hl_base = torch.tensor([[0.5, 0.2, 0.3], [0.1, 0.6, 0.6]])[..., None]
    hl_src = torch.tensor([[0.7, 0.4, 0.3], [0.1, 0.6, 0.9]])[..., None]  # counted: (0, 0) BOS, (0, 1), (1, 2)
    ablated = torch.tensor([[0.9, 0.24, 0.0], [0.0, 0.0, 0.6]])[..., None]
    # (0, 0): |0.9 - 0.5| > 0.05 -> hit; (0, 1): |0.24 - 0.2| <= 0.05 -> not; (1, 2): equal -> not
    iit = hand_scorer("numerical", [hl_base], [hl_src])
    assert iit.score(SimpleNamespace(output="numerical"), 0, None, hl_base, ablated)[0] == pytest.approx(1 / 3, abs=1e-9)


# --------------------------------------------------------------------------- transcription of iit


def iit_check_causal_effect(ll, hl, groups, node, sources):
    """iit.utils.eval_ablations.check_causal_effect (Categorical_Metric.ACCURACY, tracr label
    index [:, 1:]) with one batch per length group. ``sources[g]``: the ablation input rows of group
    g as (token tensor, row mask) parts; a longer source's first L + 1 positions are patched in
    (and its label read there), the suite's cross-length interchange."""
    result = 0.0
    for base_x, parts in zip(groups, sources):
        n_pos = base_x.shape[1]
        patch = torch.empty_like(ll.run_with_cache(base_x)[1][node.hook_name])
        ablation_label = torch.empty_like(base_x)
        for ablation_x, rows in parts:
            _, cache = ll.run_with_cache(ablation_x)
            patch[rows] = cache[node.hook_name][:, :n_pos]
            ablation_label[rows] = hl(ablation_x).argmax(-1)[:, :n_pos]
        def hook(act, hook):
            act = act.clone()
            if node.kind == "attn":
                act[:, :, node.head] = patch[:, :, node.head]
            else:
                act[:] = patch
            return act
        ll_out = ll.run_with_hooks(base_x, fwd_hooks=[(node.hook_name, hook)])
        base_label = hl(base_x).argmax(-1)[:, 1:]
        label_unchanged = base_label == ablation_label[:, 1:]
        ll_unchanged = ll_out.argmax(-1)[:, 1:] == base_label
        changed = (~label_unchanged).float() * (~ll_unchanged).float()
        result += changed.sum().item() / ((~label_unchanged).float().sum().item() + 1e-12) / len(groups)
    return result


def same_length_sources(ev):
    return [[(t[p], torch.ones(len(p), dtype=torch.bool))] for t, p in zip(ev.tokens, ev.perms)]


def resample_sources(ev):
    out = []
    for src_group, src_row in ev.sources:
        out.append([(ev.tokens[h][src_row[src_group == h]], src_group == h) for h in src_group.unique().tolist()])
    return out


def iit_ablate_nodes_zero(ll, hl, groups, node):
    """iit's check_causal_effect_on_ablation / ablate_nodes (relative_change) with a zero hook."""
    result = 0.0
    for base_x in groups:
        def hook(act, hook):
            act = act.clone()
            if node.kind == "attn":
                act[:, :, node.head] = 0
            else:
                act[:] = 0
            return act
        ll_out = ll.run_with_hooks(base_x, fwd_hooks=[(node.hook_name, hook)]).argmax(-1)[:, 1:]
        base_hl = hl(base_x).argmax(-1)[:, 1:]
        base_ll = ll(base_x).argmax(-1)[:, 1:]
        accuracy = base_ll == base_hl
        changed = (~(ll_out == base_hl)).float() * accuracy.float()
        result += (changed.sum() / (accuracy.float().sum() + 1e-6)).item() / len(groups)
    return result


def siit_data(name, n_eval=48):
    if name not in shipped():
        pytest.skip(f"siit_{name} is not shipped")
    task = load_task(f"siit_{name}")
    fit, ev = bench.task_data(task, 32, n_eval, 0)
    return task, fit, ev


@pytest.fixture(scope="module")
def siit_length():
    return siit_data("length")


@pytest.mark.parametrize("name, method", [("length", "resample"), ("hist", "resample_same_length")])
def test_suite_under_iit_convention_equals_iit_transcription(name, method):
    task, fit, ev = siit_data(name)
    hl = task.high_level.model
    with torch.no_grad():
        row = bench.run_row(task, method, fit, ev, "iit")
        assert row.ok and row.get("effect_convention") == "iit", row
        kind = "resample" if method == "resample" else "same_length"
        assert f"check_causal_effect ({kind} source)" in row.get("effect_convention_note")
        sources = resample_sources(ev) if method == "resample" else same_length_sources(ev)
        for node, got in zip(task.nodes, row.nodes):
            want = iit_check_causal_effect(task.model, hl, ev.tokens, node, sources)
            assert got.effect == pytest.approx(want, abs=1e-12), node.name
        assert max(n.effect for n in row.nodes) > 0.2  # a real test, not 0 == 0
        zero = bench.run_row(task, "zero", fit, ev, "iit")
        assert "check_causal_effect_on_ablation" in zero.get("effect_convention_note")
        for node, got in zip(task.nodes, zero.nodes):
            assert got.effect == pytest.approx(iit_ablate_nodes_zero(task.model, hl, ev.tokens, node), abs=1e-12), node.name
    default = bench.run_row(task, method, fit, ev)
    assert default.get("effect_convention") == "suite" and default.get("effect_convention_note") is None
    print(f"\nsiit_{name} {method}: node, suite effect, iit effect:",
          [(n.name, round(n.effect, 4), round(a.effect, 4)) for n, a in zip(default.nodes, row.nodes)])


def test_iit_convention_needs_high_level_labels():
    from tasks.next_token import planted_backup_task
    from tasks.user_tasks import build_tasks, import_task_file

    [mine] = build_tasks(import_task_file(str(ROOT / "examples" / "my_task.py")), "my_task.py")
    fit, ev = bench.task_data(mine, 16, 16, 0)
    setup = effect_setup(mine, make_method("resample"), ev, "iit")
    assert isinstance(setup.scorer, SuiteScorer)
    assert setup.row_info["effect_convention"] == "suite" and "no high-level model" in setup.row_info["effect_convention_note"]
    nt = planted_backup_task()
    fit, ev = bench.task_data(nt, 16, 16, 0)
    info = effect_setup(nt, make_method("zero"), ev, "iit").row_info
    assert info["effect_convention"] == "logit_diff" and "logit difference" in info["effect_convention_note"]
    with pytest.raises(ValueError, match="unknown effect convention"):
        effect_setup(nt, make_method("zero"), ev, "nope")


def test_cli_effect_convention_iit(tmp_path, siit_length):
    task, fit, ev = siit_length
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_leaderboard.py"), "-q", "-p", "no:cacheprovider",
           "--benchmark-disable", "--tasks", "siit_length", "--methods", "resample,zero", "--effect-convention", "iit",
           "--n-fit", "32", "--n-eval", "48", "--report-dir", str(tmp_path)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads((tmp_path / "leaderboard.json").read_text())
    assert doc["effect_convention"].startswith("iit")
    rows = {r["method"]: r for r in doc["rows"]}
    assert {r["effect_convention"] for r in rows.values()} == {"iit"}
    local = bench.run_row(task, "resample", fit, ev, "iit")  # same seed and sizes: the same numbers
    assert [n["effect"] for n in rows["resample"]["nodes"]] == pytest.approx([n.effect for n in local.nodes], abs=1e-12)
    bad = subprocess.run(cmd[:-2] + ["--effect-convention", "nope", "--report-dir", str(tmp_path / "x")], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 4 and "invalid choice: 'nope'" in bad.stderr
