"""Tasks from a user's file: any HookedTransformer plus its circuit, validated before anything runs.

A task file (``pytest benchmarks --task-module my_task.py``, or an installed package's entry point
in the group ``abench.tasks``) defines ``TASKS = [TaskSpec(...), ...]`` (or ``TASK = TaskSpec(...)``).
Entries may also be ready ``tasks.base.Task`` objects (e.g. from ``tasks.interpbench``), or a
function returning a list of either. Each spec is checked field by field when the file is loaded
(a model is built, the sampler drawn from, one forward run), so a malformed file stops the run
with one line that names the task and the field, never with a traceback from inside the engine.

Fields of ``TaskSpec`` (required ones marked *):

- ``name``*: the task id in test ids and reports (letters, digits, ``_ - .``).
- ``family``*: its leaderboard family; families are never pooled together (``siit`` heads the reports).
- ``model``*: a ``HookedTransformer``, or a function building one (``f(device)`` or ``f()``).
- ``circuit``*: in-circuit node names in the suite's syntax, ``blocks.L.attn.hook_z[h]`` (a head)
  or ``blocks.L.mlp.hook_post`` (an MLP); ``blocks.L.attn.hook_result[h]`` (iit / InterpBench) is
  accepted for a head. Every other head and MLP is out of the circuit.
- ``vocab``*: the input values the sampler draws from; ``lengths``*: ``(min_len, max_len)`` of an
  input, BOS excluded (inputs of one length are batched together: no padding).
- ``output``*: ``categorical`` (argmax changed / KL), ``numerical`` (``d_vocab_out == 1``; |change|
  > 0.05 / squared error) or ``logit_diff`` (next-token models: logit of the correct answer minus
  the wrong one at the final position; needs ``answers``).
- ``ground_truth``: the name of the intervention under which the circuit labels hold (``resample``,
  ``weights``, ``planted``, ...), shown in every report; ``ground_truth_meaning``: one sentence.
- ``sample(rng, length) -> list``: one input meeting the task's precondition (default: uniform over
  ``vocab``); ``edit(rng, seq) -> list``: a minimal edit that keeps it (default: one token changed).
- ``encoding``: vocabulary value -> token id, with ``"BOS"``; default: values are token ids and
  ``bos`` (default 0) is put at position 0.
- ``high_level``: a model (or builder) computing the labels on the same tokens, and
  ``correspondence``: high-level node -> low-level node; with them the task gets the ground-truth
  check of SIIT tasks (when ``ground_truth == "resample"``) and ``--effect-convention iit``.
- ``answers(tokens [n, L+1]) -> [n, 2]``: (correct, wrong) token ids per prompt (``logit_diff``);
  ``ablate_at``: ``all`` positions (default) or only the ``final`` one.
- ``joint``: named node sets, ``{"name mover + backup": [node, node], ...}``, each ablated together
  by every method; the leaderboard row reports each set's joint effect beside its members' single-node
  effects (``joint_effects``), which shows redundancy that single-node ablation under-reports.
"""

from __future__ import annotations

import importlib.util
import inspect
import random
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from transformer_lens import HookedTransformer

from tasks.base import InputSpec, LogitDiffScoring, Node, Task, all_nodes, describe_ground_truth

OUTPUTS = ("categorical", "numerical", "logit_diff")
REQUIRED = ("name", "family", "model", "circuit", "vocab", "lengths", "output")
ENTRY_POINT_GROUP = "abench.tasks"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class TaskSpecError(ValueError):
    """A user task is malformed; the message names the task and the field."""


@dataclass
class TaskSpec:
    """One user task: see the module docstring for every field."""

    name: str | None = None
    family: str | None = None
    model: Any = None
    circuit: Sequence[str] | None = None
    vocab: Sequence | None = None
    lengths: tuple[int, int] | None = None
    output: str | None = None
    ground_truth: str = "planted"
    ground_truth_meaning: str | None = None
    sample: Callable[[random.Random, int], list] | None = None
    edit: Callable[[random.Random, list], list] | None = None
    encoding: Mapping | None = None
    bos: int = 0
    high_level: Any = None
    correspondence: Mapping[str, str] | None = None
    answers: Callable[[torch.Tensor], torch.Tensor] | None = None
    ablate_at: str = "all"
    joint: Mapping[str, Sequence[str]] | None = None
    info: dict = field(default_factory=dict)


