"""The converted HookedTransformers reproduce tracr's own ``model.apply`` exactly."""

import random

import numpy as np
import pytest
import torch

from tasks.registry import load_task
from tasks.tracr.programs import PROGRAMS
from tasks.tracr.compiled import compile_program


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_converted_model_equals_tracr_on_every_length(name):
    spec = PROGRAMS[name]
    task = load_task(name)
    assembled, _ = compile_program(spec)  # a fresh compile: the cache is not what we test against
    rng = random.Random(1234)
    for length in range(spec.inputs.min_len, spec.inputs.max_len + 1):
        seqs = [spec.inputs.draw(rng, length) for _ in range(4)]
        ours = task.model(task.encode(seqs))  # [4, length + 1, d_vocab_out]
        for seq, out in zip(seqs, ours):
            ref = assembled.apply(["BOS"] + seq)
            residual = torch.tensor(np.asarray(ref.transformer_output[0]))
            # the output-space coordinates of tracr's final residual stream
            torch.testing.assert_close(out, residual @ task.model.W_U, atol=1e-5, rtol=0)
            if task.output == "categorical":
                pred = [task.info["output_values"][i] for i in out[1:].argmax(-1).tolist()]
                assert pred == ref.decoded[1:], (seq, pred, ref.decoded)
            else:
                np.testing.assert_allclose(out[1:, 0].detach().numpy(), np.asarray(ref.decoded[1:], dtype=float), atol=1e-5)


def test_every_task_has_nodes_and_a_circuit():
    for name in PROGRAMS:
        task = load_task(name)
        assert task.nodes, name
        assert any(n.in_circuit for n in task.nodes), name
        assert len(task.nodes) == task.model.cfg.n_layers * (task.model.cfg.n_heads + 1)


def test_shuffle_dyck_has_forty_nodes_and_balanced_inputs():
    task = load_task("shuffle_dyck")
    assert len(task.nodes) == 40
    groups = task.sample(256, 0)
    labels = torch.cat([task.model(g)[:, -1].argmax(-1) for g in groups])
    # sampled on purpose: about half of the even-length words are balanced, so labels vary
    assert 0.1 < labels.float().mean().item() < 0.9


def test_sampler_varies_length_and_respects_preconditions():
    task = load_task("sort_unique")
    raw = task.sample_raw(100, 3)
    assert [len(g[0]) for g in raw] == list(range(task.inputs.min_len, task.inputs.max_len + 1))
    for group in raw:
        for seq in group:
            assert len(set(seq)) == len(seq)
    _, cf = task.sample_with_counterfactual(100, 3)
    for g in cf:
        for row in g.tolist():
            assert len(set(row[1:])) == len(row) - 1


def test_compiled_weights_are_cached(tmp_path, monkeypatch):
    from tasks.tracr import compiled as tracr_tasks

    monkeypatch.setenv("ABENCH_CACHE", str(tmp_path))
    spec = PROGRAMS["length"]
    sd1, card1 = tracr_tasks.load_or_compile(spec)
    files = sorted(p.name for p in (tmp_path / "tracr").iterdir())
    assert any(f.endswith(".safetensors") for f in files) and any(f.endswith(".json") for f in files)
    monkeypatch.setattr(tracr_tasks, "compile_program", lambda spec: pytest.fail("recompiled despite the cache"))
    sd2, card2 = tracr_tasks.load_or_compile(spec)
    assert card1 == card2 and all(torch.equal(sd1[k], sd2[k]) for k in sd1)


def test_two_writers_of_the_cache_do_not_collide(tmp_path, monkeypatch):
    """Two processes compiling the same program at once (two trainings, xdist workers): the second
    finishes its write while the first is still saving; both must end with the same files."""
    from tasks.tracr import compiled as tracr_tasks

    monkeypatch.setenv("ABENCH_CACHE", str(tmp_path))
    spec = PROGRAMS["length"]
    real_save = tracr_tasks.save_file
    state = {"pid": 1000, "nested": False}
    monkeypatch.setattr(tracr_tasks.os, "getpid", lambda: state["pid"])

    def save_then_let_the_other_writer_finish(sd, path):
        real_save(sd, path)
        if not state["nested"]:
            state["nested"], state["pid"] = True, 2000
            tracr_tasks.load_or_compile(spec)  # the other process, start to end
            state["pid"] = 1000

    monkeypatch.setattr(tracr_tasks, "save_file", save_then_let_the_other_writer_finish)
    sd1, card1 = tracr_tasks.load_or_compile(spec)
    assert state["nested"]
    assert sorted(p.suffix for p in (tmp_path / "tracr").iterdir()) == [".json", ".safetensors"]
    sd2, card2 = tracr_tasks.load_or_compile(spec)
    assert card1 == card2 and all(torch.equal(sd1[k], sd2[k]) for k in sd1)


def test_unknown_token_is_a_clear_error():
    task = load_task("reverse")
    with pytest.raises(ValueError, match="not in its vocabulary"):
        task.encode([[1, 2, 99]])
