"""InterpBench's published model layout, both ways: load a case folder as a task, export ours.

One folder per case (InterpBench: ``3/``, ``ioi/`` ...):

- ``ll_model.pth``: the low-level (LL) model's state dict, read with ``torch.load(weights_only=True)``;
- ``ll_model_cfg.pkl``: its ``HookedTransformerConfig`` as a dict (``cfg.to_dict()``; the IOI case
  pickles the config object itself);
- ``edges.pkl``: the circuit as a list of ``(from, to)`` node-name pairs, e.g.
  ``('blocks.1.attn.hook_result[2]', 'blocks.1.hook_resid_post')``;
- ``meta.json``: metadata (InterpBench: training; ours: the task, program, circuit, correspondence
  in the suite's node syntax, and the model card).

The two pickles are read by ``RestrictedUnpickler``: it rebuilds only builtin containers and
scalars, numpy scalars and dtypes (``numpy.core.*`` read as ``numpy._core.*`` on numpy 2), torch
dtypes and, for the config, a ``HookedTransformerConfig`` (as a plain record of its fields).
Every other global (``os.system``, ``builtins.eval``, any class) is refused with
``InterpBenchLoadError`` before it is called.

In-circuit nodes come from the edges: a head is in the circuit when any edge names one of its
hooks (``hook_result[h]``, ``hook_z[h]``, ``hook_q/k/v[h]`` ...; the suite patches it through
``hook_z[h]``), an MLP when any edge names ``blocks.L.mlp.*`` or ``blocks.L.hook_mlp_in/out``.
The high-level model is not in the layout: an exported folder names its tracr program in
``meta.json``; for a real InterpBench case pass ``program=`` (one of ``tasks.tracr.programs``,
e.g. ``frac_prevs`` for case 3) and, for the ground-truth check, ``correspondence=``.

Export: ``python -m tasks.export_interpbench DIR`` writes every shipped SIIT model there
(``DIR/<program>/``), edges from each in-circuit node to its layer's ``hook_resid_post``.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import collections
import dataclasses
import io
import json
import pickle
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from tasks.base import Node, Task, all_nodes, redundant_sets

FILES = ("ll_model.pth", "ll_model_cfg.pkl", "edges.pkl", "meta.json")
FAMILY = "interpbench"


class InterpBenchLoadError(ValueError):
    """A case folder is missing a file, holds something the restricted unpickler refuses, or does not fit."""


class ConfigRecord:
    """What a pickled ``HookedTransformerConfig`` object becomes: its fields, nothing run."""

    def __setstate__(self, state):
        if isinstance(state, tuple):  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.fields = dict(state)


_SAFE_BUILTINS = {"set", "frozenset", "complex", "slice", "range", "bytearray", "bytes", "int", "float", "str", "bool",
                  "tuple", "list", "dict"}


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` restricted to what protocol-2 pickles of bytes use."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() not in ("latin1", "utf8"):
        raise InterpBenchLoadError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode(encoding)


class RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds builtin containers/scalars, numpy scalars/dtypes, torch dtypes (and, when
    ``allow_config``, a HookedTransformerConfig as a ``ConfigRecord``); refuses every other global."""

    def __init__(self, file, what: str, allow_config: bool = False):
        super().__init__(file)
        self.what, self.allow_config = what, allow_config

    def find_class(self, module: str, name: str):
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 names in protocol <= 2 pickles
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        if module == "_codecs" and name == "encode":
            return _latin1_bytes  # how protocol-2 pickles store bytes (e.g. a numpy scalar's raw value)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "scalar":
            return np._core.multiarray.scalar  # numpy 1 files name numpy.core, numpy 2 numpy._core
        if module == "numpy.dtypes":
            cls = getattr(np.dtypes, name, None)
            if isinstance(cls, type) and issubclass(cls, np.dtype):
                return cls
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if self.allow_config and name == "HookedTransformerConfig" and module.split(".")[0] == "transformer_lens":
            return ConfigRecord
        raise InterpBenchLoadError(
            f"{self.what}: refused to load {module}.{name}: only builtin containers and scalars, numpy scalars/dtypes "
            f"and torch dtypes{' (and a HookedTransformerConfig)' if self.allow_config else ''} are allowed in this file"
        )