class IdEncoding(dict):
    """Values are token ids already; ``"BOS"`` maps to ``bos``."""

    def __init__(self, bos: int):
        super().__init__(BOS=bos)

    def __missing__(self, key):
        if isinstance(key, int) and not isinstance(key, bool):
            return key
        raise KeyError(key)


def _fail(spec_name, fld: str, msg: str):
    who = f"task {spec_name!r}" if spec_name else "task"
    raise TaskSpecError(f"{who}: field {fld!r}: {msg}")


def _call(fn, spec_name, fld: str, *args):
    try:
        return fn(*args)
    except TaskSpecError:
        raise
    except Exception as err:  # noqa: BLE001 - a user callable may raise anything: name the field
        _fail(spec_name, fld, f"raised {type(err).__name__}: {err}")


def _build_model(obj, spec_name, fld: str, device: str) -> HookedTransformer:
    if isinstance(obj, HookedTransformer):
        model = obj
    elif callable(obj):
        try:
            takes_device = "device" in inspect.signature(obj).parameters
        except (TypeError, ValueError):
            takes_device = False
        model = _call(lambda: obj(device=device) if takes_device else obj(), spec_name, fld)
        if not isinstance(model, HookedTransformer):
            _fail(spec_name, fld, f"the builder returned {type(model).__name__}, not a HookedTransformer")
    else:
        _fail(spec_name, fld, f"must be a HookedTransformer or a function building one, got {type(obj).__name__}")
    if str(model.cfg.device) != str(device):
        model.to(device, print_details=False)
    model.eval()
    return model


def _circuit_nodes(model: HookedTransformer, names, spec_name, fld: str = "circuit") -> list[str]:
    """Normalised in-circuit node names; every name must be a head or MLP of ``model``."""
    if isinstance(names, str) or not isinstance(names, (list, tuple, set, frozenset)):
        _fail(spec_name, fld, f"must be a list of node names, got {type(names).__name__}")
    valid = [n.name for n in all_nodes(model, lambda *a: False)]
    out = []
    for raw in names:
        node = Node.from_name(raw) if isinstance(raw, str) else None
        if node is None or node.name not in valid:
            example = ", ".join(valid[:3] + ([valid[-1]] if len(valid) > 3 else []))
            _fail(spec_name, fld, f"node {raw!r} does not exist in the model ({model.cfg.n_layers} layers, "
                  f"{model.cfg.n_heads} heads{', attention only' if model.cfg.attn_only else ''}; node names look like {example})")
        out.append(node.name)
    if not out:
        _fail(spec_name, fld, "is empty: name at least one in-circuit node")
    return list(dict.fromkeys(out))


def _as_spec(spec: TaskSpec | Mapping) -> TaskSpec:
    """The ``TaskSpec`` a spec or a dict of its fields stands for (unknown dict keys refused)."""
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {f.name for f in fields(TaskSpec)})
        if unknown:
            _fail(spec.get("name"), unknown[0], f"is not a TaskSpec field (fields: {', '.join(f.name for f in fields(TaskSpec))})")
        spec = TaskSpec(**spec)
    if not isinstance(spec, TaskSpec):
        raise TaskSpecError(f"expected a TaskSpec, a dict or a Task, got {type(spec).__name__}")
    return spec


def _check_labels(spec: TaskSpec) -> None:
    """Required fields present; name, family, ground_truth, output and ablate_at well formed."""
    name = spec.name
    for f in REQUIRED:
        if getattr(spec, f) is None:
            _fail(name, f, "is missing (required: " + ", ".join(REQUIRED) + ")")
    if not isinstance(name, str) or not _NAME.match(name):
        _fail(name, "name", "must be a non-empty string of letters, digits, '_', '-', '.'")
    if not isinstance(spec.family, str) or not _NAME.match(spec.family):
        _fail(name, "family", "must be a non-empty string of letters, digits, '_', '-', '.'")
    if not isinstance(spec.ground_truth, str) or not spec.ground_truth:
        _fail(name, "ground_truth", "must be a non-empty string")
    if spec.output not in OUTPUTS:
        _fail(name, "output", f"must be one of {', '.join(OUTPUTS)}, got {spec.output!r}")
    if spec.ablate_at not in ("all", "final"):
        _fail(name, "ablate_at", f"must be 'all' or 'final', got {spec.ablate_at!r}")


