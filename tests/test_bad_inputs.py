"""Nothing silent: a bad option, plugin, card, weight file or baseline gives one clear message and a
non-zero exit, and changes nothing else.

Option errors run pytest in-process (``pytester``: the imports are warm, so each case shows the
option is checked before any task is loaded); whole runs use a subprocess on one or two tasks
with tiny data sets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from abench.leaderboard import environment, strip_volatile
from ablations.base import REGISTRATIONS, REGISTRY
from tasks import siit
from tasks.siit import FAILED_DIR

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "test_leaderboard.py"
TINY = ["--n-fit", "16", "--n-eval", "24"]


# --------------------------------------------------------------------------- options: usage errors before any work


@pytest.fixture
def bench_inprocess(pytester, monkeypatch):
    """``run(*args)`` -> (result, seconds): `pytest benchmarks/test_leaderboard.py ARGS` in this
    process. The method registry and torch's thread count are restored afterwards."""
    registry, registrations, threads = dict(REGISTRY), list(REGISTRATIONS), torch.get_num_threads()

    def run(*args: str):
        t0 = time.perf_counter()
        res = pytester.runpytest_inprocess(str(BENCH), "-p", "no:cacheprovider", "--benchmark-disable", "--threads", "1", *args)
        return res, time.perf_counter() - t0

    yield run
    REGISTRY.clear()
    REGISTRY.update(registry)
    REGISTRATIONS[:] = registrations
    torch.set_num_threads(threads)


def _good_baseline() -> dict:
    return {"rows": [{"task": "reverse", "method": "zero", "family": "tracr", "status": "ok", "auroc": 1.0}],
            "summary_by_family": {"tracr": [{"method": "zero", "pooled_auroc": 1.0}]}}


BASELINES = {  # file content -> what the one error line must say
    "truncated": (json.dumps(_good_baseline())[:40], "not JSON"),
    "empty file": ("", "not JSON"),
    "{}": ("{}", "not a leaderboard"),
    "a list": ("[1, 2]", "not a leaderboard (an object with 'rows': list and 'summary_by_family': object), got list"),
    "row without method": (json.dumps({**_good_baseline(), "rows": [{"task": "reverse", "family": "tracr", "auroc": 1}]}),
                           "row 0 needs string fields 'task', 'method' and 'family'"),
    "string metric": (json.dumps({**_good_baseline(), "rows": [{**_good_baseline()["rows"][0], "auroc": "0.9"}]}),
                      "row 0 (reverse-zero): auroc must be a number or null, got '0.9'"),
    "string summary metric": (json.dumps({**_good_baseline(), "summary_by_family": {"tracr": [{"method": "zero", "mean_gap": "x"}]}}),
                              "method zero: mean_gap must be a number or null, got 'x'"),
    "summary not a list": (json.dumps({**_good_baseline(), "summary_by_family": {"tracr": {}}}),
                           "summary_by_family['tracr'] must be a list"),
}


def assert_usage_error(res, seconds: float, *expected: str) -> None:
    """Exit 4, one ERROR line holding every ``expected`` piece, no test run, within a few seconds."""
    lines = [line for line in res.errlines if line.strip()]
    assert res.ret == 4, (res.ret, res.outlines[-20:], lines)
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), lines
    for piece in expected:
        assert piece in lines[0], (piece, lines[0])
    assert seconds < 5, f"the option error took {seconds:.1f} s: work was done before the check"


@pytest.mark.parametrize("kind", sorted(BASELINES))
def test_malformed_compare_baseline_is_a_one_line_usage_error(bench_inprocess, tmp_path, kind):
    content, expected = BASELINES[kind]
    base = tmp_path / "baseline.json"
    base.write_text(content)
    report = tmp_path / "rep"
    res, seconds = bench_inprocess("--tasks", "reverse", "--methods", "zero", "--compare", str(base), "--report-dir", str(report))
    assert_usage_error(res, seconds, f"--compare {base}", expected)
    assert base.read_text() == content and not report.exists()


def test_missing_compare_baseline(bench_inprocess, tmp_path):
    res, seconds = bench_inprocess("--tasks", "reverse", "--compare", str(tmp_path / "nope.json"), "--report-dir", str(tmp_path / "rep"))
    assert_usage_error(res, seconds, f"--compare {tmp_path / 'nope.json'}: no such baseline file")


