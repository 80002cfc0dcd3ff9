"""Merge the ``leaderboard.json`` of several shards into the one leaderboard and its reports.

``python -m abench merge shard*/leaderboard.json --report-dir DIR``: the shards are runs of
``pytest benchmarks`` over parts of one selection (CI jobs under ``pytest-split --splits N
--group i``, machines given ``--tasks`` subsets, ...). The merged document is what one process
running the whole selection writes, timings aside: rows in the selection's order (tasks, then
methods, as recorded in each shard's ``selection``), the ground-truth checks, failed tasks and
speed entries of every shard, and every summary recomputed from the rows by
``leaderboard.build`` (the bootstrap is seeded, so it is the same). ``tests/test_merge.py`` holds
it equal to the serial run.

``--replace``: a later shard's tasks replace an earlier shard's (every row, ground-truth check and
failure of such a task is taken from the later shard): a full leaderboard with some tasks run again,
e.g. after a model was retrained.

Refused, with one line naming the shards: a (task, method) row in two shards (without ``--replace``), shards run with
different data settings (seed, n_fit, n_eval), effect conventions, or ground-truth checks of one
task that disagree. Other environment differences (machine, device name, threads) are reported;
the first shard's environment is kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from abench import leaderboard
from abench.document import DocumentError, GroundTruthCheck, Leaderboard

# environment fields that change the numbers: shards must agree on them
SETTINGS = ("seed", "n_fit", "n_eval")
# top-level keys every shard must share (the effect convention, the ground truth per family)
SHARED_KEYS = ("effect_convention",)


class MergeError(ValueError):
    """Shards that cannot be one leaderboard; the message says which and why."""


def _ordered_union(lists) -> list:
    return list(dict.fromkeys(x for lst in lists for x in lst))


def _check_compatible(docs: list[Leaderboard], names: list[str]) -> list[str]:
    """``MergeError`` when a shard's data settings or shared keys differ from the first's; notes on other
    environment differences (the first shard's environment is kept)."""
    notes: list[str] = []
    env0 = docs[0].environment
    for name, doc in zip(names[1:], docs[1:]):
        env = doc.environment
        for k in SETTINGS:
            if env.get(k) != env0.get(k):
                raise MergeError(f"{name}: {k} = {env.get(k)!r}, {names[0]}: {env0.get(k)!r}; shards must use the same data")
        for k in SHARED_KEYS:
            if getattr(doc, k) != getattr(docs[0], k):
                raise MergeError(f"{name}: {k} differs from {names[0]}'s ({getattr(doc, k)!r} vs {getattr(docs[0], k)!r})")
        diff = sorted(k for k in set(env) | set(env0) if k != "created_at" and env.get(k) != env0.get(k))
        if diff:
            notes.append(f"{name}: environment differs from {names[0]} in {', '.join(diff)} (kept {names[0]}'s)")
    return notes


def _tasks_run(doc: Leaderboard) -> set[str]:
    return {r.task for r in doc.rows} | set(doc.ground_truth_checks) | set(doc.extra.get("failed_tasks") or {})


def _without_tasks(doc: Leaderboard, tasks: set[str]) -> Leaderboard:
    """``doc`` with every row, ground-truth check and failure of ``tasks`` left out."""
    extra = dict(doc.extra)
    if extra.get("failed_tasks"):
        extra["failed_tasks"] = {t: f for t, f in extra["failed_tasks"].items() if t not in tasks}
    return replace(doc, rows=[r for r in doc.rows if r.task not in tasks], extra=extra,
                   ground_truth_checks={t: c for t, c in doc.ground_truth_checks.items() if t not in tasks})


def merge(docs: list[Leaderboard], names: list[str] | None = None, replace_tasks: bool = False) -> tuple[Leaderboard, list[str]]:
    """``(merged leaderboard document, notes)`` from the shards' documents (in the given order); with
    ``replace_tasks`` a later shard's tasks replace an earlier shard's."""
    if not docs:
        raise MergeError("no shard to merge")
    names = names or [f"shard {i}" for i in range(len(docs))]
    notes = _check_compatible(docs, names)
    if replace_tasks:
        later: set[str] = set()
        kept = []
        for name, doc in reversed(list(zip(names, docs))):
            replaced = sorted(_tasks_run(doc) & later)
            if replaced:
                notes.append(f"{name}: {len(replaced)} task(s) replaced by a later shard: {', '.join(replaced)}")
            kept.append(_without_tasks(doc, later))
            later |= _tasks_run(doc)
        docs = kept[::-1]
    env0 = docs[0].environment

    tasks = _ordered_union(d.extra.get("selection", {}).get("tasks", []) for d in docs)
    methods = _ordered_union(d.extra.get("selection", {}).get("methods", []) for d in docs)
    tasks = _ordered_union([tasks, (r.task for d in docs for r in d.rows)])  # shards without a selection
    methods = _ordered_union([methods, (r.method for d in docs for r in d.rows)])

    rows, seen = [], {}
    for name, doc in zip(names, docs):
        for r in doc.rows:
            if r.key in seen:
                raise MergeError(f"row {r.task}-{r.method} is in both {seen[r.key]} and {name}: shards must not overlap")
            seen[r.key] = name
            rows.append(r)  # its ground-truth check is marked again by leaderboard.build
    rows.sort(key=lambda r: (tasks.index(r.task), methods.index(r.method)))

    checks: dict[str, GroundTruthCheck] = {}
    failed: dict[str, dict] = {}
    speed: dict = {}
    for name, doc in zip(names, docs):
        for t, c in doc.ground_truth_checks.items():
            if t in checks and leaderboard.strip_volatile(checks[t].to_json()) != leaderboard.strip_volatile(c.to_json()):
                raise MergeError(f"task {t}: the ground-truth checks of two shards disagree (the other one and {name})")
            checks.setdefault(t, c)
        for t, f in (doc.extra.get("failed_tasks") or {}).items():
            failed.setdefault(t, f)
        speed.update(doc.extra.get("speed") or {})

    def in_order(d: dict) -> dict:
        return dict(sorted(d.items(), key=lambda kv: tasks.index(kv[0]) if kv[0] in tasks else len(tasks)))

    extra = {"selection": {"tasks": tasks, "methods": methods}, "failed_tasks": in_order(failed)}
    if speed:
        extra["speed"] = speed
    # a shard run with --effect-convention iit carries iit's description
    doc = leaderboard.build(rows, dict(env0), extra, in_order(checks), effect_convention=docs[0].effect_convention)
    # each family's ground-truth meaning as the shard that ran it recorded it: this process need not have loaded the
    # module that describes it (a feature family's ``reads`` is described where its tasks are built)
    recorded = {fam: gt for d in docs for fam, gt in d.ground_truth.items()}
    return replace(doc, ground_truth={fam: recorded.get(fam, gt) for fam, gt in doc.ground_truth.items()}), notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m abench merge", description=__doc__.split("\n\n")[0])
    p.add_argument("shards", nargs="+", metavar="LEADERBOARD.json", help="each shard's leaderboard.json, in selection order")
    p.add_argument("--report-dir", default="reports", help="where leaderboard.{json,md,tex,html} are written (default: reports)")
    p.add_argument("--replace", action="store_true", help="a later shard's tasks replace an earlier shard's (rows, checks, failures)")
    args = p.parse_args(argv)
    docs = []
    for path in args.shards:
        try:
            docs.append(Leaderboard.from_json(json.loads(Path(path).read_text()), path))
        except (OSError, json.JSONDecodeError) as err:
            print(f"merge: {path}: cannot read a leaderboard ({err})", file=sys.stderr)
            return 2
        except DocumentError as err:
            print(f"merge: {err}", file=sys.stderr)
            return 2
    try:
        doc, notes = merge(docs, list(args.shards), replace_tasks=args.replace)
    except MergeError as err:
        print(f"merge: {err}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"note: {note}")
    written = leaderboard.write(doc, args.report_dir)
    print(f"merged {len(docs)} shards, {len(doc.rows)} rows, {len(doc.extra['selection']['tasks'])} tasks; wrote "
          + ", ".join(str(w) for w in written))
    return 0