def _check_lengths(spec: TaskSpec, model: HookedTransformer) -> tuple[int, int]:
    """``(min_len, max_len)`` from ``lengths``: integers, 1 <= min <= max, max + BOS within ``n_ctx``."""
    name = spec.name
    try:
        lo, hi = (int(x) for x in spec.lengths)
    except (TypeError, ValueError):
        _fail(name, "lengths", f"must be (min_len, max_len), got {spec.lengths!r}")
    if not 1 <= lo <= hi:
        _fail(name, "lengths", f"needs 1 <= min_len <= max_len, got {spec.lengths!r}")
    if hi + 1 > model.cfg.n_ctx:
        _fail(name, "lengths", f"max_len {hi} + BOS does not fit the model's n_ctx {model.cfg.n_ctx}")
    return lo, hi


def _check_vocab(spec: TaskSpec) -> list:
    """``vocab`` as a non-empty list of input values."""
    try:
        vocab = list(spec.vocab)
    except TypeError:
        _fail(spec.name, "vocab", f"must be a list of input values, got {type(spec.vocab).__name__}")
    if not vocab:
        _fail(spec.name, "vocab", "is empty")
    return vocab


def _check_encoding(spec: TaskSpec, vocab: list, model: HookedTransformer) -> dict:
    """The encoding (``encoding`` or ids with ``bos``); every vocabulary value and BOS maps into the model's vocabulary."""
    name = spec.name
    if spec.encoding is not None:
        if not isinstance(spec.encoding, Mapping) or "BOS" not in spec.encoding:
            _fail(name, "encoding", "must be a dict from vocabulary value to token id with a 'BOS' entry")
        encoding = dict(spec.encoding)
    else:
        encoding = IdEncoding(spec.bos)
    for v in vocab + ["BOS"]:
        try:
            tid = encoding[v]
        except KeyError:
            _fail(name, "vocab" if spec.encoding is None else "encoding",
                  f"value {v!r} has no token id (give encoding=, or use int token ids)")
        if not isinstance(tid, int) or not 0 <= tid < model.cfg.d_vocab:
            _fail(name, "encoding" if spec.encoding is not None else ("bos" if v == "BOS" else "vocab"),
                  f"token id {tid!r} of {v!r} is not in the model's vocabulary [0, {model.cfg.d_vocab})")
    return encoding


def _check_inputs(spec: TaskSpec, vocab: list, lo: int, hi: int) -> InputSpec:
    """The ``InputSpec``: ``sample`` / ``edit`` / ``answers`` callable, seeded draws of sample and edit valid."""
    for fld in ("sample", "edit", "answers"):
        if getattr(spec, fld) is not None and not callable(getattr(spec, fld)):
            _fail(spec.name, fld, "must be a function")
    inputs = InputSpec(vocab=vocab, max_len=hi, min_len=lo, sample=spec.sample, edit=spec.edit)
    found = inputs.problem()  # every length, several seeded draws of sample and edit
    if found:
        _fail(spec.name, *found)
    return inputs


def _check_joint(spec: TaskSpec, model: HookedTransformer) -> dict[str, list[str]]:
    """``joint``: set name -> normalised node names of ``model`` (empty when not given)."""
    joint_sets = {}
    if spec.joint is not None:
        if not isinstance(spec.joint, Mapping) or not spec.joint:
            _fail(spec.name, "joint", "must be a non-empty dict: set name -> list of node names")
        joint_sets = {str(k): _circuit_nodes(model, v, spec.name, "joint") for k, v in spec.joint.items()}
    return joint_sets


def _check_forward(task: Task, model: HookedTransformer, name: str, lo: int, hi: int) -> tuple[list, list]:
    """Token batches sampled from ``task`` and the model's outputs on them, each shaped [batch, pos, d_vocab_out]."""
    toks = _call(lambda: task.sample(2 * (hi - lo + 1), seed=0), name, "sample")
    with torch.no_grad():
        outs = [_call(lambda t=t: model(t), name, "model") for t in toks]
    for t, o in zip(toks, outs):
        if not isinstance(o, torch.Tensor) or o.dim() != 3 or tuple(o.shape[:2]) != tuple(t.shape):
            _fail(name, "model", f"model(tokens {list(t.shape)}) must give [batch, pos, d_vocab_out], got "
                  f"{list(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__}")
    return toks, outs


def _check_output_width(spec: TaskSpec, d_out: int) -> None:
    """``output`` fits the model's d_vocab_out: numerical 1, categorical >= 2."""
    if spec.output == "numerical" and d_out != 1:
        _fail(spec.name, "output", f"numerical needs d_vocab_out == 1, the model gives {d_out}")
    if spec.output == "categorical" and d_out < 2:
        _fail(spec.name, "output", f"categorical needs d_vocab_out >= 2, the model gives {d_out} (numerical?)")