def test_save_baseline_in_a_missing_folder(bench_inprocess, tmp_path):
    target = tmp_path / "no_such_dir" / "base.json"
    res, seconds = bench_inprocess("--tasks", "reverse", "--save-baseline", str(target), "--report-dir", str(tmp_path / "rep"))
    assert_usage_error(res, seconds, f"--save-baseline {target}", "does not exist")
    assert not (tmp_path / "no_such_dir").exists() and not (tmp_path / "rep").exists()


@pytest.mark.parametrize("option, value", [("--n-eval", "0"), ("--n-eval", "-5"), ("--n-fit", "0"), ("--threads", "-1")])
def test_a_count_below_one_is_a_usage_error_before_any_work(bench_inprocess, tmp_path, option, value):
    res, seconds = bench_inprocess("--tasks", "reverse", "--methods", "zero", option, value, "--report-dir", str(tmp_path / "rep"))
    assert_usage_error(res, seconds, f"{option} must be an integer >= 1, got {value}")
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("where", ["under a file", "is a file"])
def test_unwritable_report_dir(bench_inprocess, tmp_path, where):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    report = blocker / "reports" if where == "under a file" else blocker
    res, seconds = bench_inprocess("--tasks", "reverse", "--methods", "zero", "--report-dir", str(report))
    assert_usage_error(res, seconds, f"--report-dir {report}")
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize(
    "spec, expected",
    [("scaled_resample[s=abc]", "bad parameters for method 'scaled_resample[s=abc]': s must be a finite number, got 'abc'"),
     ("zero,pca_self[k=0]", "bad parameters for method 'pca_self[k=0]': k must be >= 1, got 0"),
     ("pca_self[k=1.5]", "'pca_self[k=1.5]': k must be an integer"),
     ("noise[scale=-1]", "'noise[scale=-1]': scale must be >= 0"),
     ("optimal[lr=0]", "'optimal[lr=0]': lr must be > 0"),
     ("zero[foo=1]", "bad parameters for method 'zero[foo=1]'"),
     ("no_such_method", "unknown ablation method 'no_such_method'")],
)
def test_bad_method_parameter_names_the_method(bench_inprocess, tmp_path, spec, expected):
    res, seconds = bench_inprocess("--tasks", "reverse", "--methods", spec, "--report-dir", str(tmp_path / "rep"))
    assert_usage_error(res, seconds, "--methods: ", expected)
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("spec, expected", [
    ("", "--methods '': names no method"),
    (" , ", "--methods ' , ': names no method"),
    ("zero,zero", "--methods: zero selected more than once"),
    ("default,mean", "--methods: mean selected more than once"),
])
def test_empty_or_repeated_methods_are_usage_errors(bench_inprocess, tmp_path, spec, expected):
    res, seconds = bench_inprocess("--tasks", "reverse", "--methods", spec, "--report-dir", str(tmp_path / "rep"))
    assert_usage_error(res, seconds, expected)


def test_the_sweep_and_a_module_join_the_default_set_without_a_repeat_error(bench_inprocess, tmp_path):
    """``default`` holds ``scaled_resample[s=0.5]``, which the sweep holds too: the sweep joins, it is not a repeat."""
    res, _ = bench_inprocess("--tasks", "reverse", "--scale-sweep", "--collect-only", "--report-dir", str(tmp_path / "rep"))
    assert res.ret == 0, res.outlines[-20:] + res.errlines
    ids = [line for line in res.outlines if "test_ablation[reverse-" in line]
    assert sum("scaled_resample[s=0.5]" in line for line in ids) == 1, ids


def test_plugin_reusing_a_builtin_name_is_an_error_unless_replace(bench_inprocess, tmp_path):
    plugin = tmp_path / "shadow.py"
    plugin.write_text("from ablations import register\n\n@register('mean')\ndef mean(batch):\n    return batch.clean.clone()\n")
    mean_before = REGISTRY["mean"]
    res, seconds = bench_inprocess("--tasks", "reverse", "--ablation-module", str(plugin), "--report-dir", str(tmp_path / "rep"))
    assert_usage_error(res, seconds, f"--ablation-module {plugin}", "ablation method 'mean' is already registered", "replace=True")
    assert REGISTRY["mean"] is mean_before  # the built-in is untouched
    from ablations import register

    with pytest.warns(UserWarning, match="replace=True"):  # on purpose: allowed, and said
        register("mean", replace=True)(lambda batch: batch.clean.clone())


# --------------------------------------------------------------------------- whole runs (subprocess)


def run_bench(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", str(BENCH), "-q", "-p", "no:cacheprovider", "--threads", "1", *args]
    # a run inside a pytest-xdist worker (the README's `pytest -n 2 tests`) must not look like one:
    # pytest-benchmark disables itself when PYTEST_XDIST_WORKER is set
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, env={**base, **(env or {})})


