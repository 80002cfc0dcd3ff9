"""The benchmark session without pytest's plugin machinery: options as plain values, one small tracr
task (``reverse``) and one method, a case run, its journal, resume, and the documents it ends with.

The plugin (``abench.pytest_plugin``) only reads the command line into ``SessionOptions`` and calls
``abench.session``; these tests construct the options directly, so a session that came to depend on
pytest's config would fail here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abench import session as session_module
from abench.baseline import BaselineError
from abench.document import Row
from abench.report_folder import JOURNAL, PARTIAL, ReportFolderError, read_journal
from abench.session import (
    LOCAL_REPORT_DIR,
    OptionError,
    Session,
    SessionOptions,
    TaskSetupError,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CASE = ("reverse", "zero")


def options(tmp_path: Path, **kw) -> SessionOptions:
    """A tiny selection writing ``tmp_path``: reverse x zero on 16 fit and 24 eval inputs."""
    return SessionOptions(**{"tasks": "reverse", "methods": "zero", "n_fit": 16, "n_eval": 24, "seed": 3,
                             "device": "cpu", "report_dir": str(tmp_path), **kw})


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> tuple[Session, dict]:
    """A session that set up reverse and ran reverse-zero; the row it returned."""
    s = Session(options(tmp_path_factory.mktemp("reports")))
    assert s.setup_task("reverse") is None
    return s, s.run_case(CASE)


def test_the_selection_is_read_from_plain_options(tmp_path):
    s = Session(options(tmp_path, methods="zero,mean"))
    assert s.tasks == ["reverse"] and s.tasks_selected
    assert s.methods == ["zero", "mean"]
    assert s.cases() == [("reverse", "zero"), ("reverse", "mean")]
    assert s.report_dir == str(tmp_path) and s.report_dir_note is None
    assert s.journal == tmp_path / JOURNAL
    assert s.data == {} and s.rows == []  # building a session loads no task


def test_a_case_gives_one_ok_row_and_journals_it(ran):
    s, row = ran
    assert (row.task, row.method, row.family, row.status) == ("reverse", "zero", "tracr", "ok")
    assert row.get("auroc") is not None and 0 <= row.get("auroc") <= 1
    assert s.rows == [row]
    saved = read_journal(s.journal)
    assert saved["rows"] == [row]  # what --resume would reuse: the same row, back from its JSON


def test_the_document_names_the_selection_rows_and_options(ran):
    s, row = ran
    doc = s.document(s.rows, {"some_speed": {"ratio": 2.0}}).to_json()
    assert doc["selection"] == {"tasks": ["reverse"], "methods": ["zero"]}
    assert [(r["task"], r["method"]) for r in doc["rows"]] == [CASE]
    assert doc["rows"][0]["auroc"] == row.get("auroc")
    env = doc["environment"]
    assert (env["device"], env["seed"], env["n_fit"], env["n_eval"], env["torch_threads"]) == ("cpu", 3, 16, 24, 1)
    assert [m["method"] for m in doc["summary_by_family"]["tracr"]] == ["zero"]
    assert doc["failed_tasks"] == {} and doc["speed"] == {"some_speed": {"ratio": 2.0}}
    assert "effect_convention" in doc and "partial" not in doc


def test_rows_sort_into_selection_order(tmp_path):
    s = Session(options(tmp_path, methods="zero,mean"))
    rows = [Row(task=t, family="tracr", ground_truth="weights", method=m, status="ok")
            for t, m in (("reverse", "mean"), ("other", "zero"), ("reverse", "zero"))]
    assert [r.key for r in s.sorted_rows(rows)] == [("reverse", "zero"), ("reverse", "mean"), ("other", "zero")]


def test_resume_reuses_a_journalled_row_without_loading_the_task(tmp_path):
    saved = {"task": "reverse", "method": "zero", "family": "tracr", "ground_truth": "weights", "status": "ok", "auroc": 0.5}
    (tmp_path / JOURNAL).write_text(json.dumps({"row": saved}) + "\n" + '{"row": {"ta')
    s = Session(options(tmp_path, resume=True))
    row = s.run_case(CASE)
    assert (row.key, row.get("auroc")) == (CASE, 0.5)
    assert s.data == {}  # not loaded: the row came from the journal
    assert Session(options(tmp_path)).resumed == {}  # without resume the journal is not read


def test_a_failed_set_up_is_reported_once_with_its_stage(tmp_path, monkeypatch):
    calls = []

    def over_budget(task, n_fit, n_eval):
        calls.append(task.name)
        raise MemoryError("--n-fit 16 + --n-eval 24 inputs of reverse need too much")

    monkeypatch.setattr(session_module, "check_data_budget", over_budget)
    s = Session(options(tmp_path))
    reason = s.setup_task("reverse")
    assert reason == "task reverse failed at data: --n-fit 16 + --n-eval 24 inputs of reverse need too much"
    assert s.setup_task("reverse") == reason and calls == ["reverse"]  # cached: not retried
    assert s.failed_tasks["reverse"] == {"family": "tracr", "stage": "data", "reason": "--n-fit 16 + --n-eval 24 inputs of reverse need too much"}
    with pytest.raises(TaskSetupError, match="failed at data"):
        s.task_and_data("reverse")
    assert read_journal(s.journal)["failed_tasks"] == {"reverse": s.failed_tasks["reverse"]}
    assert s.method_case_reports("reverse") and not s.method_case_reports("reverse")  # once per process
    assert s.document([], {}).extra["failed_tasks"] == {"reverse": s.failed_tasks["reverse"]}


def test_finish_writes_the_leaderboard_and_drops_the_journal(ran, tmp_path):
    _, row = ran
    (tmp_path / JOURNAL).write_text(json.dumps({"row": row.to_json()}) + "\n")
    (tmp_path / PARTIAL).write_text("{}")
    s = Session(options(tmp_path, resume=True, save_baseline=str(tmp_path / "base.json")))
    s.run_case(CASE)  # from the journal
    s.finish()
    written = json.loads((tmp_path / "leaderboard.json").read_text())
    assert [(r["task"], r["method"]) for r in written["rows"]] == [CASE] and written == json.loads(json.dumps(s.doc.to_json()))
    assert {p.name for p in s.written} >= {"leaderboard.json", "leaderboard.md"}
    assert not s.journal.exists() and not (tmp_path / PARTIAL).exists()
    base = json.loads((tmp_path / "base.json").read_text())
    assert "created_at" not in base["environment"] and base["rows"][0]["method"] == "zero"
    assert s.regressions == [] and s.ranks == []


def test_an_interrupted_run_writes_a_marked_partial_file(ran, tmp_path):
    _, row = ran
    (tmp_path / JOURNAL).write_text(json.dumps({"row": row.to_json()}) + "\n")  # e.g. a worker's row
    s = Session(options(tmp_path, methods="zero,mean"))
    s.write_partial()
    doc = json.loads((tmp_path / PARTIAL).read_text())
    assert doc["partial"]["reason"] == "interrupted" and (doc["partial"]["rows"], doc["partial"]["cases"]) == (1, 2)
    assert [(r["task"], r["method"]) for r in doc["rows"]] == [CASE]
    assert s.partial_note.startswith(f"interrupted: 1 of 2 rows saved to {tmp_path / PARTIAL}")
    assert not (tmp_path / "leaderboard.json").exists()


def test_a_selection_that_is_not_the_default_goes_to_the_local_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Session(options(tmp_path, report_dir=None, explicit=("--tasks", "--methods")))
    assert s.report_dir == LOCAL_REPORT_DIR
    assert s.report_dir_note.startswith("--report-dir not given and the selection is not the default (--tasks, --methods)")


@pytest.mark.parametrize("bad, error, message", [
    ({"tasks": "no_such_task"}, OptionError, "no_such_task"),
    ({"methods": "zero,zero"}, OptionError, "--methods: zero selected more than once"),
    ({"methods": ","}, OptionError, "names no method"),
    ({"threads": 0}, OptionError, "--threads must be an integer >= 1, got 0"),
    ({"n_eval": 0}, OptionError, "--n-eval must be an integer >= 1, got 0"),
    ({"n_eval": -5}, OptionError, "--n-eval must be an integer >= 1, got -5"),
    ({"n_fit": 0}, OptionError, "--n-fit must be an integer >= 1, got 0"),
    ({"tolerance": -1.0}, OptionError, "--tolerance must be >= 0"),
    ({"max_batch_mb": 0.0}, OptionError, "--max-batch-mb must be > 0"),
    ({"rank_against": "/no/such/leaderboard.json"}, OptionError, "--rank-against"),
    ({"ablation_modules": ("/no/such/methods.py",)}, OptionError, "--ablation-module: no such file"),
    ({"compare": "/no/such/baseline.json"}, BaselineError, "no such baseline file"),
])
def test_bad_options_raise_plain_errors(tmp_path, bad, error, message):
    with pytest.raises(error, match=message):
        Session(options(tmp_path, **bad))


def test_a_report_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ReportFolderError, match="exists and is not a folder"):
        Session(options(tmp_path / "f"))


def test_the_session_module_does_not_import_pytest():
    import ast

    tree = ast.parse(Path(session_module.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "pytest" not in imported and "_pytest" not in imported
