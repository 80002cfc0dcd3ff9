"""All tasks by name, and the families they belong to."""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

from tasks.base import Task
from tasks.siit import shipped as siit_shipped
from tasks.siit import siit_task
from tasks.tracr_programs import PROGRAMS
from tasks.tracr_tasks import tracr_task

LOADERS: dict[str, tuple[str, Callable[[str], Task]]] = {
    name: ("tracr", lambda device, name=name: tracr_task(name, device)) for name in PROGRAMS
}
# SIIT models shipped under tasks/weights/siit whose card says they passed the bar (accuracy,
# IIA, SIIA >= 99% and every bystander live); retrain with `python -m tasks.train_siit`.
SIIT_TASKS = siit_shipped()
LOADERS.update({f"siit_{name}": ("siit", lambda device, name=name: siit_task(name, device)) for name in SIIT_TASKS})


def families() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, (family, _) in LOADERS.items():
        out.setdefault(family, []).append(name)
    return out


# `pytest benchmarks` with no --tasks runs every family: SIIT first (live bystanders, the
# realistic ground truth), then tracr (exact but bystander-free). Each keeps its own ground truth.
DEFAULT_FAMILIES = [f for f in ("siit", "tracr") if f in families()]


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
    Families other than ``siit`` / ``tracr`` are not in the default selection."""
    if name in LOADERS and not replace:
        raise KeyError(f"task {name!r} is already registered")
    LOADERS[name] = (family, loader)
    load_task.cache_clear()


# The next-token family (tasks/next_token.py): a tiny model with a planted name mover + backup head,
# scored by logit difference. Selectable by name, by family (next_token) or all; not a default family.
from tasks.next_token import FAMILY as NEXT_TOKEN_FAMILY, planted_backup_task  # noqa: E402

register_task("next_token_planted", NEXT_TOKEN_FAMILY, lambda device: planted_backup_task(device))