def test_data_too_large_for_memory_is_refused_before_it_is_drawn(tmp_path):
    from abench.data_budget import bytes_per_input
    from tasks.registry import load_task

    n_eval = 10_000_000
    t0 = time.perf_counter()
    res = run_bench("--tasks", "reverse", "--methods", "zero", "--n-eval", str(n_eval), "--report-dir", str(tmp_path / "rep"))
    seconds = time.perf_counter() - t0
    assert res.returncode == 1, res.stdout + res.stderr
    need = (128 + n_eval) * bytes_per_input(load_task("reverse"))
    assert f"--n-eval {n_eval} inputs of reverse need about {need / 2**30:.1f} GiB" in res.stdout, res.stdout
    assert seconds < 120, f"{seconds:.0f} s: the inputs were drawn before the check"


MUTATORS = '''
import torch
from ablations import AblationMethod, register


@register("bad_mutate")  # edits its input activations in place in ablate()
def bad_mutate(batch):
    batch.clean.add_(1.0)
    return batch.clean.clone()


@register("bad_center")  # centres the shared activations in place in fit()
class BadCenter(AblationMethod):
    def fit(self, data):
        for acts in data.acts.values():
            for a in acts:
                a.sub_(a.mean(0, keepdim=True))
        return self

    def ablate(self, batch):
        return torch.zeros_like(batch.clean)


@register("bad_tamper")  # tokens, residual stream, sources, a weight, a hook left on the model
class BadTamper(AblationMethod):
    def fit(self, data):
        data.tokens[0] = data.tokens[0].flip(0)
        for r in data.resid_pre[0].values():
            r.mul_(2)
        data.sources[0][1].zero_()
        with torch.no_grad():
            data.model.embed.W_E.mul_(-1)
        data.model.blocks[0].hook_resid_pre.add_hook(lambda act, hook: act * 0)
        return self

    def ablate(self, batch):
        return batch.clean.clone()


@register("bad_late")  # keeps the fit data and writes into it while ablating
class BadLate(AblationMethod):
    def fit(self, data):
        self.data_ = data
        return self

    def ablate(self, batch):
        self.data_.outputs[0].mul_(0)
        return batch.clean.clone()


@register("raises_here")
def raises_here(batch):
    raise RuntimeError("boom from the plugin")
'''


def _rows(doc: dict, methods) -> dict:
    return {(r["task"], r["method"]): r for r in strip_volatile(doc)["rows"] if r["method"] in methods}


def test_mutating_plugins_first_change_no_other_row(tmp_path):
    plugin = tmp_path / "mutators.py"
    plugin.write_text(MUTATORS)
    clean_methods = ["zero", "mean", "resample"]
    common = ["--tasks", "siit_length,reverse", *TINY]
    clean = run_bench(*common, "--methods", ",".join(clean_methods), "--report-dir", str(tmp_path / "clean"),
                      "--benchmark-json", str(tmp_path / "bench.json"))
    assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-3000:]
    bad = ["bad_mutate", "bad_center", "bad_tamper", "bad_late", "raises_here", "pca_self[k=99]"]
    dirty = run_bench(*common, "--methods", ",".join(bad + clean_methods), "--ablation-module", str(plugin),
                      "--report-dir", str(tmp_path / "dirty"), "--benchmark-disable")
    assert dirty.returncode == 1, dirty.stdout[-3000:] + dirty.stderr[-3000:]
    a = json.loads((tmp_path / "clean" / "leaderboard.json").read_text())
    b = json.loads((tmp_path / "dirty" / "leaderboard.json").read_text())
    # every other row, summary and ground-truth check is exactly the run without the bad methods
    assert _rows(a, clean_methods) == _rows(b, clean_methods) and len(_rows(a, clean_methods)) == 6
    for fam, summ in strip_volatile(a)["summary_by_family"].items():
        assert summ == [s for s in strip_volatile(b)["summary_by_family"][fam] if s["method"] in clean_methods]
    assert strip_volatile(a)["ground_truth_checks"] == strip_volatile(b)["ground_truth_checks"]
    rows = {(r["task"], r["method"]): r for r in b["rows"]}
    line = MUTATORS.splitlines().index('    raise RuntimeError("boom from the plugin")') + 1
    for task in ("siit_length", "reverse"):
        assert {m: rows[(task, m)]["status"] for m in clean_methods} == dict.fromkeys(clean_methods, "ok")
        assert "bad_mutate modified its input activations" in rows[(task, "bad_mutate")]["error"]
        assert "bad_center modified shared task data during fit: fit.acts" in rows[(task, "bad_center")]["error"]
        err = rows[(task, "bad_tamper")]["error"]
        for part in ("during fit", "fit.tokens[0]", "fit.resid_pre", "fit.sources", "model.embed.W_E", "model hooks", "restored"):
            assert part in err, (part, err)
        assert "bad_late modified shared task data during ablate: fit.outputs[0]" in rows[(task, "bad_late")]["error"]
        assert f"raised RuntimeError: boom from the plugin (node blocks.0.attn.hook_z[0]) at {plugin}:{line}" in rows[(task, "raises_here")]["error"]
        assert "k=99 exceeds the dimension" in rows[(task, "pca_self[k=99,high]")]["error"]
    # set-up has its own benchmark entry, so the first method of a task is timed like the others
    names = [bm["name"] for bm in json.loads((tmp_path / "bench.json").read_text())["benchmarks"]]
    assert names[:2] == ["test_task_setup[siit_length]", "test_task_setup[reverse]"], names
    assert sorted(names[2:]) == sorted(f"test_ablation[{t}-{m}]" for t in ("siit_length", "reverse") for m in clean_methods)


