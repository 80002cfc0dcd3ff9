"""InterpBench's layout: export -> load round trip of every shipped SIIT model, hostile pickles refused."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tasks.interpbench import (InterpBenchLoadError, circuit_from_edges, edge_node, export_shipped, interpbench_task,
                               load_case, safe_load_pickle)
from tasks.registry import load_task
from tasks.siit import shipped

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("interpbench")
    return out, export_shipped(out)


def test_round_trip_of_every_shipped_siit_model(exported):
    out, folders = exported
    assert [f.name for f in folders] == shipped() and shipped()
    assert set(json.loads((out / "benchmark_metadata.json").read_text())["cases"]) == set(shipped())
    for name in shipped():
        folder = out / name
        assert sorted(p.name for p in folder.iterdir()) == ["edges.pkl", "ll_model.pth", "ll_model_cfg.pkl", "meta.json"]
        original = load_task(f"siit_{name}")
        loaded = interpbench_task(folder)
        assert (loaded.name, loaded.family, loaded.ground_truth) == (f"interpbench_{name}", "interpbench", "resample")
        assert loaded.in_circuit_names == original.in_circuit_names
        assert loaded.correspondence == original.correspondence
        assert loaded.joint_sets == original.joint_sets  # a backup pair stays a joint set
        assert [n.name for n in loaded.nodes] == [n.name for n in original.nodes]
        with torch.no_grad():
            diff = max((original.model(t) - loaded.model(t)).abs().max().item() for t in original.sample(64, seed=11))
        assert diff == 0.0, (name, diff)
        # what InterpBench's own loader does: plain pickle + HookedTransformerConfig.from_dict + a strict state dict
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        cfg = HookedTransformerConfig.from_dict(pickle.loads((folder / "ll_model_cfg.pkl").read_bytes()))
        theirs = HookedTransformer(cfg)
        theirs.load_state_dict(torch.load(folder / "ll_model.pth", weights_only=True), strict=True)
        edges = pickle.loads((folder / "edges.pkl").read_bytes())
        assert all(isinstance(a, str) and b.endswith("hook_resid_post") for a, b in edges)
        assert {edge_node(a).name for a, _ in edges} == set(original.in_circuit_names)
        t = original.sample(16, seed=3)[0]
        with torch.no_grad():
            assert torch.equal(theirs(t), original.model(t))


def test_export_command(tmp_path):
    name = shipped()[0]
    res = subprocess.run([sys.executable, "-m", "tasks.export_interpbench", str(tmp_path), "--task", name],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"wrote {tmp_path / name}/" in res.stdout
    assert json.loads((tmp_path / name / "meta.json").read_text())["program"] == name


class Shell:
    """A pickle that would run a shell command when loaded by plain pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Evaluator:
    def __reduce__(self):
        return eval, ("__import__('os').getcwd()",)


@pytest.mark.parametrize("file", ["edges.pkl", "ll_model_cfg.pkl"])
def test_hostile_pickle_is_refused(exported, tmp_path, file):
    out, _ = exported
    case = tmp_path / "case"
    case.mkdir()
    for f in ("edges.pkl", "ll_model.pth", "ll_model_cfg.pkl", "meta.json"):
        (case / f).write_bytes((out / shipped()[0] / f).read_bytes())
    marker = tmp_path / "pwned"
    (case / file).write_bytes(pickle.dumps([("blocks.0.attn.hook_result[0]", Shell(marker))]))
    with pytest.raises(InterpBenchLoadError, match=r"refused to load (posix|os)\.system"):
        load_case(case)
    assert not marker.exists()
    (case / file).write_bytes(pickle.dumps(Evaluator()))
    with pytest.raises(InterpBenchLoadError, match="refused to load builtins.eval"):
        load_case(case)
    (case / file).write_bytes(pickle.dumps(Path("x")))  # any class that is not allowed
    with pytest.raises(InterpBenchLoadError, match="refused to load pathlib"):
        load_case(case)
    (case / file).write_bytes(b"not a pickle")
    with pytest.raises(InterpBenchLoadError, match="not a readable pickle"):
        load_case(case)