def safe_load_pickle(path: Path, allow_config: bool = False):
    """Unpickle ``path`` through ``RestrictedUnpickler``. Raises ``InterpBenchLoadError``."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise InterpBenchLoadError(f"{path}: cannot read ({err})") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data), str(path), allow_config).load()
    except InterpBenchLoadError:
        raise
    except Exception as err:  # noqa: BLE001 - a corrupt pickle: say which file
        raise InterpBenchLoadError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from None


# --------------------------------------------------------------------------- node names

_HEAD_HOOK = re.compile(r"^blocks\.(\d+)\.attn\.hook_(result|z|q|k|v|pattern|attn_scores|rot_q|rot_k)(.*)$")
_MLP_HOOK = re.compile(r"^blocks\.(\d+)\.(mlp\.hook_\w+|hook_mlp_in|hook_mlp_out)$")
_OTHER_HOOK = re.compile(r"^(hook_embed|hook_pos_embed|hook_tokens|embed|pos_embed|unembed|ln_final.*|"
                         r"blocks\.\d+\.(hook_resid_pre|hook_resid_mid|hook_resid_post|hook_attn_out|hook_attn_in|"
                         r"hook_q_input|hook_k_input|hook_v_input|ln\d.*))$")


def edge_node(name) -> Node | None:
    """The head or MLP an edge endpoint names (``blocks.1.attn.hook_result[2]`` -> head 1.2), or None
    for the residual stream, embeddings and other non-node hooks. ``(name, index)`` pairs and
    indices such as ``[:, :, 2]`` or ``[None, None, 2]`` are read too (the head is the last integer)."""
    if isinstance(name, (tuple, list)) and name and isinstance(name[0], str):
        index = name[1] if len(name) > 1 else None
        ints = [int(x) for x in (index if isinstance(index, (list, tuple)) else [index]) if isinstance(x, (int, np.integer))]
        name = name[0] + (f"[{ints[-1]}]" if ints else "")
    if not isinstance(name, str):
        raise InterpBenchLoadError(f"edges.pkl: an edge endpoint is {type(name).__name__}, not a node name")
    name = name.strip()
    m = _HEAD_HOOK.match(name)
    if m:
        heads = re.findall(r"\d+", m.group(3))
        if not heads:
            raise InterpBenchLoadError(f"edges.pkl: cannot read the head index of {name!r}")
        return Node.from_name(f"blocks.{m.group(1)}.attn.hook_z[{heads[-1]}]")  # every head hook -> the suite's name
    m = _MLP_HOOK.match(name)
    if m:
        return Node.from_name(f"blocks.{m.group(1)}.mlp.hook_post")
    if _OTHER_HOOK.match(name):
        return None
    raise InterpBenchLoadError(f"edges.pkl: unrecognised node name {name!r}")


def circuit_from_edges(edges, model: HookedTransformer) -> list[str]:
    """In-circuit node names (suite syntax, forward order) of every head and MLP any edge names."""
    if not isinstance(edges, (list, tuple, set)):
        raise InterpBenchLoadError(f"edges.pkl: expected a list of (from, to) pairs, got {type(edges).__name__}")
    found = set()
    for edge in edges:
        if not isinstance(edge, (list, tuple)) or len(edge) != 2:
            raise InterpBenchLoadError(f"edges.pkl: expected (from, to) pairs, got {edge!r}")
        for end in edge:
            node = edge_node(end)
            if node is not None:
                found.add(node.name)
    valid = {n.name for n in all_nodes(model, lambda *a: False)}
    stray = sorted(found - valid)
    if stray:
        raise InterpBenchLoadError(f"edges.pkl: node {stray[0]} does not exist in the model "
                                   f"({model.cfg.n_layers} layers, {model.cfg.n_heads} heads)")
    return [n.name for n in all_nodes(model, lambda *a: False) if n.name in found]


def interpbench_name(node: Node) -> str:
    """The name InterpBench's edges use for a node: ``hook_result[h]`` for a head, ``hook_post`` for an MLP."""
    return f"blocks.{node.layer}.attn.hook_result[{node.head}]" if node.kind == "attn" else node.hook_name


# --------------------------------------------------------------------------- load


