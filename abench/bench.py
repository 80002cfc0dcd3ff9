"""One leaderboard row: task -> data -> method.fit -> node effects -> separability, and joint (circuit-level) effects."""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

import torch

from abench.estimator_rows import estimator_row
from abench.circuit import circuit_effects
from abench.conventions import DEFAULT_CONVENTION, effect_setup
from abench.document import Row
from abench.effects import MethodError, joint_effects, node_effects
from abench.guard import SharedState, describe
from abench.separability import separability
from ablations.base import REGISTRY, AblationMethod, make_method
from ablations.task_data import TaskData
from ablations.estimators import Estimator
from interventions.methodspec import parse_spec
from tasks.base import Task
from tasks.seeds import derive

DEFAULT_N_FIT = 128
DEFAULT_N_EVAL = 256
DEFAULT_SEED = 0


def task_data(task: Task, n_fit: int = DEFAULT_N_FIT, n_eval: int = DEFAULT_N_EVAL, seed: int = DEFAULT_SEED) -> tuple[TaskData, TaskData]:
    """Fit and eval splits of a task (disjoint seeds), with clean and counterfactual activations."""
    fit_seed, eval_seed = derive(seed, "bench-fit"), derive(seed, "bench-eval")
    fit = TaskData.build(task.model, task.output, task.nodes, *task.sample_with_counterfactual(n_fit, fit_seed), seed=fit_seed)
    ev = TaskData.build(task.model, task.output, task.nodes, *task.sample_with_counterfactual(n_eval, eval_seed), seed=eval_seed)
    return fit, ev


class Timer:
    """Wall time, or CUDA-event time after synchronisation on a CUDA device."""

    def __init__(self, device: str):
        self.cuda = str(device).startswith("cuda") and torch.cuda.is_available()

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.end.record()
            torch.cuda.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1000
        else:
            self.seconds = time.perf_counter() - self.t0


def run_row(task: Task, method: str | AblationMethod, fit: TaskData, ev: TaskData, convention: str = DEFAULT_CONVENTION) -> Row:
    """Fit ``method`` on ``fit``, measure every node's effect on ``ev``. Never raises for a bad method:
    its row gets ``status: failed`` and the reason. ``convention``: the effect convention
    (``abench.conventions``: ``suite`` or ``iit``; a next-token task scores its logit difference).
    An attribution estimator (``atp[...]``, ``atp_ig[...]``) gets its estimated effects scored beside
    the exact ones of the method it wraps (``abench.estimator_rows.estimator_row``)."""
    row = {"task": task.name, "family": task.family, "ground_truth": task.ground_truth}  # the identity, then the method's
    measures: dict = {}
    device = str(task.model.cfg.device)
    shared = SharedState.of(fit, ev)  # what every method of this task sees, restored after each
    try:
        m = make_method(method) if isinstance(method, str) else method
        row.update(method_fields(m))
        if isinstance(m, Estimator):  # an estimate of another method's effects, scored beside them
            estimate = estimator_row(task, m, fit, ev, convention, lambda: Timer(device))
            _check_shared(shared, m, "estimate")
            nodes = estimate.pop("nodes")
            return Row(**row, status="ok", measures=estimate, nodes=nodes)
        with Timer(device) as t_fit:
            m.fit(fit)
        _check_shared(shared, m, "fit")
        setup = effect_setup(task, m, ev, convention)  # scorer (and final-position ablation) of this task
        with Timer(device) as t_eff:
            effects = node_effects(setup.method, ev, scorer=setup.scorer)
        # named node sets the task declares (e.g. a name mover and its backup), ablated together
        joint = joint_effects(setup.method, ev, task.joint_sets, effects, scorer=setup.scorer) if task.joint_sets else None
        with Timer(device) as t_circ:
            circuit = circuit_effects(m, ev)  # joint ablation: faithfulness, completeness, curve
        _check_shared(shared, m, "ablate")
    except Exception as err:  # noqa: BLE001 - any failure of a method becomes its row's reason
        changed = shared.restore()  # e.g. an input edited in place before the per-batch check caught it
        if "method" not in row:
            row.update(method_fields(method if isinstance(method, (str, AblationMethod)) else getattr(method, "name", repr(method))))
        reason = (str(err) if isinstance(err, MethodError) else f"{type(err).__name__}: {err}") + raise_site(err)
        if changed:
            reason += f"; shared task data it changed was restored for the other methods: {describe(changed)}"
        return Row(**row, status="failed", error=reason)
    labels = [e.in_circuit for e in effects]
    sep = separability(labels, [e.effect for e in effects])
    sep_c = separability(labels, [e.continuous for e in effects])
    measures.update(sep)
    measures.update(setup.row_info)
    measures["auroc_continuous"] = sep_c["auroc"]
    measures.update(fit_seconds=t_fit.seconds, effect_seconds=t_eff.seconds, seconds=t_fit.seconds + t_eff.seconds)
    measures["fit_seconds_per_node"] = t_fit.seconds / len(effects)
    measures.update(circuit, circuit_seconds=t_circ.seconds)
    if joint is not None:
        measures["joint_effects"] = joint
    return Row(**row, status="ok", measures=measures, nodes=effects)


# a row's params are data in leaderboard.json: what a method holds beyond these (a dict of tensors) stays out
_PARAM_TYPES = (bool, int, float, str, type(None))


def method_fields(method: str | AblationMethod) -> dict:
    """A row's method: its full name, ``method_base`` (the registered name) and ``params``, the
    method's own ``get_params()`` (every constructor argument, defaults included:
    ``scaled_resample[s=0.5]`` -> ``{"s": 0.5}``, ``noise`` -> ``{"scale": 3.0}``) where they are plain
    values. A name that builds no method (its row failed) gets the parameters its spec spells out."""
    if isinstance(method, AblationMethod):
        try:
            params = {k: v for k, v in method.get_params().items() if isinstance(v, _PARAM_TYPES)}
            base = method.base_name if method.base_name != AblationMethod.base_name else getattr(parse_spec(method.name), "name", None)
            return {"method": method.name, "method_base": base, "params": params}
        except AttributeError:  # a plugin that does not keep its parameters under their names: its spec says them
            method = method.name
    spec = parse_spec(method)
    if spec is None:
        return {"method": method, "method_base": None, "params": {}}
    try:
        params = spec.kwargs(getattr(REGISTRY.get(spec.name), "flag_param", None))
    except ValueError:
        params = {**spec.params, "flags": list(spec.flags)}
    return {"method": method, "method_base": spec.name, "params": params}


def _check_shared(shared: SharedState, method: AblationMethod, stage: str) -> None:
    changed = shared.restore()
    if changed:
        raise MethodError(f"{method.name} modified shared task data during {stage}: {describe(changed)} "
                          "(restored for the other methods)")


_LIBRARY_DIRS = tuple(str(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix, Path(torch.__file__).parent.parent})


def raise_site(err: BaseException) -> str:
    """`` at file.py:line`` of the innermost frame of ``err`` (or of its cause, for a method error
    wrapping a plugin's exception) outside the Python installation and its packages; "" if none."""
    if isinstance(err, MethodError):
        if err.__cause__ is None:  # the suite's own check (shape, NaN, changed inputs): no plugin line to show
            return ""
        err = err.__cause__
    frames = traceback.extract_tb(err.__traceback__)
    own = [f for f in frames if not str(Path(f.filename).resolve()).startswith(_LIBRARY_DIRS)]
    f = (own or frames or [None])[-1]
    return f" at {f.filename}:{f.lineno}" if f else ""