def test_hostile_weights_are_refused(exported, tmp_path):
    out, _ = exported
    case = tmp_path / "case"
    case.mkdir()
    for f in ("edges.pkl", "ll_model_cfg.pkl"):
        (case / f).write_bytes((out / shipped()[0] / f).read_bytes())
    marker = tmp_path / "pwned"
    torch.save({"x": Shell(marker)}, case / "ll_model.pth")
    with pytest.raises(InterpBenchLoadError, match="not a plain state dict"):
        load_case(case)
    assert not marker.exists()


def test_allowed_pickle_contents(tmp_path):
    from transformer_lens import HookedTransformerConfig

    values = {"a": np.float64(0.5), "b": np.int64(3), "c": np.dtype("float32"), "d": torch.float32, "e": {1, 2},
              "f": (1, 2.0, "x", None, True)}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(values, protocol=2))
    assert safe_load_pickle(path) == values
    # a numpy 1 pickle names numpy.core.multiarray: read through numpy._core
    old = pickle.dumps(np.float32(1.5), protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in old
    path.write_bytes(old)
    assert safe_load_pickle(path) == np.float32(1.5)
    # InterpBench's IOI case pickles the config object itself: read as its fields only
    cfg = HookedTransformerConfig(n_layers=1, n_heads=2, d_model=8, d_head=4, d_mlp=8, d_vocab=5, n_ctx=6, act_fn="relu")
    path.write_bytes(pickle.dumps(cfg))
    from tasks.interpbench import config_from_pickle

    assert config_from_pickle(safe_load_pickle(path, allow_config=True), path).d_model == 8
    with pytest.raises(InterpBenchLoadError, match="refused"):
        safe_load_pickle(path)  # edges.pkl may not hold a config


def test_edge_names():
    assert edge_node("blocks.1.attn.hook_result[2]").name == "blocks.1.attn.hook_z[2]"
    assert edge_node("blocks.1.attn.hook_q[3]").name == "blocks.1.attn.hook_z[3]"
    assert edge_node(("blocks.0.attn.hook_result", [None, None, 1])).name == "blocks.0.attn.hook_z[1]"
    assert edge_node("blocks.0.attn.hook_z[:, :, 3]").name == "blocks.0.attn.hook_z[3]"
    assert edge_node("blocks.2.mlp.hook_post").name == "blocks.2.mlp.hook_post"
    assert edge_node("blocks.2.hook_mlp_out").name == "blocks.2.mlp.hook_post"
    for other in ("blocks.1.hook_resid_post", "hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre"):
        assert edge_node(other) is None
    with pytest.raises(InterpBenchLoadError, match="unrecognised node name"):
        edge_node("blocks.1.frobnicate")
    with pytest.raises(InterpBenchLoadError, match="head index"):
        edge_node("blocks.1.attn.hook_result")
    model = load_task(f"siit_{shipped()[0]}").model
    with pytest.raises(InterpBenchLoadError, match="does not exist in the model"):
        circuit_from_edges([("blocks.9.attn.hook_result[0]", "blocks.9.hook_resid_post")], model)


REAL_CASE = os.environ.get("ABENCH_INTERPBENCH_CASE")


@pytest.mark.skipif(not REAL_CASE, reason="no InterpBench case on disk: set ABENCH_INTERPBENCH_CASE=/path/to/InterpBench/<case> "
                    "(and ABENCH_INTERPBENCH_PROGRAM=<tracr program>, e.g. frac_prevs for case 3); nothing is downloaded")
def test_real_interpbench_case():
    from abench import bench

    program = os.environ.get("ABENCH_INTERPBENCH_PROGRAM")
    task = interpbench_task(REAL_CASE, program=program)
    assert any(n.in_circuit for n in task.nodes)
    fit, ev = bench.task_data(task, 32, 32, 0)
    row = bench.run_row(task, "resample", fit, ev)
    assert row.ok, row
    print(REAL_CASE, task.in_circuit_names, row.get("auroc"))
