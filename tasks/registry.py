"""All tasks by name and the families they belong to: tracr programs, shipped SIIT models (their
cards are read when this module is imported), the next-token task, and the tasks of user files
and entry points (``load_task_file``, ``load_entry_point_tasks``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

from tasks.base import Task, describe_ground_truth
from tasks.features.compress import compressed_feature_task, shipped as shipped_compressed
from tasks.features.family import COMPRESSED_FAMILY, FAMILY as FEATURES_FAMILY, feature_task, task_name as feature_task_name
from tasks.features.merge import PAIRS as FEATURE_PAIRS
from tasks.features.pca import PCA_FAMILY, pca_task
from tasks.next_token import FAMILY as NEXT_TOKEN_FAMILY, planted_backup_task
from tasks.scale import FAMILY as SCALE_FAMILY, SHAPES as SCALE_SHAPES, scale_task
from tasks.siit import family_of as siit_family_of
from tasks.siit import shipped as siit_shipped
from tasks.siit import siit_task
from tasks.tracr.programs import PROGRAMS
from tasks.tracr.compiled import tracr_task
from tasks.user_tasks import ENTRY_POINT_GROUP, TaskSpecError, build_tasks, import_task_file

LOADERS: dict[str, tuple[str, Callable[[str], Task]]] = {
    name: ("tracr", lambda device, name=name: tracr_task(name, device)) for name in PROGRAMS
}
# SIIT models shipped under tasks/weights/siit whose card says they passed the bar (accuracy,
# IIA, SIIA >= 99% and every bystander live); retrain with `python -m siit_training`. A model with a
# redundant node (a backup pair, tasks.siit.SIIT_VARIANTS) is in its own family, siit_backup:
# single-node ablation under-reports its pair by design, so it is never pooled with siit. A
# compiled-circuit variant (its circuit tracr's frozen weights) is in siit_compiled, also apart.
SIIT_TASKS = siit_shipped()
LOADERS.update({f"siit_{name}": (siit_family_of(name), lambda device, name=name: siit_task(name, device)) for name in SIIT_TASKS})


def families() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, (family, _) in LOADERS.items():
        out.setdefault(family, []).append(name)
    return out




def resolve_task_names(spec: str | None) -> list[str]:
    """``"reverse,hist"``, a family (``tracr``), ``all`` or None (every family, SIIT first) -> task names."""
    fams = families()
    if not spec:
        return [name for fam in DEFAULT_FAMILIES for name in fams[fam]]
    names: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if part == "all":
            names += list(LOADERS)
        elif part in fams:
            names += fams[part]
        elif part in LOADERS:
            names.append(part)
        else:
            raise KeyError(
                f"unknown task {part!r}; valid names: {', '.join(LOADERS)} (or a family: {', '.join(fams)}, or all)"
            )
    return list(dict.fromkeys(names))


@lru_cache(maxsize=None)
def load_task(name: str, device: str = "cpu") -> Task:
    if name not in LOADERS:
        raise KeyError(f"unknown task {name!r}; valid names: {', '.join(LOADERS)}")
    return LOADERS[name][1](device)


def register_task(name: str, family: str, loader: Callable[[str], Task], replace: bool = False) -> None:
    """Add a task (``loader(device) -> Task``) under ``name``: resolvable by name, by family and
    by ``all`` (``--task-module`` files, ``abench.tasks`` entry points, ``tasks.next_token``).
    Families other than ``siit`` / ``siit_backup`` / ``tracr`` are not in the default selection."""
    if name in LOADERS and not replace:
        raise KeyError(f"task {name!r} is already registered")
    LOADERS[name] = (family, loader)
    load_task.cache_clear()


# The next-token family (tasks/next_token.py): a tiny model with a planted name mover + backup head,
# scored by logit difference. Selectable by name, by family (next_token) or all; not a default family.
register_task("next_token_planted", NEXT_TOKEN_FAMILY, lambda device: planted_backup_task(device))


# The scale family (tasks/scale.py): random weights at gpt2-small, Pythia-70m and Llama-style (grouped-query)
# shapes, for time and memory only. No ground truth: never a default family, never a leaderboard row
# (benchmarks/test_scale.py measures them; the leaderboard's tests skip them).
for _shape in SCALE_SHAPES:
    register_task(f"scale_{_shape}", SCALE_FAMILY, lambda device, shape=_shape: scale_task(shape, device))


# The features family (tasks/features): a main and a bystander tracr program merged into one model, its residual
# basis rotated; nodes are the true atoms at every residual site (the oracle directions).
for _p, _q in FEATURE_PAIRS:
    register_task(feature_task_name(_p, _q), FEATURES_FAMILY, lambda device, p=_p, q=_q: feature_task(p, q, device))
# Their PCA tasks (tasks/features/pca.py): the same rotated models, nodes the principal directions of each site
# that match a true atom, labelled by it (mixed ones reported, not scored).
for _p, _q in FEATURE_PAIRS:
    register_task(feature_task_name(_p, _q) + "__pca", PCA_FAMILY, lambda device, p=_p, q=_q: pca_task(p, q, device))
# Their compressed tasks (tasks/features/compress.py): the same model squeezed into fewer residual dimensions than it
# has atoms by a shipped learned projection (features in superposition); only the pairs whose projection passed.
for _p, _q in shipped_compressed():
    register_task(feature_task_name(_p, _q, True), COMPRESSED_FAMILY,
                  lambda device, p=_p, q=_q: compressed_feature_task(p, q, device))


# `pytest benchmarks` with no --tasks runs every family: SIIT first (live bystanders, the
# realistic ground truth), then the SIIT backup pair(s), the compiled-circuit models, the realism axes
# (pre-norm, causal, deep: models shaped like real ones), then tracr (exact but bystander-free), then the
# feature families (residual directions: the true atoms, compressed, PCA). Each keeps its own ground truth
# and its own table.
DEFAULT_FAMILIES = [f for f in ("siit", "siit_backup", "siit_compiled", "siit_norm", "siit_causal", "siit_deep", "tracr",
                                FEATURES_FAMILY, COMPRESSED_FAMILY, PCA_FAMILY) if f in families()]


# --------------------------------------------------------------------------- user task files and entry points


def register_user_tasks(tasks: Sequence[Task], source: str) -> list[str]:
    """Put built tasks into the registry (``register_task``) and their ground-truth meanings into
    the report legend. Returns their names."""
    names = []
    for task in tasks:
        if task.name in LOADERS and task.name not in _USER_NAMES:
            raise TaskSpecError(f"task {task.name!r}: field 'name': clashes with a task already in the suite ({source})")
        built = {str(task.model.cfg.device): task}
        register_task(task.name, task.family, lambda device, built=built, task=task: _on_device(built, task, device), replace=True)
        _USER_NAMES.add(task.name)
        meaning = task.ground_truth_meaning
        if meaning:
            describe_ground_truth(task.ground_truth, meaning)
        names.append(task.name)
    return names


_USER_NAMES: set[str] = set()  # registered from user files / entry points (may be replaced on reload)


def _on_device(built: dict, task: Task, device: str) -> Task:
    if device not in built:
        import copy

        t = copy.copy(task)
        t.model = copy.deepcopy(task.model).to(device, print_details=False)
        if task.high_level is not None:
            t.high_level = copy.copy(task.high_level)
            t.high_level.model = copy.deepcopy(task.high_level.model).to(device, print_details=False)
        built[device] = t
    return built[device]


def load_task_file(path: str, device: str = "cpu") -> list[str]:
    """``--task-module FILE.py``: import, validate, register; returns the task names it defined."""
    module = import_task_file(path)
    return register_user_tasks(build_tasks(module, Path(path).name, device), path)


def load_entry_point_tasks(device: str = "cpu") -> list[str]:
    """Tasks of installed packages (entry-point group ``abench.tasks``): registered, resolvable by
    name or family, not part of the default selection."""
    from importlib.metadata import entry_points

    names = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {ep.name} ({ep.value})"
        try:
            obj = ep.load()
        except Exception as err:  # noqa: BLE001
            raise TaskSpecError(f"{where}: import failed: {type(err).__name__}: {err}") from None
        names += register_user_tasks(build_tasks(obj, where, device), where)
    return names