def config_from_pickle(obj, path) -> HookedTransformerConfig:
    """A HookedTransformerConfig from the unpickled dict (or config record); unknown keys are dropped."""
    if isinstance(obj, ConfigRecord):
        obj = obj.fields
    if not isinstance(obj, Mapping):
        raise InterpBenchLoadError(f"{path}: expected the config as a dict, got {type(obj).__name__}")
    known = {f.name for f in dataclasses.fields(HookedTransformerConfig) if f.init}
    cfg = {k: v for k, v in obj.items() if k in known}
    dtype = cfg.get("dtype")
    if isinstance(dtype, str):
        cfg["dtype"] = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(cfg["dtype"], torch.dtype):
            raise InterpBenchLoadError(f"{path}: unknown dtype {dtype!r}")
    for k, v in list(cfg.items()):  # numpy scalars -> Python scalars
        if isinstance(v, np.generic):
            cfg[k] = v.item()
    cfg["device"] = "cpu"
    missing = [k for k in ("n_layers", "d_model", "n_ctx", "d_head", "d_vocab") if k not in cfg]
    if missing:
        raise InterpBenchLoadError(f"{path}: config lacks {', '.join(missing)}")
    try:
        return HookedTransformerConfig(**cfg)
    except Exception as err:  # noqa: BLE001
        raise InterpBenchLoadError(f"{path}: not a valid HookedTransformerConfig ({type(err).__name__}: {err})") from None