def _break(tmp_path: Path) -> dict[str, str]:
    """Copies of SIIT files (shipped, or kept though they missed the bar), each broken one way: task -> what
    its one-line reason must say."""
    src = {"length": siit.WEIGHTS_DIR, "hist": siit.WEIGHTS_DIR, "sort_unique": FAILED_DIR, "count_less_freq": FAILED_DIR}
    for name, folder in src.items():
        shutil.copy(folder / f"{name}.safetensors", tmp_path / f"{name}.safetensors")
        card = json.loads((folder / f"{name}.json").read_text())
        card.update(passed=True, protocol=siit.CARD_PROTOCOL)  # listed whatever the shipped card says
        (tmp_path / f"{name}.json").write_text(json.dumps(card))
    (tmp_path / "length.json").write_text('{"card_version": 1, "ll_config": ')  # invalid JSON
    card = json.loads((tmp_path / "hist.json").read_text())
    card["ll_config"]["d_head"] = "8"  # wrong type
    (tmp_path / "hist.json").write_text(json.dumps(card))
    raw = (FAILED_DIR / "sort_unique.safetensors").read_bytes()
    (tmp_path / "sort_unique.safetensors").write_bytes(raw[: len(raw) // 2])  # truncated
    shutil.copy(siit.WEIGHTS_DIR / "length.safetensors", tmp_path / "count_less_freq.safetensors")  # another model's weights
    return {
        "siit_length": "card " + str(tmp_path / "length.json") + " is not valid JSON",
        "siit_hist": "field ll_config.d_head must be a positive integer, got '8' (str)",
        "siit_sort_unique": "is not a readable safetensors file",
        "siit_count_less_freq": "differ from",
    }


def test_broken_cards_and_weights_fail_once_each_and_are_reported(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    broken = _break(weights)
    report = tmp_path / "rep"
    res = run_bench("--tasks", "siit,reverse", "--methods", "zero,mean", *TINY, "--report-dir", str(report), "--benchmark-disable",
                    env={"ABENCH_SIIT_WEIGHTS": str(weights)})
    out = res.stdout
    assert res.returncode == 1, out[-3000:] + res.stderr[-3000:]
    assert "Traceback" not in out and "SiitLoadError" not in out
    # each broken task fails exactly one test (its set-up), with its reason; its method cases are skipped
    failed = re.findall(r"^FAILED \S+::(\S+)", out, re.M)
    assert sorted(failed) == sorted(f"test_task_setup[{t}]" for t in broken), failed
    assert re.search(r"4 failed, 3 passed, 8 skipped", out), out[-500:]
    doc = json.loads((report / "leaderboard.json").read_text())
    assert list(doc["failed_tasks"]) == sorted(broken)  # in selection order
    md = (report / "leaderboard.md").read_text()
    html = (report / "leaderboard.html").read_text()
    tex = (report / "leaderboard.tex").read_text()
    for task, reason in broken.items():
        f = doc["failed_tasks"][task]
        assert f["stage"] == "load" and f["family"] == "siit" and reason in f["reason"], f
        assert "\n" not in f["reason"] and out.count(f"FAILED TASK {task} ") == 1
        assert f"`{task}` (load): " in md and reason in md
        assert f"<code>{task}</code> (load)" in html
        assert task.replace("_", r"\_") in tex
    assert {(r["task"], r["method"], r["status"]) for r in doc["rows"]} == {("reverse", "zero", "ok"), ("reverse", "mean", "ok")}


def test_unreadable_card_keeps_its_task_registered(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "listy.json").write_text("[1]")
    (tmp_path / "failed.json").write_text(json.dumps({"passed": False, "protocol": siit.CARD_PROTOCOL}))
    assert siit.shipped(tmp_path) == ["broken", "listy"]  # a readable card that missed the bar stays out


@pytest.mark.parametrize(
    "field, value, expected",
    [("n_layers", 0, "field ll_config.n_layers must be a positive integer, got 0"),
     ("d_head", "8", "field ll_config.d_head must be a positive integer, got '8' (str)"),
     ("n_heads", 2.0, "field ll_config.n_heads must be a positive integer, got 2.0 (float)"),
     ("d_mlp", True, "field ll_config.d_mlp must be a positive integer, got True (bool)"),
     ("act_fn", "tanh", "field ll_config.act_fn must be one of ('gelu', 'relu'), got 'tanh'"),
     ("normalization_type", "LNPre", "field ll_config.normalization_type must be one of (None, 'LN', 'RMS'), got 'LNPre'"),
     ("attention_dir", "forward", "field ll_config.attention_dir must be one of ('bidirectional', 'causal'), got 'forward'"),
     ("seed", 3, "ll_config has fields a HookedTransformerConfig cannot take (or that build_ll sets): ['seed']"),
     ("bogus", 1, "cannot take (or that build_ll sets): ['bogus']")],
)
def test_card_schema_names_the_bad_field(tmp_path, field, value, expected):
    card = json.loads(siit.paths("length")[1].read_text())
    card["ll_config"][field] = value
    for p in siit.paths("length"):
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "length.json").write_text(json.dumps(card))
    with pytest.raises(siit.SiitLoadError, match=re.escape(expected)):
        siit.load("length", weights_dir=tmp_path)


@pytest.mark.parametrize(
    "key, value, expected",
    [("correspondence", [], "field correspondence must be a non-empty object"),
     ("shapes", {"embed.W_E": ["5", 16]}, "field shapes must be an object of tensor name -> list of non-negative integers"),
     ("card_version", "1", "field card_version must be an integer"),
     ("passed", "yes", "field passed must be true or false")],
)
def test_card_schema_top_level_fields(key, value, expected):
    card = json.loads(siit.paths("length")[1].read_text())
    card[key] = value
    with pytest.raises(siit.SiitLoadError, match=re.escape(expected)):
        siit.validate_card(card, "card")


# --------------------------------------------------------------------------- the README test command and CI


def readme_test_command() -> str:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return block.strip().splitlines()[1].split("#")[0].strip()


def test_readme_test_command_writes_its_reports_to_a_temporary_folder():
    bench_part = readme_test_command().split("&&")[1]
    assert '--report-dir "$(mktemp -d)"' in bench_part  # never over the committed reports/leaderboard.*


def test_ci_runs_every_part_and_fails_if_any_failed(tmp_path):
    """.ci/run with stand-ins for pip, chromium and pytest: the unit tests fail (exit 1), the gate
    still runs, and the script exits 1; exit 5 (nothing collected) is not a failure."""
    shutil.copytree(ROOT / ".ci", tmp_path / ".ci")
    (tmp_path / "README.md").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for name, body in {"pip": "exit 0", "chromium": "exit 0",
                       "pytest": f'echo "$*" >> {log}\ncase "$1" in -n) exit "$UNIT_RC";; *) exit "$GATE_RC";; esac'}.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    for unit, gate, expected in ((1, 0, 1), (0, 1, 1), (5, 0, 0), (0, 0, 0)):
        log.write_text("")
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "UNIT_RC": str(unit), "GATE_RC": str(gate)}
        res = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=60)
        calls = log.read_text().splitlines()
        assert len(calls) == 2 and calls[0] == "-n 2 tests" and calls[1].startswith("benchmarks/test_leaderboard.py --preset ci"), calls
        assert "--report-dir /" in calls[1]  # a fresh temporary folder
        assert res.returncode == expected, (unit, gate, res.returncode, res.stdout, res.stderr)


# --------------------------------------------------------------------------- smaller


def test_environment_names_the_transformer_lens_version():
    assert environment("cpu")["transformer_lens"] not in ("unknown", None)


def test_hypothesis_runs_are_deterministic():
    from hypothesis import settings

    assert settings.default.derandomize and settings.default.database is None
