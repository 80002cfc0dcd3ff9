"""The typed records: a leaderboard read back from its JSON writes the same JSON, key for key and in order;
building a document leaves the rows it is handed alone; a malformed one is refused with the place named."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from abench import leaderboard
from abench.document import AttributionSummary, DocumentError, GroundTruthCheck, Leaderboard, MethodSummary, NodeEffect, Row

ROOT = Path(__file__).resolve().parents[1]
DOC_TEXT = (ROOT / "tests" / "data" / "report_doc.json").read_text()


def test_json_round_trip_is_exact():
    doc = json.loads((ROOT / "reports" / "leaderboard.json").read_text())  # the committed leaderboard, every row kind
    back = Leaderboard.from_json(doc).to_json()
    assert json.dumps(back) == json.dumps(doc)  # same keys, values and order


def test_an_older_document_reads_and_then_round_trips():
    # the report fixture predates method_base / params / recommendation: read with their defaults, then stable
    once = Leaderboard.from_json(json.loads(DOC_TEXT)).to_json()
    assert json.dumps(Leaderboard.from_json(once).to_json()) == json.dumps(once)
    assert [r["method_base"] for r in once["rows"]] == [None] * len(once["rows"])


def test_rows_are_typed_and_read_only():
    doc = Leaderboard.from_json(json.loads(DOC_TEXT))
    row = next(r for r in doc.rows if r.ok)
    assert isinstance(row, Row) and isinstance(row.get("auroc"), float) and row.nodes
    with pytest.raises(FrozenInstanceError):
        row.status = "failed"
    with pytest.raises(TypeError):
        row.measures["auroc"] = 0.0
    assert isinstance(row.nodes[0], NodeEffect)
    with pytest.raises(FrozenInstanceError):
        row.nodes[0].effect = 1.0


def test_build_does_not_change_the_rows_it_is_handed():
    doc = Leaderboard.from_json(json.loads(DOC_TEXT))
    rows = [r.checked(None) for r in doc.rows]
    task = rows[0].task
    checks = {task: GroundTruthCheck(task=task, reference_method="resample", hl_tolerance=0.03, passed=False,
                                     reasons=("made up for the test",), auroc=1.0, gap=0.1, max_abs_diff=0.0, faithfulness_bar=0.99,
                                     faithfulness=1.0, completeness_ll=0.5, completeness_hl=0.5, completeness_abs_diff=0.0)}
    built = leaderboard.build(rows, dict(doc.environment), checks=checks)
    assert all(r.ground_truth_check is None for r in rows)
    assert {r.ground_truth_check for r in built.rows if r.task == task} == {"failed"}
    assert task in built.excluded_tasks and task not in built.pooled_tasks


@pytest.mark.parametrize("bad, message", [
    ([], "not a leaderboard"),
    ({"rows": [{"task": "t", "family": "f"}], "summary_by_family": {}}, "row 0 needs string fields"),
    ({"rows": [{"task": "t", "family": "f", "method": "m", "auroc": "x"}], "summary_by_family": {}}, "row 0 (t-m): auroc must be a number"),
    ({"rows": [{"task": "t", "family": "f", "method": "m", "status": "done"}], "summary_by_family": {}}, "status must be one of"),
    ({"rows": [], "summary_by_family": {"f": {}}}, "summary_by_family['f'] must be a list"),
    ({"rows": [], "summary_by_family": {}, "excluded_tasks": []}, "excluded_tasks must be an object"),
    ({"rows": [], "summary_by_family": {"f": [{"method": "zero", "mean_gapp": 0.1}]}},
     "summary_by_family['f'] method zero: unknown summary fields ['mean_gapp']"),
    ({"rows": [], "summary_by_family": {"f": [{"method": "zero", "n_tasks": "2"}]}},
     "summary_by_family['f'] method zero: n_tasks must be a count"),
    ({"rows": [], "summary_by_family": {"f": [{"method": "zero", "mean_faithfulness_ci95": [0.5]}]}},
     "summary_by_family['f'] method zero: mean_faithfulness_ci95 must be [low, high] or null, got [0.5]"),
    ({"rows": [], "summary_by_family": {"f": [{"method": "zero", "seconds": None}]}}, "method zero: seconds must be a number"),
    ({"rows": [], "summary_by_family": {"f": [{"n_tasks": 1}]}}, "summary_by_family['f']: every entry needs a string 'method'"),
    ({"rows": [], "summary_by_family": {}, "attribution": {"f": [{"method": "atp[zero]", "exact_method": "zero"}]}},
     "attribution['f'] method atp[zero]: missing fields ['n_tasks'"),
    ({"rows": [{"task": "t", "family": "f", "method": "m", "joint_effects": [{"name": "pair", "nodes": ["a", "b"]}]}],
      "summary_by_family": {}}, "row 0 (t-m): joint effect (pair): effect must be a number"),
])
def test_malformed_documents_name_the_place(bad, message):
    with pytest.raises(DocumentError, match=None) as err:
        Leaderboard.from_json(bad, "some.json")
    assert str(err.value).startswith("some.json") and message in str(err.value), str(err.value)


def test_summaries_are_typed_and_rebuilding_the_committed_rows_gives_the_committed_document():
    """``summarize`` (through ``leaderboard.build``) returns ``MethodSummary`` records; built again from the committed
    rows, checks and settings, every summary, attribution entry, recommendation and transfer record is the committed one."""
    committed = json.loads((ROOT / "reports" / "leaderboard.json").read_text())
    doc = Leaderboard.from_json(committed)
    built = leaderboard.build([r.checked(None) for r in doc.rows], dict(doc.environment), dict(doc.extra),
                              dict(doc.ground_truth_checks), effect_convention=doc.effect_convention)
    assert all(isinstance(s, MethodSummary) for summ in built.summary_by_family.values() for s in summ)
    assert all(isinstance(s, AttributionSummary) for summ in built.attribution.values() for s in summ)
    assert json.dumps(built.to_json()) == json.dumps(committed)
    best = built.summary[0]
    assert best.get("mean_faithfulness") == best.means["mean_faithfulness"] and best.get("no_such_key", "-") == "-"
    with pytest.raises(FrozenInstanceError):
        best.pooled_auroc = 0.0
    with pytest.raises(TypeError):
        best.means["mean_gap"] = 0.0


def test_a_summary_written_without_timings_reads_back_without_them():
    """A baseline saved by ``--save-baseline`` has no seconds (``strip_volatile``): its summaries round-trip as they are."""
    stripped = leaderboard.strip_volatile(json.loads((ROOT / "reports" / "leaderboard.json").read_text()))
    back = Leaderboard.from_json(stripped)
    assert back.summary[0].seconds is None and json.dumps(back.to_json()) == json.dumps(stripped)