def load_case(folder: str | Path, device: str = "cpu") -> tuple[HookedTransformer, list, dict]:
    """``(LL model, edges, meta)`` of a case folder. Raises ``InterpBenchLoadError``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InterpBenchLoadError(f"{folder}: not a folder")
    for f in FILES[:3]:
        if not (folder / f).is_file():
            raise InterpBenchLoadError(f"{folder}: missing {f} (InterpBench layout: {', '.join(FILES)})")
    cfg = config_from_pickle(safe_load_pickle(folder / "ll_model_cfg.pkl", allow_config=True), folder / "ll_model_cfg.pkl")
    edges = safe_load_pickle(folder / "edges.pkl")
    try:
        sd = torch.load(folder / "ll_model.pth", map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - weights_only refuses anything but tensors and containers
        raise InterpBenchLoadError(f"{folder / 'll_model.pth'}: not a plain state dict ({type(err).__name__}: {err})") from None
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise InterpBenchLoadError(f"{folder / 'll_model.pth'}: expected a state dict of tensors")
    model = HookedTransformer(cfg, move_to_device=False)
    res = model.load_state_dict(dict(sd), strict=False)
    missing = [k for k in res.missing_keys if not k.endswith(("IGNORE", ".mask"))]
    if missing or res.unexpected_keys:
        raise InterpBenchLoadError(f"{folder / 'll_model.pth'}: weights do not fit the config: missing {missing[:5]}, "
                                   f"unexpected {res.unexpected_keys[:5]}")
    model.to(device, print_details=False)
    model.eval()
    meta = {}
    if (folder / "meta.json").is_file():
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except json.JSONDecodeError as err:
            raise InterpBenchLoadError(f"{folder / 'meta.json'}: not valid JSON ({err})") from None
    return model, list(edges), meta


def interpbench_task(folder: str | Path, device: str = "cpu", program: str | None = None,
                     correspondence: Mapping[str, str] | None = None, name: str | None = None) -> Task:
    """A case folder as a task of family ``interpbench`` (ground truth ``resample``, as SIIT).

    Inputs, encoding and the high-level model come from the tracr program (``program=``, or
    ``meta.json``'s ``program`` for a folder this suite exported). With a correspondence
    (``correspondence=`` or ``meta.json``'s) the task gets the ground-truth check of SIIT tasks."""
    from tasks.tracr.programs import PROGRAMS
    from tasks.tracr.compiled import tracr_task

    folder = Path(folder)
    model, edges, meta = load_case(folder, device)
    circuit = circuit_from_edges(edges, model)
    if not circuit:
        raise InterpBenchLoadError(f"{folder / 'edges.pkl'}: no head or MLP in any edge")
    program = program or meta.get("program")
    if program is None:
        raise InterpBenchLoadError(f"{folder}: which tracr program is this case? pass program= (one of {', '.join(PROGRAMS)})")
    if program not in PROGRAMS:
        raise InterpBenchLoadError(f"{folder}: unknown program {program!r}; valid: {', '.join(PROGRAMS)}")
    hl = tracr_task(program, device)
    if (hl.model.cfg.d_vocab, hl.model.cfg.d_vocab_out) != (model.cfg.d_vocab, model.cfg.d_vocab_out):
        raise InterpBenchLoadError(f"{folder}: the model's vocabulary ({model.cfg.d_vocab} in, {model.cfg.d_vocab_out} out) "
                                   f"does not match program {program!r} ({hl.model.cfg.d_vocab}, {hl.model.cfg.d_vocab_out})")
    info = {"label": hl.info.get("label"), "output_values": hl.info.get("output_values"), "interpbench_folder": str(folder),
            "edges": edges, "meta": meta}
    corr = dict(correspondence if correspondence is not None else meta.get("correspondence") or {})
    if corr:
        # a value may be a list of LL nodes: a redundant HL node (a backup pair), ablated together as a joint set
        bad = [v for v in corr.values() if not isinstance(v, str) and not (isinstance(v, list) and len(v) >= 2
                                                                            and all(isinstance(m, str) for m in v))]
        if bad:
            raise InterpBenchLoadError(f"{folder}: correspondence value {bad[0]!r} is neither a node name nor a list of >= 2 names")
        stray = [ll for v in corr.values() for ll in ([v] if isinstance(v, str) else v) if ll not in circuit]
        if stray:
            raise InterpBenchLoadError(f"{folder}: correspondence names {stray[0]}, which no edge has")
    return Task(
        name=name or f"interpbench_{folder.name}",
        family=FAMILY,
        model=model,
        output=hl.output,
        nodes=all_nodes(model, lambda layer, kind, head: Node(layer, kind, head).name in circuit),
        inputs=hl.inputs,
        encoding=hl.encoding,
        ground_truth="resample",
        info=info,
        high_level=hl if corr else None,
        correspondence=corr,
        joint_sets=redundant_sets(corr),
    )


# --------------------------------------------------------------------------- export


def edges_of(task: Task) -> list[tuple[str, str]]:
    """InterpBench-style edges: each in-circuit node to its layer's ``hook_resid_post``."""
    return [(interpbench_name(n), f"blocks.{n.layer}.hook_resid_post") for n in task.nodes if n.in_circuit]


def export_task(task: Task, folder: str | Path, program: str | None = None, extra_meta: dict | None = None) -> Path:
    """Write ``task``'s model and circuit in InterpBench's layout into ``folder`` (created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = task.model
    sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save(sd, folder / "ll_model.pth")
    cfg = model.cfg.to_dict()
    cfg["device"] = "cpu"
    with open(folder / "ll_model_cfg.pkl", "wb") as f:
        pickle.dump(cfg, f)
    with open(folder / "edges.pkl", "wb") as f:
        pickle.dump(edges_of(task), f)
    meta = {
        "exported_by": "ablation-bench (tasks.export_interpbench)",
        "layout": "InterpBench case folder: ll_model.pth (state dict), ll_model_cfg.pkl (HookedTransformerConfig.to_dict()), "
                  "edges.pkl (list of (from, to) node names), meta.json",
        "task_name": task.name,
        "program": program,
        "output": task.output,
        "ground_truth": task.ground_truth,
        "circuit": task.in_circuit_names,
        "node_syntax": "suite: blocks.L.attn.hook_z[h] (head h) / blocks.L.mlp.hook_post; edges.pkl: hook_result[h] as InterpBench",
        "correspondence": task.correspondence or None,
        "inputs": {"vocab": list(task.inputs.vocab), "min_len": task.inputs.min_len, "max_len": task.inputs.max_len},
        "encoding": [[k, v] for k, v in task.encoding.items()],
    }
    meta.update(extra_meta or {})
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
    return folder


def export_shipped(out_dir: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    """Export every shipped SIIT model (``tasks.siit.shipped()``) to ``out_dir/<program>/``."""
    from tasks.registry import load_task
    from tasks.siit import program_of, shipped

    out_dir = Path(out_dir)
    written = []
    index = {}
    for name in names if names is not None else shipped():
        task = load_task(f"siit_{name}", "cpu")
        card = task.info.get("card", {})
        keep = {k: card[k] for k in ("ll_config", "seed", "steps", "wall_time_s", "device", "hyperparameters", "protocol", "passed", "accuracy",
                                     "iia_min_node", "siia_min_node", "liveness_min_out_of_circuit") if k in card}
        program = program_of(name)  # a variant (hist_backup) runs its program's tracr model
        written.append(export_task(task, out_dir / name, program=program, extra_meta={"training": keep}))
        index[name] = {"task": task.name, "program": program, "n_layers": task.model.cfg.n_layers,
                       "n_heads": task.model.cfg.n_heads, "d_model": task.model.cfg.d_model,
                       "dtype": str(task.model.cfg.dtype), "circuit": task.in_circuit_names}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "benchmark_metadata.json").write_text(json.dumps({"cases": index}, indent=1) + "\n")
    return written
