"""Tasks from a user's file: the documented example end to end, malformed files as one-line errors."""

import json
import re
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch

from abench import bench
from tasks.registry import load_entry_point_tasks, load_task_file
from tasks.user_tasks import TaskSpec, TaskSpecError, build_task, plant_circuit

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "my_task.py"


def run_bench(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_leaderboard.py"), "-q", "-p", "no:cacheprovider",
           "--benchmark-disable", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)


def test_docs_show_the_example_file_verbatim():
    m = re.search(r"<!-- task-example -->\s*```python\n(.*?)```", (ROOT / "docs" / "tasks.md").read_text(), re.S)
    assert m, "docs/tasks.md lost its task example"
    assert m.group(1) == EXAMPLE.read_text()
    assert len(m.group(1).strip().splitlines()) <= 40


def test_example_task_runs_end_to_end_in_every_report_format(tmp_path):
    report = tmp_path / "reports"
    res = run_bench("--task-module", str(EXAMPLE), "--methods", "zero,mean,resample", "--n-fit", "32", "--n-eval", "32",
                    "--report-dir", str(report), cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads((report / "leaderboard.json").read_text())
    assert {r["task"] for r in doc["rows"]} == {"my_planted"}  # without --tasks the file's tasks are the selection
    assert {(r["family"], r["status"]) for r in doc["rows"]} == {("mine", "ok")}
    assert doc["ground_truth"]["mine"]["intervention"] == "planted"
    assert "nothing in the circuit" in doc["ground_truth"]["mine"]["meaning"]
    assert list(doc["summary_by_family"]) == ["mine"]
    for r in doc["rows"]:
        effects = {n["name"]: n["effect"] for n in r["nodes"]}
        assert all(v == 0.0 for n, v in effects.items() if n not in
                   ("blocks.0.attn.hook_z[1]", "blocks.1.attn.hook_z[0]", "blocks.1.mlp.hook_post")), effects  # planted: exact
    md = (report / "leaderboard.md").read_text()
    assert "## Family `mine`" in md and "| my_planted" in md
    assert "Family mine" in (report / "leaderboard.tex").read_text()
    html = (report / "leaderboard.html").read_text()
    assert "my_planted" in html and "<code>mine</code>" in html
    assert "family mine (ground truth: planted)" in res.stdout


GOOD = '''
from transformer_lens import HookedTransformer, HookedTransformerConfig
from tasks.user_tasks import TaskSpec

def build():
    cfg = HookedTransformerConfig(n_layers=1, n_heads=2, d_model=8, d_head=4, d_mlp=8, d_vocab=5, d_vocab_out=3, n_ctx=6,
                                  act_fn="relu", normalization_type=None, seed=0)
    return HookedTransformer(cfg)

FIELDS = dict(name="bad_task", family="mine", model=build, circuit=["blocks.0.attn.hook_z[0]"], vocab=[1, 2, 3, 4],
              lengths=(2, 4), output="categorical")
'''


@pytest.mark.parametrize(
    "body, expected",
    [
        ("FIELDS.pop('circuit'); TASKS = [TaskSpec(**FIELDS)]", "task 'bad_task': field 'circuit': is missing"),
        ("FIELDS.pop('model'); TASKS = [FIELDS]", "field 'model': is missing"),
        ("FIELDS['circuit'] = ['blocks.3.attn.hook_z[0]']; TASKS = [TaskSpec(**FIELDS)]",
         "field 'circuit': node 'blocks.3.attn.hook_z[0]' does not exist in the model (1 layers, 2 heads"),
        ("FIELDS['circuit'] = ['blocks.0.attn.hook_z[7]']; TASKS = [TaskSpec(**FIELDS)]", "field 'circuit': node 'blocks.0.attn.hook_z[7]'"),
        ("FIELDS['circuit'] = ['layer0.head1']; TASKS = [TaskSpec(**FIELDS)]", "field 'circuit': node 'layer0.head1' does not exist"),
        ("FIELDS['sample'] = lambda rng, n: [1] * (n - 1); TASKS = [TaskSpec(**FIELDS)]",
         "field 'sample': returned a sequence of length 1 for length 2"),
        ("FIELDS['sample'] = lambda rng, n: [9] * n; TASKS = [TaskSpec(**FIELDS)]", "field 'sample': returned 9, which is not in vocab"),
        ("FIELDS['sample'] = lambda rng, n: 1 / 0; TASKS = [TaskSpec(**FIELDS)]", "field 'sample': raised ZeroDivisionError"),
        # a sampler that leaves the vocabulary only now and then (one draw in ten) is caught at load too
        ("FIELDS['sample'] = lambda rng, n: [9 if rng.random() < 0.1 else 1] * n; TASKS = [TaskSpec(**FIELDS)]",
         "field 'sample': returned 9, which is not in vocab"),
        ("FIELDS['edit'] = lambda rng, s: 1 / 0; TASKS = [TaskSpec(**FIELDS)]", "field 'edit': raised ZeroDivisionError"),
        ("FIELDS['edit'] = lambda rng, s: s + s; TASKS = [TaskSpec(**FIELDS)]", "field 'edit': returned a sequence of length 4 for length 2"),
        ("FIELDS['output'] = 'numerical'; TASKS = [TaskSpec(**FIELDS)]", "field 'output': numerical needs d_vocab_out == 1, the model gives 3"),
        ("FIELDS['output'] = 'logits'; TASKS = [TaskSpec(**FIELDS)]", "field 'output': must be one of categorical, numerical, logit_diff"),
        ("FIELDS['lengths'] = (2, 9); TASKS = [TaskSpec(**FIELDS)]", "field 'lengths': max_len 9 + BOS does not fit the model's n_ctx 6"),
        ("FIELDS['vocab'] = [1, 2, 7]; TASKS = [TaskSpec(**FIELDS)]", "field 'vocab': token id 7 of 7 is not in the model's vocabulary [0, 5)"),
        ("FIELDS['model'] = lambda: 1 / 0; TASKS = [TaskSpec(**FIELDS)]", "field 'model': raised ZeroDivisionError"),
        ("FIELDS['model'] = 'gpt2'; TASKS = [TaskSpec(**FIELDS)]", "field 'model': must be a HookedTransformer or a function building one"),
        ("FIELDS['output'] = 'logit_diff'; TASKS = [TaskSpec(**FIELDS)]", "field 'answers': is required for output 'logit_diff'"),
        ("FIELDS.update(output='logit_diff', answers=lambda t: t[:, :3]); TASKS = [TaskSpec(**FIELDS)]", "field 'answers': must return an integer tensor [n, 2]"),
        ("FIELDS['joint'] = {'pair': ['blocks.0.attn.hook_z[0]', 'blocks.0.attn.hook_z[5]']}; TASKS = [TaskSpec(**FIELDS)]",
         "field 'joint': node 'blocks.0.attn.hook_z[5]' does not exist"),
        ("FIELDS['joint'] = ['blocks.0.attn.hook_z[0]']; TASKS = [TaskSpec(**FIELDS)]", "field 'joint': must be a non-empty dict"),
        ("FIELDS['colour'] = 'red'; TASKS = [FIELDS]", "field 'colour': is not a TaskSpec field"),
        ("FIELDS['name'] = 'reverse'; TASKS = [TaskSpec(**FIELDS)]", "field 'name': clashes with a task already in the suite"),
        ("TASKS = [TaskSpec(**FIELDS), TaskSpec(**FIELDS)]", "field 'name': is defined twice"),
        ("x = 1", "defines no task: set TASKS = [TaskSpec(...), ...]"),
        ("import no_such_module_anywhere", "import failed: ModuleNotFoundError"),
    ],
)
def test_malformed_task_file_names_the_field(tmp_path, body, expected):
    path = tmp_path / "bad.py"
    path.write_text(GOOD + body + "\n")
    with pytest.raises(TaskSpecError) as err:
        load_task_file(str(path))
    assert expected in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_malformed_task_file_is_a_one_line_usage_error(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text(GOOD + "FIELDS['sample'] = lambda rng, n: [[1, 2]] * 3; TASKS = [TaskSpec(**FIELDS)]\n")
    res = run_bench("--task-module", str(path), "--methods", "zero", "--report-dir", str(tmp_path / "r"))
    assert res.returncode == 4, res.stdout + res.stderr
    err_lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(err_lines) == 1, res.stderr
    assert f"--task-module {path}: task 'bad_task': field 'sample': returned a sequence of length 3 for length 2" in err_lines[0]
    assert "Traceback" not in res.stdout + res.stderr
    assert not (tmp_path / "r" / "leaderboard.json").exists()


def test_entry_point_tasks_are_registered(monkeypatch):
    import types

    import importlib.metadata as md
    from tasks.registry import LOADERS, load_task, resolve_task_names

    module = types.ModuleType("abench_ep_example")
    exec(compile(EXAMPLE.read_text().replace('name="my_planted"', 'name="ep_planted"').replace('family="mine"', 'family="ep_family"'),
                 str(EXAMPLE), "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "abench_ep_example", module)
    ep = EntryPoint(name="toy", value="abench_ep_example:TASKS", group="abench.tasks")
    monkeypatch.setattr(md, "entry_points", lambda group=None: [ep] if group == "abench.tasks" else [])
    assert load_entry_point_tasks() == ["ep_planted"]
    assert resolve_task_names("ep_family") == ["ep_planted"] and LOADERS["ep_planted"][0] == "ep_family"
    assert "ep_planted" not in resolve_task_names(None)  # installed tasks are not in the default selection
    assert load_task("ep_planted").family == "ep_family"
    bad = EntryPoint(name="broken", value="no_such_module_xyz:TASKS", group="abench.tasks")
    monkeypatch.setattr(md, "entry_points", lambda group=None: [bad])
    with pytest.raises(TaskSpecError, match="entry point broken .*import failed: ModuleNotFoundError"):
        load_entry_point_tasks()


def test_task_from_ready_model_with_high_level_and_hook_result_names():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=1, n_heads=2, d_model=8, d_head=4, d_mlp=8, d_vocab=5, d_vocab_out=3, n_ctx=6,
                                  act_fn="relu", normalization_type=None, seed=1)
    model = plant_circuit(HookedTransformer(cfg), ["blocks.0.attn.hook_result[1]", "blocks.0.mlp.hook_post"])
    task = build_task(TaskSpec(name="ht", family="mine", model=model, circuit=["blocks.0.attn.hook_result[1]", "blocks.0.mlp.hook_post"],
                               vocab=[1, 2, 3, 4], lengths=(2, 5), output="categorical", high_level=model,
                               correspondence={"blocks.0.mlp.hook_post": "blocks.0.mlp.hook_post"}, ground_truth="resample"))
    assert task.in_circuit_names == ["blocks.0.attn.hook_z[1]", "blocks.0.mlp.hook_post"]
    assert task.correspondence == {"blocks.0.mlp.hook_post": "blocks.0.mlp.hook_post"}
    fit, ev = bench.task_data(task, 16, 32, 0)
    with torch.no_grad():
        for method in ("zero", "mean", "resample", "noise"):
            row = bench.run_row(task, method, fit, ev)
            assert row.ok
            assert all(n.effect == 0 and n.continuous == 0 for n in row.nodes if not n.in_circuit), (method, row.nodes)
    from abench.ground_truth import check_task

    check = check_task(task, ev)  # a user task with a high-level model gets the SIIT ground-truth check
    assert check is not None and check.max_abs_diff == 0.0


def test_rasp_example_runs_end_to_end(tmp_path):
    """A user's RASP programs through the one front door (``tasks.rasp.rasp_task``): compiled, labelled by
    their weights, benchmarked."""
    example = ROOT / "examples" / "my_rasp_task.py"
    report = tmp_path / "reports"
    res = run_bench("--task-module", str(example), "--methods", "zero,resample", "--n-fit", "32", "--n-eval", "32",
                    "--report-dir", str(report), cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads((report / "leaderboard.json").read_text())
    assert {(r["task"], r["family"], r["status"]) for r in doc["rows"]} == {
        (t, "my_rasp", "ok") for t in ("my_frac_a", "my_dyck")}
    for r in doc["rows"]:
        assert r["n_in"] >= 1 and r["n_out"] >= 1, r  # tracr's zero-weight nodes are the bystanders
        assert r["auroc"] is not None, r


@pytest.mark.parametrize("kwargs, expected", [
    ({"output": "logit_diff"}, "output must be one of"),
    ({"vocab": []}, "vocab must be a non-empty sequence"),
    ({"vocab": ["a", "a"]}, "vocab must be a non-empty sequence"),
    ({"max_len": 0}, "need integers 1 <= min_len <= max_len"),
])
def test_rasp_task_names_the_bad_argument(kwargs, expected):
    from tasks.rasp import rasp_task

    args = {"name": "bad", "program": lambda: None, "vocab": ["a", "b"], "max_len": 4, **kwargs}
    with pytest.raises(ValueError, match=expected):
        rasp_task(**args)


def test_a_rasp_task_whose_sampler_leaves_the_vocabulary_is_refused_at_load():
    from tasks.rasp import rasp_task

    with pytest.raises(ValueError, match="rasp_task 'leaky': field 'sample': returned 'z', which is not in vocab"):
        rasp_task("leaky", lambda: None, vocab=["a", "b"], max_len=4, sample=lambda rng, n: ["a"] * (n - 1) + ["z"])
