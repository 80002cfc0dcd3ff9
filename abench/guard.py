"""Shared-data protection: a method that changes the task data or the model fails only its own row.

Every method of a task sees the same ``TaskData`` objects (fit and eval split) and the same
model. ``ablate`` is checked per batch for changes to its inputs (``abench.effects``), but a
method can reach further: centre ``data.acts`` in place inside ``fit``, edit ``data.tokens``,
``resid_pre``, ``sources`` or the model's weights, leave a hook on the model, or keep a
reference and write through it later. ``SharedState`` keeps, once per task, a private copy of
everything shared (every tensor of both splits, their list/dict structure, the plain fields, the
model's state dict, its training flag and hooks); ``restore()`` compares the live objects with
it after a method ran, puts back whatever differs and says what it was. ``bench.run_row``
calls it after ``fit`` and after the effects, so no row's numbers depend on which methods ran
before it. The comparison is element-wise (``torch.equal``) and costs about one pass over the
cached activations: small next to the forwards of a row.
"""

from __future__ import annotations

import torch

from ablations.task_data import TaskData

# TaskData fields holding tensors (possibly nested in lists, tuples and dicts), and plain fields
TENSOR_FIELDS = ("tokens", "cf_tokens", "outputs", "acts", "cf_acts", "resid_pre", "perms", "sources", "writes")
PLAIN_FIELDS = ("output", "nodes", "seed", "node_index")
_KEY = "_abench_shared_state"


def _clone(x):
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, dict):
        return {k: _clone(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_clone(v) for v in x)
    return x


def _same(live, snap) -> bool:
    """Same structure and elements (NaN equal to NaN; dtype, shape and device included)."""
    if isinstance(snap, torch.Tensor):
        if not isinstance(live, torch.Tensor) or live.shape != snap.shape or live.dtype != snap.dtype or live.device != snap.device:
            return False
        if torch.equal(live, snap):
            return True
        return bool(((live == snap) | (live.isnan() & snap.isnan())).all()) if live.is_floating_point() else False
    if isinstance(snap, dict):
        return isinstance(live, dict) and live.keys() == snap.keys() and all(_same(live[k], snap[k]) for k in snap)
    if isinstance(snap, (list, tuple)):
        return type(live) is type(snap) and len(live) == len(snap) and all(_same(a, b) for a, b in zip(live, snap))
    return type(live) is type(snap) and live == snap


def _changed_paths(live, snap, path: str, out: list[str]) -> None:
    """Where ``live`` differs from ``snap`` (the first few, outermost containers that changed shape)."""
    if isinstance(snap, dict) and isinstance(live, dict) and live.keys() == snap.keys():
        for k in snap:
            _changed_paths(live[k], snap[k], f"{path}[{k!r}]", out)
    elif isinstance(snap, (list, tuple)) and type(live) is type(snap) and len(live) == len(snap):
        for i, (a, b) in enumerate(zip(live, snap)):
            _changed_paths(a, b, f"{path}[{i}]", out)
    elif not _same(live, snap):
        out.append(path)


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


class SharedState:
    """A private copy of the task data a row's method must not change, and the check that restores it."""

    def __init__(self, *datas: TaskData):
        self.datas = datas
        self.snaps = [{f: _clone(getattr(d, f)) for f in TENSOR_FIELDS + PLAIN_FIELDS} for d in datas]
        self.models = list({id(d.model): d.model for d in datas}.values())
        self.model_snaps = [({k: v.detach().clone() for k, v in m.state_dict().items()}, m.training, _hook_count(m)) for m in self.models]

    @classmethod
    def of(cls, fit: TaskData, ev: TaskData) -> "SharedState":
        """The copy taken the first time this pair of splits is seen (before any method ran on them)."""
        state = getattr(ev, _KEY, None)
        if state is None or state.datas[0] is not fit:
            state = cls(fit, ev)
            object.__setattr__(ev, _KEY, state)
        return state

    def restore(self) -> list[str]:
        """Put back everything a method changed; return what it was (empty: nothing changed)."""
        changed: list[str] = []
        splits = ["fit", "eval"] if len(self.datas) == 2 else [f"data{i}" for i in range(len(self.datas))]
        for split, d, snap in zip(splits, self.datas, self.snaps):
            for f, value in snap.items():
                live = getattr(d, f, None)
                if not _same(live, value):
                    paths: list[str] = []
                    _changed_paths(live, value, f"{split}.{f}", paths)
                    changed += paths or [f"{split}.{f}"]
                    object.__setattr__(d, f, _clone(value))
        for m, (state, training, n_hooks) in zip(self.models, self.model_snaps):
            live = m.state_dict()
            bad = [k for k, v in state.items() if k not in live or not _same(live[k], v)]
            if bad or live.keys() != state.keys():
                changed += [f"model.{k}" for k in bad] or ["model state dict keys"]
                with torch.no_grad():  # state_dict tensors share storage with the parameters and buffers
                    for k, v in state.items():
                        if k in live and live[k].shape == v.shape:
                            live[k].copy_(v)
            if m.training != training:
                changed.append("model training mode")
                m.train(training)
            if _hook_count(m) != n_hooks:
                changed.append("model hooks (left registered)")
                if hasattr(m, "reset_hooks"):
                    m.reset_hooks(including_permanent=n_hooks == 0)
        return changed


def describe(changed: list[str], limit: int = 6) -> str:
    """``fit.acts (40 tensors, first fit.acts['blocks.0.attn.hook_z[0]'][0]), model.embed.W_E``."""
    groups: dict[str, list[str]] = {}
    for path in changed:
        groups.setdefault(path.split("[")[0], []).append(path)
    parts = [ps[0] if len(ps) == 1 else f"{field} ({len(ps)} tensors, first {ps[0]})" for field, ps in groups.items()]
    more = f" and {len(parts) - limit} more" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more