def _check_answers(spec: TaskSpec, task: Task, toks: list, d_out: int) -> None:
    """``answers``: required by and only used with logit_diff, integer [n, 2] ids in [0, d_out); sets the task's scoring."""
    name = spec.name
    if spec.output == "logit_diff":
        if spec.answers is None:
            _fail(name, "answers", "is required for output 'logit_diff': tokens [n, L+1] -> [n, 2] (correct, wrong) token ids")
        for t in toks:
            a = _call(lambda t=t: spec.answers(t), name, "answers")
            if not isinstance(a, torch.Tensor) or tuple(a.shape) != (t.shape[0], 2) or a.dtype not in (torch.long, torch.int32, torch.int64):
                _fail(name, "answers", f"must return an integer tensor [n, 2] (correct, wrong) for tokens {list(t.shape)}, got "
                      f"{(list(a.shape), str(a.dtype)) if isinstance(a, torch.Tensor) else type(a).__name__}")
            if int(a.min()) < 0 or int(a.max()) >= d_out:
                _fail(name, "answers", f"token ids must be in [0, {d_out})")
        task.scoring = LogitDiffScoring(spec.answers)
    elif spec.answers is not None:
        _fail(name, "answers", "is only used with output 'logit_diff'")


def _attach_high_level(spec: TaskSpec, task: Task, circuit: list[str], toks: list, outs: list, device: str) -> None:
    """``high_level`` / ``correspondence``: check the HL model's outputs and the node map, set them on ``task``."""
    name = spec.name
    d_out = outs[0].shape[-1]
    if spec.correspondence is not None and spec.high_level is None:
        _fail(name, "correspondence", "needs high_level (the model whose nodes it maps from)")
    if spec.high_level is not None:
        hl_model = _build_model(spec.high_level, name, "high_level", device)
        hl_out = _call(lambda: hl_model(toks[0]), name, "high_level")
        if not isinstance(hl_out, torch.Tensor) or hl_out.shape[:2] != toks[0].shape or hl_out.shape[-1] != d_out:
            _fail(name, "high_level", f"must give outputs shaped like the model's {list(outs[0].shape)}, got "
                  f"{list(hl_out.shape) if isinstance(hl_out, torch.Tensor) else type(hl_out).__name__}")
        corr = dict(spec.correspondence or {})
        if not isinstance(spec.correspondence or {}, Mapping):
            _fail(name, "correspondence", "must be a dict: high-level node -> low-level node")
        hl_names = _circuit_nodes(hl_model, list(corr), name, "correspondence") if corr else []
        ll_names = _circuit_nodes(task.model, list(corr.values()), name, "correspondence") if corr else []
        stray = [n for n in ll_names if n not in circuit]
        if stray:
            _fail(name, "correspondence", f"low-level node {stray[0]!r} is not in circuit")
        hl_nodes = all_nodes(hl_model, lambda layer, kind, head: Node(layer, kind, head).name in hl_names)
        task.high_level = Task(name=f"{name}_hl", family=spec.family, model=hl_model, output=task.output,
                               nodes=hl_nodes, inputs=task.inputs, encoding=task.encoding, ground_truth="weights")
        task.correspondence = dict(zip(hl_names, ll_names))


def build_task(spec: TaskSpec | Mapping, device: str = "cpu") -> Task:
    """Validate ``spec`` field by field and build its ``Task`` on ``device``. Raises ``TaskSpecError``."""
    spec = _as_spec(spec)
    name = spec.name
    _check_labels(spec)
    model = _build_model(spec.model, name, "model", device)
    circuit = _circuit_nodes(model, spec.circuit, name)

    # inputs
    lo, hi = _check_lengths(spec, model)
    vocab = _check_vocab(spec)
    encoding = _check_encoding(spec, vocab, model)
    inputs = _check_inputs(spec, vocab, lo, hi)

    if spec.ground_truth_meaning is not None:
        describe_ground_truth(spec.ground_truth, str(spec.ground_truth_meaning))
    task_output = "categorical" if spec.output == "logit_diff" else spec.output
    info = dict(spec.info)
    info.update(user_output=spec.output)
    joint_sets = _check_joint(spec, model)
    nodes = all_nodes(model, lambda layer, kind, head: Node(layer, kind, head).name in circuit)
    task = Task(name=name, family=spec.family, model=model, output=task_output, nodes=nodes, inputs=inputs,
                encoding=encoding, ground_truth=spec.ground_truth, info=info, joint_sets=joint_sets,
                ablate_at=spec.ablate_at, ground_truth_meaning=spec.ground_truth_meaning)

    # one forward on a small sample: the shapes the engine relies on
    toks, outs = _check_forward(task, model, name, lo, hi)
    d_out = outs[0].shape[-1]
    _check_output_width(spec, d_out)
    _check_answers(spec, task, toks, d_out)

    # optional high-level model and correspondence
    _attach_high_level(spec, task, circuit, toks, outs, device)
    return task


