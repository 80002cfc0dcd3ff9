"""Next-token tasks: the planted name mover + backup head, logit difference, joint ablation."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from abench import bench
from abench.effects import replacements
from ablations import make_method
from tasks.next_token import (BACKUP, NAME_MOVER, READOUT, gpt2_cached, planted_backup_task)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def planted():
    task = planted_backup_task()
    fit, ev = bench.task_data(task, 32, 64, 0)
    return task, fit, ev


def logit_diffs(task, tokens, out):
    ans = task.scoring.answers(tokens)
    last = out[:, -1]
    return last.gather(-1, ans[:, :1])[:, 0] - last.gather(-1, ans[:, 1:])[:, 0]


def test_planted_single_node_zero_ablation_misses_the_backup(planted):
    task, fit, ev = planted
    for g, t in enumerate(ev.tokens):
        assert torch.allclose(logit_diffs(task, t, ev.outputs[g]), torch.tensor(6.0), atol=1e-4)  # clean LD = 6
    row = bench.run_row(task, "zero", fit, ev)
    assert row.ok and row.get("effect_convention") == "logit_diff"
    eff = {n.name: n.effect for n in row.nodes}
    assert eff[NAME_MOVER] == pytest.approx(0.5, abs=1e-3)
    assert eff[BACKUP] == 0.0  # the backup scores like a bystander under single-node zero ablation
    assert eff[READOUT] == pytest.approx(1.0, abs=1e-3)
    assert all(v == 0.0 for n, v in eff.items() if n not in (NAME_MOVER, BACKUP, READOUT))
    assert row.get("auroc") == pytest.approx(5 / 6)  # in-circuit backup tied with the 5 bystanders
    resample = bench.run_row(task, "resample", fit, ev)
    assert {n.name: n.effect for n in resample.nodes}[BACKUP] > 0  # a source of the other name moves it
    print("\nzero single-node effects:", {k: round(v, 4) for k, v in eff.items()})


def test_planted_joint_ablation_removes_the_behaviour(planted):
    task, fit, ev = planted
    zero = make_method("zero").fit(fit)
    nodes = {n.name: n for n in task.nodes}
    for g, t in enumerate(ev.tokens):
        # TransformerLens hooks: zero both heads' hook_z at the final position
        def hook(act, hook):
            act = act.clone()
            act[:, -1, 0] = 0
            return act

        with torch.no_grad():
            out = task.model.run_with_hooks(t, fwd_hooks=[(nodes[NAME_MOVER].hook_name, hook), (nodes[BACKUP].hook_name, hook)])
        ld = logit_diffs(task, t, out)
        assert ld.abs().max().item() < 1e-5, ld  # the behaviour is gone
        # the suite's joint-ablation engine (interventions/hooks.py) gives the same outputs
        from interventions.hooks import ablated_outputs_sets_batched

        repl = replacements(zero, ev, g)
        with torch.no_grad():
            sets = ablated_outputs_sets_batched(task.model, ev.resid_pre[g], [[nodes[NAME_MOVER], nodes[BACKUP]], [nodes[BACKUP]]], repl)
        assert torch.allclose(logit_diffs(task, t, sets[0]), ld, atol=1e-5)  # zero at all positions = at the final one here
        assert torch.allclose(logit_diffs(task, t, sets[1]), torch.tensor(6.0), atol=1e-4)  # backup alone: unchanged


def test_leaderboard_row_reports_the_joint_ablation_of_name_mover_and_backup(planted):
    task, fit, ev = planted
    for method in ("zero", "mean"):
        row = bench.run_row(task, method, fit, ev)
        (joint,) = row.get("joint_effects")
        assert joint["name"] == "name mover + backup" and joint["nodes"] == [NAME_MOVER, BACKUP]
        assert joint["single_effects"][BACKUP] == 0.0  # alone, the backup looks like a bystander
        assert joint["single_effects"][NAME_MOVER] < 0.6  # alone, the name mover leaves most of it
        assert joint["effect"] > 0.95  # together: the logit difference is gone (mean may overshoot past 0)


def test_joint_ablation_table_in_markdown_and_html(planted):
    from abench import leaderboard
    from abench.report.html import to_html
    from abench.report.markdown import to_markdown

    task, fit, ev = planted
    rows = [bench.run_row(task, "zero", fit, ev)]
    doc = leaderboard.build(rows, leaderboard.environment("cpu"))
    md = to_markdown(doc)
    assert "## Joint ablation of declared node sets" in md
    line = next(l for l in md.splitlines() if l.startswith("| next_token_planted") and "name mover + backup" in l)
    assert f"{BACKUP} 0.000" in line and f"{NAME_MOVER} 0.500" in line
    assert "Joint ablation of declared node sets" in to_html(doc)


def test_joint_effects_batched_equal_the_per_set_loop(planted):
    from abench.effects import joint_effects, node_effects

    task, fit, ev = planted
    for method in ("resample", "mean"):
        m = make_method(method).fit(fit)
        single = node_effects(m, ev)
        sets = {"pair": [NAME_MOVER, BACKUP], "all three": [NAME_MOVER, BACKUP, READOUT], "one": [BACKUP]}
        a = joint_effects(m, ev, sets, single, batched=True)
        b = joint_effects(m, ev, sets, single, batched=False)
        assert [x["effect"] for x in a] == pytest.approx([x["effect"] for x in b], abs=1e-6)
        assert [x["continuous"] for x in a] == pytest.approx([x["continuous"] for x in b], rel=1e-5)
        # a one-node set is that node's single-node effect
        assert a[2]["effect"] == pytest.approx({e.name: e.effect for e in single}[BACKUP], abs=1e-6)


def test_ablation_at_all_positions_gives_the_same_planted_effects(planted):
    task, fit, ev = planted
    every = planted_backup_task(ablate_at="all")
    fit2, ev2 = bench.task_data(every, 32, 64, 0)
    a = bench.run_row(task, "zero", fit, ev)
    b = bench.run_row(every, "zero", fit2, ev2)
    assert [n.effect for n in a.nodes] == pytest.approx([n.effect for n in b.nodes], abs=1e-6)


def test_planted_task_in_the_leaderboard(tmp_path):
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_leaderboard.py"), "-q", "-p", "no:cacheprovider",
           "--benchmark-disable", "--tasks", "next_token", "--methods", "zero,resample", "--n-fit", "32", "--n-eval", "64",
           "--report-dir", str(tmp_path)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads((tmp_path / "leaderboard.json").read_text())
    rows = {r["method"]: r for r in doc["rows"]}
    assert {r["task"] for r in doc["rows"]} == {"next_token_planted"} and {r["family"] for r in doc["rows"]} == {"next_token"}
    zero = {n["name"]: n["effect"] for n in rows["zero"]["nodes"]}
    assert zero[BACKUP] == 0.0 and zero[NAME_MOVER] == pytest.approx(0.5, abs=1e-3)
    assert rows["zero"]["auroc"] == pytest.approx(5 / 6) and rows["resample"]["auroc"] == 1.0
    assert "nothing in the circuit" in doc["ground_truth"]["next_token"]["meaning"]
    assert "next_token_planted" in (tmp_path / "leaderboard.md").read_text()


@pytest.mark.skipif(gpt2_cached() is not None, reason=f"gpt2-small is {gpt2_cached()} (no download at run time)")
def test_gpt2_small_ioi():
    from tasks.next_token import IOI_HEADS, gpt2_ioi_task

    task = gpt2_ioi_task()
    fit, ev = bench.task_data(task, 8, 16, 0)
    clean = logit_diffs(task, ev.tokens[0], ev.outputs[0])
    assert clean.mean() > 0  # gpt2 prefers the indirect object
    row = bench.run_row(task, "mean", fit, ev)
    assert row.ok
    eff = {n.name: n.effect for n in row.nodes}
    nm = [f"blocks.{h.split('.')[0]}.attn.hook_z[{h.split('.')[1]}]" for h in IOI_HEADS["name mover"]]
    print("gpt2 IOI: clean LD", clean.mean().item(), "name movers", [eff[n] for n in nm], "AUROC", row.get("auroc"))
