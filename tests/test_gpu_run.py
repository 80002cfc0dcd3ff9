"""The GPU run's script on the CPU: the same parts, with tiny selections, write their reports."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_run  # noqa: E402


def test_the_gpu_run_writes_its_reports_on_the_cpu(tmp_path):
    rc = gpu_run.main(["--device", "cpu", "--quick", "--parts", "scale,leaderboard", "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "gpu_run.json").read_text())
    assert rc == 0, doc
    assert set(doc["parts"]) == {"scale", "leaderboard"} and doc["info"]["device"] == "cpu"
    cost = json.loads((tmp_path / "scale" / "cost.json").read_text())
    runners = {p["runner"] for p in cost["points"]}
    assert {"engine", "tl_hooks"} <= runners and all(p["device"] == "cpu" for p in cost["points"])
    assert "\"type\":\"log\"" in (tmp_path / "scale" / "cost.html").read_text()  # log-log axes
    board = json.loads((tmp_path / "leaderboard" / "leaderboard.json").read_text())
    assert [(r["task"], r["method"], r["status"]) for r in board["rows"]] == [("back2", "zero", "ok")]
    assert (tmp_path / "gpu_run.md").is_file()