def check_task_object(task: Task) -> Task:
    """Light checks of a ready ``Task`` (its fields are already typed)."""
    if not isinstance(task.name, str) or not _NAME.match(task.name):
        _fail(task.name, "name", "must be a non-empty string of letters, digits, '_', '-', '.'")
    if not isinstance(task.model, HookedTransformer):
        _fail(task.name, "model", "must be a HookedTransformer")
    if not any(n.in_circuit for n in task.nodes):
        _fail(task.name, "nodes", "no node is in the circuit")
    return task


def specs_of(obj, where: str) -> list:
    """The task entries a module (``TASKS`` / ``TASK``), a function, a list or one spec stands for."""
    if inspect.ismodule(obj):
        if hasattr(obj, "TASKS"):
            obj = obj.TASKS
        elif hasattr(obj, "TASK"):
            obj = obj.TASK
        else:
            raise TaskSpecError(f"{where} defines no task: set TASKS = [TaskSpec(...), ...] (from tasks.user_tasks import TaskSpec)")
    if callable(obj) and not isinstance(obj, (TaskSpec, Task, type)):
        try:
            obj = obj()
        except Exception as err:  # noqa: BLE001
            raise TaskSpecError(f"{where}: building its tasks raised {type(err).__name__}: {err}") from None
    if isinstance(obj, (TaskSpec, Task, Mapping)):
        obj = [obj]
    if not isinstance(obj, (list, tuple)) or not obj:
        raise TaskSpecError(f"{where}: TASKS must be a non-empty list of TaskSpec (or Task) entries, got {type(obj).__name__}")
    return list(obj)


def build_tasks(obj, where: str, device: str = "cpu") -> list[Task]:
    """Every task ``obj`` defines, validated and built (``TaskSpecError`` on the first bad one)."""
    out, seen = [], set()
    for entry in specs_of(obj, where):
        task = check_task_object(entry) if isinstance(entry, Task) else build_task(entry, device)
        if task.name in seen:
            _fail(task.name, "name", f"is defined twice in {where}")
        seen.add(task.name)
        out.append(task)
    return out


def import_task_file(path: str):
    """Import a user's task file as a module. Raises ``TaskSpecError`` with the reason."""
    p = Path(path)
    if not p.is_file():
        raise TaskSpecError(f"no such file {path!r}")
    spec = importlib.util.spec_from_file_location(f"abench_user_tasks_{p.stem}", p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - the user's file: report, do not trace
        raise TaskSpecError(f"import failed: {type(err).__name__}: {err}") from None
    return module


# --------------------------------------------------------------------------- a toy ground truth


def plant_circuit(model: HookedTransformer, circuit: Sequence[str]) -> HookedTransformer:
    """Make ``circuit`` the exact circuit of ``model`` (in place), keeping every other node alive.

    The residual stream is split in two halves: nodes in ``circuit`` read only the first half
    (their Q/K/V or W_in rows of the second half are zeroed) and every other node writes only
    into the second half (its W_O / W_out columns of the first half are zeroed); the unembedding
    reads only the first half. Out-of-circuit nodes still compute input-dependent values, but no
    path leads from them to the output, so their effect is 0 under every ablation. Needs a model
    without normalisation (a norm would mix the halves).
    """
    if model.cfg.normalization_type is not None:
        raise ValueError("plant_circuit needs normalization_type=None: a norm mixes the two halves of the residual stream")
    names = set(_circuit_nodes(model, circuit, None))
    half = model.cfg.d_model // 2
    with torch.no_grad():
        for node in all_nodes(model, lambda *a: False):
            blk = model.blocks[node.layer]
            if node.kind == "attn":
                if node.name in names:
                    for W in (blk.attn.W_Q, blk.attn.W_K, blk.attn.W_V):
                        W[node.head, half:] = 0
                else:
                    blk.attn.W_O[node.head, :, :half] = 0
            elif node.name in names:
                blk.mlp.W_in[half:] = 0
            else:
                blk.mlp.W_out[:, :half] = 0
        model.unembed.W_U[half:] = 0
    return model
